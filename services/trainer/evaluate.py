"""Live evaluation: `parallel_envs` reacher envs step in lockstep; one batched feature call per step.

For `vjepa2` features that call is one frame-stream step over HTTP (the B newest frames; the encoder keeps the
windows), so evaluation measures the whole served pipeline: render -> frame -> encoder service -> policy -> torques.

The same loop evaluates trained policies (BC, SAC) and the baselines (the `jacobian` and `p-controller`
experts and the random policy): a policy is anything that maps the B current time steps to (B, 2) actions.
Evaluation seeds come from env.eval_episode_seed, a range no training episode uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from .env import episode_success, eval_episode_seed, wilson_ci95
from .experts import make_expert
from .features import FeatureSource

GIF_SIZE = 128


class Policy(Protocol):
    needs_frames: bool

    def reset(self, seeds: Sequence[int]) -> None: ...
    def act(self, envs: Sequence, timesteps: Sequence, seeds: Sequence[int]) -> np.ndarray: ...


class FeaturePolicy:
    """A trained network on top of a feature source: features.online -> policy_fn -> (B, 2) actions."""

    def __init__(self, policy_fn: Callable[[np.ndarray], np.ndarray], features: FeatureSource):
        self.policy_fn, self.features = policy_fn, features
        self.needs_frames = features.needs_frames

    def reset(self, seeds):
        pass

    def act(self, envs, timesteps, seeds):
        x = self.features.online(timesteps, seeds)  # (B, D) float32; the SDK's retry policy rides out encoder restarts
        return np.asarray(self.policy_fn(x), dtype=np.float32).reshape(len(timesteps), 2)


class ExpertPolicy:
    """A scripted expert (or the random policy) acting on each env's simulator state."""

    needs_frames = False

    def __init__(self, name: str):
        self.name = name
        self.experts: list = []

    def reset(self, seeds):
        self.experts = [make_expert(self.name) for _ in seeds]
        for e, s in zip(self.experts, seeds):
            e.reset(s)

    def act(self, envs, timesteps, seeds):
        return np.stack([e.act(env.physics, ts) for e, env, ts in zip(self.experts, envs, timesteps)])


def evaluate(
    policy: Policy,
    *,
    task: str = "easy",
    episodes: int = 100,
    steps: int = 200,
    seed: int = 0,
    parallel_envs: int = 8,
    image_size: int = 256,
    gif_episodes: int = 0,
    gif_path: Path | str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    action_repeat: int = 1,
) -> dict:
    """Roll `policy` out for `episodes` live episodes; returns the evaluation record (success, CI, returns).

    `steps` counts simulator steps. A policy trained with an action repeat (SAC) is evaluated with the same
    repeat, so it acts, and sees windows, at the rate it was trained at; success and return are still judged on
    every simulator step's reward.
    """
    from .vec_env import agent_steps, make_env

    if episodes < 1 or steps < 1 or parallel_envs < 1:
        raise ValueError("episodes, steps and parallel_envs must be >= 1")
    n_envs = min(parallel_envs, episodes)
    size = image_size if policy.needs_frames else 0
    n_agent = agent_steps(steps, action_repeat)
    envs = [make_env(task, seed=0, episode_steps=steps, action_repeat=action_repeat, image_size=size)
            for _ in range(n_envs)]
    results: list[dict] = []
    gif_frames: list[list[np.ndarray]] = [[] for _ in range(min(gif_episodes, n_envs))]
    t0 = time.perf_counter()
    env_steps = 0
    for start in range(0, episodes, n_envs):
        wave = list(range(start, min(start + n_envs, episodes)))
        seeds = [eval_episode_seed(seed, i) for i in wave]
        active = envs[: len(wave)]
        timesteps = [env.reset(s) for env, s in zip(active, seeds)]
        policy.reset(seeds)
        record_gif = start == 0 and gif_frames
        for _ in range(n_agent):
            if record_gif:
                for g, frames in enumerate(gif_frames):
                    frames.append(_gif_frame(active[g], timesteps[g]))
            actions = policy.act(active, timesteps, seeds)  # (B, 2)
            timesteps = [env.step(a) for env, a in zip(active, actions)]
        rewards = np.asarray([env.sim_rewards for env in active], np.float32)  # (B, steps): every simulator step
        env_steps += rewards.size
        for i, s, r in zip(wave, seeds, rewards):
            results.append({"seed": s, "success": episode_success(r), "return": float(r.sum())})
        if on_progress:
            on_progress(len(results), episodes)
    wall = time.perf_counter() - t0
    successes = sum(r["success"] for r in results)
    record = {
        "task": task,
        "success_rate": successes / len(results),
        "success_ci95": list(wilson_ci95(successes, len(results))),
        "mean_return": float(np.mean([r["return"] for r in results])),
        "episodes": results,
        "steps_per_second": env_steps / wall if wall > 0 else None,
        "wall_s": round(wall, 2),
        "parallel_envs": n_envs,
    }
    if gif_frames and gif_path:
        record["gif"] = str(write_gif(gif_frames, Path(gif_path)))
    return record


def _gif_frame(env, ts) -> np.ndarray:
    if ts.frame is not None:
        frame = ts.frame
        if frame.shape[0] != GIF_SIZE:
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize((GIF_SIZE, GIF_SIZE)))
        return frame
    return env.physics.render(height=GIF_SIZE, width=GIF_SIZE, camera_id=0)


def write_gif(episodes_frames: list[list[np.ndarray]], path: Path, fps: int = 25) -> Path:
    """Side-by-side rollouts, every second step, as one looping GIF."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    n = min(len(f) for f in episodes_frames)
    frames = [np.concatenate([ep[t] for ep in episodes_frames], axis=1) for t in range(0, n, 2)]
    imageio.mimsave(path, frames, duration=1000 * 2 / fps / 1000, loop=0)
    return path


def evaluate_policy(
    policy_fn: Callable[[np.ndarray], np.ndarray],
    features: FeatureSource,
    task: str = "easy",
    episodes: int = 100,
    steps: int = 200,
    seed: int = 0,
    parallel_envs: int = 8,
    **kwargs,
) -> dict:
    """Evaluate a trained network on a feature source (convenience for tests and scripts)."""
    return evaluate(FeaturePolicy(policy_fn, features), task=task, episodes=episodes, steps=steps, seed=seed,
                    parallel_envs=parallel_envs, **kwargs)
