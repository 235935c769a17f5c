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

Held-out reporting (issue 30): configurations are chosen on selection runs and the chosen one is re-run on
training seeds and evaluation episodes the selection never saw; only those report runs estimate how well it does.

    python bench/sac_sweep.py --heldout s30 --candidate "ln networks=ln" --candidate "bro networks=bro" \
        --select-seeds 0 1 2 --select-eval-seed 0 --report-seeds 100 101 102 103 104 --report-eval-seed 1000 \
        --strat 60 --keep vjepa-robot-runs/s30
    python bench/sac_sweep.py --heldout-table s30    # which numbers are selection and which are report

--candidate is "NAME field=value ..." (as --set; --set applies to every candidate). Selection runs each candidate
on --select-seeds, evaluated on the episodes of --select-eval-seed; the highest mean score across those seeds (the
stratified mean return with --strat, else the final evaluation's mean return) is chosen and fixed, then re-run on
--report-seeds, evaluated on --report-eval-seed's episodes. Overlapping training seeds, training episodes or
evaluation episodes between the two phases are refused before anything runs. State: bench/results/
heldout_<name>.json, written after every run; a rerun of the same command reuses the runs already written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vjepa_robot_client.contract import TrainSACRequest
from vjepa_robot_lab.envs.env import eval_episode_seed, train_episode_seed
from vjepa_robot_lab.learning.sac import Nets, network_config, train_sac
from vjepa_robot_lab.perception.features import make_feature_source
from vjepa_robot_lab.records.refused import Refused
from vjepa_robot_lab.records.run_kinds import complete_sac

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


def sweep_request(seed: int, overrides: dict, features: str = "state") -> TrainSACRequest:
    """The request a sweep run trains: the overrides (without `nets.*`) on the sweep's fixed fields, completed as the
    trainer completes it (an action_repeat left out is the task's: run_kinds.complete_sac)."""
    request, _ = split_overrides(overrides)
    return complete_sac(
        TrainSACRequest(
            **{"features": features, "seed": seed, "checkpoint_replay": False, "checkpoint_every": 1_000_000, **request}
        )
    )


def run_one(
    name: str, seed: int, overrides: dict, features: str = "state", keep: Path | None = None, extra: dict | None = None
) -> dict:
    """Train one configuration at one seed; `extra` (the held-out phase) is written into the result beside it."""
    torch.set_num_threads(1)
    _, nets = split_overrides(overrides)
    cfg = sweep_request(seed, overrides, features)
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
        **(extra or {}),
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


def add_strat(result: Path, run_dir: Path, episodes: int, task: str | None = None, seed: int = 0) -> dict:
    """Adds strat_eval (the run's own task) or, with `task`, strat_eval_<task> (e.g. an easy-trained policy on
    reacher-hard's smaller target) to the run's result file; `seed`: the evaluation seed of its episodes."""
    rec = json.loads(result.read_text())
    rec[f"strat_eval_{task}" if task else "strat_eval"] = strat_eval(run_dir, episodes, seed=seed, task=task)
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
    all its seeds' stratified evaluations (left: success per bin, the mean of the seeds' rates with the 95%
    t-interval across seeds and each seed as a dot, one seed: its 95% Wilson interval; right: every episode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vjepa_robot_lab.evaluation.evaluate import TARGET_BINS
    from vjepa_robot_lab.evaluation.stats import t_interval, wilson_ci95

    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("sac_*.json")) if p.name != "sac_bench.json"]
    runs = [r for r in runs if r.get("strat_eval") and r["name"] in names]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=100)
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        mine = sorted((r for r in runs if r["name"] == name), key=lambda r: r["seed"])
        eps = [e for r in mine for e in r["strat_eval"]["episode_records"]]
        if not eps:
            continue
        c, seeds = plt.cm.tab10(j), ",".join(str(r["seed"]) for r in mine)
        how = "t-interval across seeds" if len(mine) > 1 else "one seed: Wilson over its episodes"
        label = f"{name} (seeds {seeds}; {len(eps)} episodes; {how})"
        for i, b in enumerate(TARGET_BINS):
            per_seed = [[e for e in r["strat_eval"]["episode_records"] if e["target_bin"] == b] for r in mine]
            per_seed = [inside for inside in per_seed if inside]
            k, n = sum(e["success"] for p in per_seed for e in p), sum(len(p) for p in per_seed)
            if not n:
                continue
            rates = [sum(e["success"] for e in p) / len(p) for p in per_seed]
            if len(rates) > 1:  # the studies' interval: the seeds' mean, Student t across seeds
                m, lo, hi = t_interval(rates)
                rate, lo, hi = 100 * m, max(0.0, lo), min(1.0, hi)
            else:
                rate, (lo, hi) = 100 * k / n, wilson_ci95(k, n)
            x = i + (j - (len(names) - 1) / 2) * width
            ax.bar(x, rate, width * 0.9, color=c, label=label if i == 0 else None)
            ax.errorbar(x, rate, yerr=[[rate - 100 * lo], [100 * hi - rate]], color="k", capsize=3, lw=1)
            if len(rates) > 1:
                ax.scatter([x] * len(rates), [100 * r for r in rates], s=6, color="k", zorder=4)
            ax.text(x, 100 * hi + 2, f"{k}/{n}", ha="center", fontsize=7)
        bx.scatter([e["target_radius"] for e in eps], [e["return"] for e in eps], s=9, color=c, alpha=0.6, label=name)
    ax.set_xticks(range(3), [f"{b}\n{lo:.2f}-{hi:.2f} m" for b, (lo, hi) in TARGET_BINS.items()])
    ax.set_ylim(0, 135)  # room above the bars for the legend
    ax.set_ylabel("success (%): mean over seeds, 95% t-interval across seeds\n(dots: seeds; one seed: Wilson)")
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


