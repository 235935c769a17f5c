"""The report's text: its title, the console summary, and README.md with its tables, plots, probes and GIFs."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

from vjepa_robot_client.contract import FeatureSource
from vjepa_robot_lab.records.run_kinds import BC, SAC
from vjepa_robot_lab.report.inputs import note_value
from vjepa_robot_lab.report.plots import (
    BC_LOSS_PNG,
    SAC_CURVES_PNG,
    SUCCESS_PNG,
    plot_bc_losses,
    plot_sac_curves,
    plot_success,
)
from vjepa_robot_lab.report.rows import (
    PLUMBING,
    as_records,
    bc_row,
    condition_name,
    condition_rows,
    notes_cell,
    num,
    order_key,
    pct,
    per_seed_cell,
    probe_rows,
    sac_groups,
    sac_row,
    sci,
    seeds_cell,
    short_weights,
)


def weights_cell(weights: str | None) -> str:
    """The pinned weights in a table cell: shortened in code, the full pin in the run records (lineage.weights)."""
    short = short_weights(weights)
    return short if short == "-" else f"`{short}`"


def title(runs) -> str:
    vj = [r for r in as_records(runs) if r.lineage is not None and r.lineage.features == FeatureSource.vjepa2]
    if any(r.lineage.random_init is False for r in vj):
        return "V-JEPA 2 -> robot policy: results"
    if vj:
        return (
            "vjepa-robot pipeline check with a random-init stand-in encoder "
            "(plumbing check: no V-JEPA 2 result in this report)"
        )
    return "vjepa-robot results"


def summary_lines(runs) -> list[str]:
    """Plain-text lines for consoles: one per condition, rounded, random-init rows marked."""
    return [
        f"{g['condition']}: success {pct(g['success_rate'], g['ci'])} ({g['ci_kind']}), "
        f"return {num(g['mean_return'])}, {g['episodes']} episodes x {g['n_runs']} run(s)"
        for g in condition_rows(runs)
    ]


def probe_table(probes: list[dict]) -> list[str]:
    lines = [
        "| Features | Dataset | Target | Linear R2 (mean ± sd over folds) | Ridge alpha (median over folds) | "
        "MLP R2 (mean ± sd) | Folds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in probe_rows(probes):
        lines.append(
            f"| {r['features']} | {r['dataset']} | {r['target']} | {r['linear']} | {r['alpha']} | "
            f"{r['mlp']} | {r['folds']} |"
        )
    return lines


def _gif_paths(gif) -> list[Path]:
    return [Path(g) for g in gif or []]


def write_report(runs, probes: list[dict], out_dir: Path, extra_notes: dict | None = None) -> Path:
    """Write out_dir/README.md (+ success.png, bc_loss.png, sac_curves.png, gifs/) and return its path.
    `runs`: RunRecords or stored dicts (read_runs)."""
    runs = as_records(runs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = condition_rows(runs)
    md: list[str] = [
        f"# {title(runs)}",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from {len(runs)} run(s). "
        "Success = fingertip inside the target on each of the last 10 steps of an episode. A row with one seed "
        "gives the 95% Wilson interval over its episodes; a row with several seeds gives the mean over seeds with "
        "a 95% t-interval across seeds, and each seed's own Wilson interval beside it. Weights: the encoder's pinned "
        "weights (the hub commit, `sha256:` of a local checkpoint directory, or `random-init:`), shortened; the full "
        'pin is in each run record (lineage.weights); "-": not recorded (older runs) or no encoder.',
        "",
    ]
    if any(r.is_stand_in for r in runs):
        md += [
            f'> **Rows marked "{PLUMBING}" use a random-init V-JEPA 2 architecture (a preset with no trained '
            "weights).** They check that the pipeline runs end to end; they say nothing about what pretrained "
            "V-JEPA 2 features are worth. That needs the pretrained checkpoint (`--preset vitl`).",
            "",
        ]
    md += ["## Conditions (live evaluation)", ""]
    if groups:
        md += [
            "| Condition | Features / encoder | Weights | Readout | Seeds | Success [95% CI] | Per seed: success "
            "[Wilson 95%] | Mean return | Episodes per run | Notes |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for g in groups:
            enc = g["encoder"] + (f" **({PLUMBING})**" if g["plumbing"] else "")
            md.append(
                f"| {g['condition_short']} | {enc} | {weights_cell(g['weights'])} | {g['readout']} | {seeds_cell(g)} | "
                f"{pct(g['success_rate'], g['ci'])} ({g['ci_kind']}) | {per_seed_cell(g)} | "
                f"{num(g['mean_return'])} | {g['episodes']} | {notes_cell(g)} |"
            )
        md += ["", f"![success rates]({plot_success(groups, out_dir / SUCCESS_PNG).name})", ""]
        from vjepa_robot_lab.report.plots import BY_DISTANCE_PNG, plot_by_distance  # here: one hunk (issue 22)

        by_distance = plot_by_distance(groups, out_dir / BY_DISTANCE_PNG)  # reacher targets' distance
        if by_distance is not None:
            md += [f"![success and return by target distance]({by_distance.name})", ""]
    else:
        md += ["No finished evaluations yet.", ""]

    unevaluated = [r for r in runs if not any(e.success_rate is not None for e in r.evaluations)]
    if unevaluated:
        md += [
            "Runs without a finished evaluation: "
            + ", ".join(f"`{r.run_id}` ({condition_name(r)}, {r.status.value})" for r in unevaluated),
            "",
        ]

    bc_runs = sorted([r for r in runs if r.kind == BC.name and BC.has_curves(r)], key=order_key)
    if bc_runs:
        md += [
            "## Behaviour cloning",
            "",
            "BC keeps the weights of the epoch with the lowest validation MSE unless its config says "
            "`select: last`; each run's marker in the plot sits on the epoch it kept.",
            "",
            "| Condition | Run | Seed | Epochs | Kept epoch (rule) | Val MSE at kept epoch | Final train / val MSE | "
            "Train / val rows | Training time |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in bc_runs:
            b = bc_row(r)
            md.append(
                f"| {b['condition']} | `{b['run_id']}` | {b['seed'] if b['seed'] is not None else '-'} | "
                f"{b['epochs']} | {b['kept_epoch']} ({b['rule']}) | {sci(b['kept_val'])} | "
                f"{sci(b['last_train'])} / {sci(b['last_val'])} | {b['n_train'] or '?'} / {b['n_val'] or '?'} | "
                f"{num(b['train_s']) + ' s' if b['train_s'] is not None else 'n/a'} |"
            )
        md += ["", f"![BC loss curves]({plot_bc_losses(bc_runs, out_dir / BC_LOSS_PNG).name})", ""]

    sac_runs = [r for r in runs if r.kind == SAC.name and SAC.has_curves(r)]
    if sac_runs:
        md += [
            "## SAC",
            "",
            "Final evaluation = the deterministic policy on the run's final evaluation episodes at the end of "
            "training (the last point of each curve).",
            "",
            "| Condition | Seeds | Final return [95% CI] | Per seed | Final success | Env steps |",
            "|---|---|---|---|---|---|",
        ]
        for members in sac_groups(sac_runs):
            s = sac_row(members)
            per = "; ".join(f"s{seed}: {num(ret)}" for seed, ret in s["per_seed"])
            md.append(
                f"| {s['condition']} | {s['n']} | {num(s['mean'], 1, s['ci'])} | {per} | "
                f"{pct(s['success']) if s['success'] is not None else 'n/a'} | "
                f"{', '.join(f'{int(x):,}' for x in s['env_steps'])} |"
            )
        md += ["", f"![SAC learning curves]({plot_sac_curves(sac_runs, out_dir / SAC_CURVES_PNG).name})", ""]

    if probes:
        md += [
            "## What the features encode (probes)",
            "",
            "k-fold over episodes (each episode tested once by a fit that never saw it); R2 as mean ± sd across "
            'folds. Linear: ridge, alpha by inner cross-validation ("grid edge" = the choice hit the end of the '
            "1e-3..1e7 grid: for features that carry nothing, predicting the mean wins). MLP: a small MLP on the "
            "same folds. The state features hold `to_target` directly and the joint angles as cos/sin, so the "
            "fingertip is a non-linear function of them: the MLP row is their upper bound.",
            "",
        ]
        md += probe_table(probes) + [""]

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
                gif_lines += [
                    f"**{r['condition']}** (`{r['run_id']}`, seed {r['seed']}, evaluation {r['eval_id']}, episode {k})",
                    "",
                    f"![rollout](gifs/{dst.name})",
                    "",
                ]
    if gif_lines:
        md += [
            "## Rollouts",
            "",
            "Each GIF: the policy (left) beside the Jacobian expert (right) on the same "
            "evaluation seed, at real time; the caption gives step, return so far and success.",
            "",
        ] + gif_lines

    if extra_notes:
        md += ["## Notes", ""] + [f"- **{k}**: {note_value(v)}" for k, v in extra_notes.items()] + [""]

    path = out_dir / "README.md"
    path.write_text("\n".join(md))
    return path
