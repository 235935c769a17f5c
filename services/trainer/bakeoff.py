"""The bake-off's door: encoders x readouts x tasks x seeds (and baseline feature sources) as BC studies, one
markdown table and one figure; the cells themselves run on an executor.

    record = start(ctx, runner, BakeoffRequest(encoders=[url_a], baselines=["state"], cell_workers=2))
    record = get(ctx, runner, record.bakeoff_id)         # BakeoffRecord: plan, cells, table, figure path
    record = resume(ctx, runner, record.bakeoff_id)      # only the cells not finished

A bake-off is a recorded plan of self-contained cells (vjepa_robot_lab/experiments/bakeoff.py: each names its
dataset by lineage, its features, its training and its evaluation; `<runs>/bakeoffs/<id>/plan.json`). One job
(`bakeoff:<id>` in the trainer's JobRunner) does, in order:
1. cost first: the plan's workload (frames to render, windows to encode, BC steps) and an estimate per executor
   from rates measured here, recorded in the record's `plan` and printed (`announce`) before anything runs;
2. per task, the demos, here (one writer per dataset): reused when the store holds them with the same lineage;
3. the cells on the chosen executor (experiments/executors.py): `local` (cell_workers at once), `slurm`
   (submitit) or `modal` (.map); each cell reports back one result, applied to the record here (its one writer).
A failed cell is recorded with its error and the bake-off goes on; a crash or stop leaves no cell `running`.
`resume` runs again only the cells that did not succeed; each continues from its own state (finished seeds and
evaluations kept).

Encoders: on the trainer's route a bake-off reaches only the encoders the trainer was configured with (its
--encoder-url plus VJEPA_ROBOT_ENCODER_URLS, comma-separated); any other URL is a 422 before any request is made,
no error echoes a remote body, and the token goes only to those URLs (issue 28 item 5).

Files: <runs_dir>/bakeoffs/<id>/bakeoff.json (the record), plan.json (the cell specs), cells/<cell>.json (each
cell's own state), bakeoff.md (the table), bakeoff.png (the figure).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from services.common.owner import OWNER
from services.trainer import jobs
from vjepa_robot_client.contract import (
    BakeoffCell,
    BakeoffRecord,
    BakeoffRequest,
    RunStatus,
    SeedInterval,
    validate_run_id,
)
from vjepa_robot_lab.evaluation.stats import iqm_interval
from vjepa_robot_lab.experiments import bakeoff as cells_lib
from vjepa_robot_lab.experiments.protocols import PUBLISHED_DMC_SCORES, cortexbench_score
from vjepa_robot_lab.records.runs import _atomic_write_json

log = logging.getLogger("vjepa_robot.trainer")

TABLE_MD, FIGURE_PNG, RECORD_JSON, PLAN_JSON = "bakeoff.md", "bakeoff.png", "bakeoff.json", "plan.json"
PROFILE_PNG = "performance_profile.png"
STAND_IN = "stand-in (random-init weights): plumbing check, not a result of the model"
DEFAULT_SEEDS = cells_lib.DEFAULT_SEEDS
ENCODER_URLS_ENV = "VJEPA_ROBOT_ENCODER_URLS"
GPU_BENCH_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"
_LOCK = threading.Lock()  # record writes (the job) and reads that repair a dead job's record (routes)

resolve = cells_lib.resolve  # every setting the cells run with (the library's; kept here for callers)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------------------------
# Which encoders a bake-off may reach (issue 28 item 5)
# ----------------------------------------------------------------------------------------------------------------


def normalise_url(url: str) -> str:
    """scheme://host:port/path of an encoder URL; ValueError for anything else (user info, query, fragment)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"encoder {url!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"encoder {url!r} is not an http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment or "#" in url or "?" in url:
        raise ValueError(f"encoder {url!r}: a service URL has no user info, query or fragment")
    port = port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}{parts.path.rstrip('/')}"


def configured_encoders(encoder_url: str | None, extra: str | None = None) -> set[str]:
    """The encoders a trainer may reach: its --encoder-url plus $VJEPA_ROBOT_ENCODER_URLS (comma-separated)."""
    raw = [encoder_url or ""] + (extra if extra is not None else os.environ.get(ENCODER_URLS_ENV, "")).split(",")
    out = set()
    for u in raw:
        if u.strip():
            try:
                out.add(normalise_url(u))
            except ValueError:
                log.warning("%s: ignoring %r (not a plain http(s) service URL)", ENCODER_URLS_ENV, u)
    return out


