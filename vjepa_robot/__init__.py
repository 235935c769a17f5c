"""vjepa-robot: can a frozen video foundation model be the eyes of a robot policy?"""

import os

__version__ = "0.1.0"

# Headless rendering by default (FACTS.md: Mesa's software EGL is on the base image). Must be set before
# dm_control/mujoco are imported anywhere; every entry point imports this package first.
os.environ.setdefault("MUJOCO_GL", "egl")
