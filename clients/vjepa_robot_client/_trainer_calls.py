"""Every call of the trainer service, written once: its request (path, body) and its parser (the typed answer).

TrainerClient and AsyncTrainerClient (trainer.py) are shells over these builders: each builder's name, signature
and docstring is the method's. Every POST that starts work answers 202 at once; the wait_* builders poll until a
terminal state.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from ._calls import Call, Poll
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

_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
TERMINAL = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.interrupted})
DATASET_TERMINAL = frozenset({DatasetState.ready, DatasetState.failed})

# (done, total, unit) keys the trainers write into a run's metrics (SACMetrics: simulator steps, BCMetrics: epochs);
# totals fall back to the run's config. A run's progress and its unit are read from these, never from its kind.
_PROGRESS_KEYS = (("env_steps", "total_steps", "step"), ("epoch", "epochs", "epoch"))


def run_progress(record: RunRecord) -> tuple[float | None, float | None]:
    """How far a run is, from its metrics (and config for the total); (None, None) when unknown."""
    m, c = record.metrics, record.config
    for done_key, total_key, _ in _PROGRESS_KEYS:
        done = m.get(done_key)
        total = m.get(total_key, c.get(total_key))
        if isinstance(done, (int, float)):
            return done, total if isinstance(total, (int, float)) else None
    return None, None


def run_unit(record: RunRecord) -> str:
    """What a run's progress counts (SAC simulator steps, BC epochs): the unit of the first progress key its
    metrics or config carry, known from a queued run's config already."""
    m, c = record.metrics, record.config
    for done_key, total_key, unit in _PROGRESS_KEYS:
        if done_key in m or total_key in m or total_key in c:
            return unit
    return "epoch"


def _json(model_type):
    return lambda response: model_type.model_validate(response.json())


def _field(model_type, name: str):
    return lambda response: getattr(model_type.model_validate(response.json()), name)


