"""Process-wide state and resources around jobs (issue 19): torch's thread count is the process's, set once, never by
a job; envs and feature sources are released however an evaluation or a SAC run ends.

What is observed is the real resource: torch.get_num_threads(); dm_control Physics objects that still hold their
MuJoCo data (Physics.free, which env.Reacher.close calls, deletes it and frees the render contexts); the encoder
service's own registry of open frame streams (a real tiny encoder on loopback)."""

from __future__ import annotations

import gc
import threading
import warnings

import numpy as np
import pytest
import torch
from test_sac import TINY, FakeRun

from services.common.store import Store
from services.encoder.app import create_app as create_encoder_app
from services.encoder.settings import EncoderSettings
from services.trainer import jobs
from vjepa_robot_client.contract import EvalRequest, TrainBCRequest, TrainSACRequest
from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy, evaluate
from vjepa_robot_lab.learning.sac import train_sac
from vjepa_robot_lab.perception.features import make_feature_source
from vjepa_robot_lab.records.runs import RunStore
from vjepa_robot_lab.threads import TORCH_THREADS_ENV, seeded_torch, torch_threads

# ----------------------------------------------------------------------------------------------------------------
# Threads
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def odd_threads(monkeypatch):
    """The process runs at 3 torch threads (a number no job would pick on this 2-core box); restored afterwards."""
    for name in (TORCH_THREADS_ENV, "VJEPA_SAC_THREADS", "VJEPA_ROBOT_BC_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def test_bc_and_sac_jobs_leave_torch_threads_as_the_process_set_them(tiny_dataset, tmp_path, odd_threads):
    store, name, _ = tiny_dataset
    ctx = jobs.TrainerContext(store=store, runs=RunStore(tmp_path / "runs"), encoder_url=None)
    bc = jobs.train(ctx, jobs.InlineRunner(), TrainBCRequest(dataset=name, features="random", epochs=2, batch_size=8))
    rec = ctx.runs.get(bc.run_id)
    assert rec["status"] == "succeeded"
    assert rec["metrics"]["torch_threads"] == odd_threads  # BC trained at the process's count (no per-job choice)
    assert torch.get_num_threads() == odd_threads
    sac = jobs.train(ctx, jobs.InlineRunner(), TrainSACRequest(**{**TINY, "total_steps": 400, "eval_every": 400}))
    assert ctx.runs.get(sac.run_id)["status"] == "succeeded"
    assert torch.get_num_threads() == odd_threads  # SAC used to set 1 (VJEPA_SAC_THREADS) and keep it


def test_torch_threads_setting(monkeypatch):
    monkeypatch.delenv("VJEPA_SAC_THREADS", raising=False)
    monkeypatch.delenv("VJEPA_ROBOT_BC_THREADS", raising=False)
    monkeypatch.setenv(TORCH_THREADS_ENV, "6")
    assert torch_threads() == 6
    for bad in ("0", "two"):
        monkeypatch.setenv(TORCH_THREADS_ENV, bad)
        with pytest.raises(ValueError, match=TORCH_THREADS_ENV):
            torch_threads()
    monkeypatch.delenv(TORCH_THREADS_ENV)
    assert 1 <= torch_threads() <= 4  # the fixed default: min(4, max(1, cores // 2)), never the load average
    monkeypatch.setenv("VJEPA_SAC_THREADS", "2")  # the old, unprefixed variable: still read, with a deprecation
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch_threads() == 2
    assert any(TORCH_THREADS_ENV in str(w.message) and "deprecated" in str(w.message) for w in caught)


def test_seeded_torch_gives_a_job_its_own_stream_and_leaves_the_global_one_alone():
    torch.manual_seed(123)
    want_global = torch.rand(3)
    torch.manual_seed(123)
    with seeded_torch(0) as gen:  # a job builds its networks here ...
        built = torch.rand(4)
    noise = torch.rand(2, generator=gen)  # ... and draws its noise from `gen` afterwards
    assert torch.equal(torch.rand(3), want_global)  # another job's global stream did not move
    torch.manual_seed(0)
    assert torch.equal(torch.cat([built, noise]), torch.rand(6))  # the job alone: exactly the seeded stream


# ----------------------------------------------------------------------------------------------------------------
# Close in finally
# ----------------------------------------------------------------------------------------------------------------


def live_physics() -> set[int]:
    """ids of the dm_control Physics objects in this process that still hold MuJoCo data (not yet freed)."""
    from dm_control.mujoco.engine import Physics

    gc.collect()
    # type() and not isinstance(): gc also lists weak proxies, which isinstance would dereference
    return {id(o) for o in gc.get_objects() if issubclass(type(o), Physics) and hasattr(o, "_data")}


class Explodes(Exception):
    pass


def raise_after(n: int, fn=None):
    calls = {"n": 0}

    def policy_fn(x):
        calls["n"] += 1
        if calls["n"] > n:
            raise Explodes("the policy failed mid-rollout")
        return np.zeros((len(x), 2), np.float32) if fn is None else fn(x)

    return policy_fn


def test_an_evaluation_that_raises_midway_frees_its_envs():
    before = live_physics()
    with pytest.raises(Explodes) as info:  # the traceback (kept alive here) holds evaluate's frame and its envs
        evaluate(FeaturePolicy(raise_after(3), make_feature_source("state")), episodes=4, steps=20, parallel_envs=2)
    assert info.traceback  # still referenced: only an explicit close frees the envs
    assert live_physics() - before == set()


class CrashingRun(FakeRun):
    def stop_requested(self) -> bool:
        self.polls += 1
        if self.polls > 5:
            raise Explodes("the run failed mid-training")
        return False


def test_a_sac_run_that_raises_midway_frees_its_envs(tmp_path):
    before = live_physics()
    with pytest.raises(Explodes) as info:
        train_sac(TrainSACRequest(**TINY), CrashingRun(tmp_path), make_feature_source("state"))
    assert info.traceback
    assert live_physics() - before == set()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, tiny_encoder):
    """A real tiny encoder service on loopback (random-init stand-in) and its app, to read its open streams."""
    from conftest import run_server

    store = str(tmp_path_factory.mktemp("store"))
    app = create_encoder_app(
        EncoderSettings(store=store, device="cpu", threads=1, max_batch=16, max_wait_ms=1.0), encoder=tiny_encoder
    )
    with run_server(app, startup_timeout=60) as url:
        yield {"url": url, "app": app, "store": store}


