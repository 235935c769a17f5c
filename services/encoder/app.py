"""The encoder service's routes: thin - validate, call one function, return.

    GET  /healthz                    200 {"status": "ok"} (no auth)
    GET  /info                       EncoderInfo
    POST /encode                     .npy (B, 8, H, W, 3) or (8, H, W, 3) uint8 -> JSON EncodeResponse, or .npy (B, D)
                                     float32 with `Accept: application/x-npy`; ?pool=grid&grid_size=4 (also time,
                                     layers, dtype: services/encoder/pooling.py) -> (B, g*g, D') float16 token grids
    POST /datasets/{name}/encode     start (or join) the background job embedding a dataset -> 202 DatasetEncodeStatus
    GET  /datasets/{name}/encode     its progress: status, done, total
    POST /streams                    {"envs", "height", "width"[, "pool", "grid_size"]} -> 201 {"stream_id", "envs",
                                     "ttl_s", "encoder_id"}
    POST /streams/{id}/step          .npy (N, H, W, 3) uint8, the newest frame per env, ?reset=i,j -> like /encode
    DELETE /streams/{id}             204
    GET  /metrics                    Prometheus text format
    GET  /docs, /openapi.json        the API page and its schema (public, like /healthz: services/common/auth.py)

/encode and stream steps accept `Content-Encoding: zstd` or `gzip`; the body limit applies to the decompressed size.

Errors are JSON {"detail": "..."} naming the problem and the fix. Routes raise the domain's own exceptions (QueueFull,
EncoderStopped, StreamNotFound, BodyTooLarge, ...); one handler maps them to status codes (ERROR_STATUS below).
`detail` is always one string, and a 422 names the fields, never echoing their values (services/common/http_errors.py).
JSON bodies are refused above VJEPA_ROBOT_MAX_JSON_BODY_BYTES (1 MiB; 413 naming the limit, services/common/limits.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.common.auth import bearer_auth, require_token, warn_if_open
from services.common.docs import offline_docs
from services.common.http_errors import install_error_handlers
from services.common.http_metrics import RequestMetricsMiddleware
from services.common.limits import BodyLimitMiddleware
from services.common.store import DatasetNotFound
from services.encoder.batcher import DynamicBatcher, EmbedTimeout, EncoderStopped, ForwardFailed, QueueFull
from services.encoder.jobs import DatasetJobs, EmbeddingMeta
from services.encoder.pooling import (
    PoolingBatchers,
    PoolingError,
    TooManyPoolings,
    check_served,
    pooling_from_query,
)
from services.encoder.settings import EncoderSettings
from services.encoder.streams import (
    BodyTooLarge,
    StreamInputError,
    StreamNotFound,
    StreamRegistry,
    StreamsFull,
    decompress,
    parse_reset,
)
from services.encoder.wire import BodyBuffers, Lease, LongerThanDeclared, read_into
from vjepa_robot_client.contract import (
    DEFAULT_GRID_SIZE,
    EMBEDDING_DTYPE_HEADER,
    NPY_MEDIA_TYPE,
    WINDOW_FRAMES,
    DatasetEncodeRequest,
    DatasetEncodeStatus,
    EncodeResponse,
    EncoderInfo,
    ErrorResponse,
    HealthResponse,
    NpyError,
    PoolingSpec,
    StreamCreated,
    StreamCreateRequest,
    from_npy_bytes,
    to_npy_bytes,
    validate_name,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1
ACCEPTED_BODY_TYPES = (NPY_MEDIA_TYPE, "application/octet-stream")
EXAMPLE = "np.save(buf, np.zeros((4, 8, 256, 256, 3), np.uint8))"


# ----------------------------------------------------------------------------------------------------------------
# Request parsing: plain functions
# ----------------------------------------------------------------------------------------------------------------


def parse_windows(body: bytes | memoryview, frames: int = WINDOW_FRAMES) -> np.ndarray:
    """A .npy body -> (B, frames, H, W, 3) uint8 (a view of the body, no copy). Raises HTTPException (400/422)."""
    try:
        arr = from_npy_bytes(body)
    except NpyError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"{exc} (e.g. {EXAMPLE})") from None
    if arr.ndim == 4:
        arr = arr[None]  # one window (8, H, W, 3) -> (1, 8, H, W, 3)
    if arr.ndim != 5:
        raise HTTPException(
            422,
            detail=f"wrong ndim: expected (B, {frames}, H, W, 3) or one window ({frames}, H, W, 3), "
            f"got shape {tuple(arr.shape)} ({arr.ndim}-d)",
        )
    if arr.dtype != np.uint8:
        raise HTTPException(
            422, detail=f"wrong dtype {arr.dtype}: frames must be uint8 RGB (0-255); use arr.astype(np.uint8)"
        )
    if arr.shape[0] == 0:
        raise HTTPException(422, detail="empty batch: the array holds 0 windows; send at least one (B >= 1)")
    if arr.shape[1] != frames:
        raise HTTPException(
            422,
            detail=f"wrong number of frames: each window needs {frames} frames, got {arr.shape[1]} "
            f"(shape {tuple(arr.shape)})",
        )
    if arr.shape[-1] != 3:
        raise HTTPException(
            422, detail=f"last axis must be 3 (RGB, channels last), got {arr.shape[-1]} (shape {tuple(arr.shape)})"
        )
    if arr.shape[2] == 0 or arr.shape[3] == 0:
        raise HTTPException(422, detail=f"empty frames: height and width must be >= 1, got shape {tuple(arr.shape)}")
    return arr


async def read_body(request: Request, limit: int, lease: Lease | None = None) -> bytes | memoryview:
    """The request body, refusing (413) anything over `limit` bytes by Content-Length or by what is actually read.

    With a `lease` and a Content-Length, the body is copied once into a reused buffer (services/encoder/wire.py)
    and a view of it is returned; it stays valid until the lease ends.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise HTTPException(400, detail=f"invalid Content-Length header {declared!r}") from None
        if n > limit:
            raise HTTPException(
                413, detail=f"body too large: {n} bytes > limit {limit} bytes; send fewer windows per request"
            )
        if lease is not None:
            return await read_into(request.stream(), n, lease)  # LongerThanDeclared -> 400 (ERROR_STATUS)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(
                413, detail=f"body too large: over the limit of {limit} bytes; send fewer windows per request"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_npy_body(request: Request, limit: int, lease: Lease | None = None) -> bytes | memoryview:
    """A .npy request body: Content-Type checked, read within `limit`, Content-Encoding (zstd, gzip) decoded with the
    same limit on the decompressed size (a zip bomb stops at the limit: 413)."""
    ctype = request.headers.get("content-type", NPY_MEDIA_TYPE).split(";")[0].strip().lower()
    if ctype not in ACCEPTED_BODY_TYPES:
        raise HTTPException(415, detail=f"unsupported Content-Type {ctype!r}: send a .npy body as {NPY_MEDIA_TYPE}")
    encoding = request.headers.get("content-encoding")
    body = await read_body(request, limit, lease)
    if not encoding or encoding.strip().lower() == "identity":
        return body
    return await asyncio.to_thread(decompress, body, encoding, limit)  # BodyTooLarge 413, StreamInputError 4xx


