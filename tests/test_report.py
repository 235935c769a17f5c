"""The report (vjepa_robot_lab/report/) from correctly shaped run records (layout and honesty: no training)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vjepa_robot_lab.report import (
    PLUMBING,
    condition_name,
    condition_rows,
    load_notes,
    pct,
    read_runs,
    save_notes,
    summary_lines,
    t_interval,
    title,
    wilson_ci95,
    write_report,
)

TINY = {"features": "vjepa2", "dim": 96, "encoder_id": "abc123", "model": "preset:tiny", "image_size": 128}
VITL = {
    "features": "vjepa2",
    "dim": 1024,
    "encoder_id": "def456",
    "model": "facebook/vjepa2-vitl-fpc64-256",
    "image_size": 256,
}


def _episodes(n: int, successes: int) -> list[dict]:
    return [
        {"seed": 1_000_000_000 + i, "success": i < successes, "return": 150.0 if i < successes else 10.0}
        for i in range(n)
    ]


def _eval(n: int, k: int, gif=None, task="easy") -> dict:
    ev = {
        "status": "succeeded",
        "eval_id": 0,
        "task": task,
        "success_rate": k / n,
        "mean_return": 150.0 * k / n,
        "episodes": _episodes(n, k),
        "steps_per_second": 812.0,
        "request": {"task": task, "steps": 200, "seed": 0, "episodes": n, "image_size": 128},
    }
    if gif:
        ev["gif"] = [str(gif)]
    return ev


def _bc(run_id, features, seed, k, lineage=None, gif=None, n=50) -> dict:
    curve = list(np.geomspace(0.05, 2e-4, 20))
    val = [0.1 - 0.004 * e if e < 6 else 0.08 + 0.01 * e for e in range(20)]
    return {
        "run_id": run_id,
        "kind": "bc",
        "status": "succeeded",
        "config": {"dataset": "jac-150", "features": features, "seed": seed, "study_id": f"st-{seed}"},
        "metrics": {
            "train_loss_curve": curve,
            "val_loss_curve": val,
            "epoch": 20,
            "n_train": 27000,
            "n_val": 3000,
            "train_s": 12.3,
            "select": "best_val",
            "best_epoch": 6,
            "selected_epoch": 6,
            "features_lineage": lineage or {"features": features, "dim": 8},
        },
        "evaluations": [_eval(n, k, gif)],
    }


def _runs(gif) -> list[dict]:
    return [
        {
            "run_id": "baseline-1",
            "kind": "baseline",
            "status": "succeeded",
            "config": {"policy": "jacobian"},
            "metrics": {},
            "evaluations": [_eval(50, 50)],
        },
        {
            "run_id": "baseline-2",
            "kind": "baseline",
            "status": "succeeded",
            "config": {"policy": "random"},
            "metrics": {},
            "evaluations": [_eval(50, 0)],
        },
        _bc("bc-s0", "state", 0, 47, gif=gif),
        _bc("bc-s1", "state", 1, 40),
        _bc("bc-s2", "state", 2, 45),
        _bc("bc-tiny", "vjepa2", 0, 10, lineage=TINY, n=20),
        {
            "run_id": "sac-1",
            "kind": "sac",
            "status": "succeeded",
            "config": {"features": "vjepa2", "seed": 0},
            "metrics": {
                "features_lineage": TINY,
                "env_steps": 1000,
                "final_eval": {"mean_return": 90.0, "success_rate": 0.1, "episodes": 10},
                "curve": [
                    {
                        "env_steps": s,
                        "mean_return": s / 10,
                        "std_return": 5.0,
                        "success_rate": s / 2000,
                        "eval_episodes": 5,
                    }
                    for s in (200, 600, 1000)
                ],
            },
            "evaluations": [_eval(20, 10)],
        },
        {
            "run_id": "bc-2",
            "kind": "bc",
            "status": "running",
            "config": {"dataset": "jac-150", "features": "random"},
            "metrics": {"train_loss_curve": [0.1, 0.09], "val_loss_curve": [0.1, 0.11]},
            "evaluations": [],
        },
    ]


def test_numbers_for_people():
    assert wilson_ci95(0, 3)[0] == 0.0 and wilson_ci95(3, 3)[1] == 1.0
    assert pct(0.2, wilson_ci95(4, 20)) == "20% [8, 42]"
    mean, lo, hi = t_interval([0.94, 0.80, 0.90])
    assert abs(mean - 0.88) < 1e-12 and lo < 0.80 and hi > 0.94  # t(2) = 4.303: wide with three seeds
    assert t_interval([0.5]) == (0.5, None, None)


def test_condition_names_say_which_encoder():
    tiny = {
        "run_id": "bc-t",
        "status": "succeeded",
        "kind": "bc",
        "config": {"features": "vjepa2", "dataset": "d"},
        "metrics": {"features_lineage": TINY},
    }
    name = condition_name(tiny)
    assert "tiny" in name and "random-init" in name and "96-d" in name and "128 px" in name and PLUMBING in name
    vitl = {
        "run_id": "bc-v",
        "status": "succeeded",
        "kind": "bc",
        "config": {"features": "vjepa2", "dataset": "d"},
        "metrics": {"features_lineage": VITL},
    }
    assert "pretrained" in condition_name(vitl) and PLUMBING not in condition_name(vitl)
    assert condition_name(
        {"run_id": "sac-1", "status": "queued", "kind": "sac", "config": {"features": "state"}}
    ).startswith("SAC on state")
    assert "P-controller" in condition_name(
        {"run_id": "baseline-1", "status": "succeeded", "kind": "baseline", "config": {"policy": "p-controller"}}
    )
    assert "plumbing" in title([tiny]) and title([tiny, vitl]).startswith("V-JEPA 2")


def test_the_family_name_is_the_encoders_and_old_records_keep_theirs():
    """A run records the family's name from the encoder's GET /info (lineage.family_label); records written before
    that field print their family id's name as they always did (before families: V-JEPA 2)."""

    def name(**family) -> str:
        lin = {"features": "vjepa2", "dim": 96, "encoder_model": "preset:tiny", "random_init": True, **family}
        return condition_name({"run_id": "b", "status": "succeeded", "kind": "bc", "config": {}, "lineage": lin})

    assert "New Family `tiny` preset, random-init" in name(family="newfam", family_label="New Family")
    assert "DINOv2 `tiny` preset" in name(family="dinov2")  # no label: the family id's name, as before
    assert ": V-JEPA 2 `tiny` preset" in name()  # no family: a record from before families
    lite = "EfficientNet-Lite (ImageNet-supervised CNN) `tiny` preset"
    assert lite in name(family="efficientnet-lite") and lite in name(family="x", family_label=lite.split(" `")[0])


