"""dm_control suite tasks as a recipe of small wrappers (DrQ-v2 style), plus the one success definition.

    env = make(task="easy", episode_steps=200, image_size=256)   # frames from the task's camera, 8-frame windows
    ts = env.reset(seed=7)
    while not ts.last():
        ts = env.step(policy(ts))
    ts.window  # (8, 256, 256, 3) uint8: the last 8 frames, the first frame repeated at the start

Each wrapper does one job and passes everything else through: episode length, action repeat, pixels,
frame window. `TimeStep` is typed; `observation` holds the simulator state: reacher's position, to_target,
velocity, or another task's own observation dict (walker: orientations, height, velocity). Every task's settings
(camera, action and state dims, success) come from vjepa_robot_lab/envs/tasks.py; success is reacher's only.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from vjepa_robot_client.contract import check_action_repeat
from vjepa_robot_client.window import WINDOW_FRAMES, WindowBuffer
from vjepa_robot_lab import _gl  # noqa: F401  (MUJOCO_GL default before dm_control loads)
from vjepa_robot_lab.envs.tasks import REACHER_STATE_DIM, reacher_state_features, task_spec

CAMERA_ID = 0  # the fixed top-down camera; physics.render() defaults to the free camera (docs/background.md)
DEFAULT_EPISODE_STEPS = 200  # as in the findings
SUCCESS_LAST_STEPS = 10
CONTROL_TIMESTEP = 0.02  # seconds (dm_control reacher)
# Seeds: training episodes (datasets, SAC) draw from [0, EVAL_SEED_BASE); evaluation from [EVAL_SEED_BASE, 2**31).
EVAL_SEED_BASE = 1_000_000_000


def episode_success(rewards: np.ndarray | list[float]) -> bool:
    """THE success definition, used by experts, BC, SAC, eval and reports alike.

    An episode succeeds when the fingertip is inside the target (reward 1) on each of its last 10 steps.
    """
    r = np.asarray(rewards, dtype=np.float64)
    return bool(r.size >= SUCCESS_LAST_STEPS and np.all(r[-SUCCESS_LAST_STEPS:] >= 1.0))


def task_success(task: str, rewards: np.ndarray | list[float]) -> bool | None:
    """episode_success where the task defines success (reacher), else None: those tasks report return only."""
    return episode_success(rewards) if task_spec(task).has_success else None


def train_episode_seed(dataset_seed: int, episode: int) -> int:
    """Seed of training episode `episode` of a dataset (or SAC env) seeded `dataset_seed`; < EVAL_SEED_BASE."""
    return (int(dataset_seed) * 100_003 + int(episode)) % EVAL_SEED_BASE


def eval_episode_seed(eval_seed: int, episode: int) -> int:
    """Seed of evaluation episode `episode`; always >= EVAL_SEED_BASE, so never a training seed."""
    return EVAL_SEED_BASE + (int(eval_seed) + int(episode)) % (2**31 - 1 - EVAL_SEED_BASE)


# ----------------------------------------------------------------------------------------------------------------
# Time steps
# ----------------------------------------------------------------------------------------------------------------


class StepType(enum.IntEnum):
    FIRST = 0
    MID = 1
    LAST = 2


@dataclass(frozen=True)
class TimeStep:
    step_type: StepType
    observation: dict[str, np.ndarray]  # float64; reacher: position, to_target, velocity (2,) each; else the task's
    reward: float = 0.0
    action: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # the action that led here
    frame: np.ndarray | None = None  # (H, W, 3) uint8
    window: np.ndarray | None = None  # (8, H, W, 3) uint8
    step: int = 0  # control steps taken so far in the episode

    def first(self) -> bool:
        return self.step_type == StepType.FIRST

    def last(self) -> bool:
        return self.step_type == StepType.LAST


class Env(Protocol):
    def reset(self, seed: int | None = None) -> TimeStep: ...
    def step(self, action: np.ndarray) -> TimeStep: ...
    @property
    def physics(self) -> Any: ...


class RendererUnavailable(RuntimeError):
    pass


# ----------------------------------------------------------------------------------------------------------------
# Base env and wrappers
# ----------------------------------------------------------------------------------------------------------------


class SuiteEnv:
    """A dm_control suite task (no time limit of its own; EpisodeLength ends episodes). Reward not shown in pixels.

    `spec` (tasks.TaskSpec) names its settings; actions are clipped to [-1, 1] (every registered task's range)."""

    def __init__(self, task: str = "easy", seed: int = 0):
        from dm_control import suite

        self.spec = task_spec(task)  # ValueError naming the tasks for an unknown one
        self.task = self.spec.name
        self._env = suite.load(
            self.spec.domain,
            self.spec.task,
            task_kwargs={"random": np.random.RandomState(seed), "time_limit": float("inf")},
            visualize_reward=False,  # True colours the body by reward: it would leak the reward into pixels
        )
        self._keys = ("position", "to_target", "velocity") if self.spec.is_reacher else None

    @property
    def physics(self):
        return self._env.physics

    def reset(self, seed: int | None = None) -> TimeStep:
        if seed is not None:
            self._env.task._random = np.random.RandomState(seed)
        ts = self._env.reset()
        no_action = np.zeros(self.spec.action_dim, np.float32)
        return TimeStep(StepType.FIRST, _obs(ts.observation, self._keys), 0.0, no_action)

    def step(self, action: np.ndarray) -> TimeStep:
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(self.spec.action_dim), -1.0, 1.0)
        ts = self._env.step(action)
        return TimeStep(
            StepType.MID, _obs(ts.observation, self._keys), float(ts.reward or 0.0), action.astype(np.float32)
        )

    def close(self) -> None:
        """Free the MuJoCo data and the OpenGL/MuJoCo render contexts now (dm_control's Environment.close is a
        no-op; Physics.free does the work and is idempotent). Wrappers forward close() here."""
        self._env.physics.free()


