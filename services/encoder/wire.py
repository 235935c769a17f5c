"""The /encode hot path's bytes: read a request body once into a reused buffer, view it as an array without a copy.

Why (measured with bench/transport.py on the 2-core dev box): a 32-window body is 50 MB. Copying 50 MB into an
already-touched buffer takes ~7 ms; into a fresh allocation ~24 ms, because glibc maps every allocation over 32 MB
anew (page faults on first touch) and unmaps it on free. Collecting chunks and `b"".join`-ing them pays that on
every request, plus a second full copy. Here each body is copied once, from the HTTP server's chunks into a
buffer that lives across requests, and the .npy payload is viewed in place (np.frombuffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np

from vjepa_robot_client.contract import NpyError, from_npy_bytes

NPY_MAGIC = b"\x93NUMPY"
_HEAD = 64 * 1024 + 16  # a v1 .npy header is at most 65535 + 10 bytes; v2 headers this long are refused below


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
    def lease(self) -> Iterator["Lease"]:
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


def from_npy_buffer(data: bytes | bytearray | memoryview) -> np.ndarray:
    """from_npy_bytes for any bytes-like body, without copying the payload (never unpickles; the same errors).

    Headers seen before are looked up, not parsed again: numpy's header parser takes ~0.25 ms (measured here), a
    quarter of a one-window request's server time, and a client sends the same few shapes over and over.
    """
    view = memoryview(data).cast("B")
    if len(view) == 0 or bytes(view[: len(NPY_MAGIC)]) != NPY_MAGIC:
        return from_npy_bytes(bytes(view[:_HEAD]))  # the same error message (empty / not .npy)
    known = _known_header(view)
    if known is not None:
        shape, fortran, dtype, offset = known
    else:
        shape, fortran, dtype, offset = _parse_header(view)
    count = math.prod(shape)
    expected = count * dtype.itemsize
    payload = view[offset:]
    if len(payload) < expected:
        raise NpyError(f"truncated .npy body: header promises {expected} bytes of data, got {len(payload)}")
    arr = np.frombuffer(payload, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype]] = {}  # exact header bytes -> parsed (good ones only)
_MAX_HEADERS = 256


def _known_header(view: memoryview):
    size_bytes = {1: 2, 2: 4}.get(view[6]) if len(view) > 7 else None
    if size_bytes is None or len(view) < 8 + size_bytes:
        return None
    offset = 8 + size_bytes + int.from_bytes(view[8 : 8 + size_bytes], "little")
    hit = _HEADERS.get(bytes(view[:offset])) if offset <= len(view) else None
    return None if hit is None else (*hit, offset)


def _parse_header(view: memoryview):
    head = io.BytesIO(bytes(view[:_HEAD]))
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise NpyError(f"unsupported .npy version {version}")
    except NpyError:
        raise
    except Exception as exc:  # malformed (or, for v2, over-long) header
        raise NpyError(f"malformed .npy header: {exc}") from None
    if dtype.hasobject:
        raise NpyError("object arrays are refused (they would need unpickling): send a uint8 array")
    offset = head.tell()
    if len(_HEADERS) < _MAX_HEADERS:
        _HEADERS[bytes(view[:offset])] = (shape, fortran, dtype)
    return shape, fortran, dtype, offset


def npy_header(array: np.ndarray) -> bytes:
    """The .npy (v1) header for a C-contiguous `array`: header + array.data is exactly np.save's output."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(array))
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """np.save's bytes of `array`, built with one copy (np.save through BytesIO makes several)."""
    array = np.ascontiguousarray(array)
    return npy_header(array) + array.tobytes()
