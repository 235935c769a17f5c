"""The Gymnasium envs (vjepa_robot/gym.py): registration, check_env, truncation, seeds, the vector form, SB3's SAC.

Real parts: dm_control rendering, the encoder service on loopback with the tiny random-init V-JEPA 2 (a stand-in
for the real weights), the trainer's own env wrappers and feature sources, stable-baselines3.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
from conftest import run_server  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

import vjepa_robot  # noqa: E402,F401  (registers the ids)
from vjepa_robot.gym import ENV_IDS, TASKS, ReacherVectorEnv  # noqa: E402
from vjepa_robot_client.contract import TASKS as CONTRACT_TASKS  # noqa: E402
from vjepa_robot_lab.envs.env import EVAL_SEED_BASE, eval_episode_seed, make, state_features, train_episode_seed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"episode_steps": 40, "action_repeat": 4}  # 10 agent steps per episode
H = 32


@pytest.fixture(scope="module")
def encoder_url(tmp_path_factory, tiny_encoder):
    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    settings = EncoderSettings(
        store=str(tmp_path_factory.mktemp("store")), device="cpu", threads=1, max_batch=16, max_wait_ms=1.0
    )
    with run_server(create_app(settings, encoder=tiny_encoder), startup_timeout=60) as url:
        yield url


def test_every_trainer_task_has_an_env_id():
    assert TASKS == CONTRACT_TASKS
    assert {ENV_IDS["easy"], ENV_IDS["hard"]} == {"vjepa_robot/reacher-easy-v0", "vjepa_robot/reacher-hard-v0"}
    assert ENV_IDS["walker-walk"] == "vjepa_robot/walker-walk-v0"  # other tasks: vjepa_robot/<task>-v0
    for env_id in ENV_IDS.values():
        spec = gym.spec(env_id)
        assert spec.entry_point == "vjepa_robot.gym:ReacherEnv"
        assert spec.vector_entry_point == "vjepa_robot.gym:ReacherVectorEnv"


def test_import_is_cheap_and_needs_no_gymnasium():
    """import vjepa_robot loads neither dm_control nor torch; without gymnasium it registers nothing, silently."""
    code = (
        "import sys; import vjepa_robot, gymnasium; heavy = ('dm_control', 'torch', 'lancedb', 'mujoco'); "
        "print(json.dumps({'heavy': sorted(m for m in heavy if m in sys.modules),"
        "'ids': [k for k in gymnasium.registry if k.startswith('vjepa_robot/')]}))"
    )
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got == {"heavy": [], "ids": list(ENV_IDS.values())}  # reacher's two, then one per other task
    # gymnasium missing (the encoder image): sys.modules[name] = None makes find_spec and import see no gymnasium
    code = "import sys; sys.modules['gymnasium'] = None; import vjepa_robot; print('gym' in dir(vjepa_robot))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _check(env) -> list[str]:
    """gymnasium's check_env; returns its warnings other than the unbounded-Box ones (features are unbounded)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    return [str(w.message) for w in caught if "infinity" not in str(w.message)]


@pytest.mark.parametrize("features", ["state", "random"])
def test_check_env_passes(features):
    env = gym.make("vjepa_robot/reacher-easy-v0", features=features, **SHORT)
    assert _check(env.unwrapped) == []
    env.close()


def test_check_env_passes_vjepa2_with_rendering(encoder_url):
    env = gym.make(
        "vjepa_robot/reacher-hard-v0",
        features="vjepa2",
        encoder_url=encoder_url,
        image_size=H,
        render_mode="rgb_array",
        **SHORT,
    )
    assert _check(env.unwrapped) == []
    obs, _ = env.reset(seed=1)
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    assert env.render().shape == (H, H, 3)
    env.close()


def test_time_limit_is_truncated_never_terminated_and_seeds_follow_the_project():
    env = gym.make("vjepa_robot/reacher-easy-v0", features="state", **SHORT)
    ref = make("easy", episode_steps=40, image_size=0, action_repeat=4)  # the trainer's own env, same recipe
    rng = np.random.default_rng(0)
    for k in range(2):
        obs, info = env.reset(seed=7) if k == 0 else env.reset()
        assert info["episode_seed"] == train_episode_seed(7, k) < EVAL_SEED_BASE
        ts = ref.reset(info["episode_seed"])
        np.testing.assert_array_equal(obs, state_features(ts.observation))
        steps, truncated = 0, False
        while not truncated:
            a = rng.uniform(-1, 1, 2).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(a)
            ts = ref.step(a)
            np.testing.assert_array_equal(obs, state_features(ts.observation))
            assert reward == ts.reward and terminated is False
            steps += 1
        assert steps == 10 and {"success", "sim_return"} <= set(info)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(2, np.float32))
    ev = gym.make("vjepa_robot/reacher-easy-v0", features="state", split="eval", **SHORT)
    seeds = [ev.reset(seed=0)[1]["episode_seed"], ev.reset()[1]["episode_seed"]]
    assert seeds == [eval_episode_seed(0, 0), eval_episode_seed(0, 1)] and min(seeds) >= EVAL_SEED_BASE
    with pytest.raises(ValueError, match="split"):
        gym.make("vjepa_robot/reacher-easy-v0", features="state", split="test")
    with pytest.raises(ValueError, match="multiple of action_repeat"):
        gym.make("vjepa_robot/reacher-easy-v0", features="state", episode_steps=42, action_repeat=4)
    with pytest.raises(ValueError, match="encoder"):
        gym.make("vjepa_robot/reacher-easy-v0", features="vjepa2")


