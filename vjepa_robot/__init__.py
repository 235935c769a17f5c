"""vjepa-robot: can a frozen video foundation model be the eyes of a robot policy?

MUJOCO_GL's headless default is set by the trainer package itself (services/trainer/_gl.py), not here.
"""

from services import __version__

__all__ = ["__version__"]
