"""A newcomer's second hour (issue 31): pictures with nothing hidden, output that fits a terminal, a demo that
keeps printing when its output goes to a file, and CLI output a person can read.

The pictures are built from run records shaped like the quick demo's (10 evaluation targets at 0.054-0.071 and
0.158-0.196 m, so the middle bin is empty; zero-return episodes of three policies at the same targets; two BC runs
keeping epoch 1 at nearly the same loss) and checked as matplotlib lays them out."""

from __future__ import annotations

import numpy as np

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