_STEP = re.compile(r"/streams/[^/]+/step")


def npy_route(method: str, path: str) -> bool:
    """The routes whose body is .npy frames (bounded by settings.max_body_bytes in read_body, not the JSON limit)."""
    return method == "POST" and (path == "/encode" or _STEP.fullmatch(path) is not None)


def wants_npy(request: Request) -> bool:
    return NPY_MEDIA_TYPE in request.headers.get("accept", "")


def embeddings_response(request: Request, emb: np.ndarray, pooling: PoolingSpec | None = None) -> Response:
    """(B, D) float32 (mean) or (B, G, D') grids as .npy (Accept: application/x-npy) or as a JSON EncodeResponse.

    X-Embedding-Dtype names the .npy's dtype (float16 grids unless dtype=float32); X-Encoder-Id is the pooling's id.
    """
    enc = request.app.state.encoder
    grid = pooling is not None and pooling.is_grid
    encoder_id = pooling.encoder_id(enc.encoder_id) if grid else enc.encoder_id
    if wants_npy(request):
        headers = {"X-Encoder-Id": encoder_id, EMBEDDING_DTYPE_HEADER: str(emb.dtype)}
        if grid:
            headers["X-Pooling"] = pooling.tag()
        return Response(to_npy_bytes(emb), media_type=NPY_MEDIA_TYPE, headers=headers)
    if grid:
        body = json.dumps(
            {
                "encoder_id": encoder_id,
                "dim": int(emb.shape[-1]),
                "shape": list(emb.shape),
                "pooling": pooling.tag(),
                "embeddings": emb.astype(np.float32).tolist(),
            }
        )
        return Response(body, media_type="application/json")
    body = json.dumps({"encoder_id": enc.encoder_id, "dim": int(emb.shape[1]), "embeddings": emb.tolist()})
    return Response(body, media_type="application/json")


