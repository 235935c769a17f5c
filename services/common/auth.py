"""Bearer-token auth shared by the encoder and trainer services.

When a token is configured (VJEPA_ROBOT_TOKEN or a token file), every route except /healthz requires
`Authorization: Bearer <token>`; otherwise 401. With no token the services are open: fine on loopback,
loudly warned about on any other interface.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from pathlib import Path
from typing import Callable

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

log = logging.getLogger(__name__)

TOKEN_ENV = "VJEPA_ROBOT_TOKEN"
PUBLISHED_HOST_ENV = "VJEPA_ROBOT_PUBLISHED_HOST"  # set by docker-compose.yml: the host interface ports are published on

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
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing bearer token: send the header 'Authorization: Bearer <token>' (the VJEPA_ROBOT_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
