"""Expert datasets: episodes generated in parallel worker processes, written to LanceDB one episode per append.

    spec = DatasetSpec(name="jacobian-easy-500", expert="jacobian", task="easy", episodes=500, steps=200, seed=0)
    meta = create_dataset(spec, store="./vjepa-robot-store", workers=2)

Workers render and compress frames (PNG) and return whole episodes; the parent process is the only writer
(LanceDB wants one writer per table), so a reader never sees a partial episode, and a crash loses at most the
episodes in flight. `create_dataset` is THE way a dataset is built: the CLI, the trainer route and the Modal app
(which generates shards on many containers) all call it. Same seed, same frames and actions: episode i is seeded
by train_episode_seed(seed, i).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from services import __version__
from services.common.store import STEPS_SCHEMA, DatasetNotFound, Store, encode_png, now_iso
from vjepa_robot_client.contract import EXPERTS, TASKS, validate_name

from .env import episode_success, finger_target_xy, make, train_episode_seed
from .experts import make_expert


class DatasetExists(Exception):
    pass


class GenerationStopped(Exception):
    """Raised inside create_dataset when its `stop` event is set (the trainer is shutting down)."""


# Who owns a `running` dataset. A pid alone cannot say: in a container the trainer is always PID 1, so a trainer
# restarted there has its dead predecessor's pid. The owner token is unique per process start (pid, the
# process's start time as the kernel reports it, and a random part); a claim whose token is not this process's
# and whose pid is now another process (another start time), or gone, is stale. A claim from another host (or a
# host whose processes this one cannot see) is stale once its lease expires: the generating process renews
# `heartbeat_at` at least every HEARTBEAT_S seconds.
def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


OWNER_TOKEN = f"{os.getpid()}-{_start_time(os.getpid())}-{uuid.uuid4().hex[:12]}"
HEARTBEAT_S = 30.0
LEASE_S = 10 * HEARTBEAT_S  # a claim not renewed for this long is stale wherever its owner ran


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    expert: str = "jacobian"
    task: str = "easy"
    episodes: int = 100
    steps: int = 200
    seed: int = 0
    image_size: int = 256

    def __post_init__(self):
        validate_name(self.name, "dataset name")
        if self.expert not in EXPERTS:
            raise ValueError(f"unknown expert {self.expert!r}: choose one of {', '.join(EXPERTS)}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: choose one of {', '.join(TASKS)}")
        if self.episodes <= 0:
            raise ValueError(f"episodes must be > 0, got {self.episodes}")
        if self.steps <= 0:
            raise ValueError(f"steps must be > 0, got {self.steps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not (self.image_size == 0 or 16 <= self.image_size <= 1024):
            raise ValueError(f"image_size must be 0 (no frames) or 16..1024, got {self.image_size}")


@dataclass
class EpisodeRecord:
    episode: int
    seed: int
    success: bool
    ret: float
    table: pa.Table  # one row per step, STEPS_SCHEMA


# ----------------------------------------------------------------------------------------------------------------
# One episode (runs in a worker)
# ----------------------------------------------------------------------------------------------------------------

_ENV_CACHE: dict = {}


def generate_episode(spec: DatasetSpec, episode: int) -> EpisodeRecord:
    """Roll out the expert for one episode; the frame stored at step t is the one the expert acted on."""
    key = (spec.task, spec.steps, spec.image_size)
    if key not in _ENV_CACHE:
        _ENV_CACHE.clear()
        _ENV_CACHE[key] = make(spec.task, episode_steps=spec.steps, image_size=spec.image_size, window=0)
    env = _ENV_CACHE[key]
    expert = make_expert(spec.expert)
    seed = train_episode_seed(spec.seed, episode)
    ts = env.reset(seed)
    expert.reset(seed)
    cols: dict[str, list] = {k: [] for k in STEPS_SCHEMA.names}
    t = 0
    while not ts.last():
        action = expert.act(env.physics, ts)
        finger, target = finger_target_xy(env.physics)
        obs = ts.observation
        nxt = env.step(action)
        cols["step"].append(t)
        cols["frame"].append(encode_png(ts.frame) if ts.frame is not None else b"")
        cols["action"].append(action.astype(np.float32))
        cols["reward"].append(nxt.reward)  # the reward earned by this step's action
        cols["position"].append(obs["position"])
        cols["to_target"].append(obs["to_target"])
        cols["velocity"].append(obs["velocity"])
        cols["finger_xy"].append(finger)
        cols["target_xy"].append(target)
        ts, t = nxt, t + 1
    n = len(cols["step"])
    cols["dataset"] = [spec.name] * n
    cols["episode"] = [episode] * n
    cols["seed"] = [seed] * n
    arrays = {}
    for field in STEPS_SCHEMA:
        values = cols[field.name]
        if pa.types.is_fixed_size_list(field.type):
            flat = pa.array(np.asarray(values, dtype=np.float32).reshape(-1))
            arrays[field.name] = pa.FixedSizeListArray.from_arrays(flat, field.type.list_size)
        else:
            arrays[field.name] = pa.array(values, type=field.type)
    table = pa.table(arrays, schema=STEPS_SCHEMA)
    rewards = np.asarray(cols["reward"])
    return EpisodeRecord(episode, seed, episode_success(rewards), float(rewards.sum()), table)


# ----------------------------------------------------------------------------------------------------------------
# The whole dataset (parent: the only writer)
# ----------------------------------------------------------------------------------------------------------------


# Episodes in batches: each batch is appended (one episode per append), then progress may be recorded.
GenerateFn = Callable[["DatasetSpec", list[int]], Iterable[list["EpisodeRecord"]]]


def create_dataset(
    spec: DatasetSpec,
    store: Store | str | None = None,
    *,
    workers: int = 2,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    on_episode: Callable[[int, int], None] | None = None,
    generate: GenerateFn | None = None,
    record_every: int | None = None,
    commit: Callable[[], None] = lambda: None,
    extra_meta: dict | None = None,
    stop: threading.Event | None = None,
) -> dict:
    """Generate `spec` into the store and return its metadata. Refuses an existing name unless overwrite/resume.

    `generate(spec, episodes)` yields batches of EpisodeRecords in episode order (default: `workers` local
    processes, one episode per batch; the Modal app passes its shard map). Progress is recorded in the dataset's
    metadata every `record_every` episodes (default a tenth of the dataset), and at least every HEARTBEAT_S
    seconds (the claim's lease), and `commit()` runs after each record (the Modal app commits its Volume there).
    `stop` (a threading.Event) is checked between batches: once set, generation ends `failed` with an error
    saying it was stopped, never `ready` with missing episodes; `resume=True` completes it later.
    """
    store = store if isinstance(store, Store) else Store(store)
    existing = _make_room(store, spec, overwrite=overwrite, resume=resume)
    done = store.episodes_present(spec.name)
    todo = [e for e in range(spec.episodes) if e not in done]
    meta = {**_running_meta(spec, existing), "episodes_done": len(done), **(extra_meta or {})}

    last_record = [time.monotonic()]

    def record(status: str) -> None:
        meta["heartbeat_at"] = now_iso()
        store.put_dataset_meta(spec.name, status, meta)
        commit()
        last_record[0] = time.monotonic()

    record("running")
    generate = generate or (lambda s, eps: ([rec] for rec in _generate(s, eps, workers)))
    record_every = record_every or max(1, spec.episodes // 10)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=spec.episodes, initial=len(done), desc=f"dataset {spec.name}", unit="ep")
    t0 = time.perf_counter()
    since_record = 0
    try:
        for batch in generate(spec, todo):
            if stop is not None and stop.is_set():
                raise GenerationStopped(
                    f"generation stopped (the trainer is shutting down) after "
                    f"{meta['episodes_done']} of {spec.episodes} episodes; re-create it with "
                    "resume (CLI --resume) to complete it"
                )
            for rec in batch:
                store.append_episode(spec.name, rec.table)  # one episode, one append: never a partial episode
                meta["episodes_done"] += 1
                since_record += 1
                if bar:
                    bar.update(1)
                if on_episode:
                    on_episode(meta["episodes_done"], spec.episodes)
            if since_record >= record_every or time.monotonic() - last_record[0] >= HEARTBEAT_S:
                record("running")
                since_record = 0
        if stop is not None and stop.is_set() and meta["episodes_done"] < spec.episodes:
            raise GenerationStopped(
                f"generation stopped (the trainer is shutting down) after "
                f"{meta['episodes_done']} of {spec.episodes} episodes"
            )
    except BaseException as exc:
        meta["error"] = f"{type(exc).__name__}: {exc}"
        record("failed")
        raise
    finally:
        if bar:
            bar.close()

    meta.update(summarise(store, spec.name))
    meta["generation_s"] = round(time.perf_counter() - t0, 2)
    meta.pop("error", None)
    if meta["episodes_done"] != spec.episodes:
        meta["error"] = f"only {meta['episodes_done']} of {spec.episodes} episodes present"
        record("failed")
        raise RuntimeError(meta["error"])
    record("ready")
    store.compact_steps(spec.name)
    return store.get_dataset_meta(spec.name)


def claim_dataset(spec: DatasetSpec, store: Store, *, overwrite: bool = False) -> dict:
    """Record `spec` as `running` (owned by this process) before its generation starts, so a service can answer
    at once and a reader finds the dataset; `create_dataset(spec, store, resume=True)` then fills it in.
    Raises DatasetExists unless overwrite (an overwrite drops the old dataset now)."""
    existing = _make_room(store, spec, overwrite=overwrite, resume=False)
    meta = _running_meta(spec, existing)
    store.put_dataset_meta(spec.name, "running", meta)
    return meta


def _make_room(store: Store, spec: DatasetSpec, *, overwrite: bool, resume: bool) -> dict | None:
    """The existing dataset's metadata if it is to be resumed; None when there is none (or it was dropped)."""
    try:
        existing = store.get_dataset_meta(spec.name)
    except DatasetNotFound:
        existing = None
    if existing is None and not store.has_steps(spec.name):
        return None
    if overwrite:
        store.drop_dataset(spec.name)
        return None
    if resume:
        if existing and {k: existing.get(k) for k in asdict(spec)} != asdict(spec):
            raise ValueError(
                f"cannot resume dataset {spec.name!r}: it was created with different arguments "
                f"({ {k: existing.get(k) for k in asdict(spec)} }); use --overwrite to replace it"
            )
        return existing
    raise DatasetExists(
        f"dataset {spec.name!r} already exists ({existing.get('status') if existing else 'partial'}): "
        "choose another name, overwrite it, or resume an interrupted one"
    )


def _running_meta(spec: DatasetSpec, existing: dict | None) -> dict:
    return {
        **asdict(spec),
        "created_at": (existing or {}).get("created_at") or now_iso(),
        "version": __version__,
        "owner_pid": os.getpid(),
        "owner_host": os.uname().nodename,
        "owner_token": OWNER_TOKEN,
        "heartbeat_at": now_iso(),
        "episodes_done": 0,
        "success_rate": None,
        "mean_return": None,
    }


def _generate(spec: DatasetSpec, episodes: list[int], workers: int):
    """Yield EpisodeRecords in episode order, from `workers` processes (in process when workers == 1)."""
    if workers <= 1 or len(episodes) <= 1:
        for e in episodes:
            yield generate_episode(spec, e)
        return
    # spawn, not fork: a forked EGL context is not safe to use
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_one_render_thread)
    try:
        yield from ex.map(generate_episode, [spec] * len(episodes), episodes, chunksize=1)
    finally:  # stopped or failed early: drop the queued episodes, wait only for those in flight
        ex.shutdown(wait=True, cancel_futures=True)


