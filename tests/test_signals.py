"""Processes and states left behind (issue 28 item 10): child processes die with their parent, and the CLI's long
commands stop cleanly on SIGTERM and SIGINT (services stopped, records ended, within ~10 s).

Everything here is a real process: the trainer as a uvicorn subprocess (vjepa_robot/harness.py), the CLI as
`python -m vjepa_robot.cli`, dataset workers from its spawn pool. Sizes are the smallest that keep work in flight
when the signal arrives (16 px frames; 10-step episodes; workers=2 where the spawn pool is the point)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from vjepa_robot.harness import cli_service

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's"),
]
ROOT = Path(__file__).resolve().parents[1]


def alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_for(cond, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pool_workers(pid: int) -> list[psutil.Process]:
    """The spawn pool's workers (and the resource tracker) under `pid`."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if "multiprocessing" in " ".join(k.cmdline()):
                out.append(k)
        except psutil.NoSuchProcess:
            pass
    return out


def test_dataset_workers_die_with_a_sigkilled_trainer(tmp_path):
    """kill -9 of the trainer mid-generation: its pool's workers and the resource tracker end within seconds
    (they used to live on under PID 1, ~390 MB each)."""
    trainer = cli_service(
        "trainer",
        "--store",
        tmp_path / "store",
        "--runs-dir",
        tmp_path / "runs",
        "--encoder-url",
        "http://127.0.0.1:9",
        log=tmp_path / "trainer.log",
    )
    with trainer:
        body = dict(name="w", expert="random", episodes=20, steps=100, image_size=16, workers=2)
        assert httpx.post(trainer.url + "/datasets", json=body, timeout=30).status_code == 202

        def generating():  # episodes recorded: the workers are past their start, mid-generation
            return httpx.get(trainer.url + "/datasets/w", timeout=10).json().get("episodes_done", 0) > 0

        wait_for(generating, 120, "the first episodes", every=0.2)
        procs = pool_workers(trainer.pid)
        assert len(procs) == 3, [p.cmdline() for p in procs]  # 2 workers + the resource tracker
        pids = [p.pid for p in procs]
        assert any("resource_tracker" in " ".join(p.cmdline()) for p in procs)
        os.kill(trainer.pid, signal.SIGKILL)  # the trainer only: no cleanup of its own runs
        trainer.proc.wait()
        deadline = time.monotonic() + 5
        while alive(pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive(pids) == [], f"left behind: {[(p, psutil.Process(p).cmdline()) for p in alive(pids)]}"
