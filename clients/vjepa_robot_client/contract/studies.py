"""Studies: one run per seed, aggregated across seeds."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ._base import RunStatus, _Open

# ----------------------------------------------------------------------------------------------------------------
# Studies: one run per seed, aggregated across seeds
# ----------------------------------------------------------------------------------------------------------------


class SeedInterval(_Open):
    """A quantity across seeds: mean with a 95% t-interval (Student's t, n-1 degrees of freedom) and the points."""

    n: int
    mean: float | None = None
    ci95: list[float] | None = Field(None, description="None with fewer than 2 seeds.")
    values: list[float] = Field(default_factory=list)
    iqm: float | None = Field(None, description="Interquartile mean of the values (Agarwal et al. 2021).")
    iqm_ci95: list[float] | None = Field(
        None, description="95% bootstrap interval of the IQM (seeds resampled; None with fewer than 2 seeds)."
    )


class StudyRun(_Open):
    run_id: str
    seed: int
    status: RunStatus
    final_metric: float | None = None
    success_rate: float | None = None
    success_ci95: list[float] | None = Field(None, description="This run's own Wilson interval.")
    mean_return: float | None = None
    eval_status: RunStatus | None = None
    error: str | None = None


class StudyRecord(_Open):
    study_id: str
    kind: str
    status: RunStatus
    seeds: list[int]
    run_ids: list[str]
    run_id: str = Field(description="The first run (the field a single-seed client reads).")
    config: dict[str, Any] = Field(default_factory=dict)
    metric: str = Field(
        description="final_metric of each run: BC validation MSE of the checkpoint it kept "
        "(val_loss at selected_epoch), SAC final_eval.mean_return."
    )
    final: SeedInterval | None = None
    success: SeedInterval | None = Field(
        None, description="Success rate across the seeds whose latest evaluation succeeded."
    )
    eval_request: dict[str, Any] | None = None
    runs: list[StudyRun] = Field(default_factory=list)
    created_at: str | None = None


class StudyList(_Open):
    studies: list[StudyRecord]


__all__ = ["SeedInterval", "StudyRun", "StudyRecord", "StudyList"]
