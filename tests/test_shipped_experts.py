"""The shipped state-SAC experts (vjepa_robot_lab/policies/shipped_experts.py): every CortexBench task has one with
its training record and held-out evaluation; each one loads from the package and acts well above the random policy
in live dm_control episodes; datasets and bake-offs use them with no training step, and say which one they used."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vjepa_robot_client.contract import SHIPPED_EXPERT, BakeoffRequest, CreateDatasetRequest, default_expert
from vjepa_robot_lab.envs.tasks import CORTEXBENCH_TASKS, task_spec
from vjepa_robot_lab.policies import shipped_experts as se
from vjepa_robot_lab.policies.run_experts import ExpertRefused


def test_every_cortexbench_task_ships_an_expert_with_its_record():
    assert set(CORTEXBENCH_TASKS) <= set(se.shipped_tasks()), se.shipped_tasks()
    from safetensors.torch import load_file

    for task in se.shipped_tasks():  # CortexBench's five, and reacher-hard's oracle
        d = se.shipped_dir(task)
        record = se.shipped_record(task)
        held = record["heldout_eval"]
        # reported on what no choice was made on: training seed and evaluation episodes both differ from seed 0
        assert record["training_seed"] != 0 and held["eval_seed"] != 0, record
        assert held["episodes"] == len(held["returns"]) >= 10 and held["episode_steps"] == 1000
        assert record["published"]["source"].startswith("TD-MPC2") and record["published"]["mean"] > 0
        assert record["sha256"] == se.checkpoint_sha256(d)  # the record describes the file that ships
        tensors = load_file(str(d / "sac" / se.POLICY_FILE))
        assert tensors and all(k.startswith("actor.") for k in tensors), sorted(tensors)  # critics dropped
        assert (d / "sac" / se.POLICY_FILE).stat().st_size < 300_000
        state = json.loads((d / "sac" / "state.json").read_text())
        assert state["config"]["task"] == task_spec(task).name and state["config"]["features"] == "state"
        assert state["config"]["action_repeat"] == record["action_repeat"]


@pytest.mark.parametrize("task", CORTEXBENCH_TASKS)
def test_shipped_expert_acts_far_above_random_live(task):
    """Two live 300-step episodes on evaluation seeds no expert was trained or chosen on (seed 7): the shipped
    actor, loaded through the dataset path (RunExpert), against the random policy on the same episodes."""
    from vjepa_robot_lab.evaluation.evaluate import ExpertPolicy, evaluate
    from vjepa_robot_lab.policies.run_experts import RunExpert

    source = se.shipped_source(task)

    class Shipped(ExpertPolicy):  # the dataset's RunExpert, acting through the evaluation loop
        def reset(self, seeds):
            self.experts = [RunExpert(source) for _ in seeds]

    kw = dict(task=task, episodes=2, steps=300, seed=7, parallel_envs=2, image_size=0)
    ar = source.action_repeat
    expert = evaluate(Shipped(SHIPPED_EXPERT, task), action_repeat=ar, **kw)["mean_return"]
    random = evaluate(ExpertPolicy("random", task), action_repeat=ar, **kw)["mean_return"]
    # 300 of 1000 steps: the held-out mean scaled down, with room for the stand-up and spin-up at the start
    assert expert > random + 40 and expert > 0.15 * se.shipped_record(task)["heldout_eval"]["mean_return"], (
        task,
        expert,
        random,
    )


def test_default_expert_is_shipped_off_reacher():
    assert default_expert("easy") == default_expert("reacher-hard") == "jacobian"
    assert default_expert("walker-walk") == SHIPPED_EXPERT
    assert CreateDatasetRequest(name="a", task="cheetah-run").expert == SHIPPED_EXPERT
    assert CreateDatasetRequest(name="a", task="reacher-easy").expert == "jacobian"
    assert CreateDatasetRequest(name="a", task="easy", expert=SHIPPED_EXPERT).expert == SHIPPED_EXPERT


def test_a_task_without_a_shipped_expert_is_a_422_naming_the_way(tmp_path):
    with pytest.raises(ExpertRefused) as exc:
        se.shipped_source("cartpole-swingup", root=tmp_path)
    assert exc.value.status == 422
    assert all(w in str(exc.value) for w in ("cartpole-swingup", "run:RUN_ID", "shipped: none")), str(exc.value)


def test_cortexbench_bakeoff_resolves_every_task_with_no_training_step(tmp_path):
    """`bake-off --protocol cortexbench` with no experts: each task's dataset resolves to its shipped expert."""
    from services.common.store import Store
    from services.trainer import bakeoff as svc
    from services.trainer import jobs
    from vjepa_robot_lab.experiments import bakeoff
    from vjepa_robot_lab.records.runs import RunStore

    settings = bakeoff.resolve(BakeoffRequest(encoders=["http://a"], protocol="cortexbench"))
    assert settings["experts"] == {t: default_expert(t) for t in CORTEXBENCH_TASKS}
    # demos are reused by name: a re-trained shipped expert (another checkpoint hash) names other demos
    name = bakeoff.dataset_fields(settings, "walker-walk")["name"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(se, "checkpoint_sha256", lambda d: "another")
        assert bakeoff.dataset_fields(settings, "walker-walk")["name"] != name
    assert bakeoff.dataset_fields(settings, "walker-walk")["name"] == name
    fields = bakeoff.dataset_fields(settings, "walker-walk")
    sha = se.checkpoint_sha256(se.shipped_dir("walker-walk"))
    meta = {**fields, "expert_run": {"sha256": sha}}
    assert bakeoff.lineage_matches(meta, fields)  # a named dataset made by another checkpoint is not these demos
    assert not bakeoff.lineage_matches({**meta, "expert_run": {"sha256": "old"}}, fields)
    ctx = jobs.TrainerContext(store=Store(str(tmp_path / "s")), runs=RunStore(tmp_path / "runs"), encoder_url=None)
    for task in settings["tasks"]:
        spec, source = svc.dataset_spec(ctx, settings, task)
        if task_spec(task).is_reacher:
            assert source is None and spec.expert == "jacobian"
        else:
            assert source.expert_name == SHIPPED_EXPERT and spec.action_repeat == source.action_repeat


def test_cli_dataset_with_no_expert_uses_the_shipped_one_and_records_it(tmp_path):
    from typer.testing import CliRunner

    from services.common.store import Store
    from vjepa_robot import cli

    store = str(tmp_path / "store")
    args = ["datasets", "create", "fs", "--task", "finger-spin", "--episodes", "2", "--steps", "60"]
    res = CliRunner().invoke(cli.app, [*args, "--image-size", "0", "--workers", "1", "--store", store])
    assert res.exit_code == 0, res.output
    assert "expert shipped on finger-spin" in res.output
    meta = Store(store).get_dataset_meta("fs")
    d = se.shipped_dir("finger-spin")
    assert meta["expert"] == SHIPPED_EXPERT and meta["expert_run"]["sha256"] == se.checkpoint_sha256(d)
    assert meta["action_repeat"] == meta["expert_run"]["action_repeat"] == 2
    assert meta["status"] == "ready" and np.isfinite(meta["mean_return"])