def request_pooling(
    request: Request,
    pool: str | None,
    grid_size: int | None,
    time_reduction: str | None = None,
    layers: Any = None,
    dtype: str | None = None,
) -> PoolingSpec:
    """A request's pooling, checked against the loaded encoder: 422 naming the choices or the limits."""
    spec = pooling_from_query(pool, grid_size, time_reduction, layers, dtype)  # PoolingError -> 422 (ERROR_STATUS)
    return check_served(request.app.state.encoder, spec)


_POOL_QUERY = {
    "pool": Query("mean", description="mean (default: (B, D) float32, unchanged) or grid ((B, g*g, D') tokens)."),
    "grid_size": Query(
        DEFAULT_GRID_SIZE, description="pool=grid: g, the side of the pooled token grid (<= the token grid's h)."
    ),
    "time": Query(
        None, alias="time", description="pool=grid: fold the T' temporal token slices by `mean` (default) or `last`."
    ),
    "layers": Query(
        None,
        description="pool=grid: comma-separated 0-based blocks concatenated on D, e.g. "
        "17,19,21,23 (default: the last hidden state).",
    ),
    "dtype": Query(None, description="pool=grid: float16 (default) or float32 answers."),
}


async def _sweep_streams(streams: StreamRegistry, metrics: Metrics) -> None:
    """Drop idle streams even when no request arrives to trigger the lazy check."""
    while True:
        await asyncio.sleep(min(30.0, max(0.05, streams.ttl_s / 4)))
        streams.expire()
        metrics.streams.set(len(streams))


# ----------------------------------------------------------------------------------------------------------------
# Metrics: one registry per app (tests build many apps in one process)
# ----------------------------------------------------------------------------------------------------------------


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vjepa_encoder_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vjepa_encoder_request_latency_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "vjepa_encoder_batch_size",
            "Windows per forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.queue = Gauge("vjepa_encoder_queue_depth", "Requests waiting for a forward pass.", registry=self.registry)
        self.request_bytes = Counter(
            "vjepa_encoder_request_bytes",
            "Request body bytes received, by route, as they came over the wire (before any decompression).",
            ["route"],
            registry=self.registry,
        )
        self.streams = Gauge("vjepa_encoder_streams", "Open frame streams.", registry=self.registry)
        self.body_pool = Gauge(
            "vjepa_encoder_body_pool_idle_bytes",
            "Bytes of idle request-body buffers kept for reuse (bounded by VJEPA_ROBOT_BODY_POOL_BYTES / _BUFFERS).",
            registry=self.registry,
        )

    # BatchObserver
    def observe_request(self, method: str, route: str, status: str, seconds: float, body_bytes: int) -> None:
        if body_bytes:
            self.request_bytes.labels(route).inc(body_bytes)
        self.requests.labels(method, route, status).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def queue_depth(self, depth: int) -> None:
        self.queue.set(depth)


