"""Live evaluation of policies and the statistics reported over episodes and seeds."""
