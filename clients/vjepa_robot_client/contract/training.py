"""What every training request shares: seeds (studies) and the readout choice; named protocols."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, model_validator

from ._base import DEFAULT_GRID_SIZE, Readout, _Model, validate_run_id

MAX_SEEDS = 32


class _Seeded(_Model):
    """Seeds as an axis: `seeds` (or `n_seeds`) starts one run per seed under a shared study id."""

    seeds: list[int] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SEEDS,
        description="One run per training seed, under one study (GET /studies/{id}).",
    )
    n_seeds: int | None = Field(None, ge=1, le=MAX_SEEDS, description="Shorthand for seeds = seed .. seed+n_seeds-1.")
    study_id: str | None = Field(None, description="Set by the trainer on each run of a study; leave it out.")

    @model_validator(mode="after")
    def _one_seed_axis(self):
        if self.seeds is not None and self.n_seeds is not None:
            raise ValueError("give seeds or n_seeds, not both")
        if self.seeds is not None:
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds must be distinct, got {self.seeds}")
            if any(s < 0 or s > 2**31 - 1 for s in self.seeds):
                raise ValueError(f"seeds must be in [0, 2^31-1], got {self.seeds}")
        if self.study_id is not None:
            validate_run_id(self.study_id)
        return self

    @property
    def is_study(self) -> bool:
        return self.seeds is not None or self.n_seeds is not None

    def run_seeds(self) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        if self.n_seeds is not None:
            return [self.seed + k for k in range(self.n_seeds)]  # type: ignore[attr-defined]
        return [self.seed]  # type: ignore[attr-defined]

    def for_seed(self, seed: int, study_id: str | None):
        """The config of one run: this request at one seed, with the study it belongs to."""
        return self.model_copy(update={"seed": seed, "seeds": None, "n_seeds": None, "study_id": study_id})


class _ReadoutChoice(_Model):
    """How the policy reads its features (BC and SAC alike); vjepa_robot_lab/perception/readouts.py and
    docs/readouts.md."""

    readout: Readout = Field(
        Readout.mean,
        description="mean: the MLP on the mean-pooled embedding; attentive: a "
        "cross-attention pooler over the stored token grid (V-JEPA 2's attentive probe), then "
        "the MLP; flare: the MLP on CortexBench's fusion of the last 3 windows' embeddings.",
    )
    grid_size: int = Field(
        DEFAULT_GRID_SIZE,
        ge=1,
        le=64,
        description="attentive only: the token grid is g x g (g*g tokens per window); ignored by mean and flare.",
    )


class Protocol(str, Enum):
    """A named evaluation recipe (vjepa_robot_lab/experiments/protocols.py)."""

    cortexbench = "cortexbench"  # facebookresearch/eai-vc cortexbench/mujoco_vc, DMC_BC_config.yaml + train_loop.py


PROTOCOLS: tuple[str, ...] = tuple(p.value for p in Protocol)


__all__ = ["MAX_SEEDS", "_Seeded", "_ReadoutChoice", "Protocol", "PROTOCOLS"]