def _one_render_thread() -> None:
    """Each worker owns a core: Mesa's software renderer (llvmpipe) otherwise spreads every frame over all cores,
    so N workers would run N x cores render threads. (On 2 cores one multi-threaded renderer already reaches
    38.6 frames/s of generation; two one-thread workers 49.3; bench/generate.py.)"""
    os.environ.setdefault("LP_NUM_THREADS", "1")


def summarise(store: Store, name: str) -> dict:
    """Success rate and mean return of the recorded episodes, from the stored rewards (the one definition)."""
    t = store.read_steps(name, ["reward"])
    episode = t.column("episode").to_numpy()
    reward = t.column("reward").to_numpy()
    if len(episode) == 0:
        return {"success_rate": None, "mean_return": None, "episodes_done": 0}
    bounds = np.flatnonzero(np.diff(episode)) + 1
    per_ep = np.split(reward, bounds)
    return {
        "success_rate": float(np.mean([episode_success(r) for r in per_ep])),
        "mean_return": float(np.mean([r.sum() for r in per_ep])),
        "episodes_done": len(per_ep),
    }


def stale_reason(meta: dict, now: datetime | None = None) -> str | None:
    """Why a `running` claim is stale (its generating process is gone), or None while it may be alive.

    On the claiming host the process table decides (pid and start time); elsewhere only the lease can."""
    token, pid = meta.get("owner_token"), meta.get("owner_pid")
    if token == OWNER_TOKEN:
        return None  # this process's own claim
    if meta.get("owner_host") == os.uname().nodename and pid:
        pid = int(pid)
        started = _start_time(pid)
        if started is None:
            return f"process {pid} is gone"
        if token is not None and token.split("-")[:2] != [str(pid), str(started)]:
            return f"process {pid} is not the one that claimed it (the pid was reused, e.g. by a restarted container)"
        return None  # that very process is alive (or a claim from before owner tokens, whose pid is alive)
    beat = meta.get("heartbeat_at") or meta.get("updated_at")
    if beat:
        age = ((now or datetime.now(timezone.utc)) - datetime.fromisoformat(beat)).total_seconds()
        if age > LEASE_S:
            return f"its generator on {meta.get('owner_host')} renewed no lease for {age:.0f} s (lease {LEASE_S:.0f} s)"
    return None


def dataset_info(store: Store, name: str) -> dict:
    """Metadata with a stale `running` (its generating process is gone: stale_reason) reported as `failed`."""
    meta = store.get_dataset_meta(name)
    if meta["status"] == "running":
        why = stale_reason(meta)
        if why:
            meta["status"] = "failed"
            meta["error"] = (
                f"generation interrupted ({why}) after {meta.get('episodes_done')} episodes; "
                "re-run with --resume to complete it"
            )
    return meta
