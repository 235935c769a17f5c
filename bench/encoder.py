"""Encoder benchmark, one run: in process vs over HTTP, and dynamic batching with 16 concurrent clients.

    python bench/encoder.py                     # tiny preset on CPU, 8x256x256 windows; prints a markdown table
    python bench/encoder.py --preset vitl --windows 64     # the real model (a GPU job)
    python bench/encoder.py --preset vitl-random --batches 1,8,32,64 --compile     # + torch.compile rows (GPU)
    python bench/encoder.py --preset vitl-random --batches 1,8,32,64 --compile --in-process-only   # model rows only

Measures, for 8-frame 256x256 uint8 windows (the renders' size):
  1. windows/s of Encoder.encode in process at batch 1, 8, 32;
  2. windows/s over HTTP (POST /encode, .npy both ways, one sequential client) at the same batch sizes, against a
     server with max_wait_ms=0 so no batching wait is counted as transport; overhead per window = the difference;
  3. 16 concurrent one-window clients against a server with batching on (max_batch 32, max_wait_ms 5) and off
     (max_batch 1): windows/s and the mean windows per forward pass read from /metrics.
Servers run as separate processes (uvicorn services.encoder.server:app_from_env --factory), as in production.
With --compile, the in-process row is measured eager and compiled (Encoder.compile, buckets warmed up first, the
compile time printed) in the same run, and the HTTP server runs with VJEPA_ROBOT_COMPILE=1.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients"))

from services.encoder.model import available_cpus, default_threads, load_encoder  # noqa: E402
from vjepa_robot.harness import Service, free_port  # noqa: E402
from vjepa_robot_client.contract import NPY_MEDIA_TYPE, from_npy_bytes, to_npy_bytes  # noqa: E402

BATCHES = (1, 8, 32)
HEADERS = {"Content-Type": NPY_MEDIA_TYPE, "Accept": NPY_MEDIA_TYPE}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_windows(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, size, size, 3), dtype=np.uint8)


def timed_rate(fn, windows_per_call: int, calls: int, rounds: int = 3) -> float:
    """Windows per second: the best of `rounds` rounds of `calls` calls, after one warm-up call.

    Best-of-N because the machine is shared: the fastest round is the least disturbed by other processes.
    """
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return windows_per_call * calls / best


class NoopEncoder:
    """The Encoder contract with no model (zeros): isolates transport cost (HTTP + .npy + batcher hand-off)."""

    encoder_id, model_name, preprocessing = "noop00000000", "noop", "none"
    dim, frames, image_size, dtype, device = 1024, 8, 256, "float32", "cpu"

    def info(self) -> dict:
        return {k: getattr(self, k) for k in ("encoder_id", "dim", "frames", "image_size", "dtype", "device")} | {
            "model": "noop"
        }

    def encode(self, windows: np.ndarray) -> np.ndarray:
        return np.zeros((windows.shape[0], self.dim), np.float32)


def serve_noop(port: int) -> None:
    import uvicorn

    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    app = create_app(EncoderSettings(store=tempfile.mkdtemp(), max_batch=32, max_wait_ms=0), encoder=NoopEncoder())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


class Server:
    """The encoder as a separate process (uvicorn factory, settings from VJEPA_ROBOT_* variables)."""

    def __init__(self, args, max_batch: int, max_wait_ms: float, noop: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"  # the harness's Service (vjepa_robot/harness.py) runs it
        self.compile = args.compile and not noop
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients"), os.environ.get("PYTHONPATH", "")]),
            "VJEPA_ROBOT_STORE": args.store,
            "VJEPA_ROBOT_MAX_BATCH": str(max_batch),
            "VJEPA_ROBOT_MAX_WAIT_MS": str(max_wait_ms),
            "VJEPA_ROBOT_MAX_QUEUE": "1024",
            "VJEPA_ROBOT_THREADS": str(args.threads),
            "VJEPA_ROBOT_COMPILE": "1" if args.compile and not noop else "0",
        }
        env.pop("VJEPA_ROBOT_TOKEN", None)
        if args.model:
            env["VJEPA_ROBOT_MODEL"] = args.model
            env.pop("VJEPA_ROBOT_PRESET", None)
        else:
            env["VJEPA_ROBOT_PRESET"] = args.preset
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "services.encoder.server:app_from_env",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        if noop:
            cmd = [sys.executable, __file__, "--serve-noop", str(self.port)]
        # compiling every bucket takes minutes
        self.service = Service(
            cmd, port=self.port, name="encoder", env=env, cwd=ROOT, start_timeout=1800 if self.compile else 300
        )

    def __enter__(self) -> Server:
        self.service.start()
        return self

    def __exit__(self, *exc) -> None:
        self.service.stop()

    def batch_stats(self) -> tuple[float, float]:
        """(sum, count) of the vjepa_encoder_batch_size histogram."""
        text = httpx.get(f"{self.url}/metrics").text
        total = float(re.search(r"^vjepa_encoder_batch_size_sum (\S+)$", text, re.M).group(1))
        count = float(re.search(r"^vjepa_encoder_batch_size_count (\S+)$", text, re.M).group(1))
        return total, count


def http_rate(url: str, batch: np.ndarray, calls: int) -> float:
    body = None
    with httpx.Client(timeout=300) as client:

        def call():
            nonlocal body
            r = client.post(f"{url}/encode", content=to_npy_bytes(batch), headers=HEADERS)
            r.raise_for_status()
            body = from_npy_bytes(r.content)

        rate = timed_rate(call, batch.shape[0], calls)
    assert body is not None and body.shape[0] == batch.shape[0]
    return rate


def concurrent_clients(server: Server, window: np.ndarray, clients: int, per_client: int) -> tuple[float, float]:
    """(windows/s, mean windows per forward pass) for `clients` threads each sending `per_client` one-window
    requests."""
    body = to_npy_bytes(window)
    with httpx.Client(timeout=300) as warm:  # one warm-up request outside the measurement
        warm.post(f"{server.url}/encode", content=body, headers=HEADERS).raise_for_status()
    s0, c0 = server.batch_stats()
    errors: list[BaseException] = []

    def worker():
        try:
            with httpx.Client(timeout=300) as client:
                for _ in range(per_client):
                    client.post(f"{server.url}/encode", content=body, headers=HEADERS).raise_for_status()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    s1, c1 = server.batch_stats()
    return clients * per_client / elapsed, (s1 - s0) / max(c1 - c0, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--model", default=None, help="hub id or directory instead of --preset")
    p.add_argument("--size", type=int, default=256, help="frame size of the windows sent")
    p.add_argument("--windows", type=int, default=64, help="windows per measurement (per batch size)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--per-client", type=int, default=12)
    p.add_argument("--store", default=tempfile.mkdtemp(prefix="bench-store-"))
    p.add_argument(
        "--threads", type=int, default=default_threads(), help="torch threads, in process and in the servers"
    )
    p.add_argument(
        "--batches",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        default=BATCHES,
        help="batch sizes, e.g. 1,8,32,64",
    )
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (in process and over HTTP)")
    p.add_argument("--in-process-only", action="store_true", help="skip the HTTP rows (no fastapi/uvicorn needed)")
    p.add_argument("--serve-noop", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_noop:
        return serve_noop(args.serve_noop)
    t_start = time.perf_counter()

    enc = load_encoder(None if args.model else args.preset, args.model, num_threads=args.threads)
    import torch

    data = make_windows(32, args.size)
    print(
        f"machine: {cpu_model()}, {available_cpus()} cores available, torch threads {torch.get_num_threads()}, "
        f"{platform.python_version()}, torch {torch.__version__}"
    )
    print(
        f"encoder: {enc.model_name} id {enc.encoder_id} dim {enc.dim} crop {enc.image_size} {enc.dtype} "
        f"on {enc.device}; windows 8x{args.size}x{args.size}x3 uint8\n"
    )

    batches = args.batches
    data = make_windows(max(batches), args.size)
    inproc = {b: timed_rate(lambda b=b: enc.encode(data[:b]), b, max(1, args.windows // b)) for b in batches}
    compiled = {}
    if args.compile:
        t_compile = time.perf_counter()
        enc.compile(warmup_upto=max(batches))
        print(
            f"torch.compile: buckets {enc.buckets} up to batch {max(batches)} compiled in "
            f"{time.perf_counter() - t_compile:.0f} s"
        )
        compiled = {b: timed_rate(lambda b=b: enc.encode(data[:b]), b, max(1, args.windows // b)) for b in batches}
    enc = None  # free the model (and the cores) for the servers
    if args.in_process_only:  # e.g. a GPU box without the web stack installed
        print(
            "| batch | in process, eager (windows/s) | latency (ms) |"
            + (" torch.compile (windows/s) | latency (ms) |" if compiled else "")
        )
        print("|---:|---:|---:|" + ("---:|---:|" if compiled else ""))
        for b in batches:
            row = f"| {b} | {inproc[b]:.1f} | {1000 * b / inproc[b]:.1f} |"
            print(row + (f" {compiled[b]:.1f} | {1000 * b / compiled[b]:.1f} |" if compiled else ""))
        return

    top = max(32, max(batches))  # one forward pass per request at every measured batch size
    with Server(args, max_batch=top, max_wait_ms=0) as srv:
        http = {b: http_rate(srv.url, data[:b], max(1, args.windows // b)) for b in batches}
    with Server(args, max_batch=top, max_wait_ms=0, noop=True) as srv:
        noop = {b: http_rate(srv.url, data[:b], max(1, args.windows // b)) for b in batches}
    with Server(args, max_batch=32, max_wait_ms=5) as srv:
        on_rate, on_batch = concurrent_clients(srv, data[:1], args.clients, args.per_client)
    with Server(args, max_batch=1, max_wait_ms=0) as srv:
        off_rate, off_batch = concurrent_clients(srv, data[:1], args.clients, args.per_client)

    print(
        "| batch | in process (windows/s) | HTTP .npy (windows/s) | HTTP - in process (ms/window) "
        "| transport alone, no-op model (ms/window) |"
    )
    print("|---:|---:|---:|---:|---:|")
    for b in batches:
        overhead = 1000 / http[b] - 1000 / (compiled or inproc)[b]
        print(f"| {b} | {inproc[b]:.1f} | {http[b]:.1f} | {overhead:.2f} | {1000 / noop[b]:.2f} |")
    if compiled:
        print(
            "\n| batch | in process, eager (windows/s) | in process, torch.compile (windows/s) "
            "| compiled latency (ms) |"
        )
        print("|---:|---:|---:|---:|")
        for b in batches:
            print(f"| {b} | {inproc[b]:.1f} | {compiled[b]:.1f} | {1000 * b / compiled[b]:.1f} |")
        print(
            "(the HTTP column above ran a server with VJEPA_ROBOT_COMPILE=1; its overhead is against the compiled rate)"
        )
    print()
    print(f"| {args.clients} concurrent one-window clients | windows/s | mean windows per forward pass |")
    print("|---|---:|---:|")
    print(f"| batching on (max_batch 32, max_wait_ms 5) | {on_rate:.1f} | {on_batch:.2f} |")
    print(f"| batching off (max_batch 1) | {off_rate:.1f} | {off_batch:.2f} |")
    print(
        f"\ngain from batching: x{on_rate / off_rate:.2f} windows/s; bench took {time.perf_counter() - t_start:.0f} s"
    )


if __name__ == "__main__":
    main()
