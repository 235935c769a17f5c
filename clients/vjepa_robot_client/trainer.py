"""Clients of the trainer service: datasets, BC and SAC runs, live evaluation, baselines.

Every POST that starts work answers 202 at once; the wait_* helpers poll until a terminal state.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ._progress import Progress
from ._transport import AsyncTransport, SyncTransport
from .contract import (
    BaselineEvalRequest,
    CreateDatasetRequest,
    DatasetInfo,
    DatasetState,
    EvalRequest,
    EvalResult,
    FeatureSource,
    HealthResponse,
    RunCreated,
    RunList,
    RunRecord,
    RunStatus,
    Task,
    TrainBCRequest,
    TrainSACRequest,
    validate_name,
    validate_run_id,
)
from .errors import WaitTimeout

TRAINER_URL_ENV = "VJEPA_ROBOT_TRAINER_URL"
DEFAULT_TRAINER_URL = "http://127.0.0.1:8002"
TERMINAL = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.interrupted})
DATASET_TERMINAL = frozenset({DatasetState.ready, DatasetState.failed})

# (done, total) key pairs a run's metrics may carry, most specific first; totals fall back to the run's config.
_PROGRESS_KEYS = (("env_steps", "total_steps"), ("step", "total_steps"), ("global_step", "total_steps"),
                  ("epoch", "epochs"))


def run_progress(record: RunRecord) -> tuple[float | None, float | None]:
    """How far a run is, from its metrics (and config for the total); (None, None) when unknown."""
    m, c = record.metrics or {}, record.config or {}
    if isinstance(m.get("progress"), (int, float)):
        return float(m["progress"]) * 100.0, 100.0
    for done_key, total_key in _PROGRESS_KEYS:
        done = m.get(done_key)
        total = m.get(total_key, c.get(total_key))
        if isinstance(done, (int, float)):
            return done, total if isinstance(total, (int, float)) else None
    return None, None


def _dataset_request(name: str, expert: str, task: str, episodes: int, steps: int, seed: int, image_size: int,
                     workers: int, overwrite: bool) -> dict[str, Any]:
    return CreateDatasetRequest(name=name, expert=expert, task=task, episodes=episodes, steps=steps, seed=seed,
                                image_size=image_size, workers=workers, overwrite=overwrite).model_dump(mode="json")


def _eval_request(episodes: int, task: str, steps: int, seed: int, parallel_envs: int, image_size: int,
                  gif_episodes: int, policy: str | None = None) -> dict[str, Any]:
    kw = dict(episodes=episodes, task=task, steps=steps, seed=seed, parallel_envs=parallel_envs,
              image_size=image_size, gif_episodes=gif_episodes)
    model = EvalRequest(**kw) if policy is None else BaselineEvalRequest(policy=policy, **kw)
    return model.model_dump(mode="json")


def _name(name: str) -> str:
    return validate_name(name, "dataset name")


def _eval_done(result: EvalResult, eval_id: int | None) -> bool:
    return result.status in TERMINAL and (eval_id is None or result.eval_id is None or result.eval_id >= eval_id)


class _Waiter:
    """Deadline and progress bookkeeping shared by the sync and async wait loops."""

    def __init__(self, what: str, timeout: float | None, progress: bool) -> None:
        self.what = what
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.bar = Progress(what, enabled=progress)

    def check(self, state: str) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.bar.__exit__()
            raise WaitTimeout(f"{self.what}: still {state} after {self.timeout} s (it keeps going on the service)")


class TrainerClient(SyncTransport):
    """Synchronous client of the trainer service.

    >>> tr = TrainerClient("http://127.0.0.1:8002")
    >>> tr.wait_dataset(tr.create_dataset("jacobian-easy-30", episodes=30).name)
    >>> run = tr.wait(tr.train_bc("jacobian-easy-30", features="state"))
    >>> tr.wait_eval(tr.evaluate(run.run_id, episodes=50).run_id).success_rate
    """

    env_url = TRAINER_URL_ENV
    default_url = DEFAULT_TRAINER_URL

    def health(self) -> HealthResponse:
        return HealthResponse.model_validate(self.request("GET", "/healthz").json())

    # datasets ------------------------------------------------------------------------------------------------------
    def create_dataset(self, name: str, expert: str = "jacobian", task: str | Task = "easy", episodes: int = 100,
                       steps: int = 200, seed: int = 0, image_size: int = 256, workers: int = 2,
                       overwrite: bool = False) -> DatasetInfo:
        """Start generating expert episodes into the store; returns the dataset's status (202, running)."""
        body = _dataset_request(name, expert, task, episodes, steps, seed, image_size, workers, overwrite)
        return DatasetInfo.model_validate(self.request("POST", "/datasets", json=body).json())

    def dataset(self, name: str) -> DatasetInfo:
        return DatasetInfo.model_validate(self.request("GET", f"/datasets/{_name(name)}").json())

    def wait_dataset(self, name: str, *, progress: bool = True, timeout: float | None = None,
                     poll_interval: float = 2.0) -> DatasetInfo:
        """Poll until the dataset is ready or failed."""
        w = _Waiter(f"dataset {name}", timeout, progress)
        with w.bar:
            while True:
                info = self.dataset(name)
                w.bar.update(info.episodes_done, info.episodes or None, info.status.value)
                if info.status in DATASET_TERMINAL:
                    return info
                w.check(info.status.value)
                time.sleep(poll_interval)

    # runs ----------------------------------------------------------------------------------------------------------
    def train_bc(self, dataset: str, features: str | FeatureSource = "vjepa2", epochs: int = 100, **kwargs: Any) -> str:
        """Start behaviour cloning on a dataset; returns the run id. kwargs: TrainBCRequest fields (lr, batch_size, ...)."""
        body = TrainBCRequest(dataset=dataset, features=features, epochs=epochs, **kwargs).model_dump(mode="json")
        return RunCreated.model_validate(self.request("POST", "/train/bc", json=body).json()).run_id

    def train_sac(self, features: str | FeatureSource = "state", task: str | Task = "easy", total_steps: int = 100_000,
                  **kwargs: Any) -> str:
        """Start SAC in parallel envs; returns the run id. kwargs: TrainSACRequest fields (parallel_envs, ...)."""
        body = TrainSACRequest(features=features, task=task, total_steps=total_steps, **kwargs).model_dump(mode="json")
        return RunCreated.model_validate(self.request("POST", "/train/sac", json=body).json()).run_id

    def run(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate(self.request("GET", f"/runs/{validate_run_id(run_id)}").json())

    def runs(self) -> list[RunRecord]:
        return RunList.model_validate(self.request("GET", "/runs").json()).runs

    def resume(self, run_id: str) -> RunRecord:
        """Continue an interrupted run from its last checkpoint."""
        return RunRecord.model_validate(self.request("POST", f"/runs/{validate_run_id(run_id)}/resume").json())

    def wait(self, run_id: str, *, progress: bool = True, timeout: float | None = None,
             poll_interval: float = 2.0) -> RunRecord:
        """Poll until the run succeeded, failed or was interrupted; returns its record (check .status)."""
        w = _Waiter(f"run {run_id}", timeout, progress)
        with w.bar:
            while True:
                record = self.run(run_id)
                w.bar.update(*run_progress(record), record.status.value)
                if record.status in TERMINAL:
                    return record
                w.check(record.status.value)
                time.sleep(poll_interval)

    # evaluation ----------------------------------------------------------------------------------------------------
    def evaluate(self, run_id: str, episodes: int = 100, task: str | Task = "easy", steps: int = 200,
                 seed: int = 0, parallel_envs: int = 8, image_size: int = 256,
                 gif_episodes: int = 2) -> EvalResult:
        """Start live rollouts of a trained policy; returns the queued EvalResult."""
        body = _eval_request(episodes, task, steps, seed, parallel_envs, image_size, gif_episodes)
        return EvalResult.model_validate(self.request("POST", f"/eval/{validate_run_id(run_id)}", json=body).json())

    def eval_result(self, run_id: str) -> EvalResult:
        """The run's latest evaluation."""
        return EvalResult.model_validate(self.request("GET", f"/eval/{validate_run_id(run_id)}").json())

    def wait_eval(self, run_id: str, eval_id: int | None = None, *, progress: bool = True,
                  timeout: float | None = None, poll_interval: float = 2.0) -> EvalResult:
        """Poll until the run's latest evaluation (at least `eval_id`, if given) is terminal."""
        w = _Waiter(f"eval {run_id}", timeout, progress)
        with w.bar:
            while True:
                result = self.eval_result(run_id)
                w.bar.update(result.episodes_done or len(result.episodes), result.episodes_total, result.status.value)
                if _eval_done(result, eval_id):
                    return result
                w.check(result.status.value)
                time.sleep(poll_interval)

    def evaluate_baseline(self, policy: str = "jacobian", episodes: int = 100, task: str | Task = "easy",
                          steps: int = 200, seed: int = 0, parallel_envs: int = 8, image_size: int = 256,
                          gif_episodes: int = 0) -> str:
        """Evaluate an expert or random policy as a run of kind 'baseline'; returns its run id."""
        body = _eval_request(episodes, task, steps, seed, parallel_envs, image_size, gif_episodes, policy=policy)
        return RunCreated.model_validate(self.request("POST", "/eval/baseline", json=body).json()).run_id


class AsyncTrainerClient(AsyncTransport):
    """The asyncio twin of TrainerClient: the same methods, awaited."""

    env_url = TRAINER_URL_ENV
    default_url = DEFAULT_TRAINER_URL

    async def health(self) -> HealthResponse:
        return HealthResponse.model_validate((await self.request("GET", "/healthz")).json())

    async def create_dataset(self, name: str, expert: str = "jacobian", task: str | Task = "easy", episodes: int = 100,
                             steps: int = 200, seed: int = 0, image_size: int = 256, workers: int = 2,
                             overwrite: bool = False) -> DatasetInfo:
        body = _dataset_request(name, expert, task, episodes, steps, seed, image_size, workers, overwrite)
        return DatasetInfo.model_validate((await self.request("POST", "/datasets", json=body)).json())

    async def dataset(self, name: str) -> DatasetInfo:
        return DatasetInfo.model_validate((await self.request("GET", f"/datasets/{_name(name)}")).json())

    async def wait_dataset(self, name: str, *, progress: bool = True, timeout: float | None = None,
                           poll_interval: float = 2.0) -> DatasetInfo:
        w = _Waiter(f"dataset {name}", timeout, progress)
        with w.bar:
            while True:
                info = await self.dataset(name)
                w.bar.update(info.episodes_done, info.episodes or None, info.status.value)
                if info.status in DATASET_TERMINAL:
                    return info
                w.check(info.status.value)
                await asyncio.sleep(poll_interval)

    async def train_bc(self, dataset: str, features: str | FeatureSource = "vjepa2", epochs: int = 100,
                       **kwargs: Any) -> str:
        body = TrainBCRequest(dataset=dataset, features=features, epochs=epochs, **kwargs).model_dump(mode="json")
        return RunCreated.model_validate((await self.request("POST", "/train/bc", json=body)).json()).run_id

    async def train_sac(self, features: str | FeatureSource = "state", task: str | Task = "easy",
                        total_steps: int = 100_000, **kwargs: Any) -> str:
        body = TrainSACRequest(features=features, task=task, total_steps=total_steps, **kwargs).model_dump(mode="json")
        return RunCreated.model_validate((await self.request("POST", "/train/sac", json=body)).json()).run_id

    async def run(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate((await self.request("GET", f"/runs/{validate_run_id(run_id)}")).json())

    async def runs(self) -> list[RunRecord]:
        return RunList.model_validate((await self.request("GET", "/runs")).json()).runs

    async def resume(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate((await self.request("POST", f"/runs/{validate_run_id(run_id)}/resume")).json())

    async def wait(self, run_id: str, *, progress: bool = True, timeout: float | None = None,
                   poll_interval: float = 2.0) -> RunRecord:
        w = _Waiter(f"run {run_id}", timeout, progress)
        with w.bar:
            while True:
                record = await self.run(run_id)
                w.bar.update(*run_progress(record), record.status.value)
                if record.status in TERMINAL:
                    return record
                w.check(record.status.value)
                await asyncio.sleep(poll_interval)

    async def evaluate(self, run_id: str, episodes: int = 100, task: str | Task = "easy", steps: int = 200,
                       seed: int = 0, parallel_envs: int = 8, image_size: int = 256,
                       gif_episodes: int = 2) -> EvalResult:
        body = _eval_request(episodes, task, steps, seed, parallel_envs, image_size, gif_episodes)
        return EvalResult.model_validate((await self.request("POST", f"/eval/{validate_run_id(run_id)}", json=body)).json())

    async def eval_result(self, run_id: str) -> EvalResult:
        return EvalResult.model_validate((await self.request("GET", f"/eval/{validate_run_id(run_id)}")).json())

    async def wait_eval(self, run_id: str, eval_id: int | None = None, *, progress: bool = True,
                        timeout: float | None = None, poll_interval: float = 2.0) -> EvalResult:
        w = _Waiter(f"eval {run_id}", timeout, progress)
        with w.bar:
            while True:
                result = await self.eval_result(run_id)
                w.bar.update(result.episodes_done or len(result.episodes), result.episodes_total, result.status.value)
                if _eval_done(result, eval_id):
                    return result
                w.check(result.status.value)
                await asyncio.sleep(poll_interval)

    async def evaluate_baseline(self, policy: str = "jacobian", episodes: int = 100, task: str | Task = "easy",
                                steps: int = 200, seed: int = 0, parallel_envs: int = 8,
                                image_size: int = 256, gif_episodes: int = 0) -> str:
        body = _eval_request(episodes, task, steps, seed, parallel_envs, image_size, gif_episodes, policy=policy)
        return RunCreated.model_validate((await self.request("POST", "/eval/baseline", json=body)).json()).run_id
