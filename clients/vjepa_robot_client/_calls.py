"""Each SDK call written once: a builder returns a Call (the request) that carries its parser (the response), or a
Poll (a call repeated until its answer is terminal). The sync and async clients are shells over the builders:

    class TrainerClient(SyncTransport):
        run = sync_call(api.run)            # def run(self, run_id) -> RunRecord, docstring and all, from api.run
    class AsyncTrainerClient(AsyncTransport):
        run = async_call(api.run)           # async def run(self, run_id) -> RunRecord

so a call's path, body, parser, signature and docstring live in one place, and the two clients cannot drift
(tests/test_sdk_parity.py holds them to the same public methods and signatures). The transports send a Call
(`SyncTransport.send`, `AsyncTransport.send`) and run a Poll (`.poll`), with the one retry policy of _transport.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import httpx

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and how its answer becomes a typed result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, Any] | None = None
    content: Any = None
    headers: dict[str, str] | None = None
    idempotent: bool = False  # a connection lost mid-request may be retried (_transport.py)

    def request_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"idempotent": self.idempotent}
        for name in ("json", "params", "content", "headers"):
            value = getattr(self, name)
            if value is not None:
                kw[name] = value
        return kw


def _still(what: str, state: str, timeout: float | None, result: Any) -> str:
    return f"{what}: still {state} after {timeout} s (it keeps going on the service)"


@dataclass
class Poll(Generic[T]):
    """A Call repeated every poll_interval seconds until `done(result)`; a progress bar from `observe(result)`
    -> (done, total, state); WaitTimeout (message: `timeout_message`) once `timeout` seconds have passed."""

    what: str  # the progress bar's description and the timeout message's subject: "run bc-0001"
    call: Call[T]
    done: Callable[[T], bool]
    observe: Callable[[T], tuple[float | None, float | None, str]]
    unit: str = "it"
    unit_of: Callable[[T], str] | None = None  # a unit known from the first answer (a run's kind)
    progress: bool = True
    timeout: float | None = None
    poll_interval: float = 2.0
    timeout_message: Callable[[str, str, float | None, T], str] = field(default=_still)


def _method(builder: Callable, body: Callable) -> Callable:
    """A client method with the builder's name, docstring and signature (plus `self`)."""
    sig = inspect.signature(builder)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    body.__name__ = body.__qualname__ = builder.__name__
    body.__doc__ = builder.__doc__
    body.__module__ = builder.__module__
    body.__wrapped__ = builder  # type: ignore[attr-defined]
    returns = sig.return_annotation  # "Call[RunRecord]" -> "RunRecord": what the method returns (or awaits to)
    if isinstance(returns, str) and returns[:5] in ("Call[", "Poll[") and returns.endswith("]"):
        returns = returns[5:-1]
    body.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *sig.parameters.values()], return_annotation=returns
    )
    return body


def sync_call(builder: Callable[P, Call[T]]) -> Callable[Concatenate[Any, P], T]:
    def method(self, *args: Any, **kwargs: Any) -> T:
        return self.send(builder(*args, **kwargs))

    return _method(builder, method)


def async_call(builder: Callable[P, Call[T]]) -> Callable[Concatenate[Any, P], Awaitable[T]]:
    async def method(self, *args: Any, **kwargs: Any) -> T:
        return await self.send(builder(*args, **kwargs))

    return _method(builder, method)


def sync_poll(builder: Callable[P, Poll[T]]) -> Callable[Concatenate[Any, P], T]:
    def method(self, *args: Any, **kwargs: Any) -> T:
        return self.poll(builder(*args, **kwargs))

    return _method(builder, method)


def async_poll(builder: Callable[P, Poll[T]]) -> Callable[Concatenate[Any, P], Awaitable[T]]:
    async def method(self, *args: Any, **kwargs: Any) -> T:
        return await self.poll(builder(*args, **kwargs))

    return _method(builder, method)


def described(doc_of: Callable) -> Callable[[Callable], Callable]:
    """Give a hand-written shell (a method that does more than send one call) the docstring written once."""

    def deco(fn: Callable) -> Callable:
        fn.__doc__ = doc_of.__doc__
        return fn

    return deco
