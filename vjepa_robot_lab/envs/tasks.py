"""THE one place naming each task's settings: the dm_control suite tasks this tool runs, and their protocol.

    spec = task_spec("walker-walk")     # TaskSpec; task_spec("reacher-easy") is reacher's "easy"
    spec.action_dim, spec.state_dim     # 6, 24
    spec.state(observation)             # (24,) float32: the observation dict flattened in spec order

Where the values come from:
- camera 0 and 256 x 256 frames: CortexBench's DMC protocol (facebookresearch/eai-vc,
  cortexbench/mujoco_vc/visual_imitation/config/DMC_BC_config.yaml: `camera: 0`, `image_width/height: 256`;
  cortexbench/mujoco_vc/src/mujoco_vc/gym_wrapper.py renders `camera_id=int(camera_name)`). Its five DMC tasks
  are named in cortexbench/mujoco_vc/src/mujoco_vc/supported_envs.py (dmc_walker_stand-v1, ...).
- action repeat: eai-vc itself sets none (its DMC envs are gym registrations of the mj_envs/dmc2gym packages, outside
  that repository); the values here are PlaNet's per-domain action repeats (Hafner et al. 2019, table 1: cartpole 8,
  reacher 4, cheetah 4, finger 2, walker 2), which DrQ and this project's reacher SAC (4) follow. They are the
  defaults a protocol reads: a SAC request that leaves `action_repeat` out gets its task's
  (records/run_kinds.complete_sac); an explicit one wins.
- episode length: dm_control's own time limit in simulator steps (every task here: 1000 = time limit / control
  timestep, e.g. walker 25 s / 0.025 s), except reacher, which keeps this project's 200-step episodes (the findings;
  its datasets, runs, tests and the demo use them).
- success: only reacher defines one (env.episode_success: the fingertip in the target on each of the last 10
  steps); every other task reports its return only (dm_control rewards in [0, 1] per step, so at most 1000).

Task names: dm_control's `domain-task` (`walker-walk`); reacher's keep their old short names `easy` / `hard`
(existing datasets, runs and the demo use them), `reacher-easy` / `reacher-hard` being aliases of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from vjepa_robot_client.contract import TASK_ALIASES, TASKS, Task

REACHER_STATE_DIM = 8  # cos, sin of the 2 joint angles, to_target (2), velocity (2): env.state_features


def reacher_state_features(obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Reacher's oracle features (env.state_features): cos, sin of the joint angles, to_target, velocity -> (8,).

    Raw unwrapped angles clone much worse (docs/background.md): the shoulder turns freely, so angles are unbounded.
    """
    pos = obs["position"]
    return np.concatenate([np.cos(pos), np.sin(pos), obs["to_target"], obs["velocity"]]).astype(np.float32)


@dataclass(frozen=True)
class TaskSpec:
    """One task's settings. `obs_keys` (with their sizes) is the order in which a non-reacher observation is
    flattened into the state features; reacher flattens through its own oracle features instead."""

    name: str  # the contract's Task value
    domain: str  # dm_control suite domain
    task: str  # dm_control suite task
    action_dim: int  # every action in [-1, 1] (dm_control's action specs for these tasks)
    obs_keys: tuple[tuple[str, int], ...]  # (observation key, flattened size), in flattening order
    state_dim: int
    camera_id: int = 0
    image_size: int = 256
    action_repeat: int = 2
    episode_steps: int = 1000  # simulator steps
    has_success: bool = False
    control_timestep: float = 0.02  # s per simulator (control) step, dm_control's; GIF timing
    state_fn: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None

    @property
    def is_reacher(self) -> bool:
        return self.domain == "reacher"

    def state(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The observation dict -> (state_dim,) float32 state features."""
        if self.state_fn is not None:
            return self.state_fn(obs)
        x = np.concatenate([np.asarray(obs[k], np.float64).reshape(-1) for k, _ in self.obs_keys]).astype(np.float32)
        assert x.shape == (self.state_dim,), (self.name, x.shape)
        return x


def _spec(name: str, action_dim: int, obs_keys: tuple[tuple[str, int], ...], **kw) -> TaskSpec:
    domain, task = name.split("-", 1)
    return TaskSpec(name, domain, task.replace("-", "_"), action_dim, obs_keys, sum(n for _, n in obs_keys), **kw)


_REACHER = dict(
    action_repeat=4, episode_steps=200, has_success=True, state_fn=reacher_state_features, control_timestep=0.02
)
_REACHER_OBS = (("position", 2), ("to_target", 2), ("velocity", 2))

TASK_SPECS: dict[str, TaskSpec] = {
    s.name: s
    for s in (
        TaskSpec("easy", "reacher", "easy", 2, _REACHER_OBS, REACHER_STATE_DIM, **_REACHER),
        TaskSpec("hard", "reacher", "hard", 2, _REACHER_OBS, REACHER_STATE_DIM, **_REACHER),
        # observation sizes: dm_control's observation_spec() of each task (walker: 14 orientations, height, 9 vel.)
        _spec("walker-stand", 6, (("orientations", 14), ("height", 1), ("velocity", 9)), control_timestep=0.025),
        _spec("walker-walk", 6, (("orientations", 14), ("height", 1), ("velocity", 9)), control_timestep=0.025),
        _spec("cheetah-run", 6, (("position", 8), ("velocity", 9)), action_repeat=4, control_timestep=0.01),
        _spec("finger-spin", 2, (("position", 4), ("velocity", 3), ("touch", 2))),
        _spec("cartpole-balance", 1, (("position", 3), ("velocity", 2)), action_repeat=8, control_timestep=0.01),
        _spec("cartpole-swingup", 1, (("position", 3), ("velocity", 2)), action_repeat=8, control_timestep=0.01),
    )
}
assert tuple(TASK_SPECS) == TASKS, "the tasks specified here are the contract's Task, no more, no less"

# CortexBench's five DMC tasks (eai-vc supported_envs.py), by this tool's names
CORTEXBENCH_TASKS: tuple[str, ...] = ("walker-stand", "walker-walk", "easy", "cheetah-run", "finger-spin")


def canonical_task(name: str | Task) -> str:
    """A task name or alias -> the registry's name (`reacher-easy` -> `easy`); ValueError naming the choices."""
    value = name.value if isinstance(name, Task) else str(name)
    value = TASK_ALIASES.get(value, value)
    if value not in TASK_SPECS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)} (or reacher-easy, reacher-hard)")
    return value


def task_spec(name: str | Task) -> TaskSpec:
    return TASK_SPECS[canonical_task(name)]


def has_success(name: str | Task) -> bool:
    return task_spec(name).has_success


def action_repeat(name: str | Task, given: int | None = None) -> int:
    """Simulator steps per action: `given` when a caller chose one, else the task's own (TaskSpec.action_repeat:
    the default SAC's requests, `train_sac` and the Gymnasium envs read)."""
    return int(given) if given is not None else task_spec(name).action_repeat


__all__ = ["TaskSpec", "TASK_SPECS", "CORTEXBENCH_TASKS", "canonical_task", "task_spec", "has_success", "action_repeat"]
