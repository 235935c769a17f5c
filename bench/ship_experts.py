"""Train, evaluate on held-out episodes and ship the state-SAC experts (vjepa_robot_lab/policies/expert_checkpoints/).

    python bench/ship_experts.py train walker-walk --total-steps 300000 --seed 100 --keep vjepa-robot-runs/experts30
    python bench/ship_experts.py evaluate walker-walk      # re-run the shipped expert's held-out evaluation
    python bench/ship_experts.py table                    # the markdown table of every shipped expert

`train` trains one state-SAC run through bench/sac_sweep.run_one (one torch thread; its learning curve goes to
bench/results/sac_expert30_<task>_s<seed>.json), evaluates its deterministic actor on EVAL_EPISODES 1000-step
episodes of evaluation seed EVAL_SEED (episodes no configuration was chosen on: the choices were made on training
seed 0 and evaluation seed 0), and exports the actor with its record (shipped_experts.export_expert).
The configuration is EXPERT_CONFIG below (the task's own action repeat; chosen on finger-spin, bench/SAC_RESULTS.md,
"Shipped experts"); --set field=value overrides it (then the record says so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sac_sweep import _parse, run_one  # noqa: E402

from vjepa_robot_lab.envs.tasks import task_spec  # noqa: E402
from vjepa_robot_lab.evaluation.stats import t_interval  # noqa: E402
from vjepa_robot_lab.policies import shipped_experts  # noqa: E402

EVAL_SEED, EVAL_EPISODES = 1000, 20
# The shipped experts' SAC configuration (beyond the TrainSACRequest defaults): LayerNorm'd critics without the
# warm-up input scaling, one update per agent transition.
EXPERT_CONFIG = {"nets.critic_kind": "ln", "nets.normalize_obs": False, "updates_per_transition": 1}


def heldout_eval(run_dir: Path, task: str, episodes: int = EVAL_EPISODES, seed: int = EVAL_SEED) -> dict:
    from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy, evaluate
    from vjepa_robot_lab.learning.sac import policy_from_checkpoint
    from vjepa_robot_lab.perception.features import make_feature_source

    torch.set_num_threads(1)
    act = policy_from_checkpoint(run_dir)
    ev = evaluate(
        FeaturePolicy(act, make_feature_source("state", task=task)),
        task=task,
        episodes=episodes,
        steps=act.episode_steps,
        seed=seed,
        parallel_envs=min(episodes, 10),
        image_size=0,
        action_repeat=act.action_repeat,
    )
    returns = [float(e["return"]) for e in ev["episodes"]]
    mean, lo, hi = t_interval(returns)
    return {
        "eval_seed": seed,
        "episodes": episodes,
        "episode_steps": act.episode_steps,
        "mean_return": round(mean, 1),
        "ci95_over_episodes": [round(lo, 1), round(hi, 1)] if lo is not None else None,
        "min_return": round(min(returns), 1),
        "returns": [round(r, 1) for r in returns],
        "wall_s": ev.get("wall_s"),
    }


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, one torch thread, nice 10"


def _commit() -> str | None:
    if os.environ.get("VJEPA_ROBOT_COMMIT"):  # a run from a `git archive` snapshot (no .git): the caller names it
        return os.environ["VJEPA_ROBOT_COMMIT"]
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def train(task: str, total_steps: int, seed: int, keep: Path, sets: list[str], root: Path | None = None) -> dict:
    name = task_spec(task).name
    overrides = {**EXPERT_CONFIG, "task": name, "total_steps": total_steps, **dict(_parse(s) for s in sets)}
    root = root or shipped_experts.ROOT  # another root: a candidate, shipped by copying its directory over
    tag = "" if root == shipped_experts.ROOT else f"_{root.name}"
    run_dir = keep / f"{name}{tag}_s{seed}"
    t0 = time.time()
    rec = run_one(f"expert30_{name}{tag}", seed, overrides, keep=run_dir)
    held = heldout_eval(run_dir, name)
    record = {
        "task": name,
        "command": " ".join(
            [
                "python bench/ship_experts.py train",
                name,
                f"--total-steps {total_steps}",
                f"--seed {seed}",
                *(f"--set {s}" for s in sets),
            ]
        ),
        "overrides": overrides,
        "training_seed": seed,
        "env_steps": rec["env_steps"],
        "updates": rec["updates"],
        "action_repeat": rec["config"]["action_repeat"],
        "train_wall_s": rec["wall_s"],
        "machine": _machine(),
        "commit": _commit(),
        "trained_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
        "curve": [(c["env_steps"], round(c["mean_return"], 1)) for c in rec["curve"]],
        "heldout_eval": held,
        "published": shipped_experts.published_at(name, rec["env_steps"]),
    }
    out = shipped_experts.export_expert(run_dir, name, record, root=root)
    print(json.dumps({"task": name, "shipped": str(out), "heldout": held["mean_return"]}), flush=True)
    return record


def evaluate_shipped(task: str) -> dict:
    d = shipped_experts.shipped_dir(task)
    if d is None:
        raise SystemExit(f"no shipped expert for {task}")
    return heldout_eval(d, task_spec(task).name)


def table() -> str:
    rows = [
        "| task (action repeat) | env steps | held-out return (20 episodes, seed 1000) [95% CI over episodes] | min | "
        "published state SAC at that budget | at 1M | train wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in shipped_experts.shipped_tasks():
        r = shipped_experts.shipped_record(task)
        h, p = r["heldout_eval"], r.get("published") or {}
        ci = h.get("ci95_over_episodes") or ["", ""]
        pub = f"{p['mean']:.0f} +- {p['sd']:.0f} ({p['env_steps'] // 1000}k)" if p else "none"
        rows.append(
            f"| {task} ({r['action_repeat']}) | {r['env_steps'] // 1000}k | **{h['mean_return']:.0f}** "
            f"[{ci[0]}, {ci[1]}] | {h['min_return']:.0f} | {pub} | {p.get('at_1m', '')} | "
            f"{r['train_wall_s'] / 60:.0f} min |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("task")
    t.add_argument("--total-steps", type=int, required=True)
    t.add_argument("--seed", type=int, default=100)
    t.add_argument("--keep", type=Path, default=ROOT / "vjepa-robot-runs" / "experts30")
    t.add_argument("--set", action="append", default=[])
    t.add_argument("--root", type=Path, help="export here instead of the package (a candidate to compare first)")
    e = sub.add_parser("evaluate")
    e.add_argument("task")
    sub.add_parser("table")
    a = ap.parse_args()
    if a.cmd == "train":
        train(a.task, a.total_steps, a.seed, a.keep, a.set, a.root)
    elif a.cmd == "evaluate":
        print(json.dumps(evaluate_shipped(a.task), indent=1))
    else:
        print(table())


if __name__ == "__main__":
    main()
