"""The bake-off (issue 18 item 6), the cortexbench protocol (item 5) and the weights beside every row (item 2).

Unit tests of the preset, the BatchNorm head, the settings, the table and figure writer and the report's Weights
column; ONE end-to-end bake-off through real servers on loopback (two tiny random-init encoder families, one task,
two seeds, 3 demos x 20 steps at 32 px): plumbing, not a result.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch

from services.trainer import bakeoff, jobs
from vjepa_robot_client.contract import (
    BakeoffCell,
    BakeoffRecord,
    BakeoffRequest,
    RunStatus,
    SeedInterval,
    TrainBCRequest,
)
from vjepa_robot_lab.experiments.protocols import CORTEXBENCH, apply_bc, preset

SHA = "sha256:" + "ab12" * 16


# ----------------------------------------------------------------------------------------------------------------
# The cortexbench preset and the BatchNorm head
# ----------------------------------------------------------------------------------------------------------------


def test_cortexbench_preset_is_eai_vcs_dmc_recipe():
    """The values of eai-vc's DMC_BC_config.yaml / train_loop.py / launch_all_jobs.sh (protocols.py cites them)."""
    bc = CORTEXBENCH["bc"]
    assert (bc["head"], bc["hidden_sizes"], bc["readout"]) == ("batchnorm", [256, 256, 256], "flare")
    assert (bc["epochs"], bc["batch_size"], bc["lr"], bc["lr_schedule"]) == (100, 256, 1e-3, "constant")
    assert (bc["val_fraction"], bc["select"]) == (0.0, "last")
    assert CORTEXBENCH["dataset"]["episodes"] == 100 and CORTEXBENCH["dataset"]["image_size"] == 256
    assert CORTEXBENCH["eval"]["episodes"] == 10 and CORTEXBENCH["seeds"] == [100, 200, 300]
    assert CORTEXBENCH["tasks"] == ["walker-stand", "walker-walk", "reacher-easy", "cheetah-run", "finger-spin"]
    with pytest.raises(ValueError, match="cortexbench"):
        preset("vc1")


def test_protocol_fills_only_the_fields_left_out():
    req = apply_bc(TrainBCRequest(dataset="d", protocol="cortexbench", epochs=3, readout="mean"))
    assert (req.epochs, req.readout.value) == (3, "mean")  # what the caller sent wins
    assert (req.head, req.hidden_sizes, req.lr_schedule, req.val_fraction, req.select, req.batch_size) == (
        "batchnorm",
        [256, 256, 256],
        "constant",
        0.0,
        "last",
        256,
    )
    plain = TrainBCRequest(dataset="d")
    assert apply_bc(plain) is plain and plain.head == "findings" and plain.lr_schedule == "cosine"
    with pytest.raises(ValueError):
        TrainBCRequest(dataset="d", protocol="nope")


