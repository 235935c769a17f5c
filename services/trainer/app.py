"""The trainer service's routes: thin - validate, start one background job, return 202.

    GET  /healthz                       {"status": "ok"} (no auth)
    POST /datasets                      CreateDatasetRequest -> 202 DatasetInfo (generation runs in the background)
    GET  /datasets                      [DatasetInfo]
    GET  /datasets/{name}               DatasetInfo: status running | ready | failed, success_rate, mean_return
    POST /train/bc                      TrainBCRequest -> 202 {"run_id"}
    POST /train/sac                     TrainSACRequest -> 202 {"run_id"}
    GET  /runs                          {"runs": [RunRecord]}
    GET  /runs/{run_id}                 RunRecord: status queued | running | succeeded | failed | interrupted
    POST /runs/{run_id}/resume          continue an interrupted/failed SAC run from its last checkpoint (BC restarts)
    POST /eval/baseline                 BaselineEvalRequest -> 202 EvalResult: evaluates jacobian | p-controller |
                                        random with the same loop as trained policies, as a run of kind "baseline"
    POST /eval/{run_id}                 EvalRequest -> 202 EvalResult (answered once the evaluation is recorded queued)
    GET  /eval/{run_id}                 the run's latest evaluation (earlier ones stay in the run's `evaluations`)

Errors are JSON {"detail": "..."} naming the problem.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.auth import bearer_auth, load_token, warn_if_open
from services.common.store import DatasetNotFound, Store
from vjepa_robot_client.contract import (
    BaselineEvalRequest,
    CreateDatasetRequest,
    DatasetInfo,
    ErrorResponse,
    EvalRequest,
    EvalResult,
    HealthResponse,
    RunCreated,
    RunList,
    RunRecord,
    TrainBCRequest,
    TrainSACRequest,
    validate_name,
    validate_run_id,
)

from . import jobs
from .runs import RunNotFound, RunStore, default_runs_dir

log = logging.getLogger("vjepa_robot.trainer")


class TrainerSettings(BaseSettings):
    """Configuration from VJEPA_ROBOT_* environment variables (CLI flags override them)."""

    model_config = SettingsConfigDict(env_prefix="VJEPA_ROBOT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8002
    store: str | None = None  # VJEPA_ROBOT_STORE
    runs: str | None = None  # VJEPA_ROBOT_RUNS: run records + checkpoints (default <store>/runs)
    encoder_url: str = "http://127.0.0.1:8001"  # VJEPA_ROBOT_ENCODER_URL
    token: str | None = None  # VJEPA_ROBOT_TOKEN: required from clients, and sent to the encoder
    token_file: Path | None = None
    job_workers: int = 2  # background jobs at once
    max_body_bytes: int = 1024 * 1024  # VJEPA_ROBOT_MAX_BODY_BYTES: largest JSON body accepted (413 above it)


ERRORS = {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
          409: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}}


class BodyLimitMiddleware:
    """Pure ASGI: refuse a request body over `limit` bytes with 413 (by Content-Length, else by the bytes received).

    Bodies here are small JSON documents, so the body is read up front and replayed to the app.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                chunks = None
                first = message
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(scope, receive, send)
            more = message.get("more_body", False)
        if chunks is not None:
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        await JSONResponse({"detail": f"request body too large: the limit is {self.limit} bytes "
                                      "(VJEPA_ROBOT_MAX_BODY_BYTES); send a smaller request"},
                           status_code=413)(scope, receive, send)


