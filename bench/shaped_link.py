"""Live evaluation through a real 100 Mbit/s link: full windows vs frame streams vs compressed streams (run by hand).

    sudo nice -n 10 python bench/shaped_link.py                                  # all modes, loopback and shaped
    python bench/shaped_link.py --modes windows --links loopback,shaped          # one mode (each mode is a flag)
    python bench/shaped_link.py --rate 1gbit --episodes 8 --steps 50

The link: the encoder runs on its own port; `tc` puts an htb qdisc on `lo` with two classes of --rate (default
100mbit), one for packets *to* that port (u32 match ip dport: the uploads) and one for packets *from* it (sport: the
answers): a symmetric link that shapes that port alone (netem is absent from this kernel, so there is no added
delay, only the rate). The qdisc is added for each shaped measurement and always deleted afterwards (finally, and
at exit, also on SIGTERM/Ctrl-C; after a SIGKILL run `tc qdisc del dev lo root` by hand); the bench refuses to start
if `lo` already has a root qdisc. Needs root (CAP_NET_ADMIN).

What runs: the real trainer-side evaluation loop (vjepa_robot_lab.evaluation.evaluate.evaluate: 8 envs in lockstep,
dm_control reacher rendered at --image-size, windows of the last 8 frames), the real SDK and a real encoder service
(`vjepa-robot serve encoder`, tiny random-init preset: a stand-in for ViT-L, 1 torch thread), and a BC-shaped MLP
with random weights (a stand-in policy: success is not the point, every step still calls the encoder). Modes:
  windows        POST /encode of the full 8-frame windows every step (the path before frame streams)
  streams        the trainer's VJEPA2Features: a frame stream, one new frame per env per step, no compression
  streams-zstd   the same with zstd request bodies (what the SDK does by default for a non-loopback URL)
Measured per (mode, link): env steps/s (evaluate's own figure: simulator steps of all envs / wall time), request
body bytes per env step from the encoder's `vjepa_encoder_request_bytes_total` (as sent, before decompression),
and on the shaped link the bytes the two tc classes actually carried (TCP/IP and HTTP included, both directions).
Also the wall time per vector step spent inside the feature call (the encoder round trip, link included): it
excludes rendering, so it shows the link's cost more steadily than env steps/s on a shared machine. Rounds run
loopback and shaped back to back for each mode; the table gives medians over rounds, and the median of the
per-round shaped/loopback ratios.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "clients")]

import vjepa_robot  # noqa: E402,F401  (MUJOCO_GL before dm_control)
from vjepa_robot.harness import cli_service  # noqa: E402
from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy, evaluate  # noqa: E402
from vjepa_robot_lab.learning.bc import BCPolicy  # noqa: E402
from vjepa_robot_lab.perception.features import VJEPA2Features, _windows_of  # noqa: E402

MODES = ("windows", "streams", "streams-zstd")
LINKS = ("loopback", "shaped")


# ----------------------------------------------------------------------------------------------------------------
# tc on the loopback device
# ----------------------------------------------------------------------------------------------------------------


def _tc(*args: str, check: bool = True) -> str:
    res = subprocess.run(["tc", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"tc {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def lo_has_root_qdisc() -> bool:
    out = _tc("qdisc", "show", "dev", "lo")
    return bool(out.strip()) and "noqueue" not in out


def shape(port: int, rate: str) -> None:
    """htb on lo: class 1:1 (to the port) and 1:2 (from it), each at `rate`; other traffic is not classified."""
    _tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb")
    for classid, field in (("1:1", "dport"), ("1:2", "sport")):
        _tc("class", "add", "dev", "lo", "parent", "1:", "classid", classid, "htb", "rate", rate, "ceil", rate)
        _tc(
            "filter",
            "add",
            "dev",
            "lo",
            "protocol",
            "ip",
            "parent",
            "1:",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            field,
            str(port),
            "0xffff",
            "flowid",
            classid,
        )


def unshape() -> None:
    if lo_has_root_qdisc():
        _tc("qdisc", "del", "dev", "lo", "root", check=False)


def class_bytes() -> dict[str, int]:
    """Bytes sent by each htb class on lo so far."""
    out = _tc("-s", "class", "show", "dev", "lo")
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"class htb (\S+) .*?\n\s*Sent (\d+) bytes", out)}


# ----------------------------------------------------------------------------------------------------------------
# Feature sources under test
# ----------------------------------------------------------------------------------------------------------------


class WindowFeatures(VJEPA2Features):
    """The path before frame streams: every step POSTs the full (8, 8, H, W, 3) windows to /encode."""

    def online(self, timesteps, episode_seeds):
        return self.client.encode(_windows_of(timesteps))


def make_source(mode: str, url: str) -> VJEPA2Features:
    src = WindowFeatures(url) if mode == "windows" else VJEPA2Features(url)
    # The URL is 127.0.0.1 in both links, where the SDK's "auto" picks no compression: set it per mode.
    src.client.compress = "zstd" if mode == "streams-zstd" else None
    return src


def request_bytes(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(float(v) for v in re.findall(r"^vjepa_encoder_request_bytes_total\{.*\} (\S+)$", text, re.M))


def measure(mode: str, url: str, act, args) -> dict:
    src = make_source(mode, url)
    spent = [0.0, 0]  # seconds inside the feature call (the encoder round trip, link included), calls

    def timed(fn):
        def call(*a):
            t = time.perf_counter()
            try:
                return fn(*a)
            finally:
                spent[0] += time.perf_counter() - t
                spent[1] += 1

        return call

    src.online, src.online_detached = timed(src.online), timed(src.online_detached)
    try:
        b0, t0 = request_bytes(url), class_bytes()
        rec = evaluate(
            FeaturePolicy(act, src),
            task="easy",
            episodes=args.episodes,
            steps=args.steps,
            seed=0,
            parallel_envs=args.parallel_envs,
            image_size=args.image_size,
        )
        b1, t1 = request_bytes(url), class_bytes()
    finally:
        src.close()
    env_steps = args.episodes * args.steps
    wire = {k: t1.get(k, 0) - t0.get(k, 0) for k in ("1:1", "1:2")}
    return {
        "steps_per_s": rec["steps_per_second"],
        "request_bytes_per_step": (b1 - b0) / env_steps,
        "encoder_ms_per_call": 1000 * spent[0] / max(spent[1], 1),
        "up_bytes_per_step": wire["1:1"] / env_steps,
        "down_bytes_per_step": wire["1:2"] / env_steps,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--links", default=",".join(LINKS), help="loopback, shaped or both")
    p.add_argument("--rate", default="100mbit", help="tc rate of each direction of the shaped link")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--parallel-envs", type=int, default=8)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    links = [link for link in args.links.split(",") if link]
    if bad := [m for m in modes if m not in MODES] + [link for link in links if link not in LINKS]:
        p.error(f"unknown mode/link {bad}: modes {MODES}, links {LINKS}")
    if "shaped" in links and lo_has_root_qdisc():
        sys.exit(
            f"lo already has a root qdisc (someone else's?): {_tc('qdisc', 'show', 'dev', 'lo').strip()}; "
            "not touching it"
        )
    torch.set_num_threads(1)
    store = tempfile.mkdtemp(prefix="bench-shaped-")
    env = {**os.environ, "VJEPA_ROBOT_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients")])}
    env.pop("VJEPA_ROBOT_TOKEN", None)
    enc = cli_service(
        "encoder", "--preset", args.preset, "--store", store, env=env, log=os.path.join(store, "encoder.log")
    ).spawn()
    atexit.register(unshape)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` and atexit remove the qdisc on kill
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        url = enc.wait_healthy().url
        probe = VJEPA2Features(url)
        dim = probe.dim
        probe.close()
        policy = BCPolicy(dim).eval()  # random weights: a stand-in policy

        @torch.no_grad()
        def act(x):
            return policy(torch.from_numpy(x)).numpy()

        warm = argparse.Namespace(**{**vars(args), "episodes": args.parallel_envs, "steps": 5})
        measure("streams", url, act, warm)  # first forward passes, imports, connections: not measured
        for _ in range(args.rounds):
            for mode in modes:
                for link in links:
                    if link == "shaped":
                        shape(enc.port, args.rate)
                    try:
                        r = measure(mode, url, act, args)
                    finally:
                        if link == "shaped":
                            unshape()
                    print(
                        f"{mode:13s} {link:8s} {r['steps_per_s']:6.1f} env steps/s, "
                        f"{r['encoder_ms_per_call']:7.1f} ms per encoder call, "
                        f"{r['request_bytes_per_step'] / 1e3:8.1f} kB request body per env step",
                        flush=True,
                    )
                    runs.setdefault((mode, link), []).append(r)
    finally:
        unshape()
        enc.stop()
    load1 = os.getloadavg()
    print(
        f"\nload average (1, 5, 15 min) before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after "
        f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; {os.cpu_count()} cores; "
        f"took {time.perf_counter() - t_start:.0f} s"
    )
    print(
        f"{args.parallel_envs} envs x {args.steps} steps x {args.episodes} episodes, "
        f"{args.image_size}x{args.image_size} "
        f"frames, preset {args.preset} (random-init stand-in), random-weight BC MLP; shaped = {args.rate} each way; "
        f"{args.rounds} round(s)\n"
    )
    med = lambda rs, k: float(np.median([r[k] for r in rs]))  # noqa: E731
    print(
        f"| mode | loopback: env steps/s | {args.rate}: env steps/s | {args.rate} / loopback (median of rounds) "
        f"| encoder call per vector step, loopback / {args.rate} (ms) | request body per env step "
        "| on the link per env step, up + down (tc) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in modes:
        lo, sh = runs.get((mode, "loopback"), []), runs.get((mode, "shaped"), [])
        cell = lambda rs, k, f: f.format(med(rs, k)) if rs else "-"  # noqa: E731
        ratio = (
            f"{np.median([s['steps_per_s'] / lo_run['steps_per_s'] for lo_run, s in zip(lo, sh)]):.0%}"
            if lo and sh
            else "-"
        )
        wire = (
            f"{med(sh, 'up_bytes_per_step') / 1e3:.1f} kB + {med(sh, 'down_bytes_per_step') / 1e3:.1f} kB"
            if sh
            else "-"
        )
        print(
            f"| {mode} | {cell(lo, 'steps_per_s', '{:.1f}')} | {cell(sh, 'steps_per_s', '{:.1f}')} | {ratio} "
            f"| {cell(lo, 'encoder_ms_per_call', '{:.0f}')} / {cell(sh, 'encoder_ms_per_call', '{:.0f}')} "
            f"| {med(lo or sh, 'request_bytes_per_step') / 1e3:.1f} kB | {wire} |"
        )


if __name__ == "__main__":
    main()
