"""Run the encoder service with uvicorn.

vjepa-robot serve encoder --preset tiny --store ./vjepa-robot-store          # the CLI calls serve()
VJEPA_ROBOT_PRESET=tiny uvicorn services.encoder.server:app_from_env --factory --port 8001
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from services.encoder.app import create_app
from services.encoder.settings import EncoderSettings


def uvicorn_kwargs() -> dict[str, str]:
    """httptools + uvloop when installed (core dependencies on Linux/macOS), else uvicorn's pure-Python h11 + asyncio.

    Measured with the no-op model on loopback (bench/transport.py): the C parser and loop cut the server's CPU per
    8x256x256 window by about a fifth; the pure-Python pair still works everywhere.
    """
    have = lambda name: importlib.util.find_spec(name) is not None  # noqa: E731
    return {"http": "httptools" if have("httptools") else "h11", "loop": "uvloop" if have("uvloop") else "asyncio"}


UVICORN_KWARGS = uvicorn_kwargs()


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from VJEPA_ROBOT_* environment variables only."""
    return create_app(EncoderSettings())


def serve(
    host: str = "127.0.0.1",
    port: int = 8001,
    preset: str | None = None,
    model: str | None = None,
    revision: str | None = None,
    store: str | None = None,
    max_batch: int | None = None,
    max_wait_ms: float | None = None,
    token_file: Path | None = None,
    compile: bool | None = None,
    family: str | None = None,
    fusion: str | None = None,
) -> None:
    """Build settings (explicit arguments override VJEPA_ROBOT_* variables) and serve until interrupted."""
    overrides = {
        k: v
        for k, v in dict(
            host=host,
            port=port,
            preset=preset,
            model=model,
            revision=revision,
            store=store,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            token_file=token_file,
            compile=compile,
            family=family,
            fusion=fusion,
        ).items()
        if v is not None
    }
    if model and "preset" not in overrides:
        overrides["preset"] = None  # --model replaces a preset that may come from the environment
    settings = EncoderSettings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info", **UVICORN_KWARGS)