# ----------------------------------------------------------------------------------------------------------------
# Held-out reporting (issue 30): choose on selection seeds and episodes, report on others
# ----------------------------------------------------------------------------------------------------------------


class SplitError(ValueError):
    """A held-out sweep whose report would reuse what the selection saw, or that cannot run as asked."""


@dataclass(frozen=True)
class Split:
    select_seeds: tuple[int, ...]  # training seeds of the selection runs
    report_seeds: tuple[int, ...]  # training seeds of the chosen configuration's report runs
    select_eval_seed: int  # the selection runs' evaluation episodes: eval_episode_seed(select_eval_seed, k)
    report_eval_seed: int  # the report runs': eval_episode_seed(report_eval_seed, k)


def eval_episodes_drawn(cfg: TrainSACRequest, strat: int = 0) -> int:
    """Evaluation episodes k = 0 .. n-1 a run draws from its eval seed: the most of its curve points', its final
    evaluation's and the stratified evaluation's after it (each starts at k = 0)."""
    return max(cfg.eval_episodes, cfg.final_eval_episodes, strat)


def train_episodes_drawn(cfg: TrainSACRequest) -> int:
    """An upper bound on the training episodes a run starts (train_episode_seed(seed, k), k = 0 .. n-1): the
    episodes its simulator steps complete, plus one in progress per env."""
    steps = cfg.train_episode_steps or cfg.episode_steps
    return cfg.total_steps // steps + cfg.parallel_envs + 1


def _span(seeds: set[int]) -> str:
    return f"{min(seeds)}..{max(seeds)}" if len(seeds) > 1 else str(min(seeds))


