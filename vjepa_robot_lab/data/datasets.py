"""Expert datasets: episodes generated in parallel worker processes, written to LanceDB one episode per append.

    spec = DatasetSpec(name="jacobian-easy-500", expert="jacobian", task="easy", episodes=500, steps=200, seed=0)
    meta = create_dataset(spec, store="./vjepa-robot-store", workers=2)

Workers render and compress frames (PNG) and return whole episodes; the parent process is the only writer
(LanceDB wants one writer per table), so a reader never sees a partial episode, and a crash loses at most the
episodes in flight. `create_dataset` is THE way a dataset is built: the CLI, the trainer route and the Modal app
(which generates shards on many containers) all call it. Same seed, same frames and actions: episode i is seeded
by train_episode_seed(seed, i).

Any task of vjepa_robot_lab/envs/tasks.py: reacher's datasets keep STEPS_SCHEMA (position/to_target/velocity, the
probe's
finger/target positions); another task's rows have its action width and its flattened observation as `state`
(store.task_steps_schema). Scripted experts are reacher's; `expert="run:RUN_ID"` rolls out a trained state-feature
run (experts.RunExpert) at that run's action repeat, one stored row per agent step, and records the run in the meta;
`expert="shipped"` (the default off reacher) does the same with the package's state-SAC expert for the task
(policies/shipped_experts.py), so no expert has to be trained first.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from services import __version__
from services.common.owner import OWNER_TOKEN, owner_gone, start_time
from services.common.store import STEPS_SCHEMA, DatasetNotFound, Store, encode_png, now_iso, task_steps_schema
from vjepa_robot_client.contract import (
    SHIPPED_EXPERT,
    check_action_repeat,
    default_expert,
    validate_expert,
    validate_name,
)
from vjepa_robot_lab.envs.env import SUCCESS_LAST_STEPS, finger_target_xy, make, train_episode_seed
from vjepa_robot_lab.envs.tasks import canonical_task, task_spec
from vjepa_robot_lab.policies.experts import Expert, check_expert_task, make_expert
from vjepa_robot_lab.policies.run_experts import RunExpert, RunExpertSource, is_trained, resolve_run_expert, run_id_of


class DatasetExists(Exception):
    pass


class GenerationStopped(Exception):
    """Raised inside create_dataset when its `stop` event is set (the trainer is shutting down)."""


# Who owns a `running` dataset: services/common/owner.py (pid, host and a token unique per process start). A claim
# from another host is stale once its lease expires: the generating process renews `heartbeat_at` at least every
# HEARTBEAT_S seconds.
_start_time = start_time
HEARTBEAT_S = 30.0
LEASE_S = 10 * HEARTBEAT_S  # a claim not renewed for this long is stale wherever its owner ran


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    expert: str | None = None  # None: the task's default (contract.default_expert: jacobian on reacher, else shipped)
    task: str = "easy"
    episodes: int = 100
    steps: int = 200
    seed: int = 0
    image_size: int = 256
    action_repeat: int = 1  # simulator steps per expert action: a run expert's own (resolve_expert sets it)

    def __post_init__(self):
        validate_name(self.name, "dataset name")
        object.__setattr__(self, "task", canonical_task(self.task))  # reacher-easy -> easy
        if self.expert is None:
            object.__setattr__(self, "expert", default_expert(self.task))
        validate_expert(self.expert)  # a scripted expert's name, shipped or run:RUN_ID
        if not is_trained(self.expert):
            check_expert_task(self.expert, self.task)  # jacobian on walker: use shipped or run:RUN_ID
        check_action_repeat(self.steps if self.steps > 0 else 1, self.action_repeat)
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
    success: bool | None  # None: the task defines no success
    ret: float
    table: pa.Table  # one row per agent step: STEPS_SCHEMA (reacher) or store.task_steps_schema


def steps_schema_of(task: str) -> pa.Schema:
    """The store layout of a task's steps: reacher's STEPS_SCHEMA, or its action/state widths (tasks.py)."""
    spec = task_spec(task)
    return STEPS_SCHEMA if spec.is_reacher else task_steps_schema(spec.action_dim, spec.state_dim)


def episode_success_of(task: str, rewards: np.ndarray, action_repeat: int = 1) -> bool | None:
    """env.episode_success on stored rewards; None where the task defines no success. With an action repeat n each
    stored reward sums n simulator rewards (each <= 1), so the last ceil(10 / n) rows must each sum to n: the
    fingertip in the target on each of the last ceil(10 / n) * n simulator steps (n = 1: the definition itself)."""
    if not task_spec(task).has_success:
        return None
    r = np.asarray(rewards, np.float64)
    k = -(-SUCCESS_LAST_STEPS // action_repeat)
    return bool(r.size >= k and np.all(r[-k:] >= action_repeat))


# ----------------------------------------------------------------------------------------------------------------
# One episode (runs in a worker)
# ----------------------------------------------------------------------------------------------------------------

# One env and one run expert kept per thread (an EGL context is current on one thread only: a cache shared by the
# trainer's job threads made a single-worker dataset fail on whichever thread did not create the env). Worker
# processes have one thread, so this is one per worker there.
_LOCAL = threading.local()


def _thread_cache(name: str) -> dict:
    cache = getattr(_LOCAL, name, None)
    if cache is None:
        cache = {}
        setattr(_LOCAL, name, cache)
    return cache


def close_thread_envs() -> None:
    """Close this thread's cached env (its OpenGL context is current on this thread only)."""
    envs = _thread_cache("envs")
    for env in envs.values():
        close = getattr(env, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # freeing is best effort: the dataset is already written
                pass
    envs.clear()


def _expert_for(spec: DatasetSpec, source: RunExpertSource | None) -> Expert:
    if not is_trained(spec.expert):
        return make_expert(spec.expert, spec.task)
    if source is None:
        raise ValueError(f"expert {spec.expert} needs its run (generate through create_dataset with the runs dir)")
    experts = _thread_cache("experts")
    if source not in experts:  # one checkpoint load per worker (and thread), not per episode
        experts.clear()
        experts[source] = RunExpert(source)
    return experts[source]


def generate_episode(spec: DatasetSpec, episode: int, source: RunExpertSource | None = None) -> EpisodeRecord:
    """Roll out the expert for one episode; the frame stored at step t is the one the expert acted on.
    `source` names a run expert's run (spec.expert "run:RUN_ID"); scripted experts need none."""
    key = (spec.task, spec.steps, spec.image_size, spec.action_repeat)
    envs = _thread_cache("envs")
    if key not in envs:
        envs.clear()
        envs[key] = make(
            spec.task, episode_steps=spec.steps, image_size=spec.image_size, window=0, action_repeat=spec.action_repeat
        )
    env = envs[key]
    expert = _expert_for(spec, source)
    schema = steps_schema_of(spec.task)
    reacher = schema == STEPS_SCHEMA
    state = task_spec(spec.task).state
    seed = train_episode_seed(spec.seed, episode)
    ts = env.reset(seed)
    expert.reset(seed)
    cols: dict[str, list] = {k: [] for k in schema.names}
    t = 0
    while not ts.last():
        action = expert.act(env.physics, ts)
        obs = ts.observation
        if reacher:
            finger, target = finger_target_xy(env.physics)
        nxt = env.step(action)
        cols["step"].append(t)
        cols["frame"].append(encode_png(ts.frame) if ts.frame is not None else b"")
        cols["action"].append(action.astype(np.float32))
        cols["reward"].append(nxt.reward)  # the reward earned by this step's action (summed over an action repeat)
        if reacher:
            cols["position"].append(obs["position"])
            cols["to_target"].append(obs["to_target"])
            cols["velocity"].append(obs["velocity"])
            cols["finger_xy"].append(finger)
            cols["target_xy"].append(target)
        else:
            cols["state"].append(state(obs))  # (S,) float32: TaskSpec.state
        ts, t = nxt, t + 1
    n = len(cols["step"])
    cols["dataset"] = [spec.name] * n
    cols["episode"] = [episode] * n
    cols["seed"] = [seed] * n
    arrays = {}
    for field in schema:
        values = cols[field.name]
        if pa.types.is_fixed_size_list(field.type):
            flat = pa.array(np.asarray(values, dtype=np.float32).reshape(-1))
            arrays[field.name] = pa.FixedSizeListArray.from_arrays(flat, field.type.list_size)
        else:
            arrays[field.name] = pa.array(values, type=field.type)
    table = pa.table(arrays, schema=schema)
    rewards = np.asarray(cols["reward"])
    success = episode_success_of(spec.task, rewards, spec.action_repeat)
    return EpisodeRecord(episode, seed, success, float(rewards.sum()), table)


def resolve_expert(spec: DatasetSpec, runs=None) -> tuple[DatasetSpec, RunExpertSource | None]:
    """A run expert's spec (its action repeat set to the run's) and source; a scripted expert's spec as given.
    `runs` is the RunStore holding the run; experts.ExpertRefused (a ValueError with an HTTP status) when the run
    cannot demonstrate this dataset's task."""
    run_id = run_id_of(spec.expert)
    if spec.expert == SHIPPED_EXPERT:  # the package's state-SAC expert for the task (ExpertRefused 422 if none)
        from vjepa_robot_lab.policies.shipped_experts import shipped_source

        source = shipped_source(spec.task)
    elif run_id is None:
        return spec, None
    elif runs is None:
        raise ValueError(f"expert {spec.expert} names a run: give the runs directory that holds it (--runs-dir)")
    else:
        source = resolve_run_expert(runs, run_id, spec.task)
    try:
        check_action_repeat(spec.steps, source.action_repeat)
    except ValueError as exc:
        raise ValueError(
            f"expert {source.expert_name} acts every {source.action_repeat} simulator steps: {exc}"
        ) from None
    return replace(spec, action_repeat=source.action_repeat), source


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
    expert_source: RunExpertSource | None = None,
) -> dict:
    """Generate `spec` into the store and return its metadata. Refuses an existing name unless overwrite/resume.

    `generate(spec, episodes)` yields batches of EpisodeRecords in episode order (default: `workers` local
    processes, one episode per batch; the Modal app passes its shard map). Progress is recorded in the dataset's
    metadata every `record_every` episodes (default a tenth of the dataset), and at least every HEARTBEAT_S
    seconds (the claim's lease), and `commit()` runs after each record (the Modal app commits its Volume there).
    `stop` (a threading.Event) is checked between batches: once set, generation ends `failed` with an error
    saying it was stopped, never `ready` with missing episodes; `resume=True` completes it later.
    `expert_source` (resolve_expert) is the run behind a `run:RUN_ID` or `shipped` expert; the meta records it as
    `expert_run`.
    """
    store = store if isinstance(store, Store) else Store(store)
    if is_trained(spec.expert) and expert_source is None:
        raise ValueError(f"expert {spec.expert} needs its checkpoint: resolve_expert(spec, runs) first")
    if expert_source is not None:
        extra_meta = {**(extra_meta or {}), "expert_run": expert_source.lineage()}
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
    generate = generate or (lambda s, eps: ([rec] for rec in _generate(s, eps, workers, expert_source, stop)))
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

    meta.update(summarise(store, spec.name, spec.task, spec.action_repeat))
    meta["generation_s"] = round(time.perf_counter() - t0, 2)
    meta.pop("error", None)
    if meta["episodes_done"] != spec.episodes:
        meta["error"] = f"only {meta['episodes_done']} of {spec.episodes} episodes present"
        record("failed")
        raise RuntimeError(meta["error"])
    record("ready")
    store.compact_steps(spec.name)
    return store.get_dataset_meta(spec.name)


