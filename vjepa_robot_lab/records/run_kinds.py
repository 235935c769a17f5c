"""The run kinds, registered in one place: what a `bc`, `sac` or `baseline` run is.

    kind = run_kind(record.kind)              # RunKind, or UnknownRunKind naming the registered kinds
    name, value = kind.final(record)          # the headline training result: ("val_loss", 3.1e-3)
    metrics = kind.train(ctx, handle, cfg, features, resume=False, progress=False)
    policy, features = kind.load_policy(ctx, record)   # evaluate.Policy (+ the feature source to close)

Each kind declares its config and metrics models (the wire types of clients/.../contract.py), the request that
starts it (None: it is not trained), how it trains, how its policy is loaded, its final metric and the label the
report and the console use. Adding an algorithm means one `register(RunKind(...))` here, beside its own module
(bc.py, sac.py) and its request/config/metrics models in the contract: the routes (`POST /train/<name>`),
the jobs, the study aggregation and the report read this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from vjepa_robot_client.contract import (
    RUN_TYPES,
    BaselineConfig,
    BaselineMetrics,
    BCConfig,
    BCMetrics,
    RunRecord,
    SACConfig,
    SACMetrics,
    TrainBCRequest,
    TrainSACRequest,
)

if TYPE_CHECKING:  # only for annotations
    from vjepa_robot_lab.records.context import TrainerContext
    from vjepa_robot_lab.records.runs import RunHandle

TrainFn = Callable[..., dict]  # (ctx, handle, cfg, features, *, resume: bool, progress: bool) -> metrics
LoadFn = Callable[["TrainerContext", RunRecord], tuple[Any, Any]]  # -> (evaluate.Policy, feature source or None)


class UnknownRunKind(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown run kind {self.name!r}: this trainer knows {', '.join(RUN_KINDS)}"


@dataclass(frozen=True)
class TrainCommand:
    """What `vjepa-robot train <name>` exposes of the kind's request. vjepa_robot/train_commands.py builds the
    command from it and the request model: each option's help is the field's description (and choices), its
    default the model's, so the command cannot drift from the request."""

    summary: str  # the command's help line
    arguments: tuple[str, ...] = ()  # required request fields, given positionally (BC's DATASET)
    options: tuple[str, ...] = ()  # request fields as --options, in this order; sent only when given (left out:
    # the request's default, or its protocol's, fills them) unless named in `always`
    always: tuple[str, ...] = ()  # options sent every time, with the request model's default as their default
    # every trained kind also gets --seeds / --n-seeds (one run per seed) and the trainer, store and W&B options


@dataclass(frozen=True)
class RunKind:
    name: str  # the record's `kind`, the route's /train/<name>
    label: str  # "BC": report rows ("BC on state (dataset)"), plot labels, consoles
    config: type[BaseModel]
    metrics: type[BaseModel]
    request: type[BaseModel] | None  # the training request (POST /train/<name>); None: not trained (baseline)
    metric: str  # the name of final(): what a study aggregates across seeds
    final_metric: Callable[[RunRecord], float | None]
    load_policy: LoadFn
    train: TrainFn | None = None
    resumable: bool = False  # True: resume continues from the last checkpoint; False: it trains again
    higher_is_better: bool = False
    order: int = 9  # reading order in the report (baselines first)
    color: str = "tab:orange"  # its bars and legend patch
    command: TrainCommand | None = None  # `vjepa-robot train <name>` (trained kinds)

    def final(self, record: RunRecord) -> tuple[str, float | None]:
        """(metric name, value) of a run's headline training result; None until the run has one."""
        return self.metric, self.final_metric(record)


RUN_KINDS: dict[str, RunKind] = {}


def register(kind: RunKind) -> RunKind:
    if kind.name in RUN_KINDS:
        raise ValueError(f"run kind {kind.name!r} is registered twice")
    RUN_KINDS[kind.name] = kind
    RUN_TYPES.setdefault(kind.name, (kind.config, kind.metrics))  # so RunRecord types its config and metrics
    return kind


def run_kind(name: str) -> RunKind:
    try:
        return RUN_KINDS[name]
    except KeyError:
        raise UnknownRunKind(name) from None


def trained_kinds() -> list[RunKind]:
    """The kinds a request trains (each gets POST /train/<name>)."""
    return [k for k in RUN_KINDS.values() if k.request is not None]


