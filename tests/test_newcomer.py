"""A newcomer's second hour (issue 31): pictures with nothing hidden, output that fits a terminal, a demo that
keeps printing when its output goes to a file, and CLI output a person can read.

The pictures are built from run records shaped like the quick demo's (10 evaluation targets at 0.054-0.071 and
0.158-0.196 m, so the middle bin is empty; zero-return episodes of three policies at the same targets; two BC runs
keeping epoch 1 at nearly the same loss) and checked as matplotlib lays them out."""

from __future__ import annotations

import numpy as np
import pytest

RADII = [0.054, 0.058, 0.061, 0.066, 0.071, 0.158, 0.166, 0.175, 0.188, 0.196]
TINY = {"features": "vjepa2", "dim": 96, "encoder_id": "abc123", "model": "preset:tiny", "random_init": True}


def _eval(succ: list[bool], rets: list[float]) -> dict:
    eps = [
        {"seed": 10**9 + i, "success": s, "return": r, "target_radius": RADII[i], "target_angle": 0.3 * i}
        for i, (s, r) in enumerate(zip(succ, rets))
    ]
    return {
        "status": "succeeded",
        "eval_id": 0,
        "task": "easy",
        "success_rate": sum(succ) / len(succ),
        "mean_return": float(np.mean(rets)),
        "episodes": eps,
        "request": {"task": "easy", "steps": 100, "seed": 0, "episodes": len(succ), "image_size": 128},
    }


def _baseline(run_id: str, policy: str, succ, rets) -> dict:
    return {
        "run_id": run_id,
        "kind": "baseline",
        "status": "succeeded",
        "config": {"policy": policy},
        "metrics": {},
        "evaluations": [_eval(succ, rets)],
    }


def _bc(run_id: str, feat: str, succ, rets, train, val, kept: int, lineage=None) -> dict:
    return {
        "run_id": run_id,
        "kind": "bc",
        "status": "succeeded",
        "config": {"dataset": "demo-easy-40x100-s0", "features": feat, "seed": 0},
        "metrics": {
            "train_loss_curve": train,
            "val_loss_curve": val,
            "epoch": len(train),
            "select": "best_val",
            "best_epoch": kept,
            "selected_epoch": kept,
            "features_lineage": lineage or {"features": feat, "dim": 8},
        },
        "evaluations": [_eval(succ, rets)],
    }


def demo_like_runs():
    from vjepa_robot_lab.report.rows import as_records

    t, f = True, False
    e = np.arange(1, 101)
    return as_records(
        [
            _baseline("b-jac", "jacobian", [t] * 10, [60, 62, 58, 55, 61, 40, 42, 38, 45, 41]),
            _baseline("b-p", "p-controller", [t, t, f, t, f, f, f, f, f, f], [30, 28, 0, 25, 0, 0, 0, 0, 0, 0]),
            _baseline("b-rand", "random", [f] * 10, [0] * 10),
            _bc("bc-state", "state", [t, t] + [f] * 7 + [t], [20, 18, 0, 2, 0, 0, 1, 0, 0, 12],
                list(0.05 * e**-0.9), list(0.03 + 0.0002 * (e - 30) ** 2 / 30), 30),
            # two runs keep epoch 1 at losses 8% apart: one spot on a log axis
            _bc("bc-random", "random", [f] * 10, [0] * 10, list(0.08 * e**-0.5), list(0.060 + 0.0004 * e), 1),
            _bc("bc-vjepa2", "vjepa2", [f] * 7 + [t, f, f], [0] * 7 + [9, 0, 0],
                list(0.08 * e**-0.4), list(0.065 + 0.0003 * e), 1, TINY),
        ]
    )  # fmt: skip


