"""Trained runs as experts: `run:RUN_ID` names a run whose deterministic policy demonstrates a task (and
`shipped` the package's own state-SAC run for the task: shipped_experts.py).

    source = resolve_run_expert(runs, "sac-1a2b3c4d", "walker-stand")   # RunExpertSource, or ExpertRefused (4xx)
    expert = RunExpert(source)                                           # experts.Expert: act(physics, ts) -> (A,)

The demonstrator for tasks without a scripted expert (walker, cheetah, ...): a succeeded SAC or BC run on state
features (mean readout) of the dataset's own task, acting on tasks.TaskSpec.state. A vjepa2 run is refused: its
rollouts would need the encoder inside every dataset worker. Apart from experts.py so that the scripted experts
(which evaluation imports) do not import the SAC and BC modules (which import evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vjepa_robot_client.contract import RUN_EXPERT_PREFIX, SHIPPED_EXPERT, validate_run_id
from vjepa_robot_lab.envs.env import TimeStep
from vjepa_robot_lab.envs.tasks import task_spec
from vjepa_robot_lab.policies.experts import Expert


def run_id_of(expert: str) -> str | None:
    """The run id of a `run:RUN_ID` expert name; None for a scripted or the shipped expert."""
    return validate_run_id(expert[len(RUN_EXPERT_PREFIX) :]) if expert.startswith(RUN_EXPERT_PREFIX) else None


def is_trained(expert: str) -> bool:
    """A trained policy (run:RUN_ID, or the task's shipped state-SAC expert) rather than a scripted one: it needs
    its checkpoint resolved (datasets.resolve_expert) before episodes are generated."""
    return expert == SHIPPED_EXPERT or run_id_of(expert) is not None


@dataclass(frozen=True)
class RunExpertSource:
    """What a dataset worker needs to load a run expert (picklable: workers are spawned processes)."""

    run_id: str
    kind: str  # sac | bc
    run_dir: str
    task: str
    action_repeat: int
    final_return: float | None = None
    name: str = ""  # the expert's name when not run:RUN_ID (a shipped expert: "shipped")
    checkpoint_sha256: str | None = None  # a shipped expert's policy.safetensors

    @property
    def expert_name(self) -> str:
        return self.name or f"{RUN_EXPERT_PREFIX}{self.run_id}"

    def lineage(self) -> dict:
        extra = {"expert": self.name, "sha256": self.checkpoint_sha256} if self.name else {}
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "task": self.task,
            "action_repeat": self.action_repeat,
            "final_return": self.final_return,
            **extra,
        }


class ExpertRefused(ValueError):
    """A run that cannot be an expert for this dataset; `status` is the HTTP status the trainer answers."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


def resolve_run_expert(runs, run_id: str, task: str) -> RunExpertSource:
    """Check that run `run_id` (in `runs`, a RunStore) can demonstrate `task`: it succeeded, it is a SAC or BC run on
    state features with the mean readout, and its task is `task`. ExpertRefused (404 / 409 / 422) otherwise."""
    from vjepa_robot_lab.records.runs import RunNotFound

    try:
        record = runs.get(run_id)
    except RunNotFound as exc:
        raise ExpertRefused(404, f"expert {RUN_EXPERT_PREFIX}{run_id}: {exc} (runs directory {runs.root})") from None
    want = task_spec(task).name
    lin = record.lineage
    from vjepa_robot_lab.records.run_kinds import RUN_KINDS

    with_network = [k.name for k in sorted(RUN_KINDS.values(), key=lambda k: -k.order) if k.network is not None]
    if record.kind not in with_network:  # a kind with a trained network (RunKind.network) can act as an expert
        raise ExpertRefused(
            422, f"expert run {run_id} is a {record.kind} run: a run expert is a {' or '.join(with_network)} run"
        )
    if record.status.value != "succeeded":
        raise ExpertRefused(409, f"expert run {run_id} is {record.status.value}: use it once it has succeeded")
    features = lin.features.value if lin else str(record.config.get("features"))
    if features != "state":
        raise ExpertRefused(
            422,
            f"expert run {run_id} acts on {features} features; run experts must be state-feature runs (a vjepa2 "
            "run would need the encoder inside every dataset worker): train state SAC on the task and use that run",
        )
    readout = (lin.readout.value if lin else None) or "mean"
    if readout != "mean":
        raise ExpertRefused(422, f"expert run {run_id} reads its features through readout {readout}; use a mean run")
    own = task_spec((lin.task if lin else None) or record.config.get("task") or "easy").name
    if own != want:
        raise ExpertRefused(
            422, f"expert run {run_id} was trained on task {own}, the dataset's task is {want}: they must match"
        )
    final_eval = getattr(record.metrics, "final_eval", None)  # SAC's final deterministic evaluation
    return RunExpertSource(
        run_id=run_id,
        kind=record.kind,
        run_dir=str(runs.path(run_id)),
        task=own,
        action_repeat=int(lin.action_repeat if lin else 1),
        final_return=final_eval.mean_return if final_eval is not None else None,
    )


class RunExpert(Expert):
    """A trained run's deterministic policy on the task's state features (tasks.TaskSpec.state)."""

    def __init__(self, source: RunExpertSource):
        self.name = source.expert_name
        self.spec = task_spec(source.task)
        from vjepa_robot_lab.records.run_kinds import run_kind

        network = run_kind(source.kind).network  # the kind's loader of its trained network (run_kinds.py)
        if network is None:
            raise ValueError(f"expert run {source.run_id} is a {source.kind} run: it has no trained network")
        self._policy = network(Path(source.run_dir))
        if int(self._policy.dim) != self.spec.state_dim:
            raise ValueError(
                f"expert run {source.run_id} reads {self._policy.dim}-d features; {self.spec.name}'s states are "
                f"{self.spec.state_dim}-d"
            )

    def act(self, physics, ts: TimeStep) -> np.ndarray:
        x = self.spec.state(ts.observation)[None]  # (1, S) float32
        return np.asarray(self._policy(x), np.float32).reshape(self.spec.action_dim)
