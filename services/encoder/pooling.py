"""Pooling choices on the encoder service: parse them from a request, check them against the loaded encoder, and
route each to a batcher (issue 17: `pool=mean|grid`, `grid_size`, optional `time`, `layers`, `dtype`).

    spec = pooling_from_query("grid", 4, "mean", "17,19,21,23", None)   # PoolingError (422) naming the choices
    check_served(encoder, spec)                                          # PoolingError: grid > token grid, ...
    emb = await poolers.submit(windows, spec)                            # (B, D) float32 or (B, g*g, D') grids

Requests of one pooling share forward passes: each pooling has its own DynamicBatcher (the mean one is the app's
own batcher, unchanged), and the Encoder's lock keeps forward passes of different poolings from overlapping. A
batch cannot mix poolings because the batcher's function has one output shape; the number of grid batchers alive
at once is bounded (PoolingBatchers.max_specs, least recently used idle one evicted first) so a client cannot make
the service start unbounded queues, and no sequence of poolings locks the others out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ValidationError

from services.encoder.batcher import EmbedTimeout
from vjepa_robot_client.contract import (
    DEFAULT_GRID_SIZE,
    EMBEDDING_DTYPES,
    MEAN_POOLING,
    POOLINGS,
    TIME_REDUCTIONS,
    PoolingSpec,
    parse_layers,
)


class PoolingError(ValueError):
    """A pooling the request names that cannot be served (422, naming the choices)."""


class TooManyPoolings(RuntimeError):
    """Every one of the max_specs grid batchers is busy, so none can make room for a new pooling (503, retry)."""


def pooling_from_query(
    pool: str | None = "mean",
    grid_size: int | None = None,
    time: str | None = None,
    layers: str | list[int] | None = None,
    dtype: str | None = None,
) -> PoolingSpec:
    """Loose request values -> PoolingSpec; PoolingError names the field and the choices."""
    pool = (pool or "mean").strip().lower()
    if pool not in POOLINGS:
        raise PoolingError(f"unknown pool {pool!r}: choose one of {', '.join(POOLINGS)}")
    if time is not None and time not in TIME_REDUCTIONS:
        raise PoolingError(f"unknown time reduction {time!r}: choose one of {', '.join(TIME_REDUCTIONS)}")
    if dtype is not None and dtype not in EMBEDDING_DTYPES:
        raise PoolingError(f"unknown dtype {dtype!r}: choose one of {', '.join(EMBEDDING_DTYPES)}")
    try:
        if isinstance(layers, str):
            layers = parse_layers(layers)
        g = DEFAULT_GRID_SIZE if grid_size is None else grid_size
        return PoolingSpec.of(pool, g, time or "mean", layers, dtype)
    except ValidationError as exc:
        raise PoolingError("; ".join(_message(e) for e in exc.errors())) from None
    except ValueError as exc:
        raise PoolingError(str(exc)) from None


def _message(error: dict[str, Any]) -> str:
    where = ".".join(str(x) for x in error.get("loc", ()))
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def check_served(encoder: Any, spec: PoolingSpec) -> PoolingSpec:
    """This encoder can serve `spec` (PoolingError otherwise: a grid larger than its token grid, a missing block)."""
    if not spec.is_grid:
        return spec
    served = encoder.info().get("poolings", ["mean"])
    if "grid" not in served or not hasattr(encoder, "check_pooling"):
        raise PoolingError(f"this encoder serves pool={', '.join(served)} only")
    try:
        return encoder.check_pooling(spec)
    except ValueError as exc:
        raise PoolingError(str(exc)) from None


def as_wire(emb: np.ndarray, spec: PoolingSpec | None) -> np.ndarray:
    """A pooling's answer in its wire dtype (the batcher hands back float32; float16 grids are cast back, exactly)."""
    spec = spec or MEAN_POOLING
    return emb if not spec.is_grid else np.asarray(emb, dtype=spec.wire_dtype)


def pooling_key(spec: PoolingSpec) -> PoolingSpec:
    """The spec with its defaults filled (dtype=None -> its wire dtype), so equal poolings are equal keys: a grid
    asked for with and without `dtype=float16` is one pooling, served by one batcher."""
    return spec if spec.dtype is not None else spec.model_copy(update={"dtype": spec.wire_dtype})