def _legends_outside(fig) -> None:
    """Every legend of the figure lies outside every axes: it covers no bar, point, label or curve."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend() is not None)]
    assert legends, "the figure has no legend to check"
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for a in fig.axes:
            assert not box.overlaps(a.get_window_extent(renderer)), (leg.get_texts()[0].get_text(), a.get_title())


def test_every_legend_sits_outside_the_data():
    from vjepa_robot_lab.report import condition_rows
    from vjepa_robot_lab.report.plots import bc_loss_figure, distance_figure, sac_curves_figure, success_figure

    runs = demo_like_runs()
    groups = condition_rows(runs)
    _legends_outside(success_figure(groups))
    _legends_outside(distance_figure(groups))
    _legends_outside(bc_loss_figure([r for r in runs if r.kind == "bc"]))
    from vjepa_robot_lab.report.rows import as_records

    sac = {
        "run_id": "sac-1",
        "kind": "sac",
        "status": "succeeded",
        "config": {"features": "state", "seed": 0},
        "metrics": {
            "features_lineage": {"features": "state", "dim": 8},
            "env_steps": 1000,
            "curve": [
                {"env_steps": s, "mean_return": s / 10, "std_return": 5.0, "success_rate": s / 2000, "eval_episodes": 5}
                for s in (200, 600, 1000)
            ],
        },
        "evaluations": [],
    }
    _legends_outside(sac_curves_figure(as_records([sac])))


def test_an_empty_distance_bin_says_n_0_and_shared_points_all_show():
    from vjepa_robot_lab.evaluation.evaluate import TARGET_BINS
    from vjepa_robot_lab.report import condition_rows
    from vjepa_robot_lab.report.plots import distance_figure

    fig = distance_figure(condition_rows(demo_like_runs()))
    bars, scatter = fig.axes
    middle = list(TARGET_BINS).index("middle")
    texts = [t for t in bars.texts if "n=0" in t.get_text()]
    assert any(abs(t.get_position()[0] - middle) < 0.45 for t in texts), [t.get_text() for t in bars.texts]
    # three policies with a return of 0 at every target: each episode shows as a point of its own
    from vjepa_robot_lab.report.rows import as_records

    f = False
    zeros = as_records(
        [
            _baseline("b-rand", "random", [f] * 10, [0] * 10),
            _bc("bc-random", "random", [f] * 10, [0] * 10, [0.1, 0.05], [0.1, 0.08], 2),
            _bc("bc-vjepa2", "vjepa2", [f] * 10, [0] * 10, [0.1, 0.05], [0.1, 0.09], 2, TINY),
        ]
    )
    fig = distance_figure(condition_rows(zeros))
    scatter = fig.axes[1]
    fig.canvas.draw()
    pixels = [scatter.transData.transform(np.asarray(c.get_offsets())) for c in scatter.collections]
    assert len(pixels) == 3 and all(len(p) == len(RADII) for p in pixels)
    for a, b in zip(pixels, pixels[1:]):  # the same episode index is the same target in each condition
        assert np.all(np.abs(a[:, 0] - b[:, 0]) >= 3.0), (a[:, 0], b[:, 0])  # at least 3 px apart on the page
    assert len({c.get_paths()[0].vertices.shape for c in scatter.collections}) > 1  # and marker shapes differ


def test_kept_epoch_markers_that_look_like_one_spot_are_set_apart():
    from vjepa_robot_lab.report.plots import kept_markers

    runs = [r for r in demo_like_runs() if r.kind == "bc"]
    marks = kept_markers(runs)
    one, two = marks[1], marks[2]  # epoch 1 at val 0.0604 and 0.0653: not equal, but one spot on the page
    assert one[0] == two[0] == 1 and one[1] != two[1]
    assert abs(one[3] - two[3]) >= 8 and one[2] != two[2]
    assert marks[0][3] == 0.0  # the run alone at its epoch stays on its epoch


def test_gif_caption_lines_fit_their_panel_and_keep_their_spaces():
    from PIL import Image, ImageDraw

    from vjepa_robot_lab.evaluation.evaluate import GIF_SIZE, Panel, _font, caption_lines, wrap_label

    draw, font = ImageDraw.Draw(Image.new("RGB", (1, 1))), _font()
    worst = Panel("policy on vjepa2 (tiny random-init stand-in)", 1_000_000_123, [None], [1000.0], False, [0.95])
    lines = caption_lines(worst, 0, False, steps=1000, per_frame=1000.0) + caption_lines(
        worst, 0, True, steps=1000, per_frame=1000.0
    )
    assert all(draw.textlength(s, font=font) <= GIF_SIZE - 4 for s in lines), lines
    assert " ".join(wrap_label(worst.label, GIF_SIZE - 6)) == worst.label
    # a space is wide enough to read as one (Pillow's built-in font drew it about 1 px wide: "nosuccess")
    assert draw.textlength("no success", font=font) - draw.textlength("nosuccess", font=font) >= 3


# ----------------------------------------------------------------------------------------------------------------
# The demo's console: 80 columns, and a line of progress at least every 30 s in a log file
# ----------------------------------------------------------------------------------------------------------------


def _console80():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), width=80, force_terminal=False, color_system=None)


def _words_whole(text: str, label: str) -> None:
    """`label` appears whole in `text`, wrapped (if at all) only between words: a cell that folds a label cuts
    words ("random-in" / "it")."""
    assert " ".join(label.split()) in " ".join(text.split()), (label, text)


def test_demo_headers_fit_80_columns_uncut():
    from vjepa_robot.demo import HEADERS, RULE_WIDTH

    for header in HEADERS.values():
        con = _console80()
        con.rule(header)
        out = con.file.getvalue()
        assert all(len(line) <= RULE_WIDTH for line in out.splitlines())
        assert header in out, out  # whole, not cut with an ellipsis


def test_probe_tables_fit_80_columns_and_cut_no_label_mid_word():
    from vjepa_robot.probes import print_probes
    from vjepa_robot_lab.perception.probe import probe_arrays
    from vjepa_robot_lab.report.rows import probe_feature_label

    rng = np.random.default_rng(0)
    episode = np.repeat(np.arange(6), 10)
    targets = {t: rng.normal(size=(60, 2)) for t in ("finger_xy", "target_xy", "to_target")}
    results = []
    for features, dim, lineage in (
        ("vjepa2", 96, {"features": "vjepa2", "model": "preset:tiny", "dim": 96, "random_init": True}),
        ("state", 8, {"features": "state"}),
        ("random", 96, {"features": "random"}),
    ):
        r = probe_arrays(rng.normal(size=(60, dim)), targets, episode, folds=3, mlp=True, mlp_steps=5)
        results.append({**r, "features": features, "dataset": "demo-easy-40x100-s0", "lineage": lineage})
    results[0]["attentive"] = {"4": {t: {"r2": 0.5, "r2_sd": 0.1} for t in targets}}
    con = _console80()
    print_probes(results, con)
    out = con.file.getvalue()
    assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)
    labels = [probe_feature_label(r) for r in results]
    assert "stand-in" in labels[0] or "random-init" in labels[0], labels[0]
    for label in labels:
        _words_whole(out, label)
    for t in targets:
        assert out.count(f"│ {t} ") == 4, t  # a row in each source's table and in the attentive one


def test_progress_lines_come_at_least_every_30_s_in_a_log():
    """Watch.run with a fake clock and jobs that take 'minutes': in a non-terminal console, every running job
    gets a line at least every 30 s of the clock, and each job's end is a line of its own."""
    from vjepa_robot.demo import PROGRESS_EVERY_S, Job, ProgressLines, Watch

    assert PROGRESS_EVERY_S <= 30
    clock = {"t": 0.0}

    def tick() -> float:
        clock["t"] += 3.0  # each look at the clock: 3 s later (a poll round)
        return clock["t"]

    lines = ProgressLines(every=20.0, clock=tick)
    due = [clock["t"] for _ in range(40) if lines.due()]
    assert due[0] == 3.0 and all(20 <= b - a <= 30 for a, b in zip(due, due[1:])), due

    def job(label: str, rounds: int) -> Job:
        state = {"n": 0}

        def poll():
            state["n"] += 1
            done = state["n"] >= rounds
            return state["n"], rounds, "succeeded" if done else "running", "epochs", None

        return Job(label, "probes", poll)

    con = _console80()
    w = Watch(con, t0=0.0, clock=tick)
    w.describe = lambda j: "done"  # the results are not service records here
    times = []
    w.lines = ProgressLines(every=PROGRESS_EVERY_S, clock=lambda: times.append(tick()) or times[-1])
    w.run([job("BC state s0", 30), job("probes (3 folds)", 50)], poll_interval=0.0)
    out = con.file.getvalue().splitlines()
    assert [s for s in out if s.startswith("BC state s0: done")] and [s for s in out if "probes (3 folds): done" in s]
    progress = [s for s in out if s.startswith("[") and "probes (3 folds)" in s]
    assert len(progress) >= 4, out  # 50 rounds x 3 s = 150 s: a line at least every 30 s
    assert all(len(s) <= 80 for s in out)


