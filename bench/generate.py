"""Benchmark: dataset generation frames/s with 1 and 2 workers, beside bare physics.render, in one run.

    python bench/generate.py [--episodes 8] [--steps 100] [--image-size 256]

Prints a markdown table: bare render fps (one process), generation fps with 1 and 2 workers (render + expert +
PNG + LanceDB append), parallel efficiency = fps(2) / (2 * fps(1)), and storage per frame (PNG bytes, table bytes
on disk), plus PNG encode/decode cost per frame. Run by hand; results go into the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import vjepa_robot  # noqa: F401  (MUJOCO_GL)
from services.common.store import Store, decode_png, encode_png
from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset


def bare_render_fps(size: int, n: int = 200) -> float:
    from dm_control import suite

    env = suite.load("reacher", "easy")
    env.reset()
    env.physics.render(height=size, width=size, camera_id=0)
    t = time.perf_counter()
    for _ in range(n):
        env.physics.step()
        env.physics.render(height=size, width=size, camera_id=0)
    return n / (time.perf_counter() - t)


def generation_fps(root: Path, workers: int, episodes: int, steps: int, size: int) -> tuple[float, Store, str]:
    store = Store(str(root / f"w{workers}"))
    name = f"bench-w{workers}"
    t = time.perf_counter()
    create_dataset(
        DatasetSpec(name=name, episodes=episodes, steps=steps, image_size=size), store, workers=workers, progress=False
    )
    return episodes * steps / (time.perf_counter() - t), store, name


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--image-size", type=int, default=256)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    try:
        render = bare_render_fps(args.image_size)
        # warm both paths once (imports, EGL context, spawn) so the timed runs compare like with like
        generation_fps(root / "warm", 2, 2, 5, args.image_size)
        fps1, store, name = generation_fps(root, 1, args.episodes, args.steps, args.image_size)
        fps2, _, _ = generation_fps(root, 2, args.episodes, args.steps, args.image_size)
        frames = store.read_steps(name, ["frame"]).column("frame").to_pylist()
        png = np.array([len(f) for f in frames])
        table_bytes = dir_bytes(Path(store.uri) / f"steps__{name}.lance")
        sample = decode_png(frames[len(frames) // 2])
        t = time.perf_counter()
        for _ in range(50):
            encode_png(sample)
        enc_ms = (time.perf_counter() - t) / 50 * 1e3
        t = time.perf_counter()
        for _ in range(50):
            decode_png(frames[len(frames) // 2])
        dec_ms = (time.perf_counter() - t) / 50 * 1e3
        raw = args.image_size * args.image_size * 3
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}; {args.episodes} episodes x {args.steps} steps, "
            f"{args.image_size}x{args.image_size}\n"
        )
        print("| measure | value |\n|---|---|")
        print(f"| bare physics.step + render, 1 process | {render:.1f} frames/s |")
        print(f"| generation, 1 worker | {fps1:.1f} frames/s ({fps1 / render:.0%} of bare render) |")
        print(f"| generation, 2 workers | {fps2:.1f} frames/s |")
        print(f"| parallel efficiency fps(2) / (2 x fps(1)) | {fps2 / (2 * fps1):.0%} |")
        print(
            f"| PNG bytes per frame (mean) | {png.mean() / 1024:.1f} KiB "
            f"({png.mean() / raw:.1%} of raw {raw // 1024} KiB) |"
        )
        print(f"| steps table on disk per step (frame + state) | {table_bytes / len(frames) / 1024:.1f} KiB |")
        print(f"| PNG encode / decode per frame | {enc_ms:.2f} ms / {dec_ms:.2f} ms |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
