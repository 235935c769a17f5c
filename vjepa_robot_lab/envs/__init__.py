"""Tasks and environments: the task table, dm_control wrappers with frame windows, lockstep vector envs."""
