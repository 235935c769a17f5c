"""Bytes on the wire per env-step, measured on real reacher renders: full windows vs frame streams, raw vs compressed.

    python bench/stream_bytes.py --envs 8 --steps 100 --image-size 256 --policy jacobian

Renders `envs` live episodes (dm_control reacher-easy, camera 0, the given policy acting) and, for every vector
step, builds the request body each transport would send, exactly as the SDK builds it (vjepa_robot_client's
to_npy_bytes + compress_body): POST /encode of the N full windows (N, 8, H, W, 3), and a stream step of the N
newest frames (N, H, W, 3). Prints bytes per env-step and compression time per body (one thread, this machine).
No encoder is involved: this measures what the client uploads.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from vjepa_robot_client._transport import compress_body
from vjepa_robot_client.contract import to_npy_bytes
from vjepa_robot_lab.envs.env import eval_episode_seed, make
from vjepa_robot_lab.policies.experts import make_expert


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--policy", default="jacobian", help="jacobian | p-controller | random")
    args = ap.parse_args()

    envs = [make("easy", seed=0, episode_steps=args.steps, image_size=args.image_size) for _ in range(args.envs)]
    experts = [make_expert(args.policy) for _ in envs]
    seeds = [eval_episode_seed(0, i) for i in range(args.envs)]
    timesteps = [env.reset(s) for env, s in zip(envs, seeds)]
    for e, s in zip(experts, seeds):
        e.reset(s)
    totals: dict[str, list[float]] = {}

    def add(name: str, body: np.ndarray, method: str | None) -> None:
        raw = to_npy_bytes(body)
        t0 = time.perf_counter()
        sent, _ = compress_body(raw, method)
        dt = time.perf_counter() - t0
        totals.setdefault(name, [0, 0.0, 0])
        totals[name][0] += len(sent)
        totals[name][1] += dt
        totals[name][2] += 1

    render_s = 0.0
    for _ in range(args.steps):
        windows = np.stack([ts.window for ts in timesteps])
        frames = windows[:, -1]
        for method in (None, "zstd", "gzip"):
            add(f"full windows, {method or 'raw'}", windows, method)
            add(f"stream step, {method or 'raw'}", frames, method)
        t0 = time.perf_counter()
        timesteps = [env.step(e.act(env.physics, ts)) for env, e, ts in zip(envs, experts, timesteps)]
        render_s += time.perf_counter() - t0
    env_steps = args.envs * args.steps
    rows = {
        name: {"bytes_per_env_step": round(b / env_steps), "compress_ms_per_body": round(1000 * t / n, 2)}
        for name, (b, t, n) in totals.items()
    }
    raw_stream = rows["stream step, raw"]["bytes_per_env_step"]
    for row in rows.values():
        row["ratio_vs_raw_frame"] = round(raw_stream / row["bytes_per_env_step"], 2)
    print(
        json.dumps(
            {
                "envs": args.envs,
                "steps": args.steps,
                "image_size": args.image_size,
                "policy": args.policy,
                "env_step_s_render_and_act": round(render_s / env_steps, 4),
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
