"""Clients of the trainer service: datasets, BC and SAC runs, live evaluation, baselines.

Every POST that starts work answers 202 at once; the wait_* helpers poll until a terminal state.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ._progress import Progress
from ._transport import AsyncTransport, SyncTransport
from ._urls import default_trainer_url
from .contract import (
    DEFAULT_GRID_SIZE,
    BakeoffList,
    BakeoffRecord,
    BakeoffRequest,
    BaselineEvalRequest,
    CreateDatasetRequest,
    DatasetInfo,
    DatasetList,
    DatasetState,
    EvalRequest,
    EvalResult,
    FeatureSource,
    HealthResponse,
    Readout,
    RunCreated,
    RunList,
    RunRecord,
    RunStatus,
    StudyList,
    StudyRecord,
    Task,
    TrainBCRequest,
    TrainerInfo,
    TrainSACRequest,
    validate_name,
    validate_run_id,
)
from .errors import WaitTimeout

TRAINER_URL_ENV = "VJEPA_ROBOT_TRAINER_URL"
DEFAULT_TRAINER_URL = "http://127.0.0.1:8002"
TERMINAL = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.interrupted})
DATASET_TERMINAL = frozenset({DatasetState.ready, DatasetState.failed})

# (done, total) key pairs the trainers write into a run's metrics (SACMetrics, BCMetrics); totals fall back to
# the run's config.
_PROGRESS_KEYS = (("env_steps", "total_steps"), ("epoch", "epochs"))


def run_progress(record: RunRecord) -> tuple[float | None, float | None]:
    """How far a run is, from its metrics (and config for the total); (None, None) when unknown."""
    m, c = record.metrics, record.config
    for done_key, total_key in _PROGRESS_KEYS:
        done = m.get(done_key)
        total = m.get(total_key, c.get(total_key))
        if isinstance(done, (int, float)):
            return done, total if isinstance(total, (int, float)) else None
    return None, None


def _dataset_request(
    name: str,
    expert: str,
    task: str,
    episodes: int,
    steps: int,
    seed: int,
    image_size: int,
    workers: int,
    overwrite: bool,
) -> dict[str, Any]:
    return CreateDatasetRequest(
        name=name,
        expert=expert,
        task=task,
        episodes=episodes,
        steps=steps,
        seed=seed,
        image_size=image_size,
        workers=workers,
        overwrite=overwrite,
    ).model_dump(mode="json")


def _readout_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The default readout is left out of the body, so a trainer from before readouts still takes the request."""
    if body.get("readout") == "mean" and body.get("grid_size") == DEFAULT_GRID_SIZE:
        body = {k: v for k, v in body.items() if k not in ("readout", "grid_size")}
    return body


def _run_unit(record: RunRecord) -> str:
    """What a run's progress counts: SAC simulator steps, BC epochs."""
    return "step" if record.kind == "sac" else "epoch"


def _eval_request(policy: str | None = None, **given: Any) -> dict[str, Any]:
    """Only the fields the caller gave: EvalRequest holds the defaults (image_size: the run's own frame size)."""
    kw = {k: v for k, v in given.items() if v is not None}
    model = EvalRequest(**kw) if policy is None else BaselineEvalRequest(policy=policy, **kw)
    return model.model_dump(mode="json", exclude_unset=True)


def _created(body: dict[str, Any]) -> str:
    """A run id (one seed) or a study id (seeds / n_seeds given)."""
    created = RunCreated.model_validate(body)
    return created.study_id or created.run_id


def _study_done(study: StudyRecord, with_eval: bool) -> bool:
    if study.status not in TERMINAL:
        return False
    if not with_eval:
        return True
    return all(r.eval_status in TERMINAL for r in study.runs if r.status == RunStatus.succeeded)


def _study_progress(study: StudyRecord) -> tuple[int, int]:
    return sum(r.status in TERMINAL for r in study.runs), len(study.runs)


def _name(name: str) -> str:
    return validate_name(name, "dataset name")


