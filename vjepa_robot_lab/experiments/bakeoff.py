"""A bake-off as a plan of self-contained cells: each cell names its dataset, its features (an encoder by URL and
id, or a baseline feature source), its training and its evaluation, so any cell can run anywhere that reaches the
store, the runs directory and the encoder, and report back one JSON result.

    settings = resolve(request)                               # every value the cells run with
    cells = plan_cells(bakeoff_id, settings, encoders, baselines, store=..., runs=...)
    result = run_cell(cells[0])                               # dataset (reused), study (resumed), evaluation

A cell is idempotent and resumable: its dataset is reused when one with the same lineage (expert, task,
episodes, steps, seed, frame size) is ready in the store, resumed when one was left unfinished; its BC study is
the one recorded in the cell's own state file (`<runs>/bakeoffs/<id>/cells/<cell>.json`, written only by the cell)
when there is one, so a seed that finished training is not trained again and an evaluation that finished is
kept. Embeddings are the encoder's (it embeds a dataset once per encoder id; a second request is a no-op).

No HTTP, job runner or CLI here: the trainer's door (services/trainer/bakeoff.py) records the bake-off and routes
the cells to an executor (executors.py); the encoder is reached through the SDK, as every feature source does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from vjepa_robot_client.contract import (
    DEFAULT_EVAL_IMAGE_SIZE,
    SHIPPED_EXPERT,
    CreateDatasetRequest,
    EvalRequest,
    FeatureSource,
    RunStatus,
    TrainBCRequest,
    default_expert,
)
from vjepa_robot_lab.policies.shipped_experts import shipped_sha256
from vjepa_robot_lab.records.lineage import encoder_lineage, train_lineage

DEFAULT_SEEDS = [0, 1, 2]
CELLS_DIR = "cells"
ENCODER_FEATURES = FeatureSource.vjepa2.value


class CellStopped(Exception):
    """The cell was asked to stop (its stop event was set): what it finished is kept; resume continues it."""


# ----------------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------------


def _protocol_tasks(names: list[str]) -> tuple[list[str], list[str]]:
    """A protocol's tasks as this tool names them (reacher-easy is `easy`), and those it does not have."""
    from vjepa_robot_lab.envs.tasks import canonical_task

    have, missing = [], []
    for name in names:
        try:
            have.append(canonical_task(name))
        except ValueError:
            missing.append(name)
    return have, missing


