"""The two vjepa-robot services: `services.encoder` and `services.trainer`, plus `services.common`."""

import vjepa_robot  # noqa: F401  (sets MUJOCO_GL before anything imports dm_control)
