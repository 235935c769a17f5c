"""Benchmark: readouts side by side (issue 17) on the TINY RANDOM-INIT STAND-IN encoder, CPU, in one run.

    nice python bench/readouts.py [--episodes 60] [--steps 100] [--image-size 64] [--seeds 3] [--eval-episodes 50]

One jacobian dataset (easy task, `--episodes` x `--steps`, frames `--image-size` px) goes through the real encoder
service (a separate process, `vjepa-robot serve encoder --preset tiny`: random-init weights, NOT V-JEPA 2's):
  1. embeddings: mean, then the g x g token grids for each --grid-sizes (timed: seconds per 1,000 windows)
  2. probes (k-fold over episodes, vjepa_robot_lab/perception/probe.py): ridge + MLP on the mean embedding, on its FLARE
     fusion, and the attentive probe on each grid; the state oracle beside them
  3. BC (vjepa_robot_lab/learning/bc.py) per readout (mean, attentive at g=--bc-grid, flare) on vjepa2, `--seeds` seeds,
     each evaluated live on `--eval-episodes` evaluation episodes through the encoder (a grid stream for
     attentive, the 3-window history for flare); state-mean BC as the reference row; seconds per BC epoch
  4. the ViT-L cost estimate: bytes per window of a float16 g x g grid (measured from the stored table's width at
     D=1024) and one BC step of the ViT-L-shaped attentive policy (D=1024, 16 heads) on random grids, timed here
Writes bench/results/readouts.json and prints the markdown tables of bench/READOUT_RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vjepa_robot  # noqa: F401
from services.common.store import Store
from vjepa_robot.harness import cli_service
from vjepa_robot_client.contract import TrainBCRequest
from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset, dataset_info
from vjepa_robot_lab.evaluation.evaluate import evaluate_policy
from vjepa_robot_lab.learning.bc import BCPolicy, load_bc_policy, train_bc
from vjepa_robot_lab.perception.features import StateFeatures, VJEPA2Features
from vjepa_robot_lab.perception.probe import TARGETS, probe
from vjepa_robot_lab.perception.readouts import PoolerConfig, with_readout
from vjepa_robot_lab.records.runs import RunStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--grid-sizes", default="4,8")
    ap.add_argument("--bc-grid", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--parallel-envs", type=int, default=10)
    ap.add_argument("--probe-steps", type=int, default=800, help="Attentive-probe optimiser steps per fold.")
    ap.add_argument("--skip", default="", help="Comma-separated parts to skip: probe,bc,vitl")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "readouts.json"))
    ap.add_argument("--table", action="store_true", help="Only print the markdown tables of --out.")
    ap.add_argument("--store", default=None, help="Reuse this store (its dataset `ro` and embeddings, if present).")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    skip = set(filter(None, args.skip.split(",")))
    grids = [int(g) for g in args.grid_sizes.split(",") if g]
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench-readouts-"))
    store_uri = args.store or str(root / "store")
    enc = cli_service(
        "encoder", "--preset", "tiny", "--store", store_uri,
        log=root / "encoder.log", env={**os.environ, "VJEPA_ROBOT_THREADS": "1"},
    )  # fmt: skip
    out: dict = {
        "encoder": "tiny random-init stand-in (preset tiny: hidden 96, 2 layers; NOT V-JEPA 2's weights)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f} at start",
        "args": vars(args),
    }
    try:
        url = enc.start().url
        store = Store(store_uri)
        t0 = time.perf_counter()
        if not store.has_steps("ro"):
            create_dataset(
                DatasetSpec(name="ro", episodes=args.episodes, steps=args.steps, seed=0, image_size=args.image_size),
                store=store,
                workers=1,
                progress=False,
            )
        info = dataset_info(store, "ro")
        out["dataset"] = {
            "episodes": args.episodes,
            "steps": args.steps,
            "image_size": args.image_size,
            "windows": args.episodes * args.steps,
            "expert_success": info.get("success_rate"),
            "distinct_targets": args.episodes,
            "generation_s": round(time.perf_counter() - t0, 1),
        }
        print("dataset", out["dataset"], flush=True)

        vj = VJEPA2Features(url)
        out["encode"] = {}
        t = time.perf_counter()
        vj.ensure_encoded(store, "ro")
        out["encode"]["mean"] = _rate(time.perf_counter() - t, args.episodes * args.steps)
        for g in grids:
            t = time.perf_counter()
            vj.ensure_grids(store, "ro", g)
            out["encode"][f"grid{g}"] = _rate(time.perf_counter() - t, args.episodes * args.steps)
            shape = store.embedding_shape("ro", vj.grid_encoder_id(g))
            out["encode"][f"grid{g}"]["row_shape"] = list(shape)
        print("encode", out["encode"], flush=True)

        if "bc" not in skip:  # seeds outermost: an interrupted run still has every readout at its first seeds
            out["bc"] = {}
            runs = RunStore(root / "runs")
            rows = [("vjepa2", "mean"), ("vjepa2", "attentive"), ("vjepa2", "flare"), ("state", "mean")]
            for seed in range(args.seeds):
                for features, readout in rows:
                    key = f"{features} {readout}" + (f" g={args.bc_grid}" if readout == "attentive" else "")
                    cfg = TrainBCRequest(
                        dataset="ro",
                        features=features,
                        readout=readout,
                        grid_size=args.bc_grid,
                        epochs=args.epochs,
                        seed=seed,
                    )
                    run = runs.create("bc", cfg.model_dump(mode="json"))
                    src = vj if features == "vjepa2" else StateFeatures()
                    m = train_bc(cfg, run, src, store)
                    policy = load_bc_policy(run.dir)
                    t = time.perf_counter()
                    ev = evaluate_policy(
                        policy,
                        src,
                        task="easy",
                        episodes=args.eval_episodes,
                        steps=args.steps,
                        seed=0,
                        parallel_envs=args.parallel_envs,
                        image_size=args.image_size,
                    )
                    row = {
                        "seed": seed,
                        "success_rate": ev["success_rate"],
                        "mean_return": round(ev["mean_return"], 2),
                        "val_loss": m["selected_val_loss"],
                        "selected_epoch": m["selected_epoch"],
                        "epoch_s": round(m["train_s"] / max(m["epoch"], 1), 3),
                        "params": m["params"],
                        "dim": m["dim"],
                        "eval_s": round(time.perf_counter() - t, 1),
                    }
                    print("bc", key, row, flush=True)
                    entry = out["bc"].setdefault(key, {"seeds": []})
                    entry["seeds"].append(row)
                    sr = [r["success_rate"] for r in entry["seeds"]]
                    entry.update(
                        success_mean=float(np.mean(sr)),
                        success_ci95=_t_interval(sr),
                        epoch_s_mean=float(np.mean([r["epoch_s"] for r in entry["seeds"]])),
                    )
                    _save(args.out, out)
        if "probe" not in skip:
            out["probe"] = {}
            for name, src, kw in (
                ("vjepa2 mean", vj, {"grid_sizes": grids, "attentive_steps": args.probe_steps}),
                ("vjepa2 flare", with_readout(vj, "flare"), {}),
                ("state mean", StateFeatures(), {}),
            ):
                t = time.perf_counter()
                res = probe(store, "ro", src, mlp_steps=args.probe_steps, **kw)
                out["probe"][name] = {
                    "linear": {k: _r2(res["linear"][k]) for k in TARGETS},
                    "mlp": {k: _r2(res["mlp"][k]) for k in TARGETS},
                    "attentive": {g: {k: _r2(v[k]) for k in TARGETS} for g, v in (res.get("attentive") or {}).items()},
                    "folds": res["folds"],
                    "n_episodes": res["n_episodes"],
                    "wall_s": round(time.perf_counter() - t, 1),
                }
                print("probe", name, json.dumps(out["probe"][name]), flush=True)
                _save(args.out, out)

        vj.close()
    finally:
        enc.stop()
    if "vitl" not in skip:
        out["vitl_estimate"] = vitl_estimate(args.bc_grid)
    _save(args.out, out)
    print(json.dumps(out, indent=1))


def vitl_estimate(g: int, windows: int = 100_000, batch: int = 256, reps: int = 10) -> dict:
    """Bytes and BC seconds per epoch of a 100k-window ViT-L (D=1024) g x g float16 grid set, from one measured
    optimiser step of the ViT-L-shaped attentive BC policy (16 heads, depth 1) on random (batch, g*g, 1024) grids."""
    d, tokens = 1024, g * g
    model = BCPolicy(tokens * d, pooler=PoolerConfig(dim=d, tokens=tokens))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, tokens * d)
    y = torch.rand(batch, 2) * 2 - 1
    times = []
    for i in range(reps + 2):
        t = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model.head(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:  # warm-up steps excluded
            times.append(time.perf_counter() - t)
    step_s = float(np.median(times))
    row_bytes = tokens * d * 2
    mean_step = _mean_step(d, batch)
    return {
        "D": d,
        "tokens": tokens,
        "bytes_per_window_f16": row_bytes,
        "gb_per_100k_f16": round(row_bytes * windows / 1e9, 2),
        "gb_per_100k_f32": round(2 * row_bytes * windows / 1e9, 2),
        "pooler_params": sum(p.numel() for p in model.pooler.parameters()),
        "step_s_batch256_1thread": round(step_s, 4),
        "epoch_s_100k_1thread": round(step_s * windows / batch, 1),
        "mean_readout_step_s_batch256_1thread": round(mean_step, 5),
        "mean_readout_epoch_s_100k_1thread": round(mean_step * windows / batch, 1),
    }


def _mean_step(d: int, batch: int, reps: int = 20) -> float:
    model = BCPolicy(d)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, d), torch.rand(batch, 2) * 2 - 1
    times = []
    for i in range(reps + 2):
        t = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model.head(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def markdown(out: dict) -> str:
    """The tables of bench/READOUT_RESULTS.md from a results JSON."""
    lines = []
    ds = out.get("dataset", {})
    if out.get("probe"):
        lines += [
            f"Probe R2 on held-out episodes (k-fold over {ds.get('episodes')} episodes = distinct targets; "
            "mean ± sd over folds):",
            "",
            "| features | readout | probe | fingertip xy | target xy | to_target |",
            "|---|---|---|---|---|---|",
        ]
        for name, p in out["probe"].items():
            feats, readout = name.split(" ", 1)
            for kind in ("linear", "mlp"):
                lines.append(
                    f"| {feats} | {readout} | {'ridge' if kind == 'linear' else 'MLP'} | "
                    + " | ".join(_pm(p[kind][t]) for t in TARGETS)
                    + " |"
                )
            for g, by_t in p.get("attentive", {}).items():
                lines.append(
                    f"| {feats} | attentive g={g} | attentive | " + " | ".join(_pm(by_t[t]) for t in TARGETS) + " |"
                )
        lines.append("")
    if out.get("bc"):
        lines += [
            "BC success (live, evaluation seeds; mean over seeds, 95% t-interval across seeds):",
            "",
            "| features | readout | seeds x episodes | success | per seed | val MSE (kept epoch) | s / epoch |"
            " params |",
            "|---|---|---|---|---|---|---|---|",
        ]
        n_eps = out.get("args", {}).get("eval_episodes")
        for key, b in out["bc"].items():
            feats, readout = key.split(" ", 1)
            ci = b.get("success_ci95")
            ci_s = f" [{100 * max(ci[0], 0):.0f}, {100 * min(ci[1], 1):.0f}]" if ci else ""
            seeds = b["seeds"]
            lines.append(
                f"| {feats} | {readout} | {len(seeds)} x {n_eps} | {100 * b['success_mean']:.1f}%{ci_s} | "
                + ", ".join(f"{100 * r['success_rate']:.0f}%" for r in seeds)
                + " | "
                + ", ".join(f"{r['val_loss']:.3f}" for r in seeds)
                + f" | {b['epoch_s_mean']:.3f} | "
                f"{seeds[0]['params']:,} |"
            )
        lines.append("")
    if out.get("encode"):
        lines += [
            "Encoding the dataset through the encoder service (tiny stand-in, 1 thread; shared machine):",
            "",
            "| pooling | s | s / 1000 windows | row shape |",
            "|---|---|---|---|",
        ]
        for k, e in out["encode"].items():
            lines.append(f"| {k} | {e['s']} | {e['s_per_1000_windows']} | {e.get('row_shape', '(96,)')} |")
        lines.append("")
    v = out.get("vitl_estimate")
    if v:
        lines += [
            f"ViT-L estimate (D={v['D']}, g x g = {v['tokens']} tokens, float16): "
            f"{v['bytes_per_window_f16']:,} bytes per window, {v['gb_per_100k_f16']} GB per 100k windows "
            f"({v['gb_per_100k_f32']} GB as float32); one BC step of the attentive policy (pooler "
            f"{v['pooler_params']:,} parameters) at batch 256 on 1 CPU thread: {v['step_s_batch256_1thread']} s, "
            f"so {v['epoch_s_100k_1thread']} s per 100k-window epoch (mean readout: "
            f"{v['mean_readout_step_s_batch256_1thread']} s a step, {v['mean_readout_epoch_s_100k_1thread']} s "
            "an epoch)."
        ]
    return "\n".join(lines)


def _pm(v: list[float]) -> str:
    return f"{v[0]:.2f} ± {v[1]:.2f}"


def _rate(seconds: float, windows: int) -> dict:
    return {"s": round(seconds, 1), "s_per_1000_windows": round(1000 * seconds / windows, 2)}


def _r2(s: dict) -> list[float]:
    return [round(s["r2"], 3), round(s["r2_sd"], 3)]


def _t_interval(values: list[float]) -> list[float] | None:
    if len(values) < 2:
        return None
    from scipy import stats

    m, se = float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values)))
    h = float(stats.t.ppf(0.975, len(values) - 1)) * se
    return [round(m - h, 3), round(m + h, 3)]


def _save(path: str, out: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
