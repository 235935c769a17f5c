"""The results report: the findings' Phase 1 table for every condition run, plots, the probe table, rollout GIFs.

    path = write_report(run_store.list(), probes, Path("report"))   # -> report/README.md (+ PNGs, GIFs)

Conditions are named from the run records:
    bc        "BC on <features> (<dataset>)"
    sac       "SAC on <features>"
    baseline  the scripted policy it ran: Jacobian-transpose expert, P-controller (the findings' expert), random

One row per finished evaluation (a run evaluated twice, e.g. on easy and hard, gives two rows). Success rates
carry their 95% Wilson interval (env.wilson_ci95) computed from the episodes when the record lacks one.
Plots use matplotlib's Agg backend only (no display is needed or touched).
"""

from __future__ import annotations

import math
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .env import wilson_ci95

BASELINE_NAMES = {
    "jacobian": "Jacobian-transpose expert",
    "p-controller": "P-controller (the findings' expert)",
    "random": "Random policy",
}
SUCCESS_PNG = "success.png"
BC_LOSS_PNG = "bc_loss.png"
SAC_CURVES_PNG = "sac_curves.png"


# ----------------------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------------------


def condition_name(run: dict) -> str:
    cfg = run.get("config") or {}
    kind = run.get("kind")
    if kind == "bc":
        return f"BC on {_enum(cfg.get('features', '?'))} ({cfg.get('dataset', '?')})"
    if kind == "sac":
        return f"SAC on {_enum(cfg.get('features', '?'))}"
    if kind == "baseline":
        policy = _enum(cfg.get("policy", "?"))
        return BASELINE_NAMES.get(policy, f"Baseline: {policy}")
    return f"{kind}: {run.get('run_id')}"


def _enum(v: Any) -> str:
    return getattr(v, "value", v)


def evaluation_rows(runs: list[dict]) -> list[dict]:
    """One row per evaluation with a success rate: condition, rate, CI, mean return, n, notes."""
    rows = []
    for run in runs:
        for ev in run.get("evaluations") or []:
            if ev.get("success_rate") is None:
                continue
            episodes = ev.get("episodes") or []
            n = len(episodes)
            ci = ev.get("success_ci95")
            if not ci and n:
                ci = list(wilson_ci95(sum(bool(e.get("success")) for e in episodes), n))
            rows.append({
                "condition": condition_name(run),
                "run_id": run.get("run_id"),
                "eval_id": ev.get("eval_id"),
                "kind": run.get("kind"),
                "success_rate": float(ev["success_rate"]),
                "ci": ci,
                "mean_return": ev.get("mean_return"),
                "episodes": n,
                "task": ev.get("task") or (ev.get("request") or {}).get("task"),
                "notes": _notes(run, ev),
                "gif": ev.get("gif"),
            })
    return rows


def _notes(run: dict, ev: dict) -> str:
    m, cfg, notes = run.get("metrics") or {}, run.get("config") or {}, []
    task = ev.get("task") or (ev.get("request") or {}).get("task")
    if task:
        notes.append(f"task {task}")
    if run.get("kind") == "bc":
        if m.get("val_loss") is not None:
            notes.append(f"val MSE {_fmt(m['val_loss'], '.2e')}")
        if m.get("epoch") is not None:
            notes.append(f"{m['epoch']} epochs")
        if m.get("train_s") is not None:
            notes.append(f"trained in {_fmt(m['train_s'], '.0f')} s")
    elif run.get("kind") == "sac":
        steps = m.get("env_steps") or cfg.get("total_steps")
        if steps:
            notes.append(f"{int(steps):,} env steps")
    if ev.get("steps_per_second"):
        notes.append(f"{_fmt(ev['steps_per_second'], '.0f')} eval steps/s")
    notes.append(f"`{run.get('run_id')}`")
    return ", ".join(notes)


