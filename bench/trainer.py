"""Benchmark: BC training on 100,000 x 1024 features (the findings' scale) and the feature pull from LanceDB.

    python bench/trainer.py [--episodes 500] [--steps 200] [--dim 1024] [--epochs 100] [--batch-size 256]

Synthetic, but through the real path: random float32 features are written to a temp LanceDB embeddings table
with the real schema (store.embeddings_schema), expert actions (a fixed smooth function of the features, so the
loss curve means something) to a steps table with the real schema, then `train_bc` pulls them with
`store.read_embeddings` + `store.read_steps` and trains the findings' MLP with the default TrainBCRequest.

Prints two markdown tables:
  * feature pull, GB/s (goal >= 1 GB/s), with ratios in the same run: lancedb `to_arrow()`, lance `to_table()`,
    `Store.read_embeddings` (lance + sort by (episode, step)), the same two reads from a table written with
    lance's legacy file format (`data_storage_version="legacy"`), and a warm `.npy` as the floor;
  * BC: pull, training time for the epochs, samples/s, final losses (goal <= 3 min for 100 epochs; findings ~8 min).
Evaluation steps/s over HTTP vs in process is the evaluation benchmark's job (vjepa_robot_lab/evaluation/evaluate.py).
The machine this runs on may be shared: run it twice and quote both, with the load average it prints.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from services.common.store import (
    STEPS_SCHEMA,
    Store,
    embeddings_schema,
    embeddings_table_name,
    fixed_list_to_numpy,
    steps_table_name,
)
from vjepa_robot_client.contract import TrainBCRequest
from vjepa_robot_lab.learning.bc import bc_threads, train_bc
from vjepa_robot_lab.perception.features import FeatureSource, FeatureTable
from vjepa_robot_lab.records.runs import RunStore

DATASET, ENCODER_ID = "bench-bc", "bench-random"
ENCODER_ID_LEGACY = "bench-random-legacy"  # the same features in a table written with lance's legacy file format


class StoredEmbeddings(FeatureSource):
    """Embeddings already in the store under a fixed encoder id (the vjepa2 source's offline path, minus HTTP)."""

    name = "vjepa2"

    def __init__(self, encoder_id: str, dim: int):
        self.encoder_id, self.dim = encoder_id, dim

    def lineage(self) -> dict:
        return {**super().lineage(), "encoder_id": self.encoder_id, "model": "synthetic (bench/trainer.py)"}

    def offline(self, store: Store, dataset: str) -> FeatureTable:
        episode, step, x = store.read_embeddings(dataset, self.encoder_id)
        return FeatureTable(episode, step, x, self.lineage())


def _fsl(a: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(a, np.float32).reshape(-1)), a.shape[1])


def write_synthetic(store: Store, episodes: int, steps: int, dim: int, seed: int = 0) -> tuple[float, np.ndarray]:
    """Write the steps + embeddings tables; return (seconds to write the embeddings, the features)."""
    rng = np.random.default_rng(seed)
    n = episodes * steps
    x = rng.standard_normal((n, dim), dtype=np.float32)
    w = rng.standard_normal((dim, 2)).astype(np.float32) / np.sqrt(dim)
    actions = np.tanh(2 * x @ w).astype(np.float32)  # learnable: a smooth function of the features
    episode = np.repeat(np.arange(episodes, dtype=np.int32), steps)
    step = np.tile(np.arange(steps, dtype=np.int32), episodes)
    zeros2 = np.zeros((n, 2), np.float32)
    steps_table = pa.table(
        {
            "dataset": pa.array([DATASET] * n),
            "episode": episode,
            "step": step,
            "seed": episode.astype(np.int64),
            "frame": pa.array([b""] * n, pa.binary()),
            "action": _fsl(actions),
            "reward": np.zeros(n, np.float32),
            "position": _fsl(zeros2),
            "to_target": _fsl(zeros2),
            "velocity": _fsl(zeros2),
            "finger_xy": _fsl(zeros2),
            "target_xy": _fsl(zeros2),
        },
        schema=STEPS_SCHEMA,
    )
    store.db.create_table(steps_table_name(DATASET), data=steps_table, schema=STEPS_SCHEMA)
    store.put_dataset_meta(DATASET, "ready", {"episodes": episodes, "steps": steps, "expert": "synthetic"})
    schema = embeddings_schema(dim)
    emb_table = pa.table(
        {
            "dataset": pa.array([DATASET] * n),
            "episode": episode,
            "step": step,
            "encoder_id": pa.array([ENCODER_ID] * n),
            "embedding": _fsl(x),
            "model": pa.array(["synthetic"] * n),
            "preprocessing": pa.array([""] * n),
            "created_at": pa.array([""] * n),
        },
        schema=schema,
    )
    t = time.perf_counter()
    store.db.create_table(embeddings_table_name(DATASET, ENCODER_ID), data=emb_table, schema=schema)
    write_s = time.perf_counter() - t
    # lance's default (v2.x) file format decodes FixedSizeList<float32, 1024> several times slower than the
    # legacy format on this CPU: measure both from the same bytes
    store.db.create_table(
        embeddings_table_name(DATASET, ENCODER_ID_LEGACY), data=emb_table, schema=schema, data_storage_version="legacy"
    )
    return write_s, x


