"""The results report: every condition run, aggregated over seeds, with plots, probe tables and rollout GIFs.

    path = write_report(read_runs(runs_dir), load_probes(runs_dir), Path("report"), notes=load_notes(runs_dir))

Honesty rules this module enforces:
- Every row names its features exactly, and for `vjepa2` the encoder in the row itself: preset or checkpoint,
  random-init or pretrained, embedding dim, input size (from the run's recorded feature lineage). A random-init
  encoder (the `tiny` and `vitl-random` presets) is a stand-in: its rows, bars, curves and GIF captions say
  "plumbing check, not a V-JEPA 2 result", and so does the title when no pretrained encoder was run.
- Runs that share a condition (kind, features, encoder, dataset, training config except seed and study id, and
  the same evaluation protocol) are one row: the mean over seeds with a 95% t-interval across seeds, the per-seed
  rates with their own 95% Wilson intervals beside it, and the number of seeds. One seed gives its Wilson interval.
- Numbers are rounded for people ("20% [8, 42]"); a Wilson bound is exactly 0 (or 1) at 0 (or n) successes.

The report's metadata (who ran it, where, which encoder, how long) lives in `<runs_dir>/report_notes.json`
(`save_notes`/`load_notes`) so that re-running `vjepa-robot report` keeps it. Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .stats import t_interval, wilson_ci95

BASELINE_NAMES = {
    "jacobian": "Jacobian-transpose expert",
    "p-controller": "P-controller (the findings' expert)",
    "random": "Random policy",
}
FEATURE_NAMES = {"state": "state (8-d oracle: joint cos/sin, to_target, velocities)", "random": "random features"}
RANDOM_INIT_PRESETS = {"tiny": "V-JEPA 2 `tiny` preset (2 layers)", "vitl-random": "V-JEPA 2 ViT-L architecture"}
PLUMBING = "plumbing check, not a V-JEPA 2 result"
SUCCESS_PNG = "success.png"
BC_LOSS_PNG = "bc_loss.png"
SAC_CURVES_PNG = "sac_curves.png"
NOTES_FILE = "report_notes.json"
KIND_ORDER = {"baseline": 0, "bc": 1, "sac": 2}
FEATURE_ORDER = {"state": 0, "vjepa2": 1, "random": 2}
BASELINE_ORDER = {"jacobian": 0, "p-controller": 1, "random": 2}

# ----------------------------------------------------------------------------------------------------------------
# Numbers for people
# ----------------------------------------------------------------------------------------------------------------


def pct(rate: float | None, ci: Any = None) -> str:
    """"20% [8, 42]" (rounded to whole percent; bounds clamped to [0, 100])."""
    if rate is None:
        return "n/a"
    s = f"{100 * rate:.0f}%"
    if ci and ci[0] is not None:
        lo, hi = max(0.0, float(ci[0])), min(1.0, float(ci[1]))
        s += f" [{100 * lo:.0f}, {100 * hi:.0f}]"
    return s


def num(v: Any, digits: int = 1, ci: Any = None) -> str:
    if v is None:
        return "n/a"
    try:
        s = f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return str(v)
    if ci and ci[0] is not None:
        s += f" [{float(ci[0]):,.{digits}f}, {float(ci[1]):,.{digits}f}]"
    return s


def _sci(v: Any) -> str:
    try:
        return f"{float(v):.2e}"
    except (TypeError, ValueError):
        return "n/a"


def _enum(v: Any) -> str:
    return getattr(v, "value", v)


# ----------------------------------------------------------------------------------------------------------------
# What a run is: features, encoder, condition
# ----------------------------------------------------------------------------------------------------------------


def feature_lineage(run: dict) -> dict:
    """The feature lineage a run recorded (encoder id, model, dim, input size) or {} if none yet."""
    m, cfg = run.get("metrics") or {}, run.get("config") or {}
    for cand in (m.get("features_lineage"), (m.get("lineage") or {}).get("features"), cfg.get("features_lineage")):
        if isinstance(cand, dict) and cand:
            return cand
    return {}


def encoder_info(run: dict) -> dict:
    """{"features", "label", "random_init" (True/False/None = unknown), "encoder_id"} for a run."""
    cfg = run.get("config") or {}
    features = _enum(cfg.get("features")) if run.get("kind") != "baseline" else None
    if features is None:
        return {"features": None, "label": "simulator state (scripted policy)", "random_init": False}
    lin = feature_lineage(run)
    if features != "vjepa2":
        dim = lin.get("dim")
        label = FEATURE_NAMES.get(features, features)
        if features == "random" and dim:
            label += f" ({dim}-d)"
        return {"features": features, "label": label, "random_init": False}
    model = str(lin.get("model") or "")
    dim, size = lin.get("dim"), lin.get("image_size") or lin.get("crop_size")
    random_init = lin.get("random_init")
    preset = model.removeprefix("preset:") if model.startswith("preset:") else None
    if random_init is None and model:
        random_init = preset in RANDOM_INIT_PRESETS
    if not model:
        label = "V-JEPA 2, encoder not recorded (run unfinished?)"
    elif preset in RANDOM_INIT_PRESETS:
        label = f"{RANDOM_INIT_PRESETS[preset]}, random-init"
    elif preset:
        label = f"V-JEPA 2 `{preset}` preset, {'random-init' if random_init else 'pretrained'}"
    else:
        label = f"V-JEPA 2 `{model}`, {'random-init' if random_init else 'pretrained'}"
    frames = (run.get("lineage") or {}).get("image_size")  # the frame size the policy was trained on
    details = [f"{dim}-d" if dim else None, f"{size} px input" if size else None,
               f"{frames} px frames" if frames and frames != size else None]
    label += "".join(f", {d}" for d in details if d)
    return {"features": "vjepa2", "label": label, "random_init": random_init, "encoder_id": lin.get("encoder_id")}


def is_plumbing(run: dict) -> bool:
    """A run whose features come from a random-init V-JEPA 2 (a stand-in, not the experiment)."""
    info = encoder_info(run)
    return info["features"] == "vjepa2" and bool(info["random_init"])


def condition_name(run: dict, short: bool = False) -> str:
    """The condition, naming the features (and for vjepa2 the encoder) exactly; `short` leaves the encoder out
    (for a table whose row names it in another column)."""
    cfg = run.get("config") or {}
    kind = run.get("kind")
    if kind == "baseline":
        policy = _enum(cfg.get("policy", "?"))
        return BASELINE_NAMES.get(policy, f"Baseline: {policy}")
    info = encoder_info(run)
    feats = "vjepa2: " + info["label"] if info["features"] == "vjepa2" else _enum(cfg.get("features", "?"))
    if short:
        feats = _enum(cfg.get("features", "?"))
    mark = f" [{PLUMBING}]" if is_plumbing(run) and not short else ""
    if kind == "bc":
        return f"BC on {feats} ({cfg.get('dataset', '?')}){mark}"
    if kind == "sac":
        return f"SAC on {feats}{mark}"
    return f"{kind}: {run.get('run_id')}"


def short_name(run: dict) -> str:
    """A compact label for plots: 'BC vjepa2 (tiny, random-init)'."""
    cfg, kind = run.get("config") or {}, run.get("kind")
    if kind == "baseline":
        return BASELINE_NAMES.get(_enum(cfg.get("policy")), str(cfg.get("policy")))
    f = _enum(cfg.get("features", "?"))
    if f == "vjepa2":
        model = str(feature_lineage(run).get("model") or "?").removeprefix("preset:")
        f = f"vjepa2 ({model}, {'random-init' if is_plumbing(run) else 'pretrained'})"
    return f"{kind.upper() if kind in ('bc', 'sac') else kind} {f}"


def _seed(run: dict):
    return (run.get("config") or {}).get("seed")


def condition_key(run: dict) -> str:
    """Runs with the same key differ only in their seed (and study id)."""
    cfg = {k: v for k, v in (run.get("config") or {}).items() if k not in ("seed", "study_id")}
    return json.dumps({"kind": run.get("kind"), "config": cfg, "encoder": encoder_info(run).get("encoder_id")},
                      sort_keys=True, default=str)


def _order(run: dict) -> tuple:
    cfg = run.get("config") or {}
    sub = (BASELINE_ORDER.get(_enum(cfg.get("policy")), 9) if run.get("kind") == "baseline"
           else FEATURE_ORDER.get(_enum(cfg.get("features")), 9))
    return (KIND_ORDER.get(run.get("kind"), 9), sub, condition_name(run))


# ----------------------------------------------------------------------------------------------------------------
# Rows: one per evaluation, then one per condition (seeds aggregated)
# ----------------------------------------------------------------------------------------------------------------


def evaluation_rows(runs: list[dict]) -> list[dict]:
    """One row per finished evaluation with a success rate (successes counted from the episodes)."""
    rows = []
    for run in runs:
        for ev in run.get("evaluations") or []:
            if ev.get("success_rate") is None:
                continue
            episodes = ev.get("episodes") or []
            n = len(episodes) or int(ev.get("episodes_total") or 0)
            k = sum(bool(e.get("success")) for e in episodes) if episodes else round(float(ev["success_rate"]) * n)
            req = ev.get("request") or {}
            rows.append({
                "run": run,
                "condition": condition_name(run),
                "run_id": run.get("run_id"),
                "eval_id": ev.get("eval_id"),
                "kind": run.get("kind"),
                "seed": _seed(run),
                "success_rate": float(ev["success_rate"]),
                "successes": k,
                "ci": wilson_ci95(k, n) if n else ev.get("success_ci95"),
                "mean_return": ev.get("mean_return"),
                "episodes": n,
                "task": ev.get("task") or req.get("task"),
                "protocol": {"task": ev.get("task") or req.get("task"), "steps": req.get("steps"),
                             "eval_seed": req.get("seed"), "episodes": n},
                "image_size": req.get("image_size"),
                "gif": ev.get("gif"),
                "plumbing": is_plumbing(run),
            })
    return rows


def condition_rows(runs: list[dict]) -> list[dict]:
    """Evaluation rows grouped by condition and evaluation protocol, in reading order."""
    groups: dict[str, list[dict]] = {}
    for r in evaluation_rows(runs):
        key = condition_key(r["run"]) + json.dumps(r["protocol"], sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        members.sort(key=lambda r: (str(r["seed"]), str(r["run_id"])))
        first = members[0]
        rates = [m["success_rate"] for m in members]
        mean, lo, hi = t_interval(rates)
        multi = len(members) > 1
        returns = [float(m["mean_return"]) for m in members if m["mean_return"] is not None]
        out.append({
            "condition": first["condition"],
            "condition_short": condition_name(first["run"], short=True),
            "short": short_name(first["run"]),
            "kind": first["kind"],
            "task": first["task"],
            "plumbing": first["plumbing"],
            "encoder": encoder_info(first["run"])["label"],
            "members": members,
            "n_runs": len(members),
            "seeds": [m["seed"] for m in members],
            "success_rate": mean,
            "ci": (max(0.0, lo), min(1.0, hi)) if multi else first["ci"],
            "ci_kind": "t across seeds" if multi else "Wilson",
            "mean_return": t_interval(returns)[0] if returns else None,
            "episodes": first["episodes"],
            "order": _order(first["run"]) + (str(first["task"]),),
        })
    return sorted(out, key=lambda g: g["order"])


def _seeds_cell(g: dict) -> str:
    if g["kind"] == "baseline":
        return f"- ({g['n_runs']} run{'s' if g['n_runs'] > 1 else ''})"
    seeds = [s for s in g["seeds"] if s is not None]
    distinct = len(set(seeds))
    s = f"{distinct} (seed{'s' if distinct > 1 else ''} {', '.join(map(str, seeds))})" if seeds else str(g["n_runs"])
    if distinct < len(seeds):
        s += f"; {len(seeds)} runs, repeats of a seed"
    return s


def _per_seed_cell(g: dict) -> str:
    if g["n_runs"] == 1:
        return "-"
    return "; ".join(f"{'s' + str(m['seed']) if m['seed'] is not None else m['run_id']}: "
                     f"{pct(m['success_rate'], m['ci'])}" for m in g["members"])


def _notes(g: dict) -> str:
    notes = []
    if g["task"]:
        notes.append(f"task {g['task']}")
    sizes = {m["image_size"] for m in g["members"] if m["image_size"]}
    if sizes and any(m["run"].get("kind") != "baseline" and encoder_info(m["run"])["features"] == "vjepa2"
                     for m in g["members"]):
        notes.append("frames " + "/".join(f"{s} px" for s in sorted(sizes)))
    runs = [m["run"] for m in g["members"]]
    if g["kind"] == "bc":
        kept = [(r.get("metrics") or {}).get("selected_epoch") for r in runs]
        if any(kept):
            notes.append("kept epoch " + ", ".join(str(k) for k in kept))
    elif g["kind"] == "sac":
        steps = [(r.get("metrics") or {}).get("env_steps") for r in runs]
        if any(steps):
            notes.append(", ".join(f"{int(s):,}" for s in steps if s) + " env steps")
    notes.append(", ".join(f"`{m['run_id']}`" for m in g["members"]))
    return "; ".join(notes)


# ----------------------------------------------------------------------------------------------------------------
# Plots (Agg only)
# ----------------------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


KIND_COLORS = {"baseline": "tab:gray", "bc": "tab:blue", "sac": "tab:green"}


def plot_success(groups: list[dict], path: Path) -> Path:
    """One bar per condition (mean over seeds), its 95% interval, per-seed points, n per bar, value labels."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(max(7, 1.25 * len(groups) + 2), 5.2))
    for i, g in enumerate(groups):
        rate = 100 * g["success_rate"]
        lo, hi = (100 * g["ci"][0], 100 * g["ci"][1]) if g["ci"] else (rate, rate)
        ax.bar(i, rate, color=KIND_COLORS.get(g["kind"], "tab:orange"), hatch="//" if g["plumbing"] else None,
               edgecolor="black" if g["plumbing"] else None, linewidth=0.5)
        ax.errorbar(i, rate, yerr=[[rate - lo], [hi - rate]], color="black", capsize=4, lw=1)
        if g["n_runs"] > 1:
            pts = [100 * m["success_rate"] for m in g["members"]]
            ax.scatter([i] * len(pts), pts, s=14, color="black", zorder=3)
        seeds = "" if g["kind"] == "baseline" else f" x {len(set(g['seeds']))} seed{'s' if g['n_runs'] > 1 else ''}"
        ax.text(i, min(hi, 100) + 2, f"{rate:.0f}%\nn={g['episodes']} ep{seeds}", ha="center", va="bottom", fontsize=7)
    labels = [g["short"] + (f" [{g['task']}]" if g["task"] and g["task"] != "easy" else "")
              + ("\n(plumbing check)" if g["plumbing"] else "") for g in groups]
    ax.set_xticks(range(len(groups)), labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 119)
    ax.set_title("Live success rate: bars = mean over seeds, whiskers = 95% interval\n"
                 "(t-interval across seeds when >1 seed, else Wilson over episodes); dots = single seeds", fontsize=9)
    handles = [Patch(color=c, label=k if k != "baseline" else "scripted baseline") for k, c in KIND_COLORS.items()
               if any(g["kind"] == k for g in groups)]
    if any(g["plumbing"] for g in groups):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                             label="random-init encoder: plumbing check, not V-JEPA 2"))
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bc_curves(run: dict) -> tuple[list, list]:
    """(train, val) per-epoch MSE of a BC run (bc.py writes *_curve; a list under train_loss is accepted too)."""
    m = run.get("metrics") or {}
    train = m.get("train_loss_curve") or (m["train_loss"] if isinstance(m.get("train_loss"), list) else [])
    val = m.get("val_loss_curve") or (m["val_loss"] if isinstance(m.get("val_loss"), list) else [])
    return list(train), list(val)