def resolve(req) -> dict[str, Any]:
    """Every setting the cells run with: the request's own values, else its protocol's, else this tool's defaults
    (CreateDatasetRequest / TrainBCRequest / EvalRequest). Raises ValueError naming what is missing."""
    from vjepa_robot_lab.envs.tasks import task_spec
    from vjepa_robot_lab.experiments.protocols import preset

    p = preset(req.protocol) if req.protocol is not None else {}
    ds_defaults, ev_defaults = CreateDatasetRequest.model_fields, EvalRequest.model_fields
    ds, ev = p.get("dataset", {}), p.get("eval", {})

    def pick(value, from_protocol, default):
        return value if value is not None else from_protocol if from_protocol is not None else default

    tasks = [t.value for t in req.tasks]
    missing: list[str] = []
    if p and "tasks" not in req.model_fields_set:
        tasks, missing = _protocol_tasks(p["tasks"])
    extra = sorted(set(req.experts) - set(tasks))
    if extra:
        raise ValueError(f"experts names task(s) {extra} that are not in the tasks {tasks}")
    # the demonstrator per task: the request's, else the task's default (jacobian on reacher, the shipped state-SAC
    # expert elsewhere: a task without one is refused when its dataset is resolved, naming the tasks that have one)
    experts = {t: req.experts.get(t) or default_expert(t) for t in tasks}
    # episode length per task: the request's, else the protocol's, else the task's own (tasks.py)
    steps = {t: pick(req.steps, ds.get("steps"), task_spec(t).episode_steps) for t in tasks}
    bc = dict(p.get("bc", {}))
    bc.pop("readout", None)  # the bake-off's readouts are an axis of their own
    for field in ("epochs", "batch_size"):
        if getattr(req, field) is not None:
            bc[field] = getattr(req, field)
    return {
        "protocol": req.protocol.value if req.protocol is not None else None,
        "tasks": tasks,
        "tasks_not_here": missing,
        "experts": experts,
        "readouts": [r.value for r in req.readouts],
        "baselines": [b.value if hasattr(b, "value") else str(b) for b in (getattr(req, "baselines", None) or [])],
        "seeds": list(req.seeds or p.get("seeds") or DEFAULT_SEEDS),
        "steps": steps,
        "dataset": {
            "episodes": pick(req.episodes, ds.get("episodes"), ds_defaults["episodes"].default),
            "image_size": pick(req.image_size, ds.get("image_size"), ds_defaults["image_size"].default),
            "seed": pick(req.dataset_seed, ds.get("seed"), ds_defaults["seed"].default),
            "workers": req.workers or ds_defaults["workers"].default,
            **({"name": req.dataset} if getattr(req, "dataset", None) else {}),
        },
        "bc": {**bc, "grid_size": req.grid_size},
        **({"pixels_epochs": req.pixels_epochs} if getattr(req, "pixels_epochs", None) else {}),
        "eval": {
            "episodes": pick(req.eval_episodes, ev.get("episodes"), ev_defaults["episodes"].default),
            "seed": pick(req.eval_seed, ev.get("seed"), ev_defaults["seed"].default),
            "parallel_envs": req.parallel_envs or ev_defaults["parallel_envs"].default,
        },
        "score": "mean evaluation return across seeds (95% t-interval)",
    }


# ----------------------------------------------------------------------------------------------------------------
# Datasets by lineage
# ----------------------------------------------------------------------------------------------------------------

LINEAGE_FIELDS = ("expert", "task", "episodes", "steps", "seed", "image_size")


def dataset_fields(settings: dict, task: str) -> dict[str, Any]:
    """The demos of `task` as DatasetSpec fields, named by their lineage: `demos-<task>-<hash>`, the same name for
    the same (expert, task, episodes, steps, seed, frame size; a shipped expert's checkpoint hash) in every bake-off,
    so a later one reuses it; or the
    request's `dataset` (one task), whose lineage ensure_dataset checks against these fields."""
    d = settings["dataset"]
    fields = {
        "expert": settings["experts"][task],
        "task": task,
        "episodes": int(d["episodes"]),
        "steps": int(settings["steps"][task]),
        "seed": int(d["seed"]),
        "image_size": int(d["image_size"]),
    }
    key = dict(fields)
    if fields["expert"] == SHIPPED_EXPERT:  # a re-trained shipped expert makes other demos: another name
        key["expert_sha256"] = shipped_sha256(task)  # none: refused when the dataset is resolved (422)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return {"name": d.get("name") or f"demos-{task}-{digest}", **fields}


def lineage_matches(meta: dict, fields: dict) -> bool:
    """Same lineage fields; for a shipped expert also the same checkpoint (the dataset's expert_run sha256)."""
    same = all(meta.get(k) == fields[k] for k in LINEAGE_FIELDS)
    if same and fields["expert"] == SHIPPED_EXPERT:
        return (meta.get("expert_run") or {}).get("sha256") == shipped_sha256(fields["task"])
    return same


