"""Run a real ASGI app under uvicorn on loopback, in a background thread, for tests.

with serve_app(app) as url:            # url = "http://127.0.0.1:<free port>"
    EncoderClient(url).health()
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a thread cannot own signal handlers
        pass


@contextlib.contextmanager
def serve_app(app, port: int | None = None, startup_timeout: float = 20.0) -> Iterator[str]:
    port = port or free_port()
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="auto"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class RoutingProxy:
    """A small HTTP load balancer (an ASGI app: serve it with serve_app) in front of encoder replicas, for tests.

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
