"""Foundation: env wrappers, the success definition, experts, datasets in LanceDB (real dm_control, real LanceDB)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from services.common.store import Store, decode_png, steps_table_name
from vjepa_robot_client.window import episode_windows
from vjepa_robot_lab.data.datasets import DatasetExists, DatasetSpec, create_dataset, dataset_info
from vjepa_robot_lab.envs.env import (
    EVAL_SEED_BASE,
    episode_success,
    eval_episode_seed,
    make,
    train_episode_seed,
)
from vjepa_robot_lab.evaluation.evaluate import ExpertPolicy, evaluate
from vjepa_robot_lab.evaluation.stats import wilson_ci95


def test_window_shapes_and_padding():
    env = make("easy", episode_steps=12, image_size=32)
    ts = env.reset(seed=3)
    assert ts.frame.shape == (32, 32, 3) and ts.frame.dtype == np.uint8
    assert ts.window.shape == (8, 32, 32, 3) and ts.window.dtype == np.uint8
    assert all(np.array_equal(ts.window[i], ts.frame) for i in range(8))  # padded with the first frame
    frames, windows = [ts.frame], [ts.window]
    while not ts.last():
        ts = env.step(np.array([0.5, -0.5]))
        frames.append(ts.frame)
        windows.append(ts.window)
    assert ts.step == 12 and len(frames) == 13
    assert np.array_equal(windows[3][:5], np.stack([frames[0]] * 5))  # step 3: 5 copies of frame 0, then 1..3
    assert np.array_equal(windows[3][5:], np.stack(frames[1:4]))
    assert np.array_equal(windows[-1], np.stack(frames[-8:]))
    # the offline window builder (used by the encoder on stored frames) agrees with the live one
    assert np.array_equal(episode_windows(np.stack(frames)), np.stack(windows))


def test_default_episode_is_200_steps_and_256_frames():
    env = make("hard")
    ts = env.reset(seed=0)
    assert ts.window.shape == (8, 256, 256, 3)
    n = 0
    while not ts.last():
        ts = env.step(np.zeros(2))
        n += 1
    assert n == 200


def test_success_definition():
    assert episode_success([0] * 190 + [1] * 10)
    assert not episode_success([0] * 189 + [1] * 9 + [0])  # must hold on each of the last 10 steps
    assert not episode_success([1] * 9)
    assert episode_success(np.ones(10))
    lo, hi = wilson_ci95(20, 100)
    assert lo < 0.2 < hi and 0.1 < lo and hi < 0.3
    assert wilson_ci95(0, 10)[0] == 0.0


def test_training_and_evaluation_seeds_never_overlap():
    train = {train_episode_seed(s, e) for s in (0, 1, 9999, 2**31 - 1) for e in (0, 1, 499, 99_999)}
    assert max(train) < EVAL_SEED_BASE <= min(eval_episode_seed(s, k) for s in (0, 5, 2**31 - 1) for k in range(50))


@pytest.mark.parametrize("task", ["easy", "hard"])
def test_jacobian_expert_succeeds_and_beats_the_others(task):
    kw = dict(task=task, episodes=20, steps=200, parallel_envs=10, seed=7)
    jac = evaluate(ExpertPolicy("jacobian"), **kw)
    pc = evaluate(ExpertPolicy("p-controller"), **kw)
    rnd = evaluate(ExpertPolicy("random"), **kw)
    assert jac["success_rate"] >= 0.95, jac
    assert pc["success_rate"] < jac["success_rate"]
    assert rnd["success_rate"] <= 0.2
    assert jac["mean_return"] > pc["mean_return"] > rnd["mean_return"]


def test_same_seed_same_frames_and_actions(tmp_path):
    store = Store(str(tmp_path / "store"))
    for name in ("a", "b"):
        create_dataset(
            DatasetSpec(name=name, episodes=3, steps=20, seed=5, image_size=32), store, workers=2, progress=False
        )
    create_dataset(DatasetSpec(name="c", episodes=3, steps=20, seed=6, image_size=32), store, workers=1, progress=False)
    cols = ["frame", "action", "reward", "seed"]
    a, b, c = (store.read_steps(n, cols) for n in ("a", "b", "c"))
    assert a.num_rows == 60
    for col in cols:
        assert a.column(col).equals(b.column(col)), col
    assert not a.column("action").equals(c.column("action"))
    frame = decode_png(a.column("frame")[0].as_py())
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    meta = store.get_dataset_meta("a")
    for key in ("expert", "task", "episodes", "steps", "seed", "success_rate", "mean_return", "created_at", "version"):
        assert meta[key] is not None, key
    assert meta["status"] == "ready"


def test_recreating_is_refused_unless_overwrite(tmp_path):
    store = Store(str(tmp_path / "store"))
    spec = DatasetSpec(name="d", episodes=2, steps=15, image_size=0)
    create_dataset(spec, store, workers=1, progress=False)
    with pytest.raises(DatasetExists, match="already exists"):
        create_dataset(spec, store, workers=1, progress=False)
    meta = create_dataset(
        DatasetSpec(name="d", episodes=3, steps=15, image_size=0), store, workers=1, overwrite=True, progress=False
    )
    assert meta["episodes"] == 3 and store.count_steps("d") == 45


def test_a_claimed_dataset_is_running_at_once_and_create_fills_it_in(tmp_path):
    """The trainer route's path: claim (answer 202 with `running`), then the one builder resumes the claim."""
    from vjepa_robot_lab.data.datasets import claim_dataset

    store = Store(str(tmp_path / "store"))
    spec = DatasetSpec(name="c", episodes=2, steps=10, image_size=0)
    claim_dataset(spec, store)
    meta = store.get_dataset_meta("c")
    assert meta["status"] == "running" and meta["owner_pid"] == os.getpid() and meta["episodes_done"] == 0
    with pytest.raises(DatasetExists):
        claim_dataset(spec, store)
    ready = create_dataset(spec, store, workers=1, resume=True, progress=False)
    assert ready["status"] == "ready" and ready["created_at"] == meta["created_at"] and store.count_steps("c") == 20
    claim_dataset(DatasetSpec(name="c", episodes=1, steps=10, image_size=0), store, overwrite=True)  # drops the old
    assert store.count_steps("c") == 0 and store.get_dataset_meta("c")["episodes"] == 1