Reacher = SuiteEnv  # the name this class had while reacher was the only task


def _obs(observation, keys: tuple[str, ...] | None) -> dict[str, np.ndarray]:
    """Copies of the observation arrays (float64): reacher's three, or every key of another task's observation."""
    return {k: np.asarray(observation[k], dtype=np.float64).copy() for k in (keys or observation.keys())}


class _Wrapper:
    def __init__(self, env):
        self._env = env

    @property
    def physics(self):
        return self._env.physics

    def __getattr__(self, name):
        return getattr(self._env, name)


class SimRewards(_Wrapper):
    """Innermost wrapper: records every simulator-step reward of the episode (`sim_rewards`), so success is
    judged on simulator steps even under action repeat (ActionRepeat sums rewards)."""

    def __init__(self, env):
        super().__init__(env)
        self.sim_rewards: list[float] = []

    def reset(self, seed=None):
        self.sim_rewards = []
        return self._env.reset(seed)

    def step(self, action):
        ts = self._env.step(action)
        self.sim_rewards.append(ts.reward)
        return ts


class ActionRepeat(_Wrapper):
    """Repeat each action n times, summing rewards (the published SAC/DrQ protocol repeats 4 on reacher)."""

    def __init__(self, env, n: int):
        super().__init__(env)
        if n < 1:
            raise ValueError(f"action_repeat must be >= 1, got {n}")
        self.n = n

    def reset(self, seed=None):
        return self._env.reset(seed)

    def step(self, action):  # pixels (if any) are rendered once per agent step, after the last repeat
        total = 0.0
        for _ in range(self.n):
            ts = self._env.step(action)
            total += ts.reward
            if ts.last():
                break
        return replace(ts, reward=total)


class EpisodeLength(_Wrapper):
    """End every episode after `steps` control steps (default 200, as in the findings)."""

    def __init__(self, env, steps: int):
        super().__init__(env)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps
        self._t = 0

    def reset(self, seed=None):
        self._t = 0
        return replace(self._env.reset(seed), step=0)

    def step(self, action):
        self._t += 1
        ts = self._env.step(action)
        return replace(ts, step=self._t, step_type=StepType.LAST if self._t >= self.steps else ts.step_type)


