"""The bake-off: encoders x readouts x tasks x seeds as studies, one table and one figure."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ._base import DEFAULT_GRID_SIZE, NAME_PATTERN, FeatureSource, Readout, RunStatus, Task, _Model, _Open
from .datasets import validate_expert
from .studies import SeedInterval
from .training import MAX_SEEDS, Protocol

# ----------------------------------------------------------------------------------------------------------------
# Bake-off (issue 18 item 6): encoders x readouts x tasks x seeds as studies, one table and one figure
# ----------------------------------------------------------------------------------------------------------------


class BakeoffRequest(_Model):
    """POST /bakeoff. Every field left out comes from `protocol` (vjepa_robot_lab/experiments/protocols.py), else from
    the
    small defaults of services/trainer/bakeoff.py; the resolved values are recorded in the bake-off."""

    encoders: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Encoder service URLs, each serving one model (GET /info); on the trainer's route only URLs "
        "it was configured with (--encoder-url, VJEPA_ROBOT_ENCODER_URLS).",
    )
    baselines: list[FeatureSource] = Field(
        default_factory=list,
        max_length=8,
        description="Feature-source rows beside the encoders' (state, random, ...): one cell per task each.",
    )
    executor: Literal["local", "modal", "slurm"] = Field(
        "local", description="Where the cells run: local (cell_workers at once), modal (.map), slurm (submitit)."
    )
    cell_workers: int = Field(1, ge=1, le=64, description="Cells at once (local; slurm/submitit: jobs in flight).")
    tasks: list[Task] = Field(default_factory=lambda: [Task.easy], min_length=1, max_length=16)
    experts: dict[str, str] = Field(
        default_factory=dict,
        description="Per task, the demonstrator of its dataset: an expert name, shipped or run:RUN_ID; default "
        "jacobian on reacher, shipped (the package's state-SAC expert for the task) on every other task.",
    )
    readouts: list[Readout] = Field(default_factory=lambda: [Readout.mean, Readout.flare], min_length=1)
    seeds: list[int] | None = Field(None, min_length=1, max_length=MAX_SEEDS, description="BC training seeds.")
    protocol: Protocol | None = None
    episodes: int | None = Field(None, ge=1, le=100_000, description="Demos per task.")
    steps: int | None = Field(None, ge=10, le=10_000, description="Simulator steps per demo and evaluation episode.")
    image_size: int | None = Field(None, ge=16, le=1024, description="Rendered frame size (px).")
    dataset_seed: int | None = Field(None, ge=0, le=2**31 - 1)
    dataset: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="One task only: use the stored dataset of this name as the demos (its encodings are reused) "
        "instead of `demos-<task>-<hash>`; its lineage (expert, task, episodes, steps, seed, image size) must match "
        "the bake-off's, else the dataset stage fails naming both.",
    )
    epochs: int | None = Field(None, ge=1, le=10_000)
    pixels_epochs: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Epochs of the `pixels` baseline row (a conv encoder trained with the policy costs ~100x an MLP "
        "step on a CPU); default: epochs.",
    )
    batch_size: int | None = Field(None, ge=1, le=65_536)
    eval_episodes: int | None = Field(None, ge=1, le=10_000)
    eval_seed: int | None = Field(None, ge=0, le=2**31 - 1)
    parallel_envs: int | None = Field(None, ge=1, le=256)
    workers: int | None = Field(None, ge=1, le=64, description="Dataset generation processes.")
    grid_size: int = Field(DEFAULT_GRID_SIZE, ge=1, le=64, description="readout attentive: g x g tokens.")

    @model_validator(mode="after")
    def _distinct(self):
        if not self.encoders and not self.baselines:
            raise ValueError("name at least one row: encoders (service URLs) and/or baselines (e.g. state)")
        if FeatureSource.vjepa2 in self.baselines:
            raise ValueError("baselines takes feature sources without an encoder (state, random, ...): give a vjepa2 "
                             "encoder's URL in encoders")  # fmt: skip
        for name in ("encoders", "baselines", "tasks", "readouts", "seeds"):
            v = getattr(self, name)
            if v is not None and len(set(v)) != len(v):
                raise ValueError(f"{name} must be distinct, got {[getattr(x, 'value', x) for x in v]}")
        if self.seeds is not None and any(s < 0 or s > 2**31 - 1 for s in self.seeds):
            raise ValueError(f"seeds must be in [0, 2^31-1], got {self.seeds}")
        tasks = {t.value for t in self.tasks}
        if self.dataset is not None and (len(tasks) != 1 or self.protocol is not None):
            raise ValueError(f"dataset {self.dataset!r} names one task's demos: send one task and no protocol")
        extra = sorted(set(self.experts) - tasks)
        if extra and not (self.protocol is not None and "tasks" not in self.model_fields_set):  # else: its tasks
            raise ValueError(f"experts names task(s) {extra} that are not in tasks {sorted(tasks)}")
        for task, expert in self.experts.items():
            try:
                validate_expert(expert)
            except ValueError as exc:
                raise ValueError(f"task {task!r}: {exc}") from None
        return self


class BakeoffCell(_Open):
    """One (encoder, task, readout) or (baseline, task): a BC study over the seeds, evaluated on the same episodes;
    a self-contained job (vjepa_robot_lab/experiments/bakeoff.py) that any executor can run."""

    key: str | None = Field(None, description="The cell's id in its bake-off (cell-000, ...).")
    features: str = Field("vjepa2", description="vjepa2 (an encoder's row) or a baseline feature source.")
    encoder_url: str | None = None
    encoder_id: str | None = None
    model: str | None = Field(None, description="The encoder's /info model (preset:NAME, hub id or directory).")
    family: str | None = None
    family_label: str | None = Field(None, description="The encoder's /info family_label: how the table names it.")
    weights: str | None = Field(None, description="The encoder's pinned weights (EncoderInfo.weights).")
    random_init: bool | None = None
    stand_in: bool = Field(False, description="Random-init weights: a plumbing check, not a result of the model.")
    task: str
    readout: str
    dataset: str | None = None
    study_id: str | None = None
    run_ids: list[str] = Field(default_factory=list)
    status: RunStatus = RunStatus.queued
    score: SeedInterval | None = Field(None, description="Mean evaluation return across seeds (95% t-interval).")
    success: SeedInterval | None = Field(None, description="Success rate across seeds, where the task defines one.")
    error: str | None = None
    attempts: int = Field(0, description="Times the cell was started (a resume starts an unfinished cell again).")
    dataset_reused: bool | None = Field(None, description="Its demos were in the store already (nothing rendered).")
    timings: dict[str, float] = Field(default_factory=dict, description="dataset_s, train_s, eval_s (its last run).")
    host: str | None = Field(None, description="Where the cell last ran.")


class BakeoffRecord(_Open):
    bakeoff_id: str
    status: RunStatus
    protocol: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="The resolved settings every cell ran with.")
    request: dict[str, Any] = Field(default_factory=dict)
    datasets: dict[str, str] = Field(default_factory=dict, description="task -> dataset name.")
    demo_returns: dict[str, float | None] = Field(
        default_factory=dict, description="task -> the demonstrator's mean return over its demos (the reference)."
    )
    cells: list[BakeoffCell] = Field(default_factory=list)
    executor: str = "local"
    cell_workers: int = 1
    plan: dict[str, Any] = Field(
        default_factory=dict,
        description="The cost plan recorded before the bake-off started: workload (cells, frames to render, windows "
        "to encode, BC steps) and an estimate per executor from rates measured on the machine that ran it.",
    )
    resumes: int = Field(0, description="Times the bake-off was resumed.")
    table: str | None = Field(None, description="The markdown table (also written to table_path).")
    table_path: str | None = None
    figure_path: str | None = None
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class BakeoffList(_Open):
    bakeoffs: list[BakeoffRecord]


__all__ = ["BakeoffRequest", "BakeoffCell", "BakeoffRecord", "BakeoffList"]
