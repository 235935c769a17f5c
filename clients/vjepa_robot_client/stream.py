"""Frame streams from the client side: send each env's newest frame, get (N, D) embeddings of the last 8 frames.

    with EncoderClient(url).stream(envs=8, height=256, width=256) as s:
        emb = s.step(frames)                   # (N, H, W, 3) uint8 -> (N, D) float32; the first step starts every env
        emb = s.step(frames, reset=[2, 5])     # envs 2 and 5 start a new episode with this frame

The stream keeps its own copy of each env's last 8 frames (a WindowBuffer), so it can always rebuild full windows.
When the encoder has lost the stream (404: it restarted, or the stream idled past its ttl), the stream is re-created
and that step sends the full windows (N, 8, H, W, 3), which both embeds them and restores the encoder's history;
the next steps send single frames again. A restart costs one step, never an evaluation. The same resync follows
any step whose outcome is unknown (a timeout, a dropped connection), so the two copies never drift apart.
Connection errors and 503s are retried by the transport's one retry policy before any of this.

Across replicas (an autoscaled encoder; docs/streams.md): a stream lives in one encoder process. Every request of a
stream carries `Modal-Session-ID: <a key the stream drew at creation>` (STREAM_SESSION_HEADER), so a router with
header affinity (Modal HTTP Servers' sticky routing, nginx `hash $http_modal_session_id consistent`, Envoy ring
hash) keeps it on one replica, the re-created stream after a scale event included. Correctness never rests on the
affinity: when the stream is lost LOSSES_BEFORE_STATELESS times without one frame step succeeding in between (a
router that ignores the header), the stream stops keeping server state and sends each step's full windows to
POST /encode: the same embeddings, ~2.7x the bytes (measured: docs/streams.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._transport import compress_body
from .contract import (
    NPY_MEDIA_TYPE,
    STREAM_SESSION_HEADER,
    PoolingSpec,
    StreamCreated,
    StreamCreateRequest,
    to_npy_bytes,
)
from .errors import ConnectionFailed, NotFound
from .window import WINDOW_FRAMES, WindowBuffer


def _check_frames(frames: np.ndarray, envs: int, height: int, width: int) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.shape != (envs, height, width, 3) or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be ({envs}, {height}, {width}, 3) uint8 (the newest frame of each env), "
            f"got {frames.shape} {frames.dtype}"
        )
    return frames


def _check_windows(windows: np.ndarray, envs: int, height: int, width: int) -> np.ndarray:
    windows = np.asarray(windows)
    if windows.shape != (envs, WINDOW_FRAMES, height, width, 3) or windows.dtype != np.uint8:
        raise ValueError(
            f"windows must be ({envs}, {WINDOW_FRAMES}, {height}, {width}, 3) uint8, "
            f"got {windows.shape} {windows.dtype}"
        )
    return windows


def _cut_off(exc: ConnectionFailed) -> bool:
    """The connection was lost mid-request (the step may or may not have run), not refused outright."""
    import httpx

    return not isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout))


def _reset_list(reset: Sequence[int] | np.ndarray | None, envs: int) -> list[int]:
    out = sorted({int(i) for i in (reset if reset is not None else [])})
    if out and not (0 <= out[0] and out[-1] < envs):
        raise ValueError(f"reset indices must be in [0, {envs}), got {out}")
    return out


class _StreamBase:
    def __init__(
        self,
        envs: int,
        height: int,
        width: int,
        compress: str | None,
        parse: Callable[[Any], np.ndarray],
        pooling: PoolingSpec | None = None,
    ):
        self.envs, self.height, self.width = int(envs), int(height), int(width)
        self.pooling = pooling  # None / mean: steps give (N, D) float32; a grid: (N, g*g, D') (encoder_id says which)
        self.compress = compress
        self._parse = parse  # the encoder client's answer -> (N, D) float32 (as for POST /encode)
        self.buffer = WindowBuffer(self.envs, self.height, self.width)
        self.stream_id: str | None = None
        self.encoder_id: str | None = None
        self.ttl_s: float | None = None
        self.resyncs = 0  # steps that sent full windows (after a lost stream or an unknown outcome)
        self._in_sync = True  # False: the encoder's copy may differ from ours; the next step sends full windows
        # across replicas: the affinity key, and what the stream cost (tests and bench/streams_replicas.py read these)
        self.session = uuid.uuid4().hex  # sent as STREAM_SESSION_HEADER on every request of this stream
        self.steps = 0  # step() and resync() calls
        self.lost = 0  # answers "stream not found" (the encoder restarted, the stream expired, or another replica)
        self.bytes_sent = 0  # request bodies sent by steps, as on the wire (a refused one too; transport retries not)
        self.stateless = False  # True once the router proved it keeps no affinity: full windows to POST /encode
        self._lost_in_a_row = 0  # losses since the last frame step that succeeded

    LOSSES_BEFORE_STATELESS = 3

    def _session_headers(self) -> dict[str, str]:
        return {STREAM_SESSION_HEADER: self.session}

    def _lose(self) -> bool:
        """Count a lost stream; True when the stream should stop keeping server state (see the module docstring)."""
        self.lost += 1
        self._lost_in_a_row += 1
        if self._lost_in_a_row >= self.LOSSES_BEFORE_STATELESS and not self.stateless:
            self.stateless = True
        return self.stateless

    def _encode_request(self, windows: np.ndarray) -> dict[str, Any]:
        """Full windows for POST /encode, at the stream's pooling (a grid stream stays a grid when stateless)."""
        request = self._step_request(windows, [])
        request.pop("params", None)
        if self.pooling is not None and self.pooling.query():
            request["params"] = self.pooling.query()
        return request

    def _create_body(self) -> dict[str, Any]:
        pooling = self.pooling.fields() if self.pooling is not None else {}  # nothing extra for mean: older servers
        body = StreamCreateRequest(envs=self.envs, height=self.height, width=self.width, **pooling)
        return {"envs": body.envs, "height": body.height, "width": body.width, **pooling}

    def _created(self, body: Any) -> None:
        created = StreamCreated.model_validate(body)
        self.stream_id, self.encoder_id, self.ttl_s = created.stream_id, created.encoder_id, created.ttl_s

    def _step_request(self, body: np.ndarray, reset: list[int]) -> dict[str, Any]:
        content, headers = compress_body(to_npy_bytes(body), self.compress)
        params = {"reset": ",".join(map(str, reset))} if reset else None
        self.bytes_sent += len(content)
        return {
            "content": content,
            "params": params,
            "headers": {"Content-Type": NPY_MEDIA_TYPE, "Accept": NPY_MEDIA_TYPE, **headers, **self._session_headers()},
        }

    def _path(self) -> str:
        return f"/streams/{self.stream_id}/step"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stream_id!r}, envs={self.envs}, {self.height}x{self.width})"