def ensure_dataset(store, runs, fields: dict, workers: int = 2, stop: threading.Event | None = None) -> dict:
    """The dataset `fields` names, ready: reused when the store holds it ready with the same lineage, completed when
    it was left unfinished, made otherwise. Returns its metadata plus `reused` (True: nothing was rendered)."""
    from services.common.store import DatasetNotFound
    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset, resolve_expert

    spec, source = resolve_expert(DatasetSpec(**fields), runs)
    try:
        meta = store.get_dataset_meta(spec.name)
    except DatasetNotFound:
        meta = None
    if meta is not None and not lineage_matches(meta, fields):
        raise ValueError(
            f"dataset {spec.name} exists with another lineage ({ {k: meta.get(k) for k in LINEAGE_FIELDS} })"
        )
    if meta is not None and meta.get("status") == "ready":
        return {**meta, "reused": True}
    exists = meta is not None or store.has_steps(spec.name)
    # in-process generation (workers <= 1) keeps its envs per thread (datasets.py), so cells may generate side by side
    meta = create_dataset(spec, store, workers=workers, progress=False, stop=stop, resume=exists, expert_source=source)
    if meta.get("status") != "ready":
        raise RuntimeError(f"dataset {spec.name} ended {meta.get('status')}: {meta.get('error')}")
    return {**meta, "reused": False}


# ----------------------------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------------------------


def cell_key(index: int) -> str:
    return f"cell-{index:03d}"


def plan_cells(
    bakeoff_id: str,
    settings: dict,
    encoders: list[dict],
    baselines: list[str],
    *,
    store: str,
    runs: str,
) -> list[dict]:
    """One self-contained cell spec per (task, encoder, readout) and per (task, baseline feature source).
    `encoders`: [{"url", "encoder_id", "model", ...}] as each encoder's GET /info said."""
    cells: list[dict] = []
    base = {
        "bakeoff_id": bakeoff_id,
        "store": store,
        "runs": runs,
        "seeds": list(settings["seeds"]),
        "protocol": settings.get("protocol"),
        "bc": dict(settings["bc"]),
        "eval": dict(settings["eval"]),
        "dataset_workers": int(settings["dataset"].get("workers") or 1),
    }
    for task in settings["tasks"]:
        ds = dataset_fields(settings, task)
        common = {**base, "task": task, "dataset": ds, "eval_steps": int(settings["steps"][task])}
        for enc in encoders:
            for readout in settings["readouts"]:
                cells.append(
                    {
                        **common,
                        "features": ENCODER_FEATURES,
                        "encoder_url": enc["url"],
                        "encoder_id": enc.get("encoder_id"),
                        "readout": readout,
                    }
                )
        for name in baselines:
            # a baseline row reads its features plainly (mean): it is the reference, not a readout under test
            row = {**common, "features": name, "encoder_url": None, "encoder_id": None, "readout": "mean"}
            if name == "pixels" and settings.get("pixels_epochs"):  # its own (CPU) budget: --pixels-epochs
                row["bc"] = {**common["bc"], "epochs": int(settings["pixels_epochs"])}
            cells.append(row)
    for k, c in enumerate(cells):
        c["key"] = cell_key(k)
    return cells


# ----------------------------------------------------------------------------------------------------------------
# One cell
# ----------------------------------------------------------------------------------------------------------------


def cell_state_path(spec: dict) -> Path:
    return Path(spec["runs"]) / "bakeoffs" / spec["bakeoff_id"] / CELLS_DIR / f"{spec['key']}.json"


def read_cell_state(spec: dict) -> dict:
    path = cell_state_path(spec)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_state(spec: dict, state: dict) -> None:
    from vjepa_robot_lab.records.runs import _atomic_write_json

    path = cell_state_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    state["updated_at"] = time.time()
    _atomic_write_json(path, state)


def _context(spec: dict, token: str | None):
    from services.common.store import Store
    from vjepa_robot_lab.records.context import TrainerContext
    from vjepa_robot_lab.records.runs import RunStore

    return TrainerContext(
        store=Store(spec["store"]),
        runs=RunStore(spec["runs"]),
        encoder_url=spec.get("encoder_url"),
        token=token if token is not None else os.environ.get("VJEPA_ROBOT_TOKEN") or None,
        compress=spec.get("compress", "auto"),
    )


