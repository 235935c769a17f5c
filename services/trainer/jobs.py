"""The trainer's jobs, one function each, used by the routes, the CLI's local mode and scripts alike:

    train(ctx, runner, TrainBCRequest | TrainSACRequest) -> RunCreated      validate, create run(s), start
    evaluate_run(ctx, runner, run_id, EvalRequest) -> EvalResult           validate against the run, start
    evaluate_baseline(ctx, runner, BaselineEvalRequest) -> EvalResult
    evaluate_study(ctx, runner, study_id, EvalRequest) -> StoredStudy      every run of a study, same eval seeds
    resume(ctx, runner, run_id) -> RunRecord                               atomically queued again (409 else)

`runner` is a JobRunner (the service: background threads, answer at once) or an InlineRunner (the CLI: the job
runs before the call returns). Bad input raises Refused(status_code, detail) before anything is recorded.
Each job always ends its run in a terminal state: `succeeded`, `failed` (with the error), or `interrupted`
(the trainer stopped it; resume continues it).
"""

from __future__ import annotations

import logging
import secrets
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from services.common.store import DatasetNotFound
from vjepa_robot_client.contract import (
    DEFAULT_EVAL_IMAGE_SIZE,
    BaselineEvalRequest,
    EvalRequest,
    EvalResult,
    RunCreated,
    RunRecord,
    RunStatus,
    Task,
    TrainBCRequest,
    TrainSACRequest,
    check_action_repeat,
    validate_run_id,
)
from vjepa_robot_lab.records.context import TrainerContext
from vjepa_robot_lab.records.lineage import encoder_lineage, train_lineage
from vjepa_robot_lab.records.refused import Refused
from vjepa_robot_lab.records.run_kinds import BASELINE, kind_of_request, run_kind
from vjepa_robot_lab.records.runs import (
    ACTIVE,
    RunHandle,
    RunNotFound,
    RunStore,
    StoredStudy,
    StudyNotFound,
)

log = logging.getLogger("vjepa_robot.trainer")


class JobStopped(Exception):
    """Raised inside a job when the trainer asked it to stop (shutdown): the run ends `interrupted`."""


# what ends a job `interrupted`, not `failed`: the trainer's stop, or the CLI's SIGINT/SIGTERM in local mode (a
# KeyboardInterrupt: vjepa_robot/harness.py's Interrupted)
STOPPED = (JobStopped, KeyboardInterrupt)


class JobBusy(Refused):
    """A job with this key (run:<id>, dataset:<name>, ...) is still active."""

    def __init__(self, key: str):
        super().__init__(409, f"job {key} is still active: wait for it to end")
        self.key = key