def claim_dataset(spec: DatasetSpec, store: Store, *, overwrite: bool = False, resume: bool = False) -> dict:
    """Record `spec` as `running` (owned by this process) before its generation starts, so a service can answer
    at once and a reader finds the dataset; `create_dataset(spec, store, resume=True)` then fills it in.
    Raises DatasetExists unless overwrite (an overwrite drops the old dataset now) or resume (an interrupted or
    failed dataset of the same arguments keeps its episodes); ValueError when resume finds other arguments."""
    existing = _make_room(store, spec, overwrite=overwrite, resume=resume)
    meta = _running_meta(spec, existing)
    store.put_dataset_meta(spec.name, "running", meta)
    return meta


_SPEC_DEFAULTS = {f.name: f.default for f in fields(DatasetSpec)}


def _make_room(store: Store, spec: DatasetSpec, *, overwrite: bool, resume: bool) -> dict | None:
    """The existing dataset's metadata if it is to be resumed; None when there is none (or it was dropped)."""
    try:
        existing = store.get_dataset_meta(spec.name)
    except DatasetNotFound:
        existing = None
    if existing is None and not store.has_steps(spec.name):
        return None
    if (overwrite or resume) and existing is not None and live_elsewhere(existing):
        raise DatasetExists(
            f"dataset {spec.name!r} is being generated right now by process {existing.get('owner_pid')} on "
            f"{existing.get('owner_host')}: wait for it to end (or stop that process) before replacing or resuming it"
        )
    if overwrite:
        store.drop_dataset(spec.name)
        return None
    if resume:
        # a field newer than the dataset (action_repeat) reads as its default
        had = {k: existing.get(k, _SPEC_DEFAULTS.get(k)) for k in asdict(spec)} if existing else None
        if had is not None and had != asdict(spec):
            raise ValueError(
                f"cannot resume dataset {spec.name!r}: it was created with different arguments "
                f"({had}); use --overwrite to replace it"
            )
        return existing
    status = existing.get("status") if existing else "partial"
    if status == "running" and stale_reason(existing):
        status = "failed: its generator is gone"  # as GET shows it (dataset_info)
    raise DatasetExists(
        f"dataset {spec.name!r} already exists ({status}): choose another name, overwrite it, or resume an "
        "interrupted one"
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


def _generate(
    spec: DatasetSpec,
    episodes: list[int],
    workers: int,
    source: RunExpertSource | None = None,
    stop: threading.Event | None = None,
):
    """Yield EpisodeRecords in episode order, from `workers` processes (in process when workers == 1); once `stop`
    is set, end at once (the caller records the stop)."""
    if workers <= 1 or len(episodes) <= 1:
        try:
            for e in episodes:
                yield generate_episode(spec, e, source)
        finally:  # free the render context on the thread that made it (a job thread may end; GC runs elsewhere)
            close_thread_envs()
        return
    # spawn, not fork: a forked EGL context is not safe to use
    ex = ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),)
    )
    finished = False
    try:
        for fut in [ex.submit(generate_episode, spec, e, source) for e in episodes]:
            while stop is not None and not fut.done():  # a stop does not wait for the episode in flight
                if stop.wait(0.2):
                    return
            yield fut.result()
        finished = True
    finally:  # drop the queued episodes; stopped, interrupted or failed early: end those in flight, not await them
        if not finished:
            for p in list((ex._processes or {}).values()):  # (Python 3.14: ex.terminate_workers())
                p.terminate()
        ex.shutdown(wait=True, cancel_futures=True)


