"""Env steps/s of the Gymnasium vjepa2 vector env against the trainer's own live loop (ReacherVecEnv), in one run.

    nice python bench/gym_throughput.py --envs 8 --image-size 64 --steps 25 --rounds 3
        # starts `vjepa-robot serve encoder --preset tiny` itself (the random-init stand-in, one thread)

Both loops step N reachers with uniform random actions (action repeat 4, 1000-step episodes) and ask the encoder for
one frame-stream step per vector step; rounds alternate (trainer, gym, trainer, gym, ...) so a change in machine load
hits both. Also a single Gymnasium env (one stream of one env). Env steps are simulator steps (x action repeat).
Writes bench/results/gym_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sac import start_encoder  # noqa: E402  (bench/sac.py: the tiny encoder as a subprocess)


def rate(step, reset, n_envs: int, steps: int, repeat: int, rng) -> float:
    reset()
    step(rng.uniform(-1, 1, (n_envs, 2)).astype(np.float32))  # the stream's first step opens it: not timed
    t0 = time.perf_counter()
    for _ in range(steps):
        step(rng.uniform(-1, 1, (n_envs, 2)).astype(np.float32))
    return steps * n_envs * repeat / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=25, help="timed vector steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    import gymnasium as gym

    import vjepa_robot  # noqa: F401
    from vjepa_robot_lab.envs.vec_env import ReacherVecEnv
    from vjepa_robot_lab.perception.features import make_feature_source

    repeat, rng = 4, np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_encoder(Path(tmp))
        try:
            own = ReacherVecEnv(
                make_feature_source("vjepa2", encoder_url=url),
                num_envs=a.envs,
                task="easy",
                episode_steps=1000,
                action_repeat=repeat,
                image_size=a.image_size,
            )
            venv = gym.make_vec(
                "vjepa_robot/reacher-easy-v0",
                num_envs=a.envs,
                vectorization_mode="vector_entry_point",
                features="vjepa2",
                encoder_url=url,
                image_size=a.image_size,
                action_repeat=repeat,
            )
            single = gym.make(
                "vjepa_robot/reacher-easy-v0",
                features="vjepa2",
                encoder_url=url,
                image_size=a.image_size,
                action_repeat=repeat,
            )
            out: dict[str, list[float]] = {"trainer_ReacherVecEnv": [], "gymnasium_vector": [], "gymnasium_single": []}
            for _ in range(a.rounds):
                out["trainer_ReacherVecEnv"].append(rate(own.step, own.reset, a.envs, a.steps, repeat, rng))
                out["gymnasium_vector"].append(
                    rate(venv.step, lambda: venv.reset(seed=0), a.envs, a.steps, repeat, rng)
                )
                out["gymnasium_single"].append(
                    rate(lambda x: single.step(x[0]), lambda: single.reset(seed=0), 1, a.steps, repeat, rng)
                )
                print({k: round(v[-1], 1) for k, v in out.items()}, flush=True)
            own.features.close()
            venv.close()
            single.close()
        finally:
            proc.stop()
    result = {
        "envs": a.envs,
        "image_size": a.image_size,
        "action_repeat": repeat,
        "steps_per_round": a.steps,
        "encoder": "tiny random-init V-JEPA 2 (stand-in), one thread, loopback",
        "env_steps_per_s": {k: [round(x, 1) for x in v] for k, v in out.items()},
        "median": {k: round(float(np.median(v)), 1) for k, v in out.items()},
    }
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "gym_throughput.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["median"]))


if __name__ == "__main__":
    main()