# ----------------------------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 422, 503)
}

# The one mapping of the encoder's domain errors to HTTP answers (the trainer has its own for jobs.Refused). A class
# matches its subclasses too (Starlette looks handlers up along the exception's MRO). StreamInputError carries its
# own 4xx. The ones in RETRY_LATER tell the client when to come back; the SDK's retry policy honours Retry-After.
ERROR_STATUS: dict[type[Exception], int] = {
    QueueFull: 503,  # the batcher's queue is at max_queue
    EncoderStopped: 503,  # shutting down: the work would never run
    StreamsFull: 503,  # stream count or stream memory at its bound
    StreamNotFound: 404,
    DatasetNotFound: 404,
    BodyTooLarge: 413,
    LongerThanDeclared: 400,
    StreamInputError: 422,  # its status_code wins (415 unknown encoding, 400 corrupt body, 422 wrong shape)
    ForwardFailed: 500,  # the model raised, or returned the wrong number of rows
    EmbedTimeout: 504,
    PoolingError: 422,  # unknown pool / time / dtype, grid_size over the token grid, a block that does not exist
    TooManyPoolings: 503,  # every one of PoolingBatchers.max_specs grid batchers busy: none can be evicted yet
}
RETRY_LATER = (QueueFull, EncoderStopped, StreamsFull, TooManyPoolings)


def error_response(request: Request, exc: Exception) -> JSONResponse:
    """JSON {"detail"} with the status ERROR_STATUS gives the exception's class (or its own status_code)."""
    code = getattr(exc, "status_code", None) or next(
        (ERROR_STATUS[c] for c in type(exc).__mro__ if c in ERROR_STATUS), 500
    )
    if code >= 500 and not isinstance(exc, RETRY_LATER):
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, RETRY_LATER) else None
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)


