"""One request-metrics middleware for both services (pure ASGI: no BaseHTTPMiddleware overhead).

Each HTTP request is reported once it ends, to `observe(method, route, status, seconds, body_bytes)`:
`route` is the route's template (`/runs/{run_id}`), never the raw path, so ids cannot explode a metric's label set;
`body_bytes` counts the request body as it arrived on the wire (before any Content-Encoding is undone).
"""

from __future__ import annotations

import time
from collections.abc import Callable

Observe = Callable[[str, str, str, float, int], None]


class RequestMetricsMiddleware:
    def __init__(self, app, observe: Observe):
        self.app, self.observe = app, observe

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]
        received = [0]

        async def receive_counted():
            message = await receive()
            received[0] += len(message.get("body", b""))
            return message

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive_counted, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.observe(scope.get("method", "?"), route, str(status[0]), time.perf_counter() - start, received[0])
