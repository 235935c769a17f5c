"""Dynamic batching: coalesce concurrent requests into one forward pass (LitServe style, a few plain functions).

    batcher = DynamicBatcher(encoder.encode, max_batch=32, max_wait_ms=5, max_queue=256)
    await batcher.start()
    emb = await batcher.submit(windows)       # (B, 8, H, W, 3) uint8 -> (B, D) float32; QueueFull when saturated
    emb = batcher.submit_from_thread(windows, loop, timeout=60)   # the same from a worker thread (dataset jobs)
    await batcher.stop()                      # then submit() raises EncoderStopped

Rules:
- A batch is collected until it holds max_batch windows or max_wait_ms have passed since its *oldest* request
  arrived (requests that already waited during the previous forward pass are not made to wait again).
- The forward pass runs in a single worker thread, off the event loop, so the loop keeps accepting requests;
  they pile up in the queue during the pass and form the next batch.
- An exception in a forward pass is set on every caller of that batch, as ForwardFailed naming it. So is a
  forward pass that returns anything but one row per window (issue 19 notes LitServe makes this check: a model
  that drops or duplicates a row would otherwise hand every later caller of the batch someone else's embedding).
- Stopped is final: stop() fails every queued request with EncoderStopped, and submit() refuses new work with it
  (the service answers 503 "encoder is shutting down"), so nothing waits for a forward pass that never runs.
- A request of B > max_batch windows is never split across batches: it runs alone, as ceil(B / max_batch)
  forward passes of at most max_batch windows in a row (memory stays bounded; its windows stay together).
- max_batch=1 turns batching off: one window (or a lone request, chunked) per forward pass, no waiting.
- Frames of different sizes cannot be stacked: a batch only takes requests whose (H, W) match its first one;
  a mismatching request starts the next batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class QueueFull(RuntimeError):
    """The batcher's queue is at max_queue requests: answer 503 with Retry-After."""


class EncoderStopped(RuntimeError):
    """The batcher was stopped (the service is shutting down): answer 503, the client retries elsewhere or later."""

    def __init__(self, message: str = "encoder is shutting down: retry shortly (another replica, or after restart)"):
        super().__init__(message)


class ForwardFailed(RuntimeError):
    """A forward pass raised, or returned the wrong number of rows: every caller of that batch gets this (500)."""


class EmbedTimeout(TimeoutError):
    """submit_from_thread: no answer within its timeout (queue kept full, or a forward pass that does not end)."""


class BatchObserver(Protocol):
    def batch(self, size: int) -> None: ...
    def queue_depth(self, depth: int) -> None: ...


@dataclass
class _Item:
    windows: np.ndarray  # (B, 8, H, W, 3) uint8
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return int(self.windows.shape[0])

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.windows.shape[2:])


def concat_windows(parts: list) -> np.ndarray:
    """Join a batch: numpy arrays, or torch tensors (a frame stream's windows stay on the model's device)."""
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    import torch

    device = next(p.device for p in parts if not isinstance(p, np.ndarray))
    return torch.cat(
        [
            torch.from_numpy(p if p.flags.writeable else p.copy()).to(device) if isinstance(p, np.ndarray) else p
            for p in parts
        ]
    )


