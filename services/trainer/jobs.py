"""The trainer's work, as plain functions the routes (and the CLI, and tests) call.

Each job runs in a background thread of the trainer process and always ends its run in a terminal state:
`succeeded`, `failed` (with the error), or `interrupted` (the trainer stopped it; resume continues it).
"""

from __future__ import annotations

import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from services.common.store import Store

from .runs import RunHandle, RunStore

log = logging.getLogger("vjepa_robot.trainer")


class JobStopped(Exception):
    """Raised inside a job when the trainer asked it to stop (shutdown): the run ends `interrupted`."""


@dataclass
class TrainerContext:
    store: Store
    runs: RunStore
    encoder_url: str | None
    token: str | None = None

    def features(self, name: str):
        from .features import make_feature_source

        return make_feature_source(name, encoder_url=self.encoder_url, token=self.token)


class JobRunner:
    """A small thread pool; every submitted job is wrapped so that its run can never stay `running`."""

    def __init__(self, workers: int = 2):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, key: str, fn: Callable[[], Any], on_error: Callable[[BaseException], None]) -> None:
        def wrapped():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001  the job must record every failure, then the thread ends
                log.error("job %s failed: %s\n%s", key, exc, traceback.format_exc())
                try:
                    on_error(exc)
                except Exception:  # pragma: no cover
                    log.exception("could not record the failure of job %s", key)
            finally:
                with self._lock:
                    self._active.discard(key)

        with self._lock:
            self._active.add(key)
        self.pool.submit(wrapped)

    def active(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def shutdown(self, runs: RunStore) -> None:
        for key in self.active():
            kind, _, rest = key.partition(":")
            if kind in ("run", "eval"):
                runs.stop_event(rest.split(":")[0]).set()
        self.pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------------------------------------
# Jobs
# ----------------------------------------------------------------------------------------------------------------


def fail_run(handle: RunHandle):
    def on_error(exc: BaseException):
        status = "interrupted" if isinstance(exc, JobStopped) else "failed"
        handle.update(status=status, error=f"{type(exc).__name__}: {exc}")

    return on_error


def run_bc(ctx: TrainerContext, handle: RunHandle, progress: bool = False) -> None:
    from vjepa_robot_client.contract import TrainBCRequest

    from .bc import train_bc

    cfg = TrainBCRequest(**handle.record["config"])
    handle.update(status="running")
    features = ctx.features(cfg.features.value)
    try:
        metrics = train_bc(cfg, handle, features, ctx.store, progress=progress)
        metrics["features_lineage"] = features.lineage()  # which encoder (if any) evaluation must match
    finally:
        features.close()
    if handle.stop_requested():
        raise JobStopped("the trainer was stopped during training")
    handle.update(status="succeeded", metrics=metrics)


def run_sac(ctx: TrainerContext, handle: RunHandle, resume: bool = False) -> None:
    from vjepa_robot_client.contract import TrainSACRequest

    from .sac import train_sac

    cfg = TrainSACRequest(**handle.record["config"])
    handle.update(status="running")
    features = ctx.features(cfg.features.value)
    try:
        metrics = train_sac(cfg, handle, features, resume=resume)
        metrics["features_lineage"] = features.lineage()
    finally:
        features.close()
    if handle.stop_requested():
        raise JobStopped("the trainer was stopped during training")
    handle.update(status="succeeded", metrics=metrics)


def load_policy(ctx: TrainerContext, record: dict):
    """The Policy that evaluates a run: a trained network on its feature source, or a baseline."""
    from .evaluate import ExpertPolicy, FeaturePolicy

    run_dir = ctx.runs.path(record["run_id"])
    kind = record["kind"]
    if kind == "baseline":
        return ExpertPolicy(record["config"]["policy"]), None
    if kind == "bc":
        from .bc import load_bc_policy

        fn = load_bc_policy(run_dir)
    elif kind == "sac":
        from .sac import policy_from_checkpoint

        fn = policy_from_checkpoint(run_dir)
    else:  # pragma: no cover
        raise ValueError(f"cannot evaluate a run of kind {kind!r}")
    features = ctx.features(record["config"]["features"])
    want = record.get("metrics", {}).get("features_lineage", {}).get("encoder_id")
    have = getattr(features, "encoder_id", None)
    if want and have and want != have:
        features.close()
        raise ValueError(f"run {record['run_id']} was trained on encoder {want} but the encoder service now serves "
                         f"{have}: start the encoder with the same model, revision and dtype")
    return FeaturePolicy(fn, features), features


def run_eval(ctx: TrainerContext, handle: RunHandle, eval_id: int, request: dict) -> None:
    from .evaluate import evaluate

    handle.update_evaluation(eval_id, status="running")
    policy, features = load_policy(ctx, handle.record)
    gif = Path(handle.dir) / f"eval{eval_id}.gif"

    def progress(done: int, total: int):
        handle.update_evaluation(eval_id, episodes_done=done, episodes_total=total)
        if handle.stop_requested():
            raise JobStopped("the trainer was stopped during this evaluation")

    try:
        result = evaluate(policy, task=request["task"], episodes=request["episodes"], steps=request["steps"],
                          seed=request["seed"], parallel_envs=request["parallel_envs"],
                          image_size=request.get("image_size", 256), gif_episodes=request.get("gif_episodes", 0),
                          gif_path=gif, on_progress=progress,
                          action_repeat=int(handle.record["config"].get("action_repeat", 1)))
    finally:
        if features is not None:
            features.close()
    handle.update_evaluation(eval_id, status="succeeded", **result)
    if handle.record["kind"] == "baseline":
        handle.update(status="succeeded", metrics={"success_rate": result["success_rate"]})


def eval_error_handler(handle: RunHandle, eval_id: int):
    def on_error(exc: BaseException):
        handle.update_evaluation(eval_id, status="interrupted" if isinstance(exc, JobStopped) else "failed",
                                 error=f"{type(exc).__name__}: {exc}")
        if handle.record["kind"] == "baseline":
            handle.update(status="failed", error=f"{type(exc).__name__}: {exc}")

    return on_error

