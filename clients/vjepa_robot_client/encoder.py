"""Clients of the encoder service: frames in (uint8 .npy), embeddings out (float32 .npy).

frames:      (B, T, H, W, 3) uint8, or one window (T, H, W, 3) uint8
embeddings:  (B, D) float32   (one window gives (1, D))                     pool="mean" (the default)
token grids: (B, g*g, D') float16 (dtype="float32" for float32)            pool="grid", grid_size=g

enc.encode(frames, pool="grid", grid_size=4)                        # (B, 16, D) float16
enc.stream(envs, h, w, pool="grid", grid_size=4).step(frames)       # (N, 16, D) float16
enc.encode_dataset_and_wait(name, pool="grid", grid_size=4)         # rows under pooled_encoder_id(...)
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from ._calls import Call, Poll, async_call, async_poll, described, sync_call, sync_poll
from ._transport import AsyncTransport, SyncTransport, compress_body, resolve_compress
from ._urls import default_encoder_url
from .contract import (
    DEFAULT_GRID_SIZE,
    NPY_MEDIA_TYPE,
    DatasetEncodeRequest,
    DatasetEncodeStatus,
    EncodeResponse,
    EncoderInfo,
    HealthResponse,
    PoolingSpec,
    from_npy_bytes,
    npy_header,
    to_npy_bytes,
    validate_name,
)
from .errors import DatasetEncodeFailed
from .stream import AsyncFrameStream, FrameStream

ENCODER_URL_ENV = "VJEPA_ROBOT_ENCODER_URL"
DEFAULT_ENCODER_URL = "http://127.0.0.1:8001"
_ENCODE_DONE = ("done", "failed")


def as_batch(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) or (B, T, H, W, 3) uint8 -> (B, T, H, W, 3) uint8, refusing anything else before it is sent."""
    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames[None]
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be (B, T, H, W, 3) or one window (T, H, W, 3), got shape {frames.shape}; "
            f"e.g. np.stack(last_8_frames)[None] for one window"
        )
    if frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 (raw RGB renders), got {frames.dtype}; "
            f"convert with (x * 255).clip(0, 255).astype(np.uint8) if they are floats in [0, 1]"
        )
    return frames


_SEND_CHUNK = 1 << 20


def _npy_parts(array: np.ndarray) -> list:
    """np.save's bytes of `array` as [header, 1 MiB views of the array's own memory]: nothing is copied here.

    Sent with a Content-Length, httpx writes the parts one by one (no chunked encoding). Measured on the dev box
    (bench/transport.py): np.save of a 50 MB batch into BytesIO plus httpx joining it cost ~3 ms of client CPU per
    window; 1 MiB views cost ~0.6 ms (small copies reuse warm heap memory instead of page-faulting a fresh 50 MB).
    """
    array = np.ascontiguousarray(array)
    data = memoryview(array.reshape(-1)).cast("B")
    return [npy_header(array), *(data[i : i + _SEND_CHUNK] for i in range(0, len(data), _SEND_CHUNK))]


class _AsyncParts:
    """The parts for httpx.AsyncClient (it needs an async iterable); re-iterable, so a retried request resends them."""

    def __init__(self, parts: list):
        self.parts = parts

    async def __aiter__(self):
        for part in self.parts:
            yield part


def _encode_request(frames: np.ndarray, compress: str | None = None, *, aio: bool = False) -> dict[str, Any]:
    headers = {"Content-Type": NPY_MEDIA_TYPE, "Accept": NPY_MEDIA_TYPE}
    if compress is None:
        parts = _npy_parts(as_batch(frames))
        size = str(sum(len(p) for p in parts))
        return {"content": _AsyncParts(parts) if aio else parts, "headers": {**headers, "Content-Length": size}}
    content, extra = compress_body(to_npy_bytes(as_batch(frames)), compress)
    return {"content": content, "headers": {**headers, **extra}}


def _embeddings(response: httpx.Response) -> np.ndarray:
    """The (B, D) float32 embeddings from an .npy answer (or a JSON EncodeResponse from an older server)."""
    if response.headers.get("content-type", "").split(";")[0].strip() == NPY_MEDIA_TYPE:
        out = from_npy_bytes(response.content)
    else:
        out = np.asarray(EncodeResponse.model_validate(response.json()).embeddings, dtype=np.float32)
    out = np.array(out, dtype=np.float32, copy=True)  # writable, owned
    if out.ndim != 2:
        raise ValueError(f"encoder answered embeddings of shape {out.shape}, expected (B, D)")
    return out


