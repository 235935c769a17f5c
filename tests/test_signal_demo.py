"""`vjepa-robot demo --preset signal` (vjepa_robot/signal_demo.py) and the probe's dual ridge it relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vjepa_robot_lab.perception.probe import Ridge


def test_dual_ridge_matches_the_primal():
    """D > N (a 4 x 4 grid of 1280-d tokens is 20,480 inputs): the dual solve gives the primal's weights."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 300)), rng.normal(size=(40, 2))
    dual = Ridge(x)
    assert dual.dual
    primal = Ridge(x)
    primal.dual = False
    evals, primal.evecs = np.linalg.eigh(primal.z.T @ primal.z)
    primal.evals = np.maximum(evals, 0.0)
    for alpha in (1e-2, 1.0, 1e3):
        (w1, b1), (w2, b2) = dual.solve(y, alpha), primal.solve(y, alpha)
        np.testing.assert_allclose(w1, w2, atol=1e-8)
        np.testing.assert_allclose(dual.predict(x[:5], w1, b1), primal.predict(x[:5], w2, b2), atol=1e-8)
    assert not Ridge(x[:, :10]).dual  # taller than wide: the primal, as before


def test_probe_rows_give_intervals(tmp_store):
    from tests.conftest import write_steps_dataset
    from vjepa_robot.signal_demo import probe_rows
    from vjepa_robot_lab.perception.features import RandomFeatures

    write_steps_dataset(tmp_store, "pr", episodes=5, steps=6, image_size=16)
    rows = probe_rows(tmp_store, "pr", RandomFeatures(dim=32, grid_dim=8), "random", (2,), folds=5)
    assert [r["readout"] for r in rows] == ["mean", "grid 2x2"]
    assert rows[1]["dim"] == 4 * 8
    for r in rows:
        lo, hi = r["finger_xy"]["ci95"]
        assert len(r["finger_xy"]["folds"]) == 5 and lo <= r["finger_xy"]["r2"] <= hi


def test_unknown_preset_names_signal():
    from vjepa_robot.demo import run_demo

    with pytest.raises(ValueError, match="signal"):
        run_demo("nope")


@pytest.mark.slow
def test_signal_preset_end_to_end(tmp_path):
    """The whole preset at toy sizes on the tiny stand-in encoder (a real service on loopback): every stage
    writes signal.json / signal.md, the rows name their sources, pixels included. ~3 min on the loaded 2-core box."""
    from vjepa_robot.signal_demo import run_signal

    md = run_signal(
        "signal",
        out=tmp_path / "out",
        workdir=tmp_path / "work",
        store=tmp_path / "store",
        runs_dir=tmp_path / "runs",
        encoders=("tiny",),
        episodes=4,
        steps=12,
        image_size=32,
        seeds=(0, 1),
        epochs=2,
        pixel_epochs=1,
        eval_episodes=2,
        parallel_envs=2,
        probe_episodes=4,
        probe_steps=10,
        probe_image_size=32,
        probe_grid_sizes=(2,),
        probe_folds=2,
        rows=("state", "pixels", "tiny:mean", "tiny:attentive"),
    )
    result = json.loads((tmp_path / "out" / "signal.json").read_text())
    assert not result["errors"], result["errors"]
    assert [r["row"] for r in result["bc"]] == ["state", "pixels", "tiny:mean", "tiny:attentive"]
    assert all(r["episodes"] == 4 for r in result["bc"])  # 2 seeds x 2 live episodes each
    assert {p["readout"] for p in result["probes"]} == {"mean", "grid 2x2"}
    assert "pixels" in md.read_text()


def test_global_scale_ignores_near_dead_channels():
    """A CNN's last map has many near-constant channels: standardising each blows their noise up to unit
    variance and the ridge fits it; the global scale leaves them negligible (probe.Ridge scale='global')."""
    from vjepa_robot_lab.perception.probe import probe_arrays

    rng = np.random.default_rng(0)
    episode = np.repeat(np.arange(20), 10)
    pos = rng.normal(size=(200, 2))
    live = pos @ rng.normal(size=(2, 8)) + 0.05 * rng.normal(size=(200, 8))  # 8 channels that carry the position
    dead = 1e-4 * rng.normal(size=(200, 2000))  # 2000 near-dead channels: noise only
    x = np.concatenate([live, dead], axis=1)
    r2 = {
        s: probe_arrays(x, {"finger_xy": pos}, episode, folds=5, mlp=False, scale=s)["linear"]["finger_xy"]["r2"]
        for s in ("dimension", "global")
    }
    assert r2["global"] > 0.9 and r2["global"] > r2["dimension"] + 0.1, r2


@pytest.mark.slow
def test_an_encoder_the_preset_starts_dies_when_its_parent_is_killed(tmp_path):
    """A process running the signal preset as a library call (no CLI signal handler) killed with SIGKILL: every
    `finally` is skipped, yet the encoder service it started ends too (the parent-death signal)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys, time; from pathlib import Path; from vjepa_robot.signal_demo import _start_encoder; "
        f"u, p = _start_encoder('tiny', {str(tmp_path / 'store')!r}, None, Path({str(tmp_path / 'logs')!r})); "
        "print(p.pid, flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while not line.strip().isdigit():  # the preset's own lines first (the encoder's URL and log)
            line = parent.stdout.readline()
            assert line, "the child process ended before starting its encoder"
        child = int(line)
        os.kill(child, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            with open(f"/proc/{child}/stat") as fh:  # a zombie waiting for init counts as gone
                if fh.read().split(") ")[1].startswith("Z"):
                    break
            time.sleep(0.2)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError(f"encoder {child} outlived its parent by 20 s")
    finally:
        parent.kill()


def test_kept_rows_need_only_their_own_settings(tmp_path):
    """A later run into the same `out` reuses a probe row when the probe settings match and a BC row when the BC
    settings match: a BC setting change re-measures only BC, a probe setting change only the probes."""
    from dataclasses import asdict

    from vjepa_robot.signal_demo import _kept, signal_config

    cfg = signal_config()
    old = {"config": asdict(cfg), "probes": [{"encoder": "lite0"}], "bc": [{"row": "state", "success": 0.9}]}
    (tmp_path / "signal.a.json").write_text(json.dumps(old))
    assert [r["row"] for r in _kept(tmp_path, cfg)["bc"]] == ["state"]
    kept = _kept(tmp_path, signal_config(probe_episodes=12))  # another probe set: its BC rows still hold
    assert kept["probes"] == [] and [r["row"] for r in kept["bc"]] == ["state"]
    kept = _kept(tmp_path, signal_config(epochs=7))  # other BC settings: the probes still hold
    assert [p["encoder"] for p in kept["probes"]] == ["lite0"] and kept["bc"] == []
    assert _kept(tmp_path, signal_config(dataset_seed=3)) == {}  # both differ: nothing kept
