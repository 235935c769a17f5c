"""Token grids (issue 17): encode throughput grid vs mean, stored bytes per window, wire bytes of a grid stream step.

    nice python bench/grid.py                       # tiny random-init preset (a stand-in), CPU, one torch thread
    python bench/grid.py --preset vitl-random --batches 32,64 --skip-store --skip-wire   # GPU: ViT-L throughput

1. Throughput, one process, one encoder: Encoder.encode of the same 8x256x256 uint8 windows with pool=mean and with
   pool=grid (g=4, g=8, and g=4 from layers 0+last), interleaved round by round so load changes hit every variant
   alike; windows/s per variant and the ratio to mean (median of rounds).
2. Stored bytes per window: Store.append_embeddings of N windows into real LanceDB tables (the legacy files the
   store writes), for mean (D float32) and grids g=4 / g=8 in float16 and float32, at the stand-in's D=96 and at
   ViT-L's D=1024 (random values of the real shapes: the files are not compressed, so bytes depend on shape only);
   bytes = the table directory's size on disk / N. Per 100k windows = that x 100,000 (scaled, not written).
3. Wire bytes per env-step of a stream step: a real encoder service (uvicorn, tiny preset) and the SDK's
   FrameStream over loopback, `envs` live reacher-easy renders (256x256, Jacobian expert acting): request body
   (raw and zstd, as the SDK sends them) and answer body per env-step, for a mean stream and a grid stream
   (g=4, float16). The ViT-L answer size is computed from the shape (N x g*g x 1024 x 2 bytes + the .npy header).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients"))

from services.common.store import EmbeddingLineage, Store, embeddings_table_name  # noqa: E402  (after sys.path)
from vjepa_robot_client.contract import PoolingSpec, to_npy_bytes  # noqa: E402

VITL_DIM = 1024


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def throughput(args) -> list[dict]:
    from services.encoder.model import load_encoder

    enc = load_encoder(args.preset, device=args.device, num_threads=args.threads)
    last = enc.num_layers - 1
    variants = {
        "mean": None,
        "grid g=4": PoolingSpec.of("grid", 4),
        "grid g=8": PoolingSpec.of("grid", 8),
        f"grid g=4, layers 0+{last}": PoolingSpec.of("grid", 4, layers=[0, last]),
    }
    rows = []
    rng = np.random.default_rng(0)
    for batch in args.batches:
        w = rng.integers(0, 256, size=(batch, 8, 256, 256, 3), dtype=np.uint8)
        for spec in variants.values():  # warm-up (first-call allocations)
            enc.encode(w, spec)
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, spec in variants.items():
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    enc.encode(w, spec)
                rates[name].append(batch * args.calls / (time.perf_counter() - t0))
        base = statistics.median(rates["mean"])
        for name, r in rates.items():
            rows.append(
                {
                    "batch": batch,
                    "variant": name,
                    "windows_per_s": statistics.median(r),
                    "ratio_to_mean": statistics.median(r) / base,
                }
            )
    return rows


def store_bytes(args) -> list[dict]:
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="grid-bench-"))
    try:
        store = Store(str(tmp))
        rng = np.random.default_rng(0)
        for dim, n in ((96, args.store_rows), (VITL_DIM, max(50, args.store_rows // 8))):
            cases = [("mean", None, "float32")] + [
                (f"grid g={g}", g, dt) for g in (4, 8) for dt in ("float16", "float32")
            ]
            for name, g, dtype in cases:
                eid = f"bench-{dim}-{name.replace(' ', '').replace('=', '')}-{dtype}"
                tokens = None if g is None else g * g
                lineage = EmbeddingLineage(eid, "bench", "none", dim, tokens=tokens, dtype=dtype)
                per_ep = 200  # one episode per add, as the encoder's dataset jobs write
                for ep in range(0, n, per_ep):
                    k = min(per_ep, n - ep)
                    shape = (k, dim) if tokens is None else (k, tokens, dim)
                    store.append_embeddings(
                        "bench", ep // per_ep, np.arange(k), rng.normal(size=shape).astype(dtype), lineage
                    )
                table_dir = tmp / f"{embeddings_table_name('bench', eid)}.lance"
                per_window = dir_bytes(table_dir) / n
                payload = dim * (1 if tokens is None else tokens) * np.dtype(dtype).itemsize
                rows.append(
                    {
                        "dim": dim,
                        "variant": name,
                        "dtype": dtype,
                        "rows": n,
                        "bytes_per_window": per_window,
                        "payload_bytes": payload,
                        "gb_per_100k": per_window * 100_000 / 1e9,
                    }
                )
                store.drop(embeddings_table_name("bench", eid))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def wire_bytes(args) -> list[dict]:
    import httpx

    from services.encoder.app import create_app
    from services.encoder.model import load_encoder
    from services.encoder.settings import EncoderSettings
    from vjepa_robot.harness import InProcess
    from vjepa_robot_client import EncoderClient
    from vjepa_robot_client._transport import compress_body
    from vjepa_robot_lab.envs.env import eval_episode_seed, make
    from vjepa_robot_lab.policies.experts import make_expert

    enc = load_encoder("tiny", device="cpu", num_threads=args.threads)
    app = create_app(EncoderSettings(store=tempfile.mkdtemp(), max_batch=32, max_wait_ms=0), encoder=enc)
    server = InProcess(app).start()  # uvicorn in a thread on a free loopback port (vjepa_robot/harness.py)
    url = server.url

    answers: dict[str, list[int]] = {"mean": [], "grid": []}

    def count(name):
        def hook(response: httpx.Response) -> None:
            if response.request.method == "POST" and response.request.url.path.endswith("/step"):
                response.read()
                answers[name].append(len(response.content))

        return hook

    envs = [make("easy", seed=0, episode_steps=args.steps, image_size=256) for _ in range(args.envs)]
    experts = [make_expert("jacobian") for _ in envs]
    seeds = [eval_episode_seed(0, i) for i in range(args.envs)]
    timesteps = [env.reset(s) for env, s in zip(envs, seeds)]
    for e, s in zip(experts, seeds):
        e.reset(s)
    up_raw = up_zstd = 0
    n = args.envs
    clients = {k: EncoderClient(url, compress=None) for k in answers}
    for k, c in clients.items():
        c._http.event_hooks["response"] = [count(k)]  # the answer bodies as received (bench only: a private handle)
    streams = {
        "mean": clients["mean"].stream(n, 256, 256),
        "grid": clients["grid"].stream(n, 256, 256, pool="grid", grid_size=4),
    }
    dtype = None
    try:
        for _ in range(args.steps):
            frames = np.stack([ts.window[-1] for ts in timesteps])  # (N, 256, 256, 3) newest renders
            raw = to_npy_bytes(frames)
            up_raw += len(raw)
            up_zstd += len(compress_body(raw, "zstd")[0])
            streams["mean"].step(frames)
            out = streams["grid"].step(frames)
            dtype = str(out.dtype)
            timesteps = [env.step(e.act(env.physics, ts)) for env, e, ts in zip(envs, experts, timesteps)]
    finally:
        for s in streams.values():
            s.close()
        for c in clients.values():
            c.close()
        server.stop()
    steps = args.steps
    header = len(to_npy_bytes(np.zeros((n, 16, VITL_DIM), np.float16))) - n * 16 * VITL_DIM * 2
    return [
        {
            "envs": n,
            "steps": steps,
            "grid_dtype": dtype,
            "request_raw_per_env_step": up_raw / steps / n,
            "request_zstd_per_env_step": up_zstd / steps / n,
            "answer_mean_per_env_step": sum(answers["mean"]) / len(answers["mean"]) / n,
            "answer_grid4_per_env_step": sum(answers["grid"]) / len(answers["grid"]) / n,
            "vitl_answer_mean_per_env_step": (n * VITL_DIM * 4 + header) / n,
            "vitl_answer_grid4_f16_per_env_step": (n * 16 * VITL_DIM * 2 + header) / n,
        }
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--store-rows", type=int, default=2000)
    ap.add_argument("--envs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--skip-store", action="store_true")
    ap.add_argument("--skip-wire", action="store_true")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    os.environ.setdefault("MUJOCO_GL", "egl")
    result: dict = {
        "preset": args.preset,
        "device": args.device,
        "threads": args.threads,
        "load_before": os.getloadavg()[0],
    }
    result["throughput"] = throughput(args)
    print("| batch | variant | windows/s | vs mean |\n|---:|---|---:|---:|")
    for r in result["throughput"]:
        print(f"| {r['batch']} | {r['variant']} | {r['windows_per_s']:.1f} | {r['ratio_to_mean']:.2f}x |")
    if not args.skip_store:
        result["store"] = store_bytes(args)
        print("\n| D | variant | dtype | bytes/window on disk | payload | GB per 100k windows |")
        print("|---:|---|---|---:|---:|---:|")
        for r in result["store"]:
            print(
                f"| {r['dim']} | {r['variant']} | {r['dtype']} | {r['bytes_per_window']:,.0f} | "
                f"{r['payload_bytes']:,} | {r['gb_per_100k']:.3f} |"
            )
    if not args.skip_wire:
        result["wire"] = wire_bytes(args)
        print("\n" + json.dumps(result["wire"], indent=2))
    result["load_after"] = os.getloadavg()[0]
    print(f"\nload average before/after: {result['load_before']:.1f} / {result['load_after']:.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
