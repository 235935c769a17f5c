"""Learning algorithms: behaviour cloning, SAC (agent, replay, checkpoints), and their live curves."""
