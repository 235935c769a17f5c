"""The report's stored inputs: run records and the report's notes (reading never creates anything)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vjepa_robot_client.contract import RunRecord
from vjepa_robot_lab.records.runs import migrate

NOTES_FILE = "report_notes.json"


def read_runs(runs_dir: Path | str) -> list[dict]:
    """Every stored run.json under runs_dir as written (plain JSON, for consoles and `--json` output), oldest
    first; [] (and nothing created) if the directory is missing. The report itself reads read_records."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.glob("*/run.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda r: str(r.get("created_at") or ""))


def read_records(runs_dir: Path | str) -> list[RunRecord]:
    """Every run under runs_dir as a typed record (runs.migrate reads every older shape), oldest first."""
    out = []
    for raw in read_runs(runs_dir):
        try:
            out.append(migrate(raw))
        except ValueError:  # not a run record at all
            continue
    return out


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


def note_value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {note_value(x)}" for k, x in v.items())
    return str(v)
