"""The CLI a researcher reads (vjepa_robot/cli.py), through typer's CliRunner on real run records on disk:
`runs list`, `runs show`, `report` (keeps its notes, never creates a store), `eval` of an unknown run, and
one-line errors for expected failures: the global --verbose flag (before and after the command), no network call
unless a command needs the hub, one plain line per validation failure (naming the option, the value and the
range), the demo refusing bad options before any service starts, a "waiting for" line while the SDK retries, and
the same exit code for the same mistake in local and --trainer-url modes (a real trainer service on loopback)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vjepa_robot import cli
from vjepa_robot_lab.records.runs import RunStore
from vjepa_robot_lab.report import save_notes

TINY = {"features": "vjepa2", "dim": 96, "encoder_id": "abc123", "model": "preset:tiny", "image_size": 128}


@pytest.fixture()
def runs_dir(tmp_path):
    """A runs directory holding a BC run on the tiny encoder (evaluated: 4/20) and an unevaluated state BC run."""
    root = tmp_path / "store" / "runs"
    runs = RunStore(root)
    h = runs.create("bc", {"dataset": "demo-ds", "features": "vjepa2", "epochs": 5, "seed": 0}, run_id="bc-tiny")
    h.update(
        status="succeeded",
        metrics={
            "epoch": 5,
            "val_loss": 0.2,
            "best_val_loss": 0.1,
            "selected_epoch": 2,
            "train_loss_curve": [0.3, 0.2, 0.1, 0.05, 0.01],
            "val_loss_curve": [0.15, 0.1, 0.12, 0.15, 0.2],
            "features_lineage": TINY,
        },
    )
    eid = h.add_evaluation({"task": "easy", "steps": 200, "seed": 0, "episodes": 20, "image_size": 128})
    eps = [{"seed": 10**9 + i, "success": i < 4, "return": 50.0 if i < 4 else 5.0} for i in range(20)]
    h.update_evaluation(
        eid,
        status="succeeded",
        task="easy",
        success_rate=0.2,
        mean_return=14.0,
        episodes=eps,
        success_ci95=[0.0806, 0.416],
    )
    s = runs.create("bc", {"dataset": "demo-ds", "features": "state", "epochs": 5, "seed": 3}, run_id="bc-state")
    s.update(
        status="succeeded",
        metrics={
            "epoch": 5,
            "val_loss": 0.01,
            "best_val_loss": 0.009,
            "selected_epoch": 4,
            "features_lineage": {"features": "state", "dim": 8},
        },
    )
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

    monkeypatch.setattr(cli, "app", lambda **kw: boom())
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    err = capsys.readouterr().err
    assert exc.value.code == 3 and err.count("\n") == 1 and "--verbose" in err and "Traceback" not in err


def test_train_bc_select_reaches_the_request_and_a_bad_choice_is_one_line(tmp_path):
    """`--select` is BC's checkpoint rule (best_val | last): a value outside it is refused before any work."""
    res = CliRunner().invoke(
        cli.app,
        ["train", "bc", "some-dataset", "--features", "state", "--select", "nope", "--store", str(tmp_path / "store")],
    )
    assert res.exit_code != 0 and "select" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "store").exists()  # refused at the edge: nothing created


# ---------------------------------------------------------------------------------------------------------------
# global options, the hub, one-line validation errors, exit codes
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def quiet_verbose():
    cli._VERBOSE["on"] = False
    yield
    cli._VERBOSE["on"] = False


@pytest.fixture()
def dead_url():
    """A loopback URL where nothing listens (bound, then closed: connections are refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_verbose_is_a_global_option_before_the_command(runs_dir, quiet_verbose):
    res = _invoke("--verbose", "runs", "list", "--runs-dir", runs_dir)
    assert res.exit_code == 0, res.output
    assert cli._VERBOSE["on"] is True
    top = _invoke("--help")
    assert "--verbose" in top.output and "--timeout" not in top.output and "Exit codes" in top.output


def test_verbose_shows_the_full_trace_of_an_expected_failure(
    tmp_path, dead_url, quiet_verbose, quick_retries, capsys, monkeypatch
):
    """Without the flag: one line and exit 3 (unreachable). With it, after the command: the whole traceback."""
    import sys

    args = ["eval", "jacobian", "--episodes", "1", "--trainer-url", dead_url]
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 3, err
    assert err.startswith(f"waiting for the trainer at {dead_url}") and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: a service is unreachable") and "--verbose" in err

    with pytest.raises(SystemExit) as exc:  # before the command: the trace, and the same exit code (3)
        cli.main(["--verbose", *args])
    assert exc.value.code == 3 and "ConnectionFailed" in capsys.readouterr().err
    cli._VERBOSE["on"] = False
    # after the command, read from sys.argv as the console script reads it (in process: the retries are quick)
    monkeypatch.setattr(sys, "argv", ["vjepa-robot", *args, "--verbose"])
    monkeypatch.setenv("VJEPA_ROBOT_STORE", str(tmp_path / "s"))
    with pytest.raises(SystemExit) as exc:
        cli.main()
    stderr = capsys.readouterr().err
    assert exc.value.code == 3 and "Traceback (most recent call last)" in stderr, stderr[-2000:]
    assert "ConnectionFailed" in stderr and "No such option" not in stderr


def test_runs_list_opens_no_connection_to_the_model_hub(runs_dir, monkeypatch):
    """The hub host is a loopback port this test listens on: `runs list` must not connect to it, while the
    check `serve encoder` uses for a hub checkpoint does (so the listener would see a connection)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def arrived() -> bool:
        try:
            listener.accept()[0].close()
            return True
        except TimeoutError:
            return False

    try:
        assert _invoke("runs", "list", "--runs-dir", runs_dir).exit_code == 0
        assert not arrived(), "`runs list` connected to the model hub"
        assert cli._hub_reachable(timeout=2.0) and arrived()  # the control: the listener does see a connection
    finally:
        listener.close()


