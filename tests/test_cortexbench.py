"""CortexBench as its code runs it (eai-vc + mjrl), where the bake-off's tests do not already say so."""

from __future__ import annotations

import torch

from vjepa_robot_lab.learning.bc import BCPolicy, batchnorm_mlp


def test_the_input_batchnorm_starts_at_scale_a_hundredth_as_mjrls_does():
    """mjrl's BatchNormMLP scales list(model.parameters())[-2:] by 0.01: in FCNetworkWithBatchNorm those are the
    input BatchNorm's weight and bias. The linear layers keep torch's default initialisation."""
    net = batchnorm_mlp(12, [32, 32], 2)
    norm = net[0]
    assert isinstance(norm, torch.nn.BatchNorm1d)
    assert torch.allclose(norm.weight, torch.full((12,), 0.01)) and torch.count_nonzero(norm.bias) == 0
    out_std = float(net[-1].weight.std())
    assert 0.05 < out_std < 0.2  # kaiming-uniform default for fan-in 32 (bound 1/sqrt(32) ~ 0.18): not scaled
    policy = BCPolicy(12, head="batchnorm")
    assert torch.allclose(policy.net[0].weight, torch.full((12,), 0.01))


def test_an_evaluation_defaults_to_the_runs_own_episode_length_and_says_so(tmp_path):
    """`eval RUN` on a SAC run evaluates its 1000-step episodes (it trains and is judged at them), a BC run its
    dataset's episode length; what the run filled is named in the answer (`from_run`); a length the caller sends
    wins."""
    from conftest import write_steps_dataset

    from services.common.store import Store
    from services.trainer import jobs
    from vjepa_robot_client.contract import EvalRequest
    from vjepa_robot_lab.records.runs import RunStore, migrate

    store = Store(str(tmp_path / "store"))
    write_steps_dataset(store, "jac", episodes=1, steps=40, image_size=16)
    ctx = jobs.TrainerContext(store=store, runs=RunStore(tmp_path / "runs"), encoder_url=None)
    sac = migrate(
        {
            "run_id": "sac-1",
            "kind": "sac",
            "status": "succeeded",
            "config": {"features": "state", "task": "easy", "episode_steps": 1000, "action_repeat": 4},
            "lineage": {"features": "state", "action_repeat": 4, "task": "easy"},
            "metrics": {},
            "evaluations": [],
        }
    )
    bc = migrate(
        {
            "run_id": "bc-1",
            "kind": "bc",
            "status": "succeeded",
            "config": {"dataset": "jac", "features": "state", "seed": 0},
            "lineage": {"features": "state", "dataset": "jac", "image_size": 16},
            "metrics": {},
            "evaluations": [],
        }
    )
    asked = EvalRequest(episodes=3)
    got = jobs.resolve_eval(ctx, sac, asked)
    assert got.steps == 1000 and "steps" in jobs.filled_from_run(asked, got)
    got = jobs.resolve_eval(ctx, bc, asked)
    assert got.steps == 40 and jobs.filled_from_run(asked, got) == ["steps", "image_size"]
    sent = EvalRequest(episodes=3, steps=200)
    got = jobs.resolve_eval(ctx, sac, sent)
    assert got.steps == 200 and "steps" not in jobs.filled_from_run(sent, got)


def test_the_bake_off_table_gives_cortexbenchs_score_the_iqm_and_the_published_references(tmp_path):
    """Each row's CortexBench score is its mean return / 10 (eai-vc #14); across tasks the score is the mean of the
    tasks' scores, beside an IQM with a task-stratified interval and the published VC-1 figures; a performance
    profile is drawn."""
    from services.trainer import bakeoff
    from vjepa_robot_client.contract import BakeoffCell, BakeoffRecord, RunStatus, SeedInterval

    def cell(task, values):
        mean = sum(values) / len(values)
        return BakeoffCell(
            encoder_url="http://e", model="preset:lite0", family="efficientnet-lite", weights="sha256:ab",
            random_init=False, stand_in=False, task=task, readout="flare", study_id="s", status="succeeded",
            score=SeedInterval(n=len(values), mean=mean, ci95=[mean - 10, mean + 10], values=values),
        )  # fmt: skip

    record = BakeoffRecord(
        bakeoff_id="bakeoff-cb",
        status=RunStatus.succeeded,
        settings={"seeds": [100, 200, 300], "dataset": {}, "eval": {}, "score": "mean return"},
        cells=[cell("walker-walk", [500.0, 600.0, 700.0]), cell("cheetah-run", [200.0, 300.0, 400.0])],
    )
    text = bakeoff.table_markdown(record)
    rows = [line for line in text.splitlines() if line.startswith("| walker-walk")]
    assert "| 60.0 |" in rows[0]  # 600 / 10
    across = [line for line in text.splitlines() if line.startswith("- ") and ", flare: " in line]
    assert len(across) == 1 and "2 tasks, CortexBench score 45.0, IQM " in across[0], text  # (60 + 30) / 2
    assert "VC-1 (ViT-L, Ego4D+MNI): 66.9 +- 1.4" in text
    png = bakeoff.profile_figure(record, tmp_path / "profile.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
