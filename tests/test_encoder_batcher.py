"""The dynamic batcher alone (no HTTP): coalescing, limits, error propagation, queue bound."""

from __future__ import annotations

import asyncio
import threading

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