def check_split(split: Split, requests: list[TrainSACRequest], strat: int = 0) -> None:
    """Refuse (SplitError, naming the flags and a way out) a split whose report runs would share a training seed,
    a training episode or an evaluation episode with the selection runs, or that lists a seed twice or none."""
    for flag, seeds in (("--select-seeds", split.select_seeds), ("--report-seeds", split.report_seeds)):
        if not seeds:
            raise SplitError(f"{flag}: give at least one training seed")
        twice = sorted({s for s in seeds if list(seeds).count(s) > 1})
        if twice:
            raise SplitError(f"{flag} lists seed(s) {', '.join(map(str, twice))} more than once")
    both = sorted(set(split.select_seeds) & set(split.report_seeds))
    if both:
        raise SplitError(
            f"training seed(s) {', '.join(map(str, both))} are in both --select-seeds and --report-seeds: the report "
            "runs must be trained on seeds the selection never used"
        )
    n_train = max(train_episodes_drawn(c) for c in requests)
    episodes = {
        s: {train_episode_seed(s, k) for k in range(n_train)} for s in (*split.select_seeds, *split.report_seeds)
    }
    for a in split.select_seeds:
        for b in split.report_seeds:
            if episodes[a] & episodes[b]:
                raise SplitError(
                    f"selection seed {a} and report seed {b} would share training episodes (train_episode_seed(seed, "
                    f"k) = seed x 100003 + k, up to {n_train} episodes per run): pick report seeds further apart"
                )
    n_eval = max(eval_episodes_drawn(c, strat) for c in requests)
    sel = {eval_episode_seed(split.select_eval_seed, k) for k in range(n_eval)}
    rep = {eval_episode_seed(split.report_eval_seed, k) for k in range(n_eval)}
    if sel & rep:
        raise SplitError(
            f"evaluation episodes overlap: --select-eval-seed {split.select_eval_seed} draws episode seeds "
            f"{_span(sel)} and --report-eval-seed {split.report_eval_seed} draws {_span(rep)} ({n_eval} episodes: the "
            f"most any run's evaluation draws); use a --report-eval-seed at least {n_eval} away, e.g. "
            f"{split.select_eval_seed + n_eval}"
        )


def parse_candidate(text: str) -> tuple[str, dict]:
    """'NAME field=value ...' -> (NAME, overrides)."""
    name, *pairs = text.split()
    return name, dict(_parse(kv) for kv in pairs)


def candidate_requests(candidates: dict[str, dict], features: str = "state") -> list[TrainSACRequest]:
    """Each candidate's request, validated before anything runs; the seed and the evaluation seed belong to the
    split, so a candidate (or --set) naming them is refused."""
    out = []
    for name, overrides in candidates.items():
        fixed = sorted(set(overrides) & {"seed", "seeds", "n_seeds", "eval_seed"})
        if fixed:
            raise SplitError(
                f"candidate {name}: {', '.join(fixed)} is set by the split (--select-seeds, --report-seeds, "
                "--select-eval-seed, --report-eval-seed), not by a candidate or --set"
            )
        try:
            out.append(sweep_request(0, overrides, features))
        except (ValueError, Refused) as exc:
            why = str(exc).split("\n    For further information")[0].replace("\n", "; ")
            raise SplitError(f"candidate {name}: {why}") from None
    return out


def run_score(rec: dict, strat: int) -> float:
    """A run's score: the stratified evaluation's mean return with --strat, else the final evaluation's."""
    return float((rec["strat_eval"] if strat else rec["final_eval"])["mean_return"])


def choose(selection: dict[str, dict[str, float]]) -> str:
    """The candidate with the highest mean selection score across its seeds (the first listed on a tie)."""
    means = {c: sum(v.values()) / len(v) for c, v in selection.items()}
    return max(means, key=lambda c: (means[c], -list(means).index(c)))


PhaseRun = Callable[..., dict]  # (sweep, candidate, phase, seed, eval_seed, overrides, features, strat, keep) -> record


def phase_run(
    sweep: str,
    candidate: str,
    phase: str,
    seed: int,
    eval_seed: int,
    overrides: dict,
    features: str,
    strat: int,
    keep: Path | None,
) -> dict:
    """One run of a held-out phase, bench/results/sac_<sweep>-<candidate>-<phase>_s<seed>.json; a result already
    written for the same request (a rerun after a crash) is reused."""
    name = f"{sweep}-{candidate}-{phase}"
    path = RESULTS / f"sac_{name}_s{seed}.json"
    cfg = sweep_request(seed, overrides | {"eval_seed": eval_seed}, features).model_dump(mode="json")
    rec = json.loads(path.read_text()) if path.exists() else None
    if rec is not None and rec.get("config") != cfg:
        raise SplitError(f"{path} holds a run of another request: move it away, or name this sweep differently")
    if rec is None:
        keep_dir = keep / f"{name}_s{seed}" if keep else None
        extra = {"sweep": sweep, "candidate": candidate, "phase": phase, "eval_seed": eval_seed}
        rec = run_one(name, seed, overrides | {"eval_seed": eval_seed}, features, keep_dir, extra)
    if strat and "strat_eval" not in rec:
        rec = add_strat(path, keep / f"{name}_s{seed}", strat, seed=eval_seed)  # type: ignore[operator]
    return rec


