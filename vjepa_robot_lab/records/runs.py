"""Run records: one directory per run holding `run.json` (written atomically) and its checkpoints.

    <runs_dir>/<run_id>/run.json         {"run_id", "kind", "status", "config", "metrics", "lineage", "study_id",
                                          "error", "evaluations": [...]}  (vjepa_robot_client.contract.RunRecord)
    <runs_dir>/studies/<study_id>.json   {"study_id", "kind", "config", "seeds", "run_ids", "eval_request",
                                          "created_at"}
    <runs_dir>/<run_id>/policy.safetensors, sac/...   checkpoints with their lineage in the safetensors metadata

`RunStore.get`/`list` return typed records (contract.RunRecord: config and metrics as the models of the run's
kind, one RunLineage); `migrate` is THE one place where the shapes older trainers wrote are read.

A run is never left `running` by a crash: when a trainer starts, `RunStore.recover()` marks every run (and every
evaluation) that a dead process left `queued` or `running` as `interrupted` (each record names its `owner`: pid,
host, a token unique per process start; a live owner's work is never touched). `resume` continues from the last
checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.owner import HOST, OWNER, is_mine, owner_gone
from services.common.store import now_iso
from vjepa_robot_client.contract import (
    RUN_TYPES,
    DictReadable,
    EvalResult,
    FeatureSource,
    RunLineage,
    RunRecord,
    RunStatus,
    _Fields,
    validate_run_id,
)

log = logging.getLogger("vjepa_robot.trainer")

RUNS_ENV = "VJEPA_ROBOT_RUNS"
ACTIVE = (RunStatus.queued, RunStatus.running)
TERMINAL = (RunStatus.succeeded, RunStatus.failed, RunStatus.interrupted)


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
    if isinstance(o, BaseModel):
        return o.model_dump(mode="json", by_alias=True)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def plain(data: Any) -> Any:
    """What training code hands over (numpy scalars, paths, models) as plain JSON values."""
    return json.loads(json.dumps(data, default=json_default))


# ----------------------------------------------------------------------------------------------------------------
# Migration: every shape an older trainer wrote, read in one place
# ----------------------------------------------------------------------------------------------------------------

# Records written before lineage.random_init existed name their encoder only by its /info `model`. These are the
# encoder's random-init presets (services/encoder/model.py PRESETS: `tiny`, `vitl-random`); a record that carries
# random_init (every record this trainer writes) is never judged by its name.
_LEGACY_RANDOM_INIT_MODELS = ("preset:tiny", "preset:vitl-random")
# the feature source's lineage keys -> RunLineage fields
_FEATURE_KEYS = {
    "features": "features",
    "dim": "dim",
    "encoder_id": "encoder_id",
    "model": "encoder_model",
    "dtype": "encoder_dtype",
    "random_init": "random_init",
    "pooling": "pooling",
    "grid_size": "grid_size",
}


def lineage_from_features(feature_lineage: dict) -> dict:
    """RunLineage fields from a feature source's own lineage() ({"features", "dim", "encoder_id", "model",
    "image_size" (the encoder's input size), "dtype", "random_init", "pooling", "grid_size"})."""
    out = {field: feature_lineage[key] for key, field in _FEATURE_KEYS.items() if feature_lineage.get(key) is not None}
    size = feature_lineage.get("image_size", feature_lineage.get("crop_size"))
    if size is not None and out.get("features", "vjepa2") == "vjepa2":
        out["encoder_image_size"] = size
    return out


def migrate(raw: dict, frame_size: Callable[[str], int | None] | None = None) -> RunRecord:
    """A stored run.json (any trainer version) as a typed RunRecord. The one place legacy shapes are read:

    - the encoder's lineage was written under metrics.features_lineage (BC, SAC), metrics.lineage.features or
      config.features_lineage; it is merged into `lineage`, where it lives now;
    - records without `lineage` get it rebuilt from their config (and, for BC on frames, the dataset's frame
      size via `frame_size(dataset)`);
    - records without lineage.random_init get it from the encoder model name (see _LEGACY_RANDOM_INIT_MODELS);
    - evaluations without run_id / eval_id get them from their place in the record;
    - BC metrics with per-epoch lists under train_loss / val_loss get them as *_curve.
    """
    r = dict(raw)
    kind = r.get("kind")
    cfg = dict(r.get("config") or {})
    metrics = dict(r.get("metrics") or {})
    r.setdefault("status", RunStatus.failed.value)
    for key in ("train_loss", "val_loss"):  # early BC records kept the per-epoch lists under train_loss/val_loss
        if isinstance(metrics.get(key), list):
            curve = metrics.pop(key)
            metrics.setdefault(f"{key}_curve", curve)
            metrics[key] = next((v for v in reversed(curve) if v is not None), None)
    r["metrics"] = metrics
    r["evaluations"] = [
        {"run_id": r.get("run_id"), "eval_id": i, **(e or {})} for i, e in enumerate(r.get("evaluations") or [])
    ]
    config_fields = RUN_TYPES[kind][0].model_fields if kind in RUN_TYPES else None  # the kind's config model
    if config_fields is not None and "features" not in config_fields:  # an expert policy (baseline): no features
        r["lineage"] = None
        return RunRecord.model_validate(r)
    features = cfg.get("features")
    lineage = {k: v for k, v in (r.get("lineage") or {}).items() if v is not None}  # unset: legacy copies may say
    for legacy in (
        cfg.get("features_lineage"),
        (metrics.get("lineage") or {}).get("features"),
        metrics.get("features_lineage"),
    ):
        if isinstance(legacy, dict):
            lineage = {**lineage_from_features(legacy), **lineage}
    if features is None:
        features = lineage.get("features", FeatureSource.vjepa2.value)
    lineage.setdefault("features", features)
    frames = lineage["features"] in (FeatureSource.vjepa2.value, FeatureSource.pixels.value)
    if "image_size" not in lineage:  # a config that names its frame size (SAC renders its own), else its dataset's
        size = None
        if frames and config_fields is not None and "image_size" in config_fields:
            size = int(cfg.get("image_size", config_fields["image_size"].default))
        elif frames and cfg.get("dataset") and frame_size is not None:
            size = frame_size(cfg["dataset"])
        lineage["image_size"] = size
    if cfg.get("dataset") is not None:  # trained on a dataset (BC)
        lineage.setdefault("dataset", cfg["dataset"])
    lineage.setdefault("action_repeat", int(cfg.get("action_repeat", 1)))  # records before action repeat: 1
    lineage.setdefault("readout", cfg.get("readout") or "mean")
    if frames and lineage.get("random_init") is None and lineage.get("encoder_model"):
        lineage["random_init"] = lineage["encoder_model"] in _LEGACY_RANDOM_INIT_MODELS
    r["lineage"] = lineage
    return RunRecord.model_validate(r)


def dump_record(record: RunRecord) -> dict:
    return record.model_dump(mode="json", by_alias=True)


class StoredStudy(DictReadable, BaseModel):
    """<runs_dir>/studies/<study_id>.json: one run per seed (GET /studies/{id} aggregates them: StudyRecord)."""

    model_config = ConfigDict(extra="allow")

    study_id: str
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int]
    run_ids: list[str]
    eval_request: dict[str, Any] | None = None
    created_at: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------------------------


