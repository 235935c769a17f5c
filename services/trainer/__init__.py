"""Trainer service: reacher env, experts, datasets, BC, SAC, live evaluation, reports."""
