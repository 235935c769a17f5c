"""Headless rendering by default: MUJOCO_GL must be set before dm_control or mujoco is first imported.

Mesa's software EGL works on a bare Linux host and in the trainer image (libegl1 + libgl1-mesa-dri), so `egl` is the
default; an explicit MUJOCO_GL (osmesa, glfw) wins. Imported by the trainer package itself, so any trainer import
sets it; nothing else (the CLI, the encoder) has to.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