def _init_worker(parent_pid: int) -> None:
    """Each worker owns a core: Mesa's software renderer (llvmpipe) otherwise spreads every frame over all cores,
    so N workers would run N x cores render threads. (On 2 cores one multi-threaded renderer already reaches
    38.6 frames/s of generation; two one-thread workers 49.3; bench/generate.py.) And each worker dies with the
    process that owns the pool (a SIGKILLed trainer or CLI leaves no worker, and so no resource tracker, behind):
    services/common/procs.py, the kernel's parent-death signal on Linux, a watchdog thread elsewhere."""
    from services.common.procs import die_with_parent

    os.environ.setdefault("LP_NUM_THREADS", "1")
    die_with_parent(parent_pid)


def summarise(store: Store, name: str, task: str = "easy", action_repeat: int = 1) -> dict:
    """Success rate (None where the task defines none) and mean return of the recorded episodes, from the stored
    rewards (the one definition: episode_success_of)."""
    t = store.read_steps(name, ["reward"])
    episode = t.column("episode").to_numpy()
    reward = t.column("reward").to_numpy()
    if len(episode) == 0:
        return {"success_rate": None, "mean_return": None, "episodes_done": 0}
    bounds = np.flatnonzero(np.diff(episode)) + 1
    per_ep = np.split(reward, bounds)
    return {
        "success_rate": (
            float(np.mean([episode_success_of(task, r, action_repeat) for r in per_ep]))
            if task_spec(task).has_success
            else None
        ),
        "mean_return": float(np.mean([r.sum() for r in per_ep])),
        "episodes_done": len(per_ep),
    }