def create_app(settings: TrainerSettings | None = None) -> FastAPI:
    settings = settings or TrainerSettings()
    token = load_token(settings.token, settings.token_file)
    store = Store(settings.store)
    runs = RunStore(settings.runs or default_runs_dir(store.uri))
    ctx = jobs.TrainerContext(store=store, runs=runs, encoder_url=settings.encoder_url, token=token)
    runner = jobs.JobRunner(settings.job_workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        fixed = runs.recover()  # runs a dead trainer left queued/running -> interrupted
        if fixed:
            log.warning("marked %d run(s) interrupted after a restart: %s", len(fixed), ", ".join(fixed))
        warn_if_open(settings.host, token, "the trainer service")
        yield
        runner.shutdown(runs)
        runs.recover()

    app = FastAPI(title="vjepa-robot trainer", version="0.1.0", lifespan=lifespan, responses=ERRORS)
    app.state.ctx, app.state.runner = ctx, runner
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    auth = [Depends(bearer_auth(token))]

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        msgs = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            msgs.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
        return JSONResponse(status_code=422, content={"detail": "; ".join(msgs) or "invalid request"})

    @app.get("/healthz", response_model=HealthResponse)
    def healthz():
        return HealthResponse()

    # -- datasets ------------------------------------------------------------------------------------------------

    @app.post("/datasets", status_code=202, response_model=DatasetInfo, dependencies=auth)
    def create_dataset(req: CreateDatasetRequest):
        from .datasets import DatasetSpec, create_dataset, delete_dataset

        spec = DatasetSpec(name=req.name, expert=req.expert.value, task=req.task.value, episodes=req.episodes,
                           steps=req.steps, seed=req.seed, image_size=req.image_size)
        try:
            existing = store.get_dataset_meta(req.name)
        except DatasetNotFound:
            existing = None
        if existing is not None and not req.overwrite:
            raise HTTPException(409, detail=f"dataset {req.name!r} already exists ({existing['status']}): choose "
                                            f"another name or send \"overwrite\": true")
        if f"dataset:{req.name}" in runner.active():
            raise HTTPException(409, detail=f"dataset {req.name!r} is being generated right now")
        # record `running` before answering, so a GET right after the 202 finds the dataset
        # drop what an overwrite replaces now, so the dataset never vanishes (404) between this 202 and the job
        delete_dataset(store, req.name)
        # with this process as owner, so a trainer killed before generation starts leaves it `failed`, not `running`
        store.put_dataset_meta(req.name, "running", {**spec.__dict__, "episodes_done": 0, "owner_pid": os.getpid(),
                                                     "owner_host": os.uname().nodename})

        def work():
            create_dataset(spec, store, workers=req.workers, resume=True, progress=False)  # the meta above exists

        def on_error(exc):
            meta = {**spec.__dict__, "error": f"{type(exc).__name__}: {exc}"}
            store.put_dataset_meta(req.name, "failed", meta)

        runner.submit(f"dataset:{req.name}", work, on_error)
        return DatasetInfo(**store.get_dataset_meta(req.name))

    @app.get("/datasets", response_model=list[DatasetInfo], dependencies=auth)
    def list_datasets():
        from .datasets import dataset_info

        return [DatasetInfo(**dataset_info(store, m["name"])) for m in store.list_datasets()]

    @app.get("/datasets/{name}", response_model=DatasetInfo, dependencies=auth)
    def get_dataset(name: str):
        from .datasets import dataset_info

        _valid_name(name)
        try:
            meta = dataset_info(store, name)
        except DatasetNotFound as exc:
            raise HTTPException(404, detail=str(exc)) from None
        if meta["status"] == "running":
            try:
                meta["episodes_done"] = len(store.episodes_present(name))
            except (RuntimeError, OSError, ValueError):  # steps table dropped mid-read by an overwrite: keep the count
                pass
        return DatasetInfo(**meta)

    # -- training ------------------------------------------------------------------------------------------------

    @app.post("/train/bc", status_code=202, response_model=RunCreated, dependencies=auth)
    def train_bc(req: TrainBCRequest):
        _ready_dataset(store, req.dataset)
        handle = runs.create("bc", req.model_dump(mode="json"))
        runner.submit(f"run:{handle.run_id}", lambda: jobs.run_bc(ctx, handle), jobs.fail_run(handle))
        return RunCreated(run_id=handle.run_id)

    @app.post("/train/sac", status_code=202, response_model=RunCreated, dependencies=auth)
    def train_sac(req: TrainSACRequest):
        handle = runs.create("sac", req.model_dump(mode="json"))
        runner.submit(f"run:{handle.run_id}", lambda: jobs.run_sac(ctx, handle), jobs.fail_run(handle))
        return RunCreated(run_id=handle.run_id)

    @app.get("/runs", response_model=RunList, dependencies=auth)
    def list_runs():
        return RunList(runs=[RunRecord(**r) for r in runs.list()])

    @app.get("/runs/{run_id}", response_model=RunRecord, dependencies=auth)
    def get_run(run_id: str):
        return RunRecord(**_get_run(runs, run_id))

    @app.post("/runs/{run_id}/resume", status_code=202, response_model=RunRecord, dependencies=auth)
    def resume_run(run_id: str):
        record = _get_run(runs, run_id)
        if record["status"] not in ("interrupted", "failed"):
            raise HTTPException(409, detail=f"run {run_id} is {record['status']}: only an interrupted or failed run "
                                            "can be resumed")
        if record["kind"] == "baseline":
            raise HTTPException(409, detail="baseline runs have nothing to resume: POST /eval/baseline again")
        handle = runs.handle(run_id)
        handle.update(status="queued", error=None)
        runs.stop_event(run_id).clear()
        if record["kind"] == "sac":
            runner.submit(f"run:{run_id}", lambda: jobs.run_sac(ctx, handle, resume=True), jobs.fail_run(handle))
        else:
            runner.submit(f"run:{run_id}", lambda: jobs.run_bc(ctx, handle), jobs.fail_run(handle))
        return RunRecord(**runs.get(run_id))

    # -- evaluation ----------------------------------------------------------------------------------------------

    @app.post("/eval/baseline", status_code=202, response_model=EvalResult, dependencies=auth)
    def eval_baseline(req: BaselineEvalRequest):
        handle = runs.create("baseline", {"policy": req.policy, "task": req.task.value})
        return _start_eval(handle, EvalRequest(**req.model_dump(exclude={"policy"})))

    @app.post("/eval/{run_id}", status_code=202, response_model=EvalResult, dependencies=auth)
    def eval_run(run_id: str, req: EvalRequest):
        record = _get_run(runs, run_id)
        if record["kind"] != "baseline" and record["status"] != "succeeded":
            raise HTTPException(409, detail=f"run {run_id} is {record['status']}: evaluate it once it has succeeded")
        repeat = int(record["config"].get("action_repeat", 1))
        if req.steps % repeat:
            raise HTTPException(422, detail=f"steps ({req.steps}) counts simulator steps and must be a multiple of "
                                            f"the run's action_repeat ({repeat})")
        return _start_eval(runs.handle(run_id), req)

    @app.get("/eval/{run_id}", response_model=EvalResult, dependencies=auth)
    def get_eval(run_id: str):
        record = _get_run(runs, run_id)
        if not record["evaluations"]:
            raise HTTPException(404, detail=f"run {run_id} has no evaluation yet: POST /eval/{run_id} first")
        return EvalResult(**record["evaluations"][-1])

    def _start_eval(handle, req: EvalRequest) -> EvalResult:
        eval_id = handle.add_evaluation(req.model_dump(mode="json"))  # recorded `queued` before the 202
        runner.submit(f"eval:{handle.run_id}:{eval_id}",
                      lambda: jobs.run_eval(ctx, handle, eval_id, req.model_dump(mode="json")),
                      jobs.eval_error_handler(handle, eval_id))
        return EvalResult(**handle.record["evaluations"][eval_id])

    return app


def _valid_name(name: str) -> None:
    try:
        validate_name(name, "dataset name")
    except ValueError as exc:
        raise HTTPException(400, detail=str(exc)) from None


def _ready_dataset(store: Store, name: str) -> dict:
    from .datasets import dataset_info

    _valid_name(name)
    try:
        meta = dataset_info(store, name)
    except DatasetNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None
    if meta["status"] != "ready":
        raise HTTPException(409, detail=f"dataset {name!r} is {meta['status']}, not ready: wait for it or re-create it")
    return meta


def _get_run(runs: RunStore, run_id: str) -> dict:
    try:
        validate_run_id(run_id)
    except ValueError as exc:
        raise HTTPException(400, detail=str(exc)) from None
    try:
        return runs.get(run_id)
    except RunNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None
