"""Throughput of SAC on features: env steps/s (simulator steps, action repeat 4) and gradient updates/s,
with state features and with V-JEPA 2 (tiny preset, over HTTP) features, plus where the time goes.

    python bench/sac.py                      # starts `vjepa-robot serve encoder --preset tiny` itself
    python bench/sac.py --encoder-url http://127.0.0.1:8001 --envs 16 --steps 20
    python bench/sac.py --replay-rss         # also fill a 1M x 1024 float16 replay buffer and measure RSS

One thread for torch (the machine is shared). Writes bench/results/sac_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vjepa_robot_client.contract import TrainSACRequest
from vjepa_robot_lab.envs.vec_env import ReacherVecEnv
from vjepa_robot_lab.learning.replay import Replay, replay_bytes
from vjepa_robot_lab.learning.sac import SAC, Nets, train_sac
from vjepa_robot_lab.perception.features import make_feature_source

RESULTS = Path(__file__).resolve().parent / "results"


class Timed:
    """Wraps a feature source, timing its online() calls (for vjepa2: render-free POST /encode round trips)."""

    def __init__(self, src):
        self.src, self.name, self.dim, self.needs_frames, self.t, self.calls = (
            src,
            src.name,
            src.dim,
            src.needs_frames,
            0.0,
            0,
        )

    def online(self, timesteps, seeds):
        t0 = time.perf_counter()
        x = self.src.online(timesteps, seeds)
        self.t += time.perf_counter() - t0
        self.calls += 1
        return x


def env_rate(src, envs: int, vec_steps: int, image_size: int, action_repeat: int = 4) -> dict:
    """Env steps/s of the VecEnv alone (random actions), and the share spent in features.online."""
    timed = Timed(src)
    venv = ReacherVecEnv(
        timed, num_envs=envs, episode_steps=1000, action_repeat=action_repeat, seed=0, image_size=image_size
    )
    venv.reset()
    venv.step(np.zeros((envs, 2)))  # warm up (first render / first request)
    timed.t, timed.calls = 0.0, 0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(vec_steps):
        venv.step(rng.uniform(-1, 1, (envs, 2)))
    dt = time.perf_counter() - t0
    env_steps = vec_steps * envs * action_repeat
    return {
        "features": src.name,
        "dim": int(src.dim),
        "envs": envs,
        "image_size": image_size if src.needs_frames else 0,
        "vector_steps": vec_steps,
        "env_steps_per_s": round(env_steps / dt, 1),
        "agent_steps_per_s": round(vec_steps * envs / dt, 1),
        "ms_per_vector_step": round(1000 * dt / vec_steps, 1),
        "features_share": round(timed.t / dt, 3),
        "features_calls_per_vector_step": timed.calls / vec_steps,
    }


def update_rate(dim: int, batch: int = 256, updates: int = 300) -> dict:
    """Gradient updates/s of vjepa_robot_lab.learning.sac.SAC with the findings' networks on dim-d features
    (replay filled at random, n-step 3)."""
    agent = SAC(dim, TrainSACRequest(batch_size=batch), Nets())
    replay = Replay(10_000, 1, dim, n_step=3)
    rng = np.random.default_rng(0)
    for _ in range(2_000):
        replay.add(
            rng.standard_normal((1, dim)),
            rng.standard_normal((1, dim)),
            rng.uniform(-1, 1, (1, 2)),
            np.zeros(1),
            np.zeros(1, bool),
            np.zeros(1, bool),
        )
    for _ in range(20):  # warm up
        agent.update(replay.sample(batch, rng))
    t0 = time.perf_counter()
    for _ in range(updates):
        agent.update(replay.sample(batch, rng))
    dt = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(updates):
        replay.sample(batch, rng)
    ds = time.perf_counter() - t1
    return {"dim": dim, "batch": batch, "updates_per_s": round(updates / dt, 1), "sample_share": round(ds / dt, 3)}


def train_rate(src, envs: int, image_size: int, vector_steps: int = 24) -> dict:
    """A short train_sac run end to end (env + encode + updates): whole-loop env steps/s and updates/s."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sac_sweep import LocalRun

    per = envs * 4
    cfg = TrainSACRequest(
        features=src.name,
        action_repeat=4,  # `per` above counts 4 simulator steps per action
        parallel_envs=envs,
        total_steps=vector_steps * per,
        learning_starts=vector_steps * per // 2,
        image_size=image_size,
        eval_every=10**9,
        checkpoint_every=10**9,
        final_eval_episodes=1,
        checkpoint_replay=False,
    )
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        m = train_sac(cfg, LocalRun("bench", Path(d)), src)
        wall = time.perf_counter() - t0
    return {
        "features": src.name,
        "envs": envs,
        "image_size": image_size,
        "env_steps": m["env_steps"],
        "updates": m["updates"],
        "wall_s_incl_final_eval": round(wall, 1),
        "env_steps_per_s_last": m.get("env_steps_per_s"),
        "updates_per_s_last": m.get("updates_per_s"),
    }


