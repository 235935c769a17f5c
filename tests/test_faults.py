"""Faults that really kill a process (SIGKILL): the services run as subprocesses (`vjepa-robot serve ...`).

    encoder killed and restarted (same port, preset, store) during a live vjepa2 evaluation -> the evaluation
        rides it out (the SDK's one retry policy, 40-80 s; the lost frame stream costs one step) and completes
    trainer killed during BC / SAC -> after a restart the run reads `interrupted`, never `running`; resume reaches
        `succeeded` (SAC from its last checkpoint: env_steps continue from > 0)
    trainer killed while generating a dataset -> `failed` with a message, never `running`; every visible episode is
        whole; re-creating it with overwrite completes it

Every wait is bounded: a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from _servers import Service as HarnessService
from _servers import cli_argv, free_port
from conftest import wait_until as wait_for

from vjepa_robot_client import TrainerClient

pytestmark = pytest.mark.slow


class Service(HarnessService):
    """One `vjepa-robot serve encoder|trainer` child process on a fixed loopback port (vjepa_robot/harness.py);
    kill() is SIGKILL; start() again restarts it on the same port."""

    def __init__(self, kind: str, port: int, args: list[str], log: Path, env: dict | None = None):
        env = {**os.environ, "VJEPA_ROBOT_TORCH_THREADS": "1", **(env or {})}
        env.pop("VJEPA_ROBOT_TOKEN", None)
        super().__init__(cli_argv("serve", kind, "--port", port, *args), port=port, name=kind, log=log, env=env)
        self.kind = kind

    def start(self, timeout: float = 120.0) -> Service:
        return super().start(timeout)


@pytest.fixture
def services(tmp_path):
    """Factory for Service objects sharing one store + runs dir; every process is stopped at teardown."""
    store, runs = tmp_path / "store", tmp_path / "runs"
    made: list[Service] = []

    def make(kind: str, port: int | None = None, encoder_url: str = "http://127.0.0.1:9") -> Service:
        port = port or free_port()
        if kind == "encoder":
            args = ["--preset", "tiny", "--store", str(store)]
        else:
            args = ["--encoder-url", encoder_url, "--store", str(store), "--runs-dir", str(runs)]
        svc = Service(kind, port, args, tmp_path / f"{kind}.log")
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.stop()


def _status(tr: TrainerClient, run_id: str) -> str:
    return tr.run(run_id).status.value


def _ready_dataset(tr: TrainerClient, name: str, **kw) -> None:
    tr.create_dataset(name, expert="jacobian", task="easy", seed=0, workers=1, **kw)
    info = tr.wait_dataset(name, progress=False, timeout=180, poll_interval=0.3)
    assert info.status.value == "ready", info


# ----------------------------------------------------------------------------------------------------------------
# a. the encoder dies during a live evaluation
# ----------------------------------------------------------------------------------------------------------------


def test_encoder_killed_and_restarted_during_live_eval_the_eval_completes(services):
    enc = services("encoder").start()
    tr_svc = services("trainer", encoder_url=enc.url).start()
    with TrainerClient(tr_svc.url, timeout=60) as tr:
        _ready_dataset(tr, "frames", episodes=3, steps=20, image_size=32)
        run_id = tr.train_bc("frames", features="vjepa2", epochs=3)
        assert tr.wait(run_id, progress=False, timeout=180, poll_interval=0.3).status.value == "succeeded"

        # long enough to kill mid-way: 2 episodes x 100 steps, one POST /encode per lockstep step
        tr.evaluate(run_id, episodes=2, steps=100, parallel_envs=2, image_size=32, gif_episodes=0)
        wait_for(lambda: tr.eval_result(run_id).status.value == "running", 60, "the evaluation to run")
        time.sleep(0.5)
        enc.kill()
        assert tr.eval_result(run_id).status.value == "running"  # waiting on the encoder, not failed at once
        time.sleep(1.0)
        enc.start()  # same port, preset (same weights: seed 0) and store
        result = tr.wait_eval(run_id, progress=False, timeout=240, poll_interval=0.5)
    assert result.status.value == "succeeded", result
    assert len(result.episodes) == 2 and result.success_rate is not None


# ----------------------------------------------------------------------------------------------------------------
# b. the trainer dies during training
# ----------------------------------------------------------------------------------------------------------------


def test_trainer_killed_during_bc_reads_interrupted_and_resume_succeeds(services):
    tr_svc = services("trainer").start()
    with TrainerClient(tr_svc.url, timeout=60) as tr:
        _ready_dataset(tr, "state", episodes=10, steps=100, image_size=0)
        run_id = tr.train_bc("state", features="state", epochs=150, batch_size=64)
        wait_for(lambda: tr.run(run_id).metrics.get("epoch", 0) >= 5, 120, "BC to train a few epochs")
        assert _status(tr, run_id) == "running"
    tr_svc.kill()

    tr_svc.start()
    with TrainerClient(tr_svc.url, timeout=60) as tr:
        record = tr.run(run_id)
        assert record.status.value == "interrupted" and "resume" in record.error
        tr.resume(run_id)
        final = tr.wait(run_id, progress=False, timeout=240, poll_interval=0.5)
    assert final.status.value == "succeeded", final.error
    assert final.metrics["epoch"] == 150


def test_trainer_killed_during_sac_resumes_from_the_last_checkpoint(services):
    from vjepa_robot_lab.learning.sac import checkpoint_path

    tr_svc = services("trainer").start()
    runs_dir = Path(tr_svc.argv[tr_svc.argv.index("--runs-dir") + 1])
    cfg = dict(
        features="state",
        task="easy",
        total_steps=2000,
        parallel_envs=2,
        episode_steps=200,
        action_repeat=4,
        learning_starts=50,
        batch_size=64,
        checkpoint_every=200,
        eval_every=1000,
        eval_episodes=1,
        final_eval_episodes=2,
    )
    with TrainerClient(tr_svc.url, timeout=60) as tr:
        run_id = tr.train_sac(**cfg)
        wait_for(lambda: checkpoint_path(runs_dir / run_id) is not None, 180, "a first SAC checkpoint")
        assert _status(tr, run_id) == "running"
    tr_svc.kill()
    ckpt = checkpoint_path(runs_dir / run_id)
    assert ckpt is not None
    at_kill = _checkpoint_env_steps(ckpt)  # the resumed job overwrites this checkpoint later

    tr_svc.start()
    with TrainerClient(tr_svc.url, timeout=60) as tr:
        assert _status(tr, run_id) == "interrupted"
        tr.resume(run_id)
        seen: list[int] = []  # env_steps reported by the resumed job (it writes resumed=True with its first report)

        def progressed() -> bool:
            r = tr.run(run_id)
            if r.metrics.get("resumed") is True and r.metrics.get("env_steps") is not None:
                seen.append(int(r.metrics["env_steps"]))
            return r.status.value in ("succeeded", "failed", "interrupted")

        wait_for(progressed, 300, "the resumed SAC run to finish", every=0.3)
        final = tr.run(run_id)
    assert final.status.value == "succeeded", final.error
    assert final.metrics["env_steps"] >= cfg["total_steps"] and final.metrics["resumed"] is True
    # continued from the checkpoint, not from 0
    assert at_kill > 0 and seen and min(seen) >= at_kill, (at_kill, seen[:5])
    assert json.loads((checkpoint_path(runs_dir / run_id) / "state.json").read_text())["resumed"] == 1


def _checkpoint_env_steps(ckpt: Path) -> int:
    """Env steps recorded in a SAC checkpoint's state.json (agent steps x action_repeat)."""
    state = json.loads((ckpt / "state.json").read_text())
    return int(state["num_timesteps"]) * int(state["config"]["action_repeat"])


