"""Embedding a whole dataset into the store: plain functions (tests call them directly) + a per-dataset job runner.

    encode_dataset(store, "jacobian-easy-150", embed=encoder.encode, meta=EmbeddingMeta.of(encoder))

Reads each episode's frames (Store.read_episode_frames), builds every step's 8-frame window with the same padding
rule as the live env (vjepa_robot_client.window), embeds them in batches and appends one episode per
`add` to emb__<dataset>__<encoder_id> (embeddings_schema(dim), lineage: encoder_id, model, preprocessing,
created_at). Idempotent: episodes already in the table are skipped, so a re-run leaves one row per step.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from services.common.store import EMBEDDINGS_STORAGE_VERSION, Store, embeddings_schema, embeddings_table_name, now_iso
from vjepa_robot_client.contract import DatasetEncodeStatus
from vjepa_robot_client.window import chunk_windows

log = logging.getLogger(__name__)

EmbedFn = Callable[[np.ndarray], np.ndarray]  # (B, 8, H, W, 3) uint8 -> (B, D) float32


@dataclass(frozen=True)
class EmbeddingMeta:
    """The lineage written next to every embedding."""

    encoder_id: str
    model: str
    preprocessing: str
    dim: int

    @classmethod
    def of(cls, encoder: Any) -> "EmbeddingMeta":
        return cls(encoder.encoder_id, encoder.model_name, encoder.preprocessing, int(encoder.dim))


def episode_step_counts(store: Store, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(episode (N,), step (N,)) of every step row, sorted by (episode, step); raises DatasetNotFound."""
    table = store.read_steps(dataset, [])
    return table.column("episode").to_numpy(), table.column("step").to_numpy()


def embedded_episodes(store: Store, dataset: str, encoder_id: str) -> tuple[set[int], int]:
    """(episodes already embedded, rows already written) for this dataset and encoder."""
    name = embeddings_table_name(dataset, encoder_id)
    if not store.has_table(name):
        return set(), 0
    col = store.open(name).to_lance().to_table(columns=["episode"]).column("episode").to_numpy()
    return set(np.unique(col).tolist()), int(col.shape[0])


def episode_embeddings(frames: np.ndarray, embed: EmbedFn, batch_size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames -> (T, D) float32: the embedding of the window ending at each step.

    Windows are built per chunk (a whole episode of 8x256x256 windows would be 1.5 MB x T).
    """
    t_total = frames.shape[0]
    out = []
    for start in range(0, t_total, batch_size):
        stop = min(start + batch_size, t_total)
        windows = chunk_windows(frames, start, stop)  # (stop-start, 8, H, W, 3)
        out.append(np.asarray(embed(windows), dtype=np.float32))
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
    present, done = embedded_episodes(store, dataset, meta.encoder_id)
    if on_progress:
        on_progress(done, total)
    name = embeddings_table_name(dataset, meta.encoder_id)
    schema = embeddings_schema(meta.dim)
    table = None
    for ep in np.unique(episodes).tolist():
        if ep in present:
            continue
        ep_steps = steps[episodes == ep]
        frames = store.read_episode_frames(dataset, ep)  # (T, H, W, 3) uint8, step order
        if frames.shape[0] != ep_steps.shape[0]:
            raise RuntimeError(f"episode {ep} of {dataset!r}: {frames.shape[0]} frames for {ep_steps.shape[0]} steps")
        emb = episode_embeddings(frames, embed, batch_size)  # (T, D)
        if emb.shape != (ep_steps.shape[0], meta.dim):
            raise RuntimeError(f"the encoder returned {emb.shape}, expected ({ep_steps.shape[0]}, {meta.dim})")
        n = emb.shape[0]
        rows = pa.Table.from_arrays(
            [
                pa.array([dataset] * n, pa.string()),
                pa.array(np.full(n, ep, np.int32)),
                pa.array(ep_steps.astype(np.int32)),
                pa.array([meta.encoder_id] * n, pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), meta.dim),
                pa.array([meta.model] * n, pa.string()),
                pa.array([meta.preprocessing] * n, pa.string()),
                pa.array([now_iso()] * n, pa.string()),
            ],
            schema=schema,
        )
        if table is None:
            table = store.open(name) if store.has_table(name) else store.db.create_table(
                name, schema=schema,
                # legacy (v1) files read ~3x faster in bulk here: 1.25 vs 0.38 GB/s for 100k x 1024 (bench/trainer.py)
                data_storage_version=EMBEDDINGS_STORAGE_VERSION)
        table.add(rows)  # one episode per add: readers never see half an episode
        done += n
        if on_progress:
            on_progress(done, total)
    return done, total


class DatasetJobs:
    """At most one background encoding job per dataset; progress readable at any time."""

    def __init__(self, store_uri: str, embed: EmbedFn, meta: EmbeddingMeta):
        self.store_uri, self.embed, self.meta = store_uri, embed, meta
        self._lock = threading.Lock()
        self._jobs: dict[str, DatasetEncodeStatus] = {}
        self._threads: dict[str, threading.Thread] = {}

    def store(self) -> Store:
        return Store(self.store_uri)

    def start(self, dataset: str, batch_size: int) -> DatasetEncodeStatus:
        """Start (or join) the job for `dataset`. Raises DatasetNotFound synchronously."""
        store = self.store()
        store.steps(dataset)  # DatasetNotFound -> 404 before any thread starts
        with self._lock:
            current = self._jobs.get(dataset)
            if current is not None and current.status == "running":
                return current.model_copy()
            status = DatasetEncodeStatus(dataset=dataset, encoder_id=self.meta.encoder_id, status="running")
            self._jobs[dataset] = status
            thread = threading.Thread(
                target=self._run, args=(dataset, batch_size), name=f"encode-{dataset}", daemon=True
            )
            self._threads[dataset] = thread
            thread.start()
            return status.model_copy()

    def status(self, dataset: str) -> DatasetEncodeStatus:
        with self._lock:
            job = self._jobs.get(dataset)
            if job is not None:
                return job.model_copy()
        store = self.store()
        episodes, _ = episode_step_counts(store, dataset)  # DatasetNotFound -> 404
        _, done = embedded_episodes(store, dataset, self.meta.encoder_id)
        total = int(episodes.shape[0])
        state = "done" if total and done >= total else "idle"
        return DatasetEncodeStatus(dataset=dataset, encoder_id=self.meta.encoder_id, status=state, done=done, total=total)

    def join(self, dataset: str, timeout: float | None = None) -> None:
        thread = self._threads.get(dataset)
        if thread:
            thread.join(timeout)

    def _set(self, dataset: str, **fields: Any) -> None:
        with self._lock:
            job = self._jobs[dataset]
            self._jobs[dataset] = job.model_copy(update=fields)

    def _run(self, dataset: str, batch_size: int) -> None:
        try:
            done, total = encode_dataset(
                self.store(),
                dataset,
                self.embed,
                self.meta,
                batch_size=batch_size,
                on_progress=lambda d, t: self._set(dataset, done=d, total=t),
            )
            self._set(dataset, status="done", done=done, total=total)
            log.info("dataset %s: %d/%d steps embedded by %s", dataset, done, total, self.meta.encoder_id)
        except Exception as exc:  # the job reports; the service keeps serving
            log.exception("encoding dataset %s failed", dataset)
            self._set(dataset, status="failed", error=f"{type(exc).__name__}: {exc}")
