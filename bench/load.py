"""Load test of the encoder service: N concurrent async clients, M POST /encode calls of one window, real uvicorn.

    python bench/load.py                                   # 64 clients, 2000 calls, 8x64x64 window, tiny preset
    python bench/load.py --clients 64 --calls 2000 --size 256 --json bench/results/load.json

The encoder runs as a subprocess (`vjepa-robot serve encoder --preset tiny`); its RSS is read with psutil before
the first call (after one warm-up request) and after the last. A failed request is anything but 200 or an
explicit 503 (backpressure, Retry-After): transport errors and other statuses count as failures.
The SDK is not used on purpose (it retries 503s): each call is one raw httpx request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients"))

from vjepa_robot_client import to_npy_bytes  # noqa: E402


@dataclass
class LoadResult:
    clients: int
    calls: int
    window: str
    ok: int = 0
    busy_503: int = 0
    failed: int = 0
    failures: dict = field(default_factory=dict)  # "status 500" / "ReadTimeout" -> count
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    throughput_rps: float = 0.0
    wall_s: float = 0.0
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None

    @property
    def rss_growth_mb(self) -> float | None:
        if self.rss_before_mb is None or self.rss_after_mb is None:
            return None
        return self.rss_after_mb - self.rss_before_mb


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


async def run_load(
    url: str,
    *,
    clients: int = 64,
    calls: int = 2000,
    size: int = 64,
    pid: int | None = None,
    timeout: float = 120.0,
    token: str | None = None,
) -> LoadResult:
    """`clients` workers share `calls` requests of one (8, size, size, 3) uint8 window; latency per 200 answer."""
    body = to_npy_bytes(np.random.default_rng(0).integers(0, 256, (8, size, size, 3), dtype=np.uint8))
    headers = {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    res = LoadResult(clients=clients, calls=calls, window=f"8x{size}x{size}x3 uint8")
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        warm = await client.post("/encode", content=body, headers=headers)  # first forward pass, allocator warm-up
        warm.raise_for_status()
        if pid is not None:
            res.rss_before_mb = round(rss_mb(pid), 1)
        remaining = iter(range(calls))
        latencies: list[float] = []

        async def worker():
            for _ in remaining:
                t = time.perf_counter()
                try:
                    r = await client.post("/encode", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                    res.failures[key] = res.failures.get(key, 0) + 1
                    continue
                if r.status_code == 200 and len(r.content) > 0:
                    res.ok += 1
                    latencies.append(time.perf_counter() - t)
                elif r.status_code == 503:
                    res.busy_503 += 1
                else:
                    key = f"status {r.status_code}"
                    res.failures[key] = res.failures.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        res.wall_s = round(time.perf_counter() - t0, 2)
    if pid is not None:
        res.rss_after_mb = round(rss_mb(pid), 1)
    res.failed = sum(res.failures.values())
    if latencies:
        ms = np.asarray(latencies) * 1000
        res.p50_ms, res.p99_ms, res.max_ms = (round(float(np.percentile(ms, q)), 1) for q in (50, 99, 100))
    res.throughput_rps = round(res.ok / res.wall_s, 1) if res.wall_s else 0.0
    return res


class EncoderProcess:
    """`vjepa-robot serve encoder` as a child process on a free loopback port."""

    def __init__(
        self,
        preset: str = "tiny",
        store: str | None = None,
        max_queue: int | None = None,
        log: Path | None = None,
        extra_env: dict | None = None,
    ):
        self.preset, self.max_queue, self.extra_env = preset, max_queue, extra_env or {}
        self._tmp = tempfile.TemporaryDirectory() if store is None else None
        self.store = store or self._tmp.name
        self.log = log or Path(self.store) / "encoder.log"
        self.service = None
        self.url = ""

    def __enter__(self) -> EncoderProcess:
        from vjepa_robot.harness import cli_service

        env = {**os.environ, **self.extra_env}
        env.pop("VJEPA_ROBOT_TOKEN", None)
        if self.max_queue:
            env["VJEPA_ROBOT_MAX_QUEUE"] = str(self.max_queue)
        self.service = cli_service(
            "encoder", "--preset", self.preset, "--store", self.store, env=env, cwd=ROOT, log=self.log, grace_s=20
        ).start()
        self.url = self.service.url
        return self

    @property
    def proc(self):
        return self.service.proc

    @property
    def pid(self) -> int:
        return self.service.pid

    def __exit__(self, *exc) -> None:
        if self.service is not None:
            self.service.stop()
        if self._tmp:
            self._tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64, help="concurrent async clients")
    ap.add_argument("--calls", type=int, default=2000, help="POST /encode calls in all")
    ap.add_argument("--size", type=int, default=64, help="frame height = width of the window sent")
    ap.add_argument("--preset", default="tiny", help="encoder preset")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()
    with EncoderProcess(args.preset) as enc:
        res = asyncio.run(run_load(enc.url, clients=args.clients, calls=args.calls, size=args.size, pid=enc.pid))
    out = {**asdict(res), "rss_growth_mb": res.rss_growth_mb, "preset": args.preset}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
