"""The LanceDB feature store: one place that knows table names, schemas and how to read them in bulk.

Tables (all in one LanceDB database, a local directory by default or any LanceDB URI such as s3://...):
    datasets                         one row per dataset: metadata + status (running/ready/failed)
    steps__<dataset>                 one row per step: frame (PNG), action, reward, state, finger/target xy
    emb__<dataset>__<encoder_id>     one row per step: the embedding of the 8-frame window ending at that step
                                     pool=mean: (D,) float32; pool=grid (encoder id '<base>-grid4-tmean', ...):
                                     (G, D) tokens flattened to G*D float16 (or float32), the shape in the schema

Trainer-facing reads (issue 17): read_embeddings(dataset, encoder_id) -> (episode, step, X) with X (N, D) for a mean
id and (N, G, D) for a grid id; embedding_shape(...) -> (D,) or (G, D) without reading rows; iter_embeddings(...)
streams a large grid table in row batches; embedding_progress works for both. Grid ids come from
vjepa_robot_client.contract.pooled_encoder_id(base_id, "grid", 4) (base_id = GET /info's encoder_id).

This module is the only door to LanceDB: nothing else opens tables, spells table names or reads Lance datasets.
Writers: one process per table (concurrent merge_insert from several processes duplicates rows). Episodes are
appended whole, in one `add`, so a reader never sees a partial episode.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from PIL import Image

from vjepa_robot_client.contract import validate_name

STORE_ENV = "VJEPA_ROBOT_STORE"
DEFAULT_STORE = "./vjepa-robot-store"
PNG_COMPRESS_LEVEL = 3  # measured: ~20 KB per 256x256 reacher frame, ~2.6 ms encode, ~0.7 ms decode

DATASETS_TABLE = "datasets"
SHAPE_KEY = b"vjepa_robot.shape"  # grid tables: "G,D" in the schema metadata (mean tables have none: (D,))
LINEAGE_KEY = b"vjepa_robot.lineage"  # tables created since issue 17: the encoder lineage as JSON (random_init, ...)
EMBEDDINGS_STORAGE_VERSION = "legacy"  # bulk reads of fixed-size float vectors: ~3x faster than the v2 format here


def default_store_uri() -> str:
    return os.environ.get(STORE_ENV) or DEFAULT_STORE


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def steps_table_name(dataset: str) -> str:
    return f"steps__{validate_name(dataset, 'dataset name')}"


def embeddings_table_name(dataset: str, encoder_id: str) -> str:
    return f"emb__{validate_name(dataset, 'dataset name')}__{validate_name(encoder_id, 'encoder id')}"


def vec2() -> pa.DataType:
    return pa.list_(pa.float32(), 2)


STEPS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("episode", pa.int32()),
        ("step", pa.int32()),
        ("seed", pa.int64()),
        ("frame", pa.binary()),  # PNG, empty when the dataset stores no frames (image_size=0)
        ("action", vec2()),
        ("reward", pa.float32()),
        ("position", vec2()),  # joint angles (unwrapped, as dm_control reports them)
        ("to_target", vec2()),
        ("velocity", vec2()),
        ("finger_xy", vec2()),  # for the linear probe
        ("target_xy", vec2()),
    ]
)


def task_steps_schema(action_dim: int, state_dim: int) -> pa.Schema:
    """The steps of a task other than reacher (vjepa_robot_lab/envs/tasks.py): actions (A,) and the flattened
    observation
    `state` (S,) float32 (TaskSpec.state). Reacher's datasets keep STEPS_SCHEMA (existing stores read as before)."""
    return pa.schema(
        [
            ("dataset", pa.string()),
            ("episode", pa.int32()),
            ("step", pa.int32()),
            ("seed", pa.int64()),
            ("frame", pa.binary()),  # PNG, empty when the dataset stores no frames (image_size=0)
            ("action", pa.list_(pa.float32(), int(action_dim))),
            ("reward", pa.float32()),
            ("state", pa.list_(pa.float32(), int(state_dim))),
        ]
    )


