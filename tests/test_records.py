"""Typed run records, the run-kind registry, and the trainer's lifecycle under concurrency (issues 19, 20).

Pure functions and the real RunStore / JobRunner / trainer app (LanceDB on tmp, real dm_control for the dataset
generation test, state-only frames so it stays small). No encoder: the one feature source with an encoder is
replaced by a stand-in object carrying a real EncoderInfo (said where used).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from services.trainer import jobs
from vjepa_robot_client.contract import EncoderInfo, RunRecord, RunStatus, TrainBCRequest
from vjepa_robot_lab.records.run_kinds import BC, RUN_KINDS, SAC, kept_val_loss, run_kind
from vjepa_robot_lab.records.runs import RunStore, migrate

TINY = {
    "features": "vjepa2",
    "dim": 96,
    "encoder_id": "abc123",
    "model": "preset:tiny",
    "image_size": 128,
    "dtype": "float32",
}


def _bc(run_id="bc-1", **over) -> dict:
    rec = {
        "run_id": run_id,
        "kind": "bc",
        "status": "succeeded",
        "config": {"dataset": "jac", "features": "vjepa2", "seed": 0},
        "metrics": {
            "val_loss_curve": [0.3, 0.1, 0.2],
            "val_loss": 0.2,
            "selected_epoch": 2,
            "train_loss_curve": [0.4, 0.2, 0.1],
        },
        "evaluations": [],
    }
    rec.update(over)
    return rec


# ----------------------------------------------------------------------------------------------------------------
# Migration and the registry
# ----------------------------------------------------------------------------------------------------------------


def test_every_legacy_lineage_shape_migrates_into_one_typed_lineage():
    for legacy in (
        {"metrics": {**_bc()["metrics"], "features_lineage": TINY}},
        {"metrics": {**_bc()["metrics"], "lineage": {"features": TINY}}},
        {"config": {**_bc()["config"], "features_lineage": TINY}},
    ):
        r = migrate(_bc(**legacy), frame_size=lambda name: 64)
        lin = r.lineage
        assert (lin.encoder_id, lin.encoder_model, lin.dim, lin.encoder_image_size) == (
            "abc123",
            "preset:tiny",
            96,
            128,
        )
        assert lin.image_size == 64 and lin.dataset == "jac" and lin.action_repeat == 1  # frames: from the dataset
        assert lin.random_init is True and r.is_stand_in  # a record from before random_init: the legacy rule
        assert lin.pooling.value == "mean" and lin.grid_size is None and lin.readout.value == "mean"
    # a written lineage wins over the legacy copies, and random_init as recorded is never second-guessed
    r = migrate(
        _bc(
            lineage={"features": "vjepa2", "encoder_id": "new", "random_init": False, "image_size": 256},
            metrics={"features_lineage": TINY},
        )
    )
    assert r.lineage.encoder_id == "new" and r.lineage.random_init is False and not r.is_stand_in
    # SAC without lineage: frame size and action repeat from its config
    sac = migrate(
        {
            "run_id": "sac-1",
            "kind": "sac",
            "status": "succeeded",
            "config": {"features": "vjepa2", "image_size": 96, "action_repeat": 4},
        }
    )
    assert sac.lineage.image_size == 96 and sac.lineage.action_repeat == 4
    # early BC records kept their curves under train_loss / val_loss
    old = migrate(_bc(metrics={"train_loss": [0.3, 0.2], "val_loss": [0.5, 0.4]}))
    assert old.metrics.train_loss_curve == [0.3, 0.2] and old.metrics.val_loss == 0.4
    assert (
        migrate(
            {"run_id": "baseline-1", "kind": "baseline", "status": "succeeded", "config": {"policy": "random"}}
        ).lineage
        is None
    )


def test_random_init_is_read_from_the_lineage_not_from_preset_names():
    from vjepa_robot_lab.report import condition_name, is_plumbing, title

    custom = migrate(_bc(lineage={"features": "vjepa2", "encoder_model": "my/own-vit", "random_init": True}))
    named_tiny = migrate(_bc(lineage={"features": "vjepa2", "encoder_model": "preset:tiny", "random_init": False}))
    assert is_plumbing(custom) and "random-init" in condition_name(custom)
    assert not is_plumbing(named_tiny) and "pretrained" in condition_name(named_tiny)
    assert title([named_tiny]).startswith("V-JEPA 2")
    unknown = migrate(_bc(lineage={"features": "vjepa2", "encoder_model": "my/own-vit"}))
    assert unknown.lineage.random_init is False  # legacy rule: not one of the random-init presets
    src = "".join(
        p.read_text()
        for p in [
            *Path("vjepa_robot_lab/report").glob("*.py"),
            Path("services/trainer/jobs.py"),
            Path("vjepa_robot_lab/experiments/studies.py"),
            Path("vjepa_robot_lab/records/run_kinds.py"),
        ]
    )
    assert "vitl-random" not in src and '"tiny"' not in src and "preset:tiny" not in src


def test_encoder_lineage_takes_random_init_from_the_encoders_info():
    class StandIn:  # the fields VJEPA2Features exposes; its EncoderInfo is the real model GET /info parses into
        def __init__(self, **extra):
            self.info = EncoderInfo(
                encoder_id="e1",
                model="preset:tiny",
                dim=96,
                frames=8,
                image_size=128,
                dtype="float32",
                device="cpu",
                max_batch=8,
                **extra,
            )

        def lineage(self):
            return {"features": "vjepa2", "dim": 96, "encoder_id": "e1", "model": "preset:tiny", "image_size": 128}

    cfg = TrainBCRequest(dataset="d")
    assert jobs.encoder_lineage(StandIn(random_init=True), cfg)["random_init"] is True
    assert jobs.encoder_lineage(StandIn(random_init=False), cfg)["random_init"] is False
    lin = jobs.encoder_lineage(StandIn(), cfg)  # an encoder that does not say yet: unknown, not guessed
    assert lin["random_init"] is None and lin["readout"] == "mean" and lin["encoder_model"] == "preset:tiny"
    assert lin["family_label"] is None  # an encoder older than family_label: the report falls back to the family id
    named = jobs.encoder_lineage(StandIn(family="dinov2", family_label="DINOv2"), cfg)
    assert (named["family"], named["family_label"]) == ("dinov2", "DINOv2")


def test_the_registry_owns_final_metrics_and_labels():
    assert set(RUN_KINDS) == {"bc", "sac", "baseline"} and run_kind("bc") is BC
    rec = migrate(_bc())
    assert BC.final(rec) == ("val_loss", 0.1)  # the kept epoch's validation MSE, not the last epoch's 0.2
    assert kept_val_loss(rec.metrics) == 0.1
    sac = migrate(
        {
            "run_id": "sac-1",
            "kind": "sac",
            "status": "succeeded",
            "config": {"features": "state"},
            "metrics": {"final_eval": {"mean_return": 900.0}},
        }
    )
    assert SAC.final(sac) == ("final_eval.mean_return", 900.0) and SAC.resumable and not BC.resumable
    with pytest.raises(KeyError, match="this trainer knows"):
        run_kind("ppo")


def test_store_returns_typed_records_and_writes_them_back(tmp_path):
    runs = RunStore(tmp_path)
    h = runs.create(
        "bc",
        TrainBCRequest(dataset="d", features="state").model_dump(mode="json"),
        lineage={"features": "state", "dataset": "d"},
    )
    h.update(status="running", metrics={"epoch": 1, "val_loss_curve": [0.5]})
    eid = h.add_evaluation({"episodes": 3})
    h.update_evaluation(
        eid, status="succeeded", success_rate=0.5, episodes=[{"seed": 1, "success": True, "return": 3.0}]
    )
    r = runs.get(h.run_id)
    assert isinstance(r, RunRecord) and r.status is RunStatus.running and r.metrics.epoch == 1
    assert r.evaluations[0].episodes[0].return_ == 3.0 and r.lineage.dataset == "d"
    raw = json.loads((tmp_path / h.run_id / "run.json").read_text())
    assert raw["evaluations"][0]["episodes"][0]["return"] == 3.0 and raw["metrics"] == {
        "epoch": 1,
        "val_loss_curve": [0.5],
    }


# ----------------------------------------------------------------------------------------------------------------
# Report: readout column, distinct bar labels, honest titles, kept-epoch markers that never hide
# ----------------------------------------------------------------------------------------------------------------


def _evaluated(run_id, dataset, k, seed=0, readout=None) -> dict:
    eps = [{"seed": i, "success": i < k, "return": 1.0} for i in range(10)]
    rec = _bc(
        run_id,
        config={"dataset": dataset, "features": "state", "seed": seed},
        evaluations=[
            {
                "status": "succeeded",
                "task": "easy",
                "success_rate": k / 10,
                "episodes": eps,
                "request": {"task": "easy", "steps": 200, "seed": 0},
            }
        ],
    )
    if readout:
        rec["lineage"] = {"features": "state", "dataset": dataset, "readout": readout}
    return rec


def test_report_rows_carry_readout_and_bars_get_distinct_labels(tmp_path):
    from vjepa_robot_lab.report import bar_labels, condition_rows, success_title, write_report

    groups = condition_rows([_evaluated("bc-a", "jac-easy", 5), _evaluated("bc-b", "jac-hard", 7)])
    assert [g["readout"] for g in groups] == ["mean", "mean"]
    labels = bar_labels(groups)
    assert len(set(labels)) == 2 and any("jac-easy" in s for s in labels) and any("jac-hard" in s for s in labels)
    one = condition_rows([_evaluated("bc-a", "jac-easy", 5)])
    assert bar_labels(one) == ["BC state"]  # no collision: no additions
    assert "dots" not in success_title(groups)  # one seed per bar: no dots promised
    seeds = condition_rows([_evaluated("bc-a", "d", 5, seed=0), _evaluated("bc-b", "d", 7, seed=1)])
    assert len(seeds) == 1 and "dots = single seeds" in success_title(seeds)
    text = write_report([_evaluated("bc-a", "d", 5, readout="attentive")], [], tmp_path).read_text()
    assert "| Readout |" in text and "| attentive |" in text


def test_kept_epoch_markers_are_on_top_and_never_coincide():
    from vjepa_robot_lab.report import bc_loss_figure, kept_markers

    a, b = migrate(_bc("bc-a")), migrate(_bc("bc-b", config={"dataset": "jac", "features": "vjepa2", "seed": 1}))
    marks = kept_markers([a, b])
    assert [m[:2] for m in marks] == [(2, 0.1), (2, 0.1)]  # both kept epoch 2 at the same loss: one spot...
    assert marks[0][2] != marks[1][2] and abs(marks[0][3] - marks[1][3]) >= 8  # ...own markers, 8+ points apart
    fig = bc_loss_figure([a, b])
    lines = fig.axes[0].get_lines()
    kept = [ln for ln in lines if ln.get_label().startswith("kept epoch")]
    curves = [ln for ln in lines if not ln.get_label().startswith("kept epoch")]
    assert len(kept) == 2 and min(k.get_zorder() for k in kept) > max(c.get_zorder() for c in curves)


# ----------------------------------------------------------------------------------------------------------------
# Concurrency and lifecycle (issue 19)
# ----------------------------------------------------------------------------------------------------------------


class _Recorder:
    """A runner that records what it was asked to start (the resume race is in the record, not in training)."""

    def __init__(self):
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def submit(self, key, fn, on_error, stop=None):
        with self._lock:
            self.keys.append(key)

    def active(self):
        return []


def test_concurrent_resumes_accept_exactly_one(tmp_path):
    class SlowReads(RunStore):  # widens the read -> write window a check-then-act would race through
        def get(self, run_id):
            time.sleep(0.05)
            return super().get(run_id)

    runs = SlowReads(tmp_path / "runs")
    h = runs.create(
        "bc",
        TrainBCRequest(dataset="d", features="state").model_dump(mode="json"),
        lineage={"features": "state", "dataset": "d"},
    )
    h.update(status="interrupted", error="stopped")
    ctx = jobs.TrainerContext(store=None, runs=runs, encoder_url=None)  # type: ignore[arg-type]
    runner, results, barrier = _Recorder(), [], threading.Barrier(8)

    def one():
        barrier.wait()
        try:
            jobs.resume(ctx, runner, h.run_id)
            results.append(202)
        except jobs.Refused as exc:
            results.append(exc.status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [202] + [409] * 7 and runner.keys == [f"run:{h.run_id}"]
    assert runs.get(h.run_id).status is RunStatus.queued


def test_job_runner_keeps_one_job_per_key():
    runner = jobs.JobRunner(2)
    release = threading.Event()
    try:
        runner.submit("run:x", release.wait, lambda e: None)
        with pytest.raises(jobs.JobBusy):
            runner.submit("run:x", lambda: None, lambda e: None)
    finally:
        release.set()
        runner.pool.shutdown(wait=True)
    assert runner.active() == []


def test_metrics_scrape_parses_only_changed_run_records(tmp_path, monkeypatch):
    import vjepa_robot_lab.records.runs as runs_mod

    runs = RunStore(tmp_path)
    handles = [runs.create("bc", {"dataset": "d", "features": "state"}) for _ in range(20)]
    assert runs.counts() == {("bc", "queued"): 20}
    real, parsed = json.loads, []

    def counting(s, *a, **kw):
        parsed.append(1)
        return real(s, *a, **kw)

    monkeypatch.setattr(runs_mod.json, "loads", counting)
    assert runs.counts() == {("bc", "queued"): 20} and parsed == []  # nothing changed: nothing parsed
    handles[3].update(status="running")
    parsed.clear()
    assert runs.counts() == {("bc", "queued"): 19, ("bc", "running"): 1} and len(parsed) == 1


def test_a_claim_by_a_dead_process_with_this_pid_is_stale(tmp_path):
    """A trainer restarted as PID 1 in a container has its dead predecessor's pid: the owner token (pid + the
    process's start time + a random part) tells them apart."""
    from services.common.store import Store
    from vjepa_robot_lab.data.datasets import OWNER_TOKEN, dataset_info

    store = Store(str(tmp_path / "store"))
    host = os.uname().nodename
    base = {"episodes": 10, "episodes_done": 3, "owner_pid": os.getpid(), "owner_host": host}
    store.put_dataset_meta("mine", "running", {**base, "owner_token": OWNER_TOKEN})
    store.put_dataset_meta("reused", "running", {**base, "owner_token": f"{os.getpid()}-12345.67-0123abcd"})
    store.put_dataset_meta("gone", "running", {**base, "owner_pid": 2**22 + 12345, "owner_token": "x-1-2"})
    store.put_dataset_meta(
        "remote-old",
        "running",
        {**base, "owner_host": "elsewhere", "owner_token": "1-1-1", "heartbeat_at": "2020-01-01T00:00:00+00:00"},
    )
    store.put_dataset_meta(
        "remote-live",
        "running",
        {**base, "owner_host": "elsewhere", "owner_token": "1-1-1", "heartbeat_at": jobs_now()},
    )
    assert dataset_info(store, "mine")["status"] == "running"
    reused = dataset_info(store, "reused")
    assert reused["status"] == "failed" and "reused" in reused["error"] and "--resume" in reused["error"]
    assert dataset_info(store, "gone")["status"] == "failed"
    assert dataset_info(store, "remote-old")["status"] == "failed"
    assert dataset_info(store, "remote-live")["status"] == "running"