def _bc_request(spec: dict) -> TrainBCRequest:
    from vjepa_robot_lab.experiments.protocols import apply_bc

    req = TrainBCRequest(
        dataset=spec["dataset"]["name"],
        features=spec["features"],
        readout=spec["readout"],
        seeds=spec["seeds"],
        **({"protocol": spec["protocol"]} if spec.get("protocol") else {}),
        **spec["bc"],
    )
    return apply_bc(req)


def _train_run(ctx, run_id: str) -> None:
    """Train one recorded BC run from its config (BC restarts: its safe point is its start)."""
    from vjepa_robot_lab.records.run_kinds import run_kind

    handle = ctx.runs.handle(run_id)
    record = handle.record
    kind = run_kind(record.kind)
    cfg = kind.request.model_validate(record.config.model_dump(mode="json"))
    handle.update(status="running")
    try:
        features = ctx.features(cfg.features.value, record.lineage.task if record.lineage else None)
        try:
            handle.update(lineage=encoder_lineage(features, cfg))
            metrics = kind.train(ctx, handle, cfg, features, resume=False, progress=False)
            metrics["features_lineage"] = features.lineage()
        finally:
            features.close()
    except BaseException as exc:
        handle.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    handle.update(status="succeeded", metrics=metrics)


def _eval_request(spec: dict, record) -> EvalRequest:
    size = (record.lineage.image_size if record.lineage else None) or DEFAULT_EVAL_IMAGE_SIZE
    ev = spec["eval"]
    return EvalRequest(
        task=spec["task"],
        steps=spec["eval_steps"],
        episodes=ev["episodes"],
        seed=ev["seed"],
        parallel_envs=ev["parallel_envs"],
        gif_episodes=0,
        image_size=size,
    )


def _same_eval(done, req: EvalRequest) -> bool:
    r = done.request or {}
    r = r if isinstance(r, dict) else r.model_dump(mode="json")
    want = req.model_dump(mode="json")
    return all(r.get(k) == want[k] for k in ("task", "steps", "episodes", "seed", "image_size"))