def check_allowed(urls: list[str], allowed: set[str] | None) -> None:
    """422 before any request when a URL is not one of the configured encoders (None: every URL, the CLI's own)."""
    if allowed is None:
        return
    bad = []
    for u in urls:
        try:
            if normalise_url(u) not in allowed:
                bad.append(u)
        except ValueError as exc:
            raise jobs.Refused(422, str(exc)) from None
    if bad:
        raise jobs.Refused(
            422,
            f"encoder(s) {', '.join(bad)} are not configured on this trainer: a bake-off reaches only its "
            f"--encoder-url and the URLs in {ENCODER_URLS_ENV} (comma-separated), set when the trainer starts",
        )


# ----------------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------------


def root(ctx: jobs.TrainerContext) -> Path:
    return Path(ctx.runs.root) / "bakeoffs"


def _dir(ctx, bakeoff_id: str) -> Path:
    return root(ctx) / bakeoff_id


def save(ctx, record: BakeoffRecord) -> None:
    record.updated_at = _now()
    if record.status in (RunStatus.queued, RunStatus.running):  # who runs it: a restarted trainer spares a live one
        record.owner = dict(OWNER)
    path = _dir(ctx, record.bakeoff_id)
    path.mkdir(parents=True, exist_ok=True)
    with _LOCK:
        _atomic_write_json(path / RECORD_JSON, record.model_dump(mode="json"))


def load(ctx, bakeoff_id: str) -> BakeoffRecord:
    try:
        validate_run_id(bakeoff_id)
    except ValueError as exc:
        raise jobs.Refused(400, str(exc).replace("run id", "bake-off id")) from None
    path = _dir(ctx, bakeoff_id) / RECORD_JSON
    if not path.is_file():
        raise jobs.Refused(404, f"no bake-off {bakeoff_id!r}: GET /bakeoff lists them")
    return BakeoffRecord.model_validate_json(path.read_text())


def load_specs(ctx, bakeoff_id: str) -> list[dict]:
    path = _dir(ctx, bakeoff_id) / PLAN_JSON
    if not path.is_file():
        raise jobs.Refused(409, f"bake-off {bakeoff_id} has no recorded plan (made before plans were recorded)")
    return json.loads(path.read_text())["cells"]


def _save_specs(ctx, bakeoff_id: str, specs: list[dict]) -> None:
    _atomic_write_json(_dir(ctx, bakeoff_id) / PLAN_JSON, {"bakeoff_id": bakeoff_id, "cells": specs})


def get(ctx, runner, bakeoff_id: str) -> BakeoffRecord:
    """The record; one a dead trainer left queued/running is marked interrupted (its job is not active here)."""
    from services.common.owner import owned_by_live_process

    record = load(ctx, bakeoff_id)
    active = record.status in (RunStatus.queued, RunStatus.running)
    if active and f"bakeoff:{bakeoff_id}" not in runner.active() and not owned_by_live_process(record):
        _end_unfinished(record, "interrupted", "the trainer stopped during this bake-off: resume it")
        save(ctx, record)
    return record


def list_all(ctx, runner) -> list[BakeoffRecord]:
    base = root(ctx)
    ids = sorted(p.name for p in base.iterdir() if (p / RECORD_JSON).is_file()) if base.is_dir() else []
    return [get(ctx, runner, i) for i in ids]


def _end_unfinished(record: BakeoffRecord, status: str, error: str) -> None:
    for cell in record.cells:
        if cell.status in (RunStatus.queued, RunStatus.running):
            cell.status, cell.error = RunStatus(status), cell.error or error
    record.status, record.error = RunStatus(status), record.error or error


# ----------------------------------------------------------------------------------------------------------------
# Starting, the plan and its cost
# ----------------------------------------------------------------------------------------------------------------


def _encoder_infos(ctx, urls: list[str]) -> list:
    """Each encoder's GET /info, before anything is recorded: 422 naming an encoder that does not answer (its
    status code at most: never the remote body), or two URLs serving the same encoder."""
    from vjepa_robot_client import EncoderClient

    infos = []
    for url in urls:
        try:
            with EncoderClient(url, token=ctx.token, retries=1, timeout=30) as client:  # refuse fast
                infos.append(client.info())
        except Exception as exc:
            code = getattr(exc, "status_code", None)
            raise jobs.Refused(
                422,
                f"encoder {url} did not answer GET /info ({type(exc).__name__}"
                + (f", HTTP {code}" if code else "")
                + "): start it first",
            ) from None
    seen: dict[str, str] = {}
    for url, info in zip(urls, infos):
        if info.encoder_id in seen:
            raise jobs.Refused(422, f"encoders {seen[info.encoder_id]} and {url} serve the same encoder {info.model}")
        seen[info.encoder_id] = url
    return infos


