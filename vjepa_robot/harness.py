"""The one way a service is started: tests, bench, the CLI's local encoders and the demo all come through here.

    with cli_service("encoder", "--preset", "tiny", "--store", store, log=logs / "encoder.log") as enc:
        EncoderClient(enc.url).health()                   # a child process on a free loopback port, healthy
    with serve_app(app) as url: ...                       # an ASGI app under uvicorn in a thread of this process
    with ServiceGroup([encoder, trainer]) as (enc, tr):   # started together, stopped in reverse order

A child process (`Service`):
- listens on a free loopback port (`free_port`), writes stdout and stderr to its log file;
- is healthy when GET /healthz answers 200; a child that exits or stays unhealthy past `start_timeout` is stopped
  and `ServiceFailed` is raised with the last lines of its log;
- runs in its own process group (POSIX) or its own console process group (Windows), so a Ctrl-C in the terminal
  reaches only its parent, which stops its children in order (a trainer before the encoder it calls);
- stops with SIGTERM to the service (a graceful shutdown: a trainer marks its unfinished work), then SIGKILL to its
  whole process group after `grace_s` seconds, and the group's leftovers (a dataset pool's workers, the
  multiprocessing resource tracker) are killed either way;
- dies with its parent: on Linux the kernel sends it SIGTERM when the thread that started it exits (prctl
  PR_SET_PDEATHSIG; services/common/procs.py), so a SIGKILLed CLI, test or bench leaves no service behind. Start
  children from the main thread (or a thread that lives as long as they should). On macOS and Windows there is no
  such hook: children are stopped on every exit path of their parent (context managers, an atexit hook, the CLI's
  SIGINT/SIGTERM handling), but a parent killed with SIGKILL leaves them running.

`stop_on_signals()` turns SIGTERM and SIGINT into `Interrupted` (a KeyboardInterrupt) in the main thread, so `finally`
blocks and context managers stop services and records end `interrupted`/`failed`; the CLI calls it for its commands.

This is a door-level utility (the CLI, tests, bench): the SDK and the research library do not import it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from services.common.procs import with_pdeathsig

HOST = "127.0.0.1"
POSIX = os.name == "posix"


class ServiceFailed(RuntimeError):
    """A service exited, or did not answer its health check in time; the message ends with its log's last lines."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived (stop_on_signals): a KeyboardInterrupt naming the signal."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def free_port(host: str = HOST) -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_healthy(
    url: str,
    timeout: float = 180.0,
    *,
    path: str = "/healthz",
    alive: Callable[[], bool] = lambda: True,
    why: Callable[[], str] = lambda: "",
    progress: Callable[[float], None] | None = None,
    every: float = 20.0,
) -> None:
    """Poll GET url+path until it answers 200; ServiceFailed if `alive()` turns False or `timeout` passes.
    `progress(waited_s)` hears every `every` seconds of waiting (a log reader sees the start is still going)."""
    import httpx

    start = time.monotonic()
    deadline, told = start + timeout, start
    delay = 0.05
    while True:
        if progress is not None and time.monotonic() - told >= every:
            told = time.monotonic()
            progress(told - start)
        if not alive():
            raise ServiceFailed(f"service at {url} exited before it was healthy{why()}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServiceFailed(f"service at {url} not healthy ({path}) after {timeout:.0f} s{why()}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


# ----------------------------------------------------------------------------------------------------------------
# A service in a child process
# ----------------------------------------------------------------------------------------------------------------

_LIVE: set[Service] = set()  # stopped at interpreter exit if their owner did not (atexit below)
_LIVE_LOCK = threading.Lock()


class Service:
    """One service as a child process. `argv` is the whole command; it must listen on `port` (on `host`).

    log: the file its stdout and stderr go to (a temporary file when None). env: its environment (default: this
    process's, with PYTHONUNBUFFERED=1). grace_s: seconds between SIGTERM and SIGKILL when stopping.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        name: str = "service",
        host: str = HOST,
        log: Path | str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        health_path: str = "/healthz",
        start_timeout: float = 180.0,
        grace_s: float = 10.0,
        die_with_parent: bool = True,
        on_wait: Callable[[float], None] | None = None,
    ):
        self.argv, self.port, self.name, self.host = [str(a) for a in argv], port, name, host
        if log is None:
            import tempfile

            fd, log = tempfile.mkstemp(prefix=f"vjepa-robot-{name}-", suffix=".log")
            os.close(fd)
        self.log = Path(log)
        self.env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        self.cwd, self.health_path, self.start_timeout, self.grace_s = cwd, health_path, start_timeout, grace_s
        self.die_with_parent, self.on_wait = die_with_parent, on_wait  # on_wait(waited_s): start still going
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _why(self) -> str:
        code = self.proc.poll() if self.proc else None
        exited = f"; exit code {code}" if code is not None else ""
        return f"{exited}; {self.name} log ({self.log}):\n{self.log_tail()}"

    def spawn(self) -> Service:
        """Start the process (not waiting for it to be healthy); again after it ended (same port, log appended)."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict = {}
        argv = with_pdeathsig(self.argv, signal.SIGTERM) if self.die_with_parent else self.argv
        if POSIX:
            kwargs["start_new_session"] = True  # its own process group: killpg reaches its workers too
        else:  # pragma: no cover (Windows)
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        with open(self.log, "ab") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} started: {' '.join(self.argv)}\n".encode())
            fh.flush()
            self.proc = subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                **kwargs,
            )  # fmt: skip
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    def wait_healthy(self, timeout: float | None = None) -> Service:
        """Block until healthy; on failure stop the process and raise ServiceFailed (with its log's tail)."""
        try:
            wait_healthy(
                self.url,
                self.start_timeout if timeout is None else timeout,
                path=self.health_path,
                alive=self.running,
                why=self._why,
                progress=self.on_wait,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def start(self, timeout: float | None = None) -> Service:
        return self.spawn().wait_healthy(timeout)

    def stop(self, grace_s: float | None = None) -> int | None:
        """SIGTERM, up to `grace_s` seconds for it to exit, then SIGKILL; the process group's leftovers are killed
        either way. Returns the exit code (None if never started). Safe to call twice."""
        proc = self.proc
        if proc is None:
            return None
        grace = self.grace_s if grace_s is None else grace_s
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM) if POSIX else proc.terminate()
                _wait_exit(proc, grace)
            if POSIX:
                # the leader is dead or unreaped (its pid, the group's id, cannot be reused yet): kill what is left
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            elif proc.poll() is None:  # pragma: no cover (Windows)
                proc.kill()
            proc.wait(timeout=30)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL to the service alone (a crash: no cleanup; its own children die with it, see the module doc)."""
        if self.running():
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> Service:
        if not self.running():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Service({self.name!r}, {self.url}, pid={self.pid})"


def _wait_exit(proc: subprocess.Popen, timeout: float) -> None:
    """Wait up to `timeout` s for `proc` to exit, leaving it unreaped where the OS allows (waitid WNOWAIT)."""
    deadline = time.monotonic() + timeout
    waitid = getattr(os, "waitid", None)
    while time.monotonic() < deadline:
        if waitid is not None:
            try:
                if waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return
            except ChildProcessError:  # already reaped
                return
        elif proc.poll() is not None:  # pragma: no cover
            return
        time.sleep(0.05)


def cli_argv(*args: str | os.PathLike) -> list[str]:
    """`vjepa-robot ARGS...` run by this interpreter (python -m vjepa_robot.cli)."""
    return [sys.executable, "-m", "vjepa_robot.cli", *(str(a) for a in args)]


def cli_service(kind: str, *args: str | os.PathLike, port: int | None = None, **kwargs) -> Service:
    """`vjepa-robot serve KIND --port PORT ARGS...` (kind: encoder | trainer) as a Service on a free port.
    kwargs go to Service (log, env, start_timeout, grace_s, name)."""
    port = port or free_port()
    kwargs.setdefault("name", kind)
    return Service(cli_argv("serve", kind, "--port", str(port), *args), port=port, **kwargs)


class ServiceGroup:
    """Several services: all spawned at once, then each waited for; stopped in reverse order (a trainer before the
    encoder it calls). If one fails to start, the others are stopped."""

    def __init__(self, services: Sequence[Service]):
        self.services = list(services)

    def start(self) -> ServiceGroup:
        try:
            for s in self.services:
                s.spawn()
            for s in self.services:
                s.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for s in reversed(self.services):
            s.stop()

    def __enter__(self) -> list[Service]:
        self.start()
        return self.services

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for s in reversed(live):
        with contextlib.suppress(Exception):
            s.stop(grace_s=5)


# ----------------------------------------------------------------------------------------------------------------
# A service in this process (uvicorn in a thread)
# ----------------------------------------------------------------------------------------------------------------


class InProcess:
    """An ASGI app under uvicorn in a background thread of this process, on loopback.

    Started when uvicorn reports it started (its lifespan startup done); with `health_path`, also when that path
    answers 200. Stopped by asking uvicorn to exit (its lifespan shutdown runs) and joining the thread."""

    def __init__(
        self,
        app,
        *,
        port: int | None = None,
        host: str = HOST,
        startup_timeout: float = 20.0,
        health_path: str | None = None,
        log_level: str = "warning",
        **uvicorn_kwargs,
    ):
        import uvicorn

        class _Server(uvicorn.Server):
            def install_signal_handlers(self) -> None:  # a thread cannot own signal handlers
                pass

        self.host, self.port = host, port or free_port(host)
        self.startup_timeout, self.health_path = startup_timeout, health_path
        # log_config None: uvicorn's own dictConfig would bind its handlers to the sys.stderr of the moment (a test's
        # capture, closed when that test ends) for every server after it in this process; its records go to the
        # root logger instead, written wherever stderr is when they are emitted
        uvicorn_kwargs.setdefault("log_config", None)
        config = uvicorn.Config(app, host=host, port=self.port, log_level=log_level, lifespan="auto", **uvicorn_kwargs)
        self.server = _Server(config)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # reported by start()
            self.error = exc

    def start(self) -> InProcess:
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                cause = f": {type(self.error).__name__}: {self.error}" if self.error else ""
                raise ServiceFailed(f"uvicorn did not start on port {self.port}{cause}")
            time.sleep(0.02)
        if self.health_path:
            try:
                wait_healthy(self.url, self.startup_timeout, path=self.health_path, alive=self.thread.is_alive)
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=timeout)

    def __enter__(self) -> InProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serve_app(app, port: int | None = None, startup_timeout: float = 20.0, **kwargs) -> Iterator[str]:
    """`with serve_app(app) as url:` an ASGI app on loopback in this process (InProcess), yielding its base URL."""
    with InProcess(app, port=port, startup_timeout=startup_timeout, **kwargs) as server:
        yield server.url


# ----------------------------------------------------------------------------------------------------------------
# SIGTERM and SIGINT
# ----------------------------------------------------------------------------------------------------------------


class _Signals:
    received: int | None = None
    count = 0


SIGNALS = _Signals()


def stop_on_signals(signums: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> Callable[[], None]:
    """In the main thread: the first SIGTERM/SIGINT raises Interrupted there (so cleanup runs: services stopped,
    records marked); a second one while cleaning up is ignored with a note; a third exits at once (128 + signal).
    Returns a function that puts the previous handlers back (a no-op off the main thread, where nothing is set)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    SIGNALS.received, SIGNALS.count = None, 0

    def handler(signum, frame) -> None:
        SIGNALS.count += 1
        if SIGNALS.count == 1:
            SIGNALS.received = signum
            raise Interrupted(signum)
        if SIGNALS.count == 2:
            print(
                f"{signal.Signals(signum).name}: stopping (services and records first); send it again to quit at once",
                file=sys.stderr,
                flush=True,
            )
            return
        os._exit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in signums}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    return restore


