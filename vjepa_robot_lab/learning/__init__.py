"""Learning algorithms: behaviour cloning, SAC (agent, workspace, replay, checkpoints), and their live curves."""