def _eval_done(result: EvalResult, eval_id: int | None) -> bool:
    return result.status in TERMINAL and (eval_id is None or result.eval_id is None or result.eval_id >= eval_id)


class _Waiter:
    """Deadline and progress bookkeeping shared by the sync and async wait loops."""

    def __init__(self, what: str, timeout: float | None, progress: bool, unit: str = "it") -> None:
        self.what = what
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.bar = Progress(what, enabled=progress, unit=unit)

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
    default_url = property(
        lambda self: default_trainer_url()
    )  # DEFAULT_TRAINER_URL unless the port variables say otherwise

    def health(self) -> HealthResponse:
        return HealthResponse.model_validate(self.request("GET", "/healthz").json())

    # datasets ------------------------------------------------------------------------------------------------------
    def create_dataset(
        self,
        name: str,
        expert: str = "jacobian",
        task: str | Task = "easy",
        episodes: int = 100,
        steps: int = 200,
        seed: int = 0,
        image_size: int = 256,
        workers: int = 2,
        overwrite: bool = False,
    ) -> DatasetInfo:
        """Start generating expert episodes into the store; returns the dataset's status (202, running)."""
        body = _dataset_request(name, expert, task, episodes, steps, seed, image_size, workers, overwrite)
        return DatasetInfo.model_validate(self.request("POST", "/datasets", json=body).json())

    def dataset(self, name: str) -> DatasetInfo:
        return DatasetInfo.model_validate(self.request("GET", f"/datasets/{_name(name)}").json())

    def wait_dataset(
        self, name: str, *, progress: bool = True, timeout: float | None = None, poll_interval: float = 2.0
    ) -> DatasetInfo:
        """Poll until the dataset is ready or failed."""
        w = _Waiter(f"dataset {name}", timeout, progress, unit="episode")
        with w.bar:
            while True:
                info = self.dataset(name)
                w.bar.update(info.episodes_done, info.episodes or None, info.status.value)
                if info.status in DATASET_TERMINAL:
                    return info
                w.check(info.status.value)
                time.sleep(poll_interval)

    # runs ----------------------------------------------------------------------------------------------------------
    def train_bc(
        self,
        dataset: str,
        features: str | FeatureSource = "vjepa2",
        epochs: int | None = None,
        *,
        readout: str | Readout | None = None,
        grid_size: int | None = None,
        **kwargs: Any,
    ) -> str:
        """Start behaviour cloning on a dataset; returns the run id, or with `seeds=[..]` / `n_seeds=` the study id
        (one run per seed: get_study, wait_study). readout: mean | attentive (grid_size x grid_size token grid) |
        flare. kwargs: TrainBCRequest fields (lr, batch_size, seeds, protocol="cortexbench", ...). Only the fields
        given are sent: the trainer's defaults (or the protocol's) fill the rest."""
        given = {"epochs": epochs, "readout": readout, "grid_size": grid_size, **kwargs}
        body = TrainBCRequest(
            dataset=dataset, features=features, **{k: v for k, v in given.items() if v is not None}
        ).model_dump(mode="json", exclude_none=True, exclude_unset=True)
        body = _readout_fields(body)
        return _created(self.request("POST", "/train/bc", json=body).json())

    def train_sac(
        self,
        features: str | FeatureSource = "state",
        task: str | Task = "easy",
        total_steps: int = 100_000,
        *,
        readout: str | Readout = "mean",
        grid_size: int = DEFAULT_GRID_SIZE,
        **kwargs: Any,
    ) -> str:
        """Start SAC in parallel envs; returns the run id, or the study id with seeds / n_seeds (as train_bc).
        readout as train_bc. kwargs: TrainSACRequest fields (parallel_envs, seeds, ...)."""
        body = TrainSACRequest(
            features=features, task=task, total_steps=total_steps, readout=readout, grid_size=grid_size, **kwargs
        ).model_dump(mode="json", exclude_none=True)
        body = _readout_fields(body)
        return _created(self.request("POST", "/train/sac", json=body).json())

    def run(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate(self.request("GET", f"/runs/{validate_run_id(run_id)}").json())

    def runs(self) -> list[RunRecord]:
        return RunList.model_validate(self.request("GET", "/runs").json()).runs

    def resume(self, run_id: str) -> RunRecord:
        """Continue an interrupted run from its last checkpoint."""
        return RunRecord.model_validate(self.request("POST", f"/runs/{validate_run_id(run_id)}/resume").json())

    def wait(
        self, run_id: str, *, progress: bool = True, timeout: float | None = None, poll_interval: float = 2.0
    ) -> RunRecord:
        """Poll until the run succeeded, failed or was interrupted; returns its record (check .status)."""
        w = _Waiter(f"run {run_id}", timeout, progress, unit="epoch")
        with w.bar:
            while True:
                record = self.run(run_id)
                w.bar.unit = _run_unit(record)  # known from the first record, before the bar is drawn
                w.bar.update(*run_progress(record), record.status.value)
                if record.status in TERMINAL:
                    return record
                w.check(record.status.value)
                time.sleep(poll_interval)

    def info(self) -> TrainerInfo:
        return TrainerInfo.model_validate(self.request("GET", "/info").json())

    def datasets(self) -> list[DatasetInfo]:
        return DatasetList.model_validate(self.request("GET", "/datasets").json()).datasets

    # studies (one run per seed) ------------------------------------------------------------------------------------
    def get_study(self, study_id: str) -> StudyRecord:
        """Runs, per-run status and final metric, mean and 95% t-interval across seeds."""
        return StudyRecord.model_validate(self.request("GET", f"/studies/{validate_run_id(study_id)}").json())

    def studies(self) -> list[StudyRecord]:
        return StudyList.model_validate(self.request("GET", "/studies").json()).studies

    def evaluate_study(self, study_id: str, **fields: Any) -> StudyRecord:
        """Evaluate every run of a study on the same evaluation seeds; fields: EvalRequest fields."""
        body = _eval_request(**fields)
        return StudyRecord.model_validate(
            self.request("POST", f"/studies/{validate_run_id(study_id)}/eval", json=body).json()
        )

    def wait_study(
        self,
        study_id: str,
        *,
        evaluated: bool = False,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> StudyRecord:
        """Poll until every run is terminal (and, with evaluated=True, every succeeded run's latest evaluation)."""
        w = _Waiter(f"study {study_id}", timeout, progress, unit="run")
        with w.bar:
            while True:
                study = self.get_study(study_id)
                w.bar.update(*_study_progress(study), study.status.value)
                if _study_done(study, evaluated):
                    return study
                w.check(study.status.value)
                time.sleep(poll_interval)

    # evaluation ----------------------------------------------------------------------------------------------------
    def evaluate(
        self,
        run_id: str,
        episodes: int | None = None,
        task: str | Task | None = None,
        steps: int | None = None,
        seed: int | None = None,
        parallel_envs: int | None = None,
        image_size: int | None = None,
        gif_episodes: int | None = None,
        allow_image_size_change: bool | None = None,
        targets: str | None = None,
    ) -> EvalResult:
        """Start live rollouts of a trained policy; returns the queued EvalResult. Fields left out take
        EvalRequest's defaults; image_size defaults to the run's own frame size."""
        body = _eval_request(
            episodes=episodes,
            task=task,
            steps=steps,
            seed=seed,
            parallel_envs=parallel_envs,
            image_size=image_size,
            gif_episodes=gif_episodes,
            allow_image_size_change=allow_image_size_change,
            targets=targets,  # "stratified": equal episodes near, middle and far from the base (issue 22)
        )
        return EvalResult.model_validate(self.request("POST", f"/eval/{validate_run_id(run_id)}", json=body).json())

    def eval_result(self, run_id: str, targets: str | None = None) -> EvalResult:
        """The run's latest evaluation (with `targets`: the latest one run with those targets)."""
        params = {"targets": targets} if targets else None
        return EvalResult.model_validate(self.request("GET", f"/eval/{validate_run_id(run_id)}", params=params).json())

    def wait_eval(
        self,
        run_id: str,
        eval_id: int | None = None,
        *,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> EvalResult:
        """Poll until the run's latest evaluation (at least `eval_id`, if given) is terminal."""
        w = _Waiter(f"eval {run_id}", timeout, progress, unit="episode")
        with w.bar:
            while True:
                result = self.eval_result(run_id)
                w.bar.update(result.episodes_done or len(result.episodes), result.episodes_total, result.status.value)
                if _eval_done(result, eval_id):
                    return result
                w.check(result.status.value)
                time.sleep(poll_interval)

    def evaluate_baseline(self, policy: str = "jacobian", gif_episodes: int = 0, **fields: Any) -> str:
        """Evaluate an expert or random policy as a run of kind 'baseline'; returns its run id.
        fields: EvalRequest fields (episodes, task, steps, seed, parallel_envs, image_size)."""
        body = _eval_request(policy=policy, gif_episodes=gif_episodes, **fields)
        return RunCreated.model_validate(self.request("POST", "/eval/baseline", json=body).json()).run_id

    # bake-off ------------------------------------------------------------------------------------------------------
    def bakeoff(self, encoders: list[str], **fields: Any) -> BakeoffRecord:
        """Start a bake-off: every encoder service URL x readouts x tasks x seeds as BC studies, one table and one
        figure (docs/bakeoff.md). fields: BakeoffRequest fields (tasks, experts, readouts, seeds,
        protocol="cortexbench", episodes, steps, image_size, epochs, eval_episodes, ...); only those given are sent.
        Returns the record, `queued`; wait_bakeoff(record.bakeoff_id) waits for its table."""
        body = BakeoffRequest(encoders=encoders, **fields).model_dump(mode="json", exclude_unset=True)
        return BakeoffRecord.model_validate(self.request("POST", "/bakeoff", json=body).json())

    def get_bakeoff(self, bakeoff_id: str) -> BakeoffRecord:
        return BakeoffRecord.model_validate(self.request("GET", f"/bakeoff/{validate_run_id(bakeoff_id)}").json())

    def resume_bakeoff(self, bakeoff_id: str) -> BakeoffRecord:
        """Run again only the cells of a bake-off that did not succeed (POST /bakeoff/{id}/resume); finished cells
        are kept, an unfinished one continues from its own state. Returns the record, `queued`."""
        return BakeoffRecord.model_validate(
            self.request("POST", f"/bakeoff/{validate_run_id(bakeoff_id)}/resume").json()
        )

    def bakeoffs(self) -> list[BakeoffRecord]:
        return BakeoffList.model_validate(self.request("GET", "/bakeoff").json()).bakeoffs

    def bakeoff_figure(self, bakeoff_id: str) -> bytes:
        """The bake-off's figure (PNG bytes), once it has ended."""
        return self.request("GET", f"/bakeoff/{validate_run_id(bakeoff_id)}/figure").content

    def wait_bakeoff(
        self, bakeoff_id: str, *, progress: bool = True, timeout: float | None = None, poll_interval: float = 2.0
    ) -> BakeoffRecord:
        """Poll until the bake-off has ended (succeeded, failed or interrupted); its table is record.table."""
        w = _Waiter(f"bake-off {bakeoff_id}", timeout, progress, unit="cell")
        with w.bar:
            while True:
                record = self.get_bakeoff(bakeoff_id)
                done = sum(c.status in TERMINAL for c in record.cells)
                w.bar.update(done, len(record.cells), record.status.value)
                if record.status in TERMINAL:
                    return record
                w.check(record.status.value)
                time.sleep(poll_interval)


class AsyncTrainerClient(AsyncTransport):
    """The asyncio twin of TrainerClient: the same methods, awaited."""

    env_url = TRAINER_URL_ENV
    default_url = property(
        lambda self: default_trainer_url()
    )  # DEFAULT_TRAINER_URL unless the port variables say otherwise

    async def health(self) -> HealthResponse:
        return HealthResponse.model_validate((await self.request("GET", "/healthz")).json())

    async def create_dataset(
        self,
        name: str,
        expert: str = "jacobian",
        task: str | Task = "easy",
        episodes: int = 100,
        steps: int = 200,
        seed: int = 0,
        image_size: int = 256,
        workers: int = 2,
        overwrite: bool = False,
    ) -> DatasetInfo:
        body = _dataset_request(name, expert, task, episodes, steps, seed, image_size, workers, overwrite)
        return DatasetInfo.model_validate((await self.request("POST", "/datasets", json=body)).json())

    async def dataset(self, name: str) -> DatasetInfo:
        return DatasetInfo.model_validate((await self.request("GET", f"/datasets/{_name(name)}")).json())

    async def wait_dataset(
        self, name: str, *, progress: bool = True, timeout: float | None = None, poll_interval: float = 2.0
    ) -> DatasetInfo:
        w = _Waiter(f"dataset {name}", timeout, progress, unit="episode")
        with w.bar:
            while True:
                info = await self.dataset(name)
                w.bar.update(info.episodes_done, info.episodes or None, info.status.value)
                if info.status in DATASET_TERMINAL:
                    return info
                w.check(info.status.value)
                await asyncio.sleep(poll_interval)

    async def train_bc(
        self,
        dataset: str,
        features: str | FeatureSource = "vjepa2",
        epochs: int | None = None,
        *,
        readout: str | Readout | None = None,
        grid_size: int | None = None,
        **kwargs: Any,
    ) -> str:
        given = {"epochs": epochs, "readout": readout, "grid_size": grid_size, **kwargs}  # only these are sent
        body = TrainBCRequest(
            dataset=dataset, features=features, **{k: v for k, v in given.items() if v is not None}
        ).model_dump(mode="json", exclude_none=True, exclude_unset=True)
        body = _readout_fields(body)
        return _created((await self.request("POST", "/train/bc", json=body)).json())

    async def train_sac(
        self,
        features: str | FeatureSource = "state",
        task: str | Task = "easy",
        total_steps: int = 100_000,
        *,
        readout: str | Readout = "mean",
        grid_size: int = DEFAULT_GRID_SIZE,
        **kwargs: Any,
    ) -> str:
        body = TrainSACRequest(
            features=features, task=task, total_steps=total_steps, readout=readout, grid_size=grid_size, **kwargs
        ).model_dump(mode="json", exclude_none=True)
        body = _readout_fields(body)
        return _created((await self.request("POST", "/train/sac", json=body)).json())

    async def run(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate((await self.request("GET", f"/runs/{validate_run_id(run_id)}")).json())

    async def runs(self) -> list[RunRecord]:
        return RunList.model_validate((await self.request("GET", "/runs")).json()).runs

    async def resume(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate((await self.request("POST", f"/runs/{validate_run_id(run_id)}/resume")).json())

    async def wait(
        self, run_id: str, *, progress: bool = True, timeout: float | None = None, poll_interval: float = 2.0
    ) -> RunRecord:
        w = _Waiter(f"run {run_id}", timeout, progress, unit="epoch")
        with w.bar:
            while True:
                record = await self.run(run_id)
                w.bar.unit = _run_unit(record)  # known from the first record, before the bar is drawn
                w.bar.update(*run_progress(record), record.status.value)
                if record.status in TERMINAL:
                    return record
                w.check(record.status.value)
                await asyncio.sleep(poll_interval)

    async def info(self) -> TrainerInfo:
        return TrainerInfo.model_validate((await self.request("GET", "/info")).json())

    async def datasets(self) -> list[DatasetInfo]:
        return DatasetList.model_validate((await self.request("GET", "/datasets")).json()).datasets

    async def get_study(self, study_id: str) -> StudyRecord:
        return StudyRecord.model_validate((await self.request("GET", f"/studies/{validate_run_id(study_id)}")).json())

    async def studies(self) -> list[StudyRecord]:
        return StudyList.model_validate((await self.request("GET", "/studies")).json()).studies

    async def evaluate_study(self, study_id: str, **fields: Any) -> StudyRecord:
        body = _eval_request(**fields)
        return StudyRecord.model_validate(
            (await self.request("POST", f"/studies/{validate_run_id(study_id)}/eval", json=body)).json()
        )

    async def wait_study(
        self,
        study_id: str,
        *,
        evaluated: bool = False,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> StudyRecord:
        w = _Waiter(f"study {study_id}", timeout, progress, unit="run")
        with w.bar:
            while True:
                study = await self.get_study(study_id)
                w.bar.update(*_study_progress(study), study.status.value)
                if _study_done(study, evaluated):
                    return study
                w.check(study.status.value)
                await asyncio.sleep(poll_interval)

    async def evaluate(
        self,
        run_id: str,
        episodes: int | None = None,
        task: str | Task | None = None,
        steps: int | None = None,
        seed: int | None = None,
        parallel_envs: int | None = None,
        image_size: int | None = None,
        gif_episodes: int | None = None,
        allow_image_size_change: bool | None = None,
        targets: str | None = None,
    ) -> EvalResult:
        body = _eval_request(
            episodes=episodes,
            task=task,
            steps=steps,
            seed=seed,
            parallel_envs=parallel_envs,
            image_size=image_size,
            gif_episodes=gif_episodes,
            allow_image_size_change=allow_image_size_change,
            targets=targets,  # "stratified": equal episodes near, middle and far from the base (issue 22)
        )
        return EvalResult.model_validate(
            (await self.request("POST", f"/eval/{validate_run_id(run_id)}", json=body)).json()
        )

    async def eval_result(self, run_id: str, targets: str | None = None) -> EvalResult:
        params = {"targets": targets} if targets else None
        return EvalResult.model_validate(
            (await self.request("GET", f"/eval/{validate_run_id(run_id)}", params=params)).json()
        )

    async def wait_eval(
        self,
        run_id: str,
        eval_id: int | None = None,
        *,
        progress: bool = True,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> EvalResult:
        w = _Waiter(f"eval {run_id}", timeout, progress, unit="episode")
        with w.bar:
            while True:
                result = await self.eval_result(run_id)
                w.bar.update(result.episodes_done or len(result.episodes), result.episodes_total, result.status.value)
                if _eval_done(result, eval_id):
                    return result
                w.check(result.status.value)
                await asyncio.sleep(poll_interval)

    async def evaluate_baseline(self, policy: str = "jacobian", gif_episodes: int = 0, **fields: Any) -> str:
        body = _eval_request(policy=policy, gif_episodes=gif_episodes, **fields)
        return RunCreated.model_validate((await self.request("POST", "/eval/baseline", json=body)).json()).run_id

    # bake-off ------------------------------------------------------------------------------------------------------
    async def bakeoff(self, encoders: list[str], **fields: Any) -> BakeoffRecord:
        body = BakeoffRequest(encoders=encoders, **fields).model_dump(mode="json", exclude_unset=True)
        return BakeoffRecord.model_validate((await self.request("POST", "/bakeoff", json=body)).json())

    async def get_bakeoff(self, bakeoff_id: str) -> BakeoffRecord:
        path = f"/bakeoff/{validate_run_id(bakeoff_id)}"
        return BakeoffRecord.model_validate((await self.request("GET", path)).json())

    async def resume_bakeoff(self, bakeoff_id: str) -> BakeoffRecord:
        """TrainerClient.resume_bakeoff, awaited: only the cells not finished run again."""
        path = f"/bakeoff/{validate_run_id(bakeoff_id)}/resume"
        return BakeoffRecord.model_validate((await self.request("POST", path)).json())
