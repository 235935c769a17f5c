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
    settings = TrainerSettings()
    _hold_store_or_exit(settings)
    return create_app(settings)


def _hold_store_or_exit(settings: TrainerSettings) -> None:
    """Take the store's lease before uvicorn starts (the app's lifespan takes it again: re-entrant), so a second
    trainer on a store in use exits with code 2 and one line naming the store and the live trainer."""
    import atexit
    import sys

    from services.common.lease import StoreInUse, store_lease
    from services.common.store import Store
    from vjepa_robot_lab.records.runs import default_runs_dir

    store = Store(settings.store)
    lease = store_lease(store.uri, settings.runs or default_runs_dir(store.uri), _url(settings))
    try:
        lease.acquire()
    except StoreInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    atexit.register(lease.release)


def _url(settings: TrainerSettings) -> str:
    return f"http://{settings.host}:{settings.port}"


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
    _hold_store_or_exit(settings)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
