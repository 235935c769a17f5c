"""One Trainer port, two adapters: what the CLI asks of a trainer, through the service or in this process.

    trainer = HttpTrainer(url, token)          # the SDK against a trainer service (--trainer-url)
    trainer = LocalTrainer(ctx)                # the job layer (services/trainer/jobs.py) run inline, here
    created = trainer.train(request)           # RunCreated: run_id, or study_id + run_ids
    record = trainer.wait(created.run_id)      # RunRecord, terminal
    study = trainer.wait_study(created.study_id)                    # StudyRecord, every run terminal
    result = trainer.evaluate(run_id, EvalRequest(...))             # EvalResult, terminal
    run_id, result = trainer.evaluate_baseline(BaselineEvalRequest(...))
    study = trainer.evaluate_study(study_id, EvalRequest(...))      # StudyRecord, every evaluation terminal
    answer = trainer.send(api.get_study(study_id))                  # any SDK builder's Call: its typed answer

`send` is the port's one generic method: a command that mirrors a route (vjepa_robot/route_commands.py) sends
the route's SDK builder (clients/vjepa_robot_client/_trainer_calls.py) and needs no method of its own here.
HttpTrainer sends it to the service; LocalTrainer sends the SAME Call to the trainer's FastAPI app in this process
(an httpx transport over ASGI), so the route's own code answers, its 4xx come back as the SDK's typed errors
(NotFound, BadRequest: the same one line and exit code as with --trainer-url), and an unexpected exception is
raised here as it was raised in the route. The app's lifespan does not run in process: no store lease is taken
and no recovery marks other processes' runs, which is right for routes that answer at once (reads) and wrong for
routes that start a background job (that job would run on the app's thread pool, without the inline progress and
the "records in" line, and die with the command): training and evaluation keep their inline methods above.

Both adapters return the same wire types (vjepa_robot_client.contract), so a command is written once. They differ
only where the nature of the place differs, and say so through two exceptions:
  - Refused(detail): the request was refused before anything ran (the job layer's 4xx; the service answers the
    SDK's typed errors instead, which the CLI classifies the same way);
  - JobFailed(what, exc): a job run in this process failed (it is recorded `failed` first); the exception keeps
    its cause, so the CLI can show its full trace with --verbose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx  # the SDK's own HTTP client (vjepa_robot_client imports it too)
from pydantic import BaseModel

from vjepa_robot_client.contract import (
    BaselineEvalRequest,
    EvalRequest,
    EvalResult,
    RunCreated,
    RunRecord,
    StudyRecord,
)

if TYPE_CHECKING:
    from vjepa_robot_client._calls import Call
    from vjepa_robot_lab.records.context import TrainerContext

T = TypeVar("T")


class Refused(Exception):
    """The trainer refused the request before any work (bad name, unknown run, not ready, ...)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class JobFailed(Exception):
    """A job run in this process failed; `what` is "training" or "evaluation", the cause is `__cause__`."""

    def __init__(self, what: str, exc: BaseException):
        super().__init__(f"{what} failed: {type(exc).__name__}: {exc}")
        self.what, self.exc = what, exc


class Trainer(Protocol):
    """What the CLI asks of a trainer (see the module docstring)."""

    where: str  # for messages: the service URL, or where the local records go

    def train(self, request: BaseModel) -> RunCreated: ...
    def wait(self, run_id: str) -> RunRecord: ...
    def wait_study(self, study_id: str, evaluated: bool = False) -> StudyRecord: ...
    def evaluate(self, run_id: str, request: EvalRequest) -> EvalResult: ...
    def evaluate_baseline(self, request: BaselineEvalRequest) -> tuple[str, EvalResult]: ...
    def evaluate_study(self, study_id: str, request: EvalRequest) -> StudyRecord: ...
    def send(self, call: Call[T]) -> T: ...


def _given(request: BaseModel) -> dict[str, Any]:
    """The fields a request was given (its defaults, or a protocol's, fill the rest on the trainer)."""
    return request.model_dump(mode="json", exclude_none=True, exclude_unset=True)


class HttpTrainer:
    """The port over the SDK: a trainer service at `url`. Waits poll the service (with a progress bar)."""

    def __init__(self, url: str, token: str | None = None, progress: bool = True):
        from vjepa_robot_client import TrainerClient

        self.where = url
        self.client = TrainerClient(url, token=token)
        self.progress = progress

    def train(self, request: BaseModel) -> RunCreated:
        return self.client.train(_kind_name(request), request)

    def wait(self, run_id: str) -> RunRecord:
        return self.client.wait(run_id, progress=self.progress)

    def wait_study(self, study_id: str, evaluated: bool = False) -> StudyRecord:
        return self.client.wait_study(study_id, evaluated=evaluated, progress=self.progress)

    def evaluate(self, run_id: str, request: EvalRequest) -> EvalResult:
        queued = self.client.evaluate(run_id, **_given(request))
        return self.client.wait_eval(run_id, queued.eval_id, progress=self.progress)

    def evaluate_baseline(self, request: BaselineEvalRequest) -> tuple[str, EvalResult]:
        run_id = self.client.evaluate_baseline(**_given(request))
        return run_id, self.client.wait_eval(run_id, progress=self.progress)

    def evaluate_study(self, study_id: str, request: EvalRequest) -> StudyRecord:
        self.client.evaluate_study(study_id, **_given(request))
        return self.wait_study(study_id, evaluated=True)

    def send(self, call: Call[T]) -> T:
        return self.client.send(call)


