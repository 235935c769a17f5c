"""Pooling choices on the encoder service: parse them from a request, check them against the loaded encoder, and
route each to a batcher (issue 17: `pool=mean|grid`, `grid_size`, optional `time`, `layers`, `dtype`).

    spec = pooling_from_query("grid", 4, "mean", "17,19,21,23", None)   # PoolingError (422) naming the choices
    check_served(encoder, spec)                                          # PoolingError: grid > token grid, ...
    emb = await poolers.submit(windows, spec)                            # (B, D) float32 or (B, g*g, D') grids

Requests of one pooling share forward passes: each pooling has its own DynamicBatcher (the mean one is the app's
own batcher, unchanged), and the Encoder's lock keeps forward passes of different poolings from overlapping. A
batch cannot mix poolings because the batcher's function has one output shape; the number of distinct poolings
in use at once is bounded (PoolingBatchers.max_specs) so a client cannot make the service start unbounded queues.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import ValidationError

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
    """More distinct poolings in use at once than max_specs (503)."""


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


class PoolingBatchers:
    """One batcher per pooling in use: `default` (the app's batcher) for mean; grids get their own from `make`."""

    def __init__(
        self,
        default: Any,
        make: Callable[[Callable[[np.ndarray], np.ndarray]], Any],
        encode: Callable,
        max_specs: int = 16,
    ):
        self.default, self.make, self.encode, self.max_specs = default, make, encode, max_specs
        self._batchers: dict[PoolingSpec, Any] = {}
        self._lock = asyncio.Lock()  # two first requests of one pooling start one batcher

    async def batcher(self, spec: PoolingSpec | None) -> Any:
        if spec is None or not spec.is_grid:
            return self.default
        b = self._batchers.get(spec)
        if b is not None:
            return b
        async with self._lock:
            b = self._batchers.get(spec)
            if b is None:
                if len(self._batchers) >= self.max_specs:
                    raise TooManyPoolings(
                        f"too many distinct grid poolings in use ({self.max_specs}): retry later, "
                        f"or use one of {', '.join(s.tag() for s in self._batchers)}"
                    )
                b = self.make(functools.partial(self.encode, pooling=spec))
                await b.start()
                self._batchers[spec] = b
        return b

    async def submit(self, windows: Any, spec: PoolingSpec | None = None) -> np.ndarray:
        """(B, 8, H, W, 3) uint8 -> (B, D) float32 (mean) or (B, g*g, D') in spec.wire_dtype (grid)."""
        b = await self.batcher(spec)
        return as_wire(await b.submit(windows), spec)

    def submitter(self, spec: PoolingSpec | None) -> Callable:
        """An async `submit(windows)` for one pooling (what a frame stream's step calls)."""
        return functools.partial(self.submit, spec=spec)

    async def stop(self, **kwargs: Any) -> None:
        """Stop every grid batcher (kwargs go to DynamicBatcher.stop, e.g. grace_s)."""
        batchers, self._batchers = list(self._batchers.values()), {}
        for b in batchers:
            await b.stop(**kwargs)
