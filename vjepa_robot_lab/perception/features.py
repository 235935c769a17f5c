"""Feature sources: one interface for `vjepa2`, `state` and `random`.

BC, SAC, evaluation and the linear probe take any of them, so every result has its baselines beside it,
computed by the same code:

    offline(store, dataset) -> FeatureTable     bulk, columnar, for training and probing
    online(timesteps, episode_seeds) -> (B, D)  one batch per vector step, for live rollouts

`vjepa2`  the frozen V-JEPA 2 embedding of the step's 8-frame window, from the encoder service over HTTP
`state`   the oracle: reacher's cos/sin of the joint angles, to_target, velocity (8-d); another task's observation
          flattened (tasks.TaskSpec.state: walker 24-d), stored in its dataset's `state` column
`random`  the lower bound: a fixed random vector per (episode seed, step), independent of the frames
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.common.store import Store
from vjepa_robot_client.contract import FEATURE_SOURCES
from vjepa_robot_client.contract import FeatureSource as FeatureName
from vjepa_robot_lab.envs.env import STATE_DIM, TimeStep, state_features_batch, train_episode_seed
from vjepa_robot_lab.envs.tasks import task_spec

RANDOM_DIM = 1024  # same width as ViT-L's embedding, so the MLP is the same size as with vjepa2
# Token width of random grids (readout attentive): noise carries nothing at any width; 96 is the tiny stand-in's
# width and keeps a 20,000-step g=8 grid table at 0.5 GB (1024 would be 5.2 GB).
RANDOM_GRID_DIM = 96


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
    """The task's state features (tasks.TaskSpec.state): reacher's 8-d oracle, another task's flattened observation.
    Offline it reads either store layout: reacher's position/to_target/velocity columns or the `state` column."""

    name, dim = FeatureName.state.value, STATE_DIM

    def __init__(self, task: str = "easy"):
        self.spec = task_spec(task)
        self.task, self.dim = self.spec.name, self.spec.state_dim

    def offline(self, store: Store, dataset: str) -> FeatureTable:
        from services.common.store import fixed_list_to_numpy

        schema = store.steps_schema(dataset)
        if "state" in schema.names:  # a task other than reacher: services.common.store.task_steps_schema
            t = store.read_steps(dataset, ["state"])
            x = fixed_list_to_numpy(t.column("state"), schema.field("state").type.list_size).astype(np.float32)
        else:
            t = store.read_steps(dataset, ["position", "to_target", "velocity"])
            x = state_features_batch(*[_vec2(t.column(c)) for c in ("position", "to_target", "velocity")])
        if x.shape[1] != self.dim:
            raise ValueError(
                f"dataset {dataset!r} has {x.shape[1]}-d states; state features of task {self.task} are {self.dim}-d"
            )
        return FeatureTable(t.column("episode").to_numpy(), t.column("step").to_numpy(), x, self.lineage())

    def online(self, timesteps, episode_seeds):
        return np.stack([self.spec.state(ts.observation) for ts in timesteps])


