"""Bake-off cells fanned out on one machine (issue 32): the same tiny bake-off with --cell-workers 1 and 2, through
submitit's local executor, and a kill -9 then --resume that reruns only the unfinished cells.

    nice -n 10 python bench/bakeoff_scale.py --out bench/results/bakeoff_scale.json [--only w1,w2,submitit,resume]

Each run is `vjepa-robot bake-off` in a child process on a fresh store (so each makes its own demos and
embeddings: the same work), 8 cells: 2 tasks x (the `tiny` random-init stand-in encoder x readouts mean, flare
+ baselines state, random), 2 seeds, 2 demos x 50 steps at 32 px, 3 evaluation episodes. The result file is
rewritten after every run, with the load average (1 min) before and after each.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

CELLS = [
    "--model", "tiny", "--baseline", "state", "--baseline", "random", "--task", "easy", "--task", "hard",
    "--readout", "mean", "--readout", "flare", "--seeds", "0,1", "--episodes", "2", "--steps", "50",
    "--image-size", "32", "--epochs", "5", "--eval-episodes", "3", "--parallel-envs", "3", "--workers", "1",
]  # fmt: skip


def _cli(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    fh = open(log, "w")
    return subprocess.Popen(
        [sys.executable, "-m", "vjepa_robot.cli", "bake-off", *args], stdout=fh, stderr=subprocess.STDOUT, env=env
    )


def _record(base: Path) -> dict | None:
    found = sorted((base / "runs" / "bakeoffs").glob("bakeoff-*/bakeoff.json"))
    return json.loads(found[-1].read_text()) if found else None


def one_run(name: str, base: Path, extra: list[str], env: dict, timeout: float) -> dict:
    base.mkdir(parents=True, exist_ok=True)
    args = [
        *CELLS,
        *extra,
        "--store",
        str(base / "store"),
        "--runs-dir",
        str(base / "runs"),
        "--out",
        str(base / "out"),
    ]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = _cli(args, base / f"{name}.log", env)
    rc = proc.wait(timeout=timeout)
    wall = time.perf_counter() - t0
    rec = _record(base) or {}
    return {
        "run": name,
        "args": extra,
        "rc": rc,
        "wall_s": round(wall, 1),
        "load_1m_before": round(load0, 2),
        "load_1m_after": round(os.getloadavg()[0], 2),
        "bakeoff_id": rec.get("bakeoff_id"),
        "status": rec.get("status"),
        "cells": len(rec.get("cells", [])),
        "cells_succeeded": sum(c["status"] == "succeeded" for c in rec.get("cells", [])),
        "plan_printed": "plan:" in (base / f"{name}.log").read_text(),
        "plan": (rec.get("plan") or {}).get("summary"),
        "cell_timings": {c["key"]: c.get("timings") for c in rec.get("cells", [])},
    }


def kill_and_resume(base: Path, env: dict, timeout: float, after: int) -> dict:
    """Start with --cell-workers 2, kill -9 the CLI once `after` cells have succeeded, then --resume the same id."""
    base.mkdir(parents=True, exist_ok=True)
    common = ["--store", str(base / "store"), "--runs-dir", str(base / "runs"), "--out", str(base / "out")]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = _cli([*CELLS, "--cell-workers", "2", *common], base / "first.log", env)
    rec = None
    while time.perf_counter() - t0 < timeout:
        rec = _record(base)
        if rec and sum(c["status"] == "succeeded" for c in rec["cells"]) >= after:
            break
        if proc.poll() is not None:
            break
        time.sleep(1.0)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.perf_counter() - t0
    time.sleep(3.0)
    left = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    left_info = [{"pid": p.pid, "cmd": " ".join(p.cmdline()[:6])} for p in left]
    for p in left:  # processes this bench started (its CLI's children), ended by pid
        p.terminate()
    psutil.wait_procs(left, timeout=20)
    before = _record(base)
    done_before = {c["key"] for c in before["cells"] if c["status"] == "succeeded"}
    cells_dir = base / "runs" / "bakeoffs" / before["bakeoff_id"] / "cells"
    attempts_before = {p.stem: json.loads(p.read_text()).get("attempts", 0) for p in cells_dir.glob("*.json")}
    t1 = time.perf_counter()
    again = ["--resume", before["bakeoff_id"], "--model", "tiny", "--cell-workers", "2", *common]
    rproc = _cli(again, base / "resume.log", env)
    rc = rproc.wait(timeout=timeout)
    resume_wall = time.perf_counter() - t1
    after_rec = _record(base)
    attempts_after = {p.stem: json.loads(p.read_text()).get("attempts", 0) for p in cells_dir.glob("*.json")}
    rerun = sorted(k for k in attempts_after if attempts_after[k] > attempts_before.get(k, 0))
    return {
        "run": "kill_and_resume",
        "bakeoff_id": before["bakeoff_id"],
        "killed_after_s": round(killed_at, 1),
        "succeeded_when_killed": sorted(done_before),
        "status_read_after_kill": before["status"],
        "processes_left_after_kill": left_info,
        "resume_rc": rc,
        "resume_wall_s": round(resume_wall, 1),
        "cells_rerun": rerun,
        "finished_cells_rerun": sorted(set(rerun) & done_before),
        "final_status": after_rec["status"],
        "cells_succeeded": sum(c["status"] == "succeeded" for c in after_rec["cells"]),
        "resume_plan_printed": "plan:" in (base / "resume.log").read_text(),
        "load_1m_before": round(load0, 2),
        "load_1m_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/results/bakeoff_scale.json"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bakeoff-scale"))
    ap.add_argument("--only", default="w1,w2,submitit,resume")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VJEPA_ROBOT_SUBMITIT_CLUSTER": "local"}
    out = {"machine": {"cpus": os.cpu_count(), "host": os.uname().nodename}, "runs": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    for what in args.only.split(","):
        base = args.work / f"{what}-{stamp}"
        if what == "w1":
            res = one_run("w1", base, ["--cell-workers", "1"], env, args.timeout)
        elif what == "w2":
            res = one_run("w2", base, ["--cell-workers", "2"], env, args.timeout)
        elif what == "submitit":
            res = one_run("submitit", base, ["--executor", "slurm", "--cell-workers", "2"], env, args.timeout)
        elif what == "resume":
            res = kill_and_resume(base, env, args.timeout, after=3)
        else:
            raise SystemExit(f"unknown run {what}")
        res["started"] = stamp
        out["runs"].append(res)
        args.out.write_text(json.dumps(out, indent=1))
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
