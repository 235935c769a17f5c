"""SAC on frozen features (issue 5): stable-baselines3's SAC, the findings' small networks, durable runs.

    run = ...                                            # services.trainer.runs.RunHandle (or anything alike)
    features = make_feature_source("state")              # or "vjepa2" (encoder over HTTP) / "random"
    metrics = train_sac(TrainSACRequest(), run, features)         # blocks; checkpoints into run.dir
    metrics = train_sac(cfg, run, features, resume=True)          # continues from the last checkpoint
    act = policy_from_checkpoint(run.dir)                # (B, D) float32 -> (B, 2) deterministic actions

Networks (FINDINGS.md, Phase 2): actor Linear(D->256)-ReLU-Linear(256->64)-ReLU-Linear(64->2+2) (mean and
log_std heads; SB3 splits the last layer in two), twin critics Linear(D+2->256)-ReLU-Linear(256->64)-ReLU-
Linear(64->1), Polyak-averaged target critics, automatic entropy tuning (target entropy -dim(A) = -2).

Counting: `total_steps`, `episode_steps`, `eval_every`, `checkpoint_every` and every `env_steps` in the run
record are *simulator* steps; with action_repeat=4 one agent transition is 4 env steps.

Replay memory: features are stored once, as float16, and the next observation is read by index (slot t+1
of the same env); the next observation of an episode's last transition (where the env was reset) is kept
apart. 1M x 1024 features take 2.0 GB instead of SB3's 8.2 GB (float32 obs + next obs); see
bench/SAC_RESULTS.md for the measured RSS.

Checkpoints (run.dir/sac/, replaced atomically): policy.safetensors (actor, critics, target critics,
log entropy coefficient), optim.pt (optimizer state dicts only, loaded with weights_only=True), state.json
(counters, curve, config) and, when `checkpoint_replay` is on, the filled part of the replay buffer as .npy.
No pickle anywhere.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from vjepa_robot_client.contract import TrainSACRequest

from .vec_env import ACTION_DIM, ReacherVecEnv, agent_steps, evaluate_policy

NET_ARCH = [256, 64]  # FINDINGS.md Phase 2 actor and critic hidden sizes
CHECKPOINT_DIR = "sac"  # run.dir/sac (runs.py layout)
CHECKPOINT_FORMAT = 1


class RunLike(Protocol):
    """What train_sac needs from services.trainer.runs.RunHandle."""

    run_id: str
    dir: Path

    def update(self, status=None, metrics: dict | None = None, error=None) -> Any: ...
    def stop_requested(self) -> bool: ...


# ----------------------------------------------------------------------------------------------------------------
# Replay buffer: float16 features, next observation by index
# ----------------------------------------------------------------------------------------------------------------


class HalfReplayBuffer(ReplayBuffer):
    """SB3 ReplayBuffer storing each observation once, as float16.

    Transition (t, env) has next observation observations[t+1, env], except where the episode ended at t:
    then the real terminal observation sits in `terminal_obs[(t, env)]` (the slot t+1 holds the reset
    observation of the next episode). The newest slot is never sampled: its successor is not written yet.
    SB3's own optimize_memory_usage=True cannot handle time-limit endings (SB3 issue 934); this can.
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Box, action_space: spaces.Box,
                 device: torch.device | str = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, obs_dtype=np.float16, n_step: int = 1,
                 gamma: float = 0.99):
        # Skip ReplayBuffer.__init__ (it would allocate float32 obs and next obs); set up the same fields.
        super(ReplayBuffer, self).__init__(buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 2)
        self.optimize_memory_usage = False
        self.n_step, self.gamma = int(n_step), float(gamma)
        self.handle_timeout_termination = handle_timeout_termination
        self.observations = np.zeros((self.buffer_size, self.n_envs, *self.obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((self.buffer_size, self.n_envs, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.dones = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.timeouts = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.has_terminal = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.terminal_obs: dict[tuple[int, int], np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held (arrays plus terminal observations)."""
        arrays = (self.observations, self.actions, self.rewards, self.dones, self.timeouts, self.has_terminal)
        return int(sum(a.nbytes for a in arrays) + sum(v.nbytes for v in self.terminal_obs.values()))

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        p = self.pos
        self.observations[p] = np.asarray(obs).reshape(self.n_envs, *self.obs_shape)
        for e in np.flatnonzero(self.has_terminal[p]):  # the slot is overwritten: drop its old terminal obs
            self.terminal_obs.pop((p, int(e)), None)
        self.has_terminal[p] = False
        done = np.asarray(done).reshape(self.n_envs)
        next_obs = np.asarray(next_obs).reshape(self.n_envs, *self.obs_shape)
        for e in np.flatnonzero(done):
            self.terminal_obs[(p, int(e))] = next_obs[e].astype(self.observations.dtype)
            self.has_terminal[p, e] = True
        self.actions[p] = np.asarray(action).reshape(self.n_envs, self.action_dim)
        self.rewards[p] = np.asarray(reward).reshape(self.n_envs)
        self.dones[p] = done
        if self.handle_timeout_termination:
            self.timeouts[p] = [info.get("TimeLimit.truncated", False) for info in infos]
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full, self.pos = True, 0

    def size(self) -> int:
        """Transitions (per env) that can be sampled: all but the newest n_step slots (successors unwritten)."""
        return (self.buffer_size if self.full else self.pos) - self.n_step

    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        n = self.size()
        if n < 1:
            raise ValueError("replay buffer holds fewer than 2 steps: raise learning_starts")
        if self.full:  # slots pos, pos+1, ..., pos-2 (oldest first), never the newest pos-1
            inds = (self.pos + np.random.randint(0, n, size=batch_size)) % self.buffer_size
        else:
            inds = np.random.randint(0, n, size=batch_size)
        return self._get_samples(inds, env)

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> ReplayBufferSamples:
        env_inds = np.random.randint(0, self.n_envs, size=len(batch_inds))
        obs = self.observations[batch_inds, env_inds].astype(np.float32)
        if self.n_step == 1:
            next_obs = self.next_observations_at(batch_inds, env_inds)
            dones = self.dones[batch_inds, env_inds] * (1 - self.timeouts[batch_inds, env_inds])
            data = (obs, self.actions[batch_inds, env_inds], next_obs, dones.reshape(-1, 1),
                    self.rewards[batch_inds, env_inds].reshape(-1, 1))
            return ReplayBufferSamples(*tuple(map(self.to_torch, data)))
        # n-step return (DrQ-v2 uses n=3; SB3's NStepReplayBuffer does the same for SAC): sum of gamma^k r_{t+k}
        # until n steps or the episode's end, bootstrapping with gamma^(steps taken) from the state reached.
        b = len(batch_inds)
        ret, disc = np.zeros(b, np.float32), np.ones(b, np.float32)
        open_, last = np.ones(b, bool), batch_inds.copy()
        dones = np.zeros(b, np.float32)
        for k in range(self.n_step):
            t = (batch_inds + k) % self.buffer_size
            ret += open_ * disc * self.rewards[t, env_inds]
            disc = np.where(open_, disc * self.gamma, disc)
            last = np.where(open_, t, last)
            ended = open_ & self.has_terminal[t, env_inds]  # episode ended (or run cut) at t
            dones = np.where(ended, self.dones[t, env_inds] * (1 - self.timeouts[t, env_inds]), dones)
            open_ &= ~ended
        next_obs = self.next_observations_at(last, env_inds)
        data = (obs, self.actions[batch_inds, env_inds], next_obs, dones.reshape(-1, 1), ret.reshape(-1, 1))
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)), discounts=self.to_torch(disc.reshape(-1, 1)))

    def next_observations_at(self, batch_inds: np.ndarray, env_inds: np.ndarray) -> np.ndarray:
        """Next observations (B, D) float32 of transitions (slot, env): slot+1, or the kept terminal one."""
        next_obs = self.observations[(batch_inds + 1) % self.buffer_size, env_inds].astype(np.float32)
        for k in np.flatnonzero(self.has_terminal[batch_inds, env_inds]):
            next_obs[k] = self.terminal_obs[(int(batch_inds[k]), int(env_inds[k]))]
        return next_obs

    # -- persistence (.npy only, no pickle) --------------------------------------------------------------------
    def save_npy(self, d: Path) -> None:
        """Write the filled slots; the newest slot is dropped (its successor was never written)."""
        end = self.buffer_size if self.full else self.pos
        for name in ("observations", "actions", "rewards", "dones", "timeouts", "has_terminal"):
            np.save(d / f"replay_{name}.npy", getattr(self, name)[:end], allow_pickle=False)
        keys = np.array(sorted(self.terminal_obs), dtype=np.int64).reshape(-1, 2)
        vals = (np.stack([self.terminal_obs[tuple(k)] for k in keys]) if len(keys)
                else np.zeros((0, *self.obs_shape), self.observations.dtype))
        np.save(d / "replay_terminal_keys.npy", keys, allow_pickle=False)
        np.save(d / "replay_terminal_obs.npy", vals, allow_pickle=False)

    def load_npy(self, d: Path, pos: int, full: bool) -> None:
        for name in ("observations", "actions", "rewards", "dones", "timeouts", "has_terminal"):
            arr = np.load(d / f"replay_{name}.npy", allow_pickle=False)
            if arr.shape[1:] != getattr(self, name).shape[1:] or len(arr) > self.buffer_size:
                raise ValueError(f"checkpointed replay {name} {arr.shape} does not fit {getattr(self, name).shape}")
            getattr(self, name)[: len(arr)] = arr
        keys = np.load(d / "replay_terminal_keys.npy", allow_pickle=False)
        vals = np.load(d / "replay_terminal_obs.npy", allow_pickle=False)
        self.terminal_obs = {(int(t), int(e)): v for (t, e), v in zip(keys, vals)}
        self.pos, self.full = int(pos), bool(full)
        if not (self.pos or self.full):
            return
        # The newest slot's successor was never written (the run stopped mid-episode) and the resumed run
        # starts new episodes. Drop the newest slot, and keep its observation aside as the next observation
        # of the slot before it, whose successor slot is about to be overwritten.
        newest = (self.pos - 1) % self.buffer_size
        prev = (newest - 1) % self.buffer_size
        if self.full or newest > 0:
            for e in range(self.n_envs):
                if not self.has_terminal[prev, e]:
                    self.terminal_obs[(prev, e)] = self.observations[newest, e].copy()
                    self.has_terminal[prev, e] = True
        for e in np.flatnonzero(self.has_terminal[newest]):
            self.terminal_obs.pop((newest, int(e)), None)
        self.has_terminal[newest] = False
        self.pos = newest


def replay_bytes(transitions: int, dim: int, obs_dtype=np.float16) -> int:
    """Bytes of a HalfReplayBuffer of `transitions` x `dim` features (terminal observations excluded)."""
    per = dim * np.dtype(obs_dtype).itemsize + ACTION_DIM * 4 + 3 * 4 + 1
    return int(transitions * per)


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


def _ent_coef(cfg: TrainSACRequest) -> str:
    return f"auto_{cfg.init_entropy_coef}"


def build_model(cfg: TrainSACRequest, venv: ReacherVecEnv) -> SAC:
    """SB3 SAC with the findings' networks, reading every hyperparameter from the request."""
    return SAC(
        "MlpPolicy",
        venv,
        learning_rate=cfg.lr,
        buffer_size=cfg.buffer_size,  # transitions, over all envs
        learning_starts=_agent(cfg.learning_starts, cfg.action_repeat),
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.gamma,
        train_freq=(1, "step"),
        gradient_steps=cfg.gradient_steps if cfg.gradient_steps != -1 else cfg.updates_per_transition * cfg.parallel_envs,
        ent_coef=_ent_coef(cfg),
        target_entropy="auto",  # -dim(A) = -2
        replay_buffer_class=HalfReplayBuffer,
        replay_buffer_kwargs={"handle_timeout_termination": True, "n_step": cfg.n_step, "gamma": cfg.gamma},
        policy_kwargs={"net_arch": {"pi": list(NET_ARCH), "qf": list(NET_ARCH)}, "n_critics": 2},
        seed=cfg.seed,
        device="cpu",
        verbose=0,
    )


def _agent(env_steps: int, action_repeat: int) -> int:
    """Agent transitions in `env_steps` simulator steps."""
    return int(math.ceil(env_steps / action_repeat))


def _deterministic_actor(policy) -> Callable[[np.ndarray], np.ndarray]:
    def act(x: np.ndarray) -> np.ndarray:  # (B, D) float32 -> (B, 2) in [-1, 1]
        with torch.no_grad():
            return policy.actor(torch.as_tensor(np.asarray(x, np.float32)), deterministic=True).numpy()

    return act


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------


def _tensors(model: SAC) -> dict[str, torch.Tensor]:
    t = {f"policy.{k}": v.detach().clone().contiguous() for k, v in model.policy.state_dict().items()}
    if getattr(model, "log_ent_coef", None) is not None:
        t["log_ent_coef"] = model.log_ent_coef.detach().clone().reshape(1)
    return t


def save_checkpoint(model: SAC, run_dir: Path, state: dict, with_replay: bool) -> Path:
    """Write run_dir/checkpoint atomically (new dir, then rename); returns its path."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    new, cur, old = run_dir / f"{CHECKPOINT_DIR}.new", run_dir / CHECKPOINT_DIR, run_dir / f"{CHECKPOINT_DIR}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    save_file(_tensors(model), str(new / "policy.safetensors"))
    optim = {"actor": model.actor.optimizer.state_dict(), "critic": model.critic.optimizer.state_dict()}
    if getattr(model, "ent_coef_optimizer", None) is not None:
        optim["ent_coef"] = model.ent_coef_optimizer.state_dict()
    torch.save(optim, new / "optim.pt")  # plain tensors/ints/floats: loadable with weights_only=True
    buf: HalfReplayBuffer = model.replay_buffer
    state = {**state, "format": CHECKPOINT_FORMAT, "num_timesteps": int(model.num_timesteps),
             "n_updates": int(model._n_updates), "replay": {"saved": bool(with_replay), "pos": int(buf.pos),
                                                          "full": bool(buf.full)}}
    if with_replay:
        buf.save_npy(new)
    (new / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        cur.rename(old)
    new.rename(cur)
    shutil.rmtree(old, ignore_errors=True)
    return cur


def checkpoint_path(run_dir: Path) -> Path | None:
    """The latest complete checkpoint (falls back to .old if a crash hit between the two renames)."""
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"):
        p = Path(run_dir) / name
        if (p / "state.json").exists():
            return p
    return None


def load_state(run_dir: Path) -> dict:
    p = checkpoint_path(run_dir)
    if p is None:
        raise FileNotFoundError(f"no SAC checkpoint under {run_dir}: train first (POST /train/sac)")
    return json.loads((p / "state.json").read_text())


def _load_weights(model_policy, path: Path) -> torch.Tensor | None:
    from safetensors.torch import load_file

    t = load_file(str(path / "policy.safetensors"))
    model_policy.load_state_dict({k[len("policy."):]: v for k, v in t.items() if k.startswith("policy.")})
    return t.get("log_ent_coef")


def restore_checkpoint(model: SAC, run_dir: Path) -> dict:
    """Load weights, optimizer states, counters (and the replay buffer if saved) into `model`."""
    p = checkpoint_path(run_dir)
    state = json.loads((p / "state.json").read_text())
    log_ent = _load_weights(model.policy, p)
    if log_ent is not None and getattr(model, "log_ent_coef", None) is not None:
        with torch.no_grad():
            model.log_ent_coef.copy_(log_ent.reshape(model.log_ent_coef.shape))
    optim = torch.load(p / "optim.pt", weights_only=True)
    model.actor.optimizer.load_state_dict(optim["actor"])
    model.critic.optimizer.load_state_dict(optim["critic"])
    if "ent_coef" in optim and getattr(model, "ent_coef_optimizer", None) is not None:
        model.ent_coef_optimizer.load_state_dict(optim["ent_coef"])
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state["n_updates"])
    if state["replay"]["saved"]:
        model.replay_buffer.load_npy(p, state["replay"]["pos"], state["replay"]["full"])
    else:  # replay lost: refill learning_starts transitions before updating again
        model.learning_starts = model.num_timesteps + model.learning_starts
    return state


def policy_from_checkpoint(run_dir: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """Deterministic actor of a SAC run: (B, D) float32 features -> (B, 2) actions in [-1, 1].

    Rebuilt from policy.safetensors and state.json alone (no env, no pickle). `.dim`, `.features`,
    `.action_repeat` and `.episode_steps` on the returned callable say how to feed it.
    """
    from stable_baselines3.sac.policies import SACPolicy

    state = load_state(Path(run_dir))
    dim = int(state["dim"])
    policy = SACPolicy(
        spaces.Box(-np.inf, np.inf, (dim,), np.float32),
        spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32),
        lambda _: 0.0,
        net_arch={"pi": list(NET_ARCH), "qf": list(NET_ARCH)},
    )
    _load_weights(policy, checkpoint_path(Path(run_dir)))
    policy.set_training_mode(False)
    act = _deterministic_actor(policy)
    act.dim, act.features = dim, state["config"]["features"]  # type: ignore[attr-defined]
    act.action_repeat = int(state["config"]["action_repeat"])  # type: ignore[attr-defined]
    act.episode_steps = int(state["config"]["episode_steps"])  # type: ignore[attr-defined]
    return act


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


class _Progress(BaseCallback):
    """Evaluations for the learning curve, checkpoints, run-record updates and stop requests."""

    def __init__(self, cfg: TrainSACRequest, run: RunLike, features, venv: ReacherVecEnv, state: dict):
        super().__init__()
        self.cfg, self.run, self.features, self.venv, self.state = cfg, run, features, venv, state
        self.curve: list[dict] = state.setdefault("curve", [])
        self.t0 = time.perf_counter() - float(state.get("wall_s", 0.0))
        self.env_time = 0.0
        self.stopped = False
        env_steps = self.env_steps_now(state.get("num_timesteps", 0))
        self.next_eval = (env_steps // cfg.eval_every + 1) * cfg.eval_every
        self.next_ckpt = (env_steps // cfg.checkpoint_every + 1) * cfg.checkpoint_every
        self.last_report = 0.0
        self.rate_mark = (time.perf_counter(), env_steps, state.get("n_updates", 0))
        self.rates = {"env_steps_per_s": None, "updates_per_s": None}

    def env_steps_now(self, num_timesteps: int | None = None) -> int:
        n = self.model.num_timesteps if num_timesteps is None else num_timesteps
        return int(n) * self.cfg.action_repeat

    def wall(self) -> float:
        return time.perf_counter() - self.t0

    def evaluate(self, episodes: int) -> dict:
        return evaluate_policy(_deterministic_actor(self.model.policy), self.features, task=self.cfg.task.value,
                               episodes=episodes, episode_steps=self.cfg.episode_steps,
                               action_repeat=self.cfg.action_repeat, eval_seed=self.cfg.eval_seed,
                               image_size=self.cfg.image_size)

    def add_point(self, episodes: int) -> dict:
        ev = self.evaluate(episodes)
        done = self.venv.completed
        recent = done[self.state.get("episodes_reported", 0):]
        self.state["episodes_reported"] = len(done)
        point = {"env_steps": self.env_steps_now(), "mean_return": round(ev["mean_return"], 2),
                 "std_return": round(ev["std_return"], 2), "success_rate": ev["success_rate"],
                 "eval_episodes": episodes, "wall_s": round(self.wall(), 2),
                 "train_return": round(float(np.mean([r["return"] for r in recent])), 2) if recent else None}
        self.curve.append(point)
        return point

    def metrics(self) -> dict:
        env_steps = self.env_steps_now()
        return {"env_steps": env_steps, "total_steps": self.cfg.total_steps, "agent_steps": int(self.model.num_timesteps),
                "updates": int(self.model._n_updates), "action_repeat": self.cfg.action_repeat,
                "episode_steps": self.cfg.episode_steps, "parallel_envs": self.cfg.parallel_envs,
                "features": self.features.name, "dim": int(self.features.dim), "wall_s": round(self.wall(), 2),
                "train_episodes": len(self.venv.completed), "curve": list(self.curve), **self.rates}

    def checkpoint(self) -> None:
        self.state.update({"wall_s": self.wall(), "episodes_started": self.venv.episodes_started})
        save_checkpoint(self.model, self.run.dir, self.state, self.cfg.checkpoint_replay)

    def _on_step(self) -> bool:
        env_steps = self.env_steps_now()
        if env_steps >= self.next_eval:
            self.next_eval = (env_steps // self.cfg.eval_every + 1) * self.cfg.eval_every
            self.add_point(self.cfg.eval_episodes)
            self.last_report = 0.0  # report the new point now
        if env_steps >= self.next_ckpt:
            self.next_ckpt = (env_steps // self.cfg.checkpoint_every + 1) * self.cfg.checkpoint_every
            self.checkpoint()
        now = time.perf_counter()
        if now - self.last_report > 2.0:
            t, s, u = self.rate_mark
            if now - t > 1.0:
                self.rates = {"env_steps_per_s": round((env_steps - s) / (now - t), 1),
                              "updates_per_s": round((self.model._n_updates - u) / (now - t), 1)}
            self.rate_mark = (now, env_steps, self.model._n_updates)
            self.run.update(metrics=self.metrics())
            self.last_report = now
        if self.run.stop_requested():
            self.stopped = True
            return False
        return True


def train_sac(cfg: TrainSACRequest, run: RunLike, features, resume: bool = False) -> dict:
    """Train SAC on `features` (a services.trainer.features.FeatureSource) for cfg.total_steps env steps.

    Blocks; call it in a background thread or process. Checkpoints into run.dir every cfg.checkpoint_every
    env steps and at the end (or on stop). resume=True continues from run.dir's last checkpoint: weights,
    optimizers, step counters, curve and (if checkpointed) the replay buffer. Returns the final metrics,
    which include `final_eval` over cfg.final_eval_episodes episodes; a stopped run returns `stopped: True`
    without a final evaluation. The caller owns run status (running/succeeded/failed/interrupted).
    """
    torch.set_num_threads(max(1, int(os.environ.get("VJEPA_SAC_THREADS", "1"))))
    agent_steps(cfg.episode_steps, cfg.action_repeat)  # validate before building anything
    run.dir.mkdir(parents=True, exist_ok=True)
    state: dict = {"config": cfg.model_dump(mode="json"), "dim": int(features.dim), "features": features.name}
    if hasattr(features, "lineage"):
        state["lineage"] = features.lineage()
    prior: dict | None = None
    if resume:
        prior = load_state(run.dir)
        if int(prior["dim"]) != int(features.dim):
            raise ValueError(f"checkpoint has {prior['dim']}-d features, the source gives {features.dim}-d")
    venv = ReacherVecEnv(features, num_envs=cfg.parallel_envs, task=cfg.task.value,
                         episode_steps=cfg.episode_steps, action_repeat=cfg.action_repeat, seed=cfg.seed,
                         image_size=cfg.image_size, first_episode=int(prior.get("episodes_started", 0)) if prior else 0)
    model = build_model(cfg, venv)
    if prior is not None:
        prior = restore_checkpoint(model, run.dir)
        state.update({k: prior[k] for k in ("curve", "wall_s", "num_timesteps", "n_updates", "episodes_started")
                      if k in prior})
        state["resumed"] = int(prior.get("resumed", 0)) + 1
    cb = _Progress(cfg, run, features, venv, state)
    # Whole vector steps, never past total_steps: e.g. 100,000 env steps with 16 envs x repeat 4 -> 99,968.
    total = max(cfg.parallel_envs, cfg.total_steps // cfg.action_repeat // cfg.parallel_envs * cfg.parallel_envs)
    remaining = max(0, total - model.num_timesteps)
    run.update(metrics={"env_steps": cb.env_steps_now(model.num_timesteps), "total_steps": cfg.total_steps,
                        "action_repeat": cfg.action_repeat, "episode_steps": cfg.episode_steps,
                        "resumed": bool(resume)})
    if remaining:
        model.learn(total_timesteps=remaining, callback=cb, reset_num_timesteps=False, progress_bar=False)
    else:
        cb.init_callback(model)
    cb.checkpoint()
    out = cb.metrics()
    if cb.stopped:
        out["stopped"] = True
    else:
        ev = cb.evaluate(cfg.final_eval_episodes)
        out["final_eval"] = {k: ev[k] for k in ("mean_return", "std_return", "success_rate")} | {
            "episodes": cfg.final_eval_episodes, "episode_steps": cfg.episode_steps,
            "returns": [round(e["return"], 1) for e in ev["episodes"]]}
        if not cb.curve or cb.curve[-1]["env_steps"] != cb.env_steps_now():  # the curve ends at the final step
            cb.curve.append({"env_steps": cb.env_steps_now(), "mean_return": round(ev["mean_return"], 2),
                             "std_return": round(ev["std_return"], 2), "success_rate": ev["success_rate"],
                             "eval_episodes": cfg.final_eval_episodes, "wall_s": round(cb.wall(), 2),
                             "train_return": None})
            out["curve"] = list(cb.curve)
        state["final_eval"] = out["final_eval"]
        cb.state["final_eval"] = out["final_eval"]
        sj = checkpoint_path(run.dir) / "state.json"
        tmp = sj.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({**json.loads(sj.read_text()), "final_eval": out["final_eval"],
                                   "curve": list(cb.curve)}, indent=1))
        os.replace(tmp, sj)
    out["replay_bytes"] = model.replay_buffer.nbytes
    run.update(metrics=out)
    venv.close()
    return out
