"""Experts: scripted ones for reacher, and trained runs (`run:RUN_ID`) for any task.

Each reads the simulator (privileged) or its state and returns the task's actions in [-1, 1].

jacobian      Jacobian-transpose PD on the fingertip: a = clip(J^T (kp * to_target - kd * J qvel) / gear)
              kp=10, kd=0.5 (measured: 100% success on easy and hard over 200 steps; a smooth expert clones
              better than a stiff kp=1000 one)
p-controller  the findings' controller: the Cartesian error used directly as joint torque, k=5 (about 50%)
random        uniform torques (the random policy; any task: its action_dim from vjepa_robot_lab/envs/tasks.py)
run:RUN_ID    a trained state-feature run (SAC or BC): vjepa_robot_lab/policies/run_experts.py
shipped       the state-SAC expert shipped with the package for the task: vjepa_robot_lab/policies/shipped_experts.py
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np

from vjepa_robot_client.contract import ACTION_DIM, EXPERTS, ExpertName
from vjepa_robot_lab.envs.env import TimeStep
from vjepa_robot_lab.envs.tasks import task_spec

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
            f"expert {name!r} is scripted for reacher only; task {spec.name} has no scripted expert: use its shipped "
            f"state-SAC expert (expert shipped, docs/experts.md) or a trained run as the expert, run:RUN_ID (train "
            f"state SAC on {spec.name} first: docs/tasks.md)"
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