# ----------------------------------------------------------------------------------------------------------------
# train / eval in the terminal (vjepa_robot/output.py)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def dead_url():
    """A loopback URL where nothing listens (bound, then closed: connections are refused at once)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture()
def quiet_flags():
    from vjepa_robot import cli, output

    cli._VERBOSE["on"] = output.JSON["on"] = False
    yield
    cli._VERBOSE["on"] = output.JSON["on"] = False


def _main(args, capsys) -> tuple[int, str, str]:
    from vjepa_robot import cli

    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_training_on_vjepa2_without_an_encoder_stops_before_any_run(tmp_path, dead_url, quiet_flags, capsys):
    """Exit 3 at once with one line naming the URL and how to start an encoder; no run is created."""
    import time

    from vjepa_robot_lab.report import read_runs

    store = tmp_path / "store"
    for verbose in ([], ["--verbose"]):  # the same exit code in both modes
        t0 = time.perf_counter()
        args = [*verbose, "train", "bc", "ds", "--features", "vjepa2", "--encoder-url", dead_url, "--store", store]
        code, _, err = _main(args, capsys)
        assert code == 3, err
        line = err.strip()
        assert len(line.splitlines()) == 1 and dead_url in line and "vjepa-robot serve encoder" in line, line
        assert time.perf_counter() - t0 < 30  # a few quick looks, not the SDK's minute of retries
    assert not read_runs(store / "runs")  # no failed run left behind


def test_verbose_keeps_the_exit_code_of_an_unreachable_service(dead_url, quiet_flags, quick_retries, capsys):
    args = ["eval", "jacobian", "--episodes", "1", "--trainer-url", dead_url]
    plain, _, err = _main(args, capsys)
    verbose, _, err_v = _main(["--verbose", *args], capsys)
    assert plain == verbose == 3, (err, err_v)
    assert "Traceback" not in err and "Traceback (most recent call last)" in err_v  # the trace, and the code


def test_summary_lines_name_the_stand_in_and_json_gives_the_record(quiet_flags, capsys):
    from vjepa_robot import output

    runs = {r.run_id: r for r in demo_like_runs()}
    tiny, state = runs["bc-vjepa2"], runs["bc-state"]
    line = output.run_line(tiny)
    assert "\n" not in line and "kept epoch 1 of 100" in line and output.STAND_IN_NOTE in line, line
    assert output.STAND_IN_NOTE not in output.run_line(state)
    ev = tiny.evaluations[0].model_dump(by_alias=True)
    ev["run_id"] = tiny.run_id
    line = output.eval_line(ev, tiny)
    assert line.startswith("bc-vjepa2 evaluated: success 10% [") and "over 10 episodes" in line
    assert output.STAND_IN_NOTE in line and "\n" not in line
    output.JSON["on"] = True
    output.print_eval(ev, tiny)
    import json

    assert json.loads(capsys.readouterr().out)["episodes"][0]["target_radius"] == RADII[0]


def test_stratified_counts_round_up_to_a_multiple_of_3():
    from vjepa_robot.output import stratified_episodes

    assert (
        stratified_episodes(4, "stratified")[0] == 6 and "running 6 episodes" in stratified_episodes(4, "stratified")[1]
    )
    assert stratified_episodes(6, "stratified") == (6, None)
    assert stratified_episodes(4, "uniform") == (4, None) and stratified_episodes(None, "stratified") == (None, None)


def test_train_and_eval_end_with_one_summary_line(tiny_dataset, tmp_path, quiet_flags, capsys):
    """Local BC on state, then a stratified evaluation of 4 episodes (run as 6, with a note), each ending in one
    line; `--json` after the command gives the full evaluation record."""
    import json

    store, name, _ = tiny_dataset
    common = ["--store", store.uri]
    code, out, err = _main(["train", "bc", name, "--features", "state", "--epochs", "2", *common], capsys)
    assert code in (0, None), err
    last = out.strip().splitlines()[-1]
    assert " succeeded: BC on " in last and "kept epoch" in last, out
    run_id = last.split()[0]
    args = ["eval", run_id, "--episodes", "4", "--targets", "stratified", "--steps", "10", "--parallel-envs", "2"]
    code, out, err = _main([*args, *common, "--json", "--gifs", "0"], capsys)  # --gifs 0: no GIF, the fastest
    assert code in (0, None), err
    assert "running 6 episodes" in err
    assert len(json.loads(out)["episodes"]) == 6 and not json.loads(out).get("gif")
    code, out, err = _main([*args, *common], capsys)
    assert out.strip().splitlines()[-1].startswith(f"{run_id} evaluated: success "), out


def test_a_rejected_flag_loads_no_simulator_torch_or_store():
    """Bad input is refused before the heavy imports (measured: docs/results.md)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from vjepa_robot import cli\n"
        "for args in (['eval', 'jacobian', '--episodes', '-1'], ['datasets', 'create', 'x', '--episodes', '-5'],\n"
        "             ['demo', '--episodes', '-5'], ['train', 'bc', 'ds', '--epochs', '0']):\n"
        "    try:\n"
        "        cli.main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 2, (args, e.code)\n"
        "heavy = [m for m in ('torch', 'dm_control', 'mujoco', 'lancedb', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in proc.stdout, (proc.stdout, proc.stderr[-2000:])


