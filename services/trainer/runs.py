"""Run records: one directory per run holding `run.json` (written atomically) and its checkpoints.

    <runs_dir>/<run_id>/run.json         {"run_id", "kind", "status", "config", "metrics", "lineage", "study_id",
                                          "error", "evaluations": [...]}  (vjepa_robot_client.contract.RunRecord)
    <runs_dir>/studies/<study_id>.json   {"study_id", "kind", "config", "seeds", "run_ids", "eval_request", "created_at"}
    <runs_dir>/<run_id>/policy.safetensors, sac/...   checkpoints with their lineage in the safetensors metadata

A run is never left `running` by a crash: when a trainer starts, `RunStore.recover()` marks every run (and every
evaluation) that a dead trainer left `queued` or `running` as `interrupted`. `resume` continues from the last
checkpoint.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from services.common.store import now_iso
from vjepa_robot_client.contract import validate_run_id

RUNS_ENV = "VJEPA_ROBOT_RUNS"
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "interrupted")


def default_runs_dir(store_uri: str | None) -> Path:
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV])
    if store_uri and "://" not in store_uri:
        return Path(store_uri) / "runs"
    return Path("./vjepa-robot-runs")


class StudyNotFound(KeyError):
    def __init__(self, study_id: str):
        super().__init__(study_id)
        self.study_id = study_id

    def __str__(self) -> str:
        return f"unknown study {self.study_id!r}: list studies with GET /studies"


class RunNotFound(KeyError):
    def __init__(self, run_id: str):
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"unknown run {self.run_id!r}: list runs with GET /runs"


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps(data, indent=1, default=json_default))
    os.replace(tmp, path)


def json_default(o: Any):
    """json.dumps(default=...) for what training code records: numpy scalars/arrays, paths."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class RunStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._stops: dict[str, threading.Event] = {}

    # -- records -------------------------------------------------------------------------------------------------

    def path(self, run_id: str) -> Path:
        return self.root / validate_run_id(run_id)

    def create(self, kind: str, config: dict, run_id: str | None = None, lineage: dict | None = None,
               study_id: str | None = None) -> "RunHandle":
        run_id = validate_run_id(run_id or f"{kind}-{secrets.token_hex(4)}")
        d = self.path(run_id)
        d.mkdir(parents=True, exist_ok=False)
        ts = now_iso()
        record = {"run_id": run_id, "kind": kind, "status": "queued", "config": config, "metrics": {},
                  "lineage": lineage, "study_id": study_id, "error": None, "created_at": ts, "updated_at": ts,
                  "evaluations": []}
        _atomic_write_json(d / "run.json", record)
        return self.handle(run_id)

    def get(self, run_id: str) -> dict:
        p = self.path(run_id) / "run.json"
        if not p.exists():
            raise RunNotFound(run_id)
        return json.loads(p.read_text())

    def list(self) -> list[dict]:
        out = []
        for p in sorted(self.root.glob("*/run.json")):
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return sorted(out, key=lambda r: r.get("created_at", ""))

    def mutate(self, run_id: str, fn) -> dict:
        """Read-modify-write one record under the store's lock (one trainer process writes its runs)."""
        with self._lock:
            record = self.get(run_id)
            fn(record)
            record["updated_at"] = now_iso()
            _atomic_write_json(self.path(run_id) / "run.json", record)
            return record

    def handle(self, run_id: str) -> "RunHandle":
        self.get(run_id)
        return RunHandle(self, run_id)

    # -- studies (one run per seed) ------------------------------------------------------------------------------

    def _study_path(self, study_id: str) -> Path:
        return self.root / "studies" / f"{validate_run_id(study_id)}.json"

    def create_study(self, kind: str, config: dict, seeds: list[int], run_ids: list[str], study_id: str) -> dict:
        study = {"study_id": study_id, "kind": kind, "config": config, "seeds": seeds, "run_ids": run_ids,
                 "eval_request": None, "created_at": now_iso()}
        path = self._study_path(study_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(path, study)
        return study

    def get_study(self, study_id: str) -> dict:
        path = self._study_path(study_id)
        if not path.exists():
            raise StudyNotFound(study_id)
        return json.loads(path.read_text())

    def list_studies(self) -> list[dict]:
        out = []
        for p in sorted((self.root / "studies").glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return sorted(out, key=lambda r: r.get("created_at", ""))

    def update_study(self, study_id: str, **fields) -> dict:
        with self._lock:
            study = {**self.get_study(study_id), **fields}
            _atomic_write_json(self._study_path(study_id), study)
            return study

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Mark runs and evaluations a dead trainer left queued/running as interrupted. Returns the run ids."""
        fixed = []
        for record in self.list():
            stale_evals = [e for e in record.get("evaluations", []) if e.get("status") in ACTIVE]
            if record["status"] in ACTIVE or stale_evals:

                def fix(r):
                    if r["status"] in ACTIVE:
                        r["status"] = "interrupted"
                        r["error"] = "the trainer stopped while this run was active; POST /runs/{id}/resume continues it"
                    for e in r.get("evaluations", []):
                        if e.get("status") in ACTIVE:
                            e["status"] = "interrupted"
                            e["error"] = "the trainer stopped during this evaluation; POST /eval/{id} again"

                self.mutate(record["run_id"], fix)
                fixed.append(record["run_id"])
        return fixed

    def stop_event(self, run_id: str) -> threading.Event:
        with self._lock:
            return self._stops.setdefault(run_id, threading.Event())


class RunHandle:
    """What training code sees of its run: a directory for checkpoints, progress updates, a stop flag."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.dir = store.path(run_id)

    @property
    def record(self) -> dict:
        return self.store.get(self.run_id)

    def update(self, status: str | None = None, metrics: dict | None = None, error: str | None = None,
               lineage: dict | None = None) -> dict:
        def fn(r):
            if status is not None:
                r["status"] = status
            if metrics:
                r["metrics"].update(metrics)
            if lineage:
                r["lineage"] = {**(r.get("lineage") or {}), **lineage}
            if error is not None or status in ("succeeded", "running"):
                r["error"] = error

        return self.store.mutate(self.run_id, fn)

    def stop_requested(self) -> bool:
        return self.store.stop_event(self.run_id).is_set()

    # -- evaluations ---------------------------------------------------------------------------------------------

    def add_evaluation(self, request: dict) -> int:
        box = {}

        def fn(r):
            eid = len(r["evaluations"])
            r["evaluations"].append({"run_id": self.run_id, "eval_id": eid, "status": "queued", "request": request,
                                     "created_at": now_iso(), "episodes": []})
            box["eid"] = eid

        self.store.mutate(self.run_id, fn)
        return box["eid"]

    def update_evaluation(self, eval_id: int, **fields) -> None:
        self.store.mutate(self.run_id, lambda r: r["evaluations"][eval_id].update(fields))
