"""The SDK against real HTTP servers on loopback (uvicorn in a thread): retries, backoff, typed errors, sync + async.

The servers here are tiny real FastAPI apps that follow the wire contract and misbehave on purpose (503 first,
not listening yet, slow, wrong token). The SDK against the real encoder app is in test_sdk_encoder.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from _servers import free_port, serve_app
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from vjepa_robot_client import (
    AsyncEncoderClient,
    AsyncTrainerClient,
    BadRequest,
    ConnectionFailed,
    EncoderClient,
    NotFound,
    RequestTimeout,
    ServerError,
    ServiceUnavailable,
    TrainerClient,
    Unauthorized,
    VjepaRobotError,
    WaitTimeout,
)
from vjepa_robot_client._transport import parse_retry_after
from vjepa_robot_client.contract import NPY_MEDIA_TYPE, RunStatus, from_npy_bytes, to_npy_bytes

D = 4


def flaky_encoder(busy: int = 2, retry_after: str = "0", token: str | None = None) -> FastAPI:
    """A contract-following encoder stub: answers 503 + Retry-After to its first `busy` /encode calls.

    Its embedding of a window is the per-channel mean of its frames, padded to D, so answers are checkable."""
    app = FastAPI()
    app.state.hits = 0

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if token and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"detail": "missing or wrong bearer token: pass token=..."}, status_code=401)
        return await call_next(request)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/encode")
    async def encode(request: Request):
        app.state.hits += 1
        if app.state.hits <= busy:
            return JSONResponse(
                {"detail": "queue full, retry later"}, status_code=503, headers={"Retry-After": retry_after}
            )
        frames = from_npy_bytes(await request.body())
        if frames.ndim != 5:
            return JSONResponse({"detail": f"frames must be (B, T, H, W, 3), got {frames.shape}"}, status_code=400)
        emb = np.zeros((frames.shape[0], D), np.float32)
        emb[:, :3] = frames.astype(np.float32).mean(axis=(1, 2, 3))
        if request.headers.get("accept") == NPY_MEDIA_TYPE:
            return Response(to_npy_bytes(emb), media_type=NPY_MEDIA_TYPE, headers={"X-Encoder-Id": "stub-1"})
        return {"encoder_id": "stub-1", "dim": D, "embeddings": emb.tolist()}

    @app.get("/datasets/{name}/encode")
    def status(name: str):
        return JSONResponse({"detail": f"dataset {name!r} not found: create it first"}, status_code=404)

    @app.get("/info")
    def info():
        return JSONResponse({"detail": "boom: model not loaded"}, status_code=500)

    @app.post("/slow")
    def slow():
        app.state.hits += 1
        time.sleep(1.0)
        return {}

    return app


def frames_batch(b: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(b, 8, 16, 16, 3), dtype=np.uint8)


def expected(frames: np.ndarray) -> np.ndarray:
    out = np.zeros((frames.shape[0], D), np.float32)
    out[:, :3] = frames.astype(np.float32).mean(axis=(1, 2, 3))
    return out


# ----------------------------------------------------------------------------------------------------------------


def test_sdk_import_pulls_no_torch():
    code = (
        "import sys, vjepa_robot_client as c; c.EncoderClient; c.AsyncTrainerClient; "
        "heavy = [m for m in ('torch', 'dm_control', 'mujoco', 'lancedb', 'transformers', 'fastapi', 'services') "
        "if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_retries_503_then_succeeds_sync():
    app = flaky_encoder(busy=2)
    with serve_app(app) as url, EncoderClient(url, retries=3, backoff=0.01) as enc:
        frames = frames_batch()
        emb = enc.encode(frames)
        assert emb.dtype == np.float32 and emb.shape == (3, D) and emb.flags.writeable
        np.testing.assert_allclose(emb, expected(frames), rtol=1e-6)
        assert enc.retry_count == 2 and app.state.hits == 3
        assert enc.last_encoder_id == "stub-1"
        # one window (T, H, W, 3) -> (1, D)
        assert enc.encode(frames[0]).shape == (1, D)


def test_retry_after_is_honoured():
    app = flaky_encoder(busy=1, retry_after="1")
    with serve_app(app) as url, EncoderClient(url, retries=2, backoff=0.001) as enc:
        t0 = time.monotonic()
        enc.encode(frames_batch(1))
        assert time.monotonic() - t0 >= 0.9  # waited the server's Retry-After, not the 1 ms backoff
        assert enc.retry_count == 1


def test_503_exhausts_retries_into_typed_error():
    app = flaky_encoder(busy=100)
    with serve_app(app) as url, EncoderClient(url, retries=2, backoff=0.01) as enc:
        with pytest.raises(ServiceUnavailable) as err:
            enc.encode(frames_batch(1))
        assert err.value.status_code == 503 and "queue full" in str(err.value)
        assert app.state.hits == 3 and enc.retry_count == 2


def test_connection_refused_then_server_starts():
    port = free_port()
    app = flaky_encoder(busy=0)
    started = threading.Event()
    stop = threading.Event()

    def late_server():
        time.sleep(0.6)  # nothing listens on `port` for the first 0.6 s
        with serve_app(app, port=port):
            started.set()
            stop.wait(20)

    thread = threading.Thread(target=late_server, daemon=True)
    thread.start()
    try:
        with EncoderClient(f"http://127.0.0.1:{port}", retries=10, backoff=0.1, max_backoff=0.5) as enc:
            t0 = time.monotonic()
            emb = enc.encode(frames_batch(2))
            # answered only once the late server listened (>= 0.6 s in); `started` is set by the server's thread just
            # after it listens, which can come a moment after it has already served this request: wait for it
            assert emb.shape == (2, D) and time.monotonic() - t0 >= 0.5 and started.wait(5)
            assert enc.retry_count >= 1  # the first attempts were refused
    finally:
        stop.set()
        thread.join(10)


def test_connection_failed_after_retries():
    with EncoderClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01) as enc:
        with pytest.raises(ConnectionFailed, match="is the service running"):
            enc.health()
        assert enc.retry_count == 2


def test_typed_errors_carry_server_detail():
    with serve_app(flaky_encoder(busy=0, token="s3cret")) as url:
        with EncoderClient(url, token="wrong", retries=0) as bad:
            with pytest.raises(Unauthorized) as err:
                bad.health()
            assert err.value.status_code == 401 and "bearer token" in err.value.detail
        with EncoderClient(url, token="s3cret", retries=3, backoff=0.01) as enc:
            assert enc.health().status == "ok"
            with pytest.raises(NotFound, match="create it first"):
                enc.dataset_encode_status("nope")
            with pytest.raises(ServerError, match="model not loaded") as err:
                enc.info()
            assert not isinstance(err.value, ServiceUnavailable) and enc.retry_count == 0  # 500 is not retried
            assert isinstance(err.value, VjepaRobotError)
            with pytest.raises(ValueError, match="uint8"):
                enc.encode(np.zeros((8, 16, 16, 3), np.float32))  # refused before sending
            with pytest.raises(ValueError, match=r"\(B, T, H, W, 3\)"):
                enc.encode(np.zeros((16, 16, 3), np.uint8))
            with pytest.raises(ValueError, match="invalid dataset name"):
                enc.encode_dataset("../etc")


def test_read_timeout_is_not_retried():
    app = flaky_encoder(busy=0)
    with serve_app(app) as url, EncoderClient(url, timeout=0.3, retries=3, backoff=0.01) as enc:
        with pytest.raises(RequestTimeout, match="timeout"):
            enc.request("POST", "/slow")
        assert app.state.hits == 1 and enc.retry_count == 0  # a POST is never sent twice


def test_async_encoder_retries_and_concurrency():
    app = flaky_encoder(busy=2)

    async def main(url):
        async with AsyncEncoderClient(url, retries=4, backoff=0.01) as enc:
            batches = [frames_batch(b) for b in (1, 2, 3, 4)]
            out = await asyncio.gather(*(enc.encode(f) for f in batches))
            for f, e in zip(batches, out):
                np.testing.assert_allclose(e, expected(f), rtol=1e-6)
            assert enc.retry_count == 2
            with pytest.raises(NotFound):
                await enc.dataset_encode_status("missing")
            return (await enc.health()).status

    with serve_app(app) as url:
        assert asyncio.run(main(url)) == "ok"


def test_async_connection_refused_then_server_starts():
    port = free_port()
    stop = threading.Event()

    def late_server():
        time.sleep(0.5)
        with serve_app(flaky_encoder(busy=0), port=port):
            stop.wait(20)

    thread = threading.Thread(target=late_server, daemon=True)
    thread.start()

    async def main():
        async with AsyncEncoderClient(f"http://127.0.0.1:{port}", retries=10, backoff=0.1, max_backoff=0.5) as enc:
            emb = await enc.encode(frames_batch(1)[0])
            return emb.shape, enc.retry_count

    try:
        shape, retries = asyncio.run(main())
        assert shape == (1, D) and retries >= 1
    finally:
        stop.set()
        thread.join(10)


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: retry now


# ----------------------------------------------------------------------------------------------------------------
# TrainerClient polling logic against a contract stub whose run advances on every GET
# (the real trainer app is exercised by test_sdk_trainer.py)
# ----------------------------------------------------------------------------------------------------------------


def stepping_trainer() -> FastAPI:
    app = FastAPI()
    app.state.polls = 0
    app.state.bodies = []

    @app.post("/train/bc", status_code=202)
    async def train_bc(request: Request):
        app.state.bodies.append(await request.json())
        return {"run_id": "bc-0001"}

    @app.get("/runs/{run_id}")
    def run(run_id: str):
        if run_id != "bc-0001":
            return JSONResponse({"detail": f"run {run_id!r} not found"}, status_code=404)
        app.state.polls += 1
        epoch = min(app.state.polls, 3)
        status = "succeeded" if app.state.polls >= 4 else "running"
        return {
            "run_id": run_id,
            "kind": "bc",
            "status": status,
            "config": {"epochs": 3},
            "metrics": {"epoch": epoch, "train_loss": 0.1, "new_field": [1, 2]},
        }

    @app.post("/eval/{run_id}", status_code=202)
    async def evaluate(run_id: str, request: Request):
        body = await request.json()
        app.state.bodies.append(body)
        return {"run_id": run_id, "eval_id": 1, "status": "queued"}

    @app.get("/eval/{run_id}")
    def eval_result(run_id: str):
        return {
            "run_id": run_id,
            "eval_id": 1,
            "status": "succeeded",
            "success_rate": 0.5,
            "episodes": [{"seed": 1, "success": True, "return": 10.0}],
        }

    @app.post("/datasets", status_code=202)
    def create():
        return JSONResponse({"detail": [{"loc": ["body", "episodes"], "msg": "must be > 0"}]}, status_code=422)

    return app


def test_trainer_wait_and_eval_sync():
    app = stepping_trainer()
    with serve_app(app) as url, TrainerClient(url, retries=0) as tr:
        run_id = tr.train_bc("jacobian-easy-30", features="state", epochs=3, lr=3e-4)
        assert run_id == "bc-0001"
        assert app.state.bodies[0]["features"] == "state" and app.state.bodies[0]["lr"] == 3e-4
        record = tr.wait(run_id, progress=True, poll_interval=0.01)
        assert record.status == RunStatus.succeeded and app.state.polls == 4
        assert record.metrics["new_field"] == [1, 2]  # responses may grow fields
        queued = tr.evaluate(run_id, episodes=5, parallel_envs=2)
        assert queued.status == RunStatus.queued and app.state.bodies[1]["episodes"] == 5
        result = tr.wait_eval(run_id, queued.eval_id, poll_interval=0.01)
        assert result.success_rate == 0.5 and result.episodes[0].return_ == 10.0
        with pytest.raises(NotFound, match="not found"):
            tr.run("bc-missing")
        with pytest.raises(BadRequest, match="episodes: must be > 0") as err:
            tr.create_dataset("ok-name", episodes=5)
        assert err.value.status_code == 422
        with pytest.raises(ValueError):
            tr.train_bc("ok-name", features="depth")  # not a feature source: refused client-side


def test_trainer_wait_timeout_and_async():
    app = stepping_trainer()

    async def main(url):
        async with AsyncTrainerClient(url, retries=0) as tr:
            run_id = await tr.train_bc("jacobian-easy-30", features="random", epochs=3)
            with pytest.raises(WaitTimeout, match="still running"):
                await tr.wait(run_id, progress=False, timeout=0.0, poll_interval=0.01)
            record = await tr.wait(run_id, progress=False, poll_interval=0.01)
            result = await tr.wait_eval(run_id, progress=False, poll_interval=0.01)
            return record.status, result.status

    with serve_app(app) as url:
        assert asyncio.run(main(url)) == (RunStatus.succeeded, RunStatus.succeeded)