def kind_of_request(req: BaseModel) -> RunKind:
    for k in trained_kinds():
        if type(req) is k.request or isinstance(req, k.request):  # type: ignore[arg-type]
            return k
    raise TypeError(f"no run kind trains a {type(req).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------------------------


def kept_val_loss(metrics: BCMetrics) -> float | None:
    """THE validation MSE of the checkpoint a BC run kept (its selected_epoch: the best epoch by default), not of
    its last epoch; the last epoch's val_loss for records that name no kept epoch."""
    curve, kept = metrics.val_loss_curve, metrics.selected_epoch
    if kept is not None and 1 <= kept <= len(curve) and curve[kept - 1] is not None:
        return curve[kept - 1]
    return metrics.val_loss


def _feature_policy(ctx: TrainerContext, record: RunRecord, policy_fn) -> tuple[Any, Any]:
    """A trained network on the run's feature source; refuses an encoder other than the one it trained on."""
    from vjepa_robot_lab.evaluation.evaluate import FeaturePolicy

    features = ctx.features(
        record.lineage.features.value if record.lineage else record.config["features"],
        record.lineage.task if record.lineage else None,  # sizes state features (tasks.py)
    )
    want = record.lineage.encoder_id if record.lineage else None
    have = getattr(features, "encoder_id", None)
    if want and have and want != have:
        features.close()
        raise ValueError(
            f"run {record.run_id} was trained on encoder {want} but the encoder service now serves "
            f"{have}: start the encoder with the same model, revision and dtype"
        )
    return FeaturePolicy(policy_fn, features), features


# ----------------------------------------------------------------------------------------------------------------
# The kinds
# ----------------------------------------------------------------------------------------------------------------


def _train_bc(ctx, handle: RunHandle, cfg, features, *, resume: bool = False, progress: bool = False) -> dict:
    from vjepa_robot_lab.learning.bc import train_bc

    return train_bc(cfg, handle, features, ctx.store, progress=progress)  # BC restarts: no resume state


def _load_bc(ctx, record: RunRecord):
    from vjepa_robot_lab.learning.bc import load_bc_policy

    return _feature_policy(ctx, record, load_bc_policy(ctx.runs.path(record.run_id)))


def _train_sac(ctx, handle: RunHandle, cfg, features, *, resume: bool = False, progress: bool = False) -> dict:
    from vjepa_robot_lab.learning.sac import train_sac

    return train_sac(cfg, handle, features, resume=resume)


def _load_sac(ctx, record: RunRecord):
    from vjepa_robot_lab.learning.sac import policy_from_checkpoint

    return _feature_policy(ctx, record, policy_from_checkpoint(ctx.runs.path(record.run_id)))


def _sac_final(record: RunRecord) -> float | None:
    fe = record.metrics.final_eval if isinstance(record.metrics, SACMetrics) else None
    return fe.mean_return if fe is not None else None


def _load_baseline(ctx, record: RunRecord):
    from vjepa_robot_lab.evaluation.evaluate import ExpertPolicy

    return ExpertPolicy(record.config["policy"], record.config["task"]), None


def _baseline_final(record: RunRecord) -> float | None:
    return record.metrics.success_rate if isinstance(record.metrics, BaselineMetrics) else None


BASELINE = register(
    RunKind(
        name="baseline",
        label="Baseline",
        config=BaselineConfig,
        metrics=BaselineMetrics,
        request=None,
        metric="success_rate",
        final_metric=_baseline_final,
        load_policy=_load_baseline,
        higher_is_better=True,
        order=0,
        color="tab:gray",
    )
)
BC = register(
    RunKind(
        name="bc",
        label="BC",
        config=BCConfig,
        metrics=BCMetrics,
        request=TrainBCRequest,
        metric="val_loss",
        final_metric=lambda r: kept_val_loss(r.metrics) if isinstance(r.metrics, BCMetrics) else None,
        load_policy=_load_bc,
        train=_train_bc,
        order=1,
        color="tab:blue",
        command=TrainCommand(
            summary="Behaviour cloning (the first study's MLP) on a dataset's features.",
            arguments=("dataset",),
            options=(
                "features",
                "epochs",
                "batch_size",
                "lr",
                "val_fraction",
                "select",
                "head",
                "protocol",
                "seed",
                "readout",
                "grid_size",
            ),
            always=("features", "seed", "grid_size"),
        ),
    )
)
SAC = register(
    RunKind(
        name="sac",
        label="SAC",
        config=SACConfig,
        metrics=SACMetrics,
        request=TrainSACRequest,
        metric="final_eval.mean_return",
        final_metric=_sac_final,
        load_policy=_load_sac,
        train=_train_sac,
        resumable=True,
        higher_is_better=True,
        order=2,
        color="tab:green",
        command=TrainCommand(
            summary="Soft Actor-Critic online in parallel envs on vjepa2 / state / random features.",
            options=(
                "features",
                "task",
                "total_steps",
                "parallel_envs",
                "episode_steps",
                "action_repeat",
                "networks",
                "seed",
                "readout",
                "grid_size",
            ),
            always=("features", "task", "seed", "readout", "grid_size"),
        ),
    )
)


__all__ = [
    "RunKind",
    "TrainCommand",
    "RUN_KINDS",
    "register",
    "run_kind",
    "trained_kinds",
    "kind_of_request",
    "kept_val_loss",
    "UnknownRunKind",
    "BASELINE",
    "BC",
    "SAC",
]