class LocalTrainer:
    """The port over the job layer, run inline in this process: a call returns once its job has ended.

    announce(key, where): called as a training job starts (the CLI prints where the records go);
    needs_encoder(): called before a job that reaches the encoder service (vjepa2 features)."""

    def __init__(
        self,
        ctx: TrainerContext,
        announce: Callable[[str], None] | None = None,
        needs_encoder: Callable[[], None] | None = None,
        progress: bool = True,
    ):
        self.ctx = ctx
        self.where = str(ctx.runs.root)
        self.announce = announce or (lambda key: None)
        self.needs_encoder = needs_encoder or (lambda: None)
        self.progress = progress
        self._client = None  # the SDK client of the trainer app in this process (made on the first `send`)

    def send(self, call: Call[T]) -> T:
        """The SDK Call answered by the trainer's own routes, in this process (see the module docstring)."""
        if self._client is None:
            from services.trainer.app import TrainerSettings, create_app
            from vjepa_robot_client import TrainerClient

            ctx = self.ctx
            settings = TrainerSettings(
                store=ctx.store.uri, runs=str(ctx.runs.root), encoder_url=ctx.encoder_url, token=ctx.token
            )
            transport = InProcess(create_app(settings))
            self._client = TrainerClient("http://trainer.in-process", token=ctx.token, transport=transport, retries=0)
        return self._client.send(call)

    def _jobs(self):
        from services.trainer import jobs

        return jobs

    def _run(self, what: str, start: Callable[[Any], Any]) -> Any:
        """Start a job with an inline runner; the job layer's refusals and a failed job become the port's."""
        jobs = self._jobs()
        try:
            return start(jobs)
        except jobs.Refused as exc:
            raise Refused(exc.detail) from exc
        except Exception as exc:  # recorded `failed` in the run (or its evaluation) before it got here
            raise JobFailed(what, exc) from exc

    def _runner(self, announce: bool):
        jobs, outer = self._jobs(), self

        class Runner(jobs.InlineRunner):
            def submit(self, key, fn, on_error, stop=None):
                if announce:
                    outer.announce(key)
                super().submit(key, fn, on_error, stop)

        return Runner()

    def train(self, request: BaseModel) -> RunCreated:
        if getattr(getattr(request, "features", None), "value", None) == "vjepa2":
            self.needs_encoder()
        return self._run("training", lambda jobs: jobs.train(self.ctx, self._runner(True), request, self.progress))

    def wait(self, run_id: str) -> RunRecord:
        return self.ctx.runs.get(run_id)  # the job ran inline: the record is terminal

    def wait_study(self, study_id: str, evaluated: bool = False) -> StudyRecord:
        from vjepa_robot_lab.experiments.studies import aggregate

        study = self.ctx.runs.get_study(study_id)
        return aggregate(study, [self.ctx.runs.get(r) for r in study.run_ids])

    def _evaluation(self, queued: EvalResult) -> EvalResult:
        return self.ctx.runs.get(queued.run_id).evaluations[queued.eval_id]

    def evaluate(self, run_id: str, request: EvalRequest) -> EvalResult:
        if self._uses_encoder([run_id]):
            self.needs_encoder()
        queued = self._run("evaluation", lambda jobs: jobs.evaluate_run(self.ctx, self._runner(False), run_id, request))
        return self._evaluation(queued)

    def evaluate_baseline(self, request: BaselineEvalRequest) -> tuple[str, EvalResult]:
        queued = self._run("evaluation", lambda jobs: jobs.evaluate_baseline(self.ctx, self._runner(False), request))
        return queued.run_id, self._evaluation(queued)

    def evaluate_study(self, study_id: str, request: EvalRequest) -> StudyRecord:
        try:
            run_ids = self.ctx.runs.get_study(study_id).run_ids
        except Exception:  # an unknown study: the job layer refuses it with its own message
            run_ids = []
        if self._uses_encoder(run_ids):
            self.needs_encoder()
        self._run("evaluation", lambda jobs: jobs.evaluate_study(self.ctx, self._runner(False), study_id, request))
        return self.wait_study(study_id, evaluated=True)

    def _uses_encoder(self, run_ids: list[str]) -> bool:
        """Whether evaluating these runs needs the encoder service (vjepa2 features)."""
        for run_id in run_ids:
            try:
                record = self.ctx.runs.get(run_id)
            except Exception:  # an unknown run: the job layer refuses it with its own message
                return False
            features = record.lineage.features.value if record.lineage else record.config.get("features")
            if str(getattr(features, "value", features)) == "vjepa2":
                return True
        return False


class InProcess(httpx.BaseTransport):
    """An httpx transport that hands each request to an ASGI app in this process: httpx's ASGITransport, driven
    from synchronous code (the app's lifespan is not run)."""

    def __init__(self, app):
        self.asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def answer() -> httpx.Response:
            response = await self.asgi.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return asyncio.run(answer())


def _kind_name(request: BaseModel) -> str:
    """The run kind a training request trains (the registry: vjepa_robot_lab/records/run_kinds.py)."""
    from vjepa_robot_lab.records.run_kinds import kind_of_request

    return kind_of_request(request).name
