"""The two vjepa-robot services: `services.encoder` and `services.trainer`, plus `services.common`.

Neither service imports the CLI package (`vjepa_robot`); the CLI imports them.
"""

__version__ = "0.1.0"
