"""Encode throughput per backbone family, in process on CPU, one run (issue 18).

    nice python bench/families.py                          # the tiny-* random-init stand-ins, 1 thread
    python bench/families.py --presets vitl,dinov2-base,siglip-base --batch 32 --device cuda   # hub access + GPU

For each preset: Encoder.encode on `--batch` 8-frame 256x256 uint8 windows (the renders' size), one warm-up call,
then `--reps` timed calls; prints a markdown row per preset: windows/s, ms per window, D, the model's forward
size (image families run 8 frames per window through the model, video families one clip of 8 frames).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients"))

from services.encoder.model import load_encoder  # noqa: E402  (after the path set-up)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="tiny,tiny-videomae,tiny-dinov2,tiny-siglip")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    w = np.random.default_rng(0).integers(0, 256, (args.batch, 8, 256, 256, 3), dtype=np.uint8)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
        f"batch {args.batch}, {args.reps} timed calls after a warm-up"
    )
    print("| preset | family | pooling / fusion | input | D | windows/s | ms / window |")
    print("|---|---|---|---|---:|---:|---:|")
    for preset in args.presets.split(","):
        enc = load_encoder(preset=preset, device=args.device, num_threads=args.threads)
        enc.encode(w)
        t0 = time.perf_counter()
        for _ in range(args.reps):
            enc.encode(w)
        dt = (time.perf_counter() - t0) / (args.reps * args.batch)
        t, h, _ = enc.token_grid
        what = f"{enc.image_size}px, {t}x{h}x{h} tokens"
        print(
            f"| {preset} | {enc.family.name} | {enc.token_pooling} / {enc.fusion} | {what} | {enc.dim} | "
            f"{1 / dt:.1f} | {1000 * dt:.1f} |"
        )


if __name__ == "__main__":
    main()
