"""Where the milliseconds of POST /encode go on loopback, with a no-op model (one run, run by hand).

    nice -n 10 python bench/transport.py                          # this tree: ladder + full service, markdown tables
    nice -n 10 python bench/transport.py --baseline c741cc3       # ... and the same service from another commit,
                                                                  # measured in the same run (before / after)
    python bench/transport.py --profile /tmp/prof                 # + pyinstrument profiles of server and client

The model is a stand-in: NoopEncoder returns zeros (1024-d), so everything measured is transport: the client
building the .npy body, HTTP (client and server), the body read, the .npy parse, the batcher hand-off, the
response. Windows are 8x256x256x3 uint8 (1.57 MB each), sent at batch 1, 8 and 32 by one sequential client.

The ladder, each rung on the same bytes, so the differences are the costs of each layer:
  raw TCP     a plain socket pair on 127.0.0.1: sendall, recv_into a preallocated buffer, a 128 KiB answer.
              The kernel's loopback floor on this machine: no HTTP framework can go below it.
  raw UDS     the same over a Unix domain socket (what loopback could cost without TCP).
  bare ASGI   uvicorn (the same http/loop as the service) with a 10-line ASGI app that reads the body into a reused
              buffer and answers 128 KiB; the client is plain httpx sending ready-made bytes: the HTTP stack alone.
  service     the encoder app (create_app + no-op model) and the SDK's EncoderClient.encode: what users get.
ms/window is the best of --rounds rounds (the machine is shared: the least disturbed round), each of ~--windows
windows. Servers are separate processes, as in production. The load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 8, 32)
WINDOW = (8, 256, 256, 3)
ANSWER_BYTES = 32 * 1024 * 4  # a (32, 1024) float32 answer, as the service's .npy reply at batch 32


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def windows(n: int):
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, size=(n, *WINDOW), dtype=np.uint8)


def process_cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of this process, or of `pid` (from /proc; clock ticks of 10 ms)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict = {}  # (batch) -> (client CPU ms/window, server CPU ms/window) of the last best_ms_per_window call


def best_ms_per_window(call, batch: int, n_windows: int, rounds: int, server_pid: int | None = None) -> float:
    """Wall ms per window: the best of `rounds`. Also records in CPU[batch] the least CPU per window (client, server)
    over the rounds: on a shared, loaded machine CPU time is the steadier measure of the work each side does."""
    call()  # warm-up (connection, allocations)
    calls = max(2, n_windows // batch)
    best, cpu_client, cpu_server = float("inf"), float("inf"), float("inf")
    for _ in range(rounds):
        c0, s0 = process_cpu_s(), process_cpu_s(server_pid) if server_pid else 0.0
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
        cpu_client = min(cpu_client, (process_cpu_s() - c0) / calls)
        if server_pid:
            cpu_server = min(cpu_server, (process_cpu_s(server_pid) - s0) / calls)
    CPU[batch] = (1000 * cpu_client / batch, 1000 * cpu_server / batch if server_pid else float("nan"))
    return 1000 * best / batch


# ----------------------------------------------------------------------------------------------------------------
# Rung 0: raw sockets (in this process, a thread serves)
# ----------------------------------------------------------------------------------------------------------------


def raw_socket(family: int, batches, n_windows: int, rounds: int) -> dict[int, float]:
    nbytes = {b: int(windows(1).nbytes) * b for b in batches}
    path = None
    srv = socket.socket(family)
    if family == socket.AF_UNIX:
        path = tempfile.mktemp(prefix="bench-uds-")
        srv.bind(path)
    else:
        srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    answer = b"\0" * ANSWER_BYTES

    def serve():
        conn, _ = srv.accept()
        buf = memoryview(bytearray(max(nbytes.values())))
        with conn:
            while True:
                head = conn.recv(8)  # the size of the body that follows
                if len(head) < 8:
                    return
                size, got = int.from_bytes(head, "little"), 0
                while got < size:
                    got += conn.recv_into(buf[got:size])
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    cl = socket.socket(family)
    cl.connect(srv.getsockname())
    out, reply = {}, memoryview(bytearray(ANSWER_BYTES))
    try:
        for b in batches:
            data = windows(b).tobytes()

            def call(data=data):
                cl.sendall(len(data).to_bytes(8, "little"))
                cl.sendall(data)
                got = 0
                while got < ANSWER_BYTES:
                    got += cl.recv_into(reply[got:])

            out[b] = best_ms_per_window(call, b, n_windows, rounds)
    finally:
        cl.close()
        srv.close()
        if path:
            os.unlink(path)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Servers (subprocesses): the bare ASGI app and the service with a no-op model
# ----------------------------------------------------------------------------------------------------------------


class NoopEncoder:
    """Stand-in model: the Encoder contract, returning zeros. Isolates the transport from any compute."""

    encoder_id, model_name, preprocessing = "noop00000000", "noop", "none"
    dim, frames, image_size, dtype, device = 1024, 8, 256, "float32", "cpu"

    def info(self) -> dict:
        return {k: getattr(self, k) for k in ("encoder_id", "dim", "frames", "image_size", "dtype", "device")} | {
            "model": "noop"
        }

    def encode(self, windows):
        import numpy as np

        return np.zeros((windows.shape[0], self.dim), np.float32)


def bare_asgi_app():
    answer = b"\0" * ANSWER_BYTES
    state = {"buf": bytearray(0)}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        size = int(dict(scope["headers"]).get(b"content-length", b"0"))
        if len(state["buf"]) < size:
            state["buf"] = bytearray(size)
        view, got, more = memoryview(state["buf"]), 0, True
        while more:
            msg = await receive()
            chunk = msg.get("body", b"")
            view[got : got + len(chunk)] = chunk
            got += len(chunk)
            more = msg.get("more_body", False)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


def serve(kind: str, root: str, port: int, http: str, loop: str, profile: str | None) -> None:
    """Child process: the server. `root` is the tree whose services/ and clients/ are imported."""
    sys.path[:0] = [root, os.path.join(root, "clients")]
    import uvicorn

    if kind == "bare":
        app = bare_asgi_app()
    else:
        from services.encoder.app import create_app
        from services.encoder.settings import EncoderSettings

        app = create_app(
            EncoderSettings(
                store=tempfile.mkdtemp(prefix="bench-store-"), max_batch=32, max_wait_ms=0, max_queue=1024, token=None
            ),
            encoder=NoopEncoder(),
        )
    profiler = None
    if profile:
        import signal

        import pyinstrument

        profiler = pyinstrument.Profiler(interval=0.0005)
        profiler.start()

        def dump(*_):
            profiler.stop()
            Path(profile).write_text(profiler.output_text(unicode=False))
            os._exit(0)

        signal.signal(signal.SIGTERM, dump)
    kwargs = {} if http == "service-default" else {"http": http, "loop": loop}
    if http == "service-default":  # run it the way `vjepa-robot serve encoder` runs it in that tree
        from services.encoder import server as srv_mod

        kwargs = getattr(srv_mod, "UVICORN_KWARGS", {"http": "h11", "loop": "asyncio"})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **kwargs)


class Server:
    """The server child process, started and stopped by the harness (vjepa_robot/harness.py of this tree)."""

    def __init__(self, kind: str, root: Path, http: str, loop: str, profile: str | None = None):
        from vjepa_robot.harness import Service, free_port

        self.port = free_port()
        cmd = [sys.executable, __file__, "--serve", kind, str(root), str(self.port), http, loop, profile or ""]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VJEPA_ROBOT_")}
        self.service = Service(cmd, port=self.port, name=f"{kind}-server", env=env, cwd=root, start_timeout=120)
        self.url = self.service.url

    @property
    def proc(self):
        return self.service.proc

    def __enter__(self) -> Server:
        self.service.start()
        return self

    def __exit__(self, *exc) -> None:
        self.service.stop(grace_s=20)


# ----------------------------------------------------------------------------------------------------------------
# Clients (subprocess, importing the SDK of the tree under test)
# ----------------------------------------------------------------------------------------------------------------


def client(
    kind: str, root: str, url: str, batches, n_windows: int, rounds: int, profile: str | None, server_pid: int
) -> None:
    """Child process: print {batch: ms/window} as JSON, plus in-process stage timings of the SDK's own steps."""
    sys.path[:0] = [root, os.path.join(root, "clients")]
    import httpx

    data = windows(max(batches))
    profiler = None
    if profile:
        import pyinstrument

        profiler = pyinstrument.Profiler(interval=0.0005)
        profiler.start()
    out: dict = {"ms_per_window": {}, "cpu": {}, "stages": {}}
    if kind == "bare":
        with httpx.Client(timeout=300) as http:
            for b in batches:
                body = data[:b].tobytes()
                out["ms_per_window"][b] = best_ms_per_window(
                    lambda body=body: http.post(url + "/encode", content=body).raise_for_status(),
                    b,
                    n_windows,
                    rounds,
                    server_pid,
                )
                out["cpu"][b] = CPU[b]
    else:
        from vjepa_robot_client import EncoderClient
        from vjepa_robot_client import encoder as sdk

        with EncoderClient(url, token=None) as enc:
            for b in batches:
                out["ms_per_window"][b] = best_ms_per_window(
                    lambda b=b: enc.encode(data[:b]), b, n_windows, rounds, server_pid
                )
                out["cpu"][b] = CPU[b]
        # The client's own CPU steps, timed in process on the same data (ms per window at the largest batch)
        b = max(batches)
        build = sdk._encode_request
        out["stages"]["client: build request body"] = best_ms_per_window(lambda: build(data[:b]), b, 2 * b, rounds)
    if profiler:
        profiler.stop()
        Path(profile).write_text(profiler.output_text(unicode=False))
    print(json.dumps(out))