def jobs_now() -> str:
    from services.common.store import now_iso

    return now_iso()


def test_shutdown_stops_dataset_generation_promptly_and_never_leaves_it_ready(tmp_path):
    from fastapi.testclient import TestClient

    from services.trainer.app import TrainerSettings, create_app

    app = create_app(TrainerSettings(store=str(tmp_path / "store"), runs=str(tmp_path / "runs"), job_workers=1))
    with TestClient(app) as client:
        r = client.post("/datasets", json={"name": "big", "episodes": 2000, "steps": 50, "image_size": 0, "workers": 1})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while client.get("/datasets/big").json()["episodes_done"] < 1:
            assert time.monotonic() < deadline, "generation never started"
            time.sleep(0.2)
        t0 = time.monotonic()
    stopped_in = time.monotonic() - t0  # leaving the client runs the app's shutdown
    from services.common.store import Store
    from vjepa_robot_lab.data.datasets import dataset_info

    meta = dataset_info(Store(str(tmp_path / "store")), "big")
    assert stopped_in < 20, f"shutdown took {stopped_in:.1f} s"
    assert meta["status"] == "failed" and "stopped" in meta["error"] and meta["episodes_done"] < 2000


def test_a_stable_baselines3_checkpoint_gets_a_clear_error(tmp_path):
    from vjepa_robot_lab.learning.sac import policy_from_checkpoint
    from vjepa_robot_lab.learning.sac_checkpoint import UnsupportedCheckpoint

    (tmp_path / "sac").mkdir()
    (tmp_path / "sac" / "state.json").write_text(json.dumps({"dim": 8, "config": {"features": "state"}}))  # no format
    with pytest.raises(UnsupportedCheckpoint, match="stable-baselines3.*train the run again"):
        policy_from_checkpoint(tmp_path)
