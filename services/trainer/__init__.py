"""Trainer service: reacher env, experts, datasets, BC, SAC, live evaluation, reports."""

from vjepa_robot_lab import _gl  # noqa: F401  (MUJOCO_GL default before any dm_control/mujoco import)
