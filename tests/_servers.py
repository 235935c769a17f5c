"""Real services on loopback for tests: the one harness (vjepa_robot/harness.py), under the names tests use.

with serve_app(app) as url:            # url = "http://127.0.0.1:<free port>": uvicorn in a background thread
    EncoderClient(url).health()
with cli_service("encoder", "--preset", "tiny", "--store", store) as enc:   # a child process, healthy
    EncoderClient(enc.url).health()
"""

from __future__ import annotations

from vjepa_robot.harness import (  # noqa: F401  (re-exported for the tests)
    InProcess,
    RoutingProxy,
    Service,
    ServiceFailed,
    ServiceGroup,
    cli_argv,
    cli_service,
    free_port,
    serve_app,
)