def test_batchnorm_head_is_cortexbenchs_mlp_and_round_trips(tmp_path):
    from vjepa_robot_lab.learning.bc import BCPolicy, fit_bc, load_bc_policy, save_bc_policy

    net = BCPolicy(12, head="batchnorm").net
    assert isinstance(net[0], torch.nn.BatchNorm1d) and net[0].num_features == 12  # BatchNorm on the input
    widths = [m.out_features for m in net if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 256, 256, 2] and not any(isinstance(m, torch.nn.Tanh) for m in net)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in net)
    findings = BCPolicy(12).net  # the findings' MLP is unchanged
    assert [type(m).__name__ for m in findings][:2] == ["Linear", "LayerNorm"] and isinstance(
        findings[-1], torch.nn.Tanh
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(257, 12)).astype(np.float32)  # 257 rows, batch 256: a trailing batch of one is skipped
    y = np.tanh(x[:, :2]).astype(np.float32)
    rows = np.arange(257)
    model, m = fit_bc(
        x, y, rows, np.array([], int), epochs=3, batch_size=256, head="batchnorm", hidden_sizes=[32, 32],
        lr_schedule="constant", select="last",
    )  # fmt: skip
    assert (m["head"], m["hidden_sizes"], m["lr_schedule"], m["epoch"]) == ("batchnorm", [32, 32], "constant", 3)
    path = save_bc_policy(tmp_path / "policy.safetensors", model, {"config": {}})
    loaded = load_bc_policy(path)
    with torch.no_grad():
        want = model(torch.from_numpy(x[:5])).numpy()
    assert np.allclose(loaded(x[:5]), want, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Settings and refusals
# ----------------------------------------------------------------------------------------------------------------


def test_settings_come_from_the_request_then_the_protocol_then_the_defaults():
    s = bakeoff.resolve(BakeoffRequest(encoders=["http://a"], tasks=["easy"], protocol="cortexbench", epochs=5))
    assert s["dataset"]["episodes"] == 100 and s["steps"] == {"easy": 1000} and s["dataset"]["image_size"] == 256
    assert s["eval"]["episodes"] == 10 and s["seeds"] == [100, 200, 300] and s["experts"] == {"easy": "jacobian"}
    assert s["bc"]["epochs"] == 5 and s["bc"]["head"] == "batchnorm" and "readout" not in s["bc"]
    plain = bakeoff.resolve(BakeoffRequest(encoders=["http://a"], seeds=[4], steps=30, eval_episodes=2))
    assert plain["seeds"] == [4] and plain["steps"] == {"easy": 30}
    assert plain["eval"]["episodes"] == 2 and plain["dataset"]["episodes"] == 100 and plain["bc"] == {"grid_size": 4}
    own = bakeoff.resolve(BakeoffRequest(encoders=["http://a"], tasks=["easy", "walker-walk"], experts={
        "walker-walk": "run:sac-1"}))  # fmt: skip
    assert own["steps"] == {"easy": 200, "walker-walk": 1000}  # each task's own episode (tasks.py)
    assert own["experts"] == {"easy": "jacobian", "walker-walk": "run:sac-1"}


def test_cortexbench_runs_its_five_tasks_with_shipped_or_named_experts():
    s = bakeoff.resolve(BakeoffRequest(encoders=["http://a"], protocol="cortexbench"))  # no experts: the shipped ones
    assert s["experts"] == {
        "walker-stand": "shipped",
        "walker-walk": "shipped",
        "easy": "jacobian",
        "cheetah-run": "shipped",
        "finger-spin": "shipped",
    }
    experts = {t: f"run:sac-{k}" for k, t in enumerate(["walker-stand", "walker-walk", "cheetah-run", "finger-spin"])}
    s = bakeoff.resolve(BakeoffRequest(encoders=["http://a"], protocol="cortexbench", experts=experts))
    assert s["tasks"] == ["walker-stand", "walker-walk", "easy", "cheetah-run", "finger-spin"]
    assert s["tasks_not_here"] == [] and s["experts"]["easy"] == "jacobian"
    assert set(s["steps"].values()) == {1000}


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"encoders": ["http://a", "http://a"]}, ["encoders", "distinct"]),
        ({"encoders": ["http://a"], "tasks": ["easy"], "experts": {"hard": "jacobian"}}, ["hard", "not in tasks"]),
        ({"encoders": ["http://a"], "experts": {"easy": "oracle"}}, ["oracle", "run:RUN_ID", "jacobian"]),
        ({"encoders": ["http://a"], "readouts": ["max"]}, ["mean", "flare", "attentive"]),
        ({"encoders": ["http://a"], "tasks": ["nope"]}, ["easy", "hard"]),
        ({"encoders": []}, ["encoders"]),
    ],
)
def test_bad_requests_name_the_problem(bad, words):
    with pytest.raises(ValueError) as exc:
        BakeoffRequest(**bad)
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_an_encoder_that_does_not_answer_is_422_before_anything_is_recorded(tmp_path):
    from _servers import free_port

    from services.common.store import Store
    from vjepa_robot_lab.records.runs import RunStore

    ctx = jobs.TrainerContext(store=Store(str(tmp_path / "s")), runs=RunStore(tmp_path / "runs"), encoder_url=None)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(jobs.Refused) as exc:
        bakeoff.start(ctx, jobs.InlineRunner(), BakeoffRequest(encoders=[url]))
    assert exc.value.status_code == 422 and url in exc.value.detail and "GET /info" in exc.value.detail
    assert not (tmp_path / "runs" / "bakeoffs").exists()


