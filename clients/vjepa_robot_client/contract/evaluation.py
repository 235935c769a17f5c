"""Evaluation: targets (uniform, stratified), the request, episodes and results."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import ConfigDict, Field, StrictBool, field_validator, model_validator

from ._base import DictReadable, ExpertPolicy, RunStatus, Task, _Model, _Open


class EvalTargets(str, Enum):
    """Where evaluation episodes put the reacher target (vjepa_robot_lab/evaluation/evaluate.py, issue 22)."""

    uniform = "uniform"  # dm_control's own draw from each episode's seed (radius 0.05-0.20 m, any angle)
    stratified = "stratified"  # equal episodes near / middle / far from the base, angles spread: episodes % 3 == 0


STRATIFIED_EPISODES = {"episodes": 99, "final_eval_episodes": 30}  # defaults where targets=stratified: 33 / 10 a bin


def stratified_default(data: Any, targets: str, episodes: str) -> Any:
    """Before validation: with stratified targets and no episode count given, the count that fills the 3 bins."""
    if isinstance(data, dict) and str(getattr(data.get(targets), "value", data.get(targets))) == "stratified":
        if data.get(episodes) is None:
            data = {**data, episodes: STRATIFIED_EPISODES[episodes]}
    return data


def check_stratified(targets: EvalTargets, episodes: int, what: str = "episodes", task: Task = Task.easy) -> None:
    if targets == EvalTargets.stratified and task not in (Task.easy, Task.hard):
        raise ValueError(f"targets=stratified places reacher targets: task {task.value} has none (use uniform)")
    if targets == EvalTargets.stratified and episodes % 3:
        raise ValueError(
            f"targets=stratified spreads episodes evenly over 3 distance bins (near 0.05-0.10, middle 0.10-0.15, "
            f"far 0.15-0.20 m): {what} must be a multiple of 3 (e.g. 30 or 99), got {episodes}"
        )


DEFAULT_EVAL_IMAGE_SIZE = 256  # frames rendered for runs that recorded no frame size of their own


class EvalRequest(_Model):
    """An evaluation request; its defaults live here only (the SDK and CLI send just what the user gave)."""

    episodes: int = Field(100, ge=1, le=10_000)
    task: Task = Task.easy
    steps: int = Field(
        200,
        ge=10,
        le=10_000,
        description="Simulator steps per episode (a multiple of the run's action_repeat). Left out, a run is "
        "evaluated at its own episode length (SAC: its episode_steps; BC: its dataset's), a baseline at 200.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**31 - 1,
        description="Evaluation seed offset: episode k is seeded 1e9 + seed + k, a range no training episode uses.",
    )
    parallel_envs: int = Field(8, ge=1, le=256)
    image_size: int | None = Field(
        None,
        ge=16,
        le=1024,
        description="Frame size. Omitted: the run's own training "
        "frame size (lineage.image_size); a different size needs allow_image_size_change.",
    )
    allow_image_size_change: StrictBool = Field(
        False, description="Evaluate at an image_size other than the run's own."
    )
    gif_episodes: int = Field(2, ge=0, le=16, description="Episodes recorded as a GIF for the report.")
    targets: EvalTargets = Field(
        EvalTargets.uniform,
        description="Where the reacher targets go: uniform (dm_control's draw) or stratified (equal episodes near, "
        "middle and far from the base; episodes a multiple of 3).",
    )

    _stratified_default = model_validator(mode="before")(
        classmethod(lambda cls, d: stratified_default(d, "targets", "episodes"))
    )

    @model_validator(mode="after")
    def _stratified_episodes(self):
        check_stratified(self.targets, self.episodes, task=self.task)
        return self


class BaselineEvalRequest(EvalRequest):
    policy: ExpertPolicy = "jacobian"


class EpisodeResult(_Open):
    seed: int
    success: bool | None = Field(description="None where the task defines no success (every task but reacher's).")
    # `return` is a Python keyword: the attribute is `return_`, the JSON field is "return".
    return_: float = Field(alias="return")

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EvalResult(DictReadable, _Open):
    run_id: str
    eval_id: int | None = None
    status: RunStatus
    task: str | None = None
    success_rate: float | None = None
    success_ci95: list[float] | None = None
    mean_return: float | None = None
    episodes: list[EpisodeResult] = Field(default_factory=list)
    steps_per_second: float | None = None
    episodes_done: int | None = Field(None, description="Progress of a running evaluation.")
    episodes_total: int | None = None
    error: str | None = None
    request: dict[str, Any] | None = Field(None, description="The resolved EvalRequest this evaluation ran.")
    from_run: list[str] | None = Field(
        None, description="Request fields left out and taken from the run's own settings (task, steps, image_size)."
    )
    image_size: int | None = Field(None, description="Frame size rendered for the policy (None: no frames).")
    gif: list[str] | None = Field(None, description="Rollout GIFs the trainer wrote (paths on its disk).")
    created_at: str | None = None

    @field_validator("gif", mode="before")
    @classmethod
    def _gif_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


__all__ = [
    "EvalTargets",
    "STRATIFIED_EPISODES",
    "stratified_default",
    "check_stratified",
    "DEFAULT_EVAL_IMAGE_SIZE",
    "EvalRequest",
    "BaselineEvalRequest",
    "EpisodeResult",
    "EvalResult",
]