def heldout(
    sweep: str,
    split: Split,
    candidates: dict[str, dict],
    *,
    features: str = "state",
    strat: int = 0,
    keep: Path | None = None,
    state_path: Path | None = None,
    run: PhaseRun = phase_run,
    log: Callable[[str], None] = print,
) -> dict:
    """Selection, then report: every candidate on split.select_seeds (episodes of select_eval_seed), the highest
    mean selection score chosen and fixed in the state file, then the chosen candidate alone on split.report_seeds
    (episodes of report_eval_seed). The state (bench/results/heldout_<sweep>.json) is written after every run."""
    if not candidates:
        raise SplitError("give at least one --candidate")
    if strat and keep is None:
        raise SplitError("--strat evaluates each run's kept checkpoint: give --keep DIR")
    check_split(split, candidate_requests(candidates, features), strat)
    state_path = state_path or RESULTS / f"heldout_{sweep}.json"
    plan = {"sweep": sweep, "split": asdict(split), "candidates": candidates, "features": features, "strat": strat}
    plan = json.loads(json.dumps(plan))  # as the state file holds it (lists, not tuples)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if state and {k: state.get(k) for k in plan} != plan:
        raise SplitError(f"{state_path} holds sweep {sweep!r} with another plan: name this sweep differently")
    state = state or plan | {
        "metric": f"{'strat_eval' if strat else 'final_eval'}.mean_return",
        "selection": {},
        "chosen": None,
        "report": {},
    }

    def save() -> None:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(state_path)  # never a half-written state

    for cand, overrides in candidates.items():
        for seed in split.select_seeds:
            rec = run(sweep, cand, "select", seed, split.select_eval_seed, overrides, features, strat, keep)
            state["selection"].setdefault(cand, {})[str(seed)] = run_score(rec, strat)
            save()
            log(f"selection {cand} seed {seed}: {state['selection'][cand][str(seed)]:.1f}")
    chosen = choose(state["selection"])
    if state["chosen"] not in (None, chosen):
        raise SplitError(f"{state_path} chose {state['chosen']!r} already; reporting keeps that choice")
    state["chosen"] = chosen
    save()
    log(f"chosen on selection: {chosen}")
    for seed in split.report_seeds:
        rec = run(sweep, chosen, "report", seed, split.report_eval_seed, candidates[chosen], features, strat, keep)
        state["report"][str(seed)] = run_score(rec, strat)
        save()
        log(f"report {chosen} seed {seed}: {state['report'][str(seed)]:.1f}")
    return state


