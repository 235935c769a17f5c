"""The encoder on a lent GPU, in one call of at most 8 minutes: one JSON file (issue 32 item 6).

    python bench/gpu_bench.py                                   # on the GPU: ViT-L random-init, the full set
    python bench/gpu_bench.py --preset tiny --image-size 32 --budget-s 60 --out /tmp/g.json   # CPU plumbing check

What it measures (each section is skipped, with a note saying why, when the budget left or the machine lacks it):
  1. device: GPU name and memory, torch and CUDA versions;
  2. in process: windows/s of Encoder.encode at batch 1, 8, 32, 64 (8-frame windows at the preset's size; warm-up
     first, CUDA synchronised), bf16/fp32 as the encoder loads;
  3. grid pooling: windows/s with pool=grid (4x4 tokens, the attentive readout's input) at batch 32;
  4. frame stream in process: steps/s of a 16-env stream (advance the windows by one frame, encode, commit);
  5. over HTTP: the same batches through POST /encode (.npy both ways) and stream steps/s through the SDK, against
     an encoder server started here (uvicorn, a subprocess). The GPU machine may lack fastapi, uvicorn and lancedb
     (the server imports its store); then this section is skipped with the missing modules named. Carrying them
     means wheels for fastapi, starlette, uvicorn, h11, pydantic-settings, prometheus-client, zstandard, lancedb,
     pylance and pyarrow: lancedb and pyarrow are tens of MB, so the default is the skip;
  6. the lite0 family (an ImageNet-supervised EfficientNet-Lite0 image CNN) at batch 32 (or the largest of --batches
     when that is smaller), if this checkout has it.
The random-init ViT-L is a stand-in: its speed is the architecture's, its embeddings mean nothing.
The file is rewritten after every section, so a killed run keeps what it measured. `summary.vitl_windows_per_s`
(in process, batch 32, on CUDA) is what the bake-off's cost plan reads for GPU-hours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients"))

FULL = {"preset": "vitl-random", "image_size": 256, "batches": [1, 8, 32, 64], "stream_envs": 16, "grid_size": 4}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Bench:
    def __init__(self, out: Path, budget_s: float, max_calls: int = 50):
        self.out, self.t0, self.budget, self.max_calls = out, time.monotonic(), budget_s, max_calls
        self.data: dict = {"started_at": _now(), "budget_s": budget_s, "sections": {}, "summary": {}}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def slice(self, fraction: float, parts: int = 1) -> float:
        """Seconds for one measurement: its share of the whole budget, at most 20 s, never more than is left."""
        return max(0.5, min(20.0, self.budget * fraction / parts, self.left() / 4))

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.out)

    def section(self, name: str, value: dict) -> None:
        self.data["sections"][name] = value
        self.save()
        print(f"{name}: {json.dumps(value)[:400]}", flush=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def rate(fn, n_windows: int, device: str, slice_s: float, min_calls: int = 2, max_calls: int = 50) -> dict:
    """Windows/s of fn() (one call = n_windows), after one warm-up call; calls until slice_s or max_calls."""
    t = time.perf_counter()
    fn()
    _sync(device)
    warm = time.perf_counter() - t
    calls, t0 = 0, time.perf_counter()
    while calls < max_calls and (calls < min_calls or time.perf_counter() - t0 < slice_s):
        fn()
        _sync(device)
        calls += 1
    dt = time.perf_counter() - t0
    return {"windows_per_s": round(calls * n_windows / dt, 2), "calls": calls, "warmup_s": round(warm, 3)}


def device_info(device: str) -> dict:
    import torch

    info = {"kind": "cuda" if device.startswith("cuda") else "cpu", "torch": torch.__version__,
            "host": socket.gethostname(), "python": platform.python_version(), "cpus": os.cpu_count()}  # fmt: skip
    if info["kind"] == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda)
    else:
        info.update(name=platform.processor() or "cpu", load_avg_1m=round(os.getloadavg()[0], 2))
    return info


def windows(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, 8, size, size, 3), dtype=np.uint8)


def in_process(b: Bench, enc, cfg: dict, device: str) -> None:
    rows = {}
    for batch in cfg["batches"]:
        if b.left() < 20:
            rows[str(batch)] = {"skipped": "budget spent"}
            continue
        x = windows(batch, cfg["image_size"])
        try:
            rows[str(batch)] = rate(
                lambda x=x: enc.encode(x),
                batch,
                device,
                slice_s=b.slice(0.25, len(cfg["batches"])),
                max_calls=b.max_calls,
            )
        except RuntimeError as exc:  # out of memory at the largest batch
            rows[str(batch)] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    b.section("in_process", {"preset": cfg["preset"], "image_size": cfg["image_size"], "batches": rows})


def grid(b: Bench, enc, cfg: dict, device: str) -> None:
    from vjepa_robot_client.contract import PoolingSpec

    if b.left() < 20:
        return b.section("grid_pooling", {"skipped": "budget spent"})
    spec = PoolingSpec(pool="grid", grid_size=cfg["grid_size"])
    batch = max(cfg["batches"][:3])
    x = windows(batch, cfg["image_size"])
    r = rate(lambda: enc.encode(x, spec), batch, device, slice_s=b.slice(0.06), max_calls=b.max_calls)
    b.section("grid_pooling", {"grid_size": cfg["grid_size"], "batch": batch, **r})


def stream_in_process(b: Bench, enc, cfg: dict, device: str) -> None:
    from services.encoder.streams import StreamRegistry

    if b.left() < 20:
        return b.section("stream_in_process", {"skipped": "budget spent"})
    n, size = cfg["stream_envs"], cfg["image_size"]
    reg = StreamRegistry(device=getattr(enc, "device", "cpu"))
    s = reg.create(n, size, size)
    frames = np.random.default_rng(1).integers(0, 256, (n, size, size, 3), dtype=np.uint8)

    def step():
        w = s.advance(frames)
        enc.encode(w if w.device.type != "cpu" else w.numpy())
        s.commit(w)

    r = rate(step, 1, device, slice_s=b.slice(0.06), max_calls=b.max_calls)
    b.section("stream_in_process", {"envs": n, "steps_per_s": r["windows_per_s"], "calls": r["calls"]})


def http(b: Bench, cfg: dict, device: str) -> None:
    missing = []
    for mod in ("fastapi", "uvicorn", "lancedb", "pydantic_settings", "prometheus_client", "httpx"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        return b.section("http", {"skipped": f"not installed on this machine: {', '.join(missing)} (the encoder "
                                  "server needs them; the in-process rows stand alone)"})  # fmt: skip
    if b.left() < 30:
        return b.section("http", {"skipped": "budget spent"})
    import httpx

    from vjepa_robot_client import EncoderClient
    from vjepa_robot_client.contract import NPY_MEDIA_TYPE, to_npy_bytes

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    env = {**os.environ, "VJEPA_ROBOT_PRESET": cfg["preset"], "VJEPA_ROBOT_DEVICE": device,
           "VJEPA_ROBOT_MAX_BATCH": str(max(cfg["batches"])), "VJEPA_ROBOT_MAX_WAIT_MS": "0"}  # fmt: skip
    env.update(VJEPA_ROBOT_STORE=str(b.out.parent / "gpu_bench_store"), PYTHONPATH=f"{ROOT}:{ROOT / 'clients'}")
    env.pop("VJEPA_ROBOT_TOKEN", None)
    cmd = [sys.executable, "-m", "uvicorn", "services.encoder.server:app_from_env", "--factory", "--host",
           "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + min(240, b.left() - 10)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return b.section("http", {"error": f"encoder server exited with {proc.returncode}"})
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            return b.section("http", {"error": "encoder server did not start within the budget"})
        rows = {}
        headers = {"Content-Type": NPY_MEDIA_TYPE, "Accept": NPY_MEDIA_TYPE}
        with httpx.Client(timeout=300) as client:
            for batch in cfg["batches"]:
                if b.left() < 20:
                    rows[str(batch)] = {"skipped": "budget spent"}
                    continue
                body = to_npy_bytes(windows(batch, cfg["image_size"]))

                def post(body=body):
                    r = client.post(f"{url}/encode", content=body, headers=headers)
                    r.raise_for_status()

                slice_s = b.slice(0.15, len(cfg["batches"]))
                rows[str(batch)] = rate(post, batch, "cpu", slice_s=slice_s, max_calls=b.max_calls)
        result = {"batches": rows, "max_wait_ms": 0}
        if b.left() > 20:
            n, size = cfg["stream_envs"], cfg["image_size"]
            frames = np.random.default_rng(2).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            with EncoderClient(url, compress=None) as ec:
                st = ec.stream(n, size, size)
                r = rate(lambda: st.step(frames), 1, "cpu", slice_s=b.slice(0.05), max_calls=b.max_calls)
            result["stream"] = {"envs": n, "steps_per_s": r["windows_per_s"], "calls": r["calls"]}
        b.section("http", result)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def lite0(b: Bench, cfg: dict, device: str) -> None:
    from services.encoder.model import PRESETS, load_encoder

    names = [p for p in PRESETS if "lite0" in p]
    if not names:
        return b.section("lite0", {"skipped": "no lite0 preset in this checkout (services/encoder/model.py PRESETS)"})
    rows, batch = {}, min(32, max(cfg["batches"]))  # 32 on the full run; a CPU plumbing check stays small
    for name in names:
        if b.left() < 30:
            rows[name] = {"skipped": "budget spent"}
            continue
        try:
            enc = load_encoder(name, device=device)
            x = windows(batch, cfg["image_size"])
            rows[name] = rate(
                lambda enc=enc, x=x: enc.encode(x),
                batch,
                device,
                slice_s=b.slice(0.08, len(names)),
                max_calls=b.max_calls,
            )
        except Exception as exc:  # e.g. ImageNet weights not reachable offline
            rows[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    note = f"an ImageNet-supervised image CNN (EfficientNet-Lite0), batch {batch}"
    b.section("lite0", {"note": note, "presets": rows})


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default=FULL["preset"])
    ap.add_argument("--image-size", type=int, default=FULL["image_size"])
    ap.add_argument("--batches", default=",".join(map(str, FULL["batches"])))
    ap.add_argument("--stream-envs", type=int, default=FULL["stream_envs"])
    ap.add_argument("--budget-s", type=float, default=450.0, help="Wall-clock budget (the call's limit is 8 min).")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_bench.json")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--max-calls", type=int, default=50, help="Most timed calls per measurement (at least 2).")
    args = ap.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(int(os.environ.get("VJEPA_ROBOT_THREADS", "1")))
    cfg = {"preset": args.preset, "image_size": args.image_size, "stream_envs": args.stream_envs,
           "batches": [int(x) for x in args.batches.split(",")], "grid_size": FULL["grid_size"]}  # fmt: skip
    b = Bench(args.out, args.budget_s, max(2, args.max_calls))
    b.data["config"] = cfg
    b.data["device"] = device_info(device)
    b.data["would_measure_on_a_gpu"] = [
        f"{FULL['preset']} (ViT-L random-init, a stand-in) at {FULL['image_size']} px, 8-frame windows",
        f"in process: windows/s at batch {', '.join(map(str, FULL['batches']))}",
        f"over HTTP (POST /encode, .npy): the same batches; stream steps/s with {FULL['stream_envs']} envs",
        f"grid pooling {FULL['grid_size']}x{FULL['grid_size']} at batch 32; frame stream in process",
        "the lite0 family at batch 32 (if its preset is in this checkout)",
        "summary.vitl_windows_per_s: in process, batch 32 (the bake-off's cost plan reads it)",
    ]
    if cfg != {**FULL, "grid_size": FULL["grid_size"]} or device == "cpu":
        print("this run:", json.dumps(cfg), "on", device, "; on a GPU the default run measures:", flush=True)
        for line in b.data["would_measure_on_a_gpu"]:
            print("  -", line, flush=True)
    b.save()
    from services.encoder.model import load_encoder

    t = time.perf_counter()
    enc = load_encoder(args.preset, device=device)
    loaded = {"preset": args.preset, "seconds": round(time.perf_counter() - t, 2)}
    b.section(
        "load", {**loaded, "dtype": str(getattr(enc, "dtype", "")), "random_init": getattr(enc, "random_init", None)}
    )
    for fn in (in_process, grid, stream_in_process):
        try:
            fn(b, enc, cfg, device)
        except Exception as exc:
            b.section(fn.__name__, {"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    del enc
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    if args.skip_http:
        b.section("http", {"skipped": "--skip-http"})
    else:
        try:
            http(b, cfg, device)
        except Exception as exc:
            b.section("http", {"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    try:
        lite0(b, cfg, device)
    except Exception as exc:
        b.section("lite0", {"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    rows = b.data["sections"].get("in_process", {}).get("batches", {})
    at32 = (rows.get("32") or {}).get("windows_per_s")
    b.data["summary"] = {
        "windows_per_s_by_batch": {k: v.get("windows_per_s") for k, v in rows.items()},
        "vitl_windows_per_s": at32 if device.startswith("cuda") and args.preset == "vitl-random" else None,
    }
    b.data["finished_at"] = _now()
    b.save()
    print(f"wrote {args.out} in {b.data['elapsed_s']} s", flush=True)
    return b.data


if __name__ == "__main__":
    main()
