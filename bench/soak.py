"""Soak of the encoder service: does its memory plateau? N clients x M POST /encode calls, RSS sampled over time.

    nice python bench/soak.py                              # 16 clients, 10,000 calls, 8x64x64 windows, tiny preset
    nice python bench/soak.py --calls 10000 --json bench/results/soak.json
    VJEPA_ROBOT_BODY_POOL_BUFFERS=0 nice python bench/soak.py ...   # body-buffer reuse off, for comparison
    MALLOC_MMAP_THRESHOLD_=131072 nice python bench/soak.py ...     # glibc: fixed mmap threshold (see RESULTS)

The encoder is a real `vjepa-robot serve encoder --preset tiny` subprocess (bench/load.py's EncoderProcess; the tiny
random-init preset is a stand-in for ViT-L). Each call is one raw httpx request (no SDK retries). A sampler reads the
server's RSS (psutil) and its body-pool gauge (GET /metrics: vjepa_encoder_body_pool_idle_bytes) every
--sample-s seconds. Verdict: RSS growth over the last half of the calls against the first half ("plateau" when the
second half grows by less than --plateau-mb).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from load import EncoderProcess, rss_mb  # noqa: E402

from vjepa_robot_client import to_npy_bytes  # noqa: E402


def pool_idle_bytes(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("vjepa_encoder_body_pool_idle_bytes "):
            return float(line.split()[-1])
    return None


async def soak(url: str, pid: int, *, clients: int, calls: int, size: int, sample_s: float) -> dict:
    body = to_npy_bytes(np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8))
    headers = {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    done = [0]
    status: dict[str, int] = {}
    samples: list[dict] = []
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        (await client.post("/encode", content=body, headers=headers)).raise_for_status()  # warm-up
        t0 = time.perf_counter()

        async def sample_once():
            m = await client.get("/metrics")
            samples.append(
                {
                    "t_s": round(time.perf_counter() - t0, 1),
                    "calls_done": done[0],
                    "rss_mb": round(rss_mb(pid), 1),
                    "pool_idle_mb": round((pool_idle_bytes(m.text) or 0) / 2**20, 2),
                }
            )

        async def sampler():
            while True:
                await sample_once()
                await asyncio.sleep(sample_s)

        remaining = iter(range(calls))

        async def worker():
            for _ in remaining:
                try:
                    r = await client.post("/encode", content=body, headers=headers)
                    key = str(r.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                status[key] = status.get(key, 0) + 1
                done[0] += 1

        task = asyncio.create_task(sampler())
        await asyncio.gather(*(worker() for _ in range(clients)))
        task.cancel()
        await sample_once()
        wall = time.perf_counter() - t0
    half = [s for s in samples if s["calls_done"] <= calls // 2]
    first_half_peak = max(s["rss_mb"] for s in half) if half else samples[0]["rss_mb"]
    final_peak = max(s["rss_mb"] for s in samples)
    return {
        "clients": clients,
        "calls": calls,
        "window": f"8x{size}x{size}x3 uint8",
        "status": status,
        "wall_s": round(wall, 1),
        "calls_per_s": round(calls / wall, 1),
        "rss_start_mb": samples[0]["rss_mb"],
        "rss_peak_first_half_mb": first_half_peak,
        "rss_peak_mb": final_peak,
        "rss_end_mb": samples[-1]["rss_mb"],
        "growth_second_half_mb": round(final_peak - first_half_peak, 1),
        "pool_idle_max_mb": max(s["pool_idle_mb"] for s in samples),
        "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--plateau-mb", type=float, default=20.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    pool_env = {k: v for k, v in os.environ.items() if k.startswith(("VJEPA_ROBOT_BODY_POOL", "MALLOC_"))}
    with EncoderProcess("tiny") as enc:
        out = asyncio.run(
            soak(enc.url, enc.pid, clients=args.clients, calls=args.calls, size=args.size, sample_s=args.sample_s)
        )
    out["pool_settings"] = pool_env or "defaults (4 buffers, 512 MiB idle)"
    out["plateau"] = out["growth_second_half_mb"] < args.plateau_mb
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))
    print("t_s calls rss_mb pool_idle_mb")
    for s in out["samples"]:
        print(s["t_s"], s["calls_done"], s["rss_mb"], s["pool_idle_mb"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
