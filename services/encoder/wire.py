"""The /encode hot path's bytes: read a request body once into a reused buffer, view it as an array without a copy.

Why (measured with bench/transport.py on the 2-core dev box): a 32-window body is 50 MB. Copying 50 MB into an
already-touched buffer takes ~7 ms; into a fresh allocation ~24 ms, because glibc maps every allocation over 32 MB
anew (page faults on first touch) and unmaps it on free. Collecting chunks and `b"".join`-ing them pays that on
every request, plus a second full copy. Here each body is copied once, from the HTTP server's chunks into a
buffer that lives across requests, and the .npy payload is viewed in place (contract.from_npy_bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np


class BodyBuffers:
    """A few reusable receive buffers. Bounded: at most `keep` idle buffers, `max_bytes` idle in all.

    New buffers are np.empty, not bytearray: the pages of a fresh one are only mapped as bytes arrive, so a client that
    declares a large Content-Length and sends little costs memory for what it sent, as with a list of chunks.
    """

    def __init__(self, keep: int = 4, max_bytes: int = 512 << 20):  # a 32-window body is 50 MB
        self.keep, self.max_bytes = keep, max_bytes
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> np.ndarray:
        """The smallest idle buffer (uint8, 1-d) of at least `size` bytes, or a new one."""
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if len(b) >= size]
            if fits:
                return self._free.pop(min(fits, key=lambda i: len(self._free[i])))
        return np.empty(size, np.uint8)

    def give(self, buf: np.ndarray) -> None:
        with self._lock:
            self._free.append(buf)
            self._free.sort(key=len)
            while len(self._free) > self.keep or sum(map(len, self._free)) > self.max_bytes:
                self._free.pop()  # drop the largest

    def idle_bytes(self) -> int:
        with self._lock:
            return sum(map(len, self._free))

    @contextlib.contextmanager
    def lease(self) -> Iterator[Lease]:
        """Buffers taken through the lease go back when the block ends - unless it ends cancelled: then a forward
        pass may still be reading the windows (the batcher does not stop a running pass), so the buffer is dropped."""
        lease = Lease(self)
        try:
            yield lease
        except asyncio.CancelledError:
            lease.taken.clear()
            raise
        finally:
            for buf in lease.taken:
                self.give(buf)


class Lease:
    def __init__(self, pool: BodyBuffers):
        self.pool, self.taken = pool, []

    def take(self, size: int) -> np.ndarray:
        buf = self.pool.take(size)
        self.taken.append(buf)
        return buf


class LongerThanDeclared(ValueError):
    """More body bytes arrived than Content-Length declared (the HTTP server normally makes this impossible)."""


async def read_into(chunks: AsyncIterator[bytes], size: int, lease: Lease) -> memoryview:
    """Copy a body of Content-Length `size` from `chunks` into one leased buffer; returns a view of its bytes.

    A shorter body is returned short (the .npy parse then names it truncated), exactly as a joined body would be.
    """
    view = memoryview(lease.take(size))[:size]
    got = 0
    async for chunk in chunks:
        n = len(chunk)
        if got + n > size:
            raise LongerThanDeclared(f"body longer than its Content-Length of {size} bytes")
        view[got : got + n] = chunk
        got += n
    return view[:got]
