"""Experiments over runs: studies of several seeds, and protocols (CortexBench's recipe)."""
