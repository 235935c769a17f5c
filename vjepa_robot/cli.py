"""The `vjepa-robot` command line. Commands are thin: they parse options and call one plain function.

Heavy imports (torch, dm_control, transformers) happen inside commands, so `--help` is instant.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from vjepa_robot import output
from vjepa_robot.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNREACHABLE, invalid_input
from vjepa_robot.route_commands import add_route_commands
from vjepa_robot.route_commands import console as _console
from vjepa_robot.route_commands import print_study as _print_study
from vjepa_robot.train_commands import add_train_commands

APP_HELP = """vjepa-robot: frozen V-JEPA 2 as the eyes of a robot policy.

Global options go before the command (`vjepa-robot --verbose eval RUN_ID`); `--verbose` is also accepted
after it. Exit codes: 0 done; 1 the work failed (training or evaluation failed, weights not loadable);
2 the command was wrong (an option out of range, an unknown dataset or run, a refused request);
3 a service could not be reached (is `vjepa-robot serve encoder` / `serve trainer` running?).
`train` and `eval` end with one summary line; `--json` (before the command, or after train / eval) prints the
full record instead."""

app = typer.Typer(help=APP_HELP, no_args_is_help=True)
datasets_app = typer.Typer(help="Expert datasets in the LanceDB feature store.", no_args_is_help=True)
serve_app = typer.Typer(help="Run the encoder or trainer service.", no_args_is_help=True)
train_app = typer.Typer(
    help="Train policies (BC, SAC) through the trainer service or in process.", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")
app.add_typer(serve_app, name="serve")
app.add_typer(train_app, name="train")
runs_app = typer.Typer(
    help="Training runs and their evaluations (the records the report is made from).", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")

STORE_HELP = (
    "Feature store: a local directory or a LanceDB URI (s3://...). Default: $VJEPA_ROBOT_STORE or ./vjepa-robot-store"
)
StoreOpt = typer.Option(None, "--store", help=STORE_HELP, envvar="VJEPA_ROBOT_STORE")


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    # service errors name HTTP routes; a CLI user wants the command that does the same
    message = message.replace("GET /runs", "`vjepa-robot runs list`")
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _invalid(exc, model=None, **flags: str) -> None:
    """Refuse a request the CLI built: one line naming the option, the value and what is allowed; exit 2."""
    _fail(invalid_input(exc, model=model, flags=flags or None))


_VERBOSE = {"on": False}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub (or $HF_ENDPOINT); True when offline mode is already chosen by the user.
    Only `serve encoder` calls it, and only for a checkpoint that may come from the hub."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE"):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
        return True
    except OSError:
        return False


@app.callback()
def _global(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Full tracebacks for expected failures (give it before the command; `CMD ... --verbose` works too).",
    ),
    as_json: bool = typer.Option(False, "--json", help="train / eval: the full record as JSON, not a summary line."),
) -> None:
    _VERBOSE["on"] = verbose or _VERBOSE["on"]
    output.JSON["on"] = as_json


def _announce_wait(url: str, service: str) -> None:
    """One quick look (no retries) at a service the command is about to use: if it does not answer, say so now,
    because the SDK's retry policy then waits about a minute before its own error."""
    import httpx

    try:
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=1.0)
    except httpx.TransportError:
        typer.secho(
            f"waiting for the {service} at {url} (not answering yet; retrying for about a minute; start it "
            f"with `vjepa-robot serve {service}`)",
            fg=typer.colors.YELLOW,
            err=True,
        )


def expected_failure(exc: BaseException) -> str | None:
    """A one-line message for failures a user can fix (service down, weights not loadable, bad input), else None."""
    found = classify_failure(exc)
    return found[0] if found else None


