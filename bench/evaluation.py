"""Benchmark: live evaluation steps/s with the encoder over HTTP vs in process, in one run.

    python bench/evaluation.py [--episodes 8] [--steps 50] [--parallel-envs 8] [--image-size 256] [--preset tiny]

Both modes run the same loop (vjepa_robot_lab/evaluation/evaluate.py): render 8 envs in lockstep, form windows, embed
them
(one POST /encode of 8 windows over loopback, or Encoder.encode in this process), run a BC-shaped MLP, step.
Goal: HTTP >= 80% of in-process steps/s. Rounds alternate the two modes; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import numpy as np
import torch

import vjepa_robot  # noqa: F401
from services.encoder.model import Encoder
from vjepa_robot.harness import cli_service
from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy, evaluate
from vjepa_robot_lab.learning.bc import BCPolicy
from vjepa_robot_lab.perception.features import FeatureSource, VJEPA2Features


class InProcessVJEPA2(FeatureSource):
    """The same encoder, called directly: what evaluation would cost without the service boundary."""

    name, needs_frames = "vjepa2", True

    def __init__(self, encoder: Encoder):
        self.encoder, self.dim = encoder, encoder.dim

    def online(self, timesteps, episode_seeds):
        return self.encoder.encode(np.stack([ts.window for ts in timesteps]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--parallel-envs", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    store = tempfile.mkdtemp(prefix="bench-eval-")
    enc = cli_service(
        "encoder", "--preset", args.preset, "--store", store,
        log=os.path.join(store, "encoder.log"), env={**os.environ, "VJEPA_ROBOT_THREADS": "1"},
    )  # fmt: skip
    try:
        url = enc.start().url
        http = VJEPA2Features(url)
        local = InProcessVJEPA2(Encoder.from_preset(args.preset, num_threads=1))
        assert http.encoder_id == local.encoder.encoder_id, "the two modes must run the same encoder"
        policy = BCPolicy(http.dim).eval()

        @torch.no_grad()
        def act(x):
            return policy(torch.from_numpy(x)).numpy()

        kw = dict(
            task="easy",
            episodes=args.episodes,
            steps=args.steps,
            parallel_envs=args.parallel_envs,
            image_size=args.image_size,
        )
        best = {"http": 0.0, "in process": 0.0}
        for _ in range(args.rounds):
            for mode, src in (("in process", local), ("http", http)):
                r = evaluate(FeaturePolicy(act, src), **kw)
                best[mode] = max(best[mode], r["steps_per_second"])
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; preset {args.preset}; "
            f"{args.parallel_envs} envs x {args.steps} steps x {args.episodes} episodes, "
            f"{args.image_size}x{args.image_size} frames\n"
        )
        print("| evaluation | env steps/s |\n|---|---|")
        print(f"| encoder in process | {best['in process']:.1f} |")
        print(f"| encoder over HTTP (one POST /encode per lockstep step) | {best['http']:.1f} |")
        print(f"| HTTP / in process | {best['http'] / best['in process']:.0%} (goal >= 80%) |")
    finally:
        enc.stop()


if __name__ == "__main__":
    main()
