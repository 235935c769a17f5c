"""Run the trainer service with uvicorn.

vjepa-robot serve trainer --encoder-url http://127.0.0.1:8001 --store ./vjepa-robot-store   # the CLI calls serve()
VJEPA_ROBOT_ENCODER_URL=http://encoder:8001 uvicorn services.trainer.server:app_from_env --factory --port 8002
"""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from services.trainer.app import TrainerSettings, create_app
from vjepa_robot_lab.threads import set_torch_threads


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from VJEPA_ROBOT_* environment variables only."""
    set_torch_threads()  # once per process, before any job (vjepa_robot_lab/threads.py)
    return create_app(TrainerSettings())


def serve(
    host: str = "127.0.0.1",
    port: int = 8002,
    encoder_url: str | None = None,
    store: str | None = None,
    runs_dir: Path | None = None,
    token_file: Path | None = None,
    compress: str | None = None,
) -> None:
    overrides = {
        k: v
        for k, v in dict(
            host=host,
            port=port,
            encoder_url=encoder_url,
            store=store,
            runs=str(runs_dir) if runs_dir else None,
            token_file=token_file,
            compress=compress,
        ).items()
        if v is not None
    }
    settings = TrainerSettings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per /encode call would drown the log
    set_torch_threads()  # once per process, before any job (vjepa_robot_lab/threads.py)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