def create_app(settings: EncoderSettings | None = None, encoder: Any = None) -> FastAPI:
    """Build the service. `encoder` (anything with encode/encoder_id/dim/...) skips loading a model (tests)."""
    settings = settings or EncoderSettings()
    token = settings.resolved_token()
    warn_if_open(settings.host, token, "the encoder service")
    auth = Depends(bearer_auth(token))
    metrics = Metrics()
    bodies = BodyBuffers(keep=settings.body_pool_buffers, max_bytes=settings.body_pool_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        enc = encoder
        if enc is None:
            from services.encoder.model import load_encoder

            enc = await asyncio.to_thread(
                load_encoder,
                settings.preset,
                settings.model,
                settings.revision,
                device=settings.device,
                num_threads=settings.threads,
                compile=settings.compile,
                warmup_upto=settings.max_batch,
                family=settings.family,
                fusion=settings.fusion,
            )
        log.info("encoder %s ready: %s", enc.encoder_id, enc.info())
        batcher = DynamicBatcher(
            enc.encode,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            observer=metrics,
        )
        await batcher.start()
        loop = asyncio.get_running_loop()

        def embed_via_batcher(windows: np.ndarray) -> np.ndarray:
            """Dataset jobs (a worker thread) share the batcher, so forward passes never overlap. Bounded: a full
            queue is waited out for at most embed_timeout_s, and stop() ends the wait (EncoderStopped), so a job
            never holds up shutdown; the job then reads `failed` and a re-run resumes where it stopped."""
            return batcher.submit_from_thread(windows, loop, timeout=settings.embed_timeout_s)

        app.state.encoder = enc
        app.state.batcher = batcher
        # grid poolings: one batcher each, made like the mean one (services/encoder/pooling.py)
        poolers = PoolingBatchers(
            batcher,
            lambda fn: DynamicBatcher(
                fn,
                max_batch=settings.max_batch,
                max_wait_ms=settings.max_wait_ms,
                max_queue=settings.max_queue,
                observer=metrics,
            ),
            enc.encode,
            max_specs=settings.max_poolings,
        )
        app.state.poolers = poolers

        def embed_pooled(windows: np.ndarray, spec: PoolingSpec) -> np.ndarray:
            """embed_via_batcher at a pooling: a grid goes to its own batcher, with the same bounds."""
            if not spec.is_grid:
                return embed_via_batcher(windows)
            return poolers.submit_from_thread(windows, spec, loop, settings.embed_timeout_s)

        app.state.jobs = DatasetJobs(settings.store, embed_pooled, lambda spec: EmbeddingMeta.of(enc, spec))
        app.state.streams = StreamRegistry(
            device=str(getattr(enc, "device", "cpu")),
            ttl_s=settings.stream_ttl_s,
            max_streams=settings.max_streams,
            max_bytes=settings.max_stream_bytes,
            max_body_bytes=settings.max_body_bytes,
        )
        sweeper = asyncio.create_task(_sweep_streams(app.state.streams, metrics), name="stream-sweeper")
        try:
            yield
        finally:
            sweeper.cancel()
            app.state.streams.clear()
            await poolers.stop(grace_s=settings.shutdown_grace_s)
            await batcher.stop(grace_s=settings.shutdown_grace_s)

    app = FastAPI(
        title="vjepa-robot encoder",
        version="0.1.0",
        description="Frozen V-JEPA 2 behind POST /encode, dynamically batched; embeds datasets into LanceDB.",
        lifespan=lifespan,
        docs_url=None,  # offline_docs below serves /docs with local assets
        redoc_url=None,
    )
    offline_docs(app)
    require_token(app, token)  # every path but services.common.auth.PUBLIC_PATHS
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.bodies = bodies
    metrics.body_pool.set_function(bodies.idle_bytes)  # read at each scrape
    install_error_handlers(app)  # 422s that never echo the body (NaN included); every detail a string
    for exc_class in ERROR_STATUS:
        app.add_exception_handler(exc_class, error_response)
    # JSON bodies are bounded here; the .npy frames routes read theirs within settings.max_body_bytes (read_body)
    app.add_middleware(
        BodyLimitMiddleware, limit=settings.max_json_body_bytes, env="VJEPA_ROBOT_MAX_JSON_BODY_BYTES", exempt=npy_route
    )
    app.add_middleware(RequestMetricsMiddleware, observe=metrics.observe_request)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception):  # still JSON, still naming the problem
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/healthz", response_model=HealthResponse, tags=["ops"])
    async def healthz() -> HealthResponse:
        return HealthResponse()

    @app.get("/info", response_model=EncoderInfo, dependencies=[auth], responses=_ERRORS, tags=["encoder"])
    async def info(request: Request) -> EncoderInfo:
        return EncoderInfo(**request.app.state.encoder.info(), max_batch=settings.max_batch)

    @app.post(
        "/encode",
        response_model=EncodeResponse,
        dependencies=[auth],
        responses={
            **_ERRORS,
            200: {"content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                "description": "A .npy uint8 array (B, 8, H, W, 3) or one window (8, H, W, 3).",
            }
        },
        tags=["encoder"],
    )
    async def encode(
        request: Request,
        pool: str = _POOL_QUERY["pool"],
        grid_size: int = _POOL_QUERY["grid_size"],
        time_reduction: str | None = _POOL_QUERY["time"],
        layers: str | None = _POOL_QUERY["layers"],
        dtype: str | None = _POOL_QUERY["dtype"],
    ):
        spec = request_pooling(request, pool, grid_size, time_reduction, layers, dtype)  # 422 before the body
        with bodies.lease() as lease:  # the windows are a view of a reused buffer until this block ends
            windows = parse_windows(
                await read_npy_body(request, settings.max_body_bytes, lease), request.app.state.encoder.frames
            )
            emb = await request.app.state.poolers.submit(windows, spec)  # (B, D) float32 or (B, G, D') grids
        return embeddings_response(request, emb, spec)

    # -- frame streams (services/encoder/streams.py) ------------------------------------------------------------

    @app.post(
        "/streams",
        response_model=StreamCreated,
        status_code=201,
        dependencies=[auth],
        responses=_ERRORS,
        tags=["streams"],
    )
    async def create_stream(request: Request, req: StreamCreateRequest) -> StreamCreated:
        """Open a frame stream: the encoder keeps each env's last 8 frames; each step sends one frame per env."""
        streams: StreamRegistry = request.app.state.streams
        spec = request_pooling(request, req.pool.value, req.grid_size, req.time, req.layers, req.dtype)
        s = streams.create(req.envs, req.height, req.width, pooling=spec)
        metrics.streams.set(len(streams))
        return StreamCreated(
            stream_id=s.stream_id,
            envs=s.envs,
            ttl_s=streams.ttl_s,
            encoder_id=spec.encoder_id(request.app.state.encoder.encoder_id),
        )

    @app.post(
        "/streams/{stream_id}/step",
        response_model=EncodeResponse,
        dependencies=[auth],
        responses={**_ERRORS, 200: {"content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                "description": "A .npy uint8 array (N, H, W, 3): the newest frame of each of the stream's N envs "
                "(or full windows (N, 8, H, W, 3) to resynchronise a re-created stream).",
            }
        },
        tags=["streams"],
    )
    async def stream_step(
        request: Request,
        stream_id: str,
        reset: str | None = Query(
            None,
            description="Comma-separated env indices whose frame starts a new episode "
            "(that frame fills the env's window). Envs without a frame yet count as reset.",
            examples=["0,3"],
        ),
    ):
        streams: StreamRegistry = request.app.state.streams
        s = streams.get(stream_id)
        body = await read_npy_body(request, settings.max_body_bytes)
        try:
            frames = from_npy_bytes(body)
        except NpyError as exc:
            raise HTTPException(
                400, detail=f"{exc} (e.g. np.save(buf, np.zeros(({s.envs}, {s.height}, {s.width}, 3), np.uint8)))"
            ) from None
        emb = await s.step(frames, parse_reset(reset, s.envs), request.app.state.poolers.submitter(s.pooling))
        return embeddings_response(request, emb, s.pooling)

    @app.delete(
        "/streams/{stream_id}",
        status_code=204,
        dependencies=[auth],
        responses=_ERRORS,
        tags=["streams"],
        response_class=Response,
    )
    async def delete_stream(request: Request, stream_id: str) -> Response:
        request.app.state.streams.delete(stream_id)
        metrics.streams.set(len(request.app.state.streams))
        return Response(status_code=204)

    def _dataset_name(name: str) -> str:
        try:
            return validate_name(name, "dataset name")
        except ValueError as exc:
            raise HTTPException(422, detail=str(exc)) from None

    @app.post(
        "/datasets/{name}/encode",
        response_model=DatasetEncodeStatus,
        status_code=202,
        dependencies=[auth],
        responses=_ERRORS,
        tags=["datasets"],
    )
    async def encode_dataset(request: Request, name: str, req: DatasetEncodeRequest | None = Body(None)):
        name = _dataset_name(name)
        req = req or DatasetEncodeRequest()
        spec = request_pooling(request, req.pool.value, req.grid_size, req.time, req.layers, req.dtype)
        return await asyncio.to_thread(request.app.state.jobs.start, name, req.batch_size, spec)

    @app.get(
        "/datasets/{name}/encode",
        response_model=DatasetEncodeStatus,
        dependencies=[auth],
        responses=_ERRORS,
        tags=["datasets"],
    )
    async def dataset_encode_status(
        request: Request,
        name: str,
        pool: str = _POOL_QUERY["pool"],
        grid_size: int = _POOL_QUERY["grid_size"],
        time_reduction: str | None = _POOL_QUERY["time"],
        layers: str | None = _POOL_QUERY["layers"],
        dtype: str | None = _POOL_QUERY["dtype"],
    ):
        name = _dataset_name(name)
        spec = request_pooling(request, pool, grid_size, time_reduction, layers, dtype)
        return await asyncio.to_thread(request.app.state.jobs.status, name, spec)

    @app.get("/metrics", dependencies=[auth], tags=["ops"], response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