# ----------------------------------------------------------------------------------------------------------------
# The table and the figure
# ----------------------------------------------------------------------------------------------------------------


def _cell(model, weights, random_init, readout, score, status="succeeded", error=None, task="easy"):
    return BakeoffCell(
        encoder_url="http://e",
        model=model,
        family="dinov2" if "dinov2" in model else "vjepa2",
        weights=weights,
        random_init=random_init,
        stand_in=bool(random_init),
        task=task,
        readout=readout,
        study_id="study-1" if score else None,
        status=status,
        error=error,
        score=score,
    )


def test_table_names_every_cell_its_weights_and_marks_stand_ins(tmp_path):
    iv = SeedInterval(n=3, mean=120.0, ci95=[100.0, 140.0], values=[110.0, 120.0, 130.0])
    record = BakeoffRecord(
        bakeoff_id="bakeoff-t1",
        status=RunStatus.failed,
        settings={"seeds": [0, 1, 2], "dataset": {"episodes": 3}, "eval": {"episodes": 2}, "score": "mean return"},
        cells=[
            _cell("preset:tiny-dinov2", "random-init:tiny-dinov2:seed0:f7034266", True, "mean", iv),
            _cell("facebook/vjepa2-vitl-fpc64-256", SHA, False, "flare", iv, task="hard"),
            _cell("facebook/vjepa2-vitl-fpc64-256", SHA, False, "mean", None, "failed", "boom | here", task="hard"),
        ],
    )
    text = bakeoff.table_markdown(record)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Task")]
    assert len(rows) == 3
    assert "stand-in" in rows[0] and "`random-init:tiny-dinov2:seed0:f7034266`" in rows[0]
    assert "stand-in" not in rows[1] and f"`{SHA}`" in rows[1] and "120.0 [100.0, 140.0] (n=3)" in rows[1]
    assert "110.0; 120.0; 130.0" in rows[1] and "failed: boom / here" in rows[2] and "n/a" in rows[2]
    assert "every encoder is a stand-in" not in text.splitlines()[0]  # one pretrained encoder ran
    png = bakeoff.figure(record, tmp_path / "b.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    only = record.model_copy(update={"cells": record.cells[:1]})
    assert "every encoder is a stand-in" in bakeoff.table_markdown(only).splitlines()[0]


def test_report_prints_weights_beside_each_row_and_a_dash_for_old_records(tmp_path):
    from vjepa_robot_lab.report import weights_of, write_report

    evals = [{"status": "succeeded", "success_rate": 0.5, "mean_return": 3.0, "episodes": [
        {"seed": 1_000_000_000 + i, "success": i == 0, "return": 3.0} for i in range(2)]}]  # fmt: skip
    base = {"status": "succeeded", "kind": "bc", "config": {"features": "vjepa2", "dataset": "d"}, "evaluations": evals}
    lineage = {"features": "vjepa2", "dataset": "d", "weights": SHA, "family": "dinov2", "random_init": False}
    lineage.update(encoder_model="facebook/dinov2-base", encoder_id="e1")
    new = {**base, "run_id": "bc-new", "lineage": lineage}
    old = {**base, "run_id": "bc-old", "metrics": {"features_lineage": {"features": "vjepa2", "encoder_id": "e0",
           "model": "preset:tiny"}}}  # fmt: skip
    assert weights_of(old) == "-" and weights_of(new) == SHA
    text = write_report([new, old], [], tmp_path).read_text()
    header = next(r for r in text.splitlines() if r.startswith("| Condition"))
    col = [c.strip() for c in header.split("|")].index("Weights")
    new_row = next(r for r in text.splitlines() if "DINOv2" in r)
    old_row = next(r for r in text.splitlines() if "`tiny` preset" in r)
    assert new_row.split("|")[col].strip() == f"`{SHA[:19]}`"  # sha256: + 12 hex; the full pin is in the record
    assert old_row.split("|")[col].strip() == "-"


# ----------------------------------------------------------------------------------------------------------------
# One bake-off end to end through real servers
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from contextlib import ExitStack

    from _servers import serve_app

    from services.encoder.app import create_app as create_encoder_app
    from services.encoder.settings import EncoderSettings
    from services.trainer.app import TrainerSettings
    from services.trainer.app import create_app as create_trainer_app

    root = tmp_path_factory.mktemp("bakeoff")
    store = str(root / "store")  # one store: each encoder writes its embeddings, the trainer reads them
    with ExitStack() as es:
        encoders = [
            es.enter_context(
                serve_app(
                    create_encoder_app(EncoderSettings(store=store, preset=p, max_batch=32, max_wait_ms=5)),
                    startup_timeout=180,
                )
            )
            for p in ("tiny-videomae", "tiny-dinov2")
        ]
        # the bake-off reaches only configured encoders (issue 28 item 5): these two, through VJEPA_ROBOT_ENCODER_URLS
        mp = pytest.MonkeyPatch()
        mp.setenv(bakeoff.ENCODER_URLS_ENV, ",".join(encoders))
        tr_app = create_trainer_app(TrainerSettings(store=store, runs=str(root / "runs")))
        mp.undo()
        trainer = es.enter_context(serve_app(tr_app, startup_timeout=180))
        yield {"encoders": encoders, "trainer": trainer, "runs": root / "runs"}


def test_bakeoff_end_to_end_names_every_cell_its_weights(stack):
    from vjepa_robot_client import TrainerClient

    tr = TrainerClient(stack["trainer"])
    infos = [httpx.get(f"{u}/info").json() for u in stack["encoders"]]
    record = tr.bakeoff(
        stack["encoders"], tasks=["easy"], readouts=["mean", "flare"], seeds=[0, 1], episodes=2, steps=16,
        image_size=32, epochs=1, eval_episodes=1, parallel_envs=1, workers=1,
    )  # fmt: skip
    assert record.status.value in ("queued", "running") and len(record.cells) == 4
    bad = httpx.post(f"{stack['trainer']}/bakeoff", json={"encoders": stack["encoders"][:1], "readouts": ["max"]})
    assert bad.status_code == 422 and "flare" in bad.text  # refused while the bake-off runs; the service serves on
    done = tr.wait_bakeoff(record.bakeoff_id, progress=False, timeout=600, poll_interval=0.5)
    assert done.status.value == "succeeded", (done.error, [c.error for c in done.cells])
    cells = {(c.model, c.readout): c for c in done.cells}
    assert set(cells) == {(i["model"], r) for i in infos for r in ("mean", "flare")}  # every cell
    rows = [line for line in done.table.splitlines() if line.startswith("| easy |")]
    assert len(rows) == 4
    for info in infos:
        assert info["weights"] and info["random_init"] is True
        mine = [r for r in rows if info["model"].removeprefix("preset:") in r]
        assert len(mine) == 2 and all(f"`{info['weights']}`" in r and "stand-in" in r for r in mine)
    assert "every encoder is a stand-in" in done.table.splitlines()[0]
    assert set(done.demo_returns) == {"easy"} and "the demonstrator" in done.table
    for c in done.cells:
        assert c.score.n == 2 and len(c.run_ids) == 2 and c.stand_in
        run = tr.run(c.run_ids[0])  # the run's own lineage carries the pinned weights and the family
        assert (run.lineage.weights, run.lineage.family) == (
            c.weights,
            c.family,
        ) and run.lineage.readout.value == c.readout
    assert tr.bakeoff_figure(done.bakeoff_id)[:4] == b"\x89PNG"
    assert [b.bakeoff_id for b in tr.bakeoffs()] == [done.bakeoff_id]


def test_train_bc_with_the_cortexbench_protocol_records_the_resolved_recipe(tmp_path):
    """POST /train/bc and `train bc` run jobs.train: the protocol fills what the request left out, the run records
    the resolved config, and the BatchNorm checkpoint loads back."""
    from conftest import write_steps_dataset

    from services.common.store import Store
    from vjepa_robot_lab.learning.bc import load_bc_policy
    from vjepa_robot_lab.records.runs import RunStore

    store = Store(str(tmp_path / "store"))
    write_steps_dataset(store, "d", episodes=3, steps=10, image_size=16)
    ctx = jobs.TrainerContext(store=store, runs=RunStore(tmp_path / "runs"), encoder_url=None)
    req = TrainBCRequest(dataset="d", features="state", protocol="cortexbench", epochs=2)
    run = ctx.runs.get(jobs.train(ctx, jobs.InlineRunner(), req).run_id)
    assert run.status.value == "succeeded", run.error
    cfg = run.config
    assert (cfg.protocol.value, cfg.head, cfg.lr_schedule, cfg.readout.value, cfg.epochs) == (
        "cortexbench",
        "batchnorm",
        "constant",
        "flare",
        2,
    )
    assert (run.metrics.n_val, run.metrics["head"], run.lineage.readout.value) == (0, "batchnorm", "flare")
    policy = load_bc_policy(tmp_path / "runs" / run.run_id)
    assert isinstance(policy.model.net[0], torch.nn.BatchNorm1d) and policy.readout == "flare"


def test_bakeoff_on_a_task_demonstrated_by_a_trained_run(stack):
    """A non-reacher task takes `run:RUN_ID` as its demonstrator: a tiny state-SAC run on cartpole-balance (a few
    hundred steps: plumbing, not an expert) demonstrates, and the bake-off's dataset records the run."""
    from vjepa_robot_client import TrainerClient

    tr = TrainerClient(stack["trainer"])
    sac = tr.train_sac(
        features="state", task="cartpole-balance", total_steps=256, parallel_envs=2, episode_steps=64,
        action_repeat=8, learning_starts=32, batch_size=16, buffer_size=512, eval_every=100_000,
        checkpoint_every=100_000, final_eval_episodes=1,
    )  # fmt: skip
    assert tr.wait(sac, progress=False, timeout=300, poll_interval=0.5).status.value == "succeeded"
    record = tr.bakeoff(
        stack["encoders"][:1], tasks=["cartpole-balance"], experts={"cartpole-balance": f"run:{sac}"},
        readouts=["mean"], seeds=[0], episodes=1, steps=16, image_size=32, epochs=1, eval_episodes=1,
        parallel_envs=1, workers=1,
    )  # fmt: skip
    done = tr.wait_bakeoff(record.bakeoff_id, progress=False, timeout=600, poll_interval=0.5)
    assert done.status.value == "succeeded", (done.error, [c.error for c in done.cells])
    meta = httpx.get(f"{stack['trainer']}/datasets/{done.datasets['cartpole-balance']}").json()
    assert meta["expert_run"]["run_id"] == sac and meta["success_rate"] is None
    (cell,) = done.cells
    assert cell.score.n == 1 and cell.success is None  # cartpole defines no success: the cell is scored by return


def test_cortexbench_bakeoff_runs_its_five_tasks_with_no_expert_training(stack):
    """Issue 30: `bake-off --protocol cortexbench` from a clean checkout, no experts named and none trained: every
    non-reacher task is demonstrated by its shipped state-SAC expert (the dataset records which), reacher by the
    jacobian; tiny budgets (one 16-step demo per task, one seed, one epoch) on a stand-in encoder."""
    from vjepa_robot_client import TrainerClient
    from vjepa_robot_lab.policies.shipped_experts import checkpoint_sha256, shipped_dir

    tr = TrainerClient(stack["trainer"])
    record = tr.bakeoff(
        stack["encoders"][:1], protocol="cortexbench", readouts=["mean"], seeds=[0], episodes=1, steps=16,
        image_size=32, epochs=1, eval_episodes=1, parallel_envs=1, workers=1,
    )  # fmt: skip
    done = tr.wait_bakeoff(record.bakeoff_id, progress=False, timeout=600, poll_interval=0.5)
    assert done.status.value == "succeeded", (done.error, [c.error for c in done.cells])
    assert sorted(c.task for c in done.cells) == sorted(["walker-stand", "walker-walk", "easy", "cheetah-run",
                                                          "finger-spin"])  # fmt: skip
    for task, name in done.datasets.items():
        meta = httpx.get(f"{stack['trainer']}/datasets/{name}").json()
        if task == "easy":
            assert meta["expert"] == "jacobian"
            continue
        assert meta["expert"] == "shipped" and meta["expert_run"]["sha256"] == checkpoint_sha256(shipped_dir(task))
    assert "CortexBench score" in done.table and "VC-1" in done.table  # the published row to read against


def test_a_named_dataset_is_used_as_the_demos_and_its_lineage_checked(tmp_path):
    """`dataset` (CLI --dataset): the bake-off reads an existing dataset's name instead of demos-<task>-<hash>, so
    its stored encodings are reused; one task only; a dataset of another lineage fails the dataset stage, named."""
    from services.common.store import Store
    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset
    from vjepa_robot_lab.experiments import bakeoff as cells_lib

    s = bakeoff.resolve(BakeoffRequest(encoders=["http://a"], dataset="mine", episodes=2, steps=10, image_size=32))
    fields = cells_lib.dataset_fields(s, "easy")
    assert fields["name"] == "mine" and fields["episodes"] == 2 and fields["steps"] == 10
    plain = cells_lib.dataset_fields(bakeoff.resolve(BakeoffRequest(encoders=["http://a"])), "easy")
    assert plain["name"].startswith("demos-easy-")
    with pytest.raises(ValueError, match="one task"):
        BakeoffRequest(encoders=["http://a"], dataset="mine", tasks=["easy", "hard"])
    with pytest.raises(ValueError):
        BakeoffRequest(encoders=["http://a"], dataset="../etc")
    store = Store(str(tmp_path / "store"))
    create_dataset(DatasetSpec(name="mine", episodes=2, steps=10, image_size=32), store, workers=1, progress=False)
    assert cells_lib.ensure_dataset(store, None, fields, workers=1)["reused"] is True
    wider = BakeoffRequest(encoders=["http://a"], dataset="mine", episodes=3, steps=10, image_size=32)
    other = cells_lib.dataset_fields(bakeoff.resolve(wider), "easy")
    with pytest.raises(ValueError, match="mine exists with another lineage"):
        cells_lib.ensure_dataset(store, None, other, workers=1)


def test_pixels_epochs_budget_only_the_pixels_row():
    from vjepa_robot_lab.experiments import bakeoff as cells_lib

    req = BakeoffRequest(encoders=["http://a"], baselines=["state", "pixels"], epochs=50, pixels_epochs=2)
    s = bakeoff.resolve(req)
    cells = cells_lib.plan_cells("bo-1", s, [{"url": "http://a", "encoder_id": "e1"}], ["state", "pixels"],
                                 store="st", runs="rn")  # fmt: skip
    epochs = {c["features"]: c["bc"]["epochs"] for c in cells}
    assert epochs == {"vjepa2": 50, "state": 50, "pixels": 2}
    same = bakeoff.resolve(BakeoffRequest(encoders=["http://a"], baselines=["pixels"], epochs=7))
    plain = cells_lib.plan_cells("bo-2", same, [], ["pixels"], store="st", runs="rn")
    assert plain[0]["bc"]["epochs"] == 7  # left out: the bake-off's epochs


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--grid-size", "0", "--grid-size 0"),
        ("--pixels-epochs", "0", "--pixels-epochs 0"),
        ("--dataset", "../x", "dataset"),
    ],
)
def test_bakeoff_flags_reach_the_request_and_are_checked_first(flag, value, words, tmp_path):
    """The CLI's --grid-size, --pixels-epochs and --dataset are the request's fields: a bad value is one line naming
    the field, exit 2, before any encoder starts or anything is written."""
    from typer.testing import CliRunner

    from vjepa_robot import cli

    res = CliRunner().invoke(cli.app, ["bake-off", "--baseline", "state", flag, value, "--store", str(tmp_path / "s")])
    assert res.exit_code == 2, res.output
    assert words in res.output and not (tmp_path / "s").exists()


def test_the_table_says_the_pixels_rows_own_epochs():
    req = BakeoffRequest(encoders=["http://a"], baselines=["pixels"], epochs=50, pixels_epochs=2)
    rec = BakeoffRecord(bakeoff_id="bakeoff-1", status="queued", settings=bakeoff.resolve(req), cells=[])
    head = bakeoff.table_markdown(rec)
    assert "50 epochs (the pixels row: 2)" in head, head
