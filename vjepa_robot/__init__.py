"""vjepa-robot: can a frozen video foundation model be the eyes of a robot policy?

MUJOCO_GL's headless default is set by the trainer package itself (vjepa_robot_lab/_gl.py), not here.
Where gymnasium is installed (the `gym` extra), importing this package registers the Gymnasium env ids
vjepa_robot/reacher-{easy,hard}-v0 (vjepa_robot/gym.py: entry-point strings, so dm_control and torch load only when
gymnasium.make builds an env); the encoder image has no gymnasium and registers nothing.
"""

from services import __version__

try:  # measured: +0.08-0.14 s of import (gymnasium itself); nothing else heavy loads
    from . import gym as _gym  # noqa: F401  (registers the env ids)
except ModuleNotFoundError as _exc:  # no gymnasium (the encoder image, the core install): register nothing
    if _exc.name != "gymnasium":
        raise

__all__ = ["__version__"]
