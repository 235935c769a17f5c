"""Rendering, the long pole of a bake-off's demos and live evaluation: frames/s per core, and 1 -> 2 workers.

    nice -n 10 python bench/render_scaling.py --out bench/results/render_scaling.json [--sizes 64,256] [--seconds 15]

For each frame size: (a) bare rendering (reacher-easy, one simulator step + one rendered frame, camera 0) in 1 and
in 2 concurrent processes, each with one llvmpipe render thread (LP_NUM_THREADS=1, as dataset workers and bake-off
cell workers run); (b) dataset generation through the real builder (vjepa_robot_lab.data.datasets.create_dataset:
expert, render, PNG, LanceDB append) with workers 1 and 2. Scaling = fps(2) / fps(1). The load average (1 min)
is recorded beside every number: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients"))


def _render_worker(size: int, seconds: float, start, out) -> None:
    os.environ["LP_NUM_THREADS"] = "1"
    import numpy as np

    from vjepa_robot_lab.envs.env import make

    env = make("easy", seed=0, image_size=size, episode_steps=100_000)
    env.reset()
    for _ in range(5):
        env.step(np.zeros(2, np.float32))
    start.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.step(np.zeros(2, np.float32))
        n += 1
    out.put(n / (time.perf_counter() - t0))
    env.close()


def bare(size: int, procs: int, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    ps = [ctx.Process(target=_render_worker, args=(size, seconds, start, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    time.sleep(8.0)  # imports and renderer set-up, outside the timed part
    load = os.getloadavg()[0]
    start.set()
    rates = [out.get(timeout=seconds + 120) for _ in ps]
    for p in ps:
        p.join()
    return {"processes": procs, "fps_total": round(sum(rates), 1), "fps_per_process": [round(r, 1) for r in rates],
            "load_1m": round(load, 2)}  # fmt: skip


def generation(size: int, workers: int, episodes: int, steps: int) -> dict:
    from services.common.store import Store
    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset

    with tempfile.TemporaryDirectory() as d:
        spec = DatasetSpec(name="scale", episodes=episodes, steps=steps, image_size=size)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        create_dataset(spec, Store(d), workers=workers, progress=False)
        dt = time.perf_counter() - t0
    return {"workers": workers, "frames": episodes * steps, "seconds": round(dt, 1),
            "fps": round(episodes * steps / dt, 1), "load_1m": round(load, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "render_scaling.json")
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    res: dict = {"cpus": os.cpu_count(), "host": os.uname().nodename, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                 time.gmtime()), "sizes": {}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for size in [int(s) for s in args.sizes.split(",")]:
        row: dict = {}
        res["sizes"][str(size)] = row
        for procs in (1, 2):
            row[f"bare_{procs}"] = bare(size, procs, args.seconds)
            args.out.write_text(json.dumps(res, indent=1))
        row["bare_scaling"] = round(row["bare_2"]["fps_total"] / row["bare_1"]["fps_total"], 2)
        for workers in (1, 2):
            row[f"generation_{workers}"] = generation(size, workers, args.episodes, args.steps)
            args.out.write_text(json.dumps(res, indent=1))
        row["generation_scaling"] = round(row["generation_2"]["fps"] / row["generation_1"]["fps"], 2)
        args.out.write_text(json.dumps(res, indent=1))
        print(size, json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