def run_client(kind: str, root: Path, srv: Server, args, profile: str | None = None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--client",
        kind,
        str(root),
        srv.url,
        ",".join(map(str, args.batches)),
        str(args.windows),
        str(args.rounds),
        profile or "",
        str(srv.proc.pid),
    ]
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"client failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def export_tree(rev: str) -> Path:
    """The tree of commit `rev` in a temp dir (git archive: the repository itself is not touched)."""
    dest = Path(tempfile.mkdtemp(prefix=f"bench-{rev}-"))
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "services", "clients", "vjepa_robot"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    tar_path = dest / "tree.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    tar_path.unlink()
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=lambda s: tuple(int(x) for x in s.split(",")), default=BATCHES)
    p.add_argument("--windows", type=int, default=64, help="windows per round per batch size")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline", default=None, help="a git commit: also measure its service (before/after, one run)")
    p.add_argument(
        "--stacks", default="h11/asyncio,httptools/uvloop", help="uvicorn http/loop pairs for the bare ASGI rung"
    )
    p.add_argument("--profile", default=None, help="directory: write pyinstrument profiles of the service runs")
    p.add_argument("--serve", nargs=6, help=argparse.SUPPRESS)
    p.add_argument("--client", nargs=8, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        kind, root, port, http, loop, profile = args.serve
        return serve(kind, root, int(port), http, loop, profile or None)
    if args.client:
        kind, root, url, batches, n, rounds, profile, pid = args.client
        return client(
            kind, root, url, tuple(int(x) for x in batches.split(",")), int(n), int(rounds), profile or None, int(pid)
        )

    t0 = time.perf_counter()
    print(f"load average before: {load_average()}; {os.cpu_count()} cores; python {sys.version.split()[0]}")
    rows: list[tuple[str, dict]] = []
    for name, family in (
        ("raw TCP socket, 127.0.0.1 (kernel floor)", socket.AF_INET),
        ("raw Unix domain socket", socket.AF_UNIX),
    ):
        rows.append((name, {"ms_per_window": raw_socket(family, args.batches, args.windows, args.rounds), "cpu": {}}))
    for stack in args.stacks.split(","):
        http, loop = stack.split("/")
        with Server("bare", ROOT, http, loop) as srv:
            rows.append(
                (
                    f"bare ASGI app on uvicorn {http}/{loop}, httpx posting one bytes body",
                    run_client("bare", ROOT, srv, args),
                )
            )
    trees = [("this tree", ROOT)]
    if args.baseline:
        trees.insert(0, (f"commit {args.baseline}", export_tree(args.baseline)))
    stages = {}
    for name, root in trees:
        prof = None
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            prof = str(Path(args.profile) / f"{name.replace(' ', '_')}")
        with Server("service", root, "service-default", "", profile=prof and prof + "_server.txt") as srv:
            res = run_client("service", root, srv, args, profile=prof and prof + "_client.txt")
        rows.append((f"service + SDK client, {name}", res))
        stages[name] = res["stages"]
    print(f"load average after: {load_average()}; took {time.perf_counter() - t0:.0f} s\n")

    def get(d, b):
        return d.get(b, d.get(str(b)))

    print(
        "| wall ms per window (8x256x256x3 uint8, 1.57 MB), no-op model | "
        + " | ".join(f"batch {b}" for b in args.batches)
        + " | CPU ms/window client + server, batch "
        + "/".join(map(str, args.batches))
        + " |"
    )
    print("|---|" + "---:|" * len(args.batches) + "---|")
    for name, res in rows:
        cpu = (
            " / ".join(f"{get(res['cpu'], b)[0]:.2f} + {get(res['cpu'], b)[1]:.2f}" for b in args.batches)
            if res["cpu"]
            else "-"
        )
        print(f"| {name} | " + " | ".join(f"{get(res['ms_per_window'], b):.2f}" for b in args.batches) + f" | {cpu} |")
    print()
    for name, st in stages.items():
        for stage, ms in st.items():
            print(f"- {name}: {stage}: {ms:.2f} ms/window at batch {max(args.batches)} (in process)")


if __name__ == "__main__":
    main()
