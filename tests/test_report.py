"""The report (services/trainer/report.py) from fake but correctly shaped run records (layout only: no training)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from services.trainer.report import condition_name, write_report


def _episodes(n: int, successes: int, seed: int = 0) -> list[dict]:
    return [{"seed": 1_000_000_000 + i, "success": i < successes, "return": 150.0 if i < successes else 10.0}
            for i in range(n)]


def _eval(n: int, k: int, gif=None, task="easy") -> dict:
    ev = {"status": "succeeded", "eval_id": 0, "task": task, "success_rate": k / n, "mean_return": 150.0 * k / n,
          "episodes": _episodes(n, k), "steps_per_second": 812.0}
    if gif:
        ev["gif"] = str(gif)
    return ev


def _runs(gif) -> list[dict]:
    bc_curve = list(np.geomspace(0.05, 2e-4, 20))
    return [
        {"run_id": "baseline-1", "kind": "baseline", "status": "succeeded", "config": {"policy": "jacobian"},
         "metrics": {}, "evaluations": [_eval(50, 50)]},
        {"run_id": "baseline-2", "kind": "baseline", "status": "succeeded", "config": {"policy": "random"},
         "metrics": {}, "evaluations": [_eval(50, 2)]},
        {"run_id": "bc-1", "kind": "bc", "status": "succeeded", "config": {"dataset": "jac-150", "features": "state"},
         "metrics": {"train_loss_curve": bc_curve, "val_loss_curve": [2 * v for v in bc_curve], "train_loss": bc_curve[-1],
                     "val_loss": 2 * bc_curve[-1], "epoch": 20, "n_train": 27000, "n_val": 3000, "train_s": 12.3},
         "evaluations": [{**_eval(50, 47, gif), "success_ci95": None}]},  # CI recomputed from the episodes
        {"run_id": "sac-1", "kind": "sac", "status": "succeeded", "config": {"features": "vjepa2", "total_steps": 1000},
         "metrics": {"curve": [{"env_steps": s, "mean_return": s / 10, "success_rate": s / 2000} for s in (200, 600, 1000)]},
         "evaluations": [_eval(20, 10)]},
        {"run_id": "bc-2", "kind": "bc", "status": "running", "config": {"dataset": "jac-150", "features": "random"},
         "metrics": {"train_loss_curve": [0.1, 0.09], "val_loss_curve": [0.1, 0.11]}, "evaluations": []},
    ]


def test_condition_names():
    assert condition_name({"kind": "bc", "config": {"features": "vjepa2", "dataset": "d"}}) == "BC on vjepa2 (d)"
    assert condition_name({"kind": "sac", "config": {"features": "state"}}) == "SAC on state"
    assert "P-controller" in condition_name({"kind": "baseline", "config": {"policy": "p-controller"}})


def test_write_report(tmp_path):
    gif = tmp_path / "rollout.gif"
    frames = [Image.fromarray(np.full((16, 16, 3), c, np.uint8)) for c in (0, 128, 255)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=40)
    probes = [{"features": "state", "dataset": "jac-150", "finger_xy_r2": 0.31, "target_xy_r2": 0.27,
               "alpha": {"finger_xy": 1e4, "target_xy": 1e4}, "n_train": 24000, "n_test": 6000},
              {"features": "random", "finger_xy_r2": -0.01, "target_xy_r2": -0.01, "alpha": 1e5}]

    out = tmp_path / "report"
    path = write_report(_runs(gif), probes, out, extra_notes={"machine": "2-core shared CPU"})
    text = path.read_text()

    assert path == out / "README.md"
    for png in ("success.png", "bc_loss.png", "sac_curves.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in text
        assert Image.open(out / png).format == "PNG"
    for condition in ("Jacobian-transpose expert", "Random policy", "BC on state (jac-150)", "SAC on vjepa2"):
        assert f"| {condition} |" in text
    assert "| BC on state (jac-150) | 94.0% [83.8, 97.9] | 141.0 | 50 |" in text  # Wilson interval from episodes
    assert "| 100.0% [92.9, 100.0]" in text
    assert "`bc-2` (BC on random (jac-150), running)" in text
    assert "| state | jac-150 | 0.310 | 0.270 | 10000, 10000 |" in text
    copied = list((out / "gifs").glob("*.gif"))
    assert len(copied) == 1 and f"(gifs/{copied[0].name})" in text
    assert "- **machine**: 2-core shared CPU" in text


def test_report_without_results(tmp_path):
    path = write_report([], [], tmp_path / "empty")
    assert "No finished evaluations yet." in path.read_text()
    assert not list((tmp_path / "empty").glob("*.png"))