def is_steps_schema(schema: pa.Schema) -> bool:
    """STEPS_SCHEMA (reacher) or a task_steps_schema(A, S)."""
    if schema == STEPS_SCHEMA:
        return True
    try:
        a, s = schema.field("action").type.list_size, schema.field("state").type.list_size
    except (KeyError, AttributeError):
        return False
    return schema == task_steps_schema(a, s)


DATASETS_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("status", pa.string()),
        ("meta", pa.string()),  # JSON: expert, task, episodes, steps, seed, success_rate, mean_return, ...
        ("updated_at", pa.string()),
    ]
)


def embeddings_schema(
    dim: int, tokens: int | None = None, dtype: str = "float32", details: dict[str, Any] | None = None
) -> pa.Schema:
    """Mean rows: `embedding` is FixedSizeList<float32>[D]. Grid rows (tokens=G given): FixedSizeList<dtype>[G*D],
    with "G,D" in the schema metadata, so a reader can restore (N, G, D). `details` (the encoder's lineage:
    random_init, pooling, grid size, time reduction, layers) is kept in the metadata too."""
    value = {"float32": pa.float32(), "float16": pa.float16()}[dtype]
    width = dim if tokens is None else tokens * dim
    metadata = {}
    if tokens is not None:
        metadata[SHAPE_KEY] = f"{tokens},{dim}".encode()
    if details:
        metadata[LINEAGE_KEY] = json.dumps(details, sort_keys=True, default=str).encode()
    return pa.schema(
        [
            ("dataset", pa.string()),
            ("episode", pa.int32()),
            ("step", pa.int32()),
            ("encoder_id", pa.string()),
            ("embedding", pa.list_(value, width)),
            ("model", pa.string()),
            ("preprocessing", pa.string()),
            ("created_at", pa.string()),
        ],
        metadata=metadata or None,
    )


def row_shape(schema: pa.Schema) -> tuple[int, ...]:
    """An embeddings table's per-row shape: (D,) for mean tables, (G, D) for grid tables."""
    meta = schema.metadata or {}
    if SHAPE_KEY in meta:
        return tuple(int(x) for x in meta[SHAPE_KEY].decode().split(","))
    return (schema.field("embedding").type.list_size,)


# ----------------------------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------------------------


