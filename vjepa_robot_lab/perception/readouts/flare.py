"""flare: the MLP on CortexBench's fusion of the last 3 windows' (D,) embeddings, (3D,) per step; no network.

FLARE (Yang et al., CortexBench / facebookresearch/eai-vc `cortexbench/mujoco_vc/src/mujoco_vc/model_loading.py`,
`fuse_embeddings_flare`, history_window 3 in its DMC config): for the embeddings [e_{t-2}, e_{t-1}, e_t] of the last
three windows the feature is concat(e_{t-1} - e_{t-2}, e_t - e_{t-1}, e_t) -- the differences first, the latest
last. At an episode's start the history is padded by repeating the first embedding (eai-vc indexes
max(t - k, 0) offline and fills its buffer with copies of the first embedding live), so step 0 is (0, 0, e_0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vjepa_robot_client.contract import DEFAULT_GRID_SIZE, Pooling, Readout
from vjepa_robot_lab.perception.features import FeatureSource, FeatureTable
from vjepa_robot_lab.perception.readouts._registry import ReadoutKind, readout_lineage, register

FLARE_HISTORY = 3  # windows fused (eai-vc's DMC config: history_window 3)


def flare_fuse(history: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """[e_{t-2}, e_{t-1}, e_t], each (B, D) (oldest first) -> (B, 3D): the differences of consecutive ones, then
    the latest (eai-vc's fuse_embeddings_flare, batched)."""
    h = [np.asarray(e, np.float32) for e in history]
    return np.concatenate([h[i + 1] - h[i] for i in range(len(h) - 1)] + [h[-1]], axis=-1)


def history_rows(episode: np.ndarray, step: np.ndarray, back: int) -> np.ndarray:
    """For rows sorted by (episode, step): the row index `back` consecutive steps earlier in the same episode,
    clamped to the episode's first row (the padding: the first embedding repeated). (N,) int64."""
    idx = np.arange(len(step), dtype=np.int64)
    for _ in range(back):
        prev = np.maximum(idx - 1, 0)
        same = (idx > 0) & (episode[prev] == episode[idx]) & (step[prev] == step[idx] - 1)
        idx = np.where(same, prev, idx)
    return idx


def flare_table(x: np.ndarray, episode: np.ndarray, step: np.ndarray, history: int = FLARE_HISTORY) -> np.ndarray:
    """(N, D) embeddings of a dataset's consecutive steps -> (N, history * D) FLARE features, row for row."""
    rows = [history_rows(episode, step, back) for back in range(history - 1, -1, -1)]  # oldest first
    return flare_fuse([x[r] for r in rows])


class FlareFeatures(FeatureSource):
    """FLARE over any feature source: (B, 3D) per step, offline from the dataset's consecutive steps and live from
    the last 3 windows' embeddings of each episode (keyed by episode seed: the vector env's terminal step, embedded
    apart after its lane was reset, still fuses with its own episode's history). It does not own `base`."""

    readout = Readout.flare.value

    def __init__(self, base: FeatureSource, history: int = FLARE_HISTORY):
        self.base, self.history = base, int(history)
        self.name, self.needs_frames = base.name, base.needs_frames
        self.dim = self.history * int(base.dim)
        self._past: dict[int, list[np.ndarray]] = {}  # episode seed -> the last history-1 embeddings, oldest first
        for attr in ("encoder_id", "info"):
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))

    def lineage(self) -> dict:
        return {
            **self.base.lineage(),
            "dim": self.dim,
            "embedding_dim": int(self.base.dim),
            **readout_lineage(Readout.flare),
        }

    def offline(self, store, dataset: str) -> FeatureTable:
        t = self.base.offline(store, dataset)
        return FeatureTable(t.episode, t.step, flare_table(t.x, t.episode, t.step, self.history), self.lineage())

    def _fuse(self, seeds, embeddings, firsts, remember: bool) -> np.ndarray:
        out = np.empty((len(seeds), self.dim), np.float32)
        for i, (s, e, first) in enumerate(zip(seeds, embeddings, firsts)):
            past = self._past.get(int(s))
            if first or past is None:
                past = [e] * (self.history - 1)  # episode start: the first embedding repeated
            out[i] = flare_fuse([p[None] for p in past] + [e[None]])[0]
            if remember:
                self._past[int(s)] = past[1:] + [e]
        return out

    def online(self, timesteps, episode_seeds):
        e = np.asarray(self.base.online(timesteps, episode_seeds), np.float32)  # (B, D)
        if len(self._past) > 4096:  # live rollouts hold a few episodes at a time; forget finished ones
            keep = {int(s) for s in episode_seeds}
            self._past = {s: p for s, p in self._past.items() if s in keep}
        return self._fuse(episode_seeds, e, [ts.first() for ts in timesteps], remember=True)

    def online_detached(self, timesteps, episode_seeds):
        """A terminal step: its episode's history (kept by seed) and its own embedding; the history is dropped."""
        e = np.asarray(self.base.online_detached(timesteps, episode_seeds), np.float32)
        out = self._fuse(episode_seeds, e, [False] * len(timesteps), remember=False)
        for s in episode_seeds:
            self._past.pop(int(s), None)
        return out

    def close(self) -> None:  # the owner closes base
        self._past.clear()


class FlareReadout(ReadoutKind):
    name = Readout.flare.value
    pooling = Pooling.mean  # it fuses the stored mean embeddings
    source_type = FlareFeatures

    def wrap(self, base: FeatureSource, grid_size: int = DEFAULT_GRID_SIZE) -> FeatureSource:
        return FlareFeatures(base)


FLARE = register(FlareReadout())