def replay_rss(n: int = 1_000_000, dim: int = 1024) -> dict:
    import psutil

    proc = psutil.Process()
    before = proc.memory_info().rss
    buf = Replay(n, 16, dim)
    chunk = np.random.default_rng(0).standard_normal((16, dim)).astype(np.float32)
    t0 = time.perf_counter()
    done = np.zeros(16, bool)
    for t in range(buf.slots):
        done[:] = (t % 250) == 249
        buf.add(chunk, chunk, np.zeros((16, 2)), np.zeros(16), done, truncated=done)
    fill = time.perf_counter() - t0
    after = proc.memory_info().rss
    return {
        "transitions": n,
        "dim": dim,
        "dtype": "float16",
        "n_envs": 16,
        "rss_delta_gb": round((after - before) / 1e9, 3),
        "buffer_nbytes_gb": round(buf.nbytes / 1e9, 3),
        "predicted_gb": round(replay_bytes(n, dim) / 1e9, 3),
        "float32_obs_and_next_gb": round(2 * n * dim * 4 / 1e9, 3),
        "fill_s": round(fill, 1),
        "terminal_obs_kept": len(buf.terminal_obs),
    }


def start_encoder(tmp: Path):
    """The tiny encoder as a child process on a free port (vjepa_robot/harness.py): (service, url); stop() it."""
    from vjepa_robot.harness import cli_service

    env = {**os.environ, "VJEPA_ROBOT_STORE": str(tmp / "store"), "OMP_NUM_THREADS": "1"}
    enc = cli_service("encoder", "--preset", "tiny", env=env, log=tmp / "encoder.log", start_timeout=120).start()
    return enc, enc.url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="vector steps for the vjepa2 measurement")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--encoder-url", default=None)
    ap.add_argument("--skip-vjepa", action="store_true")
    ap.add_argument("--replay-rss", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out: dict = {"torch_threads": 1, "cpu_count": os.cpu_count(), "env": [], "updates": []}
    for envs in (1, a.envs):
        out["env"].append(env_rate(make_feature_source("state"), envs, 2000 // envs, 0))
        out["env"].append(env_rate(make_feature_source("random"), envs, 800 // envs, 0))
    for dim in (8, 1024):
        out["updates"].append(update_rate(dim))
    if not a.skip_vjepa:
        proc = None
        try:
            url = a.encoder_url
            if url is None:
                import tempfile

                proc, url = start_encoder(Path(tempfile.mkdtemp()))
            src = make_feature_source("vjepa2", encoder_url=url)
            out["encoder"] = {
                "url_started_here": proc is not None,
                "encoder_id": src.encoder_id,
                "dim": src.dim,
                "model": src.info.model,
                "image_size": src.info.image_size,
            }
            for size in (a.image_size, 128):
                out["env"].append(env_rate(src, a.envs, a.steps, size))
            out["env"].append(env_rate(make_feature_source("state"), a.envs, a.steps, 0))
            out["updates"].append(update_rate(int(src.dim)))
            out["train_vjepa2"] = train_rate(src, a.envs, a.image_size)
        except Exception as exc:  # report, don't hide: the state numbers still stand
            out["vjepa2_error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if proc is not None:
                proc.stop()
    if a.replay_rss:
        out["replay"] = replay_rss()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sac_bench.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