@pytest.mark.parametrize(
    "args, line",
    [
        (["eval", "jacobian", "--episodes", "-1"], "--episodes -1 is out of range: it must be between 1 and 10000"),
        (["eval", "jacobian", "--task", "medium"], "--task 'medium' is not one of the choices: easy, hard, walker-"),
        (["eval", "nobody"], None),  # not a baseline: an unknown run (checked below)
        (
            ["train", "bc", "ds", "--features", "depth"],
            "--features 'depth' is not one of the choices: vjepa2, state, random or pixels",
        ),
        (["train", "bc", "ds", "--epochs", "0"], "--epochs 0 is out of range: it must be between 1 and 10000"),
        (["train", "bc", "ds", "--lr", "0"], "--lr 0.0 is out of range: it must be > 0.0 and <= 1.0"),
        (["train", "bc", "ds", "--select", "nope"], "--select 'nope' is not one of the choices: best_val or last"),
        (
            ["train", "sac", "--parallel-envs", "999"],
            "--parallel-envs 999 is out of range: it must be between 1 and 256",
        ),
        (  # a falsy value is sent, never dropped for the default (the generated commands drop only None)
            ["train", "sac", "--parallel-envs", "0"],
            "--parallel-envs 0 is out of range: it must be between 1 and 256",
        ),
        (
            ["train", "sac", "--networks", "huge"],
            "--networks 'huge' is not one of the choices: findings, ln, bro or ln-raw",
        ),
        (
            ["datasets", "create", "x", "--episodes", "0"],
            "--episodes 0 is out of range: it must be between 1 and 100000",
        ),
        (
            ["datasets", "create", "x", "--expert", "nobody"],
            "--expert: unknown expert 'nobody': choose one of jacobian, p-controller, random, shipped (the task's "
            "shipped state-SAC expert) or run:RUN_ID",
        ),
        (["demo", "--episodes", "-5"], "--episodes -5 is out of range: it must be between 1 and 100000"),
        (["demo", "--eval-episodes", "0"], "--eval-episodes 0 is out of range: it must be between 1 and 10000"),
        (["demo", "--seeds", "0"], "--seeds 0 is out of range: it must be between 1 and 32"),
        (["demo", "--epochs", "-1"], "--epochs -1 is out of range: it must be between 1 and 10000"),
    ],
)
def test_validation_failures_are_one_plain_line(tmp_path, args, line):
    """One line, no pydantic text or URL, exit 2, and nothing created (the demo starts no service: the check
    runs before Services, so it also returns in well under the services' start time)."""
    import time

    t0 = time.monotonic()
    res = _invoke(*args, "--store", tmp_path / "store", *(["--workdir", tmp_path / "w"] if args[0] == "demo" else []))
    assert res.exit_code == 2, res.output
    text = res.output.strip()
    assert len(text.splitlines()) == 1 and "pydantic" not in text and "Input should" not in text, text
    if line:
        assert text == f"error: {line}" or text.startswith(f"error: {line}"), text
        assert not (tmp_path / "store").exists() and not (tmp_path / "w").exists()  # refused before any work
    else:  # looked up in the (local) run store, which opening creates
        assert "unknown run" in text and "vjepa-robot runs list" in text, text
    if args[0] == "demo":
        assert time.monotonic() - t0 < 10


