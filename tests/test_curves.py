"""Live curves (vjepa_robot_lab/learning/curves.py): every BC and SAC run writes TensorBoard event files in its run
directory,
read back here with TensorBoard's own EventAccumulator; W&B offline mode writes its run directory too."""

from __future__ import annotations

import importlib.util
import math

import pytest
from test_sac import TINY, FakeRun

from vjepa_robot_client.contract import TrainBCRequest, TrainSACRequest
from vjepa_robot_lab.learning.bc import train_bc
from vjepa_robot_lab.learning.curves import open_curves
from vjepa_robot_lab.learning.sac import train_sac
from vjepa_robot_lab.perception.features import make_feature_source
from vjepa_robot_lab.records.runs import RunStore

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard (the trainer extra) is not installed"
)


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every event file in run_dir, as TensorBoard itself reads them."""
    ea = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.SCALARS: 0})
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def test_bc_run_writes_train_and_val_loss_per_epoch(tiny_dataset, tmp_path):
    store, name, _ = tiny_dataset
    cfg = TrainBCRequest(dataset=name, features="random", epochs=4, batch_size=8, val_fraction=0.34, seed=0)
    run = RunStore(tmp_path / "runs").create("bc", cfg.model_dump(mode="json"))
    metrics = train_bc(cfg, run, make_feature_source("random"), store)
    assert list(run.dir.glob("events.out.tfevents.*")), list(run.dir.iterdir())  # in the run's own directory
    s = scalars(run.dir)
    assert set(s) == {"loss/train", "loss/val"}
    assert [step for step, _ in s["loss/train"]] == [1, 2, 3, 4] == [step for step, _ in s["loss/val"]]
    # the logged values are the run's own curves (float32 in the event file)
    assert all(
        math.isclose(v, want, rel_tol=1e-6) for (_, v), want in zip(s["loss/train"], metrics["train_loss_curve"])
    )
    assert all(math.isclose(v, want, rel_tol=1e-6) for (_, v), want in zip(s["loss/val"], metrics["val_loss_curve"]))


def test_sac_run_writes_returns_losses_alpha_and_speed(tmp_path):
    """TINY: 800 env steps, 2 envs x action repeat 4 (8 env steps per vector step), 100-step episodes, learning from
    200 env steps, evaluation every 400: the steps of every curve follow from that schedule."""
    out = train_sac(TrainSACRequest(**TINY), FakeRun(tmp_path), make_feature_source("state"))
    s = scalars(tmp_path)
    want = {
        "train/episode_return",
        "train/episode_success",
        "eval/mean_return",
        "eval/success_rate",
        "loss/critic",
        "loss/actor",
        "train/alpha",
        "perf/env_steps_per_s",
    }
    assert set(s) == want
    steps = {t: [step for step, _ in v] for t, v in s.items()}
    assert steps["train/episode_return"] == [200, 400, 600, 800]  # both envs end an episode every 100 env steps
    assert steps["eval/mean_return"] == [p["env_steps"] for p in out["curve"]] == [400, 800]
    assert [v for _, v in s["eval/mean_return"]] == pytest.approx([p["mean_return"] for p in out["curve"]], abs=0.01)
    # update metrics: one point per 16 env steps (min(1000, 800 // 50)) once updates have begun, the last at 800
    assert steps["loss/critic"] == steps["loss/actor"] == steps["train/alpha"]
    assert steps["loss/critic"][-1] == 800 and all(
        b - a == 16 for a, b in zip(steps["loss/critic"], steps["loss/critic"][1:])
    )
    assert 200 <= steps["loss/critic"][0] <= 224
    assert steps["perf/env_steps_per_s"] == list(range(16, 801, 16))  # from the first logged span on
    assert all(v > 0 for _, v in s["perf/env_steps_per_s"]) and all(0 < v for _, v in s["train/alpha"])


class CrashingRun(FakeRun):
    """A run whose process dies at its 61st poll (488 env steps): the last checkpoint is the one at 400."""

    def stop_requested(self) -> bool:
        self.polls += 1
        if self.polls > 60:
            raise RuntimeError("the trainer died here")
        return False


def test_resumed_sac_purges_points_logged_past_its_checkpoint(tmp_path):
    """Crashed at 488 env steps after logging up to there, resumed from the 400-step checkpoint to 800: TensorBoard
    drops the first process's points past 400 (purge_step), so each curve is one line that never doubles back."""
    with pytest.raises(RuntimeError, match="died"):
        train_sac(TrainSACRequest(**TINY), CrashingRun(tmp_path), make_feature_source("state"))
    first = scalars(tmp_path)
    assert max(step for step, _ in first["loss/critic"]) == 480  # logged past the checkpoint, then crashed
    train_sac(TrainSACRequest(**TINY), FakeRun(tmp_path), make_feature_source("state"), resume=True)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # one file per process
    for tag, points in scalars(tmp_path).items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), (tag, steps)
    assert [step for step, _ in scalars(tmp_path)["eval/mean_return"]] == [400, 800]


def test_a_curve_write_error_never_costs_the_run(tmp_path, caplog):
    curves = open_curves(tmp_path, run_id="r", kind="bc")
    curves._tb.add_scalar = None  # a writer that fails on every call (stands in for a full disk)
    curves.log({"loss/train": 1.0}, step=1)  # logged once, writer dropped, no exception
    curves.log({"loss/train": 0.5}, step=2)
    curves.close()
    assert "TensorBoard logging stopped" in caplog.text


@pytest.mark.skipif(
    importlib.util.find_spec("wandb") is None, reason="wandb (the optional `wandb` extra) is not installed"
)
def test_wandb_offline_writes_its_run_dir(tiny_dataset, tmp_path, monkeypatch):
    """VJEPA_ROBOT_WANDB=1 with WANDB_MODE=offline: no account, no network; the run's files land in <run dir>/wandb."""
    monkeypatch.setenv("VJEPA_ROBOT_WANDB", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # the run dir must win
    store, name, _ = tiny_dataset
    cfg = TrainBCRequest(dataset=name, features="random", epochs=2, batch_size=8, val_fraction=0.34, seed=0)
    run = RunStore(tmp_path / "runs").create("bc", cfg.model_dump(mode="json"))
    train_bc(cfg, run, make_feature_source("random"), store)
    offline = list((run.dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list((run.dir / "wandb").iterdir())
    assert list(offline[0].glob("*.wandb")) and run.run_id in offline[0].name  # the run id names the W&B run
    assert list(run.dir.glob("events.out.tfevents.*"))  # TensorBoard still written beside it
