"""The CLI's Trainer port (vjepa_robot/trainer_port.py): the HTTP adapter (the SDK against a real trainer service
on loopback) and the in-process adapter (the job layer) return the same types and the same results for the same
request; and the `train <kind>` commands are generated from the run-kind registry and the request models."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from vjepa_robot_client.contract import BaselineEvalRequest, EvalResult, RunCreated, RunRecord, TrainBCRequest


@pytest.fixture(scope="module")
def two_trainers(stack, dataset_64, tmp_path_factory):
    """(HttpTrainer on the session's trainer service, LocalTrainer on the same store with its own runs directory)."""
    from services.common.store import Store
    from vjepa_robot.trainer_port import HttpTrainer, LocalTrainer
    from vjepa_robot_lab.records.context import TrainerContext
    from vjepa_robot_lab.records.runs import RunStore

    runs = RunStore(tmp_path_factory.mktemp("local-runs"))
    ctx = TrainerContext(store=Store(stack["store"]), runs=runs, encoder_url=stack["encoder"])
    return HttpTrainer(stack["trainer"], progress=False), LocalTrainer(ctx, progress=False)


def test_both_adapters_train_and_evaluate_with_the_same_types_and_results(two_trainers, dataset_64):
    http, local = two_trainers
    req = TrainBCRequest(dataset=dataset_64, features="state", epochs=2, batch_size=8, seed=1)
    records = {}
    for name, trainer in (("http", http), ("local", local)):
        created = trainer.train(req)
        assert type(created) is RunCreated and created.study_id is None
        record = trainer.wait(created.run_id)
        assert type(record) is RunRecord and record.status.value == "succeeded", record.error
        records[name] = record
    a, b = records["http"], records["local"]
    assert a.config == b.config and a.lineage == b.lineage  # the same request became the same run
    assert a.metrics.epoch == b.metrics.epoch == 2
    from vjepa_robot_lab.policies.loaded import LoadedPolicy
    from vjepa_robot_lab.records.run_kinds import run_kind

    policy = run_kind("bc").network(local.ctx.runs.path(b.run_id))  # the kind's loader: a typed LoadedPolicy
    assert isinstance(policy, LoadedPolicy) and policy.readout == "mean" and policy.features == "state"
    assert policy(np.zeros((2, policy.dim), np.float32)).shape == (2, 2)

    baseline = BaselineEvalRequest(policy="jacobian", episodes=2, steps=20, parallel_envs=2, gif_episodes=0)
    results = {}
    for name, trainer in (("http", http), ("local", local)):
        run_id, result = trainer.evaluate_baseline(baseline)
        assert type(result) is EvalResult and result.run_id == run_id and result.status.value == "succeeded"
        results[name] = result
    assert results["http"].success_rate == results["local"].success_rate  # same seeds, same episodes
    assert [e.return_ for e in results["http"].episodes] == [e.return_ for e in results["local"].episodes]


def test_both_adapters_refuse_an_unknown_dataset(two_trainers):
    from vjepa_robot.trainer_port import Refused
    from vjepa_robot_client.errors import NotFound

    http, local = two_trainers
    req = TrainBCRequest(dataset="no-such-ds", features="state")
    with pytest.raises(NotFound, match="no-such-ds"):  # the service's 404, as the SDK raises it
        http.train(req)
    with pytest.raises(Refused, match="no-such-ds"):  # the job layer's 404, as the port raises it
        local.train(req)


def test_train_commands_come_from_the_registry_and_the_request_models():
    """Every trained kind with a command has `train <name>`; each option's default is the request model's (or None:
    sent only when given), its help carries the field's description."""
    from vjepa_robot import cli
    from vjepa_robot.train_commands import default_of
    from vjepa_robot_lab.records.run_kinds import trained_kinds

    kinds = [k for k in trained_kinds() if k.command is not None]
    assert {k.name for k in kinds} == set(cli.TRAIN_COMMANDS) >= {"bc", "sac"}
    for kind in kinds:
        params = inspect.signature(cli.TRAIN_COMMANDS[kind.name]).parameters
        for name in kind.command.options:
            field, option = kind.request.model_fields[name], params[name].default
            if name in kind.command.always:
                assert option.default == default_of(field), (kind.name, name)
            else:
                assert option.default is None, (kind.name, name)  # left out: the request's default fills it
            if field.description:
                assert field.description.rstrip(".") in option.help, (kind.name, name)
            assert option.param_decls == (f"--{name.replace('_', '-')}",)
        assert set(cli.SHARED_TRAIN_OPTIONS) <= set(params)


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_falsy_option_reaches_the_request(tmp_path, value):
    """`--parallel-envs 0` is sent (and refused by the request), never silently replaced by the default."""
    from typer.testing import CliRunner

    from vjepa_robot import cli

    res = CliRunner().invoke(cli.app, ["train", "sac", "--parallel-envs", value, "--store", str(tmp_path / "s")])
    assert res.exit_code == 2, res.output
    assert f"--parallel-envs {value} is out of range" in res.output
    assert not (tmp_path / "s").exists()
