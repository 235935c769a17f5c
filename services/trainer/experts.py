"""Scripted experts for reacher. Each reads the simulator (privileged) and returns 2 torques in [-1, 1].

jacobian      Jacobian-transpose PD on the fingertip: a = clip(J^T (kp * to_target - kd * J qvel) / gear)
              kp=10, kd=0.5 (measured: 100% success on easy and hard over 200 steps; a smooth expert clones
              better than a stiff kp=1000 one)
p-controller  the findings' controller: the Cartesian error used directly as joint torque, k=5 (about 50%)
random        uniform torques (the random policy)
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np

from vjepa_robot_client.contract import ACTION_DIM, EXPERTS, ExpertName

from .env import TimeStep

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

    def __init__(self):
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, physics, ts: TimeStep) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, size=ACTION_DIM).astype(np.float32)


_REGISTRY: dict[str, Callable[[], Expert]] = {cls.name: cls for cls in (JacobianExpert, PController, RandomExpert)}
assert tuple(_REGISTRY) == EXPERTS, "the experts implemented here are the contract's ExpertName, no more, no less"


def make_expert(name: str) -> Expert:
    try:
        return _REGISTRY[ExpertName(name).value]()
    except (KeyError, ValueError):
        raise ValueError(f"unknown expert {name!r}: choose one of {', '.join(EXPERTS)}") from None