def _encoder_rate(ctx, url: str, image_size: int) -> float:
    """Windows/s of one POST /encode of 2 windows at `image_size` (cold: an upper bound on the time)."""
    import time

    import numpy as np

    from vjepa_robot_client import EncoderClient

    frames = np.zeros((2, 8, image_size, image_size, 3), np.uint8)
    with EncoderClient(url, token=ctx.token, retries=1, timeout=120) as client:
        t0 = time.perf_counter()
        client.encode(frames)
        return 2 / (time.perf_counter() - t0)


_RATES: dict[int, tuple[float, dict]] = {}  # frame size -> (when, rates): measured at most every RATES_TTL_S
RATES_TTL_S = 600.0


def _machine_rates(image_size: int) -> dict:
    """This machine's rendering and BC rates at this frame size, measured (about a second) at most every 10 min;
    a measurement that fails is recorded as such and the plan goes on without it."""
    import time

    hit = _RATES.get(image_size)
    if hit and time.monotonic() - hit[0] < RATES_TTL_S:
        return hit[1]
    try:
        rates = cells_lib.measure_rates(image_size=image_size, frames=20 if image_size <= 128 else 5)
    except Exception as exc:
        log.warning("cost plan: could not measure this machine's rates (%s)", exc)
        return {"render_fps": None, "bc_steps_per_s": None, "cpus": os.cpu_count(), "host": socket.gethostname(),
                "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
    _RATES[image_size] = (time.monotonic(), rates)
    return rates


def cost_plan(ctx, specs: list[dict], settings: dict, measure_encoders: bool = True) -> dict:
    """The plan's workload and an estimate per executor from rates measured now on this machine (and the last
    GPU benchmark, bench/results/gpu_bench*.json, for a GPU)."""
    ready, encoded = set(), set()
    for spec in specs:
        name = spec["dataset"]["name"]
        try:
            meta = ctx.store.get_dataset_meta(name)
        except Exception:
            continue
        if meta.get("status") == "ready" and cells_lib.lineage_matches(meta, spec["dataset"]):
            ready.add(name)
            if spec.get("encoder_id"):
                try:
                    if ctx.store.embedding_progress(name, spec["encoder_id"]).complete:
                        encoded.add((name, spec["encoder_id"]))
                except Exception:
                    pass
    work = cells_lib.workload(specs, ready, encoded)
    rates = _machine_rates(int(settings["dataset"]["image_size"]) or 64)
    enc_rates: dict[str, float] = {}
    if measure_encoders:
        for spec in specs:
            eid = spec.get("encoder_id")
            if eid and eid not in enc_rates:
                try:
                    enc_rates[eid] = round(
                        _encoder_rate(ctx, spec["encoder_url"], settings["dataset"]["image_size"]), 2
                    )
                except Exception as exc:
                    log.warning("cost plan: could not time encoder %s (%s)", spec["encoder_url"], type(exc).__name__)
    gpu = cells_lib.last_gpu_benchmark(sorted(GPU_BENCH_DIR.glob("gpu_bench*.json")))
    workers = max(1, int(settings.get("cell_workers") or 1))
    factor, n = cells_lib.calibration(_history(ctx, rates.get("host")))
    est = cells_lib.estimate(work, rates, enc_rates, specs, gpu, cell_workers=workers, factor=factor, factor_n=n)
    return {"workload": work, "estimate": est, "summary": cells_lib.plan_summary(work, est)}


def _history(ctx, host: str | None, last: int = 20) -> list[tuple[float, float]]:
    """(modelled, observed) seconds of the succeeded cells of this host's last bake-offs (their plans kept the
    modelled time per cell; each cell its measured timings)."""
    out: list[tuple[float, float]] = []
    base = root(ctx)
    paths = sorted(base.glob(f"*/{RECORD_JSON}"), key=lambda p: p.stat().st_mtime)[-last:] if base.is_dir() else []
    for path in paths:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        est = (rec.get("plan") or {}).get("estimate") or {}
        if (est.get("rates") or {}).get("host") != host:
            continue
        modelled = est.get("per_cell_s") or {}
        for c in rec.get("cells", []):
            observed = sum((c.get("timings") or {}).values())
            if c.get("status") == "succeeded" and c.get("key") in modelled and observed > 0:
                out.append((float(modelled[c["key"]]), float(observed)))
    return out


def _cell_of(spec: dict, info=None) -> BakeoffCell:
    return BakeoffCell(
        key=spec["key"],
        features=spec["features"],
        encoder_url=spec.get("encoder_url"),
        encoder_id=info.encoder_id if info else None,
        model=info.model if info else None,
        family=info.family if info else None,
        family_label=getattr(info, "family_label", None) if info else None,
        weights=info.weights if info else None,
        random_init=info.random_init if info else None,
        stand_in=bool(info.random_init) if info else False,
        task=spec["task"],
        readout=spec["readout"],
        dataset=spec["dataset"]["name"],
    )


class _Stop(threading.Event):
    """The bake-off's stop event: the trainer's shutdown sets it; the executor stops its cells."""


def _check_executor(req_executor: str) -> None:
    from vjepa_robot_lab.experiments.executors import check_executor

    try:
        check_executor(req_executor)
    except ValueError as exc:
        raise jobs.Refused(422, str(exc)) from None


def start(
    ctx,
    runner,
    req: BakeoffRequest,
    progress: bool = False,
    announce: Callable[[str], None] | None = None,
    allowed: set[str] | None = None,
) -> BakeoffRecord:
    """Validate (422 naming the problem), plan the cells and their cost, record the bake-off `queued` (the plan
    printed through `announce` first), and submit its job. With jobs.InlineRunner (the CLI) the whole bake-off
    runs before this returns. `allowed`: the encoder URLs this caller may reach (None: any, the CLI's own)."""
    check_allowed(req.encoders, allowed)  # before any request is made
    try:
        settings = resolve(req)
    except ValueError as exc:
        raise jobs.Refused(422, str(exc)) from None
    _check_executor(req.executor)
    settings["cell_workers"] = req.cell_workers
    for task in settings["tasks"]:  # every expert can demonstrate its task, before anything is recorded
        try:
            dataset_spec(ctx, settings, task)
        except ValueError as exc:
            raise jobs.Refused(getattr(exc, "status", 422), f"task {task}: {exc}") from None
    infos = _encoder_infos(ctx, req.encoders)
    bakeoff_id = f"bakeoff-{secrets.token_hex(4)}"
    encoders = [{"url": u, "encoder_id": i.encoder_id, "model": i.model} for u, i in zip(req.encoders, infos)]
    specs = cells_lib.plan_cells(
        bakeoff_id,
        settings,
        encoders,
        settings["baselines"],
        store=ctx.store.uri,
        runs=str(ctx.runs.root),
    )
    by_id = {i.encoder_id: i for i in infos}
    plan = cost_plan(ctx, specs, settings)
    record = BakeoffRecord(
        bakeoff_id=bakeoff_id,
        status=RunStatus.queued,
        protocol=settings["protocol"],
        settings=settings,
        request=req.model_dump(mode="json"),
        datasets={t: cells_lib.dataset_fields(settings, t)["name"] for t in settings["tasks"]},
        cells=[_cell_of(s, by_id.get(s.get("encoder_id"))) for s in specs],
        executor=req.executor,
        cell_workers=req.cell_workers,
        plan=plan,
        created_at=_now(),
    )
    record.owner = dict(OWNER)  # who runs it: a restarted trainer spares a live one
    _dir(ctx, bakeoff_id).mkdir(parents=True, exist_ok=True)
    _save_specs(ctx, bakeoff_id, specs)
    save(ctx, record)
    log.info("bake-off %s %s", bakeoff_id, plan["summary"])
    if announce:
        announce(f"bake-off {bakeoff_id} ({req.executor}, cell_workers {req.cell_workers})\n{plan['summary']}")
    _submit(ctx, runner, record, progress, announce)
    return load(ctx, bakeoff_id)


def _submit(ctx, runner, record: BakeoffRecord, progress: bool, announce) -> None:
    stop = _Stop()

    def on_error(exc: BaseException) -> None:
        status = "interrupted" if isinstance(exc, jobs.STOPPED) else "failed"
        _end_unfinished(record, status, f"{type(exc).__name__}: {exc}")
        save(ctx, record)
        write_outputs(ctx, record)

    runner.submit(
        f"bakeoff:{record.bakeoff_id}", lambda: run(ctx, record, stop, progress, announce), on_error, stop=stop
    )


def resume(
    ctx,
    runner,
    bakeoff_id: str,
    announce: Callable[[str], None] | None = None,
    allowed: set[str] | None = None,
    urls: list[str] | None = None,
) -> BakeoffRecord:
    """Run again only the cells that did not succeed (each continues from its own state); succeeded cells are
    kept. Encoders are found again by their encoder id among `urls` (the CLI's fresh local encoders) or the
    recorded URLs; 409 while the bake-off runs or when every cell succeeded, 422 when an encoder is gone."""
    record = get(ctx, runner, bakeoff_id)
    if record.status in (RunStatus.queued, RunStatus.running):
        raise jobs.Refused(409, f"bake-off {bakeoff_id} is {record.status.value}: wait for it, or stop its trainer")
    todo = [c for c in record.cells if c.status != RunStatus.succeeded]
    if not todo:
        raise jobs.Refused(409, f"bake-off {bakeoff_id} has every cell succeeded: nothing to resume")
    specs = load_specs(ctx, bakeoff_id)
    wanted = sorted({c.encoder_id for c in todo if c.encoder_id})
    candidates = list(urls) if urls else list(dict.fromkeys(c.encoder_url for c in todo if c.encoder_url))
    check_allowed(candidates, allowed)
    where: dict[str, str] = {}
    if wanted:
        from vjepa_robot_client import EncoderClient

        for u in candidates:
            try:
                with EncoderClient(u, token=ctx.token, retries=1, timeout=30) as client:
                    where.setdefault(client.info().encoder_id, u)
            except Exception:
                continue
        gone = [e for e in wanted if e not in where]
        if gone:
            models = {c.encoder_id: c.model for c in todo}
            raise jobs.Refused(
                422,
                "resume needs the same encoders: "
                + ", ".join(f"{models.get(e)} ({e})" for e in gone)
                + " answer at none of "
                + ", ".join(candidates or ["(no URL)"])
                + ": start them again (CLI: the same --model/--encoder)",
            )
    _check_executor(record.executor)
    keys = {c.key for c in todo}
    for spec in specs:
        if spec["key"] in keys and spec.get("encoder_id"):
            spec["encoder_url"] = where[spec["encoder_id"]]
    for c in todo:
        c.status, c.error = RunStatus.queued, None
        if c.encoder_id:
            c.encoder_url = where[c.encoder_id]
    record.status, record.error = RunStatus.queued, None
    record.resumes += 1
    record.owner = dict(OWNER)  # who runs it: a restarted trainer spares a live one
    settings = {**record.settings, "cell_workers": record.cell_workers}
    plan = cost_plan(ctx, [s for s in specs if s["key"] in keys], settings)
    record.plan = {**plan, "resumed_cells": sorted(keys)}
    _save_specs(ctx, bakeoff_id, specs)
    save(ctx, record)
    if announce:
        announce(f"bake-off {bakeoff_id}: resuming {len(todo)} of {len(record.cells)} cells\n{plan['summary']}")
    _submit(ctx, runner, record, False, announce)
    return load(ctx, bakeoff_id)


def dataset_spec(ctx, settings: dict, task: str):
    """The task's demos as (DatasetSpec, run expert source or None), its expert resolved; ValueError /
    ExpertRefused when the expert cannot demonstrate the task."""
    from vjepa_robot_lab.data.datasets import DatasetSpec, resolve_expert

    return resolve_expert(DatasetSpec(**cells_lib.dataset_fields(settings, task)), ctx.runs)


def _apply(cell: BakeoffCell, result: dict) -> None:
    cell.status = RunStatus(result.get("status") or "failed")
    cell.error = result.get("error")
    for key in ("study_id", "dataset_reused", "host"):
        if result.get(key) is not None:
            setattr(cell, key, result[key])
    cell.run_ids = list(result.get("run_ids") or cell.run_ids)
    cell.attempts = int(result.get("attempts") or cell.attempts)
    cell.timings = dict(result.get("timings") or {})
    cell.score = SeedInterval.model_validate(result["score"]) if result.get("score") else None
    cell.success = SeedInterval.model_validate(result["success"]) if result.get("success") else None


def run(
    ctx,
    record: BakeoffRecord,
    stop: threading.Event,
    progress: bool = False,
    announce: Callable[[str], None] | None = None,
) -> BakeoffRecord:
    """The bake-off's job: the demos (here, one writer per dataset), then the unfinished cells on the executor;
    the table and figure at the end (and on failure)."""
    from vjepa_robot_lab.experiments.executors import make_executor

    record.status = RunStatus.running
    save(ctx, record)
    specs = {s["key"]: s for s in load_specs(ctx, record.bakeoff_id)}
    todo = [c for c in record.cells if c.status != RunStatus.succeeded]
    workers = int(record.settings.get("dataset", {}).get("workers") or 1)
    for task in dict.fromkeys(c.task for c in todo):
        cells = [c for c in todo if c.task == task]
        fields = specs[cells[0].key]["dataset"]
        try:
            meta = cells_lib.ensure_dataset(ctx.store, ctx.runs, fields, workers, stop)
        except Exception as exc:
            if stop.is_set():
                raise jobs.JobStopped("the trainer was stopped during this bake-off") from None
            log.error("bake-off %s: dataset of task %s failed: %s", record.bakeoff_id, task, exc)
            for c in cells:
                c.status, c.error = RunStatus.failed, f"dataset {fields['name']}: {type(exc).__name__}: {exc}"
            save(ctx, record)
            continue
        record.demo_returns[task] = meta.get("mean_return")
        save(ctx, record)
        if announce:
            how = "reused from the store" if meta.get("reused") else "made"
            announce(
                f"dataset {fields['name']} {how} ({task}, expert {fields['expert']}, "
                f"demo return {_fmt(meta.get('mean_return'))})"
            )
    runnable = [c for c in todo if c.status != RunStatus.failed or not (c.error or "").startswith("dataset ")]
    for c in runnable:
        c.status, c.error = RunStatus.running, None
    save(ctx, record)
    executor = make_executor(
        record.executor,
        cell_workers=record.cell_workers,
        folder=_dir(ctx, record.bakeoff_id) / "submitit",
        token=ctx.token,
    )
    by_key = {c.key: c for c in record.cells}
    for spec, result in executor.run([specs[c.key] for c in runnable], stop=stop):
        cell = by_key[spec["key"]]
        _apply(cell, result)
        save(ctx, record)
        if announce:
            done = sum(c.status not in (RunStatus.queued, RunStatus.running) for c in record.cells)
            announce(
                f"cell {done}/{len(record.cells)} {cell.key}: {cell.task} {encoder_label(cell)} {cell.readout}: "
                f"{cell.status.value}, return {_interval(cell.score)}" + (f" ({cell.error})" if cell.error else "")
            )
    if stop.is_set():
        raise jobs.JobStopped("the trainer was stopped during this bake-off")
    for c in record.cells:  # a cell the executor lost (a Modal call that raised) is not left running
        if c.status in (RunStatus.queued, RunStatus.running):
            c.status, c.error = RunStatus.failed, "the executor returned no result for this cell: resume reruns it"
    bad = [c for c in record.cells if c.status != RunStatus.succeeded]
    record.status = RunStatus.failed if bad else RunStatus.succeeded
    record.error = f"{len(bad)} of {len(record.cells)} cell(s) did not succeed (see each cell's error)" if bad else None
    write_outputs(ctx, record)
    save(ctx, record)
    return record


# ----------------------------------------------------------------------------------------------------------------
# The table and the figure
# ----------------------------------------------------------------------------------------------------------------


def write_outputs(ctx, record: BakeoffRecord, out_dir: Path | None = None) -> None:
    """bakeoff.md and bakeoff.png beside the record (and in out_dir too, when given)."""
    for d in [_dir(ctx, record.bakeoff_id)] + ([Path(out_dir)] if out_dir else []):
        d.mkdir(parents=True, exist_ok=True)
        record.table = table_markdown(record)
        (d / TABLE_MD).write_text(record.table + "\n")
        figure(record, d / FIGURE_PNG)
        profile_figure(record, d / PROFILE_PNG)
        if d == _dir(ctx, record.bakeoff_id):
            record.table_path, record.figure_path = str(d / TABLE_MD), str(d / FIGURE_PNG)


def _fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def _interval(iv, digits: int = 1, pct: bool = False) -> str:
    if iv is None or iv.mean is None:
        return "n/a"
    k = 100.0 if pct else 1.0
    s = f"{_fmt(k * iv.mean, digits)}{'%' if pct else ''}"
    if iv.ci95:
        lo, hi = (max(0.0, iv.ci95[0]), min(1.0, iv.ci95[1])) if pct else iv.ci95  # a rate stays in [0, 1]
        s += f" [{_fmt(k * lo, digits)}, {_fmt(k * hi, digits)}]"
    return s + f" (n={iv.n})"


def encoder_label(cell: BakeoffCell) -> str:
    if cell.features != "vjepa2":
        return f"`{cell.features}` features (baseline)"
    model = cell.model or cell.encoder_url or "?"
    return f"`{model.removeprefix('preset:')}`" + (" preset" if model.startswith("preset:") else "")


def all_stand_ins(record: BakeoffRecord) -> bool:
    return bool(record.cells) and all(c.stand_in for c in record.cells)


def table_markdown(record: BakeoffRecord) -> str:
    """One row per (task, encoder, readout): its exact weights, stand-in mark, seeds, score across seeds."""
    s = record.settings
    title = f"# Bake-off `{record.bakeoff_id}`"
    if all_stand_ins(record):
        title += f": every encoder is a {STAND_IN}"
    d, bc, ev = s.get("dataset", {}), s.get("bc", {}), s.get("eval", {})
    steps = s.get("steps") or {}
    steps_text = "/".join(sorted({str(v) for v in steps.values()})) if isinstance(steps, dict) else str(steps)
    lines = [
        title,
        "",
        f"Protocol: {s.get('protocol') or 'none (this tool defaults)'}. Demos per task: {d.get('episodes')} x "
        f"{steps_text} steps at {d.get('image_size')} px (experts: "
        + ", ".join(f"{t} {e}" for t, e in (s.get("experts") or {}).items())
        + f"). BC: {bc.get('head', 'findings')} head, {bc.get('epochs', 100)} epochs"
        + (f" (the pixels row: {s['pixels_epochs']})" if s.get("pixels_epochs") else "")
        + f", batch {bc.get('batch_size', 256)}"
        f", lr schedule {bc.get('lr_schedule', 'cosine')}, kept epoch {bc.get('select', 'best_val')}. Evaluation: "
        f"{ev.get('episodes')} episodes of the demos' length, the same episodes for every seed (eval seed "
        f"{ev.get('seed')}). Seeds: {', '.join(map(str, s.get('seeds', [])))}. Score: {s.get('score')}; per seed: "
        "that seed's mean return.",
        "",
    ]
    if record.demo_returns:
        lines += [
            "Reference, the demonstrator's own mean return over its demos: "
            + ", ".join(f"{t} {_fmt(v)}" for t, v in record.demo_returns.items())
            + ".",
            "",
        ]
    if s.get("tasks_not_here"):
        lines += [f"Tasks of the protocol this trainer does not have: {', '.join(s['tasks_not_here'])}.", ""]
    if any(c.stand_in for c in record.cells):
        lines += [f"> Rows marked **stand-in** use random-init weights: a {STAND_IN.split(': ', 1)[1]}.", ""]
    lines += [
        "| Task | Encoder | Family | Weights | Readout | Seeds | Return [95% CI] | CortexBench score | IQM [95% CI] "
        "| Per seed | Success [95% CI] | Study | Status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in record.cells:
        enc = encoder_label(c) + (" **stand-in (random-init)**" if c.stand_in else "")
        per = "; ".join(_fmt(v) for v in c.score.values) if c.score and c.score.values else "-"
        status = c.status.value + (f": {c.error}" if c.error else "")
        family = c.family_label or c.family or "-"  # the encoder's display name for its family (older cells: the id)
        lines.append(
            f"| {c.task} | {enc} | {family} | `{c.weights or '-'}` | {c.readout} | {len(s.get('seeds', []))} "
            f"| {_interval(c.score)} | {_fmt(cortexbench_score(c.score.mean) if c.score else None)} | {_iqm(c)} "
            f"| {per} | {_interval(c.success, 0, pct=True) if c.success else '-'} | "
            f"{'`' + c.study_id + '`' if c.study_id else '-'} | {status.replace('|', '/')} |"
        )
    return "\n".join(lines + _aggregate_lines(record))


def _iqm(cell) -> str:
    """The interquartile mean of a cell's per-seed returns, with its bootstrap interval over the seeds."""
    values = cell.score.values if cell.score else []
    if not values:
        return "n/a"
    point, lo, hi = iqm_interval([values])
    return _fmt(point) + (f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None else "")


def _aggregate_lines(record: BakeoffRecord) -> list[str]:
    """Across tasks, per (encoder, readout): CortexBench's score (the mean over tasks of return / 10) and the IQM of
    every (task, seed) score with a bootstrap interval stratified by task, beside the published DMC scores."""
    groups: dict[tuple[str, str], list] = {}
    for c in record.cells:
        if c.score and c.score.values:
            groups.setdefault((encoder_label(c) + (" (stand-in)" if c.stand_in else ""), c.readout), []).append(c)
    if not groups:
        return []
    lines = [
        "",
        "Across tasks (CortexBench's DMC score: return / 10, the mean over tasks; IQM over every task x seed score, "
        "95% bootstrap interval with seeds resampled within each task; Agarwal et al. 2021):",
        "",
    ]
    for (enc, readout), cells in groups.items():
        per_task = [[cortexbench_score(v) for v in c.score.values] for c in cells]
        score = sum(sum(t) / len(t) for t in per_task) / len(per_task)
        point, lo, hi = iqm_interval(per_task)
        ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None else ""
        lines.append(f"- {enc}, {readout}: {len(cells)} tasks, CortexBench score {_fmt(score)}, IQM {_fmt(point)}{ci}")
    lines += ["", "Published DMC scores on CortexBench's five tasks, for reading a row of the same encoder against:"]
    lines += [f"- {name}: {v} +- {pm} ({src})" for name, v, pm, src in PUBLISHED_DMC_SCORES]
    return lines


def profile_figure(record: BakeoffRecord, path: Path) -> Path | None:
    """Performance profiles (Agarwal et al. 2021): per (encoder, readout), the fraction of its (task, seed) runs
    whose CortexBench score (return / 10) exceeds each threshold tau; a curve above another is better everywhere.
    None when no cell has scores yet."""
    from vjepa_robot_lab.evaluation.stats import performance_profile
    from vjepa_robot_lab.report.plots import _pyplot, _save

    groups: dict[str, list[float]] = {}
    for c in record.cells:
        if c.score and c.score.values:
            name = f"{encoder_label(c).replace('`', '')}{' (stand-in)' if c.stand_in else ''} / {c.readout}"
            groups.setdefault(name, []).extend(cortexbench_score(v) for v in c.score.values)
    if not groups:
        return None
    plt = _pyplot()
    taus = [i / 2 for i in range(0, 201)]  # 0 .. 100 in steps of 0.5
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    markers = "osD^v<>ph*"
    for i, (name, scores) in enumerate(groups.items()):
        ax.step(taus, performance_profile(scores, taus), where="post", label=f"{name} (n={len(scores)})",
                marker=markers[i % len(markers)], markevery=20 + 3 * i)  # fmt: skip
    ax.set_xlabel("CortexBench score threshold tau (return / 10)")
    ax.set_ylabel("fraction of runs (task x seed) > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Performance profile, bake-off {record.bakeoff_id}", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)  # outside the data
    return _save(fig, path)


def figure(record: BakeoffRecord, path: Path) -> Path:
    """One panel per task: each (encoder, readout) its mean return across seeds with the 95% t-interval and the
    per-seed points; stand-ins drawn hollow and named in their tick label."""
    from vjepa_robot_lab.report.plots import _pyplot, _save

    plt = _pyplot()
    tasks = list(dict.fromkeys(c.task for c in record.cells)) or ["-"]
    per_task = max(1, len(record.cells) // len(tasks))
    width = min(24.0, max(5.0, 1.2 * per_task + 2.0) * len(tasks))
    fig, axes = plt.subplots(1, len(tasks), figsize=(width, 4.8), squeeze=False)
    readouts = list(dict.fromkeys(c.readout for c in record.cells))
    colours = {r: f"C{i}" for i, r in enumerate(readouts)}
    for ax, task in zip(axes[0], tasks):
        cells = [c for c in record.cells if c.task == task]
        labels = []
        for x, c in enumerate(cells):
            colour = colours[c.readout]
            name = (c.model or "?").removeprefix("preset:") if c.features == "vjepa2" else f"{c.features} (baseline)"
            labels.append(f"{name}\n{c.readout}" + ("\n(stand-in)" if c.stand_in else ""))
            if c.score is None or c.score.mean is None:
                ax.annotate("no score", (x, 0), ha="center", va="bottom", fontsize=8, color="grey")
                continue
            lo, hi = c.score.ci95 or (c.score.mean, c.score.mean)
            face = "none" if c.stand_in else colour
            yerr = [[c.score.mean - lo], [hi - c.score.mean]]
            ax.errorbar([x], [c.score.mean], yerr=yerr, fmt="o", color=colour, mfc=face, capsize=5, markersize=8)
            ax.scatter([x + 0.12] * len(c.score.values), c.score.values, s=12, color=colour, alpha=0.6, zorder=3)
        ax.set_xticks(range(len(cells)), labels, fontsize=7)
        ax.set_xlim(-0.6, len(cells) - 0.4)
        ax.set_title(f"task {task}", fontsize=10)
        ax.set_ylabel("evaluation return (mean over episodes)")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[r], label=r) for r in readouts]
    axes[0][0].legend(handles=handles, title="readout", fontsize=7, title_fontsize=7, loc="best")
    n = len(record.settings.get("seeds", []))
    title = f"Bake-off {record.bakeoff_id}: mean return across {n} seed(s), 95% t-interval, dots = seeds"
    if any(c.stand_in for c in record.cells):
        title += "\nhollow = stand-in (random-init weights): plumbing check, not a result of the model"
    fig.suptitle(title, fontsize=9)
    return _save(fig, Path(path))


def record_json(record: BakeoffRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), indent=1)