class Pixels(_Wrapper):
    """Attach a (size, size, 3) uint8 render from the task's camera (tasks.TaskSpec.camera_id) to every time step."""

    def __init__(self, env, size: int = 256, camera_id: int = CAMERA_ID):
        super().__init__(env)
        self.size, self.camera_id = size, camera_id

    def render(self) -> np.ndarray:
        return self.physics.render(height=self.size, width=self.size, camera_id=self.camera_id)

    def reset(self, seed=None):
        return replace(self._env.reset(seed), frame=self.render())

    def step(self, action):
        return replace(self._env.step(action), frame=self.render())


class FrameWindow(_Wrapper):
    """Attach the last `frames` frames as one (frames, H, W, 3) window (the window rule: vjepa_robot_client.window)."""

    def __init__(self, env, frames: int = WINDOW_FRAMES):
        super().__init__(env)
        self.frames = frames
        self._buf: WindowBuffer | None = None

    def _attach(self, ts: TimeStep, reset: bool) -> TimeStep:
        if self._buf is None:
            self._buf = WindowBuffer(1, *ts.frame.shape[:2], size=self.frames)
        window = self._buf.push(ts.frame[None], [0] if reset else None)[0]
        return replace(ts, window=window)  # a view of a fresh array: the next push makes a new one

    def reset(self, seed=None):
        return self._attach(self._env.reset(seed), reset=True)

    def step(self, action):
        return self._attach(self._env.step(action), reset=False)


# ----------------------------------------------------------------------------------------------------------------
# The recipe
# ----------------------------------------------------------------------------------------------------------------


def make(
    task: str = "easy",
    *,
    seed: int = 0,
    episode_steps: int = DEFAULT_EPISODE_STEPS,
    image_size: int = 256,
    window: int = WINDOW_FRAMES,
    action_repeat: int = 1,
) -> Env:
    """Build a suite task's env (tasks.py names the tasks). image_size=0 renders nothing (state-only: experts,
    state-feature BC/SAC); frames come from the task's camera.

    `episode_steps` counts simulator steps and must be a multiple of `action_repeat`; `TimeStep.step` counts
    agent steps (equal without a repeat). `env.sim_rewards` holds every simulator step's reward.
    """
    check_action_repeat(episode_steps, action_repeat)
    if image_size:
        check_renderer()
    base = SuiteEnv(task, seed)
    env: Any = SimRewards(base)
    env = ActionRepeat(env, action_repeat) if action_repeat > 1 else env
    env = EpisodeLength(env, episode_steps // action_repeat)  # agent steps
    if image_size:
        env = Pixels(env, image_size, base.spec.camera_id)
        env = FrameWindow(env, window) if window else env
    return env


_RENDER_OK: bool | None = None


def check_renderer() -> None:
    """Fail early, naming both headless back ends, when no renderer works."""
    global _RENDER_OK
    if _RENDER_OK:
        return
    backend = os.environ.get("MUJOCO_GL", "egl")
    try:
        from dm_control import suite

        env = suite.load("reacher", "easy")
        env.physics.render(height=16, width=16, camera_id=CAMERA_ID)
        _RENDER_OK = True
    except Exception as exc:
        raise RendererUnavailable(
            f"no headless renderer works (MUJOCO_GL={backend}): {type(exc).__name__}: {exc}. "
            "vjepa-robot renders with MUJOCO_GL=egl (Mesa's EGL, libegl1 + libgl1-mesa-dri) or MUJOCO_GL=osmesa "
            "(libosmesa6); install one of them and set MUJOCO_GL accordingly."
        ) from exc


state_features = reacher_state_features  # reacher's oracle features (8,) float32; other tasks: TaskSpec.state


def state_features_batch(position: np.ndarray, to_target: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Vectorised state_features over (N, 2) arrays -> (N, 8) float32."""
    return np.concatenate([np.cos(position), np.sin(position), to_target, velocity], axis=1).astype(np.float32)


STATE_DIM = REACHER_STATE_DIM  # reacher's; another task's is tasks.task_spec(task).state_dim


def finger_target_xy(physics) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray(physics.named.data.geom_xpos["finger"][:2], dtype=np.float32).copy(),
        np.asarray(physics.named.data.geom_xpos["target"][:2], dtype=np.float32).copy(),
    )
