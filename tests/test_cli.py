"""The CLI a researcher reads (vjepa_robot/cli.py), through typer's CliRunner on real run records on disk:
`runs list`, `runs show`, `report` (keeps its notes, never creates a store), `eval` of an unknown run, and
one-line errors for expected failures."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from services.trainer.report import save_notes
from services.trainer.runs import RunStore
from vjepa_robot import cli

TINY = {"features": "vjepa2", "dim": 96, "encoder_id": "abc123", "model": "preset:tiny", "image_size": 128}


@pytest.fixture()
def runs_dir(tmp_path):
    """A runs directory holding a BC run on the tiny encoder (evaluated: 4/20) and an unevaluated state BC run."""
    root = tmp_path / "store" / "runs"
    runs = RunStore(root)
    h = runs.create("bc", {"dataset": "demo-ds", "features": "vjepa2", "epochs": 5, "seed": 0}, run_id="bc-tiny")
    h.update(status="succeeded", metrics={"epoch": 5, "val_loss": 0.2, "best_val_loss": 0.1, "selected_epoch": 2,
                                          "train_loss_curve": [0.3, 0.2, 0.1, 0.05, 0.01],
                                          "val_loss_curve": [0.15, 0.1, 0.12, 0.15, 0.2], "features_lineage": TINY})
    eid = h.add_evaluation({"task": "easy", "steps": 200, "seed": 0, "episodes": 20, "image_size": 128})
    eps = [{"seed": 10**9 + i, "success": i < 4, "return": 50.0 if i < 4 else 5.0} for i in range(20)]
    h.update_evaluation(eid, status="succeeded", task="easy", success_rate=0.2, mean_return=14.0, episodes=eps,
                        success_ci95=[0.0806, 0.416])
    s = runs.create("bc", {"dataset": "demo-ds", "features": "state", "epochs": 5, "seed": 3}, run_id="bc-state")
    s.update(status="succeeded", metrics={"epoch": 5, "val_loss": 0.01, "best_val_loss": 0.009, "selected_epoch": 4,
                                          "features_lineage": {"features": "state", "dim": 8}})
    return root


def _invoke(*args):
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def test_runs_list_names_the_encoder_and_results(runs_dir):
    res = _invoke("runs", "list", "--runs-dir", runs_dir)
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())  # rich wraps cells
    assert "bc-tiny" in out and "bc-state" in out and "random-init" in out and "plumbing" in out, res.output
    assert "20% [8, 42]" in out and "demo-ds" in out
    listed = json.loads(_invoke("runs", "list", "--runs-dir", runs_dir, "--json").output)
    assert {r["run_id"] for r in listed} == {"bc-tiny", "bc-state"}


def test_runs_show(runs_dir):
    res = _invoke("runs", "show", "bc-tiny", "--runs-dir", runs_dir)
    assert res.exit_code == 0, res.output
    assert "random-init" in res.output and "selected_epoch" in res.output and "success 20% [8, 42]" in res.output
    record = json.loads(_invoke("runs", "show", "bc-tiny", "--runs-dir", runs_dir, "--json").output)
    assert record["run_id"] == "bc-tiny" and record["evaluations"][0]["success_rate"] == 0.2
    missing = _invoke("runs", "show", "nosuchrun", "--runs-dir", runs_dir)
    assert missing.exit_code == 2 and "vjepa-robot runs list" in missing.output


def test_report_keeps_its_notes_and_marks_the_stand_in(runs_dir, tmp_path):
    save_notes(runs_dir, {"machine": "2 shared cores", "encoder": "preset:tiny, random-init"})
    for _ in range(2):  # a re-run keeps the notes
        res = _invoke("report", "--runs-dir", runs_dir, "--out", tmp_path / "rep")
        assert res.exit_code == 0, res.output
        text = (tmp_path / "rep" / "README.md").read_text()
        assert "- **machine**: 2 shared cores" in text and "plumbing check" in text.splitlines()[0]
    assert "plumbing check" in res.output and "20% [8, 42]" in res.output  # console summary, rounded and marked


def test_report_never_creates_a_store(tmp_path):
    store = tmp_path / "nothing-here"
    res = _invoke("report", "--store", store, "--out", tmp_path / "rep")
    assert res.exit_code == 2 and "no runs" in res.output
    assert not store.exists() and not (tmp_path / "rep").exists()


def test_eval_of_an_unknown_run_points_at_the_cli(tmp_path):
    res = _invoke("eval", "nosuchrun", "--store", tmp_path / "store", "--episodes", 1)
    assert res.exit_code == 2
    assert "vjepa-robot runs list" in res.output and "GET /runs" not in res.output


def test_expected_failures_are_one_line(monkeypatch, capsys):
    from vjepa_robot_client.errors import ConnectionFailed

    wrapped = RuntimeError("feature source failed during a live rollout")
    wrapped.__cause__ = ConnectionFailed("cannot reach http://127.0.0.1:1/encode")
    assert "unreachable" in cli.expected_failure(wrapped)
    assert "cannot load" in cli.expected_failure(OSError("cannot load V-JEPA 2 weights from 'x': offline\nmore"))
    assert cli.expected_failure(ZeroDivisionError()) is None
    from vjepa_robot_client.errors import NotFound

    msg = cli.expected_failure(NotFound("unknown run 'x': list runs with GET /runs"))
    assert "vjepa-robot runs list" in msg and "GET /runs" not in msg

    def boom():
        raise wrapped

    monkeypatch.setattr(cli, "app", boom)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 1 and err.count("\n") == 1 and "--verbose" in err and "Traceback" not in err


def test_train_bc_select_reaches_the_request_and_a_bad_choice_is_one_line(tmp_path):
    """`--select` is BC's checkpoint rule (best_val | last): a value outside it is refused before any work."""
    res = CliRunner().invoke(cli.app, ["train", "bc", "some-dataset", "--features", "state", "--select", "nope",
                                       "--store", str(tmp_path / "store")])
    assert res.exit_code != 0 and "select" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "store").exists()  # refused at the edge: nothing created
