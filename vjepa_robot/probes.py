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
    """One rich table of probe results (R2 on held-out episodes), for the CLI and the demo."""
    from rich.markup import escape
    from rich.table import Table

    from vjepa_robot_lab.report import probe_rows

    table = Table(
        "features",
        "target",
        "linear R2 (mean ± sd)",
        "ridge alpha",
        "MLP R2 (mean ± sd)",
        "folds",
        title="Probes: R2 on held-out episodes",
    )
    for r in probe_rows(results):
        label = r["features"]
        table.add_row(*(escape(v) for v in (label, r["target"], r["linear"], r["alpha"], r["mlp"], r["folds"])))
    console = console or Console(width=None if sys.stdout.isatty() else 240)
    console.print(table)
    rows = attentive_rows(results)
    if rows:
        grid = Table(
            "features",
            "grid",
            "target",
            "attentive R2 (mean ± sd)",
            "folds",
            title="Attentive probe on the token grid: R2 on held-out episodes",
        )
        for r in rows:
            grid.add_row(*(escape(r[k]) for k in ("features", "grid", "target", "attentive", "folds")))
        console.print(grid)


def attentive_rows(results: list[dict]) -> list[dict]:
    """One row per (features, grid size, target) of the attentive probes (probe(..., grid_sizes=...))."""
    rows = []
    for p in results:
        for g, by_target in (p.get("attentive") or {}).items():
            for t, s in by_target.items():
                rows.append(
                    {
                        "features": str(p.get("features")),
                        "grid": f"{g}x{g}",
                        "target": t,
                        "attentive": f"{s['r2']:.3f} ± {s['r2_sd']:.3f}",
                        "folds": f"{p.get('folds')} x {p.get('n_episodes')} episodes",
                    }
                )
    return rows