def stale_reason(meta: dict, now: datetime | None = None) -> str | None:
    """Why a `running` claim is stale (its generating process is gone), or None while it may be alive.

    On the claiming host the process table decides (pid and start time); elsewhere only the lease can."""
    owner = {"pid": meta.get("owner_pid"), "host": meta.get("owner_host"), "token": meta.get("owner_token")}
    if owner["host"] != os.uname().nodename or not owner["pid"]:
        beat = meta.get("heartbeat_at") or meta.get("updated_at")
        if beat:
            age = ((now or datetime.now(timezone.utc)) - datetime.fromisoformat(beat)).total_seconds()
            if age > LEASE_S:
                return (
                    f"its generator on {meta.get('owner_host')} renewed no lease for {age:.0f} s "
                    f"(lease {LEASE_S:.0f} s)"
                )
        return None
    return owner_gone(owner)


def live_elsewhere(meta: dict) -> bool:
    """A `running` dataset whose generator is another live process (not this one: its jobs are known here)."""
    return meta.get("status") == "running" and meta.get("owner_token") != OWNER_TOKEN and stale_reason(meta) is None


def fail_stale(store: Store, include_own: bool = False) -> list[str]:
    """Record every `running` dataset whose generator is gone as `failed` (a trainer runs this at start; reads then
    agree with writes). include_own: this process's own claims too (a trainer starting has no generation yet)."""
    fixed = []
    for meta in store.list_datasets():
        if meta.get("status") != "running":
            continue
        why = "this trainer restarted" if include_own and meta.get("owner_token") == OWNER_TOKEN else stale_reason(meta)
        if why:
            error = (
                f"generation interrupted ({why}) after {meta.get('episodes_done')} episodes; "
                're-create it with resume (CLI --resume, HTTP "resume": true) to complete it'
            )
            rest = {k: v for k, v in meta.items() if k not in ("name", "status", "updated_at")}
            store.put_dataset_meta(meta["name"], "failed", {**rest, "error": error})
            fixed.append(meta["name"])
    return fixed


def dataset_info(store: Store, name: str) -> dict:
    """Metadata with a stale `running` (its generating process is gone: stale_reason) reported as `failed`."""
    meta = store.get_dataset_meta(name)
    if meta["status"] == "running":
        why = stale_reason(meta)
        if why:
            meta["status"] = "failed"
            meta["error"] = (
                f"generation interrupted ({why}) after {meta.get('episodes_done')} episodes; "
                're-create it with resume (CLI --resume, HTTP "resume": true) to complete it'
            )
    return meta