def _grids(response: httpx.Response) -> np.ndarray:
    """The (B, G, D') token grids from an .npy answer (dtype as answered: float16 unless dtype=float32 was asked),
    or from a JSON EncodeResponse (float32)."""
    if response.headers.get("content-type", "").split(";")[0].strip() == NPY_MEDIA_TYPE:
        out = np.array(from_npy_bytes(response.content), copy=True)  # writable, owned
    else:
        out = np.asarray(EncodeResponse.model_validate(response.json()).embeddings, dtype=np.float32)
    if out.ndim != 3:
        raise ValueError(f"encoder answered token grids of shape {out.shape}, expected (B, G, D)")
    return out


def _parser(spec: PoolingSpec):
    return _grids if spec.is_grid else _embeddings


def _spec(pool: str, grid_size: int, time: str, layers, dtype: str | None) -> PoolingSpec:
    """The SDK's pooling arguments -> PoolingSpec (ValueError, before anything is sent, for a bad combination)."""
    from pydantic import ValidationError

    try:
        return PoolingSpec.of(pool, grid_size, time, layers, dtype)
    except ValidationError as exc:
        raise ValueError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}".lstrip(": ") for e in exc.errors())
        ) from None


def _dataset_body(batch_size: int, spec: PoolingSpec) -> dict[str, Any]:
    DatasetEncodeRequest(batch_size=batch_size, **spec.fields())  # refused here, before anything is sent
    return {"batch_size": batch_size, **spec.fields()}  # pooling fields only when not mean: older servers accept it


def _dataset_path(name: str) -> str:
    return f"/datasets/{validate_name(name, 'dataset name')}/encode"


# -- every call, written once (the clients below are shells over these builders: _calls.py) --------------------


def health() -> Call[HealthResponse]:
    """GET /healthz: the service is up (and its model loaded)."""
    return Call("GET", "/healthz", lambda r: HealthResponse.model_validate(r.json()))


def info() -> Call[EncoderInfo]:
    """GET /info: the encoder's id, model, embedding size, frame count and size, dtype and device."""
    return Call("GET", "/info", lambda r: EncoderInfo.model_validate(r.json()))


def encode_call(
    frames: np.ndarray, spec: PoolingSpec, compress: str | None, *, aio: bool
) -> Call[tuple[np.ndarray, str | None]]:
    """POST /encode: (embeddings or token grids, the X-Encoder-Id header if sent)."""
    parse = _parser(spec)
    return Call(
        "POST",
        "/encode",
        lambda r: (parse(r), r.headers.get("x-encoder-id")),
        params=spec.query() or None,
        idempotent=True,
        **_encode_request(frames, compress, aio=aio),
    )


def encode_dataset(
    name: str,
    batch_size: int = 32,
    pool: str = "mean",
    grid_size: int = DEFAULT_GRID_SIZE,
    *,
    time: str = "mean",
    layers: list[int] | None = None,
    dtype: str | None = None,
) -> Call[DatasetEncodeStatus]:
    """Start (idempotently) embedding every window of a dataset on the service; returns at once.
    pool="grid": the rows are stored as (g*g, D') token grids under status.encoder_id (pooled_encoder_id)."""
    body = _dataset_body(batch_size, _spec(pool, grid_size, time, layers, dtype))
    return Call("POST", _dataset_path(name), lambda r: DatasetEncodeStatus.model_validate(r.json()), json=body)


def dataset_encode_status(
    name: str,
    pool: str = "mean",
    grid_size: int = DEFAULT_GRID_SIZE,
    *,
    time: str = "mean",
    layers: list[int] | None = None,
    dtype: str | None = None,
) -> Call[DatasetEncodeStatus]:
    """The state of a dataset's embedding job at this pooling (idle, running, done, failed; done/total)."""
    params = _spec(pool, grid_size, time, layers, dtype).query() or None
    return Call("GET", _dataset_path(name), lambda r: DatasetEncodeStatus.model_validate(r.json()), params=params)