@pytest.mark.parametrize(
    "args, word",
    [
        (["--expert", "nobody"], "expert"),
        (["--task", "medium"], "task"),
        (["--episodes", "0"], "episodes"),
        (["--steps", "-3"], "steps"),
        (["--image-size", "5"], "image_size"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_argument(tmp_path, args, word):
    proc = subprocess.run(
        [sys.executable, "-m", "vjepa_robot.cli", "datasets", "create", "x", *args, "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert word in proc.stderr, proc.stderr


def test_bad_dataset_name_is_rejected():
    with pytest.raises(ValueError, match="invalid dataset name"):
        DatasetSpec(name="../etc")


@pytest.mark.slow
def test_killed_writer_leaves_no_partial_episode_and_resume_completes(tmp_path):
    store_dir = str(tmp_path / "store")
    cmd = [
        sys.executable,
        "-m",
        "vjepa_robot.cli",
        "datasets",
        "create",
        "k",
        "--episodes",
        "8",
        "--steps",
        "40",
        "--image-size",
        "32",
        "--workers",
        "1",
        "--store",
        store_dir,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store(store_dir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(store.episodes_present("k")) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    present = store.episodes_present("k")
    assert 3 <= len(present) < 8
    t = store.read_steps("k", ["reward"])
    counts = np.bincount(t.column("episode").to_numpy())
    assert set(counts[counts > 0]) == {40}  # every visible episode is whole
    info = dataset_info(store, "k")
    assert info["status"] == "failed" and "--resume" in info["error"]
    # re-running with --resume completes it
    subprocess.run([*cmd, "--resume"], check=True, capture_output=True, timeout=300)
    assert store.count_steps("k") == 8 * 40
    assert dataset_info(store, "k")["status"] == "ready"
    assert steps_table_name("k") in store.table_names()


def test_no_renderer_gives_a_clear_error(tmp_path):
    code = "from vjepa_robot_lab.envs.env import make; make('easy', image_size=16)"
    env = {**os.environ, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode == 0:
        pytest.skip("osmesa is installed here, so there is no failure to observe")
    assert "egl" in proc.stderr and "osmesa" in proc.stderr


def test_action_repeat_counts_simulator_steps_and_keeps_every_reward():
    env = make("easy", episode_steps=40, image_size=0, action_repeat=4)
    ts, n = env.reset(seed=1), 0
    while not ts.last():
        ts = env.step(np.array([0.3, 0.3]))
        n += 1
        assert ts.reward == pytest.approx(sum(env.sim_rewards[-4:]))
    assert n == 10 and ts.step == 10 and len(env.sim_rewards) == 40
    with pytest.raises(ValueError, match="multiple of action_repeat"):
        make("easy", episode_steps=42, image_size=0, action_repeat=4)
