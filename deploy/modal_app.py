"""vjepa-robot on Modal: the encoder on autoscaled GPUs, the trainer, and demo generation fanned out over shards.

    modal secret create vjepa-robot-token VJEPA_ROBOT_TOKEN=$(openssl rand -hex 24)   # once
    modal deploy deploy/modal_app.py                       # encoder (GPU) + trainer web endpoints, shard workers
    modal run deploy/modal_app.py::make_dataset --name jacobian-easy-500 --episodes 500 --shard-size 10
    modal run deploy/modal_app.py::urls                    # print the two service URLs for the SDK

Configuration (read when this file is imported, i.e. at `modal deploy` / `modal run` time):
    VJEPA_ROBOT_MODAL_GPU            GPU type of the encoder (default A10G; e.g. L4, A100, H100)
    VJEPA_ROBOT_MODAL_PRESET         encoder preset (default vitl: the real V-JEPA 2 ViT-L from the hub)
    VJEPA_ROBOT_MODAL_MIN_CONTAINERS encoder containers kept up when idle (default 0: pay nothing when idle)
    VJEPA_ROBOT_MODAL_MAX_CONTAINERS autoscaling ceiling of the encoder (default 4)
    VJEPA_ROBOT_MODAL_STORE          "volume" (default: a modal.Volume at /data/store) or an s3://bucket/prefix URI
                                     (credentials from the Modal Secret `vjepa-robot-s3`: AWS_ACCESS_KEY_ID, ...)

Store semantics. On a Volume, writes become visible to other containers only after the writer commits and the
reader reloads (modal.Volume is last-write-wins per file). Lance never rewrites a data file (every append is new
files plus a new manifest), so the rule that keeps it safe is the project's own: one writer per table.
    - demo generation: shard workers only *compute* episodes; the single `generate_dataset` call appends them and
      commits the Volume after every shard, so a crash loses at most one shard;
    - the encoder's dataset-embedding jobs and the trainer write from one container each (max_containers=1 for the
      trainer; dataset embedding is started on one encoder) and Modal also commits in the background and on exit;
    - bake-off cells (`run_cell`, executor "modal"): the trainer makes each task's demos first (one writer), then
      each cell runs in its own container, fanned out with .map, writing only its own runs and state file, and
      commits when it ends; the trainer applies each cell's result to the bake-off record (one writer);
    - readers reload the Volume before every request that reads the store (`_ReloadStore` middleware below).
With an s3:// store none of this applies (LanceDB commits through the object store); it is the choice at scale.

Everything here imports and its plain functions run without Modal credentials (tests call them directly).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import modal

APP_NAME = "vjepa-robot"
GPU = os.environ.get("VJEPA_ROBOT_MODAL_GPU", "A10G")
PRESET = os.environ.get("VJEPA_ROBOT_MODAL_PRESET", "vitl")
STORE = os.environ.get("VJEPA_ROBOT_MODAL_STORE", "volume")
STORE_PATH = "/data/store"
RUNS_PATH = "/data/runs"
HF_CACHE_PATH = "/cache"
TOKEN_SECRET = "vjepa-robot-token"
S3_SECRET = "vjepa-robot-s3"

# Encoder autoscaling. One A10G serves a ViT-L forward of 32 windows in about a second (estimate), so 16 requests
# in flight keep the dynamic batcher full; beyond that Modal starts another container.
ENCODER_CONCURRENCY = 16
ENCODER_MIN_CONTAINERS = int(os.environ.get("VJEPA_ROBOT_MODAL_MIN_CONTAINERS", "0"))
ENCODER_MAX_CONTAINERS = int(os.environ.get("VJEPA_ROBOT_MODAL_MAX_CONTAINERS", "4"))
ENCODER_SCALEDOWN_S = 300  # idle seconds before a GPU container stops (billed while idle)
SHARD_WORKERS_MAX = 64
TORCH_VERSION = "2.13.0"

ROOT = Path(__file__).resolve().parents[1]


LOCK = ROOT / "constraints.txt"  # the project's lock file: images install the versions it pins
LOCK_IN_IMAGE = "/opt/vjepa-robot/constraints.txt"


def _dependencies(*extras: str) -> list[str]:
    """The root pyproject's core dependencies plus those of `extras` (torch is installed first, from the CUDA
    index). [] inside a container, where the image is already built and this file is imported without the
    repository around it."""
    path = ROOT / "pyproject.toml"
    if not path.exists():
        return []
    import tomllib

    project = tomllib.loads(path.read_text())["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]
    return [d for d in deps if not d.replace(" ", "").startswith(("torch==", "vjepa-robot"))]


def _locked(image: modal.Image, *packages: str) -> modal.Image:
    """pip install `packages` constrained by the lock file (so a rebuild months later installs the same versions)."""
    if not packages:
        return image
    if not LOCK.exists():
        return image.pip_install(*packages)
    return image.add_local_file(LOCK, LOCK_IN_IMAGE, copy=True).pip_install(
        *packages, extra_options=f"-c {LOCK_IN_IMAGE}"
    )


def store_uri() -> str:
    return STORE_PATH if STORE == "volume" else STORE


def is_volume_store() -> bool:
    return STORE == "volume"


# ----------------------------------------------------------------------------------------------------------------
# Images, volumes, secrets (all lazy: nothing here talks to Modal until deploy/run)
# ----------------------------------------------------------------------------------------------------------------

# One shared prefix (Debian + libgomp + CUDA torch) under two images, as in deploy/Dockerfile: Modal builds and caches
# the common layers once. The encoder image carries the core set only (no simulator, RL or plotting stack); the
# trainer image (trainer service, demo generation) adds the EGL/Mesa libraries and the `trainer` extra.
_torch = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("libgomp1")
    .pip_install(f"torch=={TORCH_VERSION}", index_url="https://download.pytorch.org/whl/cu128")
    .env({"HF_HOME": f"{HF_CACHE_PATH}/hf", "PYTHONUNBUFFERED": "1"})
)
_SOURCES = ("vjepa_robot", "vjepa_robot_lab", "services", "vjepa_robot_client")
encoder_image = _locked(_torch, *_dependencies("encoder")).add_local_python_source(*_SOURCES)
trainer_image = _locked(
    _torch.apt_install("libegl1", "libgl1", "libglvnd0", "libgles2", "libegl-mesa0", "libgl1-mesa-dri").env(
        {"MUJOCO_GL": "egl"}
    ),
    *_dependencies("trainer"),
).add_local_python_source(*_SOURCES)
image = trainer_image  # the trainer, the shard workers and generate_dataset render with MuJoCo

hf_cache_volume = modal.Volume.from_name("vjepa-robot-hf-cache", create_if_missing=True)
store_volume = modal.Volume.from_name("vjepa-robot-store", create_if_missing=True)
runs_volume = modal.Volume.from_name("vjepa-robot-runs", create_if_missing=True)
token_secret = modal.Secret.from_name(TOKEN_SECRET)  # provides VJEPA_ROBOT_TOKEN to both services

store_volumes: dict[str, modal.Volume] = {STORE_PATH: store_volume} if is_volume_store() else {}
store_secrets: list[modal.Secret] = [] if is_volume_store() else [modal.Secret.from_name(S3_SECRET)]

app = modal.App(APP_NAME)

ENCODER_OPTIONS: dict[str, Any] = dict(
    gpu=GPU,
    image=encoder_image,
    volumes={HF_CACHE_PATH: hf_cache_volume, **store_volumes},
    secrets=[token_secret, *store_secrets],
    min_containers=ENCODER_MIN_CONTAINERS,
    max_containers=ENCODER_MAX_CONTAINERS,
    scaledown_window=ENCODER_SCALEDOWN_S,
    timeout=60 * 60,  # the longest request (a dataset-embedding start is quick; jobs run in a thread)
)
TRAINER_OPTIONS: dict[str, Any] = dict(
    image=image,
    cpu=8.0,
    memory=16 * 1024,
    volumes={RUNS_PATH: runs_volume, **store_volumes},
    secrets=[token_secret, *store_secrets],
    min_containers=0,
    max_containers=1,  # one writer of run records and dataset tables
    scaledown_window=20 * 60,
    timeout=24 * 60 * 60,
)


# ----------------------------------------------------------------------------------------------------------------
# Plain functions (no Modal needed: tests and the local entrypoints call them directly)
# ----------------------------------------------------------------------------------------------------------------


def plan_shards(episodes: int, shard_size: int, done: Iterable[int] = ()) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most shard_size episodes covering those not yet `done` (so reruns resume)."""
    if episodes < 1 or shard_size < 1:
        raise ValueError(f"episodes and shard_size must be >= 1, got {episodes} and {shard_size}")
    done = set(done)
    shards: list[tuple[int, int]] = []
    start = None
    for e in range(episodes + 1):
        missing = e < episodes and e not in done
        if missing and start is None:
            start = e
        if start is not None and (not missing or e - start == shard_size):
            shards.append((start, e))
            start = e if missing else None
    return shards


