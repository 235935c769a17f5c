"""Datasets: the create request, their info and lists."""

from __future__ import annotations

from pydantic import Field, StrictBool, field_validator, model_validator

from ._base import (
    EXPERTS,
    RUN_EXPERT_PREFIX,
    SHIPPED_EXPERT,
    DatasetState,
    ExpertName,
    Task,
    _Model,
    _Open,
    default_expert,
    validate_name,
    validate_run_id,
)


def validate_expert(value: str) -> str:
    """A scripted expert's name, `shipped` (the package's state-SAC expert for the task) or `run:<run id>` (a
    trained run's policy as the demonstrator)."""
    if isinstance(value, ExpertName):
        return value.value
    if isinstance(value, str) and value.startswith(RUN_EXPERT_PREFIX):
        validate_run_id(value[len(RUN_EXPERT_PREFIX) :])
        return value
    if value in EXPERTS or value == SHIPPED_EXPERT:
        return value
    raise ValueError(
        f"unknown expert {value!r}: choose one of {', '.join(EXPERTS)}, {SHIPPED_EXPERT} (the task's shipped "
        "state-SAC expert) or run:RUN_ID (a trained run)"
    )


class CreateDatasetRequest(_Model):
    name: str = Field(description="Dataset name: letters, digits, '_' or '-'.", examples=["jacobian-easy-150"])
    expert: str = Field(
        ExpertName.jacobian.value,
        description=f"A scripted expert ({', '.join(EXPERTS)}; reacher only), {SHIPPED_EXPERT} (the state-SAC "
        "expert shipped with the trainer for the dataset's task) or run:RUN_ID: a trained run's deterministic policy "
        "(state-feature SAC or BC runs; the run's task must be the dataset's). Omitted: jacobian on reacher, "
        f"{SHIPPED_EXPERT} on every other task.",
        examples=["jacobian", SHIPPED_EXPERT, "run:sac-1a2b3c4d"],
    )
    task: Task = Task.easy
    episodes: int = Field(100, ge=1, le=100_000)
    steps: int = Field(200, ge=1, le=10_000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    image_size: int = Field(256, ge=0, le=1024, description="Frame size; 0 stores no frames (state-only datasets).")
    workers: int = Field(2, ge=1, le=64)
    overwrite: StrictBool = False  # strict: "yes" or 1 is a 422, never an overwrite
    resume: StrictBool = Field(
        False,
        description="Complete an interrupted or failed dataset of this name with the same arguments (the CLI's "
        "--resume); 409 while its generator is alive.",
    )

    _name = field_validator("name")(lambda cls, v: validate_name(v, "dataset name"))
    _expert = field_validator("expert", mode="before")(lambda cls, v: validate_expert(v))

    @model_validator(mode="before")
    @classmethod
    def _task_default_expert(cls, data):
        """An omitted (or null) expert is the task's default (default_expert): jacobian on reacher, shipped else."""
        if isinstance(data, dict) and data.get("expert") is None:
            data = {**data, "expert": default_expert(data.get("task") or Task.easy)}
        return data

    @model_validator(mode="after")
    def _one_of_overwrite_resume(self):
        if self.overwrite and self.resume:
            raise ValueError("send overwrite (replace the dataset) or resume (complete it), not both")
        return self


class DatasetInfo(_Open):
    name: str
    status: DatasetState
    expert: str | None = None
    task: str | None = None
    episodes: int = 0
    episodes_done: int = 0
    steps: int = 0
    seed: int | None = None
    image_size: int | None = None
    success_rate: float | None = None
    mean_return: float | None = None
    created_at: str | None = None
    version: str | None = None
    error: str | None = None


class DatasetList(_Open):
    datasets: list[DatasetInfo]


__all__ = ["validate_expert", "CreateDatasetRequest", "DatasetInfo", "DatasetList"]
