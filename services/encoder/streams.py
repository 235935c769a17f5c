"""Frame streams: the encoder keeps each env's last 8 frames, so a client sends only the newest frame per step.

    registry = StreamRegistry(device="cpu", ttl_s=300, max_streams=64, max_bytes=2 * GIB)
    s = registry.create(envs=8, height=256, width=256)
    windows = s.advance(frames, reset=[0, 3])   # (N, H, W, 3) uint8 -> (N, 8, H, W, 3) uint8 (not yet committed)
    emb = await batcher.submit(windows)         # the same batcher as POST /encode
    s.commit(windows)                           # only after the forward pass succeeded

The window rule is vjepa_robot_client.window's: an env whose frame starts an episode (listed in `reset`) gets that
frame in all 8 slots. An env that has not received a frame yet is treated as reset, so a stream's first step needs
no `reset` list (this matches the SDK's WindowBuffer). A step body of full windows (N, 8, H, W, 3) replaces every
env's window: the SDK sends one after re-creating a lost stream, so continuing episodes keep their history.

A step's new windows are a new tensor: the stream's state changes only in `commit`, after a successful forward
pass, so a step refused with 503 (queue full) or cut off mid-way can be re-sent as is.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from vjepa_robot_client.contract import CONTENT_ENCODINGS, PoolingSpec
from vjepa_robot_client.window import WINDOW_FRAMES, advance

GIB = 1024**3
NPY_HEADER_BYTES = 256  # np.save's header is 128 bytes for these shapes; room to spare


class StreamNotFound(KeyError):
    """Unknown or expired stream id (404)."""

    def __init__(self, stream_id: str):
        super().__init__(stream_id)
        self.message = (
            f"stream {stream_id!r} not found: it expired, was deleted, or the encoder restarted; "
            f"create a new one with POST /streams"
        )

    def __str__(self) -> str:
        return self.message


class StreamsFull(RuntimeError):
    """The stream count or memory bound is reached (503 + Retry-After)."""


class StreamInputError(ValueError):
    """A step or creation request that cannot be served as sent (4xx naming the problem)."""

    def __init__(self, message: str, status_code: int = 422):
        super().__init__(message)
        self.status_code = status_code


@dataclass
class Stream:
    stream_id: str
    envs: int
    height: int
    width: int
    device: str
    windows: torch.Tensor  # (N, 8, H, W, 3) uint8 on the model's device
    started: np.ndarray  # (N,) bool: False until an env's first frame arrived
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pooling: PoolingSpec | None = None  # None / mean: steps answer (N, D); a grid: (N, g*g, D') (set at creation)

    @property
    def nbytes(self) -> int:
        return stream_bytes(self.envs, self.height, self.width)

    def check_frames(self, frames: np.ndarray) -> None:
        """(N, H, W, 3) newest frames or (N, 8, H, W, 3) full windows, uint8, matching the stream."""
        n, h, w = self.envs, self.height, self.width
        want = (
            f"({n}, {h}, {w}, 3) uint8 (one newest frame per env) or full windows ({n}, {WINDOW_FRAMES}, {h}, {w}, 3)"
        )
        if frames.dtype != np.uint8:
            raise StreamInputError(f"wrong dtype {frames.dtype}: frames must be uint8 RGB (0-255); expected {want}")
        if frames.ndim not in (4, 5) or (frames.ndim == 5 and frames.shape[1] != WINDOW_FRAMES):
            raise StreamInputError(f"wrong shape {tuple(frames.shape)}: expected {want}")
        if frames.shape[0] != n:
            raise StreamInputError(
                f"wrong number of envs: the stream has {n} envs, the body holds {frames.shape[0]} "
                f"frames (shape {tuple(frames.shape)}); expected {want}"
            )
        if tuple(frames.shape[-3:]) != (h, w, 3):
            raise StreamInputError(
                f"wrong frame size {tuple(frames.shape[-3:])}: this stream was created for "
                f"{h}x{w} RGB frames; expected {want}"
            )

    def advance(self, frames: np.ndarray, reset: list[int] | None = None) -> torch.Tensor:
        """The N windows after this step, as a new tensor (the stream itself is unchanged until `commit`)."""
        self.check_frames(frames)
        x = torch.from_numpy(frames if frames.flags.writeable else frames.copy()).to(self.device)
        if frames.ndim == 5:  # full windows: a resync after the stream was re-created
            if reset:
                raise StreamInputError(
                    "`reset` cannot be combined with full windows: each window already holds its "
                    "episode's history; send newest frames (N, H, W, 3) with reset instead"
                )
            return x
        reset_mask = ~self.started.copy()
        if reset:
            reset_mask[np.asarray(reset, dtype=np.int64)] = True
        return advance(self.windows, x, reset_mask)  # the window rule, on the model's device

    async def step(self, frames: np.ndarray, reset: list[int], submit) -> np.ndarray:
        """One step: advance, embed through `submit` (the batcher), commit. Steps of one stream run one at a time."""
        async with self.lock:
            windows = self.advance(frames, reset)
            # on CPU the batcher gets a numpy view (no copy); on a GPU the tensor, so frames never leave the device
            emb = await submit(windows.numpy() if windows.device.type == "cpu" else windows)
            self.commit(windows)
            return emb

    def commit(self, windows: torch.Tensor) -> None:
        self.windows = windows
        self.started[:] = True
        self.last_used = time.monotonic()


def stream_bytes(envs: int, height: int, width: int) -> int:
    return envs * WINDOW_FRAMES * height * width * 3


def parse_reset(value: str | None, envs: int) -> list[int]:
    """`?reset=0,3` -> [0, 3]: env indices in [0, envs). Empty or absent -> []."""
    if value is None or not value.strip():
        return []
    out = []
    for token in value.split(","):
        token = token.strip()
        if not token:
            continue
        try:
            i = int(token)
        except ValueError:
            raise StreamInputError(
                f"reset: {token!r} is not an env index; give comma-separated integers, e.g. ?reset=0,3"
            ) from None
        if not 0 <= i < envs:
            raise StreamInputError(f"reset index {i} out of range: this stream has {envs} envs (0..{envs - 1})")
        out.append(i)
    return sorted(set(out))


class StreamRegistry:
    """Live streams, bounded in number and in bytes held; idle ones expire after ttl_s."""

    def __init__(
        self,
        *,
        device: str = "cpu",
        ttl_s: float = 300.0,
        max_streams: int = 64,
        max_bytes: int = 2 * GIB,
        max_body_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.device, self.ttl_s = device, ttl_s
        self.max_streams, self.max_bytes = max_streams, max_bytes
        self.max_body_bytes = max_body_bytes  # a stream's full windows must fit one body (the resync after a loss)
        self.clock = clock
        self._streams: dict[str, Stream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._streams.values())

    def create(self, envs: int, height: int, width: int, pooling: PoolingSpec | None = None) -> Stream:
        need = stream_bytes(envs, height, width)
        if need > self.max_bytes:
            raise StreamInputError(
                f"stream too large: {envs} envs x {WINDOW_FRAMES} frames x {height}x{width}x3 = "
                f"{need} bytes > the encoder's stream memory limit of {self.max_bytes} bytes; "
                f"use fewer envs or smaller frames"
            )
        if self.max_body_bytes is not None and need + NPY_HEADER_BYTES > self.max_body_bytes:
            raise StreamInputError(
                f"stream too large: its full windows ({envs} envs x {WINDOW_FRAMES} frames x "
                f"{height}x{width}x3 = {need} bytes) must fit one request body (limit "
                f"{self.max_body_bytes} bytes) so a lost stream can be resynchronised; "
                f"use fewer envs or smaller frames"
            )
        self.expire()
        if len(self._streams) >= self.max_streams:
            raise StreamsFull(
                f"too many streams: {len(self._streams)} open (limit {self.max_streams}); "
                f"retry later or DELETE /streams/<id> of finished ones"
            )
        if self.nbytes + need > self.max_bytes:
            raise StreamsFull(
                f"stream memory full: {self.nbytes} of {self.max_bytes} bytes held, this stream needs "
                f"{need}; retry later or DELETE /streams/<id> of finished ones"
            )
        sid = uuid.uuid4().hex
        windows = torch.zeros((envs, WINDOW_FRAMES, height, width, 3), dtype=torch.uint8, device=self.device)
        s = Stream(sid, envs, height, width, self.device, windows, np.zeros(envs, bool), self.clock(), pooling=pooling)
        self._streams[sid] = s
        return s

    def get(self, stream_id: str) -> Stream:
        self.expire()
        s = self._streams.get(stream_id)
        if s is None:
            raise StreamNotFound(stream_id)
        s.last_used = self.clock()
        return s

    def delete(self, stream_id: str) -> None:
        if self._streams.pop(stream_id, None) is None:
            raise StreamNotFound(stream_id)

    def expire(self) -> int:
        """Drop streams idle for more than ttl_s (never one whose step is in flight). Returns how many."""
        now = self.clock()
        dead = [k for k, s in self._streams.items() if now - s.last_used > self.ttl_s and not s.lock.locked()]
        for k in dead:
            del self._streams[k]
        return len(dead)

    def clear(self) -> None:
        self._streams.clear()


# ----------------------------------------------------------------------------------------------------------------
# Compressed bodies: Content-Encoding zstd | gzip, with the size limit applied to the decompressed bytes
# ----------------------------------------------------------------------------------------------------------------

_CHUNK = 1 << 20


class BodyTooLarge(ValueError):
    pass


def decompress(data: bytes, encoding: str | None, limit: int) -> bytes:
    """Decode a request body, streaming, never producing more than `limit` bytes (zip bombs stop at the limit).

    Raises StreamInputError (415 unknown encoding, 400 corrupt data) or BodyTooLarge (413).
    """
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return data
    if enc == "zstd":
        try:
            import zstandard
        except ImportError:  # a hand-assembled image without it: say so instead of a 500
            raise StreamInputError(
                "this encoder cannot decode zstd bodies (the zstandard package is not installed); "
                "send gzip or an uncompressed body",
                415,
            ) from None

        try:
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
            return _read_limited(reader.read, limit)
        except zstandard.ZstdError as exc:
            raise StreamInputError(f"corrupt zstd body: {exc}", 400) from None
    if enc in ("gzip", "x-gzip"):
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error as exc:
            raise StreamInputError(f"corrupt gzip body: {exc}", 400) from None
        if len(out) > limit:
            raise BodyTooLarge(_too_large(limit))
        if not d.eof:
            raise StreamInputError("truncated gzip body: the compressed stream ends before its end marker", 400)
        return out
    raise StreamInputError(
        f"unsupported Content-Encoding {encoding!r}: send one of {', '.join(CONTENT_ENCODINGS)} "
        f"or an uncompressed body",
        415,
    )


def _read_limited(read: Callable[[int], bytes], limit: int) -> bytes:
    buf = bytearray()
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise BodyTooLarge(_too_large(limit))


def _too_large(limit: int) -> str:
    return f"body too large: decompressed it exceeds the limit of {limit} bytes; send fewer windows per request"