# ----------------------------------------------------------------------------------------------------------------
# One install for everything the README lists; CI runs the README's test command
# ----------------------------------------------------------------------------------------------------------------


def _extra(pyproject: dict, name: str, seen: set | None = None) -> set[str]:
    """Every requirement an extra brings, following `vjepa-robot[other]` references."""
    import re

    seen = seen if seen is not None else set()
    out: set[str] = set()
    for req in pyproject["project"]["optional-dependencies"][name]:
        m = re.fullmatch(r"vjepa-robot\[(\w+)\]", req)
        if m:
            if m.group(1) not in seen:
                seen.add(m.group(1))
                out |= _extra(pyproject, m.group(1), seen)
        else:
            out.add(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower())
    return out


def test_all_brings_every_feature_the_readme_lists():
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    everything = _extra(pyproject, "all")
    # the study, live curves (TensorBoard; W&B with --wandb), Gymnasium + the SB3 example, LeRobot video (PyAV)
    for needed in (
        "dm-control",
        "mujoco",
        "matplotlib",
        "tensorboard",
        "wandb",
        "gymnasium",
        "stable-baselines3",
        "av",
    ):
        assert needed in everything, needed
    readme = (root / "README.md").read_text()
    assert 'pip install -c constraints.txt -e ".[all]" && vjepa-robot demo' in readme


