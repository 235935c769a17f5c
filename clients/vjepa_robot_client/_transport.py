"""Shared HTTP transport: base URL, bearer token, timeouts, retries with backoff, typed errors.

One implementation of the policy, two thin drivers (httpx.Client and httpx.AsyncClient).

This is the SDK's one retry policy; evaluation and SAC training reach the encoder through it (an encoder restart
during a rollout is ridden out here, not by the caller). Retried (the request provably did not run, so retrying is
safe even for POST /train/bc):
  - connection errors (refused, DNS, connect timeout): the request never reached the service;
  - 503 and 429 answers: the service refused it (e.g. the encoder's queue is full); Retry-After is honoured;
  - for requests marked idempotent (POST /encode, a stream resync), also a connection lost mid-request.
Never retried: read timeouts and other answers (a retry could start a second run).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from ._calls import Call, Poll
from ._progress import Progress
from .contract import CONTENT_ENCODINGS
from .errors import ConnectionFailed, RequestTimeout, VjepaRobotError, WaitTimeout, error_for_status

RETRY_STATUS = frozenset({429, 503})
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 4


@dataclass
class RetryPolicy:
    """How many times and how long to wait. Delay before retry k (0-based): backoff * 2**k, capped, jittered."""

    retries: int = DEFAULT_RETRIES
    backoff: float = 0.5  # seconds before the first retry
    max_backoff: float = 10.0
    max_retry_after: float = 60.0  # a Retry-After longer than this is cut to it

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (0.5 + 0.5 * random.random())  # "equal jitter": spreads out a herd of clients


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _detail_text(detail: Any) -> str:
    """FastAPI's 422 detail is a list of {loc, msg}; everything else is shown as is."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def raise_for_response(response: httpx.Response) -> None:
    """Raise the typed error for a non-2xx answer, carrying the server's detail."""
    if response.is_success:
        return
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        detail = response.text.strip() or response.reason_phrase
    request = response.request
    message = f"{response.status_code} {request.method} {request.url.path}: {_detail_text(detail)}"
    raise error_for_status(response.status_code, message, detail=detail, method=request.method, url=str(request.url))


# -- compressed request bodies (Content-Encoding), decompressed by the encoder within its body limit -------------

ZSTD_LEVEL = 3  # reacher renders: ~22 KiB per 256x256 frame at ~1 ms; higher levels buy little


def is_loopback(url: str) -> bool:
    host = (httpx.URL(url).host or "").lower()
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def resolve_compress(compress: str | None, url: str) -> str | None:
    """ "auto" -> zstd for a remote URL, none on loopback (compressing costs more than copying there);
    "none" (the trainer's VJEPA_ROBOT_COMPRESS spelling) and None both mean uncompressed bodies."""
    if compress == "none":
        return None
    if compress == "auto":
        if is_loopback(url):
            return None
        try:
            import zstandard  # noqa: F401
        except ImportError:  # an install without it still compresses
            return "gzip"
        return "zstd"
    if compress is not None and compress not in CONTENT_ENCODINGS:
        raise ValueError(f"compress must be 'auto', 'zstd', 'gzip', 'none' or None, got {compress!r}")
    return compress


