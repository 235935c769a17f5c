"""Run records: created, configs, lineage, metrics by run kind, lists; the trainer's GET /info."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ConfigDict, Field, model_serializer, model_validator

from ._base import DictReadable, ExpertPolicy, FeatureSource, Pooling, Readout, RunStatus, Task, _Open
from .bc import TrainBCRequest
from .evaluation import EvalResult
from .sac import TrainSACRequest


class RunCreated(_Open):
    """A started run; a multi-seed request also names its study and every run (run_id is the first run)."""

    run_id: str
    study_id: str | None = None
    run_ids: list[str] | None = None


class _Fields(_Open):
    """A typed record that also reads like the dict it replaced (record.metrics["epoch"], .get("epoch"))."""

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default

    def __contains__(self, key: str) -> bool:  # as for the dict: the keys the record carries
        fields = type(self).model_fields if self._defaults_count else self.model_fields_set
        return key in fields or key in (self.model_extra or {})

    _defaults_count: ClassVar[bool] = False  # configs: every field has a value; metrics: only what was written

    @model_serializer(mode="wrap")
    def _written_only(self, handler):  # metrics go back on the wire as written: no null for a key never set
        data = handler(self)
        if self._defaults_count or not isinstance(data, dict):
            return data
        keep = self.model_fields_set | set(self.model_extra or {})
        return {k: v for k, v in data.items() if k in keep}

    def keys(self):
        return self.model_dump(by_alias=True).keys()


class BCConfig(TrainBCRequest, _Fields):
    """A BC run's config: its request at one seed (records may carry fields a newer trainer added)."""

    _defaults_count: ClassVar[bool] = True

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class SACConfig(TrainSACRequest, _Fields):
    _defaults_count: ClassVar[bool] = True
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class BaselineConfig(_Fields):
    _defaults_count: ClassVar[bool] = True
    policy: ExpertPolicy
    task: Task = Task.easy


class RunLineage(_Fields):
    """What a policy saw in training, so evaluation can match it: one typed record, written where each fact is
    known (features and encoder where the feature source is opened, frames and dataset where the request is
    validated). Records written by older trainers are migrated into it by vjepa_robot_lab.records.runs.migrate."""

    _defaults_count: ClassVar[bool] = True

    features: FeatureSource
    dim: int | None = None
    encoder_id: str | None = Field(None, description="vjepa2 only: the encoder evaluation must match.")
    encoder_model: str | None = Field(
        None, description="vjepa2 only: the encoder's /info model (e.g. 'preset:tiny' or a hub id)."
    )
    encoder_image_size: int | None = Field(None, description="vjepa2 only: the encoder's input size (px).")
    encoder_dtype: str | None = None
    random_init: bool | None = Field(
        None,
        description="vjepa2 only: the encoder's weights are random (a stand-in, "
        "not a V-JEPA 2 result), as its /info said; None = not recorded.",
    )
    pooling: Pooling = Field(Pooling.mean, description="How the encoder reduced each window (vjepa2).")
    grid_size: int | None = Field(None, description="g of a grid answer (g*g tokens per window); None for mean.")
    readout: Readout = Field(Readout.mean, description="How the policy read its features.")
    dataset: str | None = None
    image_size: int | None = Field(
        None, description="Frame size (px) of the frames the policy learned from; None when its features use no frames."
    )
    action_repeat: int = Field(1, description="Simulator steps per action (SAC); evaluation acts at the same rate.")
    task: str | None = Field(None, description="The task it trained on (SAC: its request's; BC: its dataset's).")
    # issue 18 item 2: the encoder's pinned weights and what it is, from its GET /info (None: not recorded)
    weights: str | None = Field(
        None,
        description="vjepa2 only: EncoderInfo.weights, the loaded weights pinned (hub "
        "commit sha, 'sha256:<hex>' of a local directory, or 'random-init:...').",
    )
    family: str | None = Field(None, description="vjepa2 only: the backbone family (vjepa2, videomae, dinov2, siglip).")
    fusion: str | None = Field(None, description="vjepa2 only: how an image family fused the window's frames.")
    token_pooling: str | None = Field(None, description="vjepa2 only: how one forward's tokens became a vector.")
    family_label: str | None = Field(None, description="vjepa2 only: EncoderInfo.family_label, the family's name.")

    @property
    def is_stand_in(self) -> bool:
        """vjepa2 features from a random-init encoder: a plumbing check, not a V-JEPA 2 result."""
        return self.features == FeatureSource.vjepa2 and bool(self.random_init)