def plot_bc_losses(runs: list[dict], path: Path) -> Path:
    """Train (solid) and validation (dashed) MSE per epoch; a star marks the epoch whose weights the run kept."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, run in enumerate(runs):
        train, val = bc_curves(run)
        color = f"C{i % 10}"
        seed = _seed(run)
        label = short_name(run) + (f" s{seed}" if seed is not None else "") + (" (plumbing)" if is_plumbing(run) else "")
        ax.plot(range(1, len(train) + 1), train, color=color, lw=1, label=f"{label}: train")
        pts = [(e + 1, v) for e, v in enumerate(val) if v is not None]
        if pts:
            ax.plot(*zip(*pts), color=color, linestyle="--", lw=1, label=f"{label}: validation")
        kept = (run.get("metrics") or {}).get("selected_epoch")
        if kept and 0 < kept <= len(val) and val[kept - 1] is not None:
            ax.plot([kept], [val[kept - 1]], marker="*", ms=12, color=color, markeredgecolor="black", linestyle="")
    ax.plot([], [], marker="*", ms=10, color="white", markeredgecolor="black", linestyle="", label="kept epoch")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE on expert actions")
    ax.set_title("BC loss: solid = train, dashed = validation episodes, star = the epoch the run kept")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sac_groups(runs: list[dict]) -> list[list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(condition_key(r), []).append(r)
    return sorted(groups.values(), key=lambda g: _order(g[0]))


def plot_sac_curves(runs: list[dict], path: Path) -> Path:
    """Per condition: mean over seeds with a 95% band and thin per-seed lines; the final evaluation is a star.

    One seed: the band is the per-point 95% interval over its evaluation episodes (Wilson for success,
    mean +- 1.96 sd/sqrt(n) for return)."""
    import numpy as np

    plt = _pyplot()
    fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, members in enumerate(sac_groups(runs)):
        color = f"C{i % 10}"
        curves = [(r.get("metrics") or {}).get("curve") or [] for r in members]
        label = short_name(members[0]) + f" ({len(members)} seed{'s' if len(members) > 1 else ''})" + (
            " (plumbing)" if is_plumbing(members[0]) else "")
        common = sorted(set.intersection(*[{p.get("env_steps") for p in c} for c in curves]))
        for ax, key, scale in ((ax_s, "success_rate", 100), (ax_r, "mean_return", 1)):
            if len(members) > 1:
                for c in curves:
                    ax.plot([p["env_steps"] for p in c], [scale * (p.get(key) or 0) for p in c], color=color, lw=0.6,
                            alpha=0.5)
                by_x = [[scale * (next(p for p in c if p["env_steps"] == x).get(key) or 0) for c in curves]
                        for x in common]
                stats = [t_interval(v) for v in by_x]
                mean = [s[0] for s in stats]
                lo, hi = [s[1] for s in stats], [s[2] for s in stats]
                x = common
            else:
                c = curves[0]
                x = [p["env_steps"] for p in c]
                mean = [scale * (p.get(key) or 0) for p in c]
                if key == "success_rate":
                    b = [wilson_ci95(round(p.get(key, 0) * p.get("eval_episodes", 0)), p.get("eval_episodes") or 0) for p in c]
                    lo, hi = [100 * v[0] for v in b], [100 * v[1] for v in b]
                else:
                    half = [1.96 * (p.get("std_return") or 0) / math.sqrt(max(p.get("eval_episodes") or 1, 1)) for p in c]
                    lo, hi = [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)]
            if not x:
                continue
            ax.plot(x, mean, color=color, lw=1.8, label=label)
            ax.fill_between(x, np.clip(lo, 0 if key == "mean_return" else 0, None),
                            np.clip(hi, None, 100 if key == "success_rate" else None), color=color, alpha=0.18)
            ax.plot([x[-1]], [mean[-1]], marker="*", ms=13, color=color, markeredgecolor="black", linestyle="")
    for ax in (ax_s, ax_r):
        ax.plot([], [], marker="*", ms=10, color="white", markeredgecolor="black", linestyle="",
                label="final evaluation (closes the curve)")
    ax_s.set(xlabel="env steps (simulator)", ylabel="success rate (%)", title="SAC success rate", ylim=(0, 105))
    ax_r.set(xlabel="env steps (simulator)", ylabel="mean return", title="SAC mean return")
    ax_s.legend(fontsize=7)
    fig.suptitle("Deterministic evaluations during training; band = 95% interval (across seeds, or over episodes "
                 "for one seed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Probe tables
# ----------------------------------------------------------------------------------------------------------------


def probe_feature_label(p: dict) -> str:
    lin = p.get("lineage") or {}
    if p.get("features") == "vjepa2":
        fake = {"kind": "bc", "config": {"features": "vjepa2"}, "metrics": {"features_lineage": lin}}
        return "vjepa2: " + encoder_info(fake)["label"] + (f" [{PLUMBING}]" if is_plumbing(fake) else "")
    return FEATURE_NAMES.get(p.get("features"), str(p.get("features")))


def _r2(entry: dict | None) -> str:
    if not entry or entry.get("r2") is None or (isinstance(entry["r2"], float) and math.isnan(entry["r2"])):
        return "n/a"
    return f"{entry['r2']:.2f} ± {entry.get('r2_sd', 0):.2f}"


def probe_rows(probes: list[dict]) -> list[dict]:
    """One row per (features, target): linear R2 (mean ± sd over folds), alpha (edge?), MLP R2."""
    rows = []
    for p in probes:
        if "linear" not in p:  # an old single-split probe file
            continue
        for t in p.get("targets") or list(p["linear"]):
            lin, mlp = p["linear"].get(t) or {}, (p.get("mlp") or {}).get(t)
            alpha = lin.get("alpha")
            rows.append({"features": probe_feature_label(p), "dataset": p.get("dataset", ""), "target": t,
                         "linear": _r2(lin), "alpha": (f"{alpha:.2g}" if alpha is not None else "n/a")
                         + (" (grid edge)" if lin.get("alpha_at_edge") else ""),
                         "mlp": _r2(mlp), "folds": f"{p.get('folds')} x {p.get('n_episodes')} episodes"})
    return rows


def _probe_table(probes: list[dict]) -> list[str]:
    lines = ["| Features | Dataset | Target | Linear R2 (mean ± sd over folds) | Ridge alpha (median over folds) | "
             "MLP R2 (mean ± sd) | Folds |", "|---|---|---|---|---|---|---|"]
    for r in probe_rows(probes):
        lines.append(f"| {r['features']} | {r['dataset']} | {r['target']} | {r['linear']} | {r['alpha']} | "
                     f"{r['mlp']} | {r['folds']} |")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Stored inputs: runs, probes, notes (reading never creates anything)
# ----------------------------------------------------------------------------------------------------------------


def read_runs(runs_dir: Path | str) -> list[dict]:
    """Every run record under runs_dir, oldest first; [] (and nothing created) if the directory is missing."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.glob("*/run.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda r: r.get("created_at", ""))