def time_pulls(store: Store, x: np.ndarray, npy: Path, repeats: int) -> dict[str, float]:
    """Median seconds to get the (N, D) float32 matrix into memory, by each route."""
    dim = x.shape[1]
    name = embeddings_table_name(DATASET, ENCODER_ID)

    def lancedb_to_arrow():
        return fixed_list_to_numpy(store.open(name).to_arrow().column("embedding"), dim)

    def lance_to_table():
        t = store.open(name).to_lance().to_table(columns=["embedding"])
        return fixed_list_to_numpy(t.column("embedding"), dim)

    def read_embeddings():
        return store.read_embeddings(DATASET, ENCODER_ID)[2]

    def legacy_to_table():
        t = store.open(embeddings_table_name(DATASET, ENCODER_ID_LEGACY)).to_lance().to_table(columns=["embedding"])
        return fixed_list_to_numpy(t.column("embedding"), dim)

    def legacy_read_embeddings():
        return store.read_embeddings(DATASET, ENCODER_ID_LEGACY)[2]

    def npy_load():
        return np.load(npy)

    routes = {
        "lancedb `to_arrow()`": lancedb_to_arrow,
        "lance `to_table(columns=[embedding])`": lance_to_table,
        "`Store.read_embeddings` (lance + sort by episode, step)": read_embeddings,
        "legacy-format table: lance `to_table(columns=[embedding])`": legacy_to_table,
        "legacy-format table: `Store.read_embeddings`": legacy_read_embeddings,
        "`.npy` (np.load, warm)": npy_load,
    }
    out = {}
    for label, fn in routes.items():
        got = fn()
        assert got.shape == x.shape and np.array_equal(got[:5], x[:5]), label
        del got
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            got = fn()
            times.append(time.perf_counter() - t)
            del got
        out[label] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--precisions", default="fp32,bf16", help="BC runs to time, comma separated (fp32, bf16)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per pull route (median reported)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    try:
        store = Store(str(root / "store"))
        write_s, x = write_synthetic(store, args.episodes, args.steps, args.dim)
        gb = x.nbytes / 1e9
        npy = root / "x.npy"
        np.save(npy, x)
        pulls = time_pulls(store, x, npy, args.repeats)
        del x

        cfg = TrainBCRequest(dataset=DATASET, features="vjepa2", epochs=args.epochs, batch_size=args.batch_size)
        runs = RunStore(root / "runs")
        threads = bc_threads()
        results = []
        for precision in args.precisions.split(","):
            run = runs.create("bc", cfg.model_dump(mode="json"))
            load = os.getloadavg()[0]
            t = time.perf_counter()
            m = train_bc(cfg, run, StoredEmbeddings(ENCODER_ID, args.dim), store, precision=precision)
            results.append((precision, m, time.perf_counter() - t, load, os.getloadavg()[0]))

        print(
            f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"torch threads for BC {threads} (bc_threads()); shared machine: other jobs compete for the cores, "
            f"see the load averages\n"
        )
        print(
            f"Features: {args.episodes * args.steps:,} x {args.dim} float32 = {gb:.3f} GB; "
            f"LanceDB create_table {write_s:.2f} s\n"
        )
        npy_s = pulls["`.npy` (np.load, warm)"]
        print("| Feature pull route | seconds (median) | GB/s | x .npy time |")
        print("|---|---|---|---|")
        for label, s in pulls.items():
            print(f"| {label} | {s:.3f} | {gb / s:.2f} | {s / npy_s:.1f} |")
        m0 = results[0][1]
        print(
            f"\nBC: {m0['n_train']:,} train + {m0['n_val']:,} val rows, D={args.dim}, batch {args.batch_size}, "
            f"{args.epochs} epochs (goal <= 3 min; findings ~8 min)\n"
        )
        print(
            "| precision | pull inside train_bc | training | s/epoch | train_bc wall | samples/s "
            "| final train / val MSE "
            "| load avg before / after |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for precision, m, wall, l0, l1 in results:
            print(
                f"| {precision} | {m['pull_s']:.2f} s ({m['pull_gb_per_s']:.2f} GB/s) | {m['train_s']:.1f} s "
                f"| {m['train_s'] / max(m['epoch'], 1):.2f} | {wall:.1f} s = {wall / 60:.2f} min "
                f"| {m['samples_per_s']:,.0f} | {m['train_loss']:.2e} / {m['val_loss']:.2e} | {l0:.1f} / {l1:.1f} |"
            )
        print("\nEvaluation steps/s over HTTP vs in process: not measured here (the evaluation benchmark).")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
