"""The `vjepa-robot` command line. Commands are thin: they parse options and call one plain function.

Heavy imports (torch, dm_control, transformers) happen inside commands, so `--help` is instant.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

import vjepa_robot  # noqa: F401  (MUJOCO_GL default)

app = typer.Typer(help="vjepa-robot: frozen V-JEPA 2 as the eyes of a robot policy.", no_args_is_help=True)
datasets_app = typer.Typer(help="Expert datasets in the LanceDB feature store.", no_args_is_help=True)
serve_app = typer.Typer(help="Run the encoder or trainer service.", no_args_is_help=True)
train_app = typer.Typer(help="Train policies (BC, SAC) through the trainer service or in process.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(serve_app, name="serve")
app.add_typer(train_app, name="train")

STORE_HELP = "Feature store: a local directory or a LanceDB URI (s3://...). Default: $VJEPA_ROBOT_STORE or ./vjepa-robot-store"
StoreOpt = typer.Option(None, "--store", help=STORE_HELP, envvar="VJEPA_ROBOT_STORE")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


# ----------------------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------------------


@datasets_app.command("create")
def datasets_create(
    name: str = typer.Argument(..., help="Dataset name (letters, digits, '_', '-')."),
    expert: str = typer.Option("jacobian", help="Expert: jacobian | p-controller | random."),
    task: str = typer.Option("easy", help="reacher task: easy | hard."),
    episodes: int = typer.Option(100, help="Number of episodes."),
    steps: int = typer.Option(200, help="Control steps per episode."),
    seed: int = typer.Option(0, help="Dataset seed: the same seed gives the same frames and actions."),
    image_size: int = typer.Option(256, help="Frame size (camera 0); 0 stores no frames (state-only)."),
    workers: int = typer.Option(2, help="Parallel worker processes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset of this name."),
    resume: bool = typer.Option(False, "--resume", help="Complete an interrupted dataset of this name."),
    store: Optional[str] = StoreOpt,
) -> None:
    """Generate expert episodes in parallel workers and write them to LanceDB, one episode per append."""
    from services.trainer.datasets import DatasetExists, DatasetSpec, create_dataset

    try:
        spec = DatasetSpec(name=name, expert=expert, task=task, episodes=episodes, steps=steps, seed=seed,
                           image_size=image_size)
        meta = create_dataset(spec, store=store, workers=workers, overwrite=overwrite, resume=resume, progress=True)
    except (ValueError, DatasetExists) as exc:
        _fail(str(exc))
    typer.echo(
        f"dataset {name}: {meta['episodes']} episodes x {meta['steps']} steps, expert {meta['expert']} on {meta['task']}: "
        f"success {meta['success_rate']:.1%}, mean return {meta['mean_return']:.1f}"
    )


@datasets_app.command("list")
def datasets_list(store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """List datasets with their status and expert success."""
    from services.common.store import Store

    rows = Store(store).list_datasets()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no datasets yet: vjepa-robot datasets create NAME --expert jacobian --episodes 100")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "status", "expert", "task", "episodes", "steps", "success", "mean return", "created")
    for m in rows:
        sr = m.get("success_rate")
        mr = m.get("mean_return")
        table.add_row(m["name"], m["status"], str(m.get("expert")), str(m.get("task")), str(m.get("episodes")),
                      str(m.get("steps")), "-" if sr is None else f"{sr:.1%}", "-" if mr is None else f"{mr:.1f}",
                      str(m.get("created_at")))
    Console().print(table)


@datasets_app.command("show")
def datasets_show(name: str, store: Optional[str] = StoreOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one dataset's metadata (--json prints it as JSON)."""
    from services.common.store import DatasetNotFound, Store

    try:
        meta = Store(store).get_dataset_meta(name)
    except (DatasetNotFound, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
    else:
        for k, v in meta.items():
            typer.echo(f"{k:>16}: {v}")


@datasets_app.command("encode")
def datasets_encode(
    name: str,
    encoder_url: str = typer.Option("http://127.0.0.1:8001", "--encoder-url", envvar="VJEPA_ROBOT_ENCODER_URL"),
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
    token: Optional[str] = typer.Option(None, envvar="VJEPA_ROBOT_TOKEN", help="Bearer token of the encoder."),
) -> None:
    """Ask the encoder service to embed every step's 8-frame window of a dataset (idempotent)."""
    from services.encoder.dataset_encode import encode_dataset_via_service

    try:
        status = encode_dataset_via_service(name, encoder_url, batch_size=batch_size, token=token, progress=True)
    except Exception as exc:  # the SDK's typed errors carry the server's message
        _fail(str(exc))
    typer.echo(f"dataset {name}: {status.done}/{status.total} windows embedded by encoder {status.encoder_id}")


# ----------------------------------------------------------------------------------------------------------------
# serve
# ----------------------------------------------------------------------------------------------------------------


@serve_app.command("encoder")
def serve_encoder(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8001),
    preset: Optional[str] = typer.Option(None, help="vitl | vitl-random | tiny (default tiny unless --model)."),
    model: Optional[str] = typer.Option(None, help="Hub id or local directory of a V-JEPA 2 checkpoint."),
    revision: Optional[str] = typer.Option(None, help="Hub revision (commit) to pin."),
    store: Optional[str] = StoreOpt,
    max_batch: int = typer.Option(32, help="Most windows per forward pass.", envvar="VJEPA_ROBOT_MAX_BATCH"),
    max_wait_ms: float = typer.Option(5.0, help="Longest wait to fill a batch.", envvar="VJEPA_ROBOT_MAX_WAIT_MS"),
    token_file: Optional[Path] = typer.Option(None, help="File holding the bearer token (else $VJEPA_ROBOT_TOKEN)."),
) -> None:
    """Serve frozen V-JEPA 2 behind POST /encode."""
    from services.encoder.server import serve

    if preset and model:
        _fail("give --preset or --model, not both")
    serve(host=host, port=port, preset=preset, model=model, revision=revision, store=store, max_batch=max_batch,
          max_wait_ms=max_wait_ms, token_file=token_file)


@serve_app.command("trainer")
def serve_trainer(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8002),
    encoder_url: str = typer.Option("http://127.0.0.1:8001", envvar="VJEPA_ROBOT_ENCODER_URL"),
    store: Optional[str] = StoreOpt,
    runs_dir: Optional[Path] = typer.Option(None, envvar="VJEPA_ROBOT_RUNS", help="Where run records and checkpoints live."),
    token_file: Optional[Path] = typer.Option(None, help="File holding the bearer token (else $VJEPA_ROBOT_TOKEN)."),
) -> None:
    """Serve datasets, BC/SAC training and live evaluation."""
    from services.trainer.server import serve

    serve(host=host, port=port, encoder_url=encoder_url, store=store, runs_dir=runs_dir, token_file=token_file)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