def _readout_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The default readout is left out of the body, so a trainer from before readouts still takes the request."""
    if body.get("readout") == "mean" and body.get("grid_size") == DEFAULT_GRID_SIZE:
        body = {k: v for k, v in body.items() if k not in ("readout", "grid_size")}
    return body


def eval_request(policy: str | None = None, **given: Any) -> dict[str, Any]:
    """Only the fields the caller gave: EvalRequest holds the defaults (image_size: the run's own frame size)."""
    kw = {k: v for k, v in given.items() if v is not None}
    model = EvalRequest(**kw) if policy is None else BaselineEvalRequest(policy=policy, **kw)
    return model.model_dump(mode="json", exclude_unset=True)


def _created(response) -> str:
    """A run id (one seed) or a study id (seeds / n_seeds given)."""
    created = RunCreated.model_validate(response.json())
    return created.study_id or created.run_id


def _name(name: str) -> str:
    return validate_name(name, "dataset name")


# -- service ------------------------------------------------------------------------------------------------------


def health() -> Call[HealthResponse]:
    """GET /healthz: the service is up."""
    return Call("GET", "/healthz", _json(HealthResponse))


def info() -> Call[TrainerInfo]:
    """GET /info: what the trainer is, where it keeps things (store, runs), what it can do (kinds, tasks, routes)."""
    return Call("GET", "/info", _json(TrainerInfo))


# -- datasets -----------------------------------------------------------------------------------------------------


def create_dataset(
    name: str,
    expert: str = "jacobian",
    task: str | Task = "easy",
    episodes: int = 100,
    steps: int = 200,
    seed: int = 0,
    image_size: int = 256,
    workers: int = 2,
    overwrite: bool = False,
) -> Call[DatasetInfo]:
    """Start generating expert episodes into the store; returns the dataset's status (202, running)."""
    body = CreateDatasetRequest(
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
    return Call("POST", "/datasets", _json(DatasetInfo), json=body)


def dataset(name: str) -> Call[DatasetInfo]:
    """A dataset's status and metadata."""
    return Call("GET", f"/datasets/{_name(name)}", _json(DatasetInfo))


def datasets() -> Call[list[DatasetInfo]]:
    """Every dataset in the store."""
    return Call("GET", "/datasets", _field(DatasetList, "datasets"))


def wait_dataset(
    name: str, *, progress: bool = True, timeout: float | None = None, poll_interval: float = 2.0
) -> Poll[DatasetInfo]:
    """Poll until the dataset is ready or failed."""
    return Poll(
        f"dataset {name}",
        dataset(name),
        done=lambda info: info.status in DATASET_TERMINAL,
        observe=lambda info: (info.episodes_done, info.episodes or None, info.status.value),
        unit="episode",
        progress=progress,
        timeout=timeout,
        poll_interval=poll_interval,
    )


# -- runs ---------------------------------------------------------------------------------------------------------


def train_bc(
    dataset: str,
    features: str | FeatureSource = "vjepa2",
    epochs: int | None = None,
    *,
    readout: str | Readout | None = None,
    grid_size: int | None = None,
    **kwargs: Any,
) -> Call[str]:
    """Start behaviour cloning on a dataset; returns the run id, or with `seeds=[..]` / `n_seeds=` the study id
    (one run per seed: get_study, wait_study). readout: mean | attentive (grid_size x grid_size token grid) |
    flare. kwargs: TrainBCRequest fields (lr, batch_size, seeds, protocol="cortexbench", ...). Only the fields
    given are sent: the trainer's defaults (or the protocol's) fill the rest."""
    given = {"epochs": epochs, "readout": readout, "grid_size": grid_size, **kwargs}
    body = TrainBCRequest(
        dataset=dataset, features=features, **{k: v for k, v in given.items() if v is not None}
    ).model_dump(mode="json", exclude_none=True, exclude_unset=True)
    return Call("POST", "/train/bc", _created, json=_readout_fields(body))


def train_sac(
    features: str | FeatureSource = "state",
    task: str | Task = "easy",
    total_steps: int = 100_000,
    *,
    readout: str | Readout = "mean",
    grid_size: int = DEFAULT_GRID_SIZE,
    **kwargs: Any,
) -> Call[str]:
    """Start SAC in parallel envs; returns the run id, or the study id with seeds / n_seeds (as train_bc).
    readout as train_bc. kwargs: TrainSACRequest fields (parallel_envs, seeds, ...)."""
    body = TrainSACRequest(
        features=features, task=task, total_steps=total_steps, readout=readout, grid_size=grid_size, **kwargs
    ).model_dump(mode="json", exclude_none=True)
    return Call("POST", "/train/sac", _created, json=_readout_fields(body))


def train(kind: str, request: dict[str, Any] | BaseModel) -> Call[RunCreated]:
    """Start training runs of any kind the trainer registers (POST /train/<kind>: bc, sac, ...; GET /info lists
    them) from its request's fields (a dict, or the request model: only the fields set are sent, the trainer's
    defaults fill the rest). Returns RunCreated: the run id, and with seeds / n_seeds the study id and every run."""
    if not _KIND.fullmatch(kind or ""):
        raise ValueError(f"run kind must be a lowercase name such as bc or sac, got {kind!r}")
    if isinstance(request, BaseModel):
        request = request.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    return Call("POST", f"/train/{kind}", _json(RunCreated), json=_readout_fields(dict(request)))


def run(run_id: str) -> Call[RunRecord]:
    """A run's record: config, lineage, status, metrics, evaluations."""
    return Call("GET", f"/runs/{validate_run_id(run_id)}", _json(RunRecord))


def runs() -> Call[list[RunRecord]]:
    """Every run's record."""
    return Call("GET", "/runs", _field(RunList, "runs"))


def resume(run_id: str) -> Call[RunRecord]:
    """Continue an interrupted run from its last checkpoint."""
    return Call("POST", f"/runs/{validate_run_id(run_id)}/resume", _json(RunRecord))


def wait(
    run_id: str, *, progress: bool = True, timeout: float | None = None, poll_interval: float = 2.0
) -> Poll[RunRecord]:
    """Poll until the run succeeded, failed or was interrupted; returns its record (check .status)."""
    return Poll(
        f"run {run_id}",
        run(run_id),
        done=lambda record: record.status in TERMINAL,
        observe=lambda record: (*run_progress(record), record.status.value),
        unit="epoch",
        unit_of=run_unit,
        progress=progress,
        timeout=timeout,
        poll_interval=poll_interval,
    )


# -- studies (one run per seed) -----------------------------------------------------------------------------------


def get_study(study_id: str) -> Call[StudyRecord]:
    """Runs, per-run status and final metric, mean and 95% t-interval across seeds."""
    return Call("GET", f"/studies/{validate_run_id(study_id)}", _json(StudyRecord))


def studies() -> Call[list[StudyRecord]]:
    """Every study."""
    return Call("GET", "/studies", _field(StudyList, "studies"))


def evaluate_study(study_id: str, **fields: Any) -> Call[StudyRecord]:
    """Evaluate every run of a study on the same evaluation seeds; fields: EvalRequest fields."""
    return Call("POST", f"/studies/{validate_run_id(study_id)}/eval", _json(StudyRecord), json=eval_request(**fields))


def _study_done(study: StudyRecord, with_eval: bool) -> bool:
    if study.status not in TERMINAL:
        return False
    if not with_eval:
        return True
    return all(r.eval_status in TERMINAL for r in study.runs if r.status == RunStatus.succeeded)


def wait_study(
    study_id: str,
    *,
    evaluated: bool = False,
    progress: bool = True,
    timeout: float | None = None,
    poll_interval: float = 2.0,
) -> Poll[StudyRecord]:
    """Poll until every run is terminal (and, with evaluated=True, every succeeded run's latest evaluation)."""
    return Poll(
        f"study {study_id}",
        get_study(study_id),
        done=lambda study: _study_done(study, evaluated),
        observe=lambda s: (sum(r.status in TERMINAL for r in s.runs), len(s.runs), s.status.value),
        unit="run",
        progress=progress,
        timeout=timeout,
        poll_interval=poll_interval,
    )


# -- evaluation ---------------------------------------------------------------------------------------------------


def evaluate(
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
) -> Call[EvalResult]:
    """Start live rollouts of a trained policy; returns the queued EvalResult. Fields left out take
    EvalRequest's defaults; image_size defaults to the run's own frame size. targets: "stratified" for equal
    episodes near, middle and far from the base."""
    body = eval_request(
        episodes=episodes,
        task=task,
        steps=steps,
        seed=seed,
        parallel_envs=parallel_envs,
        image_size=image_size,
        gif_episodes=gif_episodes,
        allow_image_size_change=allow_image_size_change,
        targets=targets,
    )
    return Call("POST", f"/eval/{validate_run_id(run_id)}", _json(EvalResult), json=body)


def eval_result(run_id: str, targets: str | None = None) -> Call[EvalResult]:
    """The run's latest evaluation (with `targets`: the latest one run with those targets)."""
    params = {"targets": targets} if targets else None
    return Call("GET", f"/eval/{validate_run_id(run_id)}", _json(EvalResult), params=params)


def _eval_done(result: EvalResult, eval_id: int | None) -> bool:
    return result.status in TERMINAL and (eval_id is None or result.eval_id is None or result.eval_id >= eval_id)


def wait_eval(
    run_id: str,
    eval_id: int | None = None,
    *,
    progress: bool = True,
    timeout: float | None = None,
    poll_interval: float = 2.0,
) -> Poll[EvalResult]:
    """Poll until the run's latest evaluation (at least `eval_id`, if given) is terminal."""
    return Poll(
        f"eval {run_id}",
        eval_result(run_id),
        done=lambda result: _eval_done(result, eval_id),
        observe=lambda r: (r.episodes_done or len(r.episodes), r.episodes_total, r.status.value),
        unit="episode",
        progress=progress,
        timeout=timeout,
        poll_interval=poll_interval,
    )


def evaluate_baseline(policy: str = "jacobian", gif_episodes: int = 0, **fields: Any) -> Call[str]:
    """Evaluate an expert or random policy as a run of kind 'baseline'; returns its run id.
    fields: EvalRequest fields (episodes, task, steps, seed, parallel_envs, image_size)."""
    body = eval_request(policy=policy, gif_episodes=gif_episodes, **fields)
    return Call("POST", "/eval/baseline", _field(RunCreated, "run_id"), json=body)


# -- bake-off -----------------------------------------------------------------------------------------------------


def bakeoff(encoders: list[str], **fields: Any) -> Call[BakeoffRecord]:
    """Start a bake-off: every encoder service URL x readouts x tasks x seeds as BC studies, one table and one
    figure (docs/bakeoff.md). fields: BakeoffRequest fields (tasks, experts, readouts, seeds,
    protocol="cortexbench", episodes, steps, image_size, epochs, eval_episodes, ...); only those given are sent.
    Returns the record, `queued`; wait_bakeoff(record.bakeoff_id) waits for its table."""
    body = BakeoffRequest(encoders=encoders, **fields).model_dump(mode="json", exclude_unset=True)
    return Call("POST", "/bakeoff", _json(BakeoffRecord), json=body)


def get_bakeoff(bakeoff_id: str) -> Call[BakeoffRecord]:
    """A bake-off's record: its cells (one study each), status and, once it has ended, its table."""
    return Call("GET", f"/bakeoff/{validate_run_id(bakeoff_id)}", _json(BakeoffRecord))


def resume_bakeoff(bakeoff_id: str) -> Call[BakeoffRecord]:
    """Run again only the cells of a bake-off that did not succeed (POST /bakeoff/{id}/resume); finished cells are
    kept, an unfinished one continues from its own state. Returns the record, `queued`."""
    return Call("POST", f"/bakeoff/{validate_run_id(bakeoff_id)}/resume", _json(BakeoffRecord))


def bakeoffs() -> Call[list[BakeoffRecord]]:
    """Every bake-off."""
    return Call("GET", "/bakeoff", _field(BakeoffList, "bakeoffs"))


def bakeoff_figure(bakeoff_id: str) -> Call[bytes]:
    """The bake-off's figure (PNG bytes), once it has ended."""
    return Call("GET", f"/bakeoff/{validate_run_id(bakeoff_id)}/figure", lambda response: response.content)


def wait_bakeoff(
    bakeoff_id: str, *, progress: bool = True, timeout: float | None = None, poll_interval: float = 2.0
) -> Poll[BakeoffRecord]:
    """Poll until the bake-off has ended (succeeded, failed or interrupted); its table is record.table."""
    return Poll(
        f"bake-off {bakeoff_id}",
        get_bakeoff(bakeoff_id),
        done=lambda record: record.status in TERMINAL,
        observe=lambda r: (sum(c.status in TERMINAL for c in r.cells), len(r.cells), r.status.value),
        unit="cell",
        progress=progress,
        timeout=timeout,
        poll_interval=poll_interval,
    )
