"""Bearer-token auth shared by the encoder and trainer services.

When a token is configured (VJEPA_ROBOT_TOKEN or a token file), every path requires `Authorization: Bearer <token>`
(otherwise 401) except the public ones, listed once here in PUBLIC_PATHS / PUBLIC_PREFIXES:

    /healthz        liveness probes (Docker, Modal, load balancers) carry no token
    /docs           the API page, its assets under /docs-assets/, and the schema it renders (/openapi.json):
    /openapi.json   a browser opening /docs cannot send a bearer header, so guarding them only breaks the page;
                    they describe the routes and shapes, which the public source already does, and serve no data

TokenMiddleware enforces the rule for every request, routes added later and unknown paths included (an unknown
path without a token is 401, not 404, so it tells nothing). The per-route `bearer_auth` dependency applies the
same check and declares the scheme in the OpenAPI schema (Swagger's "Authorize" button). With no token the
services are open: fine on loopback, loudly warned about on any other interface.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Callable
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

log = logging.getLogger(__name__)

TOKEN_ENV = "VJEPA_ROBOT_TOKEN"
PUBLISHED_HOST_ENV = (
    "VJEPA_ROBOT_PUBLISHED_HOST"  # set by docker-compose.yml: the host interface ports are published on
)

PUBLIC_PATHS: tuple[str, ...] = ("/healthz", "/docs", "/openapi.json")
PUBLIC_PREFIXES: tuple[str, ...] = ("/docs-assets/",)  # Swagger UI's own js/css (services/common/docs.py)

MISSING = "missing bearer token: send the header 'Authorization: Bearer <token>' (the VJEPA_ROBOT_TOKEN)"
INVALID = "invalid bearer token"


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def token_error(authorization: str | None, token: str) -> str | None:
    """Why `authorization` (the header's value) does not carry `token`, or None when it does."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return MISSING
    if not hmac.compare_digest(value.strip().encode(), token.encode()):
        return INVALID
    return None


class TokenMiddleware:
    """Pure ASGI: 401 for every HTTP request to a non-public path without the token (see the module docstring)."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and not is_public(scope.get("path", "")):
            header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"authorization"), None)
            problem = token_error(header, self.token)
            if problem is not None:
                response = JSONResponse(
                    {"detail": problem},
                    status_code=status.HTTP_401_UNAUTHORIZED,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def require_token(app: FastAPI, token: str | None) -> None:
    """Guard every non-public path of `app` with `token` (nothing when None). Call before adding other middleware,
    so that metrics and body limits still see the 401s."""
    if token is not None:
        app.add_middleware(TokenMiddleware, token=token)


_bearer = HTTPBearer(auto_error=False, description="Bearer token (VJEPA_ROBOT_TOKEN) when the service sets one.")


def load_token(token: str | None = None, token_file: str | Path | None = None) -> str | None:
    """The token: an explicit value wins, else the first line of token_file; blank means none."""
    if token and token.strip():
        return token.strip()
    if token_file:
        path = Path(token_file)
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {str(path)!r}: {exc}") from exc
        if not value:
            raise ValueError(f"the token file {str(path)!r} is empty: write the bearer token into it")
        return value
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_open(host: str, token: str | None, service: str) -> None:
    """Log a loud warning when a service is reachable beyond loopback without a token.

    In a container the service must listen on 0.0.0.0; what decides who reaches it is where the port is published.
    docker-compose.yml passes that host interface as VJEPA_ROBOT_PUBLISHED_HOST (the same value its port mapping
    uses), so a stack published on 127.0.0.1 only logs a quiet note instead of the warning."""
    if token is not None:
        return
    published = os.environ.get(PUBLISHED_HOST_ENV, "").strip()
    if not is_loopback(published or host):
        log.warning(
            "!!! %s listens on %s%s WITHOUT authentication: anyone who can reach it can use it. "
            "Set %s (or --token-file) to require `Authorization: Bearer <token>`. !!!",
            service,
            host,
            f" (published on {published})" if published else "",
            TOKEN_ENV,
        )
    elif published and published != host:
        log.info("%s listens on %s, published on %s only; no token is set", service, host, published)


def bearer_auth(token: str | None) -> Callable:
    """A FastAPI dependency enforcing the token (a no-op when token is None)."""

    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if token is None:
            return
        header = f"{credentials.scheme} {credentials.credentials}" if credentials is not None else None
        problem = token_error(header, token)
        if problem is not None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=problem, headers={"WWW-Authenticate": "Bearer"})

    return check