class FrameStream(_StreamBase):
    """A stream on a synchronous EncoderClient (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        envs: int,
        height: int,
        width: int,
        compress: str | None,
        parse: Callable[[Any], np.ndarray],
        pooling: PoolingSpec | None = None,
    ):
        super().__init__(envs, height, width, compress, parse, pooling)
        self.client = client
        self._open()

    def _open(self) -> None:
        self._created(
            self.client.request("POST", "/streams", json=self._create_body(), headers=self._session_headers()).json()
        )

    def step(self, frames: np.ndarray, reset: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(N, H, W, 3) uint8 newest frames -> (N, D) float32 embeddings of each env's last 8 frames
        ((N, g*g, D') token grids for a stream opened with pool="grid")."""
        frames = _check_frames(frames, self.envs, self.height, self.width)
        reset = _reset_list(reset, self.envs)
        windows = self.buffer.push(frames, reset)
        self.steps += 1
        if self.stateless:
            return self.step_stateless(windows)
        if self._in_sync:
            self._in_sync = False  # until the answer arrives: an exception leaves the encoder's copy unknown
            try:
                out = self._parse(self.client.request("POST", self._path(), **self._step_request(frames, reset)))
                self._in_sync = True
                self._lost_in_a_row = 0
                return out
            except NotFound:  # the encoder restarted, the stream expired, or the step reached another replica
                if self._lose():
                    return self.step_stateless(windows)
                self._open()
            except ConnectionFailed as exc:
                if not _cut_off(exc):
                    raise
        return self._resync(windows)

    def step_stateless(self, windows: np.ndarray) -> np.ndarray:
        return self._parse(self.client.request("POST", "/encode", idempotent=True, **self._encode_request(windows)))

    def resync(self, windows: np.ndarray) -> np.ndarray:
        """Replace every env's window with `windows` (N, 8, H, W, 3) uint8 (e.g. another rollout used this stream)
        and embed them: -> (N, D) float32. The following steps continue from these windows."""
        windows = _check_windows(windows, self.envs, self.height, self.width)
        self.buffer.windows[:] = windows
        self.buffer.started[:] = True
        self.steps += 1
        if self.stateless:
            return self.step_stateless(self.buffer.windows)
        return self._resync(self.buffer.windows)

    def _resync(self, windows: np.ndarray) -> np.ndarray:
        self._in_sync = False
        while True:  # ends: each loss counts towards LOSSES_BEFORE_STATELESS
            try:  # full windows set the encoder's copy, so sending them twice is harmless: idempotent
                r = self.client.request("POST", self._path(), idempotent=True, **self._step_request(windows, []))
                break
            except NotFound:
                if self._lose():
                    return self.step_stateless(windows)
                self._open()
        self.resyncs += 1
        self._in_sync = True
        return self._parse(r)

    def close(self) -> None:
        if self.stream_id is not None:
            try:
                self.client.request("DELETE", f"/streams/{self.stream_id}", headers=self._session_headers())
            except (NotFound, ConnectionFailed):
                pass
            self.stream_id = None

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncFrameStream(_StreamBase):
    """A stream on an AsyncEncoderClient: `s = await client.stream(...)`, `await s.step(frames)`, `await s.close()`."""

    def __init__(
        self,
        client: Any,
        envs: int,
        height: int,
        width: int,
        compress: str | None,
        parse: Callable[[Any], np.ndarray],
        pooling: PoolingSpec | None = None,
    ):
        super().__init__(envs, height, width, compress, parse, pooling)
        self.client = client

    async def _open(self) -> None:
        self._created(
            (
                await self.client.request("POST", "/streams", json=self._create_body(), headers=self._session_headers())
            ).json()
        )

    async def step(self, frames: np.ndarray, reset: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        frames = _check_frames(frames, self.envs, self.height, self.width)
        reset = _reset_list(reset, self.envs)
        windows = self.buffer.push(frames, reset)
        self.steps += 1
        if self.stateless:
            return await self.step_stateless(windows)
        if self._in_sync:
            self._in_sync = False
            try:
                r = await self.client.request("POST", self._path(), **self._step_request(frames, reset))
                out = self._parse(r)
                self._in_sync = True
                self._lost_in_a_row = 0
                return out
            except NotFound:
                if self._lose():
                    return await self.step_stateless(windows)
                await self._open()
            except ConnectionFailed as exc:
                if not _cut_off(exc):
                    raise
        return await self._resync(windows)

    async def step_stateless(self, windows: np.ndarray) -> np.ndarray:
        r = await self.client.request("POST", "/encode", idempotent=True, **self._encode_request(windows))
        return self._parse(r)

    async def resync(self, windows: np.ndarray) -> np.ndarray:
        windows = _check_windows(windows, self.envs, self.height, self.width)
        self.buffer.windows[:] = windows
        self.buffer.started[:] = True
        self.steps += 1
        if self.stateless:
            return await self.step_stateless(self.buffer.windows)
        return await self._resync(self.buffer.windows)

    async def _resync(self, windows: np.ndarray) -> np.ndarray:
        self._in_sync = False
        while True:
            try:
                r = await self.client.request("POST", self._path(), idempotent=True, **self._step_request(windows, []))
                break
            except NotFound:
                if self._lose():
                    return await self.step_stateless(windows)
                await self._open()
        self.resyncs += 1
        self._in_sync = True
        return self._parse(r)

    async def close(self) -> None:
        if self.stream_id is not None:
            try:
                await self.client.request("DELETE", f"/streams/{self.stream_id}", headers=self._session_headers())
            except (NotFound, ConnectionFailed):
                pass
            self.stream_id = None

    async def __aenter__(self) -> AsyncFrameStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
