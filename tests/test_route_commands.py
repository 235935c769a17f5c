"""Commands that mirror a trainer route are generated from one table (vjepa_robot/route_commands.py) and sent through
the Trainer port's one generic method, `send`: the SDK against the real trainer service on loopback, or the same
SDK call answered by the trainer's own FastAPI app in this process. Both answer alike, errors included (the
route's 404 as the SDK's NotFound: one line, exit 2), and a command's parameters are its SDK builder's."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from vjepa_robot_client import _trainer_calls as api
from vjepa_robot_client.contract import StudyRecord
from vjepa_robot_client.errors import NotFound


def _write_study(runs_root, study_id: str) -> list[str]:
    """A two-seed BC study on state features, written as the job layer writes one (run records + study record)."""
    from vjepa_robot_lab.records.runs import RunStore

    runs, run_ids = RunStore(runs_root), []
    for k, seed in enumerate((1, 3)):
        run_id = f"{study_id.removeprefix('study-')}-s{seed}".replace("_", "-")
        config = {"dataset": "demo-ds", "features": "state", "epochs": 5, "seed": seed, "study_id": study_id}
        h = runs.create("bc", config, run_id=f"bc-{run_id}")
        h.update(
            status="succeeded",
            metrics={
                "epoch": 5,
                "val_loss": 0.01 * (k + 1),
                "selected_epoch": 4,
                "features_lineage": {"features": "state", "dim": 8},
            },
        )
        run_ids.append(f"bc-{run_id}")
    runs.create_study("bc", {"dataset": "demo-ds", "features": "state"}, [1, 3], run_ids, study_id)
    return run_ids


def _invoke(*args):
    from vjepa_robot import cli

    return CliRunner().invoke(cli.app, [str(a) for a in args])


def test_route_commands_take_their_parameters_from_the_sdk_builders():
    from vjepa_robot import cli
    from vjepa_robot.route_commands import ROUTE_COMMANDS

    assert {row.path for row in ROUTE_COMMANDS} == set(cli.ROUTE_COMMANDS) >= {("studies", "list"), ("studies", "show")}
    for row in ROUTE_COMMANDS:
        params = inspect.signature(cli.ROUTE_COMMANDS[row.path]).parameters
        builder = [p for p in inspect.signature(row.builder).parameters.values() if p.kind != p.VAR_KEYWORD]
        assert list(params)[: len(builder)] == [p.name for p in builder]  # the builder's, in its order
        assert set(params) - {p.name for p in builder} == set(cli.SHARED_ROUTE_OPTIONS)
    show = inspect.signature(cli.ROUTE_COMMANDS[("studies", "show")]).parameters["study_id"].default
    assert show.default is ... and "studies list" in show.help  # no default: a required argument, with its help


def test_studies_list_and_show_in_process(tmp_path):
    store = tmp_path / "store"
    run_ids = _write_study(store / "runs", "study-0a1b")
    res = _invoke("studies", "list", "--store", store)
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "study-0a1b" in out and "1,3" in out and "over 2 seed(s)" in out, res.output
    res = _invoke("studies", "show", "study-0a1b", "--store", store)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("study study-0a1b (bc, seeds [1, 3]): BC on state"), res.output
    assert all(f"{r} succeeded" in res.output for r in run_ids) and "val_loss: 0.015" in res.output
    answer = _invoke("studies", "show", "study-0a1b", "--store", store, "--json").output
    as_json = StudyRecord.model_validate_json(answer)
    assert as_json.run_ids == run_ids and as_json.final.n == 2
    missing = _invoke("studies", "show", "study-ffff", "--store", store)
    assert missing.exit_code == 2 and "unknown study 'study-ffff'" in missing.output
    assert missing.output.count("\n") == 1 and "Traceback" not in missing.output
    bad = _invoke("studies", "show", "Study/x", "--store", store)  # the builder's own check: no service asked
    assert bad.exit_code == 2 and "invalid run id" in bad.output


@pytest.mark.e2e
def test_both_adapters_send_the_same_call_with_the_same_answer(stack):
    """The same SDK Call through the real service and through the trainer's app in this process."""
    from conftest import unique_name

    from services.common.store import Store
    from vjepa_robot.trainer_port import HttpTrainer, LocalTrainer
    from vjepa_robot_lab.records.context import TrainerContext
    from vjepa_robot_lab.records.runs import RunStore

    study_id = "study-" + unique_name("x").split("-")[1]  # hex, as the job layer names them
    _write_study(stack["runs"], study_id)
    http = HttpTrainer(stack["trainer"], progress=False)
    ctx = TrainerContext(store=Store(stack["store"]), runs=RunStore(stack["runs"]), encoder_url=stack["encoder"])
    local = LocalTrainer(ctx, progress=False)
    a, b = http.send(api.get_study(study_id)), local.send(api.get_study(study_id))
    assert type(a) is type(b) is StudyRecord and a == b
    assert study_id in {s.study_id for s in local.send(api.studies())}
    errors = []
    for trainer in (http, local):
        with pytest.raises(NotFound) as exc:
            trainer.send(api.get_study("study-ffff"))
        errors.append(str(exc.value))
    assert errors[0] == errors[1] and "unknown study" in errors[0]


@pytest.mark.e2e
def test_studies_show_prints_the_same_through_the_service_and_in_process(stack):
    from conftest import unique_name

    study_id = "study-" + unique_name("x").split("-")[1]
    _write_study(stack["runs"], study_id)
    local = ["--store", stack["store"], "--runs-dir", stack["runs"]]
    for args in (["studies", "show", study_id], ["studies", "show", "study-ffff"]):
        via_service = _invoke(*args, "--trainer-url", stack["trainer"])
        in_process = _invoke(*args, *local)
        assert via_service.exit_code == in_process.exit_code and via_service.output == in_process.output
    assert via_service.exit_code == 2 and "unknown study" in via_service.output