def test_seeds_are_aggregated_per_condition(tmp_path):
    groups = condition_rows(_runs(None))
    state = next(g for g in groups if g["condition"].startswith("BC on state"))
    assert state["n_runs"] == 3 and state["seeds"] == [0, 1, 2] and state["ci_kind"] == "t across seeds"
    assert abs(state["success_rate"] - (47 + 40 + 45) / 150) < 1e-12
    order = [g["short"] for g in groups]  # baselines first, then BC (state before vjepa2), then SAC
    assert (
        order.index("Jacobian-transpose expert")
        < order.index("BC state")
        < order.index("BC vjepa2 (tiny, random-init)")
        < order.index("SAC vjepa2 (tiny, random-init)")
    )
    lines = summary_lines(_runs(None))
    assert any(PLUMBING in line and "50% [30, 70]" in line for line in lines)


def test_write_report(tmp_path):
    gif = tmp_path / "rollout.gif"
    frames = [Image.fromarray(np.full((16, 16, 3), c, np.uint8)) for c in (0, 128, 255)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=40)
    lin = {"r2": 0.2, "r2_sd": 0.1, "alpha": 1000.0, "alpha_at_edge": False}
    probes = [
        {
            "features": "state",
            "dataset": "jac-150",
            "targets": ["finger_xy"],
            "folds": 5,
            "n_episodes": 40,
            "linear": {"finger_xy": lin},
            "mlp": {"finger_xy": {"r2": 0.96, "r2_sd": 0.02}},
        },
        {
            "features": "vjepa2",
            "dataset": "jac-150",
            "targets": ["finger_xy"],
            "folds": 5,
            "n_episodes": 40,
            "lineage": TINY,
            "linear": {"finger_xy": {**lin, "alpha": 1e7, "alpha_at_edge": True}},
            "mlp": {},
        },
    ]

    out = tmp_path / "report"
    path = write_report(_runs(gif), probes, out, extra_notes={"machine": "2-core shared CPU"})
    text = path.read_text()

    assert path == out / "README.md"
    for png in ("success.png", "bc_loss.png", "sac_curves.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in text
        assert Image.open(out / png).format == "PNG"
    assert text.startswith("# vjepa-robot pipeline check") and "no V-JEPA 2 result" in text.splitlines()[0]
    # every vjepa2 row names the stand-in encoder and is marked in the row itself
    vj_rows = [line for line in text.splitlines() if line.startswith("| ") and "vjepa2" in line]
    assert len(vj_rows) >= 4 and all("random-init" in line and PLUMBING in line for line in vj_rows)
    assert "| Jacobian-transpose expert |" in text and "| 100% [93, 100] (Wilson)" in text
    assert "| 0% [0, 7] (Wilson)" in text  # 0/50: the lower bound is exactly 0
    assert "3 (seeds 0, 1, 2)" in text and "(t across seeds)" in text and "s0: 94% [84, 98]" in text
    assert "| 6 (best_val) |" in text  # the kept epoch and its rule
    assert "`bc-2` (BC on random (jac-150), running)" in text
    assert "| finger_xy | 0.20 ± 0.10 | 1e+03 | 0.96 ± 0.02 | 5 x 40 episodes |" in text
    assert "1e+07 (grid edge)" in text
    copied = list((out / "gifs").glob("*.gif"))
    assert len(copied) == 1 and f"(gifs/{copied[0].name})" in text
    assert "- **machine**: 2-core shared CPU" in text


def test_notes_survive_and_reading_creates_nothing(tmp_path):
    missing = tmp_path / "no-store" / "runs"
    assert read_runs(missing) == [] and load_notes(missing) == {} and not (tmp_path / "no-store").exists()
    runs_dir = tmp_path / "runs"
    save_notes(runs_dir, {"encoder": "tiny preset", "machine": "2 cores"})
    save_notes(runs_dir, {"wall_s": 12.5})
    assert load_notes(runs_dir) == {"encoder": "tiny preset", "machine": "2 cores", "wall_s": 12.5}


def test_report_without_results(tmp_path):
    path = write_report([], [], tmp_path / "empty")
    assert "No finished evaluations yet." in path.read_text()
    assert not list((tmp_path / "empty").glob("*.png"))


def test_rollout_gif_has_captions_real_time_and_the_expert(tmp_path):
    """A real (tiny) live evaluation writes one GIF per episode: policy beside the expert, captioned, and its
    frame delay is the simulated time per frame in milliseconds (not 0)."""
    from vjepa_robot_lab.envs.vec_env import make_env
    from vjepa_robot_lab.evaluation.evaluate import CONTROL_DT, evaluate_policy
    from vjepa_robot_lab.evaluation.evaluate import GIF_CAPTION_H as CAP
    from vjepa_robot_lab.perception.features import make_feature_source

    assert make_env("easy", seed=0, episode_steps=10, action_repeat=1, image_size=0).physics.timestep() == CONTROL_DT
    rec = evaluate_policy(
        lambda x: np.zeros((len(x), 2), np.float32),
        make_feature_source("state"),
        episodes=2,
        steps=40,
        parallel_envs=2,
        gif_episodes=1,
        gif_path=tmp_path / "eval0.gif",
    )
    assert len(rec["gif"]) == 1 and rec["gif"][0].endswith("eval0-ep0.gif")
    gif = Image.open(rec["gif"][0])
    assert gif.n_frames == 40 and gif.info["duration"] == round(1000 * CONTROL_DT)  # 20 ms: real time
    assert gif.size == (2 * 160, 160 + CAP)  # policy | expert, caption strip above
    first = np.asarray(gif.convert("RGB"))
    caption = first[:CAP]
    assert (caption.max(axis=2) > 200).sum() > 100  # white caption text is drawn
    assert np.array_equal(first[CAP:, :160], first[CAP:, 160:])  # same evaluation seed: the same start
    gif.seek(gif.n_frames - 1)
    last = np.asarray(gif.convert("RGB"))
    assert not np.array_equal(last[CAP:, :160], last[CAP:, 160:])  # the expert moved, the zero policy did not


def test_sac_curves_across_seeds(tmp_path):
    from vjepa_robot_lab.report import plot_sac_curves

    runs = _runs(None)
    sac = next(r for r in runs if r["kind"] == "sac")
    second = {
        **sac,
        "run_id": "sac-2",
        "config": {**sac["config"], "seed": 1},
        "metrics": {
            **sac["metrics"],
            "curve": [{**p, "mean_return": 2 * p["mean_return"]} for p in sac["metrics"]["curve"]],
        },
    }
    groups = condition_rows([sac, second])
    assert len(groups) == 1 and groups[0]["n_runs"] == 2
    path = plot_sac_curves([sac, second], tmp_path / "sac.png")
    assert Image.open(path).format == "PNG"


def _targeted(run_id: str, seed: int, near: list[bool], far: list[bool]) -> dict:
    """A BC run of one condition at one training seed whose evaluation recorded each episode's target: near-bin
    targets at 0.07 m, far ones at 0.18 m (evaluate.TARGET_BINS), with the given successes."""
    run = _bc(run_id, "state", seed, 0)
    eps = [
        {"seed": 10**9 + i, "success": s, "return": 900.0 if s else 0.0, "target_radius": r}
        for i, (s, r) in enumerate([(s, 0.07) for s in near] + [(s, 0.18) for s in far])
    ]
    ev = run["evaluations"][0]
    ev |= {"episodes": eps, "success_rate": sum(e["success"] for e in eps) / len(eps)}
    ev["request"] = ev["request"] | {"episodes": len(eps)}
    return run


def test_by_distance_intervals_are_across_seeds():
    """Issue 30: with several seeds a bin's bar is the mean of the seeds' rates and its whiskers the t-interval
    across seeds (stats.t_interval), wider than a Wilson interval on the pooled episodes when seeds disagree; one
    seed falls back to Wilson over its episodes, and the legend says which each condition got."""
    from vjepa_robot_lab.report.plots import T_ACROSS_SEEDS, WILSON_ONE_SEED, distance_bins, distance_figure

    t, f = True, False
    # near: seed 0 succeeds 10/10, seed 1 0/10, seed 2 6/10 (the seeds disagree); far: 9/10, 8/10, 10/10
    runs = [
        _targeted("bc-s0", 0, [t] * 10, [t] * 9 + [f]),
        _targeted("bc-s1", 1, [f] * 10, [t] * 8 + [f] * 2),
        _targeted("bc-s2", 2, [t] * 6 + [f] * 4, [t] * 10),
    ]
    (group,) = condition_rows(runs)
    assert group["n_runs"] == 3
    near, middle, far = distance_bins(group)
    assert near["ci_kind"] == T_ACROSS_SEEDS and near["seeds"] == 3 and near["n"] == 30
    assert near["per_seed"] == [1.0, 0.0, 0.6]
    mean, lo, hi = t_interval([1.0, 0.0, 0.6])
    assert near["rate"] == mean and near["ci"] == (max(0.0, lo), min(1.0, hi))
    pooled = wilson_ci95(16, 30)  # what the bars showed before: every seed's episodes as one sample
    assert near["ci"][1] - near["ci"][0] > 2 * (pooled[1] - pooled[0])
    assert far["ci"] == (max(0.0, t_interval([0.9, 0.8, 1.0])[1]), min(1.0, t_interval([0.9, 0.8, 1.0])[2]))
    assert middle["rate"] is None and middle["n"] == 0 and middle["ci"] is None

    (single,) = condition_rows([_targeted("bc-s0", 0, [t] * 7 + [f] * 3, [f] * 10)])
    near1 = distance_bins(single)[0]
    assert near1["ci_kind"] == WILSON_ONE_SEED and near1["ci"] == wilson_ci95(7, 10) and near1["rate"] == 0.7

    fig = distance_figure([group])
    ax = fig.axes[0]
    assert "t-interval" in ax.get_ylabel() and "one seed: Wilson" in ax.get_ylabel()
    (label,) = [tx.get_text() for leg in fig.legends for tx in leg.get_texts()]
    assert "3 seeds: t-interval across seeds" in label
    near_text = [tx.get_text() for tx in ax.texts if tx.get_text().startswith(f"{100 * mean:.0f}%")]
    assert near_text and "3 seeds" in near_text[0]
    fig1 = distance_figure([single])
    assert "1 seed: Wilson over its episodes" in fig1.legends[0].get_texts()[0].get_text()
