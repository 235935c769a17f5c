"""Frame streams on an autoscaled encoder: bytes per env-step through two replicas behind a load balancer.

    nice python bench/streams_replicas.py --envs 4 --steps 60 --json bench/results/streams_replicas.json

Two encoder replicas (the tiny random-init preset, a stand-in for ViT-L: the bytes do not depend on the model), each
its own app under its own uvicorn on loopback, behind vjepa_robot/harness.py's RoutingProxy (round-robin, or rendezvous
hashing on Modal-Session-ID). The SDK's frame stream (zstd, as a remote encoder gets it) carries real dm_control
reacher-easy renders, the jacobian expert acting, episodes of --episode-steps. Scenarios:

    affinity            the router hashes on the stream's Modal-Session-ID
    affinity+scale-down the same; mid-run the replica holding the stream is removed (a scale-down or a crash)
    round-robin         the router ignores the header: the stream turns stateless (full windows to POST /encode)

Bytes are request bodies as the router received them (POST /streams' small JSON bodies excluded), divided by
envs x steps. Embeddings are checked against the tiny encoder run in process on the env's own windows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
from services.encoder.app import create_app  # noqa: E402
from services.encoder.model import Encoder  # noqa: E402
from services.encoder.settings import EncoderSettings  # noqa: E402
from vjepa_robot.harness import RoutingProxy, serve_app  # noqa: E402
from vjepa_robot_client import EncoderClient  # noqa: E402
from vjepa_robot_client.contract import STREAM_SESSION_HEADER  # noqa: E402
from vjepa_robot_lab.envs.env import eval_episode_seed, make  # noqa: E402
from vjepa_robot_lab.policies.experts import make_expert  # noqa: E402


def plan(envs: int, steps: int, episode_steps: int, size: int, encoder: Encoder):
    """Per vector step: (newest frames (N, H, W, 3), resets, reference embeddings (N, D))."""
    env_list = [make("easy", seed=0, episode_steps=episode_steps, image_size=size) for _ in range(envs)]
    experts = [make_expert("jacobian") for _ in env_list]
    seeds = [eval_episode_seed(0, i) for i in range(envs)]
    ts_list = [env.reset(s) for env, s in zip(env_list, seeds)]
    for e, s in zip(experts, seeds):
        e.reset(s)
    out, episode = [], envs
    for t in range(steps):
        windows = np.stack([ts.window for ts in ts_list])
        out.append(
            (
                windows[:, -1].copy(),
                [i for i, ts in enumerate(ts_list) if ts.first() and t > 0],
                encoder.encode(windows),
            )
        )
        nxt = []
        for env, e, ts in zip(env_list, experts, ts_list):
            if ts.last():
                seed = eval_episode_seed(0, episode)
                episode += 1
                e.reset(seed)
                nxt.append(env.reset(seed))
            else:
                nxt.append(env.step(e.act(env.physics, ts)))
        ts_list = nxt
    return out


def run(name: str, upstreams: list[str], steps_plan, envs: int, size: int, affinity: bool, scale_down_at: int | None):
    proxy = RoutingProxy(upstreams, affinity_header=STREAM_SESSION_HEADER if affinity else None)
    worst = 0.0
    with serve_app(proxy) as url, EncoderClient(url, compress="zstd") as client:
        s = client.stream(envs, size, size)
        t0 = time.perf_counter()
        for t, (frames, reset, want) in enumerate(steps_plan):
            if scale_down_at is not None and t == scale_down_at:
                proxy.remove(proxy.pick(s.session))
            got = s.step(frames, reset=reset)
            worst = max(worst, float(np.abs(got - want).max()))
        wall = time.perf_counter() - t0
        s.close()
    sent = sum(n for m, p, _, n, _ in proxy.log if m == "POST" and p != "/streams")
    by_replica = {u.rsplit(":", 1)[-1]: sum(1 for _, _, v, _, _ in proxy.log if v == u) for u in upstreams}
    return {
        "scenario": name,
        "env_steps": envs * len(steps_plan),
        "bytes_per_env_step": round(sent / (envs * len(steps_plan))),
        "lost": s.lost,
        "resyncs": s.resyncs,
        "stateless": s.stateless,
        "404s": sum(1 for *_, code in proxy.log if code == 404),
        "requests_by_replica_port": by_replica,
        "max_abs_diff_vs_in_process": worst,
        "ms_per_vector_step": round(1000 * wall / len(steps_plan), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--episode-steps", type=int, default=50)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    encoder = Encoder.from_preset("tiny", device="cpu", num_threads=1)
    steps_plan = plan(args.envs, args.steps, args.episode_steps, args.image_size, encoder)
    store = tempfile.TemporaryDirectory()  # the replicas' store: unused by streams, required by the app
    settings = EncoderSettings(store=store.name, device="cpu", threads=1, max_wait_ms=1.0)
    rows = []
    with (
        store,
        serve_app(create_app(settings, encoder=encoder), startup_timeout=60) as a,
        serve_app(create_app(settings, encoder=encoder), startup_timeout=60) as b,
    ):
        rows.append(run("affinity", [a, b], steps_plan, args.envs, args.image_size, True, None))
        rows.append(run("affinity+scale-down", [a, b], steps_plan, args.envs, args.image_size, True, args.steps // 2))
        rows.append(run("round-robin", [a, b], steps_plan, args.envs, args.image_size, False, None))
    result = {
        "envs": args.envs,
        "steps": args.steps,
        "episode_steps": args.episode_steps,
        "image_size": args.image_size,
        "encoder": "tiny (random-init stand-in)",
        "compress": "zstd",
        "rows": rows,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