class DynamicBatcher:
    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        observer: BatchObserver | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.observer = observer
        self._queue: asyncio.Queue[_Item] | None = None
        self._carry: _Item | None = None  # a request that did not fit the previous batch
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopped = threading.Event()  # read from worker threads too (submit_from_thread)
        self._in_flight: asyncio.Future | None = None  # the running forward pass, so stop() can wait for it a while

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder-forward")
        self._task = asyncio.create_task(self._loop(), name="dynamic-batcher")

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Refuse new work, fail what is queued (EncoderStopped), and wait up to grace_s for a running forward pass.

        A forward pass cannot be interrupted (it runs in a thread); one that outlives grace_s is left to finish on
        its own, so shutdown never hangs on it (its callers were already answered)."""
        self._stopped.set()
        in_flight = self._in_flight
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if in_flight is not None and not in_flight.done():
            try:
                await asyncio.wait_for(asyncio.shield(in_flight), grace_s)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                pass
        pending = [self._carry] if self._carry else []
        self._carry = None
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for item in pending:
            if not item.future.done():
                item.future.set_exception(EncoderStopped())

    def depth(self) -> int:
        return (self._queue.qsize() if self._queue else 0) + (1 if self._carry else 0)

    @property
    def busy(self) -> bool:
        """Work queued or a forward pass running (PoolingBatchers evicts only batchers that are not)."""
        return self.depth() > 0 or self._in_flight is not None

    # -- public --------------------------------------------------------------------------------------------------

    async def submit(self, windows: np.ndarray) -> np.ndarray:
        """(B, 8, H, W, 3) uint8 -> (B, D) float32, sharing a forward pass with concurrent callers."""
        if self._stopped.is_set():
            raise EncoderStopped()
        if self._queue is None:
            raise RuntimeError("batcher not started: call `await batcher.start()` inside the event loop")
        item = _Item(windows, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            raise QueueFull(f"encoder queue is full ({self.max_queue} requests waiting): retry shortly") from None
        self._observe_depth()
        return await item.future

    def submit_from_thread(
        self, windows: np.ndarray, loop: asyncio.AbstractEventLoop, *, timeout: float, poll_s: float = 0.05
    ) -> np.ndarray:
        """submit() from a worker thread (not the loop's): waits for room in a full queue, but never past `timeout`
        seconds in all, and never after stop(). Raises EmbedTimeout or EncoderStopped; the dataset jobs use it, so a
        job cannot hang the service's shutdown."""
        deadline = time.monotonic() + timeout
        while True:
            if self._stopped.is_set():
                raise EncoderStopped()
            try:
                fut = asyncio.run_coroutine_threadsafe(self.submit(windows), loop)
            except RuntimeError:  # the loop is closed: the service is gone
                raise EncoderStopped() from None
            while True:  # wait in slices, so a stop() whose loop never answers this future still ends the wait
                left = deadline - time.monotonic()
                if left <= 0:
                    fut.cancel()
                    raise EmbedTimeout(
                        f"no embedding within {timeout:g} s (the encoder's queue stayed full or a "
                        f"forward pass did not end); raise VJEPA_ROBOT_EMBED_TIMEOUT_S if passes are slow"
                    )
                try:
                    return fut.result(timeout=min(left, 0.5))
                except concurrent.futures.TimeoutError:
                    if self._stopped.is_set() and not fut.done():
                        fut.cancel()
                        raise EncoderStopped() from None
                except QueueFull:
                    time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
                    break
                except concurrent.futures.CancelledError:
                    raise EncoderStopped() from None

    # -- the loop ------------------------------------------------------------------------------------------------

    async def _next(self, timeout: float | None) -> _Item | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        assert self._queue is not None
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> list[_Item]:
        """One batch: up to max_batch windows, or whatever arrived within max_wait of the oldest request."""
        first = await self._next(None)
        batch, total = [first], first.size
        deadline = first.arrived + self.max_wait
        while total < self.max_batch:
            item = await self._next(deadline - time.monotonic())
            if item is None:
                break
            if item.future.done():  # its caller went away (cancelled) while it queued
                continue
            if total + item.size > self.max_batch or item.frame_shape != first.frame_shape:
                self._carry = item
                break
            batch.append(item)
            total += item.size
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [it for it in batch if not it.future.done()]
            self._observe_depth()
            if not batch:
                continue
            windows = batch[0].windows if len(batch) == 1 else concat_windows([it.windows for it in batch])
            try:
                self._in_flight = loop.run_in_executor(self._executor, self._forward, windows)
                emb = await asyncio.shield(self._in_flight)
            except asyncio.CancelledError:
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(EncoderStopped())
                raise
            except Exception as exc:  # the error reaches every caller in the batch
                err = exc
                if not isinstance(exc, ForwardFailed):
                    err = ForwardFailed(f"forward pass failed: {type(exc).__name__}: {exc}")
                    err.__cause__ = exc
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(err)
                continue
            finally:
                self._in_flight = None
            start = 0
            for it in batch:
                if not it.future.done():
                    it.future.set_result(emb[start : start + it.size])
                start += it.size

    def _forward(self, windows: np.ndarray) -> np.ndarray:
        """Runs in the worker thread: forward passes of at most max_batch windows."""
        outs = []
        for start in range(0, windows.shape[0], self.max_batch):
            chunk = windows[start : start + self.max_batch]
            if self.observer:
                self.observer.batch(int(chunk.shape[0]))
            out = np.asarray(self.fn(chunk), dtype=np.float32)
            if out.ndim < 2 or out.shape[0] != chunk.shape[0]:  # one row per window ((D,) or a (G, D) token grid)
                raise ForwardFailed(
                    f"forward pass returned shape {tuple(out.shape)} for {chunk.shape[0]} windows: "
                    f"expected one embedding row per window ({chunk.shape[0]}, D); the model or its "
                    f"wrapper dropped or added rows"
                )
            outs.append(out)
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def _observe_depth(self) -> None:
        if self.observer:
            self.observer.queue_depth(self.depth())