def classify_failure(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for an expected failure, else None (a bug: the trace is shown)."""
    import httpx

    from vjepa_robot_client.errors import BadRequest, ConnectionFailed, ServiceUnavailable, VjepaRobotError

    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if type(exc).__name__ == "ServiceFailed":  # a local service did not start (vjepa_robot/harness.py): its log
        return str(exc), EXIT_FAILED
    for e in chain:
        if isinstance(e, (ConnectionFailed, ServiceUnavailable, httpx.ConnectError, ConnectionRefusedError)):
            return (
                f"a service is unreachable ({e}); is the encoder/trainer running? "
                "(vjepa-robot serve encoder / serve trainer, or --encoder-url / --trainer-url)",
                EXIT_UNREACHABLE,
            )
        if isinstance(e, OSError) and "V-JEPA 2 weights" in str(e):
            return str(e).splitlines()[0], EXIT_FAILED
    if isinstance(exc, BadRequest) and exc.status_code == 422:  # the service's own validation: the same one line
        return invalid_input(exc.detail), EXIT_BAD_INPUT
    if isinstance(exc, VjepaRobotError):  # e.g. NotFound from a trainer service
        code = EXIT_BAD_INPUT if isinstance(exc, BadRequest) else EXIT_FAILED
        return f"{type(exc).__name__}: {exc}".replace("GET /runs", "`vjepa-robot runs list`"), code
    return None


def _failed_code(error: str | None) -> int:
    """Exit code for a run or evaluation that ended `failed` with this recorded error (the trainer writes
    "ExceptionType: message"): an encoder it could not reach is the same kind of failure as in local mode."""
    return EXIT_UNREACHABLE if error and ("ConnectionFailed" in error or "ServiceUnavailable" in error) else EXIT_FAILED


# ----------------------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------------------


def _task_help() -> str:
    """`--task`'s help, from the contract's Task (its aliased tasks first, as reacher's are): a new task shows up."""
    from vjepa_robot_client.contract import TASK_ALIASES, TASKS  # the CLI loads it anyway (train commands)

    aliased = [t for t in TASKS if t in TASK_ALIASES.values()]
    domains = " | ".join(dict.fromkeys(a.split("-")[0] for a in TASK_ALIASES))
    head = f"{' | '.join(aliased)} ({domains}'s; alias {' | '.join(TASK_ALIASES)})"
    return f"dm_control task: {' | '.join([head, *(t for t in TASKS if t not in aliased)])} (settings: docs/tasks.md)."


TASK_HELP = _task_help()


@datasets_app.command("create")
def datasets_create(
    name: str = typer.Argument(..., help="Dataset name (letters, digits, '_', '-')."),
    expert: str | None = typer.Option(
        None,
        help="Expert: jacobian | p-controller | random (reacher); shipped, the state-SAC expert shipped for the task "
        "(docs/experts.md); or run:RUN_ID, a trained state-feature run of the same task acting deterministically. "
        "Default: jacobian on reacher, shipped on every other task.",
    ),
    task: str = typer.Option("easy", help=TASK_HELP),
    episodes: int = typer.Option(100, help="Number of episodes."),
    steps: int = typer.Option(200, help="Control steps per episode."),
    seed: int = typer.Option(0, help="Dataset seed: the same seed gives the same frames and actions."),
    image_size: int = typer.Option(256, help="Frame size (camera 0); 0 stores no frames (state-only)."),
    workers: int = typer.Option(2, help="Parallel worker processes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset of this name."),
    resume: bool = typer.Option(False, "--resume", help="Complete an interrupted dataset of this name."),
    store: str | None = StoreOpt,
    runs_dir: Path | None = typer.Option(
        None, "--runs-dir", envvar="VJEPA_ROBOT_RUNS", help="Runs for --expert run:RUN_ID (default <store>/runs)."
    ),
) -> None:
    """Generate expert episodes in parallel workers and write them to LanceDB, one episode per append."""
    from pydantic import ValidationError

    from vjepa_robot_client.contract import CreateDatasetRequest

    try:  # the service's own request model first: the same one-line refusal as through the trainer service
        expert = CreateDatasetRequest(
            name=name,
            expert=expert,
            task=task,
            episodes=episodes,
            steps=steps,
            seed=seed,
            image_size=image_size,
            workers=workers,
        ).expert  # an omitted expert is the task's default
    except ValidationError as exc:
        _invalid(exc, CreateDatasetRequest, name="NAME")
    from vjepa_robot_lab.data.datasets import DatasetExists, DatasetSpec, create_dataset, resolve_expert

    try:
        spec = DatasetSpec(
            name=name, expert=expert, task=task, episodes=episodes, steps=steps, seed=seed, image_size=image_size
        )
        runs = None
        if expert.startswith("run:"):  # the run expert's record and checkpoint: the trainer's runs directory
            from services.common.store import Store
            from vjepa_robot_lab.records.runs import RunStore, default_runs_dir

            runs = RunStore(runs_dir or default_runs_dir(Store(store).uri))
        spec, source = resolve_expert(spec, runs)
        meta = create_dataset(
            spec,
            store=store,
            workers=workers,
            overwrite=overwrite,
            resume=resume,
            progress=True,
            expert_source=source,
        )
    except (ValueError, DatasetExists) as exc:
        _fail(str(exc))
    success = "" if meta["success_rate"] is None else f"success {meta['success_rate']:.1%}, "  # reacher only
    typer.echo(
        f"dataset {name}: {meta['episodes']} episodes x {meta['steps']} steps, expert {meta['expert']} "
        f"on {meta['task']}: {success}mean return {meta['mean_return']:.1f}"
    )


@datasets_app.command("list")
def datasets_list(store: str | None = StoreOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """List datasets with their status and expert success."""
    from services.common.store import Store

    st = Store(store)
    rows = st.list_datasets()
    if any(m["status"] == "running" for m in rows):  # one whose generating process is gone reads failed
        from vjepa_robot_lab.data.datasets import dataset_info

        rows = [dataset_info(st, m["name"]) if m["status"] == "running" else m for m in rows]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no datasets yet: vjepa-robot datasets create NAME --expert jacobian --episodes 100")
        return
    from rich.table import Column, Table

    table = Table(
        Column("name", overflow="fold"),
        "status",
        "expert",
        "task",
        "episodes",
        "steps",
        "success",
        "mean return",
        "created",
    )
    for m in rows:
        sr = m.get("success_rate")
        mr = m.get("mean_return")
        table.add_row(
            m["name"],
            m["status"],
            str(m.get("expert")),
            str(m.get("task")),
            str(m.get("episodes")),
            str(m.get("steps")),
            "-" if sr is None else f"{sr:.1%}",
            "-" if mr is None else f"{mr:.1f}",
            str(m.get("created_at")),
        )
    _console().print(table)


@datasets_app.command("show")
def datasets_show(name: str, store: str | None = StoreOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one dataset's metadata (--json prints it as JSON)."""
    from services.common.store import DatasetNotFound, Store

    try:
        meta = Store(store).get_dataset_meta(name)
    except (DatasetNotFound, ValueError) as exc:
        _fail(str(exc))
    if meta["status"] == "running":  # one whose generating process is gone reads failed
        from vjepa_robot_lab.data.datasets import dataset_info

        meta = dataset_info(Store(store), name)
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
    token: str | None = typer.Option(None, envvar="VJEPA_ROBOT_TOKEN", help="Bearer token of the encoder."),
    pool: str = typer.Option("mean", help="mean (one vector per window) | grid (g x g token grids, float16)."),
    grid_size: int = typer.Option(4, help="--pool grid: g, the pooled grid's side (g*g tokens per window)."),
) -> None:
    """Ask the encoder service to embed every step's 8-frame window of a dataset (idempotent)."""
    from vjepa_robot_client import EncoderClient

    if not 1 <= batch_size <= 1024:  # DatasetEncodeRequest's range
        _fail(f"--batch-size {batch_size} is out of range: it must be between 1 and 1024")
    _announce_wait(encoder_url, "encoder")
    try:
        with EncoderClient(encoder_url, token=token) as client:
            status = client.encode_dataset_and_wait(
                name, batch_size=batch_size, progress=True, pool=pool, grid_size=grid_size
            )
    except Exception as exc:  # the SDK's typed errors carry the server's message
        found = classify_failure(exc)
        _fail(found[0] if found else str(exc), found[1] if found else EXIT_FAILED)
    typer.echo(f"dataset {name}: {status.done}/{status.total} windows embedded by encoder {status.encoder_id}")


# -- LeRobot format (vjepa_robot_lab/data/lerobot.py; docs/lerobot.md) ------------------------------------------------


def _need_av() -> None:
    try:
        import av  # noqa: F401
    except ModuleNotFoundError:
        _fail('LeRobot datasets store frames as video through PyAV: pip install "vjepa-robot[lerobot]"')


@datasets_app.command("export")
def datasets_export(
    name: str = typer.Argument(..., help="Dataset in the store."),
    out_dir: Path = typer.Argument(
        ..., help="Directory to write (created; must be empty, or a previous export with --overwrite)."
    ),
    format: str = typer.Option("lerobot", "--format", help="Output format: lerobot (LeRobotDataset v3.0)."),
    codec: str = typer.Option(
        "h264-lossless",
        help="Video codec: h264-lossless (bit-identical frames) | av1 (LeRobot's default: smaller, lossy).",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace a previous export by this tool; any other non-empty directory is refused, untouched.",
    ),
    store: str | None = StoreOpt,
) -> None:
    """Write a dataset as a LeRobotDataset v3.0 directory (parquet + mp4 + meta), loadable by lerobot."""
    if format != "lerobot":
        _fail(f"unknown format {format!r}: choose lerobot")
    _need_av()
    from services.common.store import DatasetNotFound, Store
    from vjepa_robot_lab.data.lerobot import export_lerobot

    try:
        info = export_lerobot(Store(store), name, out_dir, codec=codec, overwrite=overwrite)
    except (DatasetNotFound, ValueError, FileExistsError) as exc:
        _fail(str(exc))
    typer.echo(
        f"dataset {name} -> {out_dir}: LeRobot {info['codebase_version']}, {info['total_episodes']} episodes, "
        f"{info['total_frames']} frames at {info['fps']} fps, {info['bytes'] / 1e6:.1f} MB ({codec})"
    )


@datasets_app.command("import")
def datasets_import(
    src: Path = typer.Argument(..., help="A local LeRobotDataset v3.0 directory (one camera, a 2-d action)."),
    name: str | None = typer.Option(
        None, "--name", help="Store dataset name (default: the exported dataset's own name, else the directory's)."
    ),
    camera: str | None = typer.Option(None, "--camera", help="Which camera, where the dataset has several."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace a store dataset of this name (only once the new one is completely written).",
    ),
    store: str | None = StoreOpt,
) -> None:
    """Read a LeRobot v3.0 dataset into the store (frames, actions, rewards), ready to embed, probe and clone."""
    _need_av()
    from services.common.store import Store
    from vjepa_robot_lab.data.lerobot import import_lerobot

    try:
        meta = import_lerobot(Store(store), src, name=name, camera=camera, overwrite=overwrite)
    except (ValueError, FileExistsError) as exc:
        _fail(str(exc))
    typer.echo(f"{src} -> dataset {meta['name']}: {meta['episodes_done']} episodes, status {meta['status']}")


# ----------------------------------------------------------------------------------------------------------------
# serve
# ----------------------------------------------------------------------------------------------------------------


@serve_app.command("encoder")
def serve_encoder(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8001),
    preset: str | None = typer.Option(
        None,
        help="vitl | vith | vitg | dinov2-base | siglip-base | tiny | "
        "tiny-dinov2 | ... (default tiny unless --model; docs/encoders.md).",
    ),
    model: str | None = typer.Option(
        None, help="Hub id or local directory of a checkpoint (V-JEPA 2, VideoMAE, DINOv2, SigLIP)."
    ),
    revision: str | None = typer.Option(None, help="Hub revision to load; the id records the commit it resolves to."),
    family: str | None = typer.Option(
        None,
        help="vjepa2 | videomae | dinov2 | siglip: refuse a --model of another "
        "family (default: its config's model_type).",
    ),
    fusion: str | None = typer.Option(None, help="Image families: fuse the 8 frames by mean | last | last3."),
    store: str | None = StoreOpt,
    max_batch: int = typer.Option(32, help="Most windows per forward pass.", envvar="VJEPA_ROBOT_MAX_BATCH"),
    max_wait_ms: float = typer.Option(5.0, help="Longest wait to fill a batch.", envvar="VJEPA_ROBOT_MAX_WAIT_MS"),
    token_file: Path | None = typer.Option(None, help="File holding the bearer token (else $VJEPA_ROBOT_TOKEN)."),
    compile: bool = typer.Option(
        False,
        "--compile",
        envvar="VJEPA_ROBOT_COMPILE",
        help="torch.compile the model, batches padded to a few bucket sizes (for GPUs).",
    ),
) -> None:
    """Serve frozen V-JEPA 2 behind POST /encode."""
    from services.encoder.server import serve

    if preset and model:
        _fail("give --preset or --model, not both")
    from services.encoder.model import HUB_PRESETS, VITL_REVISION

    if (preset in HUB_PRESETS or (model and not Path(model).is_dir())) and not _hub_reachable():
        # without this, the hub client retries for minutes before the loader's own message says what to do
        os.environ["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import try_to_load_from_cache

        repo = model or HUB_PRESETS[preset][1]
        rev = revision or (VITL_REVISION if preset == "vitl" else None)
        if not isinstance(try_to_load_from_cache(repo, "config.json", revision=rev), str):
            _fail(
                f"cannot load weights from {repo!r}: the Hugging Face hub is unreachable and the checkpoint "
                "is not in the local cache. Run `vjepa-robot fetch-model` where the hub is reachable, give --model "
                "DIR (a save_pretrained directory), or use --preset tiny (a random-init stand-in) for a demo.",
                code=EXIT_FAILED,
            )
        typer.secho(
            "note: the Hugging Face hub is unreachable: loading the checkpoint from the local cache",
            fg=typer.colors.YELLOW,
            err=True,
        )
    serve(
        host=host,
        port=port,
        preset=preset,
        model=model,
        revision=revision,
        store=store,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        token_file=token_file,
        compile=compile or None,
        family=family,
        fusion=fusion,
    )


@serve_app.command("trainer")
def serve_trainer(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8002),
    encoder_url: str = typer.Option("http://127.0.0.1:8001", envvar="VJEPA_ROBOT_ENCODER_URL"),
    store: str | None = StoreOpt,
    runs_dir: Path | None = typer.Option(
        None, envvar="VJEPA_ROBOT_RUNS", help="Where run records and checkpoints live."
    ),
    token_file: Path | None = typer.Option(None, help="File holding the bearer token (else $VJEPA_ROBOT_TOKEN)."),
    compress: str = typer.Option(
        "auto",
        envvar="VJEPA_ROBOT_COMPRESS",
        help="Bodies sent to the encoder: auto (zstd unless the encoder URL is loopback) | "
        "zstd | gzip | none. Set zstd when a loopback URL is an SSH tunnel to a GPU.",
    ),
) -> None:
    """Serve datasets, BC/SAC training and live evaluation."""
    from services.trainer.server import serve
    from vjepa_robot_client.contract import COMPRESSIONS

    if compress not in COMPRESSIONS:
        _fail(f"unknown --compress {compress!r}: choose one of {', '.join(COMPRESSIONS)}")
    serve(
        host=host,
        port=port,
        encoder_url=encoder_url,
        store=store,
        runs_dir=runs_dir,
        token_file=token_file,
        compress=compress,
    )


@app.command("fetch-model")
def fetch_model(
    preset: str = typer.Option(
        "vitl",
        envvar="VJEPA_ROBOT_PRESET",
        help="vitl | vith | vitg | dinov2-base | "
        "siglip-base | ... (docs/encoders.md; random-init presets have nothing to fetch).",
    ),
    model: str | None = typer.Option(None, envvar="VJEPA_ROBOT_MODEL", help="A hub id instead of the preset."),
    revision: str | None = typer.Option(None, envvar="VJEPA_ROBOT_REVISION", help="Hub revision (commit) to pin."),
) -> None:
    """Download a V-JEPA 2 checkpoint into the Hugging Face cache ($HF_HOME) once, so the encoder loads from disk
    (the GPU compose stack runs this as a one-shot service before the encoder starts)."""
    import os

    from services.encoder.model import HUB_PRESETS, PRESETS, VITL_REVISION
    from services.encoder.weights import resolve_hub

    if model is None and preset not in PRESETS:
        _fail(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)} (or give --model HUB_ID)")
    if model is None and preset not in HUB_PRESETS:
        typer.echo(f"nothing to fetch: preset {preset} is random-init (no weights to download)")
        return
    repo = model or HUB_PRESETS[preset][1]
    if os.path.isdir(repo):
        typer.echo(f"nothing to fetch: {repo} is a local directory")
        return
    rev = revision or (VITL_REVISION if model is None and preset == "vitl" else None)
    try:  # the commit the hub resolved `rev` to is the pin the encoder id records (services/encoder/weights.py)
        pinned = resolve_hub(repo, rev)
    except Exception as exc:  # offline, unknown repo, bad revision, full disk: one line, non-zero exit
        _fail(
            f"cannot fetch {repo} (revision {rev or 'default'}) into the Hugging Face cache "
            f"({os.environ.get('HF_HOME') or '~/.cache/huggingface'}): {type(exc).__name__}: {exc}",
            code=EXIT_FAILED,
        )
    typer.echo(
        f"{repo} (revision {rev or 'default'}) resolved to commit {pinned.commit}; it is in the cache: {pinned.path}"
    )
    typer.echo(f"pin it: --model {repo} --revision {pinned.commit}")


# ----------------------------------------------------------------------------------------------------------------
# train / eval (in process by default; through a trainer service with --trainer-url)
# ----------------------------------------------------------------------------------------------------------------

TrainerUrlOpt = typer.Option(
    None,
    "--trainer-url",
    envvar="VJEPA_ROBOT_TRAINER_URL",
    help="Run through this trainer service (else in this process).",
)
EncoderUrlOpt = typer.Option(
    "http://127.0.0.1:8001",
    "--encoder-url",
    envvar="VJEPA_ROBOT_ENCODER_URL",
    help="Encoder service, for vjepa2 features.",
)
RunsOpt = typer.Option(None, "--runs-dir", envvar="VJEPA_ROBOT_RUNS", help="Run records (default <store>/runs).")
TokenOpt = typer.Option(None, "--token", envvar="VJEPA_ROBOT_TOKEN", help="Bearer token of the services.")


def _local_ctx(store: str | None, runs_dir: Path | None, encoder_url: str, token: str | None):
    from services.common.store import Store
    from services.trainer.jobs import TrainerContext
    from vjepa_robot_lab.records.runs import RunStore, default_runs_dir
    from vjepa_robot_lab.threads import set_torch_threads

    set_torch_threads()  # local jobs run in this process: its torch threads are set once, here
    st = Store(store)
    return TrainerContext(
        store=st, runs=RunStore(runs_dir or default_runs_dir(st.uri)), encoder_url=encoder_url, token=token
    )


def _seed_list(seeds: str | None, n_seeds: int | None) -> dict:
    """--seeds 0,1,2 and/or --n-seeds 3 as request fields (one run per seed, under one study)."""
    out: dict = {}
    if seeds:
        try:
            out["seeds"] = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            _fail(f"--seeds takes comma-separated integers, e.g. --seeds 0,1,2 (got {seeds!r})")
        if n_seeds is not None and n_seeds != len(out["seeds"]):
            _fail(f"--n-seeds {n_seeds} does not match the {len(out['seeds'])} seeds of --seeds {seeds}")
    elif n_seeds is not None:
        out["n_seeds"] = n_seeds
    return out


def _trainer(trainer_url: str | None, encoder_url: str, store, runs_dir, token, announce_runs: bool = False):
    """The Trainer port (vjepa_robot/trainer_port.py): the trainer service at --trainer-url through the SDK, else
    the job layer in this process (the same validation and run creation the service's routes use)."""
    from vjepa_robot.trainer_port import HttpTrainer, LocalTrainer

    if trainer_url:
        _announce_wait(trainer_url, "trainer")
        return HttpTrainer(trainer_url, token=token)
    ctx = _local_ctx(store, runs_dir, encoder_url, token)
    return LocalTrainer(
        ctx,
        announce=(lambda key: typer.echo(f"{key.replace(':', ' ', 1)} (records in {ctx.runs.root})"))
        if announce_runs
        else None,
        needs_encoder=lambda: _announce_wait(encoder_url, "encoder"),
    )


def _study_failures(study, what: str) -> None:
    """Exit non-zero when a run (or its evaluation) of a study did not succeed, naming the first error."""
    if what == "training":
        failed = [r for r in study.runs if r.status.value != "succeeded"]
        if failed:
            _fail(
                f"{len(failed)} of {len(study.runs)} runs of study {study.study_id} did not succeed: {failed[0].error}",
                _failed_code(failed[0].error),
            )
    else:
        errors = [r.error for r in study.runs if r.error]
        if errors:
            _fail(f"evaluation of study {study.study_id} failed: {errors[0]}", _failed_code(errors[0]))


def _train(kind, fields: dict, shared: dict) -> None:
    """Validate a training request (kind.request), then run it through the Trainer port and report the result."""
    from pydantic import ValidationError

    from vjepa_robot.trainer_port import JobFailed, Refused
    from vjepa_robot_lab.learning.curves import WANDB_ENV

    trainer_url = shared["trainer_url"]
    if shared["wandb"] and trainer_url:  # the service's own environment decides for the runs it trains
        typer.secho(
            f"note: --wandb applies to local runs; a trainer service logs to W&B when it was started with "
            f"{WANDB_ENV}=1",
            fg=typer.colors.YELLOW,
            err=True,
        )
    elif shared["wandb"]:
        os.environ[WANDB_ENV] = "1"  # read by vjepa_robot_lab/learning/curves.py when the run opens its curves

    fields = {**fields, **_seed_list(shared["seeds"], shared["n_seeds"])}
    try:
        req = kind.request(**fields)
    except ValidationError as exc:
        _invalid(exc, kind.request, dataset="DATASET")
    if not trainer_url and req.features.value == "vjepa2":  # said now, before a run is created (no failed run left)
        if missing := output.encoder_missing(shared["encoder_url"]):
            _fail(missing, EXIT_UNREACHABLE)
        if getattr(req, "dataset", None):  # BC: the embedding, with its progress bar, before the run starts
            output.embed_first(shared["encoder_url"], shared["token"], req.dataset, req.readout.value, req.grid_size)
    trainer = _trainer(
        trainer_url, shared["encoder_url"], shared["store"], shared["runs_dir"], shared["token"], announce_runs=True
    )
    try:
        created = trainer.train(req)
        if created.study_id:
            study = trainer.wait_study(created.study_id)
            _print_study(study, trainer)
            _study_failures(study, "training")
            return
        record = trainer.wait(created.run_id)
    except Refused as exc:
        _fail(exc.detail)
    except JobFailed as exc:  # recorded in the run as `failed` before it got here
        _job_failed(exc.what, exc.exc)
    _print_run(record)
    if record.status.value != "succeeded":
        _fail(f"training failed: {record.error}", _failed_code(record.error))


def _job_failed(what: str, exc: BaseException) -> None:
    """A job run in this process failed (it is recorded `failed`): one line, the exit code of its kind."""
    if _VERBOSE["on"]:
        raise exc
    found = classify_failure(exc)
    if found:
        _fail(found[0], found[1] if found[1] != EXIT_BAD_INPUT else EXIT_FAILED)
    _fail(f"{what} failed: {type(exc).__name__}: {exc}", EXIT_FAILED)


def _print_run(record) -> None:
    output.print_run(record)  # one summary line (--json: the whole record)


SeedsOpt = typer.Option(None, "--seeds", help="Comma-separated training seeds: one run per seed, under one study.")
WandbOpt = typer.Option(
    False,
    "--wandb",
    help="Also log the live curves to Weights & Biases (the project's `wandb` "
    "extra; WANDB_MODE=offline needs no account). TensorBoard event files are always written in "
    "the run directory.",
)
NSeedsOpt = typer.Option(None, "--n-seeds", help="Runs with seeds --seed .. --seed+N-1, under one study.")
ProtocolOpt = typer.Option(
    None,
    "--protocol",
    help="A named recipe filling every option not given: cortexbench "
    "(eai-vc's DMC BC: BatchNorm MLP (256, 256, 256), flare, lr 1e-3 constant, batch 256, 100 epochs; "
    "docs/bakeoff.md).",
)


SHARED_TRAIN_OPTIONS = {  # every `train <kind>` command has these beside its request's fields (train_commands.py)
    "seeds": (str | None, SeedsOpt),
    "n_seeds": (int | None, NSeedsOpt),
    "trainer_url": (str | None, TrainerUrlOpt),
    "encoder_url": (str, EncoderUrlOpt),
    "store": (str | None, StoreOpt),
    "runs_dir": (Path | None, RunsOpt),
    "token": (str | None, TokenOpt),
    "wandb": (bool, WandbOpt),
}
TRAIN_COMMANDS = add_train_commands(train_app, SHARED_TRAIN_OPTIONS, _train)  # train bc, train sac, ...


@app.command("eval")
def evaluate(
    run_id: str = typer.Argument(
        ..., help="A run id, a study id (every run of it), or jacobian | p-controller | random for a baseline."
    ),
    episodes: int | None = typer.Option(None, help="Episodes (default 100)."),
    task: str | None = typer.Option(
        None, help="The task to evaluate on (default: the run's own task; easy for reacher runs). " + TASK_HELP
    ),
    steps: int | None = typer.Option(None, help="Simulator steps per episode (default 200)."),
    seed: int | None = typer.Option(None, help="Evaluation seed offset (seeds never overlap training)."),
    parallel_envs: int | None = typer.Option(None),
    image_size: int | None = typer.Option(None, help="Frame size; default: the run's own training frame size."),
    allow_image_size_change: bool = typer.Option(
        False, "--allow-image-size-change", help="Evaluate at an --image-size other than the run's own."
    ),
    targets: str | None = typer.Option(
        None, help="uniform | stratified (equal episodes near/middle/far from the base; default 99 episodes)."
    ),
    gifs: int | None = typer.Option(
        None, "--gifs", help="Episodes recorded as GIFs for the report (default 2; 0: none, the fastest)."
    ),
    trainer_url: str | None = TrainerUrlOpt,
    encoder_url: str = EncoderUrlOpt,
    store: str | None = StoreOpt,
    runs_dir: Path | None = RunsOpt,
    token: str | None = TokenOpt,
) -> None:
    """Live evaluation of a trained run, of every run of a study, or of a baseline policy."""
    from pydantic import ValidationError

    from vjepa_robot.trainer_port import JobFailed, Refused
    from vjepa_robot_client.contract import EXPERTS, BaselineEvalRequest, EvalRequest

    given = dict(
        episodes=episodes,
        task=task,
        steps=steps,
        seed=seed,
        parallel_envs=parallel_envs,
        image_size=image_size,
        allow_image_size_change=allow_image_size_change or None,
        targets=targets,
        gif_episodes=gifs,
    )
    given["episodes"], note = output.stratified_episodes(episodes, targets)  # 4 -> 6, said on stderr
    if note:
        typer.secho(note, fg=typer.colors.YELLOW, err=True)
    given = {k: v for k, v in given.items() if v is not None}
    baseline = run_id in EXPERTS
    study = run_id.startswith("study-")
    model = BaselineEvalRequest if baseline else EvalRequest
    try:
        req = BaselineEvalRequest(policy=run_id, **given) if baseline else EvalRequest(**given)
    except ValidationError as exc:
        _invalid(exc, model, policy="RUN_ID")
    if not trainer_url and not baseline:  # said now, before an evaluation is recorded
        ctx = _local_ctx(store, runs_dir, encoder_url, token)
        if _uses_encoder(ctx, run_id, study) and (missing := output.encoder_missing(encoder_url)):
            _fail(missing, EXIT_UNREACHABLE)
    trainer = _trainer(trainer_url, encoder_url, store, runs_dir, token)
    try:
        if study:
            result = trainer.evaluate_study(run_id, req)
            _print_study(result, trainer)
            _study_failures(result, "evaluation")
            return
        if baseline:
            run_id, evaluation = trainer.evaluate_baseline(req)
        else:
            evaluation = trainer.evaluate(run_id, req)
    except Refused as exc:
        _fail(exc.detail)
    except JobFailed as exc:  # recorded in the run's evaluation as `failed` before it got here
        _job_failed(exc.what, exc.exc)
    res = evaluation.model_dump(mode="json", by_alias=True)
    try:
        run_record = trainer.wait(res["run_id"]) if res.get("run_id") else None  # terminal already: no wait
    except Exception:  # the summary line then goes without the run's features
        run_record = None
    output.print_eval(res, run_record)  # one summary line (--json: the whole evaluation record)
    if res.get("status") != "succeeded":
        _fail(f"evaluation {res.get('status')}: {res.get('error')}", _failed_code(res.get("error")))


def _uses_encoder(ctx, run_id: str, study: bool) -> bool:
    """Whether evaluating this run (or any run of this study) needs the encoder service (vjepa2 features)."""
    try:
        ids = ctx.runs.get_study(run_id)["run_ids"] if study else [run_id]
        for r in ids:
            rec = ctx.runs.get(r)
            cfg = rec.get("config") if isinstance(rec, dict) else getattr(rec, "config", None)
            feats = cfg.get("features") if isinstance(cfg, dict) else getattr(cfg, "features", None)
            if str(getattr(feats, "value", feats)) == "vjepa2":
                return True
        return False
    except Exception:  # unknown run or study: the job layer refuses it with its own message
        return False


# -- commands that mirror a route, generated (vjepa_robot/route_commands.py): studies list, studies show ---------

SHARED_ROUTE_OPTIONS = {  # every generated route command has these beside its SDK builder's parameters
    "trainer_url": (str | None, TrainerUrlOpt),
    "store": (str | None, StoreOpt),
    "runs_dir": (Path | None, RunsOpt),
    "token": (str | None, TokenOpt),
    "as_json": (bool, typer.Option(False, "--json", help="The answer as JSON, as the route sends it.")),
}


def _route(row, args: dict, shared: dict) -> None:
    """Send the row's SDK call through the Trainer port (the service, or its app in this process); print it."""
    from vjepa_robot.route_commands import as_json

    try:
        call = row.builder(**args)
    except ValueError as exc:  # the builder's own check of a name or id: before any service is asked
        _fail(str(exc))
    where = shared["trainer_url"], EncoderUrlOpt.default, shared["store"], shared["runs_dir"], shared["token"]
    trainer = _trainer(*where)
    try:
        answer = trainer.send(call)
    except Exception as exc:  # the route's 4xx as the SDK's typed error, or a service not reached: one line
        if (found := classify_failure(exc)) is None:
            raise
        _fail(*found)
    if shared["as_json"] or output.JSON["on"] or row.show is None:
        typer.echo(as_json(answer))
    else:
        row.show(answer, trainer)


ROUTE_COMMANDS = add_route_commands(app, {"runs": runs_app, "datasets": datasets_app}, SHARED_ROUTE_OPTIONS, _route)


@app.command("probe")
def probe_cmd(
    dataset: str,
    features: list[str] = typer.Option(["vjepa2", "state", "random"], "--features", help="Repeat for several."),
    encoder_url: str = EncoderUrlOpt,
    store: str | None = StoreOpt,
    runs_dir: Path | None = RunsOpt,
    token: str | None = TokenOpt,
    seed: int = typer.Option(0),
    readout: str = typer.Option(
        "mean",
        "--readout",
        help="mean | flare: probe the features as this readout reads them (attentive: see --grid-size).",
    ),
    grid_size: list[int] = typer.Option(
        [],
        "--grid-size",
        help="Also run the attentive probe on the g x g token "
        "grid (vjepa2, random); repeat for several, e.g. --grid-size 4 --grid-size 8.",
    ),
    scale: str = typer.Option(
        "auto",
        "--scale",
        help="How the ridge scales its inputs: dimension (each by its own std), global (one std for all: a CNN's "
        "near-dead channels stay small), auto (global for the efficientnet-lite family, else dimension).",
    ),
) -> None:
    """Linear (ridge) and MLP probes: how well each feature source predicts the fingertip, the target and the
    fingertip-to-target vector (k-fold over episodes; R2 mean and spread across folds); with --grid-size, the
    attentive probe on token grids beside them (docs/readouts.md)."""
    from vjepa_robot.probes import print_probes, save_probes
    from vjepa_robot_lab.perception.features import make_feature_source
    from vjepa_robot_lab.perception.probe import probe
    from vjepa_robot_lab.perception.readouts import with_readout

    if readout == "attentive":
        _fail("probe --readout takes mean or flare; the attentive probe runs on each --grid-size given")
    ctx = _local_ctx(store, runs_dir, encoder_url, token)
    if "vjepa2" in features:
        _announce_wait(encoder_url, "encoder")
    results = []
    for f in features:
        try:
            src = make_feature_source(f, encoder_url=encoder_url, token=token)
            grids = tuple(grid_size) if f != "state" else ()
            results.append(
                {
                    **probe(ctx.store, dataset, with_readout(src, readout), seed=seed, grid_sizes=grids, scale=scale),
                    "dataset": dataset,
                }
            )
            src.close()
        except (ValueError, KeyError) as exc:
            _fail(str(exc))
    save_probes(ctx.runs.root, results)
    print_probes(results)


@app.command("report")
def report_cmd(
    out: Path = typer.Option(Path("vjepa-robot-report"), "--out", help="Output directory."),
    store: str | None = StoreOpt,
    runs_dir: Path | None = RunsOpt,
) -> None:
    """Write the report (README.md, bar chart, loss and learning curves, probe tables, rollout GIFs) from the
    recorded runs. Reads only: it never creates a store or a runs directory."""
    from vjepa_robot.probes import load_probes
    from vjepa_robot_lab.report import load_notes, read_runs, summary_lines, title, write_report

    root = runs_root(store, runs_dir)
    runs = read_runs(root)
    if not runs:
        _fail(f"no runs in {root}: train and evaluate something first (or run `vjepa-robot demo`)")
    path = write_report(runs, load_probes(root), out, extra_notes=load_notes(root))
    typer.echo(title(runs))
    for line in summary_lines(runs):
        typer.echo(f"  {line}")
    typer.echo(f"report written to {path}")


def runs_root(store: str | None, runs_dir: Path | None) -> Path:
    """Where run records live: --runs-dir / $VJEPA_ROBOT_RUNS, else <store>/runs (nothing is created)."""
    from services.common.store import default_store_uri
    from vjepa_robot_lab.records.runs import default_runs_dir

    return Path(runs_dir) if runs_dir else default_runs_dir(store or default_store_uri())


# ----------------------------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------------------------


def _run_result(run: dict) -> str:
    from vjepa_robot_lab.records.run_kinds import RUN_KINDS
    from vjepa_robot_lab.report import evaluation_rows, num, pct

    evals = evaluation_rows([run])
    if evals:
        e = evals[-1]
        if e["success_rate"] is None:  # a task without success (docs/tasks.md): its return is the result
            return f"return {num(e['mean_return'])} ({e['episodes']} ep, {e['task']})"
        return f"{pct(e['success_rate'], e['ci'])} success ({e['episodes']} ep, {e['task']})"
    kind = RUN_KINDS.get(run.get("kind"))  # the kind's own summary of its training (run_kinds.py)
    result = kind.training_result(run.get("metrics") or {}) if kind is not None else None
    return f"{result} (not evaluated)" if result else "-"


def _run_features(run: dict) -> str:
    from vjepa_robot_lab.report import encoder_info, feature_lineage, is_plumbing
    from vjepa_robot_lab.report.rows import trained

    if not trained(run.get("kind")):  # an expert policy, evaluated (a baseline)
        return "scripted: " + str((run.get("config") or {}).get("policy"))
    info = encoder_info(run)
    if info["features"] != "vjepa2":
        return str(info["features"])
    lin = feature_lineage(run)
    model = str(lin.get("model") or "encoder not recorded").removeprefix("preset:")
    init = {True: "random-init", False: "pretrained"}.get(info["random_init"], "?")
    return f"vjepa2 ({model}, {init}, {lin.get('dim', '?')}-d)" + (": plumbing check" if is_plumbing(run) else "")


@runs_app.command("list")
def runs_list(
    store: str | None = StoreOpt,
    runs_dir: Path | None = RunsOpt,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every run: id, kind, features (and encoder), dataset, status, seed / study, result."""
    from vjepa_robot_lab.report import read_runs

    root = runs_root(store, runs_dir)
    runs = read_runs(root)
    if as_json:
        typer.echo(
            json.dumps(
                [{k: r.get(k) for k in ("run_id", "kind", "status", "config", "created_at")} for r in runs],
                indent=1,
                default=str,
            )
        )
        return
    if not runs:
        typer.echo(f"no runs in {root} yet: vjepa-robot demo, or vjepa-robot train bc DATASET")
        return
    from rich.table import Table

    table = Table(
        "run id", "kind", "features (encoder)", "dataset", "status", "seed / study", "result", title=f"runs in {root}"
    )
    for r in runs:
        cfg = r.get("config") or {}
        study = r.get("study_id") or cfg.get("study_id")
        table.add_row(
            str(r.get("run_id")),
            str(r.get("kind")),
            _run_features(r),
            str(cfg.get("dataset") or "-"),
            str(r.get("status")),
            f"{cfg.get('seed', '-')}" + (f" / {study}" if study else ""),
            _run_result(r),
        )
    _console().print(table)


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="A run id (vjepa-robot runs list)."),
    store: str | None = StoreOpt,
    runs_dir: Path | None = RunsOpt,
    as_json: bool = typer.Option(False, "--json", help="The whole run record as JSON."),
) -> None:
    """One run: its config, metrics and evaluations."""
    from vjepa_robot_lab.evaluation.stats import wilson_ci95
    from vjepa_robot_lab.report import condition_name, num, pct

    root = runs_root(store, runs_dir)
    path = root / run_id / "run.json"
    if "/" in run_id or not path.is_file():
        _fail(f"unknown run {run_id!r} in {root}: list runs with `vjepa-robot runs list`")
    run = json.loads(path.read_text())
    if as_json:
        typer.echo(json.dumps(run, indent=1, default=str))
        return
    typer.echo(f"{run['run_id']}: {condition_name(run)}")
    typer.echo(
        f"  status {run.get('status')}, created {run.get('created_at')}, updated {run.get('updated_at')}"
        + (f", error: {run['error']}" if run.get("error") else "")
    )
    typer.echo("config:")
    for k, v in (run.get("config") or {}).items():
        typer.echo(f"  {k:>22}: {v}")
    typer.echo("metrics:")
    for k, v in (run.get("metrics") or {}).items():
        if isinstance(v, list):
            v = f"[{len(v)} values]"
        elif isinstance(v, float):
            v = f"{v:.4g}"
        typer.echo(f"  {k:>22}: {v}")
    evals = run.get("evaluations") or []
    typer.echo(f"evaluations: {len(evals) or 'none'}")
    for e in evals:
        eps = e.get("episodes") or []
        k = sum(bool(x.get("success")) for x in eps)
        rate = e.get("success_rate")
        res = (
            f"success {pct(rate, wilson_ci95(k, len(eps)) if eps else e.get('success_ci95'))}, return "
            f"{num(e.get('mean_return'))}"
            if rate is not None
            else f"return {num(e.get('mean_return'))} (no success on this task)"
            if e.get("mean_return") is not None
            else (e.get("error") or "")
        )
        req = e.get("request") or {}
        typer.echo(
            f"  #{e.get('eval_id')} {e.get('status')}: {res} ({len(eps)} episodes, task {req.get('task')}, "
            f"{req.get('steps')} steps, eval seed {req.get('seed')})" + (f", GIF {e['gif']}" if e.get("gif") else "")
        )


# Measured with `vjepa-robot demo` on the development machine (2 shared x86_64 cores): docs/results.md#demo-time.
DEMO_TIME = "4-22 min on 2 cores, by what else runs"  # the README states the same (tests/test_readme.py)


@app.command("demo")
def demo(
    preset: str = typer.Option(
        "quick",
        help="quick (tiny random-init encoder on CPU, a plumbing check: "
        f"{DEMO_TIME}) | findings (pretrained ViT-L, GPU, 3 seeds) | signal (ImageNet EfficientNet-Lite0 vs its "
        "random-init control, pixels, state, random: probes and BC, 3 seeds, CPU; bench/SIGNAL_RESULTS.md).",
    ),
    out: Path = typer.Option(Path("vjepa-robot-report"), "--out"),
    store: str | None = StoreOpt,
    runs_dir: Path | None = RunsOpt,
    workdir: Path = typer.Option(Path("vjepa-robot-demo"), help="Service logs."),
    episodes: int | None = typer.Option(None, help="Override the preset's number of demos."),
    eval_episodes: int | None = typer.Option(None, help="Override the preset's evaluation episodes."),
    epochs: int | None = typer.Option(None),
    seeds: int | None = typer.Option(None, help="Override the preset's number of BC seeds."),
) -> None:
    """The whole BC experiment through both services on loopback: expert dataset, encode, BC on vjepa2 / state /
    random features, live evaluation beside the experts, probes, report. It prints each stage's time at the end,
    and writes to the same store and runs directory as every other command (`vjepa-robot runs list`, `report`)."""
    from vjepa_robot.demo import demo_config, run_demo

    try:  # bad options are refused before the store and torch load (under a second)
        demo_config(preset, episodes=episodes, eval_episodes=eval_episodes, epochs=epochs, seeds=seeds)
    except ValueError as exc:
        _fail(str(exc))
    from services.common.store import default_store_uri

    store_uri = store or default_store_uri()
    if "://" in store_uri:
        _fail("the demo needs a local store directory (--store DIR)")
    try:
        run_demo(
            preset,
            out=out,
            workdir=workdir,
            store=Path(store_uri),
            runs_dir=runs_root(store, runs_dir),
            episodes=episodes,
            eval_episodes=eval_episodes,
            epochs=epochs,
            seeds=seeds,
        )
    except ValueError as exc:
        _fail(str(exc))


# -- bake-off (issue 18 item 6): encoders x readouts x tasks x seeds, one table and one figure -------------------


def _local_encoders(models: list[str], store: str, fusion: str | None, logs: Path):
    """One encoder service per --model on loopback (child processes, started by the harness as the demo's are): a
    preset name (tiny-dinov2, vitl, ...) or a hub id / checkpoint directory. Returns (urls, services)."""
    from services.encoder.model import PRESETS
    from vjepa_robot.harness import ServiceGroup, cli_service

    services = []
    for k, model in enumerate(models):
        which = ["--preset", model] if model in PRESETS else ["--model", model]
        args = ["--store", store, *which, *(["--fusion", fusion] if fusion else [])]
        services.append(cli_service("encoder", *args, name=f"encoder-{k}", log=logs / f"encoder-{k}.log"))
        typer.echo(f"encoder {model}: {services[-1].url} (log {services[-1].log})")
    for s in services:
        s.start_timeout = 600
    ServiceGroup(services).start()  # all started at once; on a failure the others are stopped
    return [s.url for s in services], services


def _stop_all(services) -> None:
    """Stop the local encoders (SIGTERM, then SIGKILL after a grace period), the last started first."""
    for s in reversed(services):
        s.stop()


@app.command("bake-off")
def bake_off(
    model: list[str] = typer.Option(
        [],
        "--model",
        help="Start one local encoder per model (repeat): a preset "
        "(tiny, tiny-videomae, tiny-dinov2, tiny-siglip, vitl, dinov2-base, siglip-base, ...) or a hub id / checkpoint "
        "directory. Random-init presets are stand-ins, marked so in every row.",
    ),
    encoder: list[str] = typer.Option([], "--encoder", help="An encoder service already running, by URL (repeat)."),
    task: list[str] = typer.Option([], "--task", help="A task (repeat); default easy, or the --protocol's five."),
    expert: list[str] = typer.Option(
        [],
        "--expert",
        help="TASK=EXPERT per task (repeat), e.g. walker-walk=run:RUN_ID; default: jacobian on reacher, shipped (the "
        "package's state-SAC expert, docs/experts.md) on every other task.",
    ),
    readout: list[str] = typer.Option([], "--readout", help="mean | flare | attentive (repeat); default mean, flare."),
    grid_size: int | None = typer.Option(
        None, "--grid-size", help="readout attentive: the g x g token grid it reads (default 4)."
    ),
    seeds: str | None = typer.Option(
        None, "--seeds", help="BC seeds, comma-separated (default 0,1,2; cortexbench 100,200,300)."
    ),
    protocol: str | None = ProtocolOpt,
    episodes: int | None = typer.Option(None, help="Demos per task (default 100)."),
    steps: int | None = typer.Option(
        None, help="Steps per demo and evaluation episode (default 200; cortexbench 1000)."
    ),
    image_size: int | None = typer.Option(None, help="Frame size in px (default 256)."),
    epochs: int | None = typer.Option(None, help="BC epochs (default 100)."),
    pixels_epochs: int | None = typer.Option(
        None, "--pixels-epochs", help="Epochs of the pixels baseline row (default: --epochs; it costs ~100x on a CPU)."
    ),
    batch_size: int | None = typer.Option(None),
    eval_episodes: int | None = typer.Option(None, help="Evaluation episodes per seed (default 100; cortexbench 10)."),
    eval_seed: int | None = typer.Option(None),
    parallel_envs: int | None = typer.Option(None, help="Evaluation environments in parallel."),
    workers: int | None = typer.Option(None, help="Dataset generation processes."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="One task only: a stored dataset to use as the demos (its encodings reused); its expert, episodes, "
        "steps, seed and image size must match the bake-off's.",
    ),
    fusion: str | None = typer.Option(
        None, help="--model encoders of image families: fuse frames by mean | last | last3."
    ),
    baseline: list[str] = typer.Option(
        [], "--baseline", help="A feature-source row beside the encoders' (repeat): state, random, ..."
    ),
    executor: str = typer.Option("local", "--executor", help="Where the cells run: local | modal | slurm (submitit)."),
    cell_workers: int = typer.Option(1, "--cell-workers", help="Cells at once (local: processes; slurm: jobs)."),
    resume: str | None = typer.Option(
        None, "--resume", help="Resume bake-off ID: run only its cells not finished (start its encoders again)."
    ),
    out: Path = typer.Option(Path("vjepa-robot-bakeoff"), "--out", help="Where the table and figure are copied."),
    trainer_url: str | None = TrainerUrlOpt,
    store: str | None = StoreOpt,
    runs_dir: Path | None = RunsOpt,
    token: str | None = TokenOpt,
) -> None:
    """Encoders x readouts x tasks x seeds as BC studies: one markdown table (every row naming its encoder's exact
    weights; stand-ins marked) and one figure with across-seed intervals. docs/bakeoff.md."""
    from pydantic import ValidationError

    from vjepa_robot_client.contract import BakeoffRequest

    if not model and not encoder and not baseline and not resume:
        _fail(
            "name the rows: --model PRESET_OR_CHECKPOINT (started here), --encoder URL and/or --baseline state, "
            "each repeatable (or --resume ID)"
        )
    experts: dict[str, str] = {}
    for e in expert:
        name, sep, value = e.partition("=")
        if not sep or not name or not value:
            _fail(f"--expert takes TASK=EXPERT, e.g. --expert walker-walk=run:sac-1a2b (got {e!r})")
        experts[name] = value
    given = dict(
        tasks=task or None,
        experts=experts or None,
        readouts=readout or None,
        grid_size=grid_size,
        seeds=_seed_list(seeds, None).get("seeds"),
        protocol=protocol,
        episodes=episodes,
        steps=steps,
        image_size=image_size,
        epochs=epochs,
        pixels_epochs=pixels_epochs,
        batch_size=batch_size,
        eval_episodes=eval_episodes,
        eval_seed=eval_seed,
        parallel_envs=parallel_envs,
        workers=workers,
        dataset=dataset,
        baselines=baseline or None,
        executor=executor,
        cell_workers=cell_workers,
    )
    fields = {k: v for k, v in given.items() if v is not None}
    try:
        BakeoffRequest(encoders=list(encoder) or ["http://placeholder"], **fields)  # the flags, checked first
    except ValidationError as exc:
        _invalid(exc, BakeoffRequest)
    from services.common.store import Store, default_store_uri

    store_uri = Store(store or default_store_uri()).uri
    procs: list = []
    try:
        urls = list(encoder)
        if model:
            started, procs = _local_encoders(model, store_uri, fusion, out / "logs")
            urls += started
        req = None if resume else BakeoffRequest(encoders=urls, **fields)
        if trainer_url:
            from vjepa_robot_client import TrainerClient

            tr = TrainerClient(trainer_url, token=token)
            if req is None:
                started_record = tr.resume_bakeoff(resume)
            else:
                started_record = tr.bakeoff(**req.model_dump(mode="json", exclude_unset=True))
            if started_record.plan.get("summary"):
                typer.echo(started_record.plan["summary"])  # the cost plan, recorded before the cells start
            record = tr.wait_bakeoff(started_record.bakeoff_id)
            out.mkdir(parents=True, exist_ok=True)
            (out / "bakeoff.md").write_text((record.table or "") + "\n")
            if record.figure_path:
                (out / "bakeoff.png").write_bytes(tr.bakeoff_figure(record.bakeoff_id))
        else:
            from services.trainer import bakeoff, jobs

            ctx = _local_ctx(store_uri, runs_dir, None, token)
            try:
                if req is None:
                    record = bakeoff.resume(ctx, jobs.InlineRunner(), resume, announce=typer.echo, urls=urls or None)
                else:
                    record = bakeoff.start(ctx, jobs.InlineRunner(), req, announce=typer.echo)
            except jobs.Refused as exc:
                _fail(exc.detail)
            record = bakeoff.load(ctx, record.bakeoff_id)
            bakeoff.write_outputs(ctx, record, out)
    finally:
        _stop_all(procs)
    typer.echo(record.table or "")
    typer.echo(f"\ntable {out / 'bakeoff.md'}, figure {out / 'bakeoff.png'} (bake-off {record.bakeoff_id})")
    if record.status.value != "succeeded":
        _fail(f"bake-off {record.bakeoff_id} {record.status.value}: {record.error}", EXIT_FAILED)


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


# The trainer stack is an extra (pip install "vjepa-robot[trainer]"); an encoder-only install still runs the CLI.
TRAINER_STACK = ("dm_control", "mujoco", "matplotlib", "imageio", "psutil")  # the `trainer` extra


def main(argv: list[str] | None = None) -> None:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    # `--verbose` is a global option (before the command); accept it after the command too, where people type it
    cut = args.index("--") if "--" in args else len(args)
    if "--verbose" in args[1:cut]:
        _VERBOSE["on"] = True
        args = [a for i, a in enumerate(args) if not (a == "--verbose" and 0 < i < cut)]
    at = next((i for i, a in enumerate(args[:cut]) if not a.startswith("-")), cut)  # the command
    if at < cut and args[at] in ("train", "eval") and "--json" in args[at + 1 : cut]:  # datasets / runs: their own
        args = ["--json", *(a for i, a in enumerate(args) if not (a == "--json" and at < i < cut))]
    from vjepa_robot.harness import SIGNALS, stop_on_signals

    restore = lambda: None  # noqa: E731
    if next((a for a in args if not a.startswith("-")), "serve") != "serve":  # uvicorn owns a service's signals
        # SIGTERM/SIGINT raise in the main thread: local services stop (the trainer before its encoder), datasets,
        # runs, evaluations and bake-offs in progress here end failed/interrupted, then the CLI exits (128 + signal)
        restore = stop_on_signals()
    try:
        app(args=args, prog_name="vjepa-robot")
    except (SystemExit, KeyboardInterrupt):
        if SIGNALS.received is None:
            raise
        name = signal_name(SIGNALS.received)
        typer.secho(f"stopped by {name}: local services stopped, unfinished work recorded", fg="yellow", err=True)
        if argv is None:  # the console script: exit now, not after threads still computing (the demo's probes)
            from vjepa_robot.harness import exit_now

            exit_now(128 + SIGNALS.received)
        raise SystemExit(128 + SIGNALS.received) from None
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINER_STACK:
            raise
        typer.secho(
            f'error: this command needs the trainer stack ({exc.name} is missing): pip install "vjepa-robot[trainer]"',
            fg=typer.colors.RED,
            err=True,
        )
        raise SystemExit(EXIT_BAD_INPUT) from None
    except Exception as exc:  # expected failures in one line; the trace behind --verbose, with the same exit code
        found = classify_failure(exc)
        if found is None:
            raise
        if _VERBOSE["on"]:
            import traceback

            traceback.print_exc()
            typer.secho(f"error: {found[0]}", fg=typer.colors.RED, err=True)
            raise SystemExit(found[1]) from None
        typer.secho(f"error: {found[0]} (full trace: vjepa-robot --verbose ...)", fg=typer.colors.RED, err=True)
        raise SystemExit(found[1]) from None
    finally:
        restore()


if __name__ == "__main__":  # pragma: no cover
    main()
