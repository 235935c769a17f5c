"""The sync and async SDK clients are shells over one definition of each call (_calls.py): they expose the same
public methods, with the same signatures, each documented, and the async ones are awaitable."""

from __future__ import annotations

import inspect

import pytest

from vjepa_robot_client import AsyncEncoderClient, AsyncTrainerClient, EncoderClient, TrainerClient


def public_methods(cls) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_") and not isinstance(member, type)
    }


PAIRS = [(TrainerClient, AsyncTrainerClient), (EncoderClient, AsyncEncoderClient)]
# the only two methods that differ by nature: how a client is closed (close / aclose)
LIFECYCLE = {"close", "aclose"}


@pytest.mark.parametrize("sync_cls,async_cls", PAIRS, ids=["trainer", "encoder"])
def test_sync_and_async_expose_the_same_methods(sync_cls, async_cls):
    sync_m, async_m = public_methods(sync_cls), public_methods(async_cls)
    assert set(sync_m) - LIFECYCLE == set(async_m) - LIFECYCLE, (
        f"only sync: {sorted(set(sync_m) - set(async_m) - LIFECYCLE)}; "
        f"only async: {sorted(set(async_m) - set(sync_m) - LIFECYCLE)}"
    )
    for name in sorted(set(sync_m) - LIFECYCLE):
        s, a = inspect.signature(sync_m[name]), inspect.signature(async_m[name])
        assert s.parameters == a.parameters, f"{sync_cls.__name__}.{name}{s} != {async_cls.__name__}.{name}{a}"
        # the same return type; a frame stream's is its async twin (FrameStream / AsyncFrameStream)
        assert str(s.return_annotation) == str(a.return_annotation).replace("Async", ""), name
        assert inspect.iscoroutinefunction(async_m[name]), f"{async_cls.__name__}.{name} is not async"
        assert not inspect.iscoroutinefunction(sync_m[name]), f"{sync_cls.__name__}.{name} is async"
        assert (sync_m[name].__doc__ or "").strip(), f"{sync_cls.__name__}.{name} has no docstring"
        assert (async_m[name].__doc__ or "").strip(), f"{async_cls.__name__}.{name} has no docstring"


def test_async_trainer_has_the_bakeoff_calls():
    for name in ("bakeoff", "get_bakeoff", "bakeoffs", "bakeoff_figure", "wait_bakeoff"):
        assert inspect.iscoroutinefunction(getattr(AsyncTrainerClient, name)), name


def test_a_call_is_defined_once():
    """Both clients' train_bc is the same builder: the body sent is built by one function."""
    from vjepa_robot_client import _trainer_calls as api

    assert TrainerClient.train_bc.__wrapped__ is AsyncTrainerClient.train_bc.__wrapped__ is api.train_bc
    call = api.train_bc("ds-1", features="state", epochs=3)
    assert (call.method, call.path, call.json) == (
        "POST",
        "/train/bc",
        {"dataset": "ds-1", "features": "state", "epochs": 3},
    )
    with pytest.raises(ValueError):
        api.train_bc("ds-1", features="depth")  # refused before anything is sent, in both clients