def heldout_table(state: dict) -> str:
    """Selection rows (every candidate: what chose) and the report row (the chosen one on held-out seeds and
    episodes: what estimates its performance), each with its training seeds, evaluation seed, per-seed scores and
    the mean with its 95% t-interval across seeds."""
    from vjepa_robot_lab.evaluation.stats import t_interval

    split, metric = state["split"], state["metric"]
    rows = [
        f"Held-out sweep `{state['sweep']}`, score: {metric} per run. Selection numbers chose the configuration "
        "(they are biased upwards by the choice); only the report row estimates its performance.",
        "",
        "| phase | configuration | training seeds | evaluation episodes | score per seed | "
        "mean [95% t-interval across seeds] |",
        "|---|---|---|---|---|---|",
    ]

    def row(phase: str, cand: str, scores: dict[str, float], eval_seed: int) -> str:
        vals = list(scores.values())
        if not vals:
            return f"| {phase} | {cand} | - | eval seed {eval_seed} | (not run yet) | |"
        m, lo, hi = t_interval(vals)
        ci = f"[{lo:.0f}, {hi:.0f}]" if lo is not None else "(one seed)"
        return (
            f"| {phase} | {cand} | {', '.join(scores)} | eval seed {eval_seed} | "
            f"{', '.join(f'{v:.0f}' for v in vals)} | {m:.0f} {ci} |"
        )

    for cand, scores in state["selection"].items():
        phase = "selection (chosen)" if cand == state.get("chosen") else "selection"
        rows.append(row(phase, cand, scores, split["select_eval_seed"]))
    if state.get("chosen"):
        rows.append(row("**report (held out)**", state["chosen"], state["report"], split["report_eval_seed"]))
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="run")
    ap.add_argument("--seed", type=int, action="append")
    ap.add_argument("--features", default="state")
    ap.add_argument("--set", action="append", default=[], help="TrainSACRequest field=value, or nets.<field>=value")
    ap.add_argument("--keep", type=Path, help="keep each run's checkpoint in KEEP/<name>_s<seed>")
    ap.add_argument("--strat", type=int, default=0, help="after each run: stratified evaluation on N episodes")
    ap.add_argument(
        "--strat-seed", type=int, default=0, help="evaluation seed of --strat's episodes (default 0: issue 22's)"
    )
    ap.add_argument("--strat-only", type=Path, help="stratified evaluation of every kept run under this directory")
    ap.add_argument("--strat-task", help="with --strat-only: evaluate on this task instead (strat_eval_<task>)")
    ap.add_argument("--strat-table", action="store_true")
    ap.add_argument("--strat-summary", nargs="+", metavar="NAME", help="5-seed summary of these configurations")
    ap.add_argument("--strat-plot", nargs="+", metavar="NAME", help="bench/results/sac22_by_distance.png of these runs")
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--plot", action="store_true")
    ap.add_argument("--heldout", metavar="NAME", help="a held-out sweep: select on one split, report on another")
    ap.add_argument("--candidate", action="append", default=[], help='with --heldout: "NAME field=value ..."')
    ap.add_argument("--select-seeds", nargs="+", type=int, help="training seeds of the selection runs")
    ap.add_argument("--report-seeds", nargs="+", type=int, help="training seeds of the chosen configuration's report")
    ap.add_argument("--select-eval-seed", type=int, help="evaluation seed of the selection runs' episodes")
    ap.add_argument("--report-eval-seed", type=int, help="evaluation seed of the report runs' episodes")
    ap.add_argument("--heldout-table", metavar="NAME", help="the table of a held-out sweep's state file")
    a = ap.parse_args()
    if a.heldout_table:
        print(heldout_table(json.loads((RESULTS / f"heldout_{a.heldout_table}.json").read_text())))
        return
    split_flags = {
        "--select-seeds": a.select_seeds,
        "--report-seeds": a.report_seeds,
        "--select-eval-seed": a.select_eval_seed,
        "--report-eval-seed": a.report_eval_seed,
    }
    if a.heldout or a.candidate or any(v is not None for v in split_flags.values()):
        missing = [f for f, v in split_flags.items() if v is None] + ([] if a.heldout else ["--heldout NAME"])
        missing += [] if a.candidate else ["--candidate"]
        try:
            if missing:
                raise SplitError(f"a held-out sweep needs {', '.join(missing)}")
            common = dict(_parse(kv) for kv in a.set)
            candidates = {n: common | o for n, o in map(parse_candidate, a.candidate)}
            if len(candidates) != len(a.candidate):
                raise SplitError("two --candidate share a name")
            split = Split(tuple(a.select_seeds), tuple(a.report_seeds), a.select_eval_seed, a.report_eval_seed)
            state = heldout(a.heldout, split, candidates, features=a.features, strat=a.strat, keep=a.keep)
        except SplitError as exc:
            ap.error(str(exc))
        print(heldout_table(state))
        return
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
            rec = add_strat(RESULTS / f"sac_{a.name}_s{seed}.json", keep, a.strat, seed=a.strat_seed)
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
