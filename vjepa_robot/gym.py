"""Gymnasium environments over the project's reacher and feature sources (Gymnasium >= 1.0 API).

    import gymnasium as gym
    import vjepa_robot  # registers the ids below when gymnasium is installed (the `gym` extra)

    env = gym.make("vjepa_robot/reacher-easy-v0", features="state")                # (8,) float32 observations
    env = gym.make("vjepa_robot/reacher-hard-v0", features="vjepa2", encoder_url="http://127.0.0.1:8001",
                   image_size=64, action_repeat=4)                                   # (D,) float32 embeddings
    venv = gym.make_vec("vjepa_robot/reacher-easy-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        features="vjepa2", encoder_url=...)  # one frame-stream step per vector step

Nothing is reimplemented: the simulator recipe is vjepa_robot_lab/envs/env.py (`make`, the DrQ-v2-style wrappers), the
observations are vjepa_robot_lab/perception/features.py's feature sources (`vjepa2` through the encoder's frame
streams via the
SDK, `state`, `random`), and the vector form wraps vjepa_robot_lab/envs/vec_env.py's `ReacherVecEnv`, the loop the
project's own SAC trains in. So an SB3/CleanRL agent sees exactly the observations, rewards and seeds ours does.

Episodes end only by the time limit (`episode_steps` simulator steps): `truncated=True`, never `terminated`, so an
agent bootstraps through the end (reacher has no terminal state). Seeds follow the project's ranges
(vjepa_robot_lab/envs/env.py): `reset(seed=s)` starts a fresh sequence whose episode k is training episode
`train_episode_seed(s, k)` (< 1e9); with `split="eval"` it is evaluation episode `eval_episode_seed(s, k)` (>= 1e9),
a range no training episode uses. A reset without a seed continues the sequence; the very first one without a seed
draws `s` from Gymnasium's own np_random (unseeded = random, as Gymnasium defines it).

Import cost: this module imports gymnasium, numpy and the SDK's contract (its task names); dm_control, torch and
LanceDB load when an env is built (the trainer extra is needed then). The encoder image has no gymnasium and
registers nothing.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from vjepa_robot_client.contract import TASKS as CONTRACT_TASKS

# the contract's tasks: a new task is its TaskSpec (vjepa_robot_lab/envs/tasks.py) and its name in the contract.
# Importing the contract costs this module ~0.24 s of CPU (0.13 -> 0.37 s, medians of 15 fresh interpreters); the CLI,
# which imports this module, loads the contract anyway, and building any env loads it too.
TASKS = tuple(CONTRACT_TASKS)
# reacher's ids as before; another task's: vjepa_robot/<task>-v0 (e.g. vjepa_robot/walker-walk-v0)
ENV_IDS = {
    task: f"vjepa_robot/reacher-{task}-v0" if task in ("easy", "hard") else f"vjepa_robot/{task}-v0" for task in TASKS
}
DEFAULTS: dict[str, Any] = {  # TrainSACRequest's defaults: the project's SAC protocol (1000 steps)
    "features": "state",
    "episode_steps": 1000,
    "action_repeat": None,  # the task's own (TaskSpec.action_repeat: reacher, cheetah 4; walker, finger 2; cartpole 8)
    "image_size": 256,
}
SPLITS = ("train", "eval")
CONTROL_TIMESTEP = 0.02  # seconds per simulator step (vjepa_robot_lab/envs/env.py)


def register() -> None:
    """Register one env id per task, by entry-point strings: gymnasium.make imports the heavy parts, not this."""
    for task, env_id in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point="vjepa_robot.gym:ReacherEnv",
            vector_entry_point="vjepa_robot.gym:ReacherVectorEnv",
            kwargs={"task": task},
            # No TimeLimit wrapper: the trainer's EpisodeLength wrapper ends episodes (truncated=True), counted in
            # simulator steps, so `episode_steps` and `action_repeat` stay consistent whatever the caller passes.
            max_episode_steps=None,
            disable_env_checker=False,
        )


def _feature_source(features, encoder_url: str | None, token: str | None, task: str = "easy"):
    """A vjepa_robot_lab.perception.features.FeatureSource from its name, or the caller's own instance (shared
    clients)."""
    if not isinstance(features, str):
        return features, False  # not ours: the caller closes it
    from vjepa_robot_lab.perception.features import make_feature_source

    return make_feature_source(features, encoder_url=encoder_url, token=token, task=task), True


def _action_dim(task: str) -> int:
    from vjepa_robot_lab.envs.tasks import task_spec  # at env build time: the import stays cheap

    return task_spec(task).action_dim


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)} (training or evaluation seeds)")
    return split


def _box(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(int(dim),), dtype=np.float32)


ACTION_SPACE = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)  # joint torques (contract.ACTION_DIM = 2)


class ReacherEnv(gymnasium.Env):
    """One dm_control reacher; observation = the feature source's (D,) float32 vector of the current time step.

    Keyword arguments: task (easy|hard), features (vjepa2|state|random, or a FeatureSource instance),
    encoder_url (vjepa2), image_size (rendered frame size; vjepa2 only, and rgb_array renders), action_repeat,
    episode_steps (simulator steps; a multiple of action_repeat), split (train|eval seeds), token, render_mode.
    info: `episode_seed` every step; at the episode's end also `success` (env.episode_success on simulator steps)
    and `sim_return`.
    """

    metadata = {
        "render_modes": ["rgb_array"],
        "render_fps": int(round(1 / (CONTROL_TIMESTEP * 4))),  # reacher's rate; each env sets its own below
    }

    def __init__(
        self,
        task: str = "easy",
        features="state",
        encoder_url: str | None = None,
        image_size: int = DEFAULTS["image_size"],
        action_repeat: int | None = DEFAULTS["action_repeat"],
        episode_steps: int = DEFAULTS["episode_steps"],
        split: str = "train",
        token: str | None = None,
        render_mode: str | None = None,
    ):
        from vjepa_robot_lab.envs.tasks import action_repeat as task_action_repeat
        from vjepa_robot_lab.envs.vec_env import make_env

        action_repeat = task_action_repeat(task, action_repeat)  # left out: the task's own, as SAC's requests
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unknown render_mode {render_mode!r}: choose rgb_array or None")
        self.split = _check_split(split)
        self.render_mode = render_mode
        self.task, self.image_size, self.action_repeat = task, int(image_size), int(action_repeat)
        self.episode_steps = int(episode_steps)
        self.features, self._owns_features = _feature_source(features, encoder_url, token, task)
        frames = self.image_size if getattr(self.features, "needs_frames", False) else 0
        # the trainer's own recipe (SimRewards, ActionRepeat, EpisodeLength, Pixels, FrameWindow); checks the task,
        # the repeat and the length with the project's error messages
        self._env = make_env(
            task, seed=0, episode_steps=self.episode_steps, action_repeat=self.action_repeat, image_size=frames
        )
        dt = self._env.spec.control_timestep  # s per simulator step: the task's (tasks.py; reacher 0.02)
        self.metadata = {**self.metadata, "render_fps": int(round(1 / (dt * self.action_repeat)))}
        self.observation_space = _box(self.features.dim)
        self.action_dim = _action_dim(task)
        self.action_space = (
            ACTION_SPACE if self.action_dim == 2 else spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        )
        self._seed_base: int | None = None
        self._episode = 0
        self._ep_seed = 0
        self._ts = None

    # -- seeds: the project's training / evaluation ranges --------------------------------------------------------
    def _next_episode_seed(self) -> int:
        from vjepa_robot_lab.envs.env import eval_episode_seed, train_episode_seed

        rule = train_episode_seed if self.split == "train" else eval_episode_seed
        seed = rule(self._seed_base, self._episode)
        self._episode += 1
        return seed

    def _observe(self, ts) -> np.ndarray:
        x = np.asarray(self.features.online([ts], [self._ep_seed]), dtype=np.float32)  # (1, D)
        return x[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._seed_base is None:
            # a seed starts a fresh sequence; unseeded first reset: a base drawn from Gymnasium's np_random
            self._seed_base = int(seed) if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
            self._episode = 0
        self._ep_seed = self._next_episode_seed()
        self._ts = self._env.reset(self._ep_seed)
        return self._observe(self._ts), {"episode_seed": self._ep_seed}

    def step(self, action):
        from vjepa_robot_lab.envs.env import task_success

        if self._ts is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        if self._ts.last():
            raise gymnasium.error.ResetNeeded("the episode ended (truncated): call reset() before step()")
        self._ts = self._env.step(np.asarray(action, dtype=np.float32).reshape(self.action_dim))
        truncated = self._ts.last()  # the time limit, the only way a reacher episode ends
        info: dict[str, Any] = {"episode_seed": self._ep_seed}
        if truncated:
            info["success"] = task_success(self.task, self._env.sim_rewards)  # None: the task defines none
            info["sim_return"] = float(np.sum(self._env.sim_rewards))
        return self._observe(self._ts), float(self._ts.reward), False, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._ts is not None and self._ts.frame is not None:
            return self._ts.frame  # (H, W, 3) uint8, the frame the features saw
        size = self.image_size or 256
        return self._env.physics.render(height=size, width=size, camera_id=self._env.spec.camera_id)

    def close(self):
        if self._owns_features:
            self.features.close()
        super().close()


class ReacherVectorEnv(VectorEnv):
    """`num_envs` reachers in lockstep: the trainer's ReacherVecEnv (SAC's training loop) behind Gymnasium's API.

    One feature-source call per vector step: for `vjepa2` ONE frame-stream step carrying the N newest frames (the
    encoder keeps the windows), plus one POST /encode of full windows for the envs whose episode just ended.
    Autoreset is Gymnasium's SAME_STEP mode (the trainer's): where truncations[i], obs[i] already is the next
    episode's first observation and infos["final_obs"][i] the ended episode's last one (infos["_final_obs"] marks
    which), infos["final_info"] holds `success`, `sim_return` and `episode_seed` of the ended episodes.
    Episode k of env i is episode k * num_envs + i of the seed sequence (train_episode_seed / eval_episode_seed).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        task: str = "easy",
        features="state",
        encoder_url: str | None = None,
        image_size: int = DEFAULTS["image_size"],
        action_repeat: int | None = DEFAULTS["action_repeat"],
        episode_steps: int = DEFAULTS["episode_steps"],
        split: str = "train",
        token: str | None = None,
        render_mode: str | None = None,
    ):
        from vjepa_robot_lab.envs.tasks import action_repeat as task_action_repeat
        from vjepa_robot_lab.envs.vec_env import ReacherVecEnv

        action_repeat = task_action_repeat(task, action_repeat)
        if render_mode is not None:
            raise ValueError("the vector env does not render: build single envs with render_mode='rgb_array'")
        self.split = _check_split(split)
        self.features, self._owns_features = _feature_source(features, encoder_url, token, task)
        self.num_envs = int(num_envs)
        cls = _EvalSeeded(ReacherVecEnv) if self.split == "eval" else ReacherVecEnv
        self._venv = cls(
            self.features,
            num_envs=self.num_envs,
            task=task,
            episode_steps=int(episode_steps),
            action_repeat=int(action_repeat),
            seed=0,
            image_size=int(image_size),
        )
        self.single_observation_space = _box(self.features.dim)
        a = _action_dim(task)
        self.single_action_space = ACTION_SPACE if a == 2 else spaces.Box(-1.0, 1.0, (a,), np.float32)
        self.observation_space = spaces.Box(
            -np.inf, np.inf, shape=(self.num_envs, int(self.features.dim)), dtype=np.float32
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.num_envs, a), dtype=np.float32)
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self._venv.seed_base = int(seed) if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
            self._venv.episodes_started = 0
            self._seeded = True
        obs = self._venv.reset()  # (N, D) float32
        seeds = np.asarray(self._venv._ep_seed, dtype=np.int64)
        return obs, {"episode_seed": seeds, "_episode_seed": np.ones(self.num_envs, bool)}

    def step(self, actions):
        obs, rewards, dones, infos = self._venv.step(np.asarray(actions, dtype=np.float32))
        n = self.num_envs
        out: dict[str, Any] = {}
        if dones.any():
            final_obs = np.empty(n, dtype=object)
            ended = self._venv.completed[-int(dones.sum()) :]  # appended in env order by ReacherVecEnv.step
            # bool where the task defines success (reacher); otherwise an object array of None, not a silent False
            has = any(e["success"] is not None for e in ended)
            final_info = {
                "success": np.zeros(n, bool) if has else np.full(n, None, dtype=object),
                "sim_return": np.zeros(n),
                "episode_seed": np.zeros(n, np.int64),
            }
            for k, i in enumerate(np.flatnonzero(dones)):
                final_obs[i] = infos[i]["terminal_observation"]
                final_info["success"][i] = ended[k]["success"]
                final_info["sim_return"][i] = ended[k]["return"]
                final_info["episode_seed"][i] = ended[k]["seed"]
            final_info["_success"] = final_info["_sim_return"] = final_info["_episode_seed"] = dones.copy()
            out |= {
                "final_obs": final_obs,
                "_final_obs": dones.copy(),
                "final_info": final_info,
                "_final_info": dones.copy(),
            }
        # every end is a time limit (ReacherVecEnv marks TimeLimit.truncated): truncated, never terminated
        return obs, rewards.astype(np.float64), np.zeros(n, bool), dones.copy(), out

    def close_extras(self, **kwargs):
        self._venv.close()
        if self._owns_features:
            self.features.close()


def _EvalSeeded(base):
    """ReacherVecEnv on evaluation seeds: the one change is the seed rule of `_reset_env`."""
    from vjepa_robot_lab.envs.env import eval_episode_seed

    class EvalSeededVecEnv(base):
        def _reset_env(self, i: int):  # ReacherVecEnv._reset_env with eval_episode_seed (a test checks the seeds)
            self._ep_seed[i] = eval_episode_seed(self.seed_base, self.episodes_started)
            self.episodes_started += 1
            self._ret[i] = 0.0
            self._ts[i] = self.envs[i].reset(self._ep_seed[i])
            return self._ts[i]

    return EvalSeededVecEnv


def make_vec(task: str = "easy", num_envs: int = 8, **kwargs) -> ReacherVectorEnv:
    """gymnasium.make_vec(ENV_IDS[task], num_envs, vectorization_mode="vector_entry_point", **kwargs), spelled short."""
    return gymnasium.make_vec(ENV_IDS[task], num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


register()

__all__ = ["ENV_IDS", "ReacherEnv", "ReacherVectorEnv", "make_vec", "register"]
