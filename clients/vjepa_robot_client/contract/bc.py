"""Behaviour cloning's request (POST /train/bc)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ._base import FeatureSource, Readout, validate_name
from .training import Protocol, _ReadoutChoice, _Seeded


class TrainBCRequest(_Seeded, _ReadoutChoice):
    dataset: str
    features: FeatureSource = FeatureSource.vjepa2
    epochs: int = Field(100, ge=1, le=10_000)
    batch_size: int = Field(256, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0, le=1.0)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    select: Literal["best_val", "last"] = Field(
        "best_val", description="Which epoch's weights the run keeps: lowest validation MSE, or the last epoch."
    )
    # issue 18 item 5: the head CortexBench's DMC recipe trains, and the preset that sets it (protocols.py)
    head: Literal["findings", "batchnorm"] = Field(
        "findings",
        description="findings: Linear-LayerNorm-ReLU (256, 64) + Tanh (the first "
        "study's MLP); batchnorm: BatchNorm1d on the input features, then ReLU layers of hidden_sizes and a linear "
        "output (mjrl's BatchNormMLP, as CortexBench trains it).",
    )
    hidden_sizes: list[int] | None = Field(
        None, min_length=1, max_length=8, description="Hidden widths; None: the head's own ((256, 64) or (256,)*3)."
    )
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="cosine decay over the epochs (the findings), or Adam at a constant lr (CortexBench)."
    )
    protocol: Protocol | None = Field(
        None,
        description="A named recipe (vjepa_robot_lab/experiments/protocols.py): its values fill every field the "
        "request leaves out; cortexbench = eai-vc's DMC BC recipe (docs/bakeoff.md).",
    )

    _name = field_validator("dataset")(lambda cls, v: validate_name(v, "dataset name"))

    @field_validator("hidden_sizes")
    @classmethod
    def _widths(cls, v):
        if v is not None and any(w < 1 or w > 8192 for w in v):
            raise ValueError(f"hidden_sizes must be widths in [1, 8192], got {v}")
        return v

    @model_validator(mode="after")
    def _pixels_read_mean(self):
        if self.features == FeatureSource.pixels and self.readout != Readout.mean:
            raise ValueError(
                f"features 'pixels' train their own conv encoder on the frames: readout must be 'mean' (the "
                f"encoder's flattened output into the MLP), not {self.readout.value!r}"
            )
        return self


__all__ = ["TrainBCRequest"]