def _evaluate_run(ctx, run_id: str, req: EvalRequest) -> None:
    from vjepa_robot_lab.evaluation.evaluate import evaluate
    from vjepa_robot_lab.records.run_kinds import run_kind

    handle = ctx.runs.handle(run_id)
    eval_id = handle.add_evaluation(req.model_dump(mode="json"))
    handle.update_evaluation(eval_id, status="running")
    record = handle.record
    try:
        policy, features = run_kind(record.kind).load_policy(ctx, record)
        try:
            result = evaluate(
                policy,
                task=req.task.value,
                episodes=req.episodes,
                steps=req.steps,
                seed=req.seed,
                parallel_envs=req.parallel_envs,
                image_size=req.image_size,
                gif_episodes=0,
                action_repeat=record.lineage.action_repeat if record.lineage else 1,
                targets=req.targets.value,
            )
        finally:
            if features is not None:
                features.close()
    except BaseException as exc:
        handle.update_evaluation(eval_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    result["image_size"] = req.image_size if policy.needs_frames else None
    handle.update_evaluation(eval_id, status="succeeded", **result)


def run_cell(spec: dict, token: str | None = None, stop: threading.Event | None = None) -> dict:
    """Run one cell to its end and return its result (JSON): status, study_id, run_ids, score, success, error,
    what was reused and how long each part took. Safe to call again after a crash or a stop: it continues."""
    import secrets

    from vjepa_robot_lab.envs.tasks import has_success
    from vjepa_robot_lab.experiments.studies import aggregate, mean_ci95
    from vjepa_robot_lab.records.run_kinds import kind_of_request

    stop = stop or threading.Event()
    ctx = _context(spec, token)
    state = read_cell_state(spec)
    state.update(key=spec["key"], status="running", host=socket.gethostname(), pid=os.getpid(), error=None)
    state.setdefault("attempts", 0)
    state["attempts"] += 1
    _write_state(spec, state)
    timings = state.setdefault("timings", {})

    def check_stop():
        if stop.is_set():
            raise CellStopped(f"cell {spec['key']} was stopped")

    finished = threading.Event()

    def forward_stop():  # a stop reaches the run in flight (BC checks its run's stop event between epochs)
        while not finished.wait(0.5):
            if stop.is_set():
                for run_id in state.get("run_ids") or []:
                    ctx.runs.stop_event(run_id).set()
                return

    threading.Thread(target=forward_stop, name=f"stop-{spec['key']}", daemon=True).start()
    try:
        t0 = time.perf_counter()
        meta = ensure_dataset(ctx.store, ctx.runs, spec["dataset"], spec.get("dataset_workers", 1), stop)
        timings["dataset_s"] = round(time.perf_counter() - t0, 2)
        state["dataset_reused"] = bool(meta.get("reused"))
        state["demo_return"] = meta.get("mean_return")
        check_stop()
        study_id = state.get("study_id")
        if study_id is None:
            req = _bc_request(spec)
            kind = kind_of_request(req)
            lineage = train_lineage(ctx, req)
            study_id = f"study-{secrets.token_hex(4)}"
            handles = [
                ctx.runs.create(kind.name, req.for_seed(s, study_id).model_dump(mode="json"), lineage=lineage,
                                study_id=study_id)
                for s in spec["seeds"]
            ]  # fmt: skip
            run_ids = [h.run_id for h in handles]
            ctx.runs.create_study(kind.name, req.model_dump(mode="json", exclude={"study_id"}), spec["seeds"],
                                  run_ids, study_id)  # fmt: skip
            state.update(study_id=study_id, run_ids=run_ids)
            _write_state(spec, state)
        study = ctx.runs.get_study(study_id)
        trained, evaluated, kept = 0, 0, 0
        t0 = time.perf_counter()
        for run_id in study.run_ids:
            check_stop()
            if ctx.runs.get(run_id).status != RunStatus.succeeded:
                try:
                    _train_run(ctx, run_id)
                    trained += 1
                except Exception:  # one seed's failure is recorded on its run; the cell goes on
                    pass
        timings["train_s"] = round(timings.get("train_s", 0) + time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        for run_id in study.run_ids:
            check_stop()
            record = ctx.runs.get(run_id)
            if record.status != RunStatus.succeeded:
                continue
            req = _eval_request(spec, record)
            last = record.evaluations[-1] if record.evaluations else None
            if last is not None and last.status == RunStatus.succeeded and _same_eval(last, req):
                kept += 1
                continue
            try:
                _evaluate_run(ctx, run_id, req)
                evaluated += 1
            except Exception:
                pass
        timings["eval_s"] = round(timings.get("eval_s", 0) + time.perf_counter() - t0, 2)
        ctx.runs.update_study(study_id, eval_request=_eval_request(spec, ctx.runs.get(study.run_ids[0])).model_dump(
            mode="json"))  # fmt: skip
        agg = aggregate(study, [ctx.runs.get(r) for r in study.run_ids])
        returns = [r.mean_return for r in agg.runs if r.mean_return is not None]
        failed = [r for r in agg.runs if r.status != RunStatus.succeeded or r.eval_status != RunStatus.succeeded]
        error = None
        if failed:
            error = f"{len(failed)} of {len(agg.runs)} seed(s) did not finish: " + "; ".join(
                f"{r.run_id} {r.status.value}/{r.eval_status.value if r.eval_status else '-'}"
                + (f" ({r.error})" if r.error else "")
                for r in failed
            )
        state.update(
            status="succeeded" if returns and not failed else "failed",
            error=error,
            score=mean_ci95(returns).model_dump(mode="json") if returns else None,
            success=agg.success.model_dump(mode="json") if agg.success and has_success(spec["task"]) else None,
            seeds_trained=trained,
            seeds_evaluated=evaluated,
            evaluations_kept=kept,
        )
    except CellStopped as exc:
        state.update(status="interrupted", error=str(exc))
    except BaseException as exc:
        state.update(status="interrupted" if stop.is_set() else "failed", error=f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, Exception):
            _write_state(spec, state)
            raise
    finally:
        finished.set()
    _write_state(spec, state)
    return state


def run_cell_json(spec_json: str) -> str:
    """run_cell for executors that pass text (the token comes from VJEPA_ROBOT_TOKEN in the worker's environment)."""
    return json.dumps(run_cell(json.loads(spec_json)))


# ----------------------------------------------------------------------------------------------------------------
# Cost first
# ----------------------------------------------------------------------------------------------------------------


def workload(
    cells: list[dict], ready_datasets: set[str] = frozenset(), encoded: set[tuple[str, str]] = frozenset()
) -> dict:
    """What the plan asks for, counted: frames to render (demos not in the store yet, plus live evaluation of
    policies that see frames), windows to encode (demo windows per encoder not embedded yet, plus every evaluation
    step of an encoder cell), BC optimiser steps. `encoded`: (dataset, encoder_id) already embedded."""
    frames = windows = bc_steps = eval_steps = 0
    datasets_seen: set[str] = set()
    embedded_seen: set[tuple[str, str]] = set()
    per_cell = []
    for c in cells:
        ds = c["dataset"]
        demo_steps = ds["episodes"] * ds["steps"]
        c_frames = c_windows = 0
        if ds["name"] not in datasets_seen and ds["name"] not in ready_datasets:
            c_frames += demo_steps
        datasets_seen.add(ds["name"])
        pair = (ds["name"], c.get("encoder_id") or "")
        if c["features"] == ENCODER_FEATURES and pair not in embedded_seen and pair not in encoded:
            c_windows += demo_steps
        embedded_seen.add(pair)
        ev_steps = len(c["seeds"]) * c["eval"]["episodes"] * c["eval_steps"]
        sees_frames = c["features"] in (ENCODER_FEATURES, "pixels")
        if sees_frames:
            c_frames += ev_steps
        if c["features"] == ENCODER_FEATURES:
            c_windows += ev_steps
        bc = c["bc"]
        epochs, batch = int(bc.get("epochs", 100)), int(bc.get("batch_size", 256))
        val = float(bc.get("val_fraction", 0.1))
        c_bc = len(c["seeds"]) * epochs * max(1, math.ceil(demo_steps * (1 - val) / batch))
        frames, windows, bc_steps, eval_steps = (
            frames + c_frames,
            windows + c_windows,
            bc_steps + c_bc,
            eval_steps + ev_steps,
        )
        per_cell.append(
            {"key": c["key"], "frames": c_frames, "windows": c_windows, "bc_steps": c_bc, "eval_steps": ev_steps}
        )
    return {
        "cells": len(cells),
        "frames_to_render": frames,
        "windows_to_encode": windows,
        "bc_steps": bc_steps,
        "eval_steps": eval_steps,
        "per_cell": per_cell,
    }


def measure_rates(image_size: int = 64, frames: int = 20, bc_batch: int = 256) -> dict:
    """Rates of this machine, measured now in this process (about a second): simulator frames/s rendered at
    `image_size` (one process), and BC optimiser steps/s of the default MLP at `bc_batch`."""
    import numpy as np
    import torch

    from vjepa_robot_lab.envs.env import make

    env = make("easy", seed=0, image_size=image_size, episode_steps=frames + 10)
    try:
        env.reset()  # the first frame warms the renderer up
        t0 = time.perf_counter()
        for _ in range(frames):
            env.step(np.zeros(2, np.float32))  # one simulator step and one rendered frame
        render_fps = frames / (time.perf_counter() - t0)
    finally:
        close = getattr(env, "close", None)
        if close:
            close()
    from vjepa_robot_lab.learning.bc import BCPolicy

    net = BCPolicy(64)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.randn(bc_batch, 64), torch.randn(bc_batch, 2)

    def steps(n: int) -> None:
        for _ in range(n):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()

    steps(3)  # warm-up: the first steps pay torch's and Adam's one-time set-up
    t0 = time.perf_counter()
    n = 20
    steps(n)
    bc_sps = n / (time.perf_counter() - t0)
    return {
        "render_fps": round(render_fps, 1),
        "render_image_size": image_size,
        "bc_steps_per_s": round(bc_sps, 1),
        "cpus": os.cpu_count(),
        "host": socket.gethostname(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def last_gpu_benchmark(paths: list[Path]) -> dict | None:
    """The ViT-L windows/s of the newest GPU benchmark file (bench/gpu_bench.py writes it), if one exists."""
    best = None
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, ValueError):
            continue
        if data.get("device", {}).get("kind") != "cuda":
            continue
        rate = (data.get("summary") or {}).get("vitl_windows_per_s")
        if rate and (best is None or data.get("finished_at", "") > best["finished_at"]):
            best = {"windows_per_s": rate, "gpu": data["device"].get("name"), "file": str(p)}
            best["finished_at"] = data.get("finished_at", "")
    return best


def calibration(history: list[tuple[float, float]]) -> tuple[float | None, int]:
    """(median of observed / modelled seconds, n) over earlier cells of this machine: what the model leaves out
    (process start-up, HTTP, evaluation stepping, a loaded machine) as one factor. None without history."""
    ratios = sorted(obs / mod for mod, obs in history if mod > 0 and obs > 0)
    if not ratios:
        return None, 0
    mid = len(ratios) // 2
    med = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    return round(med, 2), len(ratios)


def estimate(work: dict, rates: dict, encoder_rates: dict[str, float], cells: list[dict], gpu: dict | None,
             cell_workers: int = 1, factor: float | None = None, factor_n: int = 0) -> dict:  # fmt: skip
    """Hours per executor from the workload and the measured rates, times `factor` (calibration(): observed /
    modelled cell time of earlier bake-offs on this machine) when there is one. An estimate: the model itself
    counts rendering, BC steps and encoding only, and assumes that N local cells share the cores (so at most
    min(N, cores) run at full speed)."""
    if not rates.get("render_fps") or not rates.get("bc_steps_per_s"):
        return {"rates": rates, "unavailable": f"this machine's rates could not be measured ({rates.get('error')})",
                "calibration": {"factor": None, "cells": 0}, "per_cell_s": {}}  # fmt: skip
    render_fps = max(rates["render_fps"], 1e-6)
    bc_sps = max(rates["bc_steps_per_s"], 1e-6)
    cores = max(1, int(rates.get("cpus") or 1))
    per_cell_s = []
    windows_by_encoder: dict[str, int] = {}
    for c, w in zip(cells, work["per_cell"]):
        enc_rate = encoder_rates.get(c.get("encoder_id") or "", 0.0)
        enc_s = w["windows"] / enc_rate if enc_rate else 0.0
        per_cell_s.append(w["frames"] / render_fps + w["bc_steps"] / bc_sps + enc_s)
        if c.get("encoder_id"):
            windows_by_encoder[c["encoder_id"]] = windows_by_encoder.get(c["encoder_id"], 0) + w["windows"]
    k = factor or 1.0
    serial = k * sum(per_cell_s)
    longest = k * max(per_cell_s, default=0.0)

    def local(n: int) -> float:
        return max(serial / max(1, min(n, cores, len(cells) or 1)), longest)

    out = {
        "serial_hours": round(serial / 3600, 3),
        "local": {f"cell_workers={n}": round(local(n) / 3600, 3) for n in sorted({1, cell_workers, cores})},
        "slurm": {"hours_if_all_cells_at_once": round(longest / 3600, 3), "cpu_hours": round(serial / 3600, 3)},
        "rates": rates,
        "encoder_windows_per_s": encoder_rates,
        "assumes": "measured rates of this machine; one core per cell; start-up, queueing and HTTP not counted"
        + (f", except through the calibration factor {factor} ({factor_n} earlier cells here)" if factor else ""),
        "calibration": {"factor": factor, "cells": factor_n},
        "per_cell_s": {c["key"]: round(t, 3) for c, t in zip(cells, per_cell_s)},  # modelled, before the factor
    }
    if gpu:
        gpu_h = work["windows_to_encode"] / gpu["windows_per_s"] / 3600
        cpu_h = sum(w["frames"] / render_fps + w["bc_steps"] / bc_sps for w in work["per_cell"]) / 3600
        out["modal"] = {
            "gpu_hours_encoding": round(gpu_h, 3),
            "cpu_hours_render_and_bc": round(cpu_h, 3),
            "gpu": gpu,
            "assumes": "every window at the last GPU benchmark's ViT-L rate in process (batch 32)",
        }
    else:
        out["modal"] = {"gpu_hours_encoding": None, "note": "no GPU benchmark recorded (bench/gpu_bench.py)"}
    return out


def plan_summary(work: dict, est: dict) -> str:
    """The plan in a few lines, printed before a bake-off starts."""
    head = (
        f"plan: {work['cells']} cells; {work['frames_to_render']:,} frames to render, "
        f"{work['windows_to_encode']:,} windows to encode, {work['bc_steps']:,} BC steps, "
        f"{work['eval_steps']:,} evaluation steps"
    )
    if est.get("unavailable"):
        return f"{head}\nno time estimate: {est['unavailable']}"
    lines = [
        f"plan: {work['cells']} cells; {work['frames_to_render']:,} frames to render, "
        f"{work['windows_to_encode']:,} windows to encode, {work['bc_steps']:,} BC steps, "
        f"{work['eval_steps']:,} evaluation steps",
        "estimate (measured here: "
        f"{est['rates'].get('render_fps')} frames/s at {est['rates'].get('render_image_size')} px, "
        f"{est['rates'].get('bc_steps_per_s')} BC steps/s, load {est['rates'].get('load_avg_1m')}): "
        + ", ".join(f"local {k} ~{_hours(v)}" for k, v in est["local"].items())
        + f"; slurm ~{_hours(est['slurm']['hours_if_all_cells_at_once'])} with every cell at once "
        f"({_hours(est['slurm']['cpu_hours'])} CPU in all)"
        + (
            f"; x{est['calibration']['factor']} calibrated on {est['calibration']['cells']} earlier cells here"
            if (est.get("calibration") or {}).get("factor")
            else "; uncalibrated (no earlier bake-off here)"
        ),
    ]
    m = est.get("modal") or {}
    if m.get("gpu_hours_encoding") is not None:
        lines.append(
            f"modal: ~{m['gpu_hours_encoding']:.3f} GPU-hours of encoding at {m['gpu']['windows_per_s']:.0f} "
            f"windows/s ({m['gpu'].get('gpu')}, last GPU benchmark) + {m['cpu_hours_render_and_bc']:.3f} CPU-hours"
        )
    else:
        lines.append("modal: no GPU benchmark recorded yet (bench/gpu_bench.py), so no GPU-hours estimate")
    return "\n".join(lines)


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.2f} h"


def spec_summary(spec: dict) -> dict[str, Any]:
    """The cell's identity for logs: task, features or encoder, readout."""
    return {k: spec.get(k) for k in ("key", "task", "features", "encoder_id", "readout")}


__all__ = [
    "CellStopped",
    "dataset_fields",
    "ensure_dataset",
    "estimate",
    "last_gpu_benchmark",
    "measure_rates",
    "plan_cells",
    "plan_summary",
    "read_cell_state",
    "resolve",
    "run_cell",
    "run_cell_json",
    "workload",
]