def test_a_service_422_becomes_the_same_line():
    """The one formatter also reads a service's 422 answer: FastAPI's {loc, msg, input, ctx} list, and the
    trainer's "field: msg" string."""
    from vjepa_robot.errors import invalid_input
    from vjepa_robot_client.contract import EvalRequest
    from vjepa_robot_client.errors import BadRequest

    fastapi = [
        {
            "type": "greater_than_equal",
            "loc": ["body", "episodes"],
            "msg": "Input should be greater than or equal to 1",
            "input": -1,
            "ctx": {"ge": 1},
        }
    ]
    assert invalid_input(fastapi, model=EvalRequest) == "--episodes -1 is out of range: it must be between 1 and 10000"
    exc = BadRequest(
        "422 POST /eval/x: episodes: Input should be greater than or equal to 1",
        status_code=422,
        detail="episodes: Input should be greater than or equal to 1",
    )
    msg, code = cli.classify_failure(exc)
    assert code == 2 and msg == "--episodes: it must be greater than or equal to 1"


def test_waiting_line_then_unreachable_exit_code(dead_url, quiet_verbose, quick_retries, capsys):
    """`datasets encode` with no encoder: the waiting line comes first, then (after the retries) one line, exit 3."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["datasets", "encode", "some-ds", "--encoder-url", dead_url])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exc.value.code == 3, err
    assert lines[0].startswith(f"waiting for the encoder at {dead_url}") and "serve encoder" in lines[0]
    assert lines[-1].startswith("error: ") and "unreachable" in lines[-1] and len(lines) == 2


@pytest.fixture(scope="module")
def trainer_url(tmp_path_factory):
    """A real trainer service on loopback (its encoder URL points nowhere: these tests never need it)."""
    from _servers import serve_app

    from services.trainer.app import TrainerSettings, create_app

    root = tmp_path_factory.mktemp("cli-trainer")
    app = create_app(
        TrainerSettings(store=str(root / "store"), runs=str(root / "runs"), encoder_url="http://127.0.0.1:9")
    )
    with serve_app(app) as url:
        yield url


@pytest.mark.parametrize(
    "args",
    [
        ["train", "bc", "no-such-dataset", "--features", "state"],  # refused by the trainer's jobs (404)
        ["eval", "no-such-run", "--episodes", "1"],  # unknown run (404)
        ["eval", "jacobian", "--episodes", "-1"],  # validation (before any request)
        ["train", "bc", "ds", "--features", "depth"],
    ],
)
def test_the_same_mistake_has_the_same_exit_code_in_both_modes(args, tmp_path, trainer_url, quiet_verbose, capsys):
    codes = {}
    for mode, extra in (("local", ["--store", str(tmp_path / "store")]), ("service", ["--trainer-url", trainer_url])):
        with pytest.raises(SystemExit) as exc:
            cli.main([*args, *extra])
        err = capsys.readouterr().err.strip()
        codes[mode] = exc.value.code
        assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, (mode, err)
    assert codes == {"local": 2, "service": 2}, codes


def test_demo_stage_times_are_spans_of_their_jobs():
    """The demo's stage times: each stage from its first job's start to its last job's end (stages overlap)."""
    from vjepa_robot.demo import PRESETS, Job, Watch, check_config, fmt_s, stage_summary

    for cfg in PRESETS.values():
        check_config(cfg)  # the presets themselves pass the services' request models
    w = Watch(console=None, t0=0.0)
    for label, stage, start, end in [
        ("encode", "encode", 10.0, 70.0),
        ("BC state", "BC", 12.0, 40.0),
        ("BC vjepa2", "BC", 70.0, 100.0),
        ("eval", "evaluation", 41.0, 160.0),
    ]:
        w.done.append(Job(label, stage, poll=lambda: None, started=start, ended=end))
    spans = w.spans()
    assert spans == {"encode": 60.0, "BC": 88.0, "evaluation": 119.0}
    assert (
        stage_summary({"dataset": 30.0, **spans})
        == "dataset 30 s, encode 1 min 00 s, BC 1 min 28 s, evaluation 1 min 59 s"
    )
    assert fmt_s(3600 + 5) == "60 min 05 s"


@pytest.mark.parametrize("command", [("eval",), ("datasets", "create")])
def test_task_help_names_every_task_of_the_contract(command):
    """`--task`'s help is generated from the contract (Task, TASK_ALIASES): it names every task and alias, no other."""
    import re

    from vjepa_robot_client.contract import TASK_ALIASES, TASKS

    res = CliRunner().invoke(cli.app, [*command, "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.replace("│", " ").split())  # rich wraps the help in a box
    named = out.split("dm_control task: ", 1)[1].split(" (settings: docs/tasks.md)")[0]
    words = set(re.findall(r"[a-z][a-z-]*[a-z]", named)) - {"reacher", "alias"}  # "(reacher's; alias ...)"
    assert words == {*TASKS, *TASK_ALIASES}, named