class PoolingBatchers:
    """One batcher per pooling in use: `default` (the app's batcher) for mean; grids get their own from `make`.

    At most `max_specs` grid batchers live at once, least recently used first out: a new pooling evicts the
    least recently used batcher that is idle (no request holds it, nothing queued). Only when every one of them is
    busy does a new pooling get TooManyPoolings (503, retry later): a bound on concurrent queues, never a lockout.
    """

    def __init__(
        self,
        default: Any,
        make: Callable[[Callable[[np.ndarray], np.ndarray]], Any],
        encode: Callable,
        max_specs: int = 16,
    ):
        self.default, self.make, self.encode, self.max_specs = default, make, encode, max_specs
        self._batchers: OrderedDict[PoolingSpec, Any] = OrderedDict()  # least recently used first
        self._users: dict[PoolingSpec, int] = {}  # requests holding each batcher (never evicted while > 0)
        self._lock = asyncio.Lock()  # two first requests of one pooling start one batcher

    def specs(self) -> list[PoolingSpec]:
        """The grid poolings with a live batcher, least recently used first."""
        return list(self._batchers)

    async def acquire(self, spec: PoolingSpec | None) -> tuple[Any, PoolingSpec | None]:
        """The batcher of `spec` and the key to release() it with; it cannot be evicted until released."""
        if spec is None or not spec.is_grid:
            return self.default, None
        key = pooling_key(spec)
        b = self._batchers.get(key)
        if b is None:
            async with self._lock:
                b = self._batchers.get(key)
                if b is None:
                    await self._make_room()
                    b = self.make(functools.partial(self.encode, pooling=key))
                    await b.start()
                    self._batchers[key] = b
        # no await between the lookup and the count: an eviction (on this loop) sees the user
        self._batchers.move_to_end(key)
        self._users[key] = self._users.get(key, 0) + 1
        return b, key

    def release(self, key: PoolingSpec | None) -> None:
        if key is None:
            return
        n = self._users.get(key, 0) - 1
        if n > 0:
            self._users[key] = n
        else:
            self._users.pop(key, None)

    async def _make_room(self) -> None:
        """Evict least recently used idle batchers until a new one fits (TooManyPoolings when all are busy)."""
        while len(self._batchers) >= self.max_specs:
            idle = next(
                (k for k, b in self._batchers.items() if not self._users.get(k) and not _busy(b)),
                None,
            )
            if idle is None:
                raise TooManyPoolings(
                    f"too many distinct grid poolings busy at once ({self.max_specs}): retry shortly, "
                    f"or use one of {', '.join(s.tag() for s in self._batchers)}"
                )
            b = self._batchers.pop(idle)  # out of the map before any await: nobody new can take it
            await b.stop(grace_s=0)

    async def batcher(self, spec: PoolingSpec | None) -> Any:
        """The batcher of `spec` (not held: prefer acquire/release or submit, which keep it from eviction)."""
        b, key = await self.acquire(spec)
        self.release(key)
        return b

    async def submit(self, windows: Any, spec: PoolingSpec | None = None) -> np.ndarray:
        """(B, 8, H, W, 3) uint8 -> (B, D) float32 (mean) or (B, g*g, D') in spec.wire_dtype (grid)."""
        b, key = await self.acquire(spec)
        try:
            return as_wire(await b.submit(windows), spec)
        finally:
            self.release(key)

    def submit_from_thread(
        self, windows: Any, spec: PoolingSpec | None, loop: asyncio.AbstractEventLoop, timeout: float
    ) -> np.ndarray:
        """submit() from a worker thread (dataset jobs): the batcher is held for the call, with the batcher's bounds.
        While every pooling batcher is busy (TooManyPoolings) the thread waits for one to idle, within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            fut = asyncio.run_coroutine_threadsafe(self.acquire(spec), loop)
            try:
                b, key = fut.result(max(0.001, deadline - time.monotonic()))
                break
            except TooManyPoolings:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
            except concurrent.futures.TimeoutError:  # the loop did not answer in time: give the hold back, if taken
                if not fut.cancel() and fut.done() and fut.exception() is None:
                    loop.call_soon_threadsafe(self.release, fut.result()[1])
                raise EmbedTimeout(f"no pooling batcher within {timeout:g} s (VJEPA_ROBOT_EMBED_TIMEOUT_S)") from None
        try:
            return as_wire(b.submit_from_thread(windows, loop, timeout=max(0.001, deadline - time.monotonic())), spec)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the service is gone, nothing to release
                loop.call_soon_threadsafe(self.release, key)

    def submitter(self, spec: PoolingSpec | None) -> Callable:
        """An async `submit(windows)` for one pooling (what a frame stream's step calls)."""
        return functools.partial(self.submit, spec=spec)

    async def stop(self, **kwargs: Any) -> None:
        """Stop every grid batcher (kwargs go to DynamicBatcher.stop, e.g. grace_s)."""
        batchers, self._batchers = list(self._batchers.values()), OrderedDict()
        self._users.clear()
        for b in batchers:
            await b.stop(**kwargs)


def _busy(batcher: Any) -> bool:
    return bool(getattr(batcher, "busy", False))
