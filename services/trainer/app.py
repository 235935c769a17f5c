"""The trainer service's routes: thin - validate, start one background job, return 202.

    GET  /healthz                       {"status": "ok"} (no auth)
    GET  /info                          TrainerInfo: version, store, runs dir, encoder URL, what it can do
    GET  /metrics                       Prometheus: jobs by kind and status, evaluation steps/s, request counts
    GET  /docs                          Swagger UI, its assets served from here (works offline)
    POST /datasets                      CreateDatasetRequest -> 202 DatasetInfo (generation runs in the background);
                                        "resume": true completes an interrupted/failed dataset of the same arguments
    GET  /datasets                      {"datasets": [DatasetInfo]}
    GET  /datasets/{name}               DatasetInfo: status running | ready | failed, success_rate, mean_return
    POST /train/bc                      TrainBCRequest -> 202 RunCreated {"run_id"}; with seeds/n_seeds one run per
                                        seed under a study: {"run_id" (the first), "study_id", "run_ids"}
    POST /train/sac                     TrainSACRequest -> 202 RunCreated (seeds as for BC); one such route per
                                        run kind that trains (vjepa_robot_lab/records/run_kinds.py)
    GET  /studies                       {"studies": [StudyRecord]}
    GET  /studies/{study_id}            StudyRecord: runs, per-run status and final metric, mean and 95% t-interval
                                        across seeds (final metric; success rate of evaluated runs)
    POST /studies/{study_id}/eval       EvalRequest -> 202 StudyRecord: every run, the same evaluation seeds
    POST /eval/study/{study_id}         the same
    GET  /runs                          {"runs": [RunRecord]}
    GET  /runs/{run_id}                 RunRecord: status queued | running | succeeded | failed | interrupted
    POST /runs/{run_id}/resume          continue an interrupted/failed SAC run from its last checkpoint (BC restarts)
    POST /eval/baseline                 BaselineEvalRequest -> 202 EvalResult: evaluates jacobian | p-controller |
                                        random with the same loop as trained policies, as a run of kind "baseline"
    POST /eval/{run_id}                 EvalRequest -> 202 EvalResult (answered once the evaluation is recorded queued);
                                        image_size defaults to the run's own frame size, another needs
                                        allow_image_size_change: true (else 422 naming both sizes)
    GET  /eval/{run_id}                 the run's latest evaluation (earlier ones stay in the run's `evaluations`)
    POST /bakeoff                       BakeoffRequest -> 202 BakeoffRecord: encoders (service URLs) x readouts x
                                        tasks x seeds as BC studies, one table and one figure (services/trainer/
                                        bakeoff.py); GET /bakeoff lists them, GET /bakeoff/{id} reads one,
                                        GET /bakeoff/{id}/figure is its PNG; POST /bakeoff/{id}/resume runs
                                        again only the cells not finished

Errors are JSON {"detail": "..."} naming the problem.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.auth import bearer_auth, load_token, require_token, warn_if_open
from services.common.docs import offline_docs
from services.common.http_metrics import RequestMetricsMiddleware
from services.common.limits import BodyLimitMiddleware
from services.common.store import DatasetNotFound, Store
from services.trainer import jobs
from vjepa_robot_client.contract import (
    BakeoffList,
    BakeoffRecord,
    BakeoffRequest,
    BaselineEvalRequest,
    Compression,
    CreateDatasetRequest,
    DatasetInfo,
    DatasetList,
    ErrorResponse,
    EvalRequest,
    EvalResult,
    EvalTargets,
    ExpertName,
    FeatureSource,
    HealthResponse,
    RunCreated,
    RunList,
    RunRecord,
    StudyList,
    StudyRecord,
    Task,
    TrainerInfo,
    validate_name,
)
from vjepa_robot_lab.experiments.studies import aggregate
from vjepa_robot_lab.policies.shipped_experts import shipped_tasks
from vjepa_robot_lab.records.run_kinds import RUN_KINDS, trained_kinds
from vjepa_robot_lab.records.runs import RunStore, StoredStudy, default_runs_dir

log = logging.getLogger("vjepa_robot.trainer")
VERSION = "0.1.0"


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
    # VJEPA_ROBOT_COMPRESS: request bodies of every encoder client the trainer makes (evaluation, SAC, dataset
    # features). auto = zstd unless the encoder URL is loopback; set zstd when a loopback URL is really a tunnel to a
    # remote GPU (`ssh -L 8001:gpu-host:8001`), where raw frames (~197 KB per 8-env step at 256 px) cross a slow link.
    compress: Compression = Compression.auto


ERRORS = {
    400: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}


class TrainerMetrics:
    """Prometheus metrics of one trainer app (its own registry, so several apps can live in one process)."""

    def __init__(self, runs: RunStore):
        from prometheus_client import CollectorRegistry, Counter, Gauge
        from prometheus_client.core import GaugeMetricFamily

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vjepa_trainer_requests_total",
            "HTTP requests by method, route and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.eval_steps = Counter(
            "vjepa_trainer_eval_env_steps_total", "Simulator steps run by evaluations", registry=self.registry
        )
        self.eval_seconds = Counter(
            "vjepa_trainer_eval_seconds_total", "Wall time of evaluations (s)", registry=self.registry
        )
        self.eval_sps = Gauge(
            "vjepa_trainer_eval_steps_per_second", "Simulator steps/s of the latest evaluation", registry=self.registry
        )

        class _Jobs:  # counted from the run records at scrape time (so they survive restarts), parsing only the
            # run.json files that changed since the last scrape (RunStore.counts)
            def collect(self_inner):
                g = GaugeMetricFamily("vjepa_trainer_runs", "Runs by kind and status", labels=["kind", "status"])
                for (kind, status), n in sorted(runs.counts().items()):
                    g.add_metric([kind, status], n)
                yield g

        self.registry.register(_Jobs())

    def observe_request(self, method: str, route: str, status: str, seconds: float, body_bytes: int) -> None:
        self.requests.labels(method, route, status).inc()

    def on_eval(self, result: dict) -> None:
        sps, wall = result.get("steps_per_second"), result.get("wall_s")
        if sps:
            self.eval_sps.set(sps)
            if wall:
                self.eval_steps.inc(sps * wall)
                self.eval_seconds.inc(wall)


def create_app(settings: TrainerSettings | None = None) -> FastAPI:
    settings = settings or TrainerSettings()
    token = load_token(settings.token, settings.token_file)
    store = Store(settings.store)
    runs = RunStore(settings.runs or default_runs_dir(store.uri), frame_size=_frame_size(store))
    metrics = TrainerMetrics(runs)
    ctx = jobs.TrainerContext(
        store=store,
        runs=runs,
        encoder_url=settings.encoder_url,
        token=token,
        on_eval=metrics.on_eval,
        compress=settings.compress.value,
    )
    runner = jobs.JobRunner(settings.job_workers)
    dataset_claims = threading.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from services.trainer import recovery

        # the store's lease (StoreInUse: another live trainer has it), then what dead processes left is recorded
        # interrupted/failed once, here (services/trainer/recovery.py)
        lease = recovery.start(ctx, f"http://{settings.host}:{settings.port}")
        warn_if_open(settings.host, token, "the trainer service")
        log.info(
            "encoder requests: compress=%s (VJEPA_ROBOT_COMPRESS; auto = zstd unless the URL is loopback)",
            settings.compress.value,
        )
        yield
        ctx.stopping.set()  # in-flight encoder retries give up now (the SDK's cancel): jobs end `interrupted`
        try:
            runner.shutdown(runs)
        finally:
            recovery.stop(ctx, lease)

    app = FastAPI(
        title="vjepa-robot trainer", version=VERSION, lifespan=lifespan, responses=ERRORS, docs_url=None, redoc_url=None
    )
    app.state.ctx, app.state.runner, app.state.metrics = ctx, runner, metrics
    require_token(app, token)  # every path but services.common.auth.PUBLIC_PATHS (issue 19)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, observe=metrics.observe_request)
    offline_docs(app)
    auth = [Depends(bearer_auth(token))]

    @app.exception_handler(jobs.Refused)
    async def _refused(request: Request, exc: jobs.Refused):
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})

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

    @app.get("/info", response_model=TrainerInfo, dependencies=auth)
    def info():
        routes = sorted(
            f"{m} {r.path}"
            for r in app.routes
            if getattr(r, "include_in_schema", False)
            for m in sorted(getattr(r, "methods", ()) or ())
            if m != "HEAD"
        )
        return TrainerInfo(
            version=VERSION,
            store=store.uri,
            runs_dir=str(runs.root),
            encoder_url=settings.encoder_url,
            auth=token is not None,
            job_workers=settings.job_workers,
            run_kinds=list(RUN_KINDS),
            feature_sources=[f.value for f in FeatureSource],
            experts=[e.value for e in ExpertName],
            shipped_experts=list(shipped_tasks()),
            tasks=[t.value for t in Task],
            routes=routes,
        )

    @app.get("/metrics", dependencies=auth, response_class=Response)
    def prometheus_metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- datasets ------------------------------------------------------------------------------------------------

    @app.post("/datasets", status_code=202, response_model=DatasetInfo, dependencies=auth)
    def create_dataset(req: CreateDatasetRequest):
        from vjepa_robot_lab.data.datasets import (
            DatasetExists,
            DatasetSpec,
            claim_dataset,
            create_dataset,
            resolve_expert,
        )
        from vjepa_robot_lab.policies.run_experts import ExpertRefused

        try:  # a scripted expert on a task it cannot act on, or a run expert that cannot demonstrate it: 4xx
            spec, source = resolve_expert(
                DatasetSpec(
                    name=req.name,
                    expert=req.expert,
                    task=req.task.value,
                    episodes=req.episodes,
                    steps=req.steps,
                    seed=req.seed,
                    image_size=req.image_size,
                ),
                runs,
            )
        except ExpertRefused as exc:
            raise HTTPException(exc.status, detail=str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        key, stop = f"dataset:{req.name}", threading.Event()  # shutdown sets `stop`: generation ends `failed`
        with dataset_claims:  # check, claim and submit as one step: two POSTs never both generate one name
            if key in runner.active():
                raise HTTPException(409, detail=f"dataset {req.name!r} is being generated right now")
            # `running` (owned by this process) before answering, so a GET right after the 202 finds the dataset
            try:
                claim_dataset(spec, store, overwrite=req.overwrite, resume=req.resume)
            except DatasetExists as exc:
                hint = "" if "right now" in str(exc) else ' (send "resume": true to complete it, or "overwrite": true)'
                raise HTTPException(409, detail=f"{exc}{hint}") from None
            except ValueError as exc:  # resume with other arguments than the dataset was created with
                raise HTTPException(409, detail=str(exc)) from None

            def work():  # fills in the claim; records `failed` itself on any error or stop
                create_dataset(
                    spec, store, workers=req.workers, resume=True, progress=False, stop=stop, expert_source=source
                )

            def on_error(exc):
                meta = store.get_dataset_meta(req.name)
                if meta["status"] == "running":  # failed before create_dataset could record it
                    store.put_dataset_meta(req.name, "failed", {**meta, "error": f"{type(exc).__name__}: {exc}"})

            runner.submit(key, work, on_error, stop=stop)
        return DatasetInfo(**store.get_dataset_meta(req.name))

    @app.get("/datasets", response_model=DatasetList, dependencies=auth)
    def list_datasets():
        from vjepa_robot_lab.data.datasets import dataset_info

        return DatasetList(datasets=[DatasetInfo(**dataset_info(store, m["name"])) for m in store.list_datasets()])

    @app.get("/datasets/{name}", response_model=DatasetInfo, dependencies=auth)
    def get_dataset(name: str):
        from vjepa_robot_lab.data.datasets import dataset_info

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

    for kind in trained_kinds():  # POST /train/<kind> for every registered kind that trains (run_kinds.py)
        app.post(
            f"/train/{kind.name}",
            status_code=202,
            response_model=RunCreated,
            dependencies=auth,
            name=f"train_{kind.name}",
            summary=f"Train {kind.label}",
        )(_train_route(ctx, runner, kind.request))

    @app.get("/runs", response_model=RunList, dependencies=auth)
    def list_runs():
        return RunList(runs=runs.list())

    @app.get("/runs/{run_id}", response_model=RunRecord, dependencies=auth)
    def get_run(run_id: str):
        return jobs.get_record(ctx, run_id)

    @app.post("/runs/{run_id}/resume", status_code=202, response_model=RunRecord, dependencies=auth)
    def resume_run(run_id: str):
        return jobs.resume(ctx, runner, run_id)

    # -- studies -------------------------------------------------------------------------------------------------

    def study_record(study: StoredStudy) -> StudyRecord:
        return aggregate(study, [runs.get(r) for r in study.run_ids])

    @app.get("/studies", response_model=StudyList, dependencies=auth)
    def list_studies():
        return StudyList(studies=[study_record(s) for s in runs.list_studies()])

    @app.get("/studies/{study_id}", response_model=StudyRecord, dependencies=auth)
    def get_study(study_id: str):
        return study_record(jobs.get_study(ctx, study_id))

    @app.post("/studies/{study_id}/eval", status_code=202, response_model=StudyRecord, dependencies=auth)
    def eval_study(study_id: str, req: EvalRequest):
        return study_record(jobs.evaluate_study(ctx, runner, study_id, req))

    @app.post("/eval/study/{study_id}", status_code=202, response_model=StudyRecord, dependencies=auth)
    def eval_study_alias(study_id: str, req: EvalRequest):
        return study_record(jobs.evaluate_study(ctx, runner, study_id, req))

    # -- bake-off (issue 18 item 6) --------------------------------------------------------------------------------

    from services.trainer import bakeoff as _bakeoff

    # the encoders a bake-off may reach: --encoder-url plus VJEPA_ROBOT_ENCODER_URLS (issue 28 item 5)
    bakeoff_encoders = _bakeoff.configured_encoders(settings.encoder_url)

    @app.post("/bakeoff", status_code=202, response_model=BakeoffRecord, dependencies=auth)
    def start_bakeoff(req: BakeoffRequest):
        return _bakeoff.start(ctx, runner, req, allowed=bakeoff_encoders)

    @app.post("/bakeoff/{bakeoff_id}/resume", status_code=202, response_model=BakeoffRecord, dependencies=auth)
    def resume_bakeoff(bakeoff_id: str):
        return _bakeoff.resume(ctx, runner, bakeoff_id, allowed=bakeoff_encoders)

    @app.get("/bakeoff", response_model=BakeoffList, dependencies=auth)
    def list_bakeoffs():
        from services.trainer import bakeoff

        return BakeoffList(bakeoffs=bakeoff.list_all(ctx, runner))

    @app.get("/bakeoff/{bakeoff_id}", response_model=BakeoffRecord, dependencies=auth)
    def get_bakeoff(bakeoff_id: str):
        from services.trainer import bakeoff

        return bakeoff.get(ctx, runner, bakeoff_id)

    @app.get("/bakeoff/{bakeoff_id}/figure", response_class=Response, dependencies=auth)
    def bakeoff_figure(bakeoff_id: str):
        from services.trainer import bakeoff

        record = bakeoff.get(ctx, runner, bakeoff_id)
        if not record.figure_path or not Path(record.figure_path).is_file():
            raise HTTPException(409, detail=f"bake-off {bakeoff_id} is {record.status.value}: no figure yet")
        return Response(Path(record.figure_path).read_bytes(), media_type="image/png")

    # -- evaluation ----------------------------------------------------------------------------------------------

    @app.post("/eval/baseline", status_code=202, response_model=EvalResult, dependencies=auth)
    def eval_baseline(req: BaselineEvalRequest):
        return jobs.evaluate_baseline(ctx, runner, req)

    @app.post("/eval/{run_id}", status_code=202, response_model=EvalResult, dependencies=auth)
    def eval_run(run_id: str, req: EvalRequest):
        return jobs.evaluate_run(ctx, runner, run_id, req)

    @app.get("/eval/{run_id}", response_model=EvalResult, dependencies=auth)
    def get_eval(run_id: str, targets: EvalTargets | None = None):
        """The latest evaluation; ?targets=stratified|uniform: the latest one run with those targets."""
        record = jobs.get_record(ctx, run_id)
        evals = record.evaluations
        if targets is not None:  # evaluations recorded before `targets` existed ran dm_control's uniform draw
            evals = [e for e in evals if ((e.request or {}).get("targets") or "uniform") == targets.value]
        if not evals:
            which = f" with targets={targets.value}" if targets is not None else ""
            raise HTTPException(
                404,
                detail=f"run {run_id} has no evaluation{which} yet: POST /eval/{run_id}"
                + (f' with {{"targets": "{targets.value}"}}' if targets is not None else "")
                + " first",
            )
        return evals[-1]

    return app


def _train_route(ctx, runner, request_model):
    """The route body of POST /train/<kind>: its request model is the kind's (so OpenAPI documents it)."""

    def train(req):
        return jobs.train(ctx, runner, req)

    train.__annotations__ = {"req": request_model}
    return train


def _frame_size(store: Store):
    """A dataset's frame size, for migrating run records written before lineage.image_size (runs.migrate)."""

    def frame_size(name: str) -> int | None:
        try:
            return store.get_dataset_meta(name).get("image_size")
        except (DatasetNotFound, ValueError):
            return None

    return frame_size


def _valid_name(name: str) -> None:
    try:
        validate_name(name, "dataset name")
    except ValueError as exc:  # 422 like every other validation error, and like the encoder's /datasets routes
        raise HTTPException(422, detail=str(exc)) from None