def load_notes(runs_dir: Path | str) -> dict:
    p = Path(runs_dir) / NOTES_FILE
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def save_notes(runs_dir: Path | str, notes: dict) -> Path:
    """Merge `notes` into <runs_dir>/report_notes.json (what the report's Notes section shows on every re-run)."""
    p = Path(runs_dir) / NOTES_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    merged = {**load_notes(runs_dir), **notes}
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1, default=str))
    tmp.replace(p)
    return p


def _note_value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_note_value(x)}" for k, x in v.items())
    return str(v)


# ----------------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------------


def title(runs: list[dict]) -> str:
    vj = [r for r in runs if r.get("kind") in ("bc", "sac") and encoder_info(r)["features"] == "vjepa2"]
    if any(encoder_info(r)["random_init"] is False for r in vj):
        return "V-JEPA 2 -> robot policy: results"
    if vj:
        return ("vjepa-robot pipeline check with a random-init stand-in encoder "
                "(plumbing check: no V-JEPA 2 result in this report)")
    return "vjepa-robot results"


def summary_lines(runs: list[dict]) -> list[str]:
    """Plain-text lines for consoles: one per condition, rounded, random-init rows marked."""
    return [f"{g['condition']}: success {pct(g['success_rate'], g['ci'])} ({g['ci_kind']}), "
            f"return {num(g['mean_return'])}, {g['episodes']} episodes x {g['n_runs']} run(s)"
            for g in condition_rows(runs)]