class RunStore:
    def __init__(self, root: Path | str, frame_size: Callable[[str], int | None] | None = None):
        """`frame_size(dataset)` gives a dataset's frame size, for migrating records that predate lineage."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.frame_size = frame_size
        self._lock = threading.RLock()
        self._stops: dict[str, threading.Event] = {}
        self._counted: dict[str, tuple[int, int, str, str]] = {}  # run.json -> (mtime_ns, size, kind, status)
        self._count_lock = threading.Lock()  # scrapes may overlap

    # -- records -------------------------------------------------------------------------------------------------

    def path(self, run_id: str) -> Path:
        return self.root / validate_run_id(run_id)

    def create(
        self,
        kind: str,
        config: dict | BaseModel,
        run_id: str | None = None,
        lineage: RunLineage | dict | None = None,
        study_id: str | None = None,
    ) -> RunHandle:
        run_id = validate_run_id(run_id or f"{kind}-{secrets.token_hex(4)}")
        d = self.path(run_id)
        d.mkdir(parents=True, exist_ok=False)
        ts = now_iso()
        record = RunRecord.model_validate(
            {
                "run_id": run_id,
                "kind": kind,
                "status": "queued",
                "config": plain(config),
                "metrics": {},
                "lineage": plain(lineage),
                "study_id": study_id,
                "error": None,
                "created_at": ts,
                "updated_at": ts,
                "evaluations": [],
                "owner": dict(OWNER),
            }
        )
        _atomic_write_json(d / "run.json", dump_record(record))
        return self.handle(run_id)

    def _read(self, p: Path) -> RunRecord:
        return migrate(json.loads(p.read_text()), self.frame_size)

    def get(self, run_id: str) -> RunRecord:
        p = self.path(run_id) / "run.json"
        if not p.exists():
            raise RunNotFound(run_id)
        return self._read(p)

    def list(self) -> list[RunRecord]:
        out = []
        for p in sorted(self.root.glob("*/run.json")):
            try:
                out.append(self._read(p))
            except (OSError, ValueError):  # half-written by another process, or not a run record
                continue
        return sorted(out, key=lambda r: r.created_at or "")

    def mutate(self, run_id: str, fn: Callable[[RunRecord], None]) -> RunRecord:
        """Read-modify-write one record under the store's lock (one trainer process writes its runs). `fn` may
        raise to refuse the change: then nothing is written (check-then-act inside the lock is atomic)."""
        with self._lock:
            record = self.get(run_id)
            fn(record)
            if record.status in ACTIVE or any(e.status in ACTIVE for e in record.evaluations):
                record.owner = dict(OWNER)  # the process doing the work: recover() leaves a live owner's work alone
            record.updated_at = now_iso()
            _atomic_write_json(self.path(run_id) / "run.json", dump_record(record))
            return record

    def handle(self, run_id: str) -> RunHandle:
        self.get(run_id)
        return RunHandle(self, run_id)

    def counts(self) -> dict[tuple[str, str], int]:
        """Runs by (kind, status), for the metrics scrape: a run.json is parsed again only when it changed (by
        mtime and size), so a scrape costs one stat per run rather than one JSON parse per run."""
        with self._count_lock:
            return self._counts()

    def _counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        seen = set()
        for key in _run_files(self.root):
            try:
                st = os.stat(key)
            except OSError:
                continue
            seen.add(key)
            hit = self._counted.get(key)
            if hit is None or hit[:2] != (st.st_mtime_ns, st.st_size):
                try:
                    raw = json.loads(Path(key).read_text())
                    hit = (st.st_mtime_ns, st.st_size, str(raw.get("kind", "?")), str(raw.get("status", "?")))
                except (OSError, ValueError):
                    continue
                self._counted[key] = hit
            counts[hit[2:]] = counts.get(hit[2:], 0) + 1
        for gone in set(self._counted) - seen:
            del self._counted[gone]
        return counts

    # -- studies (one run per seed) ------------------------------------------------------------------------------

    def _study_path(self, study_id: str) -> Path:
        return self.root / "studies" / f"{validate_run_id(study_id)}.json"

    def create_study(self, kind: str, config: dict, seeds: list[int], run_ids: list[str], study_id: str) -> StoredStudy:
        study = StoredStudy(
            study_id=study_id, kind=kind, config=plain(config), seeds=seeds, run_ids=run_ids, created_at=now_iso()
        )
        path = self._study_path(study_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(path, study.model_dump(mode="json"))
        return study

    def get_study(self, study_id: str) -> StoredStudy:
        path = self._study_path(study_id)
        if not path.exists():
            raise StudyNotFound(study_id)
        return StoredStudy.model_validate_json(path.read_text())

    def list_studies(self) -> list[StoredStudy]:
        out = []
        for p in sorted((self.root / "studies").glob("*.json")):
            try:
                out.append(StoredStudy.model_validate_json(p.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda s: s.created_at or "")

    def update_study(self, study_id: str, **fields) -> StoredStudy:
        with self._lock:
            study = StoredStudy.model_validate({**self.get_study(study_id).model_dump(), **plain(fields)})
            _atomic_write_json(self._study_path(study_id), study.model_dump(mode="json"))
            return study

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def recover(self, only_mine: bool = False) -> list[str]:
        """Mark runs and evaluations left queued/running by a process that is gone as interrupted; returns the run
        ids. A trainer runs this at start (holding the store's lease: services/common/lease.py), when its own
        earlier claims are stale too; work owned by another live process on this host (a CLI job) is left alone.
        only_mine: just this process's own (a trainer stopping, after its jobs were asked to end)."""
        fixed = []
        for record in self.list():
            if record.status in ACTIVE or any(e.status in ACTIVE for e in record.evaluations):
                owner = (record.model_extra or {}).get("owner")
                if only_mine and not is_mine(owner):
                    continue
                if owner and not is_mine(owner) and owner.get("host") == HOST and owner_gone(owner) is None:
                    continue  # another live process's work (the lease keeps out a second trainer)

                def fix(r: RunRecord):
                    if r.status in ACTIVE:
                        r.status = RunStatus.interrupted
                        r.error = "the trainer stopped while this run was active; POST /runs/{id}/resume continues it"
                    for i, e in enumerate(r.evaluations):
                        if e.status in ACTIVE:
                            r.evaluations[i] = _eval_with(
                                e,
                                status="interrupted",
                                error="the trainer stopped during this evaluation; POST /eval/{id} again",
                            )

                self.mutate(record.run_id, fix)
                fixed.append(record.run_id)
        return fixed

    def stop_event(self, run_id: str) -> threading.Event:
        with self._lock:
            return self._stops.setdefault(run_id, threading.Event())


def _run_files(root: Path) -> Iterator[str]:
    try:
        dirs = [d.path for d in os.scandir(root) if d.is_dir() and d.name != "studies"]
    except OSError:
        return
    for d in dirs:
        yield os.path.join(d, "run.json")


def _eval_with(ev: EvalResult, **fields) -> EvalResult:
    return EvalResult.model_validate({**ev.model_dump(mode="json", by_alias=True), **plain(fields)})


class RunHandle:
    """What training code sees of its run: a directory for checkpoints, progress updates, a stop flag."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.dir = store.path(run_id)

    @property
    def record(self) -> RunRecord:
        return self.store.get(self.run_id)

    def update(
        self,
        status: RunStatus | str | None = None,
        metrics: dict | None = None,
        error: str | None = None,
        lineage: RunLineage | dict | None = None,
    ) -> RunRecord:
        def fn(r: RunRecord):
            if status is not None:
                r.status = RunStatus(status)
            if metrics:
                merged = {**r.metrics.model_dump(mode="json"), **plain(metrics)}
                try:
                    r.metrics = type(r.metrics).model_validate(merged)
                except ValidationError as exc:  # keep the run going and its numbers recorded; say what did not fit
                    log.warning(
                        "run %s: metrics do not fit %s (%s); recorded untyped",
                        self.run_id,
                        type(r.metrics).__name__,
                        exc.errors()[:1],
                    )
                    r.metrics = _Fields.model_validate(merged)
            if lineage:
                r.lineage = RunLineage.model_validate(
                    {**(r.lineage.model_dump(mode="json") if r.lineage else {}), **plain(lineage)}
                )
            if error is not None or status in ("succeeded", "running"):
                r.error = error

        return self.store.mutate(self.run_id, fn)

    def stop_requested(self) -> bool:
        return self.store.stop_event(self.run_id).is_set()

    # -- evaluations ---------------------------------------------------------------------------------------------

    def add_evaluation(self, request: dict | BaseModel, from_run: list[str] | None = None) -> int:
        box = {}

        def fn(r: RunRecord):
            eid = len(r.evaluations)
            r.evaluations = [
                *r.evaluations,
                EvalResult.model_validate(
                    {
                        "run_id": self.run_id,
                        "eval_id": eid,
                        "status": "queued",
                        "request": plain(request),
                        "from_run": from_run or None,
                        "created_at": now_iso(),
                        "episodes": [],
                    }
                ),
            ]
            box["eid"] = eid

        self.store.mutate(self.run_id, fn)
        return box["eid"]

    def evaluation(self, eval_id: int) -> EvalResult:
        return self.record.evaluations[eval_id]

    def update_evaluation(self, eval_id: int, **fields) -> None:
        def fn(r: RunRecord):
            evals = list(r.evaluations)
            evals[eval_id] = _eval_with(evals[eval_id], **fields)
            r.evaluations = evals

        self.store.mutate(self.run_id, fn)
