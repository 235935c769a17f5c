"""Tune SAC on state features towards the issue-5 bar: >= 900 mean return (1000-step episodes, reacher-easy)
within 100,000 env steps. One config at a time, one thread (the machine is shared).

    python bench/sac_sweep.py --name base --seed 0 --set lr=1e-3 --set parallel_envs=1
    python bench/sac_sweep.py --name norm --seed 3 --seed 4 --set nets.normalize_obs=false   # nets.* -> sac.Nets
    python bench/sac_sweep.py --summary          # table of every bench/results/sac_*.json
    python bench/sac_sweep.py --plot             # bench/results/sac_curves.png: return vs env steps, every run
    python bench/sac_sweep.py --name bro --seed 0 --set networks=bro --keep vjepa-robot-runs/sac22 --strat 60
    python bench/sac_sweep.py --strat-only vjepa-robot-runs/sac22 --strat 60   # kept runs without strat_eval yet
    python bench/sac_sweep.py --strat-table      # per-bin table of every run's stratified evaluation

Each run writes bench/results/sac_<name>_s<seed>.json: the request, the learning curve (deterministic
evaluation every eval_every env steps on eval_episodes 1000-step episodes), the final 10-episode evaluation
and the wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vjepa_robot_client.contract import TrainSACRequest
from vjepa_robot_lab.learning.sac import Nets, network_config, train_sac
from vjepa_robot_lab.perception.features import make_feature_source

RESULTS = Path(__file__).resolve().parent / "results"


class LocalRun:
    """A RunHandle stand-in: a directory and a metrics dict."""

    def __init__(self, run_id: str, dir: Path):
        self.run_id, self.dir, self.metrics = run_id, Path(dir), {}

    def update(self, status=None, metrics=None, error=None):
        self.metrics.update(metrics or {})

    def stop_requested(self) -> bool:
        return False


def _parse(kv: str):
    k, v = kv.split("=", 1)
    for cast in (int, float):
        try:
            return k, cast(v)
        except ValueError:
            pass
    return k, {"true": True, "false": False}.get(v.lower(), v)


def split_overrides(overrides: dict) -> tuple[dict, Nets | None]:
    """Request fields, and the `nets.*` ones as a sac.Nets (sizes written 256x64); None without any `nets.*`
    (then the request's `networks`, e.g. --set networks=bro, picks the configuration)."""
    nets = {}
    for k, v in overrides.items():
        if k.startswith("nets."):
            k = k[len("nets.") :]
            nets[k] = tuple(int(x) for x in str(v).split("x")) if k in ("actor", "critic") else v
    request = {k: v for k, v in overrides.items() if not k.startswith("nets.")}
    return request, (Nets(**nets) if nets else None)


def run_one(name: str, seed: int, overrides: dict, features: str = "state", keep: Path | None = None) -> dict:
    torch.set_num_threads(1)
    request, nets = split_overrides(overrides)
    cfg = TrainSACRequest(
        **{"features": features, "seed": seed, "checkpoint_replay": False, "checkpoint_every": 1_000_000, **request}
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        run = LocalRun(f"sweep-{name}-{seed}", keep or Path(d))  # keep: a directory that keeps the checkpoint
        out = train_sac(cfg, run, make_feature_source(features, task=cfg.task.value), nets=nets)
    rec = {
        "name": name,
        "seed": seed,
        "impl": "own",
        "overrides": overrides,
        "config": cfg.model_dump(mode="json"),
        "nets": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in vars(nets or network_config(cfg.networks, cfg.features)).items()
        },
        "curve": out["curve"],
        "final_eval": out.get("final_eval"),
        "wall_s": round(time.perf_counter() - t0, 1),
        "updates": out["updates"],
        "env_steps": out["env_steps"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"sac_{name}_s{seed}.json").write_text(json.dumps(rec, indent=1))
    return rec


def strat_eval(run_dir: Path, episodes: int = 60, seed: int = 0, task: str | None = None) -> dict:
    """The issue-22 evaluation of a kept run: its final deterministic actor on `episodes` stratified targets (equal
    episodes near / middle / far from the base, evaluate.stratified_targets), 1000-step episodes, the run's own
    action repeat and task; every episode's target and return kept."""
    from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy, evaluate
    from vjepa_robot_lab.learning.sac import policy_from_checkpoint

    torch.set_num_threads(1)
    act = policy_from_checkpoint(run_dir)
    state = json.loads((Path(run_dir) / "sac" / "state.json").read_text())
    features = make_feature_source(act.features)
    ev = evaluate(
        FeaturePolicy(act, features),
        task=task or state["config"]["task"],
        episodes=episodes,
        steps=act.episode_steps,
        seed=seed,
        parallel_envs=min(episodes, 30),
        action_repeat=act.action_repeat,
        targets="stratified",
    )
    returns = [e["return"] for e in ev["episodes"]]
    return {
        "episodes": episodes,
        "eval_seed": seed,
        "mean_return": ev["mean_return"],
        "std_return": float(torch.tensor(returns).std(unbiased=False)),
        "success_rate": ev["success_rate"],
        "by_distance": ev["by_distance"],
        "failed": ev["failed"],
        "episode_records": ev["episodes"],
        "wall_s": ev["wall_s"],
    }


def add_strat(result: Path, run_dir: Path, episodes: int, task: str | None = None) -> dict:
    """Adds strat_eval (the run's own task) or, with `task`, strat_eval_<task> (e.g. an easy-trained policy on
    reacher-hard's smaller target) to the run's result file."""
    rec = json.loads(result.read_text())
    rec[f"strat_eval_{task}" if task else "strat_eval"] = strat_eval(run_dir, episodes, task=task)
    rec["run_dir"] = str(run_dir)
    result.write_text(json.dumps(rec, indent=1))
    return rec


def strat_table() -> str:
    """Every run with a stratified evaluation: mean, success and per-bin (near / middle / far) numbers."""
    rows = [
        "| run | seed | final 10-ep (uniform) | stratified mean | success | near: success, mean, min | "
        "middle | far | failed targets (radius m, angle deg, return) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in sorted(RESULTS.glob("sac_*.json")):
        r = json.loads(p.read_text()) if p.name != "sac_bench.json" else {}
        st = r.get("strat_eval")
        if not st:
            continue
        bins = {b["bin"]: b for b in st["by_distance"]}
        cell = lambda b: f"{b['success_rate']:.2f}, {b['mean_return']:.0f}, {b['min_return']:.0f}"  # noqa: E731
        failed = "; ".join(
            f"{f['target_radius']:.3f} {math.degrees(f['target_angle']):.0f} {f['return']:.0f}" for f in st["failed"]
        )
        fe = r.get("final_eval") or {}
        rows.append(
            f"| {r['name']} | {r['seed']} | {fe.get('mean_return', float('nan')):.0f} | {st['mean_return']:.1f} | "
            f"{st['success_rate']:.3f} | {cell(bins['near'])} | {cell(bins['middle'])} | {cell(bins['far'])} | "
            f"{failed or '-'} |"
        )
    return "\n".join(rows)


def strat_plot(names: list[str], path: Path = RESULTS / "sac22_by_distance.png") -> Path:
    """bench/results/sac22_by_distance.png: per configuration (name), success and return by target distance over
    all its seeds' stratified evaluations (left: success per bin, 95% Wilson interval; right: every episode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vjepa_robot_lab.evaluation.evaluate import TARGET_BINS
    from vjepa_robot_lab.evaluation.stats import wilson_ci95

    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("sac_*.json")) if p.name != "sac_bench.json"]
    runs = [r for r in runs if r.get("strat_eval") and r["name"] in names]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=100)
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        mine = [r for r in runs if r["name"] == name]
        eps = [e for r in mine for e in r["strat_eval"]["episode_records"]]
        if not eps:
            continue
        c, seeds = plt.cm.tab10(j), ",".join(str(r["seed"]) for r in sorted(mine, key=lambda r: r["seed"]))
        label = f"{name} (seeds {seeds}; {len(eps)} episodes)"
        for i, b in enumerate(TARGET_BINS):
            inside = [e for e in eps if e["target_bin"] == b]
            k, n = sum(e["success"] for e in inside), len(inside)
            rate, (lo, hi) = 100 * k / n, wilson_ci95(k, n)
            x = i + (j - (len(names) - 1) / 2) * width
            ax.bar(x, rate, width * 0.9, color=c, label=label if i == 0 else None)
            ax.errorbar(x, rate, yerr=[[rate - 100 * lo], [100 * hi - rate]], color="k", capsize=3, lw=1)
            ax.text(x, 100 * hi + 2, f"{k}/{n}", ha="center", fontsize=7)
        bx.scatter([e["target_radius"] for e in eps], [e["return"] for e in eps], s=9, color=c, alpha=0.6, label=name)
    ax.set_xticks(range(3), [f"{b}\n{lo:.2f}-{hi:.2f} m" for b, (lo, hi) in TARGET_BINS.items()])
    ax.set_ylim(0, 135)  # room above the bars for the legend
    ax.set_ylabel("success (%), 95% Wilson interval")
    ax.set_title("State SAC, reacher-easy, 100k env steps: success by target distance", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    for lo, _ in list(TARGET_BINS.values())[1:]:
        bx.axvline(lo, color="grey", ls=":", lw=1)
    bx.set_xlabel("target distance from the arm's base (m)")
    bx.set_ylabel("episode return (1000 simulator steps)")
    bx.set_title("Every stratified evaluation episode", fontsize=9)
    bx.legend(fontsize=7, loc="center left")  # returns sit near 1000 or 0: the middle is free
    fig.tight_layout()
    fig.savefig(path)
    return path


def strat_summary(names: list[str]) -> str:
    """Per configuration: the seeds' stratified means, their mean, sd and 95% t-interval across seeds (t(0.975,
    n-1) x s / sqrt(n)), the lowest seed, successes over all episodes, and the 10-episode uniform means beside."""
    from vjepa_robot_lab.evaluation.stats import t_interval

    rows = [
        "| configuration | seeds | stratified mean per seed | mean [95% t-interval across seeds] | lowest seed | "
        "successful episodes | near-bin success | 10-ep uniform per seed (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        runs = sorted((json.loads(p.read_text()) for p in RESULTS.glob(f"sac_{name}_s*.json")), key=lambda r: r["seed"])
        runs = [r for r in runs if r.get("strat_eval")]
        if not runs:
            continue
        means = [r["strat_eval"]["mean_return"] for r in runs]
        m, lo, hi = t_interval(means)
        ok = sum(e["success"] for r in runs for e in r["strat_eval"]["episode_records"])
        n = sum(len(r["strat_eval"]["episode_records"]) for r in runs)
        near = [e for r in runs for e in r["strat_eval"]["episode_records"] if e["target_bin"] == "near"]
        uni = [r["final_eval"]["mean_return"] for r in runs]
        ci = f"[{lo:.0f}, {hi:.0f}]" if len(runs) > 1 else "(one seed)"
        rows.append(
            f"| {name} | {','.join(str(r['seed']) for r in runs)} | {', '.join(f'{x:.0f}' for x in means)} | "
            f"{m:.0f} {ci} | {min(means):.0f} | {ok}/{n} | {sum(e['success'] for e in near)}/{len(near)} | "
            f"{', '.join(f'{x:.0f}' for x in uni)} ({sum(uni) / len(uni):.0f}) |"
        )
    return "\n".join(rows)


def summary() -> str:
    rows = [
        "| run | SAC | seed | overrides | return by env steps (5-ep evals) | final 10-ep return | success | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in sorted(RESULTS.glob("sac_*.json")):
        if p.name == "sac_bench.json":
            continue
        r = json.loads(p.read_text())
        curve = " ".join(f"{c['env_steps'] // 1000}k:{c['mean_return']:.0f}" for c in r["curve"])
        fe = r.get("final_eval") or {}
        rows.append(
            f"| {r['name']} | {r.get('impl', 'sb3')} | {r['seed']} | {json.dumps(r['overrides'])} | {curve} | "
            f"{fe.get('mean_return', float('nan')):.0f} | {fe.get('success_rate', float('nan')):.2f} | {r['wall_s']} |"
        )
    return "\n".join(rows)


def plot(path: Path = RESULTS / "sac_curves.png") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("sac_*.json")) if p.name != "sac_bench.json"]
    names = sorted({r["name"] for r in runs})
    colours = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for r in runs:
        xs = [0] + [c["env_steps"] for c in r["curve"]]
        ys = [0] + [c["mean_return"] for c in r["curve"]]
        if r.get("final_eval") and xs[-1] < r["env_steps"]:  # older runs: close the curve with the final eval
            xs.append(r["env_steps"])
            ys.append(r["final_eval"]["mean_return"])
        ax.plot(
            xs,
            ys,
            color=colours[r["name"]],
            alpha=0.8,
            label=r["name"] if r["seed"] == min(q["seed"] for q in runs if q["name"] == r["name"]) else None,
        )
    ax.axhline(900, color="k", ls="--", lw=1, label="bar: 900")
    ax.set_xlabel("env steps (simulator steps, action repeat counted)")
    ax.set_ylabel("mean return, 1000-step episodes\n(deterministic eval: 5 episodes, last point 10)")
    ax.set_title("SAC on state features, reacher-easy")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="run")
    ap.add_argument("--seed", type=int, action="append")
    ap.add_argument("--features", default="state")
    ap.add_argument("--set", action="append", default=[], help="TrainSACRequest field=value, or nets.<field>=value")
    ap.add_argument("--keep", type=Path, help="keep each run's checkpoint in KEEP/<name>_s<seed>")
    ap.add_argument("--strat", type=int, default=0, help="after each run: stratified evaluation on N episodes")
    ap.add_argument("--strat-only", type=Path, help="stratified evaluation of every kept run under this directory")
    ap.add_argument("--strat-task", help="with --strat-only: evaluate on this task instead (strat_eval_<task>)")
    ap.add_argument("--strat-table", action="store_true")
    ap.add_argument("--strat-summary", nargs="+", metavar="NAME", help="5-seed summary of these configurations")
    ap.add_argument("--strat-plot", nargs="+", metavar="NAME", help="bench/results/sac22_by_distance.png of these runs")
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--plot", action="store_true")
    a = ap.parse_args()
    if a.summary or a.plot or a.strat_table:
        print(summary() if a.summary else strat_table() if a.strat_table else plot())
        return
    if a.strat_summary:
        print(strat_summary(a.strat_summary))
        return
    if a.strat_plot:
        print(strat_plot(a.strat_plot))
        return
    if a.strat_only:  # <keep>/<name>_s<seed> -> bench/results/sac_<name>_s<seed>.json
        for d in sorted(p for p in a.strat_only.iterdir() if (p / "sac" / "state.json").exists()):
            result = RESULTS / f"sac_{d.name}.json"
            key = f"strat_eval_{a.strat_task}" if a.strat_task else "strat_eval"
            if result.exists() and key not in json.loads(result.read_text()):
                st = add_strat(result, d, a.strat or 60, a.strat_task)[key]
                print(d.name, round(st["mean_return"], 1), st["success_rate"], len(st["failed"]), flush=True)
        return
    overrides = dict(_parse(kv) for kv in a.set)
    for seed in a.seed or [0]:
        keep = a.keep / f"{a.name}_s{seed}" if a.keep else None
        rec = run_one(a.name, seed, overrides, a.features, keep)
        if a.strat and keep:
            rec = add_strat(RESULTS / f"sac_{a.name}_s{seed}.json", keep, a.strat)
        print(
            json.dumps(
                {
                    "name": rec["name"],
                    "seed": seed,
                    "final": rec["final_eval"],
                    "strat": {k: rec["strat_eval"][k] for k in ("mean_return", "success_rate", "by_distance")}
                    if "strat_eval" in rec
                    else None,
                    "wall_s": rec["wall_s"],
                    "curve": [(c["env_steps"], c["mean_return"]) for c in rec["curve"]],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