def open_streams(encoder) -> int:
    return len(encoder["app"].state.streams)


@pytest.mark.slow
def test_vjepa2_evaluation_and_sac_jobs_stopped_or_failing_midway_close_streams_and_envs(encoder, tmp_path):
    """Through the trainer's own jobs (the service's code path): a vjepa2 BC evaluation stopped after its first wave,
    and a vjepa2 SAC run that fails after 5 vector steps, leave no frame stream open on the encoder and no env.
    (The jobs already closed their feature sources in `finally`; the envs were the leak.)"""
    from conftest import write_steps_dataset

    store = Store(encoder["store"])
    write_steps_dataset(store, "life", episodes=3, steps=10, image_size=32)
    ctx = jobs.TrainerContext(store=store, runs=RunStore(tmp_path / "runs"), encoder_url=encoder["url"])
    bc = jobs.train(ctx, jobs.InlineRunner(), TrainBCRequest(dataset="life", features="vjepa2", epochs=2, batch_size=8))
    assert ctx.runs.get(bc.run_id)["status"] == "succeeded"
    assert open_streams(encoder) == 0

    before = live_physics()

    def first_wave_recorded() -> bool:
        evs = ctx.runs.get(bc.run_id).get("evaluations") or {}
        return any((e.get("episodes_done") or 0) >= 1 for e in (evs.values() if isinstance(evs, dict) else evs))

    class StopAfterFirstWave(threading.Event):  # the trainer shuts down once the first episode is recorded
        def is_set(self) -> bool:
            return first_wave_recorded()

    stop = StopAfterFirstWave()
    ctx.runs.stop_event = lambda run_id: stop  # the evaluation stops at its next step, midway through episode 2
    with pytest.raises(jobs.JobStopped) as stopped:  # its traceback, kept alive, holds the evaluation's frames
        jobs.evaluate_run(
            ctx, jobs.InlineRunner(), bc.run_id, EvalRequest(episodes=2, parallel_envs=1, steps=10, gif_episodes=0)
        )
    evaluation = (
        ctx.runs.get(bc.run_id)["evaluations"]["0"]
        if isinstance(ctx.runs.get(bc.run_id)["evaluations"], dict)
        else ctx.runs.get(bc.run_id)["evaluations"][0]
    )
    assert evaluation["status"] == "interrupted" and evaluation["episodes_done"] == 1
    assert open_streams(encoder) == 0
    assert live_physics() - before == set()

    cfg = TrainSACRequest(**{**TINY, "features": "vjepa2", "image_size": 32, "learning_starts": 10_000})
    handle = ctx.runs.create("sac", cfg.model_dump(mode="json"))
    handle.stop_requested = CrashingRun(tmp_path).stop_requested  # the fault: raises at the 6th vector step
    with pytest.raises(Explodes) as failed:
        jobs.run_training(ctx, handle)
    assert open_streams(encoder) == 0
    assert live_physics() - before == set()
    assert stopped.traceback and failed.traceback
