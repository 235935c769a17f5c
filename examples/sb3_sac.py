"""Stable-Baselines3's SAC on the vjepa-robot Gymnasium env: the project's features in a library people already use.

    pip install -e ".[gym]"                                       # gymnasium + stable-baselines3 (+ the trainer stack)
    python examples/sb3_sac.py --features state --steps 20000     # the state oracle, no encoder needed
    vjepa-robot serve encoder --preset tiny &                     # (a stand-in: random-init V-JEPA 2)
    python examples/sb3_sac.py --features vjepa2 --encoder-url http://127.0.0.1:8001 --image-size 64 --steps 4000

Hyper-parameters are the project's own SAC defaults (TrainSACRequest, vjepa_robot_lab/learning/sac.py), so the two can
be
compared at the same budget: action repeat 4, 1000-step episodes, lr 1e-3, batch 256, tau 0.01, gamma 0.99, 3-step
returns, 2 gradient steps per agent transition, initial entropy coefficient 0.1 (auto-tuned), [256, 64] networks,
4000 simulator steps of uniform random actions first. Differences that remain: one env here (ours steps 16 in
lockstep) and no input scaling (ours scales `state` inputs by the warm-up observations' mean and std).

Evaluation is deterministic on the project's evaluation seeds (split="eval": episode k is eval_episode_seed(0, k),
the episodes our own SAC's final_eval uses). --steps counts simulator steps (action repeats counted), as ours do.
Prints one JSON line: {"features", "env_steps", "mean_return", "std_return", "success_rate", "returns", "wall_s"}.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC

import vjepa_robot  # noqa: F401  (registers vjepa_robot/reacher-{easy,hard}-v0)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="easy", choices=["easy", "hard"])
    p.add_argument("--features", default="state", choices=["state", "vjepa2", "random"])
    p.add_argument("--encoder-url", default=None, help="encoder service for --features vjepa2")
    p.add_argument("--image-size", type=int, default=256, help="rendered frame size (vjepa2)")
    p.add_argument("--steps", type=int, default=20_000, help="simulator steps of training (action repeats counted)")
    p.add_argument("--action-repeat", type=int, default=4)
    p.add_argument("--episode-steps", type=int, default=1000, help="simulator steps per episode")
    p.add_argument("--learning-starts", type=int, default=4000, help="simulator steps of random actions first")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the project's SAC uses 1)")
    return p.parse_args()


def env_kwargs(a: argparse.Namespace) -> dict:
    return {
        "features": a.features,
        "encoder_url": a.encoder_url,
        "image_size": a.image_size,
        "action_repeat": a.action_repeat,
        "episode_steps": a.episode_steps,
    }


def evaluate(model: SAC, a: argparse.Namespace) -> dict:
    """Deterministic episodes on evaluation seeds eval_episode_seed(0, k), k = 0 .. eval_episodes - 1."""
    env = gym.make(f"vjepa_robot/reacher-{a.task}-v0", split="eval", **env_kwargs(a))
    returns, successes = [], []
    obs, _ = env.reset(seed=0)
    for _ in range(a.eval_episodes):
        ret, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            ret += float(reward)
            done = terminated or truncated
        returns.append(ret)
        successes.append(bool(info["success"]))
        obs, _ = env.reset()  # continues the evaluation seed sequence
    env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "success_rate": float(np.mean(successes)),
        "returns": [round(r, 1) for r in returns],
    }


def main() -> None:
    a = parse_args()
    torch.set_num_threads(a.threads)
    env = gym.make(f"vjepa_robot/reacher-{a.task}-v0", **env_kwargs(a))  # training seeds: train_episode_seed(seed, k)
    env.reset(seed=a.seed)
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=1e-3,
        buffer_size=1_000_000,
        batch_size=256,
        tau=0.01,
        gamma=0.99,
        learning_starts=a.learning_starts // a.action_repeat,
        train_freq=1,
        gradient_steps=2,
        n_steps=3,
        ent_coef="auto_0.1",
        policy_kwargs={"net_arch": [256, 64]},
        seed=a.seed,
        device="cpu",
        verbose=0,
    )
    t0 = time.perf_counter()
    model.learn(total_timesteps=a.steps // a.action_repeat)  # SB3 counts agent steps
    wall = time.perf_counter() - t0
    env.close()
    result = {
        "features": a.features,
        "task": a.task,
        "env_steps": a.steps,
        "seed": a.seed,
        **evaluate(model, a),
        "wall_s": round(wall, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