class RandomFeatures(FeatureSource):
    """Noise that carries no information about the frames: what an MLP learns from it is the action prior.

    Episode seed s owns one stream of N(0, 1) draws; step t's vector is rows t of that stream reshaped (T, dim).
    Offline draws whole episodes at once; online extends a per-episode cache in blocks: the same numbers
    (numpy fills arrays from the stream in order).
    """

    name = FeatureName.random.value
    BLOCK = 256

    def __init__(self, dim: int = RANDOM_DIM, salt: int | None = None, grid_dim: int = RANDOM_GRID_DIM):
        self.dim, self.salt, self.grid_dim = dim, salt, grid_dim
        self._cache: dict[int, tuple[np.random.Generator, np.ndarray]] = {}
        self._grids: dict[int, RandomFeatures] = {}  # grid_size -> the noise of its (g*g, grid_dim) grids

    def _stream(self, episode_seed: int) -> np.random.Generator:
        return np.random.default_rng([int(episode_seed), 0x5EED] + ([self.salt] if self.salt is not None else []))

    # -- random grids (readout attentive): the same scheme, one stream per (episode seed, grid size) -------------
    def _grid(self, grid_size: int) -> RandomFeatures:
        if grid_size not in self._grids:
            self._grids[grid_size] = RandomFeatures(grid_size**2 * self.grid_dim, salt=grid_size)
        return self._grids[grid_size]

    def offline_grid(self, store: Store, dataset: str, grid_size: int, progress=None) -> FeatureTable:
        """x (N, g*g, grid_dim) float32 noise."""
        t = self._grid(grid_size).offline(store, dataset)
        t.x = t.x.reshape(len(t), grid_size**2, self.grid_dim)
        return t

    def online_grid(self, timesteps, episode_seeds, grid_size: int) -> np.ndarray:
        return self._grid(grid_size).online(timesteps, episode_seeds).reshape(len(timesteps), grid_size**2, -1)

    online_detached_grid = online_grid

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
    resynchronised with the full windows, so features never depend on which loop stepped the stream last. The SDK's
    one retry policy rides out an encoder restart (retries sized for 40-80 s); a lost stream costs one step of full
    windows.
    """

    name = FeatureName.vjepa2.value
    needs_frames = True
    MAX_STREAMS = 4  # lockstep shapes kept open at once (SAC: training envs + evaluation envs)

    def __init__(
        self,
        encoder_url: str,
        token: str | None = None,
        timeout: float = 120.0,
        compress: str = "auto",
        cancel=None,  # a threading.Event: once set, the SDK stops retrying (the trainer is shutting down)
    ):
        from vjepa_robot_client import EncoderClient

        # 20 retries, backoff 0.25 s doubling to 5 s (jittered): 40-80 s for an encoder that restarts mid-rollout.
        # compress (auto | zstd | gzip | none): the trainer's VJEPA_ROBOT_COMPRESS, for /encode and stream bodies.
        self.client = EncoderClient(
            encoder_url,
            token=token,
            timeout=timeout,
            retries=20,
            backoff=0.25,
            max_backoff=5.0,
            compress=None if compress == "none" else compress,
            cancel=cancel,
        )
        self.info = self.client.info()
        self.dim = int(self.info.dim)
        self.encoder_id = self.info.encoder_id
        self._streams: dict[tuple[int, int, int], object] = {}  # (envs, H, W) -> FrameStream

    def lineage(self) -> dict:
        return {
            **super().lineage(),
            "encoder_id": self.encoder_id,
            "model": self.info.model,
            "image_size": self.info.image_size,
            "dtype": self.info.dtype,
        }

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
        return self._stream_step(timesteps)

    def _stream_step(self, timesteps, grid_size: int | None = None) -> np.ndarray:
        wins = [_window(ts) for ts in timesteps]  # (8, H, W, 3) views: the reference the stream must continue
        b, (h, w) = len(wins), wins[0].shape[1:3]
        stream = self._stream(b, h, w, grid_size)
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

    def _stream(self, envs: int, height: int, width: int, grid_size: int | None = None):
        key = (envs, height, width, grid_size)
        if key not in self._streams:
            if len(self._streams) >= self.MAX_STREAMS:
                self._streams.pop(next(iter(self._streams))).close()
            pool = {} if grid_size is None else {"pool": "grid", "grid_size": grid_size}
            self._streams[key] = self.client.stream(envs, height, width, **pool)
        return self._streams[key]

    # -- token grids (readout attentive): the encoder's pool=grid, rows stored under their own encoder id --------
    @property
    def grid_dim(self) -> int:
        return self.dim  # a grid token is as wide as the mean embedding (no layers concatenated)

    def grid_encoder_id(self, grid_size: int) -> str:
        from vjepa_robot_client.contract import pooled_encoder_id

        return pooled_encoder_id(self.encoder_id, "grid", grid_size)

    def ensure_grids(self, store: Store, dataset: str, grid_size: int, progress=None) -> bool:
        """Have the encoder embed the dataset's g x g grids unless the store holds all of them; True if it did.
        `progress(message)` hears about it first (a run's progress: the grids are embedded before training)."""
        if store.embedding_progress(dataset, self.grid_encoder_id(grid_size)).complete:
            return False
        if progress is not None:
            progress(
                f"embedding the {grid_size}x{grid_size} token grids of dataset {dataset!r} first "
                f"(encoder {self.grid_encoder_id(grid_size)}): it holds mean embeddings only"
            )
        self.client.encode_dataset_and_wait(dataset, pool="grid", grid_size=grid_size)
        return True

    def offline_grid(self, store: Store, dataset: str, grid_size: int, progress=None) -> FeatureTable:
        """x (N, g*g, D) token grids of every step in their stored dtype (float16 by default), embedded first if the
        store lacks them. Held in memory up to $VJEPA_ROBOT_GRID_RESIDENT_GB (default 4); a larger table is streamed
        from the store into a memory-mapped file (read_grid_rows), so it never sits in memory twice."""
        self.ensure_grids(store, dataset, grid_size, progress)
        episode, step, x = read_grid_rows(store, dataset, self.grid_encoder_id(grid_size))
        return FeatureTable(episode, step, x, self.lineage())

    def online_grid(self, timesteps, episode_seeds, grid_size: int) -> np.ndarray:
        """One step of a pool=grid stream (the same resync rule as `online`) -> (B, g*g, D) float32."""
        return np.asarray(self._stream_step(timesteps, grid_size), np.float32)

    def online_detached_grid(self, timesteps, episode_seeds, grid_size: int) -> np.ndarray:
        return np.asarray(self.client.encode(_windows_of(timesteps), pool="grid", grid_size=grid_size), np.float32)

    def close(self) -> None:
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        self.client.close()


GRID_RESIDENT_ENV = "VJEPA_ROBOT_GRID_RESIDENT_GB"


def read_grid_rows(
    store: Store, dataset: str, encoder_id: str, resident_gb: float | None = None, batch_rows: int = 4096
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode (N,), step (N,), grids (N, G, D) in the stored dtype), sorted by (episode, step).

    Up to `resident_gb` (default $VJEPA_ROBOT_GRID_RESIDENT_GB, else 4) the grids are read into memory in one go;
    above it they stream from the store batch by batch (Store.iter_embeddings) into a memory-mapped temporary file
    (unlinked at once: the mapping keeps it alive until the array is dropped), and training gathers its batches from
    the page cache. A 100k-window ViT-L g=4 float16 grid table is 3.3 GB (docs/readouts.md)."""
    import os
    import tempfile

    shape = store.embedding_shape(dataset, encoder_id)
    n = store.count_steps(dataset)
    limit = float(os.environ.get(GRID_RESIDENT_ENV, "4")) if resident_gb is None else float(resident_gb)
    first = next(store.iter_embeddings(dataset, encoder_id, batch_rows=1), None)
    dtype = first[2].dtype if first is not None else np.float32
    if n * int(np.prod(shape)) * dtype.itemsize <= limit * 1e9:
        return store.read_embeddings(dataset, encoder_id, dtype=None)
    fd, path = tempfile.mkstemp(prefix=f"grids-{dataset}-", suffix=".npy")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, *shape))
    finally:
        os.unlink(path)
    episodes, steps, at = [], [], 0
    for ep, st, x in store.iter_embeddings(dataset, encoder_id, batch_rows=batch_rows):
        if at + len(st) > n:
            raise ValueError(f"grids of dataset {dataset!r} hold more rows than its {n} steps: re-encode it")
        out[at : at + len(st)] = x
        episodes.append(ep)
        steps.append(st)
        at += len(st)
    episode, step = (np.concatenate(a) if a else np.zeros(0, np.int32) for a in (episodes, steps))
    key = episode.astype(np.int64) << 32 | step
    if np.any(np.diff(key) < 0):  # written episode by episode, so rarely needed: sorting costs one more pass
        order = np.argsort(key, kind="stable")
        episode, step, out = episode[order], step[order], _gather_mapped(out[:at], order)
    return episode, step, out[:at]


def _gather_mapped(x: np.ndarray, order: np.ndarray, chunk: int = 4096) -> np.ndarray:
    import os
    import tempfile

    fd, path = tempfile.mkstemp(prefix="grids-sorted-", suffix=".npy")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=x.dtype, shape=x.shape)
    finally:
        os.unlink(path)
    for i in range(0, len(order), chunk):
        out[i : i + chunk] = x[order[i : i + chunk]]
    return out


def _window(ts) -> np.ndarray:
    if ts.window is None:
        raise ValueError("vjepa2 features need rendered windows: build the env with image_size > 0")
    return ts.window


def _windows_of(timesteps) -> np.ndarray:
    return np.stack([_window(ts) for ts in timesteps])


def make_feature_source(
    name: str,
    *,
    encoder_url: str | None = None,
    token: str | None = None,
    compress: str = "auto",
    task: str = "easy",
    cancel=None,
) -> FeatureSource:
    """The feature source `name`; `task` sizes state features (tasks.py: reacher 8-d, walker 24-d, ...)."""
    try:
        kind = FeatureName(name)
    except ValueError:
        raise ValueError(f"unknown features {name!r}: choose one of {', '.join(FEATURE_SOURCES)}") from None
    if kind is FeatureName.state:
        return StateFeatures(task)
    if kind is FeatureName.random:
        return RandomFeatures()
    if not encoder_url:
        raise ValueError("features 'vjepa2' need an encoder: pass --encoder-url (e.g. http://127.0.0.1:8001)")
    return VJEPA2Features(encoder_url, token=token, compress=compress, cancel=cancel)


def _vec2(column) -> np.ndarray:
    from services.common.store import fixed_list_to_numpy

    return fixed_list_to_numpy(column, 2).astype(np.float64)


__all__ = ["FeatureSource", "FeatureTable", "make_feature_source", "train_episode_seed"]
