"""The one service harness (vjepa_robot/harness.py): start, health wait, clear failures, clean stop, death with parent.

The services here are real uvicorn processes serving a ten-line ASGI app written to tmp_path (a real service
would only add seconds of imports to what is checked: the process handling)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import psutil
import pytest

from vjepa_robot.harness import InProcess, Service, ServiceFailed, ServiceGroup, free_port, serve_app

APP = textwrap.dedent("""
    import asyncio, os, subprocess, sys

    MODE = os.environ.get("APP_MODE", "ok")
    if MODE == "crash":
        raise SystemExit("app_mod: refusing to start (APP_MODE=crash)")
    if MODE == "child":  # a grandchild in the service's process group, like a dataset pool's worker
        CHILD = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print("grandchild", CHILD.pid, flush=True)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.shutdown" and MODE == "stubborn":  # a shutdown that never ends
                    await asyncio.sleep(3600)
                await send({"type": m["type"] + ".complete"})
                if m["type"] == "lifespan.shutdown":
                    return
        status = 503 if MODE == "sick" else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
""")


def app_service(tmp_path, mode: str = "ok", **kwargs) -> Service:
    (tmp_path / "app_mod.py").write_text(APP)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app_mod:app", "--port", str(port), "--log-level", "info"]
    env = {**os.environ, "APP_MODE": mode}
    kwargs.setdefault("start_timeout", 60)
    return Service(argv, port=port, name=f"app-{mode}", cwd=tmp_path, env=env, log=tmp_path / f"{mode}.log", **kwargs)


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_service_starts_healthy_logs_and_stops(tmp_path):
    with app_service(tmp_path) as svc:
        assert svc.running()
        pid = svc.pid
        assert httpx.get(svc.url + "/healthz").text == str(pid)  # the very process it started
        assert os.getpgid(pid) == pid  # its own process group: a terminal's Ctrl-C does not reach it
    assert not svc.running() and gone(pid)
    log = (tmp_path / "ok.log").read_text()
    assert "Uvicorn running" in log and "Application shutdown complete" in log  # SIGTERM: a graceful shutdown
    assert svc.proc.returncode in (0, -signal.SIGTERM)  # uvicorn >= 0.29 re-raises the signal it handled
    assert svc.stop() == svc.proc.returncode  # twice is fine


def test_service_that_exits_fails_with_its_log(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as err:
        app_service(tmp_path, "crash").start()
    assert time.monotonic() - t0 < 30  # noticed when it exited, not at the timeout
    assert "exited before it was healthy" in str(err.value)
    assert "refusing to start (APP_MODE=crash)" in str(err.value)  # the log's tail is in the message


def test_unhealthy_service_times_out_and_is_stopped(tmp_path):
    svc = app_service(tmp_path, "sick", start_timeout=3)
    with pytest.raises(ServiceFailed, match=r"not healthy \(/healthz\) after 3 s"):
        svc.start()
    assert not svc.running()


def test_stop_kills_the_group_and_a_stubborn_leader(tmp_path):
    svc = app_service(tmp_path, "child").start()
    grandchild = int(next(line.split()[1] for line in svc.log_tail().splitlines() if line.startswith("grandchild")))
    assert psutil.pid_exists(grandchild)
    svc.stop()
    assert gone(grandchild), "the service's own child outlived the stop"

    stubborn = app_service(tmp_path, "stubborn", grace_s=1).start()
    t0 = time.monotonic()
    code = stubborn.stop()
    assert code == -signal.SIGKILL and time.monotonic() - t0 < 10


def test_group_stops_in_reverse_order_and_a_failed_start_stops_the_rest(tmp_path):
    a, b = app_service(tmp_path), app_service(tmp_path, "crash")
    with pytest.raises(ServiceFailed):
        ServiceGroup([a, b]).start()
    assert not a.running()  # started, then stopped because its partner failed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's (see harness docs)")
def test_service_dies_with_its_parent(tmp_path):
    """A parent killed with SIGKILL runs no cleanup: the kernel's parent-death signal stops its service."""
    (tmp_path / "app_mod.py").write_text(APP)
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                sys.path.insert(0, {str(tmp_path)!r})
                from test_harness import app_service
                from pathlib import Path
                svc = app_service(Path({str(tmp_path)!r})).start()
                print(svc.pid, flush=True)
                time.sleep(300)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
        },
    )
    try:
        child = int(parent.stdout.readline())
        assert psutil.pid_exists(child)
        parent.kill()
        parent.wait()
        assert gone(child), "the service outlived its SIGKILLed parent"
    finally:
        parent.kill()


def test_in_process_server_with_health_path():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with InProcess(app, health_path="/healthz") as server:
        assert httpx.get(server.url + "/x").text == "ok"
    assert not server.thread.is_alive()
    with serve_app(app) as url:
        assert httpx.get(url).status_code == 200


def test_stop_on_signals_raises_once_then_notes_and_restores(capsys):
    from vjepa_robot.harness import SIGNALS, Interrupted, stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    restore = stop_on_signals()
    try:
        with pytest.raises(Interrupted, match="stopped by SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here, in the main thread
        assert SIGNALS.received == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)  # a second one while cleaning up: a note, no exception
        time.sleep(0.1)
        assert "send it again to quit at once" in capsys.readouterr().err
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is before