def compress_body(data: bytes, method: str | None) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers) for a request body sent with Content-Encoding `method` (None: as is)."""
    if method is None:
        return data, {}
    if method == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data), {"Content-Encoding": "zstd"}
    if method == "gzip":
        import gzip

        return gzip.compress(data, compresslevel=3), {"Content-Encoding": "gzip"}
    raise ValueError(f"unknown Content-Encoding {method!r}: choose one of {', '.join(CONTENT_ENCODINGS)} or None")


class _BaseTransport:
    """Configuration and policy shared by the sync and async drivers."""

    env_url: str = ""
    default_url: str = ""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        headers: dict[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        url = url or os.environ.get(self.env_url) or self.default_url
        # cancel: once set (the caller is shutting down), no retry is waited for or made: the error comes at once
        self.cancel = cancel
        self.url = url.rstrip("/")
        self.token = token if token is not None else (os.environ.get("VJEPA_ROBOT_TOKEN") or None)
        self.timeout = timeout
        self.retry = RetryPolicy(retries=retries, backoff=backoff, max_backoff=max_backoff)
        self.retry_count = 0  # retries made over this client's life (tests and monitoring read it)
        self._headers = {"User-Agent": "vjepa-robot-client/0.1", **(headers or {})}
        if self.token:
            self._headers["Authorization"] = f"Bearer {self.token}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _client_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.url, "headers": self._headers, "timeout": self.timeout}

    def _classify(
        self, attempt: int, response: httpx.Response | None, exc: Exception | None, idempotent: bool = False
    ) -> float | None:
        """Seconds to wait before retrying, or None when the outcome is final."""
        if attempt >= self.retry.retries or self.cancelled:
            return None
        if exc is not None:
            never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            cut_off = idempotent and not isinstance(exc, httpx.TimeoutException)  # e.g. the server went away mid-way
            return self.retry.delay(attempt, None) if never_sent or cut_off else None
        assert response is not None
        if response.status_code in RETRY_STATUS:
            return self.retry.delay(attempt, parse_retry_after(response.headers.get("retry-after")))
        return None

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def _final_error(self, method: str, path: str, exc: Exception) -> VjepaRobotError:
        where = f"{method} {self.url}{path}"
        if self.cancelled:
            return ConnectionFailed(f"{where}: {exc}; not retried: the caller is stopping", method=method, url=where)
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return RequestTimeout(
                f"{where}: no answer within the client timeout ({self.timeout}); "
                f"raise timeout=... or send smaller batches",
                method=method,
                url=where,
            )
        return ConnectionFailed(
            f"{where}: cannot connect after {self.retry.retries + 1} attempts ({exc}); "
            f"is the service running at {self.url}?",
            method=method,
            url=where,
        )


class _PollState:
    """The deadline and progress bar of one Poll, shared by the sync and async loops."""

    def __init__(self, poll: Poll) -> None:
        self.poll = poll
        self.deadline = None if poll.timeout is None else time.monotonic() + poll.timeout
        self.bar = Progress(poll.what, enabled=poll.progress, unit=poll.unit)

    def finished(self, result: Any) -> bool:
        """Show the answer; True when it is terminal; WaitTimeout when the deadline has passed."""
        p = self.poll
        if p.unit_of is not None:
            self.bar.unit = p.unit_of(result)  # known from the first answer, before the bar is drawn
        done, total, state = p.observe(result)
        self.bar.update(done, total, state)
        if p.done(result):
            return True
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise WaitTimeout(p.timeout_message(p.what, state, p.timeout, result))
        return False


class SyncTransport(_BaseTransport):
    def __init__(self, *args: Any, transport: httpx.BaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.Client(transport=transport, **self._client_kwargs())

    def request(self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        """One HTTP request under the retry policy (module docstring); the answer, or the typed error for a non-2xx
        one. idempotent=True also retries a connection lost mid-request."""
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(method, path, **kwargs)
                error: Exception | None = None
            except httpx.TransportError as exc:
                error = exc
            wait = self._classify(attempt, response, error, idempotent)
            if wait is None:
                if error is not None:
                    raise self._final_error(method, path, error) from error
                assert response is not None
                raise_for_response(response)
                return response
            if response is not None:
                response.close()
            attempt += 1
            self.retry_count += 1
            if self.cancel is None:
                time.sleep(wait)
            elif self.cancel.wait(wait):  # shutting down: stop waiting, answer with the last outcome
                if error is not None:
                    raise self._final_error(method, path, error) from error
                assert response is not None
                raise_for_response(response)
                return response

    def send(self, call: Call[Any]) -> Any:
        """Send one Call (_calls.py) and parse its answer."""
        return call.parse(self.request(call.method, call.path, **call.request_kwargs()))

    def poll(self, poll: Poll[Any]) -> Any:
        """Send poll.call every poll.poll_interval seconds until its answer is terminal; returns that answer."""
        state = _PollState(poll)
        with state.bar:
            while True:
                result = self.send(poll.call)
                if state.finished(result):
                    return result
                time.sleep(poll.poll_interval)

    def close(self) -> None:
        """Close the connection pool (also on leaving `with`)."""
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncTransport(_BaseTransport):
    def __init__(self, *args: Any, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = httpx.AsyncClient(transport=transport, **self._client_kwargs())

    async def request(self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        """One HTTP request under the retry policy (module docstring); the answer, or the typed error for a non-2xx
        one. idempotent=True also retries a connection lost mid-request."""
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(method, path, **kwargs)
                error: Exception | None = None
            except httpx.TransportError as exc:
                error = exc
            wait = self._classify(attempt, response, error, idempotent)
            if wait is None:
                if error is not None:
                    raise self._final_error(method, path, error) from error
                assert response is not None
                raise_for_response(response)
                return response
            if response is not None:
                await response.aclose()
            attempt += 1
            self.retry_count += 1
            await asyncio.sleep(wait)

    async def send(self, call: Call[Any]) -> Any:
        """Send one Call (_calls.py) and parse its answer."""
        return call.parse(await self.request(call.method, call.path, **call.request_kwargs()))

    async def poll(self, poll: Poll[Any]) -> Any:
        """Send poll.call every poll.poll_interval seconds until its answer is terminal; returns that answer."""
        state = _PollState(poll)
        with state.bar:
            while True:
                result = await self.send(poll.call)
                if state.finished(result):
                    return result
                await asyncio.sleep(poll.poll_interval)

    async def aclose(self) -> None:
        """Close the connection pool (also on leaving `async with`)."""
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
