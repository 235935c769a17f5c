"""Probe results on disk (<runs>/probes/*.json) and on the console: shared by the CLI and the demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console


def save_probes(runs_dir: Path, probes: list[dict]) -> None:
    d = Path(runs_dir) / "probes"
    d.mkdir(parents=True, exist_ok=True)
    for p in probes:
        readout = p.get("readout", "mean")
        suffix = "" if readout == "mean" else f"__{readout}"  # a mean probe keeps its old file name
        (d / f"{p['dataset']}__{p['features']}{suffix}.json").write_text(json.dumps(p, indent=1))


def load_probes(runs_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(runs_dir) / "probes").glob("*.json"))]


def print_probes(results: list[dict], console=None) -> None:
    """Probe results (R2 on held-out episodes) as rich tables, for the CLI and the demo: one small table per
    feature source, titled with its full label, so the tables fit 80 columns and no label is cut or folded."""
    from rich.markup import escape
    from rich.table import Table

    from vjepa_robot_lab.report import probe_rows

    console = console or Console(width=None if sys.stdout.isatty() else 240)
    rows = probe_rows(results)
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["features"], []).append(r)
    for label, group in by_source.items():
        table = Table(
            "target",
            "linear R2 (± sd)",
            "ridge alpha",
            "MLP R2 (± sd)",
        )
        for r in group:
            table.add_row(*(escape(v) for v in (r["target"], r["linear"], r["alpha"], r["mlp"])))
        # the label and the folds as lines of their own: they wrap at the console's width, between words
        console.print(f"[bold]Probes of {escape(label)}[/]: R2 on held-out episodes, {escape(group[0]['folds'])}")
        console.print(table)
    grid_rows = attentive_rows(results)
    if grid_rows:
        by_grid: dict[tuple[str, str], list[dict]] = {}
        for r in grid_rows:
            by_grid.setdefault((r["features"], r["grid"]), []).append(r)
        for (features, g), group in by_grid.items():
            table = Table(
                "target",
                "attentive R2 (± sd)",
            )
            for r in group:
                table.add_row(escape(r["target"]), escape(r["attentive"]))
            console.print(
                f"[bold]Attentive probe of {escape(features)}[/] on its {g} token grid: R2 on held-out "
                f"episodes, {escape(group[0]['folds'])}"
            )
            console.print(table)


def attentive_rows(results: list[dict]) -> list[dict]:
    """One row per (features, grid size, target) of the attentive probes (probe(..., grid_sizes=...))."""
    from vjepa_robot_lab.report.rows import probe_feature_label

    rows = []
    for p in results:
        for g, by_target in (p.get("attentive") or {}).items():
            for t, s in by_target.items():
                rows.append(
                    {
                        "features": probe_feature_label(p),
                        "grid": f"{g}x{g}",
                        "target": t,
                        "attentive": f"{s['r2']:.3f} ± {s['r2_sd']:.3f}",
                        "folds": f"{p.get('folds')} x {p.get('n_episodes')} episodes",
                    }
                )
    return rows