class JobRunner:
    """A small thread pool; every submitted job is wrapped so that its run can never stay `running`.

    A key (run:<id>, eval:<id>:<n>, study:<id>, studyeval:<id>, dataset:<name>) has at most one active job:
    `submit` refuses a second one atomically (JobBusy). A job may hand over a stop event (`stop=`): shutdown
    sets it, as it sets the stop events of the runs behind run/eval/study keys."""

    def __init__(self, workers: int = 2):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._active: dict[str, threading.Event | None] = {}  # key -> its stop event (None: a run's own)
        self._lock = threading.Lock()

    def submit(
        self,
        key: str,
        fn: Callable[[], Any],
        on_error: Callable[[BaseException], None],
        stop: threading.Event | None = None,
    ) -> None:
        def wrapped():
            try:
                fn()
            except BaseException as exc:
                log.error("job %s failed: %s\n%s", key, exc, traceback.format_exc())
                try:
                    on_error(exc)
                except Exception:  # pragma: no cover
                    log.exception("could not record the failure of job %s", key)
            finally:
                with self._lock:
                    self._active.pop(key, None)

        with self._lock:
            if key in self._active:
                raise JobBusy(key)
            self._active[key] = stop
            try:
                self.pool.submit(wrapped)
            except RuntimeError:  # the pool is shut down: the trainer is stopping
                del self._active[key]
                raise Refused(503, "the trainer is shutting down: retry once it is back") from None

    def active(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def shutdown(self, runs: RunStore) -> None:
        """Ask every active job to stop (runs, evaluations, studies and dataset generation alike), then wait."""
        with self._lock:
            active = dict(self._active)
        for key, stop in active.items():
            if stop is not None:
                stop.set()
            kind, _, rest = key.partition(":")
            if kind in ("run", "eval"):
                runs.stop_event(rest.split(":")[0]).set()
            elif kind in ("study", "studyeval"):
                for run_id in runs.get_study(rest).run_ids:
                    runs.stop_event(run_id).set()
        self.pool.shutdown(wait=True, cancel_futures=True)


class InlineRunner:
    """JobRunner's interface for the CLI: the job runs now; a failure is recorded, then raised."""

    def submit(
        self,
        key: str,
        fn: Callable[[], Any],
        on_error: Callable[[BaseException], None],
        stop: threading.Event | None = None,
    ) -> None:
        try:
            fn()
        except BaseException as exc:
            on_error(exc)
            raise

    def active(self) -> list[str]:
        return []


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def train(ctx: TrainerContext, runner, req: TrainBCRequest | TrainSACRequest, progress: bool = False) -> RunCreated:
    """Validate, create one run per seed (a study when the request has seeds/n_seeds), start them.

    A study's runs run one after another in one job (CPU); a run that fails is recorded and the next seed
    starts; a crash or stop leaves every unfinished run `failed`/`interrupted`, never `running` or `queued`.
    """
    kind = kind_of_request(req)
    if kind.prepare is not None:
        req = kind.prepare(req)  # e.g. a named protocol fills the fields the request left out (protocols.py)
    lineage = train_lineage(ctx, req)
    seeds = req.run_seeds()
    study_id = f"study-{secrets.token_hex(4)}" if req.is_study else None
    handles = [
        ctx.runs.create(
            kind.name, req.for_seed(s, study_id).model_dump(mode="json"), lineage=lineage, study_id=study_id
        )
        for s in seeds
    ]
    run_ids = [h.run_id for h in handles]
    if study_id is None:
        runner.submit(
            f"run:{run_ids[0]}", lambda: run_training(ctx, handles[0], progress=progress), fail_run(handles[0])
        )
        return RunCreated(run_id=run_ids[0])
    config = req.model_dump(mode="json", exclude={"study_id"})
    ctx.runs.create_study(kind.name, config, seeds, run_ids, study_id)

    def work():
        for h in handles:
            if h.stop_requested():
                raise JobStopped("the trainer was stopped during this study")
            try:
                run_training(ctx, h, progress=progress)
            except JobStopped:
                raise
            except Exception as exc:  # one seed's failure is that run's result; the study goes on
                log.error("study %s: run %s failed: %s", study_id, h.run_id, exc)
                fail_run(h)(exc)

    runner.submit(f"study:{study_id}", work, fail_unfinished(handles))
    return RunCreated(run_id=run_ids[0], study_id=study_id, run_ids=run_ids)


RESUMABLE = (RunStatus.interrupted, RunStatus.failed)


def resume(ctx: TrainerContext, runner, run_id: str) -> RunRecord:
    """Queue an interrupted or failed run again: SAC continues from its last checkpoint, BC trains again.

    The check and the transition to `queued` happen in one locked read-modify-write of the record, so of
    concurrent resumes of one run exactly one is accepted; the others get 409."""
    kind = run_kind(get_record(ctx, run_id).kind)
    if kind.train is None:
        raise Refused(409, f"{kind.name} runs have nothing to resume: POST /eval/baseline again")
    key = f"run:{run_id}"

    def queue(r: RunRecord) -> None:
        if r.status not in RESUMABLE:
            raise Refused(409, f"run {run_id} is {r.status.value}: only an interrupted or failed run can be resumed")
        if key in runner.active():  # its last job is still winding down (recording its end)
            raise Refused(409, f"run {run_id} is still finishing its last job: retry in a moment")
        r.status, r.error = RunStatus.queued, None

    record = ctx.runs.mutate(run_id, queue)
    ctx.runs.stop_event(run_id).clear()
    handle = ctx.runs.handle(run_id)
    try:
        runner.submit(key, lambda: run_training(ctx, handle, resume=kind.resumable), fail_run(handle))
    except Refused as exc:
        handle.update(status="interrupted", error=exc.detail)
        raise
    return record


def fail_run(handle: RunHandle):
    def on_error(exc: BaseException):
        # a stop request makes any error on the way out (an encoder call cut short by the shutdown) an interruption
        status = "interrupted" if isinstance(exc, STOPPED) or handle.stop_requested() else "failed"
        handle.update(status=status, error=f"{type(exc).__name__}: {exc}")

    return on_error


def fail_unfinished(handles: list[RunHandle]):
    def on_error(exc: BaseException):
        for h in handles:
            if h.record.status in ACTIVE:
                fail_run(h)(exc)

    return on_error


def run_training(ctx: TrainerContext, handle: RunHandle, resume: bool = False, progress: bool = False) -> None:
    """Train one recorded run with its kind's train function; the caller's on_error records a failure."""
    record = handle.record
    kind = run_kind(record.kind)
    cfg = kind.request.model_validate(record.config.model_dump(mode="json"))  # type: ignore[union-attr]
    handle.update(status="running")
    features = ctx.features(cfg.features.value, record.lineage.task if record.lineage else None)
    try:
        handle.update(lineage=encoder_lineage(features, cfg))
        metrics = kind.train(ctx, handle, cfg, features, resume=resume, progress=progress)  # type: ignore[misc]
        metrics["features_lineage"] = features.lineage()  # as the source reported it (read RunRecord.lineage)
    finally:
        features.close()
    if handle.stop_requested():
        raise JobStopped("the trainer was stopped during training")
    handle.update(status="succeeded", metrics=metrics)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


def get_record(ctx: TrainerContext, run_id: str) -> RunRecord:
    try:
        validate_run_id(run_id)
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    try:
        return ctx.runs.get(run_id)
    except RunNotFound as exc:
        raise Refused(404, str(exc)) from None


def get_study(ctx: TrainerContext, study_id: str) -> StoredStudy:
    try:
        validate_run_id(study_id)
    except ValueError as exc:
        raise Refused(400, str(exc).replace("run id", "study id")) from None
    try:
        return ctx.runs.get_study(study_id)
    except StudyNotFound as exc:
        raise Refused(404, str(exc)) from None


def resolve_eval(ctx: TrainerContext, record: RunRecord, req: EvalRequest) -> EvalRequest:
    """The request this run is evaluated with: image_size filled in from the run's own frame size; Refused when
    the run is not evaluable, the steps do not fit its action repeat, or the frame size differs unasked."""
    run_id = record.run_id
    if not run_kind(record.kind).eval_is_run and record.status != RunStatus.succeeded:
        raise Refused(409, f"run {run_id} is {record.status.value}: evaluate it once it has succeeded")
    lineage = record.lineage
    req = resolve_eval_task(record, req)
    if "steps" not in req.model_fields_set:  # the run's own episode length (SAC: 1000), not the request's 200
        own_steps = _own_episode_steps(ctx, record)
        if own_steps:
            req = req.model_copy(update={"steps": own_steps})
    repeat = lineage.action_repeat if lineage else 1
    try:
        check_action_repeat(req.steps, repeat)
    except ValueError as exc:
        raise Refused(422, f"evaluation steps of run {run_id}: {exc}") from None
    own = lineage.image_size if lineage else None
    if req.image_size is None:
        return req.model_copy(update={"image_size": own or DEFAULT_EVAL_IMAGE_SIZE})
    if own and req.image_size != own and not req.allow_image_size_change:
        raise Refused(
            422,
            f"image_size {req.image_size} differs from the run's own frame size {own} (run {run_id} "
            f"was trained on {own} px frames): leave image_size out to use {own}, or send "
            "allow_image_size_change: true to evaluate at another size on purpose",
        )
    return req


def _own_episode_steps(ctx: TrainerContext, record: RunRecord) -> int | None:
    """The episode length a run was trained and judged at: its config's `episode_steps` (SAC), else its dataset's
    episode length (BC); None when neither is known (a baseline, or a dataset since deleted)."""
    steps = record.config.get("episode_steps") if record.config else None
    if steps:
        return int(steps)
    dataset = record.lineage.dataset if record.lineage else None
    if dataset:
        try:
            return int(ctx.store.get_dataset_meta(dataset)["steps"])
        except (DatasetNotFound, KeyError, TypeError, ValueError):
            return None
    return None


FILLED_FROM_RUN = ("task", "steps", "image_size")


def filled_from_run(asked: EvalRequest, resolved: EvalRequest) -> list[str]:
    """The request fields the caller left out that the run's own settings filled (said in the answer)."""
    return [f for f in FILLED_FROM_RUN if f not in asked.model_fields_set and getattr(resolved, f) != getattr(asked, f)]


def resolve_eval_task(record: RunRecord, req: EvalRequest) -> EvalRequest:
    """A request that names no task evaluates a run of a task other than reacher on its own task (reacher's runs
    keep the default `easy`, as before); a task whose actions or states differ from the run's is refused (422)."""
    from vjepa_robot_lab.envs.tasks import task_spec

    own = record.lineage.task if record.lineage else None
    if not own:
        return req
    mine, asked = task_spec(own), task_spec(req.task)
    if "task" not in req.model_fields_set and not mine.is_reacher:
        update: dict = {"task": Task(mine.name)}
        if "steps" not in req.model_fields_set:  # and its task's episode length (tasks.py), not reacher's 200
            update["steps"] = mine.episode_steps
        return req.model_copy(update=update)
    if (mine.domain, mine.action_dim, mine.state_dim) != (asked.domain, asked.action_dim, asked.state_dim):
        raise Refused(
            422,
            f"run {record.run_id} was trained on task {mine.name}; it cannot act on task {asked.name} "
            f"(another body): evaluate it with task {mine.name}",
        )
    return req


def evaluate_run(ctx: TrainerContext, runner, run_id: str, req: EvalRequest) -> EvalResult:
    record = get_record(ctx, run_id)
    resolved = resolve_eval(ctx, record, req)
    return _start_eval(ctx, runner, ctx.runs.handle(run_id), resolved, filled_from_run(req, resolved))


def evaluate_baseline(ctx: TrainerContext, runner, req: BaselineEvalRequest) -> EvalResult:
    from vjepa_robot_lab.policies.experts import check_expert_task

    try:
        check_expert_task(req.policy, req.task.value)
    except ValueError as exc:
        raise Refused(422, str(exc)) from None
    handle = ctx.runs.create(BASELINE.name, {"policy": req.policy, "task": req.task.value})
    plain = EvalRequest(**req.model_dump(exclude={"policy"}))
    return _start_eval(ctx, runner, handle, resolve_eval(ctx, handle.record, plain))


def evaluate_study(ctx: TrainerContext, runner, study_id: str, req: EvalRequest) -> StoredStudy:
    """Evaluate every succeeded run of a study with the same request (hence the same evaluation seeds), one after
    another in one job. Runs that did not succeed are skipped (they show in the study without an evaluation)."""
    study = get_study(ctx, study_id)
    if f"studyeval:{study_id}" in runner.active():
        raise Refused(409, f"study {study_id} is being evaluated right now: wait for it (GET /studies/{study_id})")
    records = [ctx.runs.get(r) for r in study.run_ids]
    ready = [r for r in records if r.status == RunStatus.succeeded]
    if not ready:
        states = ", ".join(f"{r.run_id} {r.status.value}" for r in records)
        raise Refused(409, f"study {study_id} has no succeeded run to evaluate yet ({states})")
    resolved = [resolve_eval(ctx, r, req) for r in ready]  # every run is checked before any starts
    jobs = []
    for record, r in zip(ready, resolved):
        handle = ctx.runs.handle(record.run_id)
        jobs.append((handle, handle.add_evaluation(r.model_dump(mode="json"), filled_from_run(req, r)), r))
    ctx.runs.update_study(study_id, eval_request=req.model_dump(mode="json"))

    def fail_active(exc: BaseException) -> None:
        for h, e, _ in jobs:
            if h.evaluation(e).status in ACTIVE:
                eval_error_handler(h, e)(exc)

    def work():
        for handle, eval_id, r in jobs:
            try:
                run_eval(ctx, handle, eval_id, r)
            except JobStopped as exc:
                fail_active(exc)
                raise
            except Exception as exc:
                eval_error_handler(handle, eval_id)(exc)

    try:
        runner.submit(f"studyeval:{study_id}", work, fail_active)
    except Refused as exc:  # this study is being evaluated already: the evaluations just recorded end failed
        fail_active(RuntimeError(exc.detail))
        raise
    return ctx.runs.get_study(study_id)


def _start_eval(
    ctx: TrainerContext, runner, handle: RunHandle, req: EvalRequest, from_run: list[str] | None = None
) -> EvalResult:
    eval_id = handle.add_evaluation(req.model_dump(mode="json"), from_run)  # `queued` before the service answers
    runner.submit(
        f"eval:{handle.run_id}:{eval_id}",
        lambda: run_eval(ctx, handle, eval_id, req),
        eval_error_handler(handle, eval_id),
    )
    return handle.evaluation(eval_id)


def load_policy(ctx: TrainerContext, record: RunRecord):
    """The Policy that evaluates a run (its kind's load_policy) and the feature source to close after (or None)."""
    return run_kind(record.kind).load_policy(ctx, record)


def run_eval(ctx: TrainerContext, handle: RunHandle, eval_id: int, req: EvalRequest) -> None:
    """Run one recorded evaluation; `req` is already resolved (resolve_eval): image_size is set."""
    from vjepa_robot_lab.evaluation.evaluate import evaluate

    handle.update_evaluation(eval_id, status="running")
    record = handle.record
    policy, features = load_policy(ctx, record)  # nothing may raise between opening features and `try`
    gif = Path(handle.dir) / f"eval{eval_id}.gif"

    def progress(done: int, total: int):
        handle.update_evaluation(eval_id, episodes_done=done, episodes_total=total)
        if handle.stop_requested():
            raise JobStopped("the trainer was stopped during this evaluation")

    def check_stop():  # between agent steps: a shutdown waits for one step, not a wave of episodes
        if handle.stop_requested():
            raise JobStopped("the trainer was stopped during this evaluation")

    try:
        result = evaluate(
            policy,
            task=req.task.value,
            episodes=req.episodes,
            steps=req.steps,
            seed=req.seed,
            parallel_envs=req.parallel_envs,
            image_size=req.image_size or DEFAULT_EVAL_IMAGE_SIZE,
            gif_episodes=req.gif_episodes,
            gif_path=gif,
            on_progress=progress,
            action_repeat=record.lineage.action_repeat if record.lineage else 1,
            targets=req.targets.value,
            on_step=check_stop,
        )
    finally:
        if features is not None:
            features.close()
    # the frame size actually rendered for the policy (None: its features use no frames)
    result["image_size"] = req.image_size if policy.needs_frames else None
    handle.update_evaluation(eval_id, status="succeeded", **result)
    if ctx.on_eval is not None:
        ctx.on_eval(result)
    if run_kind(record.kind).eval_is_run:  # a baseline: the evaluation is the run
        handle.update(status="succeeded", metrics={"success_rate": result["success_rate"]})


def eval_error_handler(handle: RunHandle, eval_id: int):
    def on_error(exc: BaseException):
        handle.update_evaluation(
            eval_id,
            status="interrupted" if isinstance(exc, STOPPED) or handle.stop_requested() else "failed",
            error=f"{type(exc).__name__}: {exc}",
        )
        if run_kind(handle.record.kind).eval_is_run:
            handle.update(
                status="interrupted" if isinstance(exc, STOPPED) else "failed", error=f"{type(exc).__name__}: {exc}"
            )

    return on_error
