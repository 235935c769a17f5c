"""Feature sources: one interface for `vjepa2`, `state` and `random`.

BC, SAC, evaluation and the linear probe take any of them, so every result has its baselines beside it,
computed by the same code:

    offline(store, dataset) -> FeatureTable     bulk, columnar, for training and probing
    online(timesteps, episode_seeds) -> (B, D)  one batch per vector step, for live rollouts

`vjepa2`  the frozen V-JEPA 2 embedding of the step's 8-frame window, from the encoder service over HTTP
`state`   the oracle: cos/sin of the joint angles, to_target, velocity (8-d)
`random`  the lower bound: a fixed random vector per (episode seed, step), independent of the frames
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from services.common.store import Store
from vjepa_robot_client.contract import FEATURE_SOURCES
from vjepa_robot_client.contract import FeatureSource as FeatureName

from .env import STATE_DIM, TimeStep, state_features, state_features_batch, train_episode_seed

RANDOM_DIM = 1024  # same width as ViT-L's embedding, so the MLP is the same size as with vjepa2


@dataclass
class FeatureTable:
    episode: np.ndarray  # (N,) int
    step: np.ndarray  # (N,) int
    x: np.ndarray  # (N, D) float32
    lineage: dict

    def __len__(self) -> int:
        return len(self.step)


class FeatureSource:
    name: str
    dim: int
    needs_frames: bool = False

    def lineage(self) -> dict:
        return {"features": self.name, "dim": self.dim}

    def offline(self, store: Store, dataset: str) -> FeatureTable:
        raise NotImplementedError

    def online(self, timesteps: Sequence[TimeStep], episode_seeds: Sequence[int]) -> np.ndarray:
        raise NotImplementedError

    def online_detached(self, timesteps: Sequence[TimeStep], episode_seeds: Sequence[int]) -> np.ndarray:
        """Features of time steps outside the lockstep lanes of `online` (a vector env's terminal steps)."""
        return self.online(timesteps, episode_seeds)

    def close(self) -> None:
        pass


class StateFeatures(FeatureSource):
    name, dim = FeatureName.state.value, STATE_DIM

    def offline(self, store: Store, dataset: str) -> FeatureTable:
        t = store.read_steps(dataset, ["position", "to_target", "velocity"])
        cols = [_vec2(t.column(c)) for c in ("position", "to_target", "velocity")]
        return FeatureTable(t.column("episode").to_numpy(), t.column("step").to_numpy(), state_features_batch(*cols),
                            self.lineage())

    def online(self, timesteps, episode_seeds):
        return np.stack([state_features(ts.observation) for ts in timesteps])


class RandomFeatures(FeatureSource):
    """Noise that carries no information about the frames: what an MLP learns from it is the action prior.

    Episode seed s owns one stream of N(0, 1) draws; step t's vector is rows t of that stream reshaped (T, dim).
    Offline draws whole episodes at once; online extends a per-episode cache in blocks: the same numbers
    (numpy fills arrays from the stream in order).
    """

    name = FeatureName.random.value
    BLOCK = 256

    def __init__(self, dim: int = RANDOM_DIM):
        self.dim = dim
        self._cache: dict[int, tuple[np.random.Generator, np.ndarray]] = {}

    def _stream(self, episode_seed: int) -> np.random.Generator:
        return np.random.default_rng([int(episode_seed), 0x5EED])

    def rows(self, episode_seed: int, n: int) -> np.ndarray:
        """The first n vectors of an episode: (n, dim) float32."""
        rng, m = self._cache.get(int(episode_seed)) or (self._stream(episode_seed), np.zeros((0, self.dim), np.float32))
        if len(m) < n:
            extra = -(-(n - len(m)) // self.BLOCK) * self.BLOCK
            m = np.concatenate([m, rng.standard_normal((extra, self.dim), dtype=np.float32)])
        if len(self._cache) > 1024:  # live rollouts touch a few episodes at a time
            self._cache.clear()
        self._cache[int(episode_seed)] = (rng, m)
        return m[:n]

    def offline(self, store: Store, dataset: str) -> FeatureTable:
        t = store.read_steps(dataset, ["seed"])
        episode, steps, seeds = (t.column(c).to_numpy() for c in ("episode", "step", "seed"))
        x = np.empty((len(steps), self.dim), np.float32)
        bounds = np.flatnonzero(np.diff(episode)) + 1
        for rows in np.split(np.arange(len(steps)), bounds):
            if len(rows):
                x[rows] = self._fresh_rows(seeds[rows[0]], int(steps[rows].max()) + 1)[steps[rows]]
        return FeatureTable(episode, steps, x, self.lineage())

    def _fresh_rows(self, episode_seed: int, n: int) -> np.ndarray:
        n_blocks = -(-n // self.BLOCK) * self.BLOCK
        return self._stream(episode_seed).standard_normal((n_blocks, self.dim), dtype=np.float32)[:n]

    def online(self, timesteps, episode_seeds):
        return np.stack([self.rows(s, ts.step + 1)[ts.step] for ts, s in zip(timesteps, episode_seeds)])


class VJEPA2Features(FeatureSource):
    """Embeddings from the encoder service, reached only through the SDK over HTTP.

    Live rollouts step the encoder through a frame stream (one frame per env per vector step; the encoder keeps the
    windows): one stream per (envs, height, width) lockstep shape. Each step first checks that the stream continues
    the given time steps' own windows (`ts.window`: the stream's newest frame is each continuing env's previous
    frame); when it does not (another rollout of the same shape used the stream in between), the stream is
    resynchronised with the full windows, so features never depend on which loop stepped the stream last. The SDK's one retry policy rides out an encoder restart (retries sized
    for 40-80 s); a lost stream costs one step of full windows.
    """

    name = FeatureName.vjepa2.value
    needs_frames = True
    MAX_STREAMS = 4  # lockstep shapes kept open at once (SAC: training envs + evaluation envs)

    def __init__(self, encoder_url: str, token: str | None = None, timeout: float = 120.0, compress: str = "auto"):
        from vjepa_robot_client import EncoderClient

        # 20 retries, backoff 0.25 s doubling to 5 s (jittered): 40-80 s for an encoder that restarts mid-rollout.
        # compress (auto | zstd | gzip | none): the trainer's VJEPA_ROBOT_COMPRESS, for /encode and stream bodies.
        self.client = EncoderClient(encoder_url, token=token, timeout=timeout, retries=20, backoff=0.25,
                                    max_backoff=5.0, compress=None if compress == "none" else compress)
        self.info = self.client.info()
        self.dim = int(self.info.dim)
        self.encoder_id = self.info.encoder_id
        self._streams: dict[tuple[int, int, int], object] = {}  # (envs, H, W) -> FrameStream

    def lineage(self) -> dict:
        return {**super().lineage(), "encoder_id": self.encoder_id, "model": self.info.model,
                "image_size": self.info.image_size, "dtype": self.info.dtype}

    def ensure_encoded(self, store: Store, dataset: str, progress: bool = False) -> None:
        """Have the encoder embed the dataset unless every step already has this encoder's embedding."""
        if not store.embedding_progress(dataset, self.encoder_id).complete:
            self.client.encode_dataset_and_wait(dataset, progress=progress)

    def offline(self, store: Store, dataset: str) -> FeatureTable:
        self.ensure_encoded(store, dataset)
        episode, step, x = store.read_embeddings(dataset, self.encoder_id)
        return FeatureTable(episode, step, x, self.lineage())

    def online(self, timesteps, episode_seeds):
        """One stream step: each env's newest frame, resets from ts.first() -> (B, D) float32."""
        wins = [_window(ts) for ts in timesteps]  # (8, H, W, 3) views: the reference the stream must continue
        b, (h, w) = len(wins), wins[0].shape[1:3]
        stream = self._stream(b, h, w)
        reset = [i for i, ts in enumerate(timesteps) if ts.first()]
        going = np.setdiff1d(np.arange(b), reset)
        buf = stream.buffer
        # the stream's newest frame of each continuing env must be that env's previous frame (one frame per env:
        # ~1 ms for 8 envs at 256 px, against ~5 ms for whole windows); whole windows are stacked only to resync
        if not all(buf.started[i] and np.array_equal(buf.windows[i, -1], wins[i][-2]) for i in going):
            return stream.resync(np.stack(wins))
        return stream.step(np.stack([win[-1] for win in wins]), reset=reset)

    def online_detached(self, timesteps, episode_seeds):
        """Windows outside the lockstep lanes (an episode's terminal step): one POST /encode of the full windows."""
        return self.client.encode(_windows_of(timesteps))

    def _stream(self, envs: int, height: int, width: int):
        key = (envs, height, width)
        if key not in self._streams:
            if len(self._streams) >= self.MAX_STREAMS:
                self._streams.pop(next(iter(self._streams))).close()
            self._streams[key] = self.client.stream(envs, height, width)
        return self._streams[key]

    def close(self) -> None:
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        self.client.close()


def _window(ts) -> np.ndarray:
    if ts.window is None:
        raise ValueError("vjepa2 features need rendered windows: build the env with image_size > 0")
    return ts.window


def _windows_of(timesteps) -> np.ndarray:
    return np.stack([_window(ts) for ts in timesteps])


def make_feature_source(name: str, *, encoder_url: str | None = None, token: str | None = None,
                        compress: str = "auto") -> FeatureSource:
    try:
        kind = FeatureName(name)
    except ValueError:
        raise ValueError(f"unknown features {name!r}: choose one of {', '.join(FEATURE_SOURCES)}") from None
    if kind is FeatureName.state:
        return StateFeatures()
    if kind is FeatureName.random:
        return RandomFeatures()
    if not encoder_url:
        raise ValueError("features 'vjepa2' need an encoder: pass --encoder-url (e.g. http://127.0.0.1:8001)")
    return VJEPA2Features(encoder_url, token=token, compress=compress)


def _vec2(column) -> np.ndarray:
    from services.common.store import fixed_list_to_numpy

    return fixed_list_to_numpy(column, 2).astype(np.float64)


__all__ = ["FeatureSource", "FeatureTable", "make_feature_source", "train_episode_seed"]