def exit_now(code: int) -> None:
    """End the process after a stop signal's cleanup: services still running are stopped, output is flushed, and
    the process exits without waiting for threads still computing (their work is not written anywhere)."""
    _stop_leftovers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# ----------------------------------------------------------------------------------------------------------------
# A load balancer for replicas (tests and bench)
# ----------------------------------------------------------------------------------------------------------------


class RoutingProxy:
    """A small HTTP load balancer (an ASGI app: serve it with serve_app) in front of encoder replicas, for tests
    and bench.

        proxy = RoutingProxy([url_a, url_b], affinity_header="Modal-Session-ID")
        with serve_app(proxy) as url: ...

    Requests without the affinity header (or all of them when affinity_header is None) go round-robin. Requests
    carrying it go to the replica rendezvous hashing picks for its value among the replicas in `upstreams` (what
    Modal documents for its HTTP Servers' sticky routing; nginx `hash ... consistent` and Envoy's ring hash behave
    alike): the same key keeps its replica while the set stays the same, and only the keys of a removed replica
    move. `remove(url)` is a scale-down. Every forwarded request is logged: (method, path, upstream, body bytes
    as received, status).
    """

    def __init__(self, upstreams: list[str], affinity_header: str | None = None):
        self.upstreams = list(upstreams)
        self.affinity_header = affinity_header.lower() if affinity_header else None
        self.log: list[tuple[str, str, str, int, int]] = []
        self._next = 0
        self._client = None

    def remove(self, upstream: str) -> None:
        self.upstreams.remove(upstream)

    def pick(self, key: str | None) -> str:
        import hashlib

        if key is None:
            self._next += 1
            return self.upstreams[(self._next - 1) % len(self.upstreams)]
        return max(self.upstreams, key=lambda u: hashlib.blake2b(f"{key}|{u}".encode(), digest_size=8).digest())

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=120)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.lower() not in (b"host", b"content-length", b"transfer-encoding")
        ]
        key = next((v for k, v in headers if self.affinity_header and k.lower() == self.affinity_header), None)
        upstream = self.pick(key)
        query = scope.get("query_string", b"").decode("latin-1")
        url = upstream + scope["path"] + (f"?{query}" if query else "")
        r = await self._client.request(scope["method"], url, headers=headers, content=body)
        self.log.append((scope["method"], scope["path"], upstream, len(body), r.status_code))
        out_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in r.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")
        ]
        content = r.content
        await send(
            {
                "type": "http.response.start",
                "status": r.status_code,
                "headers": [*out_headers, (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})
