"""Request-body limits shared by the encoder and trainer services (pure ASGI: no BaseHTTPMiddleware overhead).

    app.add_middleware(BodyLimitMiddleware, limit=1 << 20, env="VJEPA_ROBOT_MAX_BODY_BYTES")

A body over `limit` bytes is refused with 413 {"detail": "request body too large: the limit is N bytes (ENV); ..."}
by its Content-Length before anything is read, else as soon as the bytes received pass the limit, so a client cannot
make the service hold more than `limit` bytes of one JSON body. Bodies under it are read up front and replayed to
the app (they are small JSON documents). `exempt(method, path)` names the routes that read and bound their own body
(the encoder's .npy frames routes, whose limit is larger and whose bytes go into reused buffers).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi.responses import JSONResponse


class BodyLimitMiddleware:
    """Pure ASGI: refuse a request body over `limit` bytes with 413 (by Content-Length, else by the bytes received)."""

    def __init__(
        self,
        app,
        limit: int,
        env: str = "VJEPA_ROBOT_MAX_BODY_BYTES",
        exempt: Callable[[str, str], bool] | None = None,
    ):
        self.app, self.limit, self.env, self.exempt = app, limit, env, exempt

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (
            self.exempt is not None and self.exempt(scope.get("method", ""), scope.get("path", ""))
        ):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                chunks = None
                first = message
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(scope, receive, send)
            more = message.get("more_body", False)
        if chunks is not None:
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        await JSONResponse(
            {"detail": f"request body too large: the limit is {self.limit} bytes ({self.env}); send a smaller request"},
            status_code=413,
        )(scope, receive, send)
