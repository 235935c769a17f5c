"""Experts: scripted ones for reacher, and trained runs (`run:RUN_ID`) for any task.

Each reads the simulator (privileged) or its state and returns the task's actions in [-1, 1].

jacobian      Jacobian-transpose PD on the fingertip: a = clip(J^T (kp * to_target - kd * J qvel) / gear)
              kp=10, kd=0.5 (measured: 100% success on easy and hard over 200 steps; a smooth expert clones
              better than a stiff kp=1000 one)
p-controller  the findings' controller: the Cartesian error used directly as joint torque, k=5 (about 50%)
random        uniform torques (the random policy; any task: its action_dim from services/trainer/tasks.py)
run:RUN_ID    a trained state-feature run (SAC or BC) acting deterministically on the task's state features
              (tasks.TaskSpec.state): the demonstrator for tasks without a scripted expert (walker, cheetah, ...).
              RunExpertSource (picklable, for the dataset workers) names the run; resolve_run_expert checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from vjepa_robot_client.contract import ACTION_DIM, EXPERTS, RUN_EXPERT_PREFIX, ExpertName, validate_run_id

from .env import TimeStep
from .tasks import task_spec

GEAR = 0.05  # reacher motor gear (dm_control reacher.xml)


class Expert:
    name: str = "expert"

    def reset(self, seed: int) -> None:
        pass

    def act(self, physics, ts: TimeStep) -> np.ndarray:
        raise NotImplementedError


class JacobianExpert(Expert):
    name = ExpertName.jacobian.value

    def __init__(self, kp: float = 10.0, kd: float = 0.5):
        self.kp, self.kd = kp, kd
        self._jacp: np.ndarray | None = None

    def act(self, physics, ts: TimeStep) -> np.ndarray:
        model, data = physics.model.ptr, physics.data.ptr
        if self._jacp is None or self._jacp.shape[1] != model.nv:
            self._jacp = np.zeros((3, model.nv))
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "finger")
        # the finger geom sits at the origin of body `finger` (reacher.xml), so the body Jacobian is the fingertip's
        mujoco.mj_jacBody(model, data, self._jacp, None, body)
        jac = self._jacp[:2]  # (2, nv): xy rows
        qvel = np.asarray(data.qvel)
        force = self.kp * ts.observation["to_target"] - self.kd * jac @ qvel  # Cartesian PD force (2,)
        return np.clip(jac.T @ force / GEAR, -1.0, 1.0).astype(np.float32)


class PController(Expert):
    """The findings' expert: Cartesian error as joint torque. Kept to reproduce the findings' 20% ceiling."""

    name = ExpertName.p_controller.value

    def __init__(self, k: float = 5.0):
        self.k = k

    def act(self, physics, ts: TimeStep) -> np.ndarray:
        return np.clip(self.k * ts.observation["to_target"], -1.0, 1.0).astype(np.float32)


class RandomExpert(Expert):
    name = ExpertName.random.value

    def __init__(self, action_dim: int = ACTION_DIM):
        self._rng = np.random.default_rng(0)
        self.action_dim = action_dim

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, physics, ts: TimeStep) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, size=self.action_dim).astype(np.float32)


_REGISTRY: dict[str, Callable[[], Expert]] = {cls.name: cls for cls in (JacobianExpert, PController, RandomExpert)}
assert tuple(_REGISTRY) == EXPERTS, "the experts implemented here are the contract's ExpertName, no more, no less"


SCRIPTED_REACHER_ONLY = (ExpertName.jacobian.value, ExpertName.p_controller.value)  # they read reacher's geometry


def check_expert_task(name: str, task: str) -> None:
    """ValueError (422 at the services) when a scripted expert is asked for a task it cannot act on."""
    spec = task_spec(task)
    if name in SCRIPTED_REACHER_ONLY and not spec.is_reacher:
        raise ValueError(
            f"expert {name!r} is scripted for reacher only; task {spec.name} has no scripted expert: "
            f"use a trained run as the expert, run:RUN_ID (train state SAC on {spec.name} first: docs/tasks.md)"
        )


def make_expert(name: str, task: str = "easy") -> Expert:
    check_expert_task(name, task)
    try:
        kind = ExpertName(name).value
    except ValueError:
        raise ValueError(f"unknown expert {name!r}: choose one of {', '.join(EXPERTS)} or run:RUN_ID") from None
    if kind == ExpertName.random.value:
        return RandomExpert(task_spec(task).action_dim)
    return _REGISTRY[kind]()


# ----------------------------------------------------------------------------------------------------------------
# Trained runs as experts
# ----------------------------------------------------------------------------------------------------------------


def run_id_of(expert: str) -> str | None:
    """The run id of a `run:RUN_ID` expert name; None for a scripted expert."""
    return validate_run_id(expert[len(RUN_EXPERT_PREFIX) :]) if expert.startswith(RUN_EXPERT_PREFIX) else None


@dataclass(frozen=True)
class RunExpertSource:
    """What a dataset worker needs to load a run expert (picklable: workers are spawned processes)."""

    run_id: str
    kind: str  # sac | bc
    run_dir: str
    task: str
    action_repeat: int
    final_return: float | None = None

    def lineage(self) -> dict:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "task": self.task,
            "action_repeat": self.action_repeat,
            "final_return": self.final_return,
        }


class ExpertRefused(ValueError):
    """A run that cannot be an expert for this dataset; `status` is the HTTP status the trainer answers."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


def resolve_run_expert(runs, run_id: str, task: str) -> RunExpertSource:
    """Check that run `run_id` (in `runs`, a RunStore) can demonstrate `task`: it succeeded, it is a SAC or BC run on
    state features with the mean readout, and its task is `task`. ExpertRefused (404 / 409 / 422) otherwise."""
    from .runs import RunNotFound

    try:
        record = runs.get(run_id)
    except RunNotFound as exc:
        raise ExpertRefused(404, f"expert {RUN_EXPERT_PREFIX}{run_id}: {exc}") from None
    want = task_spec(task).name
    lin = record.lineage
    if record.kind not in ("sac", "bc"):
        raise ExpertRefused(422, f"expert run {run_id} is a {record.kind} run: a run expert is a sac or bc run")
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
    from .run_kinds import run_kind

    _, final = run_kind(record.kind).final(record)
    return RunExpertSource(
        run_id=run_id,
        kind=record.kind,
        run_dir=str(runs.path(run_id)),
        task=own,
        action_repeat=int(lin.action_repeat if lin else 1),
        final_return=final if record.kind == "sac" else None,
    )


class RunExpert(Expert):
    """A trained run's deterministic policy on the task's state features (tasks.TaskSpec.state)."""

    def __init__(self, source: RunExpertSource):
        self.name = f"{RUN_EXPERT_PREFIX}{source.run_id}"
        self.spec = task_spec(source.task)
        if source.kind == "sac":
            from .sac import policy_from_checkpoint

            self._policy = policy_from_checkpoint(Path(source.run_dir))
        else:
            from .bc import load_bc_policy

            self._policy = load_bc_policy(Path(source.run_dir))
        if int(self._policy.dim) != self.spec.state_dim:
            raise ValueError(
                f"expert run {source.run_id} reads {self._policy.dim}-d features; {self.spec.name}'s states are "
                f"{self.spec.state_dim}-d"
            )

    def act(self, physics, ts: TimeStep) -> np.ndarray:
        x = self.spec.state(ts.observation)[None]  # (1, S) float32
        return np.asarray(self._policy(x), np.float32).reshape(self.spec.action_dim)
