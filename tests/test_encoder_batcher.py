"""The dynamic batcher alone (no HTTP): coalescing, limits, error propagation, queue bound."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from conftest import ToyEncoder

from services.encoder.batcher import DynamicBatcher, QueueFull


def w(b: int = 1, size: int = 8) -> np.ndarray:
    return np.random.default_rng(b).integers(0, 256, size=(b, 8, size, size, 3), dtype=np.uint8)


def run(coro):
    return asyncio.run(coro)


def test_coalesces_up_to_max_batch_and_hands_each_caller_its_slice():
    toy = ToyEncoder(assert_batch_gt=1)

    async def main():
        b = DynamicBatcher(toy.encode, max_batch=4, max_wait_ms=500)
        await b.start()
        inputs = [np.full((1, 8, 8, 8, 3), i, np.uint8) for i in range(8)]
        outs = await asyncio.gather(*(b.submit(x) for x in inputs))
        await b.stop()
        return inputs, outs

    inputs, outs = run(main())
    assert toy.batch_sizes == [4, 4]
    for x, y in zip(inputs, outs):
        np.testing.assert_allclose(y, ToyEncoder().encode(x))


def test_batching_off_runs_one_window_per_pass():
    toy = ToyEncoder()

    async def main():
        b = DynamicBatcher(toy.encode, max_batch=1, max_wait_ms=1000)
        await b.start()
        await asyncio.gather(*(b.submit(w()) for _ in range(5)))
        await b.stop()

    run(main())
    assert toy.batch_sizes == [1] * 5


def test_a_request_larger_than_max_batch_runs_alone_in_chunks():
    toy = ToyEncoder()

    async def main():
        b = DynamicBatcher(toy.encode, max_batch=4, max_wait_ms=50)
        await b.start()
        big, small = await asyncio.gather(b.submit(w(10)), b.submit(w(1)))
        await b.stop()
        return big, small

    big, small = run(main())
    assert big.shape == (10, 4) and small.shape == (1, 4)
    assert toy.batch_sizes == [4, 4, 2, 1]


def test_an_error_reaches_every_caller_in_the_batch():
    toy = ToyEncoder(fail=True)

    async def main():
        b = DynamicBatcher(toy.encode, max_batch=8, max_wait_ms=200)
        await b.start()
        results = await asyncio.gather(*(b.submit(w()) for _ in range(3)), return_exceptions=True)
        await b.stop()
        return results

    results = run(main())
    assert toy.batch_sizes == [3]
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)


def test_full_queue_raises_queue_full():
    gate = threading.Event()
    toy = ToyEncoder(block=gate)

    async def main():
        b = DynamicBatcher(toy.encode, max_batch=1, max_wait_ms=0, max_queue=1)
        await b.start()
        first = asyncio.create_task(b.submit(w()))
        await asyncio.sleep(0.1)  # first is in the forward pass (blocked)
        second = asyncio.create_task(b.submit(w()))  # waits in the queue
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull, match="queue is full"):
            await b.submit(w())
        gate.set()
        await asyncio.gather(first, second)
        await b.stop()

    run(main())


# -- the /encode hot path's bytes (services/encoder/wire.py) and the SDK's body parts ---------------------------------

from conftest import run_server  # noqa: E402

from services.encoder.wire import BodyBuffers  # noqa: E402
from vjepa_robot_client import AsyncEncoderClient, EncoderClient  # noqa: E402
from vjepa_robot_client.contract import NpyError, from_npy_bytes, to_npy_bytes  # noqa: E402


def test_npy_from_a_buffer_is_a_view_and_refuses_what_from_npy_bytes_refuses():
    arr = w(3)
    buf = bytearray(to_npy_bytes(arr))
    view = from_npy_bytes(memoryview(buf))
    assert np.array_equal(view, arr) and view.dtype == np.uint8 and view.flags.writeable
    assert np.shares_memory(view, np.frombuffer(buf, np.uint8))  # parsed in place, not copied
    good = to_npy_bytes(arr)
    for body in (b"", b"not an npy body", good[:-5], good[:8] + b"\xff\xff" + good[10:]):
        with pytest.raises(NpyError) as from_bytes:
            from_npy_bytes(body)
        with pytest.raises(NpyError) as from_buffer:
            from_npy_bytes(bytearray(body))
        assert str(from_buffer.value) == str(from_bytes.value)
    pickled = bytearray(good)  # an object-dtype header: refused before anything is unpickled
    header_end = good.index(b"\n") + 1
    obj_header = good[:header_end].replace(b"'|u1'", b"'|O' ")
    pickled[:header_end] = obj_header
    with pytest.raises(NpyError, match="object arrays are refused"):
        from_npy_bytes(pickled)


def test_body_buffers_are_reused_bounded_and_dropped_when_cancelled():
    pool = BodyBuffers(keep=2, max_bytes=1000)
    with pool.lease() as lease:
        a = lease.take(100)
    assert pool.idle_bytes() == 100
    with pool.lease() as lease:
        assert lease.take(50) is a  # the smallest idle buffer that fits
    pool.give(np.empty(200, np.uint8))
    with pool.lease() as lease:
        assert lease.take(150) is not a  # only the 200-byte one fits
    assert pool.idle_bytes() == 300
    with pytest.raises(ValueError):
        with pool.lease() as lease:
            lease.take(10)
            raise ValueError("a 4xx: the buffer is no longer read by anyone, so it goes back")
    assert pool.idle_bytes() == 300
    with pytest.raises(asyncio.CancelledError):
        with pool.lease() as lease:
            assert lease.take(10) is a
            raise asyncio.CancelledError  # a forward pass may still read it: never handed out again
    assert pool.idle_bytes() == 200
    for size in (300, 400, 500):
        pool.give(np.empty(size, np.uint8))
    assert pool.idle_bytes() <= 1000 and len(pool._free) <= 2


def test_encode_through_reused_buffers_returns_each_request_its_own_windows_and_counts_bytes(tmp_path):
    """Sequential requests of shrinking and growing batches share receive buffers: each must see only its own
    windows (the toy embedding is each window's channel means). The request-bytes counter sums the bodies."""
    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    toy = ToyEncoder()
    app = create_app(EncoderSettings(store=str(tmp_path / "store"), max_batch=8, max_wait_ms=0), encoder=toy)
    sent = 0
    with run_server(app) as url:
        with EncoderClient(url, compress=None) as client:
            for b, seed in ((4, 1), (1, 2), (3, 3), (6, 4)):
                x = np.random.default_rng(seed).integers(0, 256, size=(b, 8, 16, 16, 3), dtype=np.uint8)
                np.testing.assert_allclose(client.encode(x), toy.encode(x), rtol=1e-6)
                sent += len(to_npy_bytes(x))

        async def async_round():
            async with AsyncEncoderClient(url, compress=None) as aclient:
                x = np.random.default_rng(5).integers(0, 256, size=(2, 8, 16, 16, 3), dtype=np.uint8)
                np.testing.assert_allclose(await aclient.encode(x), toy.encode(x), rtol=1e-6)
                return len(to_npy_bytes(x))

        sent += asyncio.run(async_round())
        import httpx

        metrics = httpx.get(f"{url}/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith('vjepa_encoder_request_bytes_total{route="/encode"}'))
    assert float(line.split()[-1]) == sent


# -- lifecycle: a stopped batcher refuses work; a forward pass must give one row per window (issue 19) -----------------

from services.encoder.batcher import EmbedTimeout, EncoderStopped, ForwardFailed  # noqa: E402


def test_a_stopped_batcher_refuses_work_and_fails_what_was_queued():
    gate = threading.Event()
    toy = ToyEncoder(block=gate)

    async def main():
        b = DynamicBatcher(toy.encode, max_batch=1, max_wait_ms=0, max_queue=4)
        await b.start()
        running = asyncio.create_task(b.submit(w()))
        await asyncio.sleep(0.1)  # in the (blocked) forward pass
        queued = asyncio.create_task(b.submit(w()))
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(b.stop(grace_s=0.2))
        await asyncio.wait_for(stopping, 3)  # does not wait for the blocked pass beyond its grace
        gate.set()
        with pytest.raises(EncoderStopped, match="shutting down"):
            await asyncio.wait_for(b.submit(w()), 2)  # refused at once, not queued forever
        results = await asyncio.gather(running, queued, return_exceptions=True)
        return b, results

    b, results = run(main())
    assert b.stopped
    assert all(isinstance(r, EncoderStopped) for r in results), results


@pytest.mark.parametrize("rows", [lambda b: b - 1, lambda b: b + 1, lambda b: 0])
def test_a_forward_pass_with_the_wrong_number_of_rows_fails_every_caller(rows):
    toy = ToyEncoder()

    def wrong(windows):
        return (
            toy.encode(windows)[: rows(windows.shape[0])]
            if rows(windows.shape[0]) <= windows.shape[0]
            else np.concatenate([toy.encode(windows), toy.encode(windows[:1])])
        )

    async def main():
        b = DynamicBatcher(wrong, max_batch=8, max_wait_ms=200)
        await b.start()
        out = await asyncio.gather(*(b.submit(w()) for _ in range(3)), return_exceptions=True)
        await b.stop()
        return out

    results = run(main())
    assert len(results) == 3
    for r in results:  # nobody gets a short, empty or shifted slice
        assert isinstance(r, ForwardFailed) and "one embedding row per window" in str(r), r


def test_submit_from_a_thread_is_bounded_by_its_timeout_and_by_stop():
    """The dataset-embedding path: it used to retry QueueFull forever and wait on .result() with no timeout."""
    gate = threading.Event()
    toy = ToyEncoder(block=gate)

    async def main():
        loop = asyncio.get_running_loop()
        b = DynamicBatcher(toy.encode, max_batch=1, max_wait_ms=0, max_queue=1)
        await b.start()
        blocker = asyncio.create_task(b.submit(w()))  # holds the forward pass
        await asyncio.sleep(0.1)
        filler = asyncio.create_task(b.submit(w()))  # fills the queue: the thread's submits get QueueFull
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(EmbedTimeout, match="no embedding within 0.3 s"):
            await asyncio.to_thread(b.submit_from_thread, w(), loop, timeout=0.3)
        timed_out_after = time.monotonic() - t0
        waiting = asyncio.ensure_future(asyncio.to_thread(b.submit_from_thread, w(), loop, timeout=60))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await b.stop(grace_s=0.1)
        with pytest.raises(EncoderStopped):
            await asyncio.wait_for(waiting, 3)
        stopped_after = time.monotonic() - t0
        gate.set()
        await asyncio.gather(blocker, filler, return_exceptions=True)
        with pytest.raises(EncoderStopped):  # and after stop, at once
            await asyncio.to_thread(b.submit_from_thread, w(), loop, timeout=60)
        return timed_out_after, stopped_after

    timed_out_after, stopped_after = run(main())
    assert 0.25 < timed_out_after < 2.0
    assert stopped_after < 2.0


def test_the_service_answers_503_shutting_down_once_the_batcher_stopped(tmp_path):
    from fastapi.testclient import TestClient

    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    app = create_app(EncoderSettings(store=str(tmp_path / "store")), encoder=ToyEncoder())
    with TestClient(app) as c:
        body = to_npy_bytes(w(1))
        assert c.post("/encode", content=body).status_code == 200
        c.portal.call(app.state.batcher.stop)
        r = c.post("/encode", content=body)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "shutting down" in r.json()["detail"]
        sid = c.post("/streams", json={"envs": 1, "height": 8, "width": 8}).json()["stream_id"]
        r = c.post(f"/streams/{sid}/step", content=to_npy_bytes(w(1)[:, 0]))
        assert r.status_code == 503 and "shutting down" in r.json()["detail"]


def test_shutdown_does_not_wait_for_a_dataset_job_stuck_in_a_forward_pass(tmp_path):
    """A dataset job whose forward pass hangs: leaving the lifespan takes about the grace period, the job's thread
    ends, and the job reads failed naming the shutdown (a re-run resumes it: episodes are appended whole)."""
    from conftest import write_steps_dataset
    from fastapi.testclient import TestClient

    from services.common.store import Store
    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    store = str(tmp_path / "store")
    write_steps_dataset(Store(store), "stuck", episodes=2, steps=4, image_size=8)
    gate = threading.Event()
    toy = ToyEncoder(block=gate)  # every forward pass waits for the gate (10 s at most)
    app = create_app(EncoderSettings(store=store, shutdown_grace_s=0.3, max_wait_ms=0), encoder=toy)
    try:
        with TestClient(app) as c:
            assert c.post("/datasets/stuck/encode").status_code == 202
            deadline = time.monotonic() + 5
            while not toy.batch_sizes and time.monotonic() < deadline:
                time.sleep(0.02)
            assert toy.batch_sizes, "the job never reached the forward pass"
            jobs = app.state.jobs
            t0 = time.monotonic()
        shutdown_s = time.monotonic() - t0
        jobs.join("stuck", timeout=3)
        job = jobs.status("stuck")
    finally:
        gate.set()
    assert shutdown_s < 3.0, f"shutdown took {shutdown_s:.1f} s"
    assert not jobs._threads["stuck"].is_alive()
    assert job.status == "failed" and "shutting down" in (job.error or ""), job


def test_the_body_pool_is_bounded_by_its_settings_and_reported(tmp_path):
    """Issue 19 (memory under load): idle receive buffers are bounded by VJEPA_ROBOT_BODY_POOL_BYTES / _BUFFERS
    whatever the concurrency was; buffers in use are not pooled (they are bounded by the requests in flight)."""
    import httpx

    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    limit = 3 * len(to_npy_bytes(w(1, 16)))  # room for 3 one-window bodies
    toy = ToyEncoder(delay_s=0.05)
    app = create_app(
        EncoderSettings(store=str(tmp_path / "store"), body_pool_buffers=2, body_pool_bytes=limit, max_wait_ms=0),
        encoder=toy,
    )
    assert (app.state.bodies.keep, app.state.bodies.max_bytes) == (2, limit)
    with run_server(app) as url:

        async def burst():
            async with AsyncEncoderClient(url, compress=None) as c:
                await asyncio.gather(*(c.encode(w(b, 16)) for b in (1, 2, 3, 1, 2, 3, 1, 2)))

        asyncio.run(burst())  # 8 bodies in flight at once, of 3 sizes
        idle = app.state.bodies.idle_bytes()
        assert 0 < idle <= limit and len(app.state.bodies._free) <= 2
        gauge = next(
            x
            for x in httpx.get(f"{url}/metrics").text.splitlines()
            if x.startswith("vjepa_encoder_body_pool_idle_bytes ")
        )
        assert float(gauge.split()[-1]) == idle
    off = create_app(EncoderSettings(store=str(tmp_path / "store"), body_pool_buffers=0), encoder=toy)
    with run_server(off) as url, EncoderClient(url, compress=None) as c:
        c.encode(w(2, 16))
        assert off.state.bodies.idle_bytes() == 0  # reuse off: nothing kept