def wait_dataset_encode(
    name: str,
    *,
    progress: bool = True,
    timeout: float | None = None,
    poll_interval: float = 2.0,
    pool: str = "mean",
    grid_size: int = DEFAULT_GRID_SIZE,
    time: str = "mean",
    layers: list[int] | None = None,
    dtype: str | None = None,
) -> Poll[DatasetEncodeStatus]:
    """Poll until the dataset's embedding job (at this pooling) is done or failed."""
    return Poll(
        f"encode {name}",
        dataset_encode_status(name, pool, grid_size, time=time, layers=layers, dtype=dtype),
        done=lambda status: status.status in _ENCODE_DONE or status.status == "idle",
        observe=lambda status: (status.done, status.total or None, status.status),
        progress=progress,
        timeout=timeout,
        poll_interval=poll_interval,
        timeout_message=lambda what, state, timeout, status: (
            f"dataset {name}: embedding still {state} ({status.done}/{status.total}) after {timeout} s"
        ),
    )


def encode_dataset_and_wait(
    name: str,
    *,
    batch_size: int = 32,
    progress: bool = False,
    timeout: float | None = None,
    poll_interval: float = 0.5,
    pool: str = "mean",
    grid_size: int = DEFAULT_GRID_SIZE,
    time: str = "mean",
    layers: list[int] | None = None,
    dtype: str | None = None,
) -> tuple[Call[DatasetEncodeStatus], Poll[DatasetEncodeStatus]]:
    """Embed a whole dataset on the service and wait: start (idempotent), poll, raise if the job failed.

    The one "encode a dataset and wait" used by the CLI, the trainer's vjepa2 features and the demo.
    pool="grid", grid_size=g: store (g*g, D') token grids; read them with
    Store.read_embeddings(name, status.encoder_id) -> (N, g*g, D').
    Raises NotFound (unknown dataset), WaitTimeout (after `timeout` s), DatasetEncodeFailed (the job failed).
    """
    pooling = dict(pool=pool, grid_size=grid_size, time=time, layers=layers, dtype=dtype)
    start = encode_dataset(name, batch_size, **pooling)
    poll = wait_dataset_encode(name, progress=progress, timeout=timeout, poll_interval=poll_interval, **pooling)
    return start, poll


def _started(status: DatasetEncodeStatus) -> bool:
    """Whether encode_dataset_and_wait must poll after starting (the job did not end at once)."""
    return status.status not in _ENCODE_DONE


def _encoded(name: str, status: DatasetEncodeStatus) -> DatasetEncodeStatus:
    if status.status != "done":
        raise DatasetEncodeFailed(
            f"encoding dataset {name!r} {status.status} on the encoder: {status.error}", detail=status.error
        )
    return status


_ENCODE_DOC = """Embed windows: (B, T, H, W, 3) or (T, H, W, 3) uint8 -> (B, D) float32 (pool="mean", the default), or
(B, grid_size**2, D') token grids (pool="grid"; float16 unless dtype="float32"; D' = D x len(layers)).
time: "mean" | "last" (how a grid folds the temporal token slices); see contract.PoolingSpec."""

_STREAM_DOC = """Open a frame stream: `.step(frames, reset=...)` sends the newest frame of each env, -> (N, D) float32,
or (N, grid_size**2, D') token grids with pool="grid" (stream.encoder_id is the grid's id). On the async client
the stream is awaited, and so are its step and close."""

_CLIENT_DOC = """{kind} client of the encoder service.

    >>> enc = {cls}("http://127.0.0.1:8001", token=None)
    >>> {aw}enc.encode(np.zeros((8, 256, 256, 3), np.uint8)).shape   # (1, D)
    >>> s = {aw}enc.stream(envs=8, height=256, width=256)              # frame stream: one frame per env per step
    >>> {aw}s.step(frames, reset=[0]).shape                            # (8, D)

    compress: request bodies sent with Content-Encoding "zstd" or "gzip", or None / "none"; "auto" (default) is zstd
    for a remote URL and none on loopback (an SSH tunnel to a remote GPU is loopback too: pass "zstd" there).
    """


class _EncoderBase:
    env_url = ENCODER_URL_ENV
    default_url = property(lambda self: default_encoder_url())  # DEFAULT_ENCODER_URL unless the port variables say

    def __init__(
        self, url: str | None = None, token: str | None = None, *, compress: str | None = "auto", **kwargs: Any
    ) -> None:
        super().__init__(url, token, **kwargs)  # type: ignore[call-arg]
        self.compress = resolve_compress(compress, self.url)  # type: ignore[attr-defined]
        self.last_encoder_id: str | None = None  # from the X-Encoder-Id header, when the service sends it


