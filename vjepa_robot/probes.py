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
        (d / f"{p['dataset']}__{p['features']}.json").write_text(json.dumps(p, indent=1))


def load_probes(runs_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(runs_dir) / "probes").glob("*.json"))]


def print_probes(results: list[dict], console=None) -> None:
    """One rich table of probe results (R2 on held-out episodes), for the CLI and the demo."""
    from rich.markup import escape
    from rich.table import Table

    from services.trainer.report import probe_rows

    table = Table("features", "target", "linear R2 (mean ± sd)", "ridge alpha", "MLP R2 (mean ± sd)", "folds",
                  title="Probes: R2 on held-out episodes")
    for r in probe_rows(results):
        table.add_row(*(escape(r[k]) for k in ("features", "target", "linear", "alpha", "mlp", "folds")))
    (console or Console(width=None if sys.stdout.isatty() else 240)).print(table)