def _fmt(v: Any, spec: str) -> str:
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def _pct(rate: float, ci: list | None) -> str:
    s = f"{100 * rate:.1f}%"
    if ci:
        s += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return s


# ----------------------------------------------------------------------------------------------------------------
# Plots (Agg only)
# ----------------------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_success(rows: list[dict], path: Path) -> Path:
    plt = _pyplot()
    labels = [r["condition"] + (f" [{r['task']}]" if r.get("task") else "") for r in rows]
    rates = [100 * r["success_rate"] for r in rows]
    lo = [100 * (r["success_rate"] - r["ci"][0]) if r["ci"] else 0 for r in rows]
    hi = [100 * (r["ci"][1] - r["success_rate"]) if r["ci"] else 0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 4.5))
    colors = {"bc": "tab:blue", "sac": "tab:green", "baseline": "tab:gray"}
    ax.bar(range(len(rows)), rates, yerr=[lo, hi], capsize=4, color=[colors.get(r["kind"], "tab:orange") for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Success rate with 95% Wilson interval")
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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, run in enumerate(runs):
        train, val = bc_curves(run)
        color = f"C{i % 10}"
        label = f"{condition_name(run)} `{run.get('run_id')}`".replace("`", "")
        ax.plot(range(1, len(train) + 1), train, color=color, label=f"{label} train")
        pts = [(e + 1, v) for e, v in enumerate(val) if v is not None]
        if pts:
            ax.plot(*zip(*pts), color=color, linestyle="--", label=f"{label} val")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE on expert actions")
    ax.set_title("BC loss (solid: train, dashed: validation episodes)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sac_curves(runs: list[dict], path: Path) -> Path:
    plt = _pyplot()
    fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, run in enumerate(runs):
        curve = (run.get("metrics") or {}).get("curve") or []
        x = [p.get("env_steps") for p in curve]
        label = f"{condition_name(run)} ({run.get('run_id')})"
        ax_s.plot(x, [100 * (p.get("success_rate") or 0) for p in curve], marker="o", ms=3, color=f"C{i % 10}",
                  label=label)
        ax_r.plot(x, [p.get("mean_return") for p in curve], marker="o", ms=3, color=f"C{i % 10}", label=label)
    ax_s.set(xlabel="env steps", ylabel="success rate (%)", title="SAC success rate", ylim=(0, 105))
    ax_r.set(xlabel="env steps", ylabel="mean return", title="SAC mean return")
    ax_s.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------------------------


def _r2(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.3f}"


def _probe_table(probes: list[dict]) -> list[str]:
    lines = ["| Features | Dataset | finger xy R2 | target xy R2 | alpha (finger, target) | train / test rows |",
             "|---|---|---|---|---|---|"]
    for p in probes:
        alpha = p.get("alpha")
        if isinstance(alpha, dict):
            alpha = ", ".join(f"{alpha[k]:g}" for k in ("finger_xy", "target_xy") if k in alpha)
        elif isinstance(alpha, (int, float)):
            alpha = f"{alpha:g}"
        lines.append(f"| {p.get('features')} | {p.get('dataset', '')} | {_r2(p.get('finger_xy_r2'))} | "
                     f"{_r2(p.get('target_xy_r2'))} | {alpha if alpha is not None else ''} | "
                     f"{p.get('n_train', '')} / {p.get('n_test', '')} |")
    return lines


def _gif_paths(gif: Any) -> list[Path]:
    if not gif:
        return []
    return [Path(g) for g in (gif if isinstance(gif, (list, tuple)) else [gif])]


def write_report(runs: list[dict], probes: list[dict], out_dir: Path, extra_notes: dict | None = None) -> Path:
    """Write out_dir/README.md (+ success.png, bc_loss.png, sac_curves.png, gifs/) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = evaluation_rows(runs)
    md: list[str] = [
        "# V-JEPA 2 -> robot policy: results",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from {len(runs)} run(s). "
        "Success = fingertip inside the target on each of the last 10 steps of an episode; intervals are 95% Wilson.",
        "",
        "## Phase 1 - conditions",
        "",
    ]
    if rows:
        md += ["| Condition | Success rate [95% CI] | Mean return | Episodes | Notes |", "|---|---|---|---|---|"]
        for r in rows:
            ret = "n/a" if r["mean_return"] is None else f"{float(r['mean_return']):.1f}"
            md.append(f"| {r['condition']} | {_pct(r['success_rate'], r['ci'])} | {ret} | {r['episodes']} | "
                      f"{r['notes']} |")
        md += ["", f"![success rates]({plot_success(rows, out_dir / SUCCESS_PNG).name})", ""]
    else:
        md += ["No finished evaluations yet.", ""]

    unevaluated = [r for r in runs if not any(e.get("success_rate") is not None for e in r.get("evaluations") or [])]
    if unevaluated:
        md += ["Runs without a finished evaluation: "
               + ", ".join(f"`{r.get('run_id')}` ({condition_name(r)}, {r.get('status')})" for r in unevaluated), ""]

    bc_runs = [r for r in runs if r.get("kind") == "bc" and bc_curves(r)[0]]
    if bc_runs:
        md += ["## Behaviour cloning", "",
               "| Condition | Run | Epochs | Final train MSE | Final val MSE | Train / val rows | Training time |",
               "|---|---|---|---|---|---|---|"]
        for r in bc_runs:
            m, (train, val) = r.get("metrics") or {}, bc_curves(r)
            last_val = next((v for v in reversed(val) if v is not None), None)
            md.append(f"| {condition_name(r)} | `{r.get('run_id')}` | {len(train)} | {_fmt(train[-1], '.2e')} | "
                      f"{_fmt(last_val, '.2e') if last_val is not None else 'n/a'} | {m.get('n_train', '?')} / "
                      f"{m.get('n_val', '?')} | {_fmt(m['train_s'], '.1f') + ' s' if m.get('train_s') is not None else 'n/a'} |")
        md += ["", f"![BC loss curves]({plot_bc_losses(bc_runs, out_dir / BC_LOSS_PNG).name})", ""]

    sac_runs = [r for r in runs if r.get("kind") == "sac" and (r.get("metrics") or {}).get("curve")]
    if sac_runs:
        md += ["## SAC learning curves", "",
               f"![SAC learning curves]({plot_sac_curves(sac_runs, out_dir / SAC_CURVES_PNG).name})", ""]

    if probes:
        md += ["## What the features encode (linear probe)", "",
               "Ridge regression from the features to the fingertip and target xy; alpha picked on validation "
               "episodes, R2 on held-out test episodes (services/trainer/probe.py). Note that fingertip xy is not "
               "linear in the 8-d state features (it needs cos/sin of q1+q2), so the state row is no upper bound.", ""]
        md += _probe_table(probes) + [""]

    gif_lines: list[str] = []
    for r in rows:
        for k, src in enumerate(_gif_paths(r["gif"])):
            if not src.is_file():
                gif_lines.append(f"- {r['condition']}: GIF `{src}` is missing")
                continue
            dst = out_dir / "gifs" / f"{r['run_id']}-{r['eval_id']}-{k}{src.suffix or '.gif'}"
            dst.parent.mkdir(exist_ok=True)
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
            gif_lines += [f"**{r['condition']}** (`{r['run_id']}`, evaluation {r['eval_id']})", "",
                          f"![rollout](gifs/{dst.name})", ""]
    if gif_lines:
        md += ["## Rollouts", ""] + gif_lines

    if extra_notes:
        md += ["## Notes", ""] + [f"- **{k}**: {v}" for k, v in extra_notes.items()] + [""]

    path = out_dir / "README.md"
    path.write_text("\n".join(md))
    return path


__all__ = ["write_report", "condition_name", "evaluation_rows", "plot_success", "plot_bc_losses", "plot_sac_curves"]