def write_report(runs: list[dict], probes: list[dict], out_dir: Path, extra_notes: dict | None = None) -> Path:
    """Write out_dir/README.md (+ success.png, bc_loss.png, sac_curves.png, gifs/) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = condition_rows(runs)
    any_plumbing = any(is_plumbing(r) for r in runs)
    md: list[str] = [
        f"# {title(runs)}",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from {len(runs)} run(s). "
        "Success = fingertip inside the target on each of the last 10 steps of an episode. A row with one seed "
        "gives the 95% Wilson interval over its episodes; a row with several seeds gives the mean over seeds with "
        "a 95% t-interval across seeds, and each seed's own Wilson interval beside it.",
        "",
    ]
    if any_plumbing:
        md += [f"> **Rows marked \"{PLUMBING}\" use a random-init V-JEPA 2 architecture (a preset with no trained "
               "weights).** They check that the pipeline runs end to end; they say nothing about what pretrained "
               "V-JEPA 2 features are worth. That needs the pretrained checkpoint (`--preset vitl`).", ""]
    md += ["## Conditions (live evaluation)", ""]
    if groups:
        md += ["| Condition | Features / encoder | Seeds | Success [95% CI] | Per seed: success [Wilson 95%] | "
               "Mean return | Episodes per run | Notes |", "|---|---|---|---|---|---|---|---|"]
        for g in groups:
            enc = g["encoder"] + (f" **({PLUMBING})**" if g["plumbing"] else "")
            md.append(f"| {g['condition_short']} | {enc} | {_seeds_cell(g)} | {pct(g['success_rate'], g['ci'])} "
                      f"({g['ci_kind']}) | {_per_seed_cell(g)} | {num(g['mean_return'])} | {g['episodes']} | "
                      f"{_notes(g)} |")
        md += ["", f"![success rates]({plot_success(groups, out_dir / SUCCESS_PNG).name})", ""]
    else:
        md += ["No finished evaluations yet.", ""]

    unevaluated = [r for r in runs if not any(e.get("success_rate") is not None for e in r.get("evaluations") or [])]
    if unevaluated:
        md += ["Runs without a finished evaluation: "
               + ", ".join(f"`{r.get('run_id')}` ({condition_name(r)}, {r.get('status')})" for r in unevaluated), ""]

    bc_runs = sorted([r for r in runs if r.get("kind") == "bc" and bc_curves(r)[0]], key=_order)
    if bc_runs:
        md += ["## Behaviour cloning", "",
               "BC keeps the weights of the epoch with the lowest validation MSE unless its config says "
               "`select: last`; the star in the plot marks the kept epoch.", "",
               "| Condition | Run | Seed | Epochs | Kept epoch (rule) | Val MSE at kept epoch | Final train / val MSE | "
               "Train / val rows | Training time |", "|---|---|---|---|---|---|---|---|---|"]
        for r in bc_runs:
            m, (train, val) = r.get("metrics") or {}, bc_curves(r)
            last_val = next((v for v in reversed(val) if v is not None), None)
            kept = m.get("selected_epoch")
            kept_val = val[kept - 1] if kept and 0 < kept <= len(val) else None
            rule = m.get("select") or (r.get("config") or {}).get("select") or "last (not recorded)"
            md.append(f"| {condition_name(r)} | `{r.get('run_id')}` | {_seed(r) if _seed(r) is not None else '-'} | "
                      f"{len(train)} | "
                      f"{kept if kept else len(train)} ({rule}) | {_sci(kept_val)} | {_sci(train[-1])} / "
                      f"{_sci(last_val)} | {m.get('n_train', '?')} / {m.get('n_val', '?')} | "
                      f"{num(m.get('train_s')) + ' s' if m.get('train_s') is not None else 'n/a'} |")
        md += ["", f"![BC loss curves]({plot_bc_losses(bc_runs, out_dir / BC_LOSS_PNG).name})", ""]

    sac_runs = [r for r in runs if r.get("kind") == "sac" and (r.get("metrics") or {}).get("curve")]
    if sac_runs:
        md += ["## SAC", "",
               "Final evaluation = the deterministic policy on the run's final evaluation episodes at the end of "
               "training (the last point of each curve).", "",
               "| Condition | Seeds | Final return [95% CI] | Per seed | Final success | Env steps |",
               "|---|---|---|---|---|---|"]
        for members in sac_groups(sac_runs):
            finals = [(r.get("metrics") or {}).get("final_eval") or {} for r in members]
            rets = [f["mean_return"] for f in finals if f.get("mean_return") is not None]
            mean, lo, hi = t_interval(rets) if rets else (None, None, None)
            per = "; ".join(f"s{_seed(r)}: {num(f.get('mean_return'))}" for r, f in zip(members, finals))
            succ = [f.get("success_rate") for f in finals if f.get("success_rate") is not None]
            steps = sorted({(r.get("metrics") or {}).get("env_steps") for r in members} - {None})
            md.append(f"| {condition_name(members[0])} | {len(members)} | {num(mean, 1, (lo, hi))} | {per} | "
                      f"{pct(sum(succ) / len(succ)) if succ else 'n/a'} | "
                      f"{', '.join(f'{int(s):,}' for s in steps)} |")
        md += ["", f"![SAC learning curves]({plot_sac_curves(sac_runs, out_dir / SAC_CURVES_PNG).name})", ""]

    if probes:
        md += ["## What the features encode (probes)", "",
               "k-fold over episodes (each episode tested once by a fit that never saw it); R2 as mean ± sd across "
               "folds. Linear: ridge, alpha by inner cross-validation (\"grid edge\" = the choice hit the end of the "
               "1e-3..1e7 grid: for features that carry nothing, predicting the mean wins). MLP: a small MLP on the "
               "same folds. The state features hold `to_target` directly and the joint angles as cos/sin, so the "
               "fingertip is a non-linear function of them: the MLP row is their upper bound.", ""]
        md += _probe_table(probes) + [""]

    gif_lines: list[str] = []
    for g in groups:
        for r in g["members"]:
            for k, src in enumerate(_gif_paths(r["gif"])):
                if not src.is_file():
                    gif_lines.append(f"- {r['condition']}: GIF `{src}` is missing")
                    continue
                dst = out_dir / "gifs" / f"{r['run_id']}-{r['eval_id']}-{k}{src.suffix or '.gif'}"
                dst.parent.mkdir(exist_ok=True)
                if src.resolve() != dst.resolve():
                    shutil.copyfile(src, dst)
                gif_lines += [f"**{r['condition']}** (`{r['run_id']}`, seed {r['seed']}, evaluation {r['eval_id']}, "
                              f"episode {k})", "", f"![rollout](gifs/{dst.name})", ""]
    if gif_lines:
        md += ["## Rollouts", "", "Each GIF: the policy (left) beside the Jacobian expert (right) on the same "
               "evaluation seed, at real time; the caption gives step, return so far and success.", ""] + gif_lines

    if extra_notes:
        md += ["## Notes", ""] + [f"- **{k}**: {_note_value(v)}" for k, v in extra_notes.items()] + [""]

    path = out_dir / "README.md"
    path.write_text("\n".join(md))
    return path


def _gif_paths(gif: Any) -> list[Path]:
    if not gif:
        return []
    return [Path(g) for g in (gif if isinstance(gif, (list, tuple)) else [gif])]


__all__ = ["write_report", "condition_name", "condition_rows", "evaluation_rows", "encoder_info", "is_plumbing",
           "plot_success", "plot_bc_losses", "plot_sac_curves", "read_runs", "load_notes", "save_notes", "pct",
           "wilson_ci95", "t_interval", "probe_rows", "summary_lines", "title"]
