"""Suite-task environments (vjepa_robot_lab/envs/tasks.py) stepping in lockstep, observed through a feature source
(SAC's training envs).

    venv = ReacherVecEnv(features, num_envs=16, task="easy", episode_steps=1000, action_repeat=4, seed=0)
    obs = venv.reset()                       # (N, D) float32 features
    obs, reward, done, infos = venv.step(a)  # a: (N, A) in [-1, 1] (A: the task's action_dim); one features call
    # where done[i]: infos[i]["terminal_observation"] is the episode's last observation, obs[i] the next one's first

Episode length and step counts are in *simulator* steps: with action_repeat=4, a 1000-step episode is 250
agent steps, and every agent step advances the env-step counter by 4. Episodes end only by time limit, so
every `done` carries `TimeLimit.truncated=True` and SAC bootstraps through it.
For `vjepa2` the vector step renders each env's frame and sends the N newest frames as ONE frame-stream step (the
encoder keeps the windows); the terminal windows of envs that just finished go in one POST /encode of full windows
(features.online_detached). The replay buffer then stores only the embeddings.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from vjepa_robot_client.contract import ACTION_DIM, check_action_repeat
from vjepa_robot_lab.envs.env import TimeStep, make, task_success, train_episode_seed
from vjepa_robot_lab.envs.tasks import task_spec

__all__ = ["ACTION_DIM", "ReacherVecEnv", "agent_steps", "close_envs", "closes_envs", "make_env"]


def agent_steps(episode_steps: int, action_repeat: int) -> int:
    """Agent (policy) steps in an episode of `episode_steps` simulator steps (the contract's one rule)."""
    return check_action_repeat(episode_steps, action_repeat)


# The envs made inside the innermost `closes_envs` call of this thread (None: outside any); a ContextVar, so each job
# thread has its own.
_ENV_SCOPE: contextvars.ContextVar[list | None] = contextvars.ContextVar("vjepa_robot_env_scope", default=None)
F = TypeVar("F", bound=Callable)


def make_env(task: str, *, seed: int, episode_steps: int, action_repeat: int, image_size: int):
    """env.make's recipe; episode_steps counts simulator steps, `env.sim_rewards` records each one's reward.
    Inside a `closes_envs` function the env is closed when that function returns or raises."""
    agent_steps(episode_steps, action_repeat)  # the clear error for a length that is not a multiple
    env = make(task, seed=seed, episode_steps=episode_steps, image_size=image_size, action_repeat=action_repeat)
    scope = _ENV_SCOPE.get()
    if scope is not None:
        scope.append(env)
    return env


def closes_envs(fn: F) -> F:
    """Decorator: every env that make_env builds during a call of `fn` is closed in its `finally` (the envs hold
    MuJoCo data and render contexts; an exception's traceback would otherwise keep them alive)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        made: list = []
        token = _ENV_SCOPE.set(made)
        try:
            return fn(*args, **kwargs)
        finally:
            _ENV_SCOPE.reset(token)
            close_envs(made)

    return wrapper  # type: ignore[return-value]


class ReacherVecEnv:
    """`num_envs` envs of one task in lockstep (the name is from when reacher was the only task); observations are
    features (N, D) float32, actions (N, A) with A = tasks.task_spec(task).action_dim.

    Episode k of env i (k = 0, 1, ...) is training episode k * num_envs + i of `seed`
    (env.train_episode_seed), so runs are reproducible and never touch evaluation seeds.
    """

    def __init__(
        self,
        features,
        *,
        num_envs: int,
        task: str = "easy",
        episode_steps: int = 1000,
        action_repeat: int = 4,
        seed: int = 0,
        image_size: int = 0,
        first_episode: int = 0,
    ):
        self.features = features
        self.task = task_spec(task).name
        self.action_dim = task_spec(task).action_dim
        self.num_envs = int(num_envs)
        self.action_repeat = int(action_repeat)
        self.seed_base = int(seed)
        size = image_size if getattr(features, "needs_frames", False) else 0
        self.envs: list = []
        try:
            for i in range(num_envs):
                self.envs.append(
                    make_env(
                        task, seed=seed + i, episode_steps=episode_steps, action_repeat=action_repeat, image_size=size
                    )
                )
        except BaseException:
            self.close()  # the envs built so far hold MuJoCo data and render contexts
            raise
        self.episodes_started = int(first_episode)  # global episode counter, saved in checkpoints
        self._ep_seed = [0] * num_envs
        self._ts: list[TimeStep | None] = [None] * num_envs
        self._ret = np.zeros(num_envs)
        self._actions: np.ndarray | None = None
        self.completed: list[dict] = []  # finished training episodes: {"return", "success" (None: no success), "seed"}

    # -- episode bookkeeping ----------------------------------------------------------------------------------
    def _reset_env(self, i: int) -> TimeStep:
        self._ep_seed[i] = train_episode_seed(self.seed_base, self.episodes_started)
        self.episodes_started += 1
        self._ret[i] = 0.0
        self._ts[i] = self.envs[i].reset(self._ep_seed[i])
        return self._ts[i]

    def _encode(self, timesteps: Sequence[TimeStep], seeds: Sequence[int]) -> np.ndarray:
        x = np.asarray(self.features.online(list(timesteps), list(seeds)), dtype=np.float32)  # (B, D)
        assert x.shape == (len(timesteps), self.features.dim), x.shape
        return x

    # -- vector API ---------------------------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        ts = [self._reset_env(i) for i in range(self.num_envs)]
        return self._encode(ts, self._ep_seed)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """actions (N, A) -> obs (N, D) float32, rewards (N,) float32, dones (N,) bool, infos."""
        self._actions = np.clip(np.asarray(actions, dtype=np.float32).reshape(self.num_envs, self.action_dim), -1, 1)
        n = self.num_envs
        rewards = np.zeros(n, np.float32)
        dones = np.zeros(n, bool)
        infos: list[dict] = [{} for _ in range(n)]
        batch_ts, batch_seeds = [], []
        for i, env in enumerate(self.envs):
            ts = env.step(self._actions[i])
            rewards[i] = ts.reward
            self._ret[i] += ts.reward
            batch_ts.append(ts)
            batch_seeds.append(self._ep_seed[i])
        done_idx = [i for i in range(n) if batch_ts[i].last()]
        for i in done_idx:  # start the next episode; its first observation is this step's obs
            dones[i] = True
            rec = {
                "return": float(self._ret[i]),
                "success": task_success(self.task, self.envs[i].sim_rewards),
                "seed": int(self._ep_seed[i]),
            }
            self.completed.append(rec)
            infos[i]["episode"] = {"r": rec["return"], "l": batch_ts[i].step}
            infos[i]["TimeLimit.truncated"] = True  # suite tasks end only by time limit: bootstrap through it
            self._reset_env(i)
        for i in range(n):
            if i not in done_idx:
                self._ts[i] = batch_ts[i]
        # the N lanes step the feature source in lockstep (vjepa2: one frame-stream step; a done lane's next episode
        # starts there); the terminal steps are embedded apart, statelessly (vjepa2: one POST /encode of full windows)
        obs = self._encode(self._ts, self._ep_seed)
        if done_idx:
            term = np.asarray(
                self.features.online_detached([batch_ts[i] for i in done_idx], [batch_seeds[i] for i in done_idx]),
                dtype=np.float32,
            )
            for k, i in enumerate(done_idx):
                infos[i]["terminal_observation"] = term[k]
        return obs, rewards, dones, infos

    def close(self) -> None:
        """Free every env's simulator and render context (idempotent). The feature source is the caller's."""
        envs, self.envs = self.envs, []
        close_envs(envs)

    def __enter__(self) -> ReacherVecEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def close_envs(envs: Sequence) -> None:
    """Close each env (env.Reacher.close: dm_control's Environment.close frees the MuJoCo data and the render
    contexts); one env's failure to close does not keep the others open."""
    errors = []
    for env in envs:
        try:
            env.close()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