class BCMetrics(_Fields):
    """What BC writes: every epoch (epoch/epochs, losses and curves), then the final fit statistics."""

    epoch: int | None = None
    epochs: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    train_loss_curve: list[float | None] = Field(default_factory=list)
    val_loss_curve: list[float | None] = Field(default_factory=list)
    checkpoint: str | None = None
    select: str | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    selected_epoch: int | None = Field(None, description="1-based epoch whose weights the run kept.")
    n_train: int | None = None
    n_val: int | None = None
    train_s: float | None = None
    features_lineage: dict[str, Any] | None = Field(
        None,
        description="The feature source's lineage as BC wrote it "
        "(read RunRecord.lineage instead: the one typed lineage).",
    )


class SACFinalEval(_Fields):
    mean_return: float
    std_return: float | None = None
    success_rate: float | None = None
    episodes: int | None = None
    returns: list[float] = Field(default_factory=list)


class SACCurvePoint(_Open):
    """One learning-curve point: a deterministic evaluation during training."""

    env_steps: int
    mean_return: float | None = None
    std_return: float | None = None
    success_rate: float | None = None
    eval_episodes: int | None = None


class SACMetrics(_Fields):
    """What SAC writes: progress (env_steps of total_steps), the learning curve, then the final evaluation."""

    env_steps: int | None = None
    total_steps: int | None = None
    agent_steps: int | None = None
    updates: int | None = None
    action_repeat: int | None = None
    curve: list[SACCurvePoint] = Field(default_factory=list)
    final_eval: SACFinalEval | None = None
    features_lineage: dict[str, Any] | None = None


class BaselineMetrics(_Fields):
    success_rate: float | None = None


RUN_TYPES: dict[str, tuple[type[_Fields], type[_Fields]]] = {
    "bc": (BCConfig, BCMetrics),
    "sac": (SACConfig, SACMetrics),
    "baseline": (BaselineConfig, BaselineMetrics),
}


def typed_fields(kind: str, config: Any, metrics: Any) -> tuple[_Fields, _Fields]:
    """A run's config and metrics as the models of its kind; a record they do not fit stays readable as _Fields."""
    config_t, metrics_t = RUN_TYPES.get(kind, (_Fields, _Fields))
    out = []
    for model, raw in ((config_t, config), (metrics_t, metrics)):
        if isinstance(raw, _Fields):
            out.append(raw)
            continue
        try:
            out.append(model.model_validate(raw or {}))
        except ValueError:
            out.append(_Fields.model_validate(raw or {}))
    return out[0], out[1]


class RunRecord(DictReadable, _Open):
    """A run as the trainer stores and serves it; config and metrics are the models of its kind (RUN_TYPES)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), validate_assignment=True)

    run_id: str
    kind: str = Field(description="A run kind the trainer registers (GET /info run_kinds): bc, sac, baseline.")
    status: RunStatus
    config: BCConfig | SACConfig | BaselineConfig | _Fields = Field(default_factory=_Fields)
    metrics: BCMetrics | SACMetrics | BaselineMetrics | _Fields = Field(default_factory=_Fields)
    lineage: RunLineage | None = None
    study_id: str | None = None
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    evaluations: list[EvalResult] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _typed_by_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" in data:
            data = dict(data)
            data["config"], data["metrics"] = typed_fields(data["kind"], data.get("config"), data.get("metrics"))
        return data

    @property
    def is_stand_in(self) -> bool:
        """Trained on a random-init V-JEPA 2 encoder (lineage.random_init): a plumbing check."""
        return self.lineage is not None and self.lineage.is_stand_in


class RunList(_Open):
    runs: list[RunRecord]


class TrainerInfo(_Open):
    """GET /info of the trainer: what it is, where it keeps things, what it can do."""

    version: str
    store: str | None = None
    runs_dir: str
    encoder_url: str | None = None
    auth: bool = Field(description="Whether requests need a bearer token.")
    job_workers: int
    run_kinds: list[str]
    feature_sources: list[str]
    experts: list[str]
    shipped_experts: list[str] = Field(
        default_factory=list, description="Tasks with a shipped state-SAC expert (the dataset expert `shipped`)."
    )
    tasks: list[str]
    routes: list[str] = Field(default_factory=list, description="Method and path of every API route.")


__all__ = [
    "RunCreated",
    "_Fields",
    "BCConfig",
    "SACConfig",
    "BaselineConfig",
    "RunLineage",
    "BCMetrics",
    "SACFinalEval",
    "SACCurvePoint",
    "SACMetrics",
    "BaselineMetrics",
    "RUN_TYPES",
    "typed_fields",
    "RunRecord",
    "RunList",
    "TrainerInfo",
]
