"""Policies that demonstrate: scripted experts and random actions, and trained runs used as experts."""