class EncoderClient(_EncoderBase, SyncTransport):
    __doc__ = _CLIENT_DOC.format(kind="Synchronous", cls="EncoderClient", aw="")

    health = sync_call(health)
    info = sync_call(info)
    encode_dataset = sync_call(encode_dataset)
    dataset_encode_status = sync_call(dataset_encode_status)
    wait_dataset_encode = sync_poll(wait_dataset_encode)

    def encode(
        self,
        frames: np.ndarray,
        pool: str = "mean",
        grid_size: int = DEFAULT_GRID_SIZE,
        *,
        time: str = "mean",
        layers: list[int] | None = None,
        dtype: str | None = None,
    ) -> np.ndarray:
        spec = _spec(pool, grid_size, time, layers, dtype)
        out, encoder_id = self.send(encode_call(frames, spec, self.compress, aio=False))
        self.last_encoder_id = encoder_id or self.last_encoder_id
        return out

    def stream(
        self,
        envs: int,
        height: int,
        width: int,
        pool: str = "mean",
        grid_size: int = DEFAULT_GRID_SIZE,
        *,
        time: str = "mean",
        layers: list[int] | None = None,
        dtype: str | None = None,
    ) -> FrameStream:
        spec = _spec(pool, grid_size, time, layers, dtype)
        return FrameStream(self, envs, height, width, self.compress, _parser(spec), pooling=spec)

    @described(encode_dataset_and_wait)
    def encode_dataset_and_wait(
        self,
        name: str,
        *,
        batch_size: int = 32,
        progress: bool = False,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        pool: str = "mean",
        grid_size: int = DEFAULT_GRID_SIZE,
        time: str = "mean",
        layers: list[int] | None = None,
        dtype: str | None = None,
    ) -> DatasetEncodeStatus:
        start, poll = encode_dataset_and_wait(
            name,
            batch_size=batch_size,
            progress=progress,
            timeout=timeout,
            poll_interval=poll_interval,
            pool=pool,
            grid_size=grid_size,
            time=time,
            layers=layers,
            dtype=dtype,
        )
        status = self.send(start)
        return _encoded(name, self.poll(poll) if _started(status) else status)

    encode.__doc__ = _ENCODE_DOC
    stream.__doc__ = _STREAM_DOC


class AsyncEncoderClient(_EncoderBase, AsyncTransport):
    __doc__ = _CLIENT_DOC.format(kind="Asynchronous", cls="AsyncEncoderClient", aw="await ")

    health = async_call(health)
    info = async_call(info)
    encode_dataset = async_call(encode_dataset)
    dataset_encode_status = async_call(dataset_encode_status)
    wait_dataset_encode = async_poll(wait_dataset_encode)

    async def encode(
        self,
        frames: np.ndarray,
        pool: str = "mean",
        grid_size: int = DEFAULT_GRID_SIZE,
        *,
        time: str = "mean",
        layers: list[int] | None = None,
        dtype: str | None = None,
    ) -> np.ndarray:
        spec = _spec(pool, grid_size, time, layers, dtype)
        out, encoder_id = await self.send(encode_call(frames, spec, self.compress, aio=True))
        self.last_encoder_id = encoder_id or self.last_encoder_id
        return out

    async def stream(
        self,
        envs: int,
        height: int,
        width: int,
        pool: str = "mean",
        grid_size: int = DEFAULT_GRID_SIZE,
        *,
        time: str = "mean",
        layers: list[int] | None = None,
        dtype: str | None = None,
    ) -> AsyncFrameStream:
        spec = _spec(pool, grid_size, time, layers, dtype)
        s = AsyncFrameStream(self, envs, height, width, self.compress, _parser(spec), pooling=spec)
        await s._open()
        return s

    @described(encode_dataset_and_wait)
    async def encode_dataset_and_wait(
        self,
        name: str,
        *,
        batch_size: int = 32,
        progress: bool = False,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        pool: str = "mean",
        grid_size: int = DEFAULT_GRID_SIZE,
        time: str = "mean",
        layers: list[int] | None = None,
        dtype: str | None = None,
    ) -> DatasetEncodeStatus:
        start, poll = encode_dataset_and_wait(
            name,
            batch_size=batch_size,
            progress=progress,
            timeout=timeout,
            poll_interval=poll_interval,
            pool=pool,
            grid_size=grid_size,
            time=time,
            layers=layers,
            dtype=dtype,
        )
        status = await self.send(start)
        return _encoded(name, await self.poll(poll) if _started(status) else status)

    encode.__doc__ = _ENCODE_DOC
    stream.__doc__ = _STREAM_DOC