def encode_png(frame: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> (H, W, 3) uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def fixed_list_to_numpy(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """A FixedSizeList<float32 | float16> column -> (N, width) in its own dtype, zero-copy when it is one chunk."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = column.values if isinstance(column, pa.FixedSizeListArray) else pa.array(column.to_pylist()).values
    if column.offset:
        values = values.slice(column.offset * width, len(column) * width)
    return values.to_numpy(zero_copy_only=False).reshape(-1, width)


# ----------------------------------------------------------------------------------------------------------------
# Store
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingLineage:
    """What is written next to every embedding: which encoder, which weights, which preprocessing."""

    encoder_id: str
    model: str
    preprocessing: str
    dim: int  # D' of one token (D, or D x len(layers))
    tokens: int | None = None  # G = g*g for grid rows; None: mean rows, (D,) float32
    dtype: str = "float32"  # storage dtype of grid rows: float16 (the default grid dtype) or float32
    details: dict[str, Any] | None = None  # the encoder's lineage (random_init, pooling, ...): the table's metadata

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.dim,) if self.tokens is None else (self.tokens, self.dim)


@dataclass(frozen=True)
class EmbeddingProgress:
    done: int  # embedding rows written by this encoder
    total: int  # step rows of the dataset

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.done >= self.total


class DatasetNotFound(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown dataset {self.name!r}: create it first (vjepa-robot datasets create {self.name} ...)"


class Store:
    """A handle on the feature store. Cheap to create; every read sees other processes' latest writes."""

    def __init__(self, uri: str | None = None):
        self.uri = uri or default_store_uri()
        if "://" not in self.uri:
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        # read_consistency_interval=0: every read sees other processes' latest writes
        self.db = lancedb.connect(self.uri, read_consistency_interval=timedelta(0))

    # -- tables --------------------------------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        result = self.db.table_names(limit=100_000) if _accepts_limit(self.db.table_names) else self.db.table_names()
        return list(result)

    def has_table(self, name: str) -> bool:
        return name in self.table_names()

    def open(self, name: str):
        return self.db.open_table(name)

    def drop(self, name: str) -> None:
        if self.has_table(name):
            self.db.drop_table(name)

    # -- dataset metadata ----------------------------------------------------------------------------------------

    def _datasets(self):
        if not self.has_table(DATASETS_TABLE):
            try:
                return self.db.create_table(DATASETS_TABLE, schema=DATASETS_SCHEMA)
            except Exception:  # created by another process meanwhile
                pass
        return self.open(DATASETS_TABLE)

    def put_dataset_meta(self, name: str, status: str, meta: dict[str, Any]) -> None:
        validate_name(name, "dataset name")
        row = {"name": name, "status": status, "meta": json.dumps(meta, default=str), "updated_at": now_iso()}
        table = self._datasets()
        table.merge_insert("name").when_matched_update_all().when_not_matched_insert_all().execute(
            pa.Table.from_pylist([row], schema=DATASETS_SCHEMA)
        )

    def delete_dataset_meta(self, name: str) -> None:
        validate_name(name, "dataset name")
        self._datasets().delete(f"name = '{name}'")

    def get_dataset_meta(self, name: str) -> dict[str, Any]:
        validate_name(name, "dataset name")
        rows = self._datasets().search().where(f"name = '{name}'").limit(10).to_list()
        if not rows:
            raise DatasetNotFound(name)
        row = max(rows, key=lambda r: r["updated_at"])
        meta = json.loads(row["meta"])
        meta.update(name=row["name"], status=row["status"], updated_at=row["updated_at"])
        return meta

    def list_datasets(self) -> list[dict[str, Any]]:
        if not self.has_table(DATASETS_TABLE):
            return []
        out = []
        for row in self._datasets().to_arrow().to_pylist():
            meta = json.loads(row["meta"])
            meta.update(name=row["name"], status=row["status"], updated_at=row["updated_at"])
            out.append(meta)
        return sorted(out, key=lambda m: m["name"])

    # -- steps ---------------------------------------------------------------------------------------------------

    def _steps(self, dataset: str):
        name = steps_table_name(dataset)
        if not self.has_table(name):
            raise DatasetNotFound(dataset)
        return self.open(name)

    def require_steps(self, dataset: str) -> int:
        """The dataset's step-row count; raises DatasetNotFound when it has no steps table."""
        return self._steps(dataset).count_rows()

    def append_episode(self, dataset: str, rows: pa.Table) -> None:
        """Append one whole episode (STEPS_SCHEMA rows, or task_steps_schema rows for a task other than reacher) in
        one `add`: a reader never sees half an episode."""
        if not is_steps_schema(rows.schema):
            raise ValueError(f"episode rows must have STEPS_SCHEMA or a task_steps_schema, got {rows.schema}")
        name = steps_table_name(dataset)
        if self.has_table(name):
            self.open(name).add(rows)
        else:
            try:
                self.db.create_table(name, data=rows, schema=rows.schema)
            except ValueError:  # "already exists": another process created it since has_table; append instead
                self.open(name).add(rows)

    def count_steps(self, dataset: str) -> int:
        """Step rows stored for a dataset (0 for a dataset whose generation has not written an episode yet)."""
        name = steps_table_name(dataset)
        return self.open(name).count_rows() if self.has_table(name) else 0

    def steps_schema(self, dataset: str) -> pa.Schema:
        """The schema of a dataset's steps: STEPS_SCHEMA (reacher) or a task_steps_schema (action and state widths)."""
        return self._steps(dataset).schema

    def has_steps(self, dataset: str) -> bool:
        return self.has_table(steps_table_name(dataset))

    def compact_steps(self, dataset: str) -> None:
        """Merge the one-episode fragments of a finished dataset (an optimisation: failures are ignored)."""
        try:
            self._steps(dataset).optimize()
        except Exception:
            pass

    def drop_dataset(self, dataset: str) -> None:
        """Drop a dataset's steps, its embeddings by every encoder, and its metadata.

        Names may contain '__', so the table name `emb__col__x__<id>` could be dataset `col`'s (encoder `x__<id>`)
        or dataset `col__x`'s: an embeddings table is dropped only when its rows say they are this dataset's
        (embedding_tables)."""
        validate_name(dataset, "dataset name")
        for name in [steps_table_name(dataset), *self.embedding_tables(dataset)]:
            self.drop(name)
        self.delete_dataset_meta(dataset)

    def embedding_tables(self, dataset: str) -> list[str]:
        """The embeddings tables of `dataset` (by any encoder): those named emb__<dataset>__* whose rows belong to
        it. A name alone cannot say when another dataset's name extends this one's with '__' (col / col__x)."""
        prefix = embeddings_table_name(dataset, "x")[:-1]  # emb__<dataset>__
        out = []
        for name in self.table_names():
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]  # the encoder id, if the table is this dataset's
            owner = self._table_dataset(name) if "__" in rest or not _valid(rest) else dataset
            if owner == dataset:  # no other dataset can own this name, or its rows say it is this one's
                out.append(name)
        return out

    def _table_dataset(self, name: str) -> str | None:
        """The `dataset` of an embeddings table's first row (None: an empty or unreadable table)."""
        try:
            rows = self.open(name).to_lance().head(1, columns=["dataset"]).column("dataset").to_pylist()
        except Exception:
            return None
        return rows[0] if rows else None

    def copy_steps(self, src: str, dst: str, batch_rows: int = 256) -> None:
        """Copy dataset `src`'s step rows into a new steps table for `dst` (which must have none), in row batches;
        the rows' `dataset` column is set to `dst`. Used to put a finished import in place under its final name."""
        if self.has_steps(dst):
            raise ValueError(f"dataset {dst!r} already has steps: drop it first")
        lance = self._steps(src).to_lance()
        name, schema = steps_table_name(dst), lance.schema
        table = None
        for batch in lance.to_batches(batch_size=batch_rows):
            rows = pa.Table.from_batches([batch]).set_column(
                schema.get_field_index("dataset"), "dataset", pa.array([dst] * batch.num_rows, pa.string())
            )
            rows = rows.cast(schema)
            if table is None:
                table = self.db.create_table(name, data=rows, schema=schema)
            else:
                table.add(rows)

    def episodes_present(self, dataset: str) -> set[int]:
        name = steps_table_name(dataset)
        if not self.has_table(name):
            return set()
        col = self.open(name).to_lance().to_table(columns=["episode"]).column("episode")
        return set(np.unique(col.to_numpy()).tolist())

    def read_steps(self, dataset: str, columns: list[str], where: str | None = None) -> pa.Table:
        """Columnar bulk read of a dataset's steps, sorted by (episode, step)."""
        ds = self._steps(dataset).to_lance()
        cols = list(dict.fromkeys(["episode", "step", *columns]))
        table = ds.to_table(columns=cols, filter=where)
        return table.sort_by([("episode", "ascending"), ("step", "ascending")])

    def read_episode_frames(self, dataset: str, episode: int) -> np.ndarray:
        """(T, H, W, 3) uint8 frames of one episode, in step order."""
        table = self.read_steps(dataset, ["frame"], where=f"episode = {int(episode)}")
        frames = table.column("frame").to_pylist()
        if not frames or not frames[0]:
            raise ValueError(f"dataset {dataset!r} stores no frames (created with image_size=0)")
        return np.stack([decode_png(f) for f in frames])

    # -- embeddings ----------------------------------------------------------------------------------------------

    def append_embeddings(
        self, dataset: str, episode: int, steps: np.ndarray, embeddings: np.ndarray, lineage: EmbeddingLineage
    ) -> None:
        """Append one episode's embeddings, (T,) steps and (T, D) float32 (mean) or (T, G, D) (grid, stored in
        lineage.dtype), with their lineage, in one `add`. A grid table keeps the shape and dtype it was created with."""
        steps = np.asarray(steps)
        embeddings = np.asarray(embeddings, dtype=np.float32 if lineage.tokens is None else lineage.dtype)
        n = int(steps.shape[0])
        if embeddings.shape != (n, *lineage.row_shape):
            raise ValueError(
                f"embeddings of episode {episode} have shape {embeddings.shape}, "
                f"expected {(n, *lineage.row_shape)} for {n} steps"
            )
        schema = embeddings_schema(lineage.dim, lineage.tokens, lineage.dtype, lineage.details)
        width = int(np.prod(lineage.row_shape))
        value_type = schema.field("embedding").type.value_type
        rows = pa.Table.from_arrays(
            [
                pa.array([dataset] * n, pa.string()),
                pa.array(np.full(n, episode, np.int32)),
                pa.array(steps.astype(np.int32)),
                pa.array([lineage.encoder_id] * n, pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), value_type), width),
                pa.array([lineage.model] * n, pa.string()),
                pa.array([lineage.preprocessing] * n, pa.string()),
                pa.array([now_iso()] * n, pa.string()),
            ],
            schema=schema,
        )
        name = embeddings_table_name(dataset, lineage.encoder_id)
        if self.has_table(name):
            owner = self._table_dataset(name) if "__" in dataset + lineage.encoder_id else dataset
            if owner not in (dataset, None):
                raise ValueError(
                    f"table {name} holds dataset {owner!r}'s embeddings, not {dataset!r}'s: the names "
                    f"{dataset!r} and encoder id {lineage.encoder_id!r} collide with it (rename the dataset)"
                )
            table = self.open(name)
            if table.schema.field("embedding").type != schema.field("embedding").type:
                raise ValueError(
                    f"table {name} holds {table.schema.field('embedding').type} rows, these are "
                    f"{schema.field('embedding').type}: one encoder id, one row shape and dtype"
                )
            table.add(rows.replace_schema_metadata(table.schema.metadata))
        else:
            # legacy (v1) files read ~3x faster in bulk here: 1.25 vs 0.38 GB/s for 100k x 1024 (bench/trainer.py)
            self.db.create_table(name, data=rows, schema=schema, data_storage_version=EMBEDDINGS_STORAGE_VERSION)

    def embedded_episodes(self, dataset: str, encoder_id: str) -> tuple[set[int], int]:
        """(episodes already embedded by this encoder, embedding rows written)."""
        name = embeddings_table_name(dataset, encoder_id)
        if not self.has_table(name):
            return set(), 0
        col = self.open(name).to_lance().to_table(columns=["episode"]).column("episode").to_numpy()
        return set(np.unique(col).tolist()), int(col.shape[0])

    def embedding_progress(self, dataset: str, encoder_id: str) -> EmbeddingProgress:
        """How much of a dataset this encoder has embedded. Raises DatasetNotFound for an unknown dataset.

        THE rule for "is this dataset embedded": every stored step row has its embedding (and there is at least
        one step). Used by the encoder's job status and by the trainer before it reads features.
        """
        if not self.has_steps(dataset):
            self.get_dataset_meta(dataset)  # DatasetNotFound
        name = embeddings_table_name(dataset, encoder_id)
        done = self.open(name).count_rows() if self._owns(dataset, encoder_id, name) else 0
        return EmbeddingProgress(done=done, total=self.count_steps(dataset))

    def _owns(self, dataset: str, encoder_id: str, name: str) -> bool:
        """Table `name` exists and holds this dataset's rows (only a name with '__' in a part can be another's)."""
        if not self.has_table(name):
            return False
        return "__" not in dataset + encoder_id or self._table_dataset(name) in (dataset, None)

    def _embeddings(self, dataset: str, encoder_id: str):
        name = embeddings_table_name(dataset, encoder_id)
        if not self._owns(dataset, encoder_id, name):
            raise KeyError(f"no embeddings of dataset {dataset!r} by encoder {encoder_id!r}: encode it first")
        return self.open(name)

    def embedding_shape(self, dataset: str, encoder_id: str) -> tuple[int, ...]:
        """One row's shape without reading rows: (D,) for a mean id, (G, D) for a grid id. KeyError if absent."""
        return row_shape(self._embeddings(dataset, encoder_id).schema)

    def embedding_lineage(self, dataset: str, encoder_id: str) -> dict[str, Any]:
        """The encoder lineage stored with the table (encoder_id, base_encoder_id, random_init, pooling, grid_size,
        time_reduction, layers, embedding_dtype, ...); {} for a table written before it was recorded."""
        meta = self._embeddings(dataset, encoder_id).schema.metadata or {}
        return json.loads(meta[LINEAGE_KEY]) if LINEAGE_KEY in meta else {}

    def read_embeddings(
        self, dataset: str, encoder_id: str, dtype: Any = np.float32, episodes: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(episode (N,), step (N,), embedding), sorted by (episode, step).

        embedding: (N, D) for a mean id, (N, G, D) for a grid id; float32 by default, dtype=None keeps the stored
        dtype (float16 grids: half the memory; a 100k-window ViT-L g=4 grid is 3.3 GB in float16).
        episodes: read only these episodes (a filter pushed down to Lance), e.g. to train on a part at a time.
        """
        lance = self._embeddings(dataset, encoder_id).to_lance()
        shape = row_shape(lance.schema)
        where = None if episodes is None else f"episode IN ({', '.join(str(int(e)) for e in episodes) or '-1'})"
        table = lance.to_table(columns=["episode", "step", "embedding"], filter=where)
        key = table.column("episode").to_numpy().astype(np.int64) << 32 | table.column("step").to_numpy()
        if len(key) and np.any(np.diff(key) < 0):  # written episode by episode: usually in order, no copy needed
            table = table.sort_by([("episode", "ascending"), ("step", "ascending")])
        emb = table.column("embedding").combine_chunks()
        x = fixed_list_to_numpy(emb, emb.type.list_size).reshape(-1, *shape)
        if dtype is not None and x.dtype != np.dtype(dtype):
            x = x.astype(dtype)
        return (
            table.column("episode").to_numpy(),
            table.column("step").to_numpy(),
            x,
        )

    def iter_embeddings(self, dataset: str, encoder_id: str, batch_rows: int = 4096, dtype: Any = None):
        """Stream a table in batches of at most batch_rows rows: yields (episode (n,), step (n,), X (n, *shape)) in
        storage order (Lance scans fragments in write order: an episode's rows are consecutive but a batch may cut
        an episode, and episodes are not sorted). For grids too large to hold at once; dtype=None keeps the stored
        dtype."""
        lance = self._embeddings(dataset, encoder_id).to_lance()
        shape = row_shape(lance.schema)
        for batch in lance.to_batches(columns=["episode", "step", "embedding"], batch_size=batch_rows):
            emb = batch.column("embedding")
            x = fixed_list_to_numpy(emb, emb.type.list_size).reshape(-1, *shape)
            if dtype is not None and x.dtype != np.dtype(dtype):
                x = x.astype(dtype)
            yield batch.column("episode").to_numpy(), batch.column("step").to_numpy(), x


def _valid(name: str) -> bool:
    try:
        validate_name(name)
    except ValueError:
        return False
    return True


def _accepts_limit(fn) -> bool:
    import inspect

    try:
        return "limit" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
