"""Processes and states left behind (issue 28 item 10): child processes die with their parent, and the CLI's long
commands stop cleanly on SIGTERM and SIGINT (services stopped, records ended, within ~10 s).

Everything here is a real process: the trainer as a uvicorn subprocess (vjepa_robot/harness.py), the CLI as
`python -m vjepa_robot.cli`, dataset workers from its spawn pool. Sizes are the smallest that keep work in flight
when the signal arrives (16 px frames; 10-step episodes; workers=2 where the spawn pool is the point)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from vjepa_robot.harness import cli_argv, cli_service

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
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


@pytest.mark.slow
@linux
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


@pytest.mark.slow
def test_sigterm_stops_a_trainer_mid_evaluation_at_its_next_step(tmp_path):
    """A trainer asked to stop during a live evaluation (the harness's SIGTERM) ends it at its next step and exits
    on its own, well within the grace period; the evaluation and its baseline run read interrupted. (The stop used
    to be seen only after a whole wave of episodes: the demo's Ctrl-C took 201 s.)"""
    from vjepa_robot_client import TrainerClient

    runs = tmp_path / "runs"
    trainer = cli_service(
        "trainer", "--store", tmp_path / "store", "--runs-dir", runs, "--encoder-url", "http://127.0.0.1:9",
        log=tmp_path / "trainer.log", grace_s=20,
    ).start()  # fmt: skip
    try:
        tr = TrainerClient(trainer.url, timeout=30)
        run_id = tr.evaluate_baseline("jacobian", episodes=32, parallel_envs=32, steps=10_000)  # one long wave
        wait_for(lambda: tr.eval_result(run_id).status.value == "running", 120, "the evaluation to run")
        time.sleep(1)
        t0 = time.monotonic()
        code = trainer.stop()
        took = time.monotonic() - t0
    finally:
        trainer.stop()
    print(f"trainer stopped mid-evaluation in {took:.1f} s (exit {code})")
    assert code != -signal.SIGKILL and took < 10, f"{took:.1f} s, exit {code}:\n{trainer.log_tail()}"
    record = json.loads((runs / run_id / "run.json").read_text())
    assert record["status"] == "interrupted", record
    assert [e["status"] for e in record["evaluations"]] == ["interrupted"], record["evaluations"]


# ----------------------------------------------------------------------------------------------------------------
# The CLI's long commands under SIGTERM / SIGINT
# ----------------------------------------------------------------------------------------------------------------


class Cli:
    """`vjepa-robot ARGS` as a child in its own session (so a signal to its group is a terminal's Ctrl-C)."""

    def __init__(self, tmp_path: Path, *args):
        self.log = tmp_path / "cli.log"
        self.proc = subprocess.Popen(
            cli_argv(*args),
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def descendants(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int, group: bool = False) -> tuple[float, int, list[int]]:
        """Send `sig` (to the whole group: a terminal's Ctrl-C); (seconds to exit, exit code, its children then)."""
        kids = self.descendants()
        t0 = time.monotonic()
        os.killpg(self.proc.pid, sig) if group else os.kill(self.proc.pid, sig)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the CLI did not exit within 60 s of {sig!r}:\n{self.output()[-3000:]}") from None
        return time.monotonic() - t0, code, kids

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def raw_dataset_meta(store: Path, name: str) -> dict | None:
    from services.common.store import DatasetNotFound, Store

    try:
        return Store(str(store)).get_dataset_meta(name)
    except (DatasetNotFound, ValueError):
        return None


def assert_clean_exit(cli: Cli, took: float, code: int, kids: list[int], sig: int, bound: float = 15.0) -> None:
    out = cli.output()[-3000:]
    print(f"{signal.Signals(sig).name}: exited in {took:.1f} s with {code}; {len(kids)} children then")
    assert code == 128 + sig, f"exit code {code}:\n{out}"
    assert f"stopped by {signal.Signals(sig).name}" in out
    assert took < bound, f"took {took:.1f} s to exit:\n{out}"
    deadline = time.monotonic() + 5
    while alive(kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = alive(kids)
    assert left == [], f"left behind: {[psutil.Process(p).cmdline() for p in alive(left)]}"


@pytest.mark.slow
@linux
def test_sigterm_stops_datasets_create(tmp_path):
    """SIGTERM used to kill the CLI outright: its workers lived on and the dataset stayed `running`."""
    store = tmp_path / "store"
    cli = Cli(tmp_path, "datasets", "create", "d", "--expert", "random", "--episodes", "20", "--steps", "100",
              "--image-size", "16", "--workers", "2", "--store", store)  # fmt: skip
    try:
        wait_for(lambda: ((raw_dataset_meta(store, "d") or {}).get("episodes_done") or 0) > 0, 120, "episodes")
        took, code, kids = cli.stop(signal.SIGTERM)
    finally:
        cli.kill()
    assert len(kids) >= 2  # its pool's workers were there
    assert_clean_exit(cli, took, code, kids, signal.SIGTERM)
    meta = raw_dataset_meta(store, "d")
    assert meta["status"] == "failed" and "SIGTERM" in meta["error"], meta


@pytest.mark.slow
@linux
def test_sigint_stops_the_demo(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) during the demo's dataset: both services and the trainer's
    workers stop, the dataset is recorded failed (not `running` with a dead owner), within seconds."""
    store = tmp_path / "store"
    cli = Cli(tmp_path, "demo", "--episodes", "4", "--epochs", "1", "--eval-episodes", "1", "--store", store,
              "--workdir", tmp_path / "work", "--out", tmp_path / "report")  # fmt: skip
    name = "demo-easy-4x100-s0"
    try:
        wait_for(lambda: (raw_dataset_meta(store, name) or {}).get("status") == "running", 300, "the demo's dataset")
        wait_for(lambda: len(cli.descendants()) >= 5, 60, "encoder, trainer, 2 workers and the resource tracker")
        took, code, kids = cli.stop(signal.SIGINT, group=True)
    finally:
        cli.kill()
    assert_clean_exit(cli, took, code, kids, signal.SIGINT)
    meta = raw_dataset_meta(store, name)
    assert meta["status"] == "failed", meta  # the trainer recorded it stopping, not a reader guessing from a pid
    listed = subprocess.run(cli_argv("datasets", "list", "--json", "--store", store), capture_output=True, text=True)
    assert [d["status"] for d in json.loads(listed.stdout)] == ["failed"], listed.stdout + listed.stderr


@pytest.mark.slow
@linux
def test_sigterm_stops_a_bake_off_and_its_local_encoder(tmp_path):
    """SIGTERM to `bake-off --model tiny`: its local encoder and dataset workers stop, bakeoff.json reads
    interrupted (it used to stay `running`, with the encoder and 3 workers alive)."""
    store, runs = tmp_path / "store", tmp_path / "runs"
    cli = Cli(tmp_path, "bake-off", "--model", "tiny", "--episodes", "20", "--steps", "100", "--image-size", "16",
              "--epochs", "1", "--eval-episodes", "1", "--seeds", "0", "--readout", "mean", "--workers", "2",
              "--store", store, "--runs-dir", runs, "--out", tmp_path / "out")  # fmt: skip

    def running_record():
        found = list((runs / "bakeoffs").glob("*/bakeoff.json")) if (runs / "bakeoffs").is_dir() else []
        return found[0] if found and json.loads(found[0].read_text())["status"] == "running" else None

    try:
        record = wait_for(running_record, 300, "the bake-off to run")
        wait_for(lambda: len(cli.descendants()) >= 2, 60, "the local encoder and the dataset workers")
        took, code, kids = cli.stop(signal.SIGTERM)
    finally:
        cli.kill()
    assert_clean_exit(cli, took, code, kids, signal.SIGTERM)
    saved = json.loads(record.read_text())
    assert saved["status"] == "interrupted", saved
    assert all(c["status"] not in ("queued", "running") for c in saved["cells"]), saved["cells"]


def test_evaluation_stops_between_agent_steps_not_after_a_wave():
    """The trainer's stop reaches a live evaluation at its next agent step (on_step), not once a whole wave of
    episodes is over (SIGINT during the demo's evaluation took 201 s to exit)."""
    from vjepa_robot_lab.evaluation.evaluate import ExpertPolicy, evaluate

    class Stop(Exception):
        pass

    steps, done = [], []

    def on_step():
        steps.append(1)
        if len(steps) == 5:
            raise Stop

    with pytest.raises(Stop):
        evaluate(ExpertPolicy("jacobian"), episodes=2, steps=50, parallel_envs=2, on_step=on_step,
                 on_progress=lambda d, t: done.append(d))  # fmt: skip
    assert len(steps) == 5 and done == []  # stopped 5 steps into the first (only) wave of 50