def test_vector_env_is_one_stream_step_per_vector_step_and_matches_single_envs(encoder_url):
    """vjepa2 vector env: SAME_STEP autoreset, truncations only, final_obs = the single env's last observation."""
    n = 3
    venv = gym.make_vec(
        "vjepa_robot/reacher-easy-v0",
        num_envs=n,
        vectorization_mode="vector_entry_point",
        features="vjepa2",
        encoder_url=encoder_url,
        image_size=H,
        **SHORT,
    )
    assert isinstance(venv, ReacherVectorEnv) and venv.metadata["autoreset_mode"].name == "SAME_STEP"
    stream_steps = []
    src = venv.features
    obs, info = venv.reset(seed=5)
    (stream,) = src._streams.values()  # the one (n, H, W) frame stream
    stream_step = stream.step
    stream.step = lambda *a, **k: stream_steps.append(1) or stream_step(*a, **k)
    assert obs.shape == (n, src.dim) and list(info["episode_seed"]) == [train_episode_seed(5, i) for i in range(n)]
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (10, n, 2)).astype(np.float32)
    for t in range(10):
        obs, rewards, terminated, truncated, info = venv.step(actions[t])
        assert not terminated.any()
    assert truncated.all() and info["_final_obs"].all() and len(stream_steps) == 10
    assert list(info["final_info"]["episode_seed"]) == [train_episode_seed(5, i) for i in range(n)]
    # env 1 alone, same episode seed and actions: the same last observation (the single env's own stream)
    single = gym.make(
        "vjepa_robot/reacher-easy-v0", features="vjepa2", encoder_url=encoder_url, image_size=H, **SHORT
    ).unwrapped
    single.reset(seed=5)
    single._seed_base, single._episode = 5, 1  # episode 1 of seed 5 is vector env 1's first episode
    single.reset()
    for t in range(10):
        last, *_ = single.step(actions[t, 1])
    np.testing.assert_allclose(info["final_obs"][1], last, rtol=1e-4, atol=1e-4)
    single.close()
    venv.close()


@pytest.mark.slow
def test_sb3_sac_example_trains_at_a_tiny_budget():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "sb3_sac.py"),
            "--steps",
            "320",
            "--learning-starts",
            "160",
            "--episode-steps",
            "80",
            "--eval-episodes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["env_steps"] == 320 and len(result["returns"]) == 2
    assert 0.0 <= result["mean_return"] <= 80.0 and 0.0 <= result["success_rate"] <= 1.0


def test_vector_env_on_a_task_without_success_reports_none_not_false():
    """cartpole defines no success: an ended episode's final_info says None (unknown), never a silent False."""
    from vjepa_robot.gym import make_vec

    venv = make_vec("cartpole-balance", num_envs=2, features="state", episode_steps=16, action_repeat=8)
    venv.reset(seed=0)
    for _ in range(2):
        _, _, _, truncated, infos = venv.step(np.zeros((2, venv.single_action_space.shape[0]), np.float32))
    assert truncated.all()
    assert list(infos["final_info"]["success"]) == [None, None]
    assert (infos["final_info"]["sim_return"] > 0).all()  # cartpole-balance pays for an upright pole
    venv.close()


def test_an_env_left_without_action_repeat_acts_at_its_tasks():
    """As SAC's request: a left-out action repeat is the task's own (tasks.py), an explicit one is kept."""
    import gymnasium

    import vjepa_robot.gym as vg

    vg.register()
    walker = gymnasium.make(vg.ENV_IDS["walker-stand"], episode_steps=20)
    reacher = gymnasium.make(vg.ENV_IDS["easy"], episode_steps=20)
    given = gymnasium.make(vg.ENV_IDS["walker-stand"], episode_steps=20, action_repeat=4)
    try:
        assert walker.unwrapped.action_repeat == 2 and reacher.unwrapped.action_repeat == 4
        assert given.unwrapped.action_repeat == 4
    finally:
        for e in (walker, reacher, given):
            e.close()