def generate_shard(spec_dict: dict[str, Any], episode_start: int, episode_stop: int) -> list:
    """Roll out episodes [episode_start, episode_stop) of a dataset spec; returns their EpisodeRecords (no writes)."""
    from vjepa_robot_lab.data.datasets import DatasetSpec, generate_episode

    spec = DatasetSpec(**spec_dict)
    return [generate_episode(spec, e) for e in range(episode_start, episode_stop)]


def build_dataset(
    spec_dict: dict[str, Any],
    store: str,
    *,
    shard_size: int = 10,
    map_shards: Callable[[list[dict], list[int], list[int]], Iterable[list]] | None = None,
    commit: Callable[[], None] = lambda: None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Generate a dataset by shards with the one dataset builder (vjepa_robot_lab.data.datasets.create_dataset),
    appending from this one process (the only writer); reruns resume.

    `map_shards(specs, starts, stops)` yields each shard's records: Modal's `generate_shard_remote.map` in the
    cloud, the builtin map locally. `commit()` runs after each recorded step (Volume.commit on Modal): when the
    dataset is marked running, after each shard's appends, and at the end."""
    from dataclasses import asdict

    from vjepa_robot_lab.data.datasets import DatasetSpec, create_dataset

    spec = DatasetSpec(**spec_dict)
    generator = "modal" if map_shards else "local"
    map_shards = map_shards or (lambda specs, starts, stops: map(generate_shard, specs, starts, stops))

    def by_shards(s: DatasetSpec, todo: list[int]) -> Iterable[list]:
        shards = plan_shards(s.episodes, shard_size, set(range(s.episodes)) - set(todo))
        return map_shards([asdict(s)] * len(shards), [a for a, _ in shards], [b for _, b in shards])

    return create_dataset(
        spec,
        store,
        overwrite=overwrite,
        resume=not overwrite,
        progress=False,
        generate=by_shards,
        record_every=1,
        commit=commit,
        extra_meta={"generator": generator},
    )


class _ReloadStore:
    """ASGI middleware: reload the store Volume before each HTTP request, so this container sees other
    containers' committed writes (modal.Volume semantics). A reload that fails (open files) is logged, not fatal."""

    def __init__(self, asgi_app, volume: modal.Volume | None) -> None:
        self.app, self.volume = asgi_app, volume

    async def __call__(self, scope, receive, send):
        if self.volume is not None and scope["type"] == "http" and scope.get("path") != "/healthz":
            try:
                await self.volume.reload.aio()
            except Exception as exc:  # pragma: no cover - only on Modal
                import logging

                logging.getLogger(__name__).warning("volume reload skipped: %s", exc)
        await self.app(scope, receive, send)


def encoder_settings(**overrides: Any):
    from services.encoder.settings import EncoderSettings

    return EncoderSettings(
        **{
            "host": "0.0.0.0",
            "preset": PRESET,
            "store": store_uri(),
            "device": "cuda",
            "max_batch": 32,
            "max_wait_ms": 5.0,
            **overrides,
        }
    )


def trainer_settings(encoder_url: str, **overrides: Any):
    from services.trainer.app import TrainerSettings

    return TrainerSettings(
        **{"host": "0.0.0.0", "store": store_uri(), "runs": RUNS_PATH, "encoder_url": encoder_url, **overrides}
    )


# ----------------------------------------------------------------------------------------------------------------
# Modal: encoder (GPU class), trainer (web function), shard workers
# ----------------------------------------------------------------------------------------------------------------


@app.cls(**ENCODER_OPTIONS)
@modal.concurrent(max_inputs=ENCODER_CONCURRENCY)
class Encoder:
    """Frozen V-JEPA 2 behind the encoder service's routes; the model loads once per container."""

    @modal.enter()
    def load(self) -> None:
        from services.encoder.model import load_encoder

        self.encoder = load_encoder(PRESET, device="cuda")  # downloads into HF_HOME on the cache Volume once
        hf_cache_volume.commit()  # persist fresh hub weights for the next container

    @modal.asgi_app()
    def web(self):
        from services.encoder.app import create_app

        return _ReloadStore(
            create_app(encoder_settings(), encoder=self.encoder), store_volume if is_volume_store() else None
        )


def _encoder_url() -> str:
    url = os.environ.get("VJEPA_ROBOT_ENCODER_URL")
    if url:
        return url
    return modal.Cls.from_name(APP_NAME, "Encoder")().web.get_web_url()


@app.function(**TRAINER_OPTIONS)
@modal.concurrent(max_inputs=64)
@modal.asgi_app()
def trainer():
    """The trainer service; it calls the encoder over HTTPS with the same bearer token, like any SDK client."""
    from services.trainer.app import create_app

    return _ReloadStore(create_app(trainer_settings(_encoder_url())), store_volume if is_volume_store() else None)


generate_shard_remote = app.function(
    image=image,
    cpu=2.0,
    memory=4096,
    max_containers=SHARD_WORKERS_MAX,
    timeout=60 * 60,
    retries=2,
    name="generate_shard",
)(generate_shard)


@app.function(image=image, cpu=2.0, memory=8192, volumes=store_volumes, secrets=store_secrets, timeout=6 * 60 * 60)
def generate_dataset(spec_dict: dict[str, Any], shard_size: int = 10, overwrite: bool = False) -> dict[str, Any]:
    """Fan demo generation out over shards (.map) and append the episodes here, the one writer."""
    commit = store_volume.commit if is_volume_store() else (lambda: None)
    return build_dataset(
        spec_dict,
        store_uri(),
        shard_size=shard_size,
        overwrite=overwrite,
        commit=commit,
        map_shards=lambda specs, starts, stops: generate_shard_remote.map(specs, starts, stops),
    )


# -- bake-off cells (issue 32): each cell one call, fanned out with .map beside the autoscaled GPU encoder --------
CELL_WORKERS_MAX = 64


def run_cell_here(
    spec_json: str,
    store: str | None = None,
    runs: str | None = None,
    reload: Callable[[], None] = lambda: None,
    commit: Callable[[], None] = lambda: None,
) -> str:
    """Run one bake-off cell (vjepa_robot_lab/experiments/bakeoff.py run_cell) against this container's store and
    runs directory (the spec's own paths are the orchestrator's); returns the cell's result as JSON. The Volumes
    are reloaded first (the demos the trainer made) and committed after (the cell's runs, state and embeddings)."""
    import json

    from vjepa_robot_lab.experiments.bakeoff import run_cell

    spec = json.loads(spec_json)
    spec["store"], spec["runs"] = store or spec["store"], runs or spec["runs"]
    reload()
    try:
        result = run_cell(spec)
    finally:
        commit()
    return json.dumps(result)


def _in_container(fn: Callable[[], None]) -> Callable[[], None]:
    """fn inside a Modal container; nothing on a laptop (.local() calls in tests: no Volume to sync)."""
    return (lambda: None) if modal.is_local() else fn


@app.function(
    image=image,
    cpu=2.0,
    memory=8192,
    volumes={RUNS_PATH: runs_volume, **store_volumes},
    secrets=[token_secret, *store_secrets],
    max_containers=CELL_WORKERS_MAX,
    timeout=12 * 60 * 60,
    retries=1,  # a lost container reruns the cell, which continues from its own state
    name="run_cell",
)
def run_cell_remote(spec_json: str, store: str | None = None, runs: str | None = None) -> str:
    """One bake-off cell in its own container (the trainer's executor "modal" calls this with .map)."""

    def reload() -> None:
        runs_volume.reload()
        if is_volume_store():
            store_volume.reload()

    def commit() -> None:
        runs_volume.commit()
        if is_volume_store():
            store_volume.commit()

    return run_cell_here(
        spec_json,
        store or store_uri(),
        runs or RUNS_PATH,
        reload=_in_container(reload),
        commit=_in_container(commit),
    )


@app.local_entrypoint()
def make_dataset(
    name: str,
    expert: str = "jacobian",
    task: str = "easy",
    episodes: int = 100,
    steps: int = 200,
    seed: int = 0,
    image_size: int = 256,
    shard_size: int = 10,
    overwrite: bool = False,
) -> None:
    """modal run deploy/modal_app.py::make_dataset --name jacobian-easy-500 --episodes 500"""
    spec = dict(name=name, expert=expert, task=task, episodes=episodes, steps=steps, seed=seed, image_size=image_size)
    meta = generate_dataset.remote(spec, shard_size=shard_size, overwrite=overwrite)
    print(
        f"dataset {name}: {meta.get('episodes_done')} episodes, success {meta.get('success_rate')}, "
        f"mean return {meta.get('mean_return')}"
    )


@app.local_entrypoint()
def urls() -> None:
    """modal run deploy/modal_app.py::urls  (after modal deploy)"""
    print("encoder:", modal.Cls.from_name(APP_NAME, "Encoder")().web.get_web_url())
    print("trainer:", modal.Function.from_name(APP_NAME, "trainer").get_web_url())
