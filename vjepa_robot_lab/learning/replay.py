"""SAC's replay buffer: features stored once, as float16; the next observation is read by index.

    replay = Replay(capacity=1_000_000, n_envs=16, dim=1024, n_step=3, gamma=0.99)
    replay.add(obs, next_obs, actions, rewards, dones, truncated)   # one vector step: (N, D), (N, D), (N, 2), (N,) x3
    batch = replay.sample(256, rng)                                  # Batch of float32 torch tensors

Layout: slot t of env e holds the observation, action, reward and end flags of transition (t, e). Its next
observation is slot t+1 of the same env, except where the episode ended at t: slot t+1 then holds the next
episode's first observation, so the real terminal observation is kept apart (`terminal_obs`). The newest
n_step slots are never sampled (their successors are not written yet).

Memory: 1M x 1024 features take 2.07 GB, against 8.19 GB for float32 observations plus float32 next
observations (measured: bench/SAC_RESULTS.md). float16 keeps 11 significant bits, far below the noise of
an embedding or of the state features' velocities; batches are cast back to float32.

n-step returns (n=3 in DrQ-v2): sum_k gamma^k r_{t+k} until n steps or the episode's end, bootstrapped with
gamma^(steps taken) from the observation reached; as in DrQ-v2 the entropy bonus of intermediate steps is
not added. Persistence is .npy only (no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ARRAYS = ("observations", "actions", "rewards", "dones", "timeouts", "has_terminal")


@dataclass
class Batch:
    """A sampled minibatch; every field float32, B rows."""

    obs: torch.Tensor  # (B, D)
    actions: torch.Tensor  # (B, A)
    rewards: torch.Tensor  # (B, 1): the n-step return
    discounts: torch.Tensor  # (B, 1): gamma^(steps taken)
    next_obs: torch.Tensor  # (B, D): the observation the n-step return bootstraps from
    dones: torch.Tensor  # (B, 1): 1 where the episode truly terminated (never for time-limit endings)


class Replay:
    def __init__(
        self,
        capacity: int,
        n_envs: int,
        dim: int,
        action_dim: int = 2,
        n_step: int = 1,
        gamma: float = 0.99,
        obs_dtype=np.float16,
    ):
        self.n_envs, self.dim, self.action_dim = int(n_envs), int(dim), int(action_dim)
        self.slots = max(int(capacity) // self.n_envs, n_step + 2)  # slots per env
        self.n_step, self.gamma = int(n_step), float(gamma)
        self.observations = np.zeros((self.slots, self.n_envs, self.dim), dtype=obs_dtype)
        self.actions = np.zeros((self.slots, self.n_envs, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros((self.slots, self.n_envs), dtype=np.float32)
        self.dones = np.zeros((self.slots, self.n_envs), dtype=np.float32)
        self.timeouts = np.zeros((self.slots, self.n_envs), dtype=np.float32)
        self.has_terminal = np.zeros((self.slots, self.n_envs), dtype=bool)
        self.terminal_obs: dict[tuple[int, int], np.ndarray] = {}
        self.pos, self.full = 0, False

    @property
    def nbytes(self) -> int:
        """Bytes held (arrays plus terminal observations)."""
        return int(sum(getattr(self, a).nbytes for a in ARRAYS) + sum(v.nbytes for v in self.terminal_obs.values()))

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """One vector step. next_obs is only read where dones is set: the terminal observation, kept apart."""
        p = self.pos
        self.observations[p] = np.asarray(obs).reshape(self.n_envs, self.dim)
        for e in np.flatnonzero(self.has_terminal[p]):  # the slot is overwritten: drop its old terminal obs
            self.terminal_obs.pop((p, int(e)), None)
        self.has_terminal[p] = False
        dones = np.asarray(dones, dtype=bool).reshape(self.n_envs)
        next_obs = np.asarray(next_obs).reshape(self.n_envs, self.dim)
        for e in np.flatnonzero(dones):
            self.terminal_obs[(p, int(e))] = next_obs[e].astype(self.observations.dtype)
            self.has_terminal[p, e] = True
        self.actions[p] = np.asarray(actions).reshape(self.n_envs, self.action_dim)
        self.rewards[p] = np.asarray(rewards).reshape(self.n_envs)
        self.dones[p] = dones
        self.timeouts[p] = np.asarray(truncated, dtype=bool).reshape(self.n_envs)
        self.pos += 1
        if self.pos == self.slots:
            self.full, self.pos = True, 0

    def size(self) -> int:
        """Slots (per env) that can be sampled: all but the newest n_step (their n-step window is unwritten)."""
        return (self.slots if self.full else self.pos) - self.n_step

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        n = self.size()
        if n < 1:
            raise ValueError("the replay buffer holds too few steps to sample: raise learning_starts")
        slot = rng.integers(0, n, size=batch_size)
        if self.full:  # oldest first: slots pos, pos+1, ..., never the newest n_step
            slot = (self.pos + slot) % self.slots
        return self.batch_at(slot, rng.integers(0, self.n_envs, size=batch_size))

    def batch_at(self, slot: np.ndarray, env: np.ndarray) -> Batch:
        """The n-step transitions starting at (slot, env) pairs."""
        b = len(slot)
        ret, disc = np.zeros(b, np.float32), np.ones(b, np.float32)
        open_, last, dones = np.ones(b, bool), slot.copy(), np.zeros(b, np.float32)
        for k in range(self.n_step):
            t = (slot + k) % self.slots
            ret += open_ * disc * self.rewards[t, env]
            disc = np.where(open_, disc * self.gamma, disc)
            last = np.where(open_, t, last)
            ended = open_ & self.has_terminal[t, env]  # the episode ended (or the run was cut) at t
            dones = np.where(ended, self.dones[t, env] * (1 - self.timeouts[t, env]), dones)
            open_ &= ~ended
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return Batch(
            obs=t(self.observations[slot, env]),
            actions=t(self.actions[slot, env]),
            rewards=t(ret[:, None]),
            discounts=t(disc[:, None]),
            next_obs=t(self.next_observations_at(last, env)),
            dones=t(dones[:, None]),
        )

    def next_observations_at(self, slot: np.ndarray, env: np.ndarray) -> np.ndarray:
        """Next observations (B, D) float32 of transitions (slot, env): slot+1, or the kept terminal one."""
        next_obs = self.observations[(slot + 1) % self.slots, env].astype(np.float32)
        for k in np.flatnonzero(self.has_terminal[slot, env]):
            next_obs[k] = self.terminal_obs[(int(slot[k]), int(env[k]))]
        return next_obs

    # -- persistence (.npy only, no pickle) --------------------------------------------------------------------
    def save_npy(self, d: Path) -> dict:
        """Write the filled slots into directory d; returns the position record to restore them with."""
        end = self.slots if self.full else self.pos
        for name in ARRAYS:
            np.save(d / f"replay_{name}.npy", getattr(self, name)[:end], allow_pickle=False)
        keys = np.array(sorted(self.terminal_obs), dtype=np.int64).reshape(-1, 2)
        vals = (
            np.stack([self.terminal_obs[tuple(k)] for k in keys])
            if len(keys)
            else np.zeros((0, self.dim), self.observations.dtype)
        )
        np.save(d / "replay_terminal_keys.npy", keys, allow_pickle=False)
        np.save(d / "replay_terminal_obs.npy", vals, allow_pickle=False)
        return {"pos": int(self.pos), "full": bool(self.full)}

    def load_npy(self, d: Path, pos: int, full: bool) -> None:
        """Restore from save_npy's files. The newest slot is dropped: the resumed run starts new episodes."""
        for name in ARRAYS:
            arr = np.load(d / f"replay_{name}.npy", allow_pickle=False)
            if arr.shape[1:] != getattr(self, name).shape[1:] or len(arr) > self.slots:
                raise ValueError(f"checkpointed replay {name} {arr.shape} does not fit {getattr(self, name).shape}")
            getattr(self, name)[: len(arr)] = arr
        keys = np.load(d / "replay_terminal_keys.npy", allow_pickle=False)
        vals = np.load(d / "replay_terminal_obs.npy", allow_pickle=False)
        self.terminal_obs = {(int(t), int(e)): v for (t, e), v in zip(keys, vals)}
        self.pos, self.full = int(pos), bool(full)
        if not (self.pos or self.full):
            return
        # The newest slot's successor was never written (the run stopped mid-episode). Drop the newest slot and
        # keep its observation aside as the next observation of the slot before it, whose successor slot is
        # about to be overwritten by the new episodes.
        newest = (self.pos - 1) % self.slots
        prev = (newest - 1) % self.slots
        if self.full or newest > 0:
            for e in range(self.n_envs):
                if not self.has_terminal[prev, e]:
                    self.terminal_obs[(prev, e)] = self.observations[newest, e].copy()
                    self.has_terminal[prev, e] = True
        for e in np.flatnonzero(self.has_terminal[newest]):
            self.terminal_obs.pop((newest, int(e)), None)
        self.has_terminal[newest] = False
        self.pos = newest


def replay_bytes(transitions: int, dim: int, action_dim: int = 2, obs_dtype=np.float16) -> int:
    """Bytes of a Replay of `transitions` x `dim` features (terminal observations excluded)."""
    per = dim * np.dtype(obs_dtype).itemsize + action_dim * 4 + 3 * 4 + 1
    return int(transitions * per)