# ----------------------------------------------------------------------------------------------------------------
# c. the trainer dies while generating a dataset
# ----------------------------------------------------------------------------------------------------------------


def test_trainer_killed_during_dataset_generation_reports_failed_and_overwrite_completes(services, tmp_path):
    from services.common.store import Store

    tr_svc = services("trainer").start()
    spec = dict(episodes=40, steps=200, image_size=0)
    with TrainerClient(tr_svc.url, timeout=60) as tr:
        tr.create_dataset("gen", expert="jacobian", task="easy", seed=0, workers=1, **spec)
        store = Store(str(tmp_path / "store"))
        wait_for(lambda: len(store.episodes_present("gen")) >= 2, 120, "a few episodes written")
    tr_svc.kill()

    present = store.episodes_present("gen")
    assert 2 <= len(present) < spec["episodes"]
    counts = np.bincount(store.read_steps("gen", ["reward"]).column("episode").to_numpy())
    assert set(counts[counts > 0].tolist()) == {spec["steps"]}  # no partial episode visible

    tr_svc.start()
    with TrainerClient(tr_svc.url, timeout=60) as tr:
        info = tr.dataset("gen")
        assert info.status.value == "failed" and "interrupted" in (info.error or ""), info
        with pytest.raises(Exception) as refused:  # training on it is refused, naming the state
            tr.train_bc("gen", features="state", epochs=1)
        assert "failed" in str(refused.value)
        tr.create_dataset("gen", expert="jacobian", task="easy", seed=0, workers=1, overwrite=True, **spec)
        info = tr.wait_dataset("gen", progress=False, timeout=240, poll_interval=0.5)
    assert info.status.value == "ready" and info.episodes_done == spec["episodes"]
    assert store.count_steps("gen") == spec["episodes"] * spec["steps"]