def test_ci_runs_the_readme_test_command_verbatim_with_this_python():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    line = next(s for s in readme.splitlines() if "pytest" in s and "pip install" in s)
    command = line.split("#", 1)[0].strip()
    assert command.endswith("&& python -m pytest"), command  # the venv's own pytest, never another on PATH
    ci = (root / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == command, (ci[-1], command)
    assert len(readme.splitlines()) <= 200


def test_the_demo_probes_run_in_a_one_thread_process(tmp_store):
    """The probe worker starts with every thread pool at one thread (the parent keeps its own settings) and
    probes a real dataset in the store."""
    import os

    from conftest import write_steps_dataset

    from vjepa_robot.demo import ONE_THREAD, probe_one, probe_pool

    before = {k: os.environ.get(k) for k in ONE_THREAD}
    pool = probe_pool()
    try:
        assert {k: os.environ.get(k) for k in ONE_THREAD} == before  # the demo process itself is unchanged
        assert [pool.submit(os.getenv, k).result() for k in ONE_THREAD] == ["1"] * len(ONE_THREAD)
        write_steps_dataset(tmp_store, "six", episodes=6, steps=10, image_size=8)
        result = pool.submit(probe_one, tmp_store.uri, "six", "state", "http://unused", 0, 3, 20).result(timeout=300)
    finally:
        pool.shutdown()
    assert (
        result["features"] == "state"
        and result["mlp_steps"] == 20
        and set(result["linear"])
        == {
            "finger_xy",
            "target_xy",
            "to_target",
        }
    )


def test_progress_lines_keep_coming_while_a_poll_waits_on_a_slow_service():
    """A poll that blocks (a loaded service answering slowly) does not stop the lines: a thread prints them
    (measured in the demo at load ~15: a 42 s gap between lines before this thread)."""
    import time

    from vjepa_robot.demo import Job, ProgressLines, Watch

    state = {"n": 0}

    def slow_poll():
        state["n"] += 1
        time.sleep(1.2)  # one poll round takes longer than the cadence
        return state["n"], 2, "succeeded" if state["n"] >= 2 else "running", "epochs", None

    con = _console80()
    w = Watch(con, t0=time.perf_counter())
    w.describe = lambda j: "done"
    w.lines, w.beat_s = ProgressLines(every=0.3), 0.05
    w.run([Job("BC vjepa2 s0", "BC", slow_poll)], poll_interval=0.0)
    progress = [s for s in con.file.getvalue().splitlines() if s.startswith("[") and "BC vjepa2 s0" in s]
    assert len(progress) >= 4, con.file.getvalue()  # 2.4 s of blocked polls at one line per 0.3 s


@pytest.mark.slow
def test_local_attentive_training_shows_its_embedding_and_ends_in_one_line(tmp_path, quiet_flags, capsys):
    """A real tiny encoder on loopback: `train bc --readout attentive` in this process embeds the grids first with
    a progress bar, ends with one summary line naming the stand-in, and the succeeded run's phase moved on."""
    from _servers import serve_app
    from conftest import write_steps_dataset

    from services.common.store import Store
    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings
    from vjepa_robot import output
    from vjepa_robot_lab.records.runs import RunStore

    store = str(tmp_path / "store")
    write_steps_dataset(Store(store), "ds", episodes=4, steps=10, image_size=32)
    with serve_app(create_app(EncoderSettings(store=store, preset="tiny")), startup_timeout=180) as url:
        args = ["train", "bc", "ds", "--features", "vjepa2", "--readout", "attentive", "--grid-size", "2"]
        code, out, err = _main(
            [*args, "--epochs", "1", "--batch-size", "16", "--encoder-url", url, "--store", store], capsys
        )
    assert code in (0, None), err
    assert "encode ds" in err  # the SDK's progress bar over the grid embedding, before the run starts
    last = out.strip().splitlines()[-1]
    assert " succeeded: BC on vjepa2" in last and output.STAND_IN_NOTE in last, out
    run = RunStore(tmp_path / "store" / "runs").get(last.split()[0])
    assert run.metrics.model_dump()["phase"] == "trained"


def test_a_study_names_its_stand_in_where_its_numbers_are_printed(capsys):
    """`train ... --seeds` and `eval STUDY` print a study's seeds and intervals under a header that says what its
    runs are: a random-init encoder is named a stand-in there too (issue 31)."""
    from vjepa_robot import cli, output
    from vjepa_robot_client.contract import StudyRecord
    from vjepa_robot_lab.records.runs import migrate

    run = migrate(
        {
            "run_id": "bc-s0",
            "kind": "bc",
            "status": "succeeded",
            "config": {"dataset": "jac", "features": "vjepa2", "seed": 0},
            "lineage": {"features": "vjepa2", "encoder_model": "preset:tiny", "random_init": True, "dataset": "jac"},
            "metrics": {},
            "evaluations": [],
        }
    )

    class Port:  # the one method _print_study asks of a Trainer port, answering with a real record
        def wait(self, run_id):
            assert run_id == "bc-s0"
            return run

    study = StudyRecord.model_validate(
        {
            "study_id": "st-1",
            "run_ids": ["bc-s0"],
            "run_id": "bc-s0",
            "kind": "bc",
            "seeds": [0],
            "status": "succeeded",
            "metric": "val_loss",
            "runs": [{"run_id": "bc-s0", "seed": 0, "status": "succeeded", "final_metric": 0.1}],
            "final": {"n": 1, "mean": 0.1, "values": [0.1]},
        }
    )
    cli._print_study(study, Port())
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("study st-1") and output.STAND_IN_NOTE in header, header
