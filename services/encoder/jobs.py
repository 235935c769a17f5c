"""Embedding a whole dataset into the store: plain functions (tests call them directly) + a per-dataset job runner.

    encode_dataset(store, "jacobian-easy-150", embed=encoder.encode, meta=EmbeddingMeta.of(encoder))
    spec = PoolingSpec.of("grid", 4)    # token grids: (T, 16, D) float16 rows under encoder.encoder_id_for(spec)
    encode_dataset(store, "jacobian-easy-150", embed=lambda w: encoder.encode(w, spec),
                   meta=EmbeddingMeta.of(encoder, spec))

Reads each episode's frames (Store.read_episode_frames), builds every step's 8-frame window with the same padding
rule as the live env (vjepa_robot_client.window), embeds them in batches and appends one episode at a time
(Store.append_embeddings, with the lineage: encoder_id, model, preprocessing, created_at). Idempotent: episodes
already embedded are skipped, so a re-run leaves one row per step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from services.common.store import EmbeddingLineage, Store
from vjepa_robot_client.contract import MEAN_POOLING, DatasetEncodeStatus, PoolingSpec
from vjepa_robot_client.window import chunk_windows

log = logging.getLogger(__name__)

EmbedFn = Callable[[np.ndarray], np.ndarray]  # (B, 8, H, W, 3) uint8 -> (B, D) float32, or (B, G, D') grids
PooledEmbedFn = Callable[[np.ndarray, PoolingSpec], np.ndarray]  # the same, for a given pooling


class EmbeddingMeta(EmbeddingLineage):
    """The lineage written next to every embedding (Store.EmbeddingLineage), read off a loaded encoder."""

    @classmethod
    def of(cls, encoder: Any, pooling: PoolingSpec | None = None) -> EmbeddingMeta:
        """Mean: the base id, (D,) float32 rows. Grid: '<base id>-<tag>', (g*g, D') rows in the spec's dtype, the
        encoder's full lineage (random_init, pooling, layers, ...) kept in the table's schema."""
        spec = pooling or MEAN_POOLING
        base = getattr(encoder, "lineage", None)
        lineage = (
            base(spec) if callable(base) else {"encoder_id": spec.encoder_id(encoder.encoder_id), **spec.lineage()}
        )
        if not spec.is_grid:
            return cls(encoder.encoder_id, encoder.model_name, encoder.preprocessing, int(encoder.dim), details=lineage)
        dim = encoder.dim_for(spec) if hasattr(encoder, "dim_for") else int(encoder.dim) * len(spec.layers or [1])
        return cls(
            spec.encoder_id(encoder.encoder_id),
            encoder.model_name,
            encoder.preprocessing,
            dim,
            tokens=spec.tokens,
            dtype=spec.wire_dtype,
            details=lineage,
        )


def episode_step_counts(store: Store, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(episode (N,), step (N,)) of every step row, sorted by (episode, step); raises DatasetNotFound."""
    table = store.read_steps(dataset, [])
    return table.column("episode").to_numpy(), table.column("step").to_numpy()


def episode_embeddings(frames: np.ndarray, embed: EmbedFn, batch_size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames -> (T, D) float32: the embedding of the window ending at each step.

    Windows are built per chunk (a whole episode of 8x256x256 windows would be 1.5 MB x T).
    """
    t_total = frames.shape[0]
    out = []
    for start in range(0, t_total, batch_size):
        stop = min(start + batch_size, t_total)
        windows = chunk_windows(frames, start, stop)  # (stop-start, 8, H, W, 3)
        out.append(np.asarray(embed(windows)))  # (n, D) float32, or (n, G, D') grids in their own dtype
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def encode_dataset(
    store: Store,
    dataset: str,
    embed: EmbedFn,
    meta: EmbeddingMeta,
    *,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Embed every step of `dataset` not yet embedded by this encoder. Returns (done, total) rows."""
    episodes, steps = episode_step_counts(store, dataset)
    total = int(episodes.shape[0])
    present, done = store.embedded_episodes(dataset, meta.encoder_id)
    if on_progress:
        on_progress(done, total)
    for ep in np.unique(episodes).tolist():
        if ep in present:
            continue
        ep_steps = steps[episodes == ep]
        frames = store.read_episode_frames(dataset, ep)  # (T, H, W, 3) uint8, step order
        if frames.shape[0] != ep_steps.shape[0]:
            raise RuntimeError(f"episode {ep} of {dataset!r}: {frames.shape[0]} frames for {ep_steps.shape[0]} steps")
        emb = episode_embeddings(frames, embed, batch_size)  # (T, D) or (T, G, D')
        if emb.shape != (ep_steps.shape[0], *meta.row_shape):
            raise RuntimeError(f"the encoder returned {emb.shape}, expected {(ep_steps.shape[0], *meta.row_shape)}")
        store.append_embeddings(dataset, ep, ep_steps, emb, meta)  # one episode per add
        done += emb.shape[0]
        if on_progress:
            on_progress(done, total)
    return done, total


class DatasetJobs:
    """At most one background encoding job per (dataset, pooling); progress readable at any time.

    embed(windows, spec) runs a forward pass of one pooling; meta_for(spec) is that pooling's lineage
    (EmbeddingMeta.of(encoder, spec)). A plain EmbeddingMeta for `meta_for` serves mean pooling only.
    """

    def __init__(
        self, store_uri: str, embed: PooledEmbedFn, meta_for: Callable[[PoolingSpec], EmbeddingMeta] | EmbeddingMeta
    ):
        self.store_uri, self.embed = store_uri, embed
        if isinstance(meta_for, EmbeddingLineage):
            mean_meta = meta_for
            self.meta_for: Callable[[PoolingSpec], EmbeddingLineage] = lambda spec: mean_meta
        else:
            self.meta_for = meta_for
        self._lock = threading.Lock()
        self._jobs: dict[Any, DatasetEncodeStatus] = {}  # _key(dataset, meta) -> status
        self._threads: dict[Any, threading.Thread] = {}

    @staticmethod
    def _key(dataset: str, meta: EmbeddingLineage) -> Any:
        """Mean jobs are keyed by the dataset name (as before grids); a grid job by (dataset, its encoder id)."""
        return dataset if meta.tokens is None else (dataset, meta.encoder_id)

    def store(self) -> Store:
        return Store(self.store_uri)

    def start(self, dataset: str, batch_size: int, pooling: PoolingSpec | None = None) -> DatasetEncodeStatus:
        """Start (or join) the job for `dataset` at this pooling. Raises DatasetNotFound synchronously."""
        spec = pooling or MEAN_POOLING
        meta = self.meta_for(spec)
        store = self.store()
        store.require_steps(dataset)  # DatasetNotFound -> 404 before any thread starts
        key = self._key(dataset, meta)
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.status == "running":
                return current.model_copy()
            status = DatasetEncodeStatus(dataset=dataset, encoder_id=meta.encoder_id, status="running")
            self._jobs[key] = status
            thread = threading.Thread(
                target=self._run, args=(key, spec, meta, batch_size), name=f"encode-{dataset}", daemon=True
            )
            self._threads[key] = thread
            thread.start()
            return status.model_copy()

    def status(self, dataset: str, pooling: PoolingSpec | None = None) -> DatasetEncodeStatus:
        meta = self.meta_for(pooling or MEAN_POOLING)
        with self._lock:
            job = self._jobs.get(self._key(dataset, meta))
            if job is not None:
                return job.model_copy()
        progress = self.store().embedding_progress(dataset, meta.encoder_id)  # DatasetNotFound -> 404
        return DatasetEncodeStatus(
            dataset=dataset,
            encoder_id=meta.encoder_id,
            status="done" if progress.complete else "idle",
            done=progress.done,
            total=progress.total,
        )

    def join(self, dataset: str, timeout: float | None = None, pooling: PoolingSpec | None = None) -> None:
        thread = self._threads.get(self._key(dataset, self.meta_for(pooling or MEAN_POOLING)))
        if thread:
            thread.join(timeout)

    def _set(self, key: Any, **fields: Any) -> None:
        with self._lock:
            job = self._jobs[key]
            self._jobs[key] = job.model_copy(update=fields)

    def _run(self, key: Any, spec: PoolingSpec, meta: EmbeddingLineage, batch_size: int) -> None:
        dataset = key if isinstance(key, str) else key[0]
        try:
            done, total = encode_dataset(
                self.store(),
                dataset,
                lambda windows: self.embed(windows, spec),
                meta,
                batch_size=batch_size,
                on_progress=lambda d, t: self._set(key, done=d, total=t),
            )
            self._set(key, status="done", done=done, total=total)
            log.info("dataset %s: %d/%d steps embedded by %s", dataset, done, total, meta.encoder_id)
        except Exception as exc:  # the job reports; the service keeps serving
            log.exception("encoding dataset %s (%s) failed", dataset, meta.encoder_id)
            self._set(key, status="failed", error=f"{type(exc).__name__}: {exc}")
