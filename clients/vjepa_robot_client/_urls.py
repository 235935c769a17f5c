"""The SDK's default service URLs when no URL is given and the URL variables are unset.

Precedence (see SyncTransport.__init__): the url argument, then $VJEPA_ROBOT_ENCODER_URL / $VJEPA_ROBOT_TRAINER_URL,
then the default built here: http://<host>:<port> where
  port = $VJEPA_ROBOT_ENCODER_PORT / $VJEPA_ROBOT_TRAINER_PORT (the host ports docker-compose.yml publishes on), else
         8001 / 8002;
  host = $VJEPA_ROBOT_BIND when it names one interface (compose publishes the ports there), else 127.0.0.1 (unset,
         0.0.0.0 or :: publish on every interface, loopback included).
So a .env that moves the ports moves the SDK's defaults with them once its variables are in the environment
(`set -a; . ./.env; set +a`), instead of silently pointing the quickstart at 8001/8002. The URL variables stay the
explicit, documented way; they win over all of this.
"""

from __future__ import annotations

import os

BIND_ENV = "VJEPA_ROBOT_BIND"
ENCODER_PORT_ENV = "VJEPA_ROBOT_ENCODER_PORT"
TRAINER_PORT_ENV = "VJEPA_ROBOT_TRAINER_PORT"
_ALL_INTERFACES = ("", "0.0.0.0", "::", "[::]")


def local_url(port_env: str, default_port: int) -> str:
    """http://<host>:<port> from $VJEPA_ROBOT_BIND and $<port_env> (see the module docstring)."""
    raw = (os.environ.get(port_env) or "").strip()
    if raw:
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise ValueError(
                f"{port_env}={raw!r} is not a port number (1-65535); fix it, or set the service URL "
                f"variable (VJEPA_ROBOT_ENCODER_URL / VJEPA_ROBOT_TRAINER_URL) or pass url="
            )
        port = int(raw)
    else:
        port = default_port
    host = (os.environ.get(BIND_ENV) or "").strip()
    if host in _ALL_INTERFACES:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{port}"


def default_encoder_url() -> str:
    return local_url(ENCODER_PORT_ENV, 8001)


def default_trainer_url() -> str:
    return local_url(TRAINER_PORT_ENV, 8002)
