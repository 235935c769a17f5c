"""The run kinds, registered in one place: what a `bc`, `sac` or `baseline` run is.

    kind = run_kind(record.kind)              # RunKind, or UnknownRunKind naming the registered kinds
    name, value = kind.final(record)          # the headline training result: ("val_loss", 3.1e-3)
    metrics = kind.train(ctx, handle, cfg, features, resume=False, progress=False)
    policy, features = kind.load_policy(ctx, record)   # evaluate.Policy (+ the feature source to close)

Each kind declares its config and metrics models (wire types: the SDK's contract package), the request that
starts it (None: it is not trained), and its hooks: how a request is completed (a protocol) and what lineage its
runs start with, how it trains, how its trained network and its policy are loaded (evaluation, run experts), its
final metric, whether it has learning curves, and the label, colour and order the report and the console use.
Adding an algorithm means its own module (learning/bc.py, learning/sac.py) and one `register(RunKind(...))` here
(its request/config/metrics models in the contract): the routes (`POST /train/<name>`), the CLI's
`train <name>` (RunKind.command), the jobs, run experts, the study aggregation and the report read this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

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
from vjepa_robot_lab.records.refused import Refused

if TYPE_CHECKING:  # only for annotations
    from vjepa_robot_lab.records.context import TrainerContext
    from vjepa_robot_lab.records.runs import RunHandle

TrainFn = Callable[..., dict]  # (ctx, handle, cfg, features, *, resume: bool, progress: bool) -> metrics
LoadFn = Callable[["TrainerContext", RunRecord], tuple[Any, Any]]  # -> (evaluate.Policy, feature source or None)
NetworkFn = Callable[[Path], Any]  # run directory -> its trained network: policy(features (B, D)) -> actions (B, A)
LineageFn = Callable[["TrainerContext", Any], dict]  # (ctx, request) -> RunLineage fields; raises Refused


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
    prepare: Callable[[Any], Any] | None = None  # the request completed before anything (BC: its protocol's values)
    lineage: LineageFn | None = None  # the lineage its runs start with, from the request (refuses what cannot run)
    network: NetworkFn | None = None  # its trained network from a run directory (evaluation, run:RUN_ID experts)
    has_curves: Callable[[RunRecord], bool] = lambda record: False  # the report plots its learning curves
    eval_is_run: bool = False  # evaluating it is the run (baseline): the run's status and metrics follow it
    training_result: Callable[[dict], str | None] = lambda metrics: None  # `runs list`'s result of a run not
    # evaluated yet, from its metrics (as stored: a dict)

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


def _needs_frames(features) -> bool:
    from vjepa_robot_client.contract import needs_frames

    return needs_frames(features)  # vjepa2 and pixels read the rendered frames


def _network_policy(ctx, record: RunRecord):
    """A trained kind's load_policy: its network (RunKind.network) on the run's feature source."""
    return _feature_policy(ctx, record, run_kind(record.kind).network(ctx.runs.path(record.run_id)))  # type: ignore[misc]


def _prepare_bc(req: TrainBCRequest) -> TrainBCRequest:
    from vjepa_robot_lab.experiments.protocols import apply_bc

    return apply_bc(req)  # a named protocol fills the fields the request left out (protocols.py)


def _bc_lineage(ctx, req: TrainBCRequest) -> dict:
    """A BC run starts from its dataset: the dataset's frame size (vjepa2), action repeat and task."""
    meta = ctx.ready_dataset(req.dataset)
    size = meta.get("image_size") if _needs_frames(req.features) else None
    if _needs_frames(req.features) and not size:
        raise Refused(
            409,
            f"dataset {req.dataset!r} stores no frames (image_size 0): {req.features.value} features need "
            "frames; re-create it with --image-size 256, or train on state features",
        )
    # a dataset rolled out by a run expert acted at that run's action repeat (datasets.py): BC acts at it too
    repeat, task = int(meta.get("action_repeat") or 1), meta.get("task") or "easy"
    return {"dataset": req.dataset, "image_size": size, "action_repeat": repeat, "task": task}


def _train_bc(ctx, handle: RunHandle, cfg, features, *, resume: bool = False, progress: bool = False) -> dict:
    from vjepa_robot_lab.learning.bc import train_bc

    return train_bc(cfg, handle, features, ctx.store, progress=progress)  # BC restarts: no resume state


def _bc_network(run_dir: Path):
    from vjepa_robot_lab.learning.bc import load_bc_policy

    return load_bc_policy(run_dir)


def _bc_has_curves(record: RunRecord) -> bool:
    return isinstance(record.metrics, BCMetrics) and bool(record.metrics.train_loss_curve)


def _bc_training_result(m: dict) -> str | None:
    if m.get("val_loss") is None:
        return None
    kept = m.get("selected_epoch")
    return f"val MSE {m.get('best_val_loss') or m['val_loss']:.2e}" + (f" (epoch {kept})" if kept else "")


def _sac_training_result(m: dict) -> str | None:
    final = (m.get("final_eval") or {}).get("mean_return")
    return None if final is None else f"final return {float(final):,.1f}"


def check_replay_memory(req: TrainSACRequest) -> None:
    """Refuse (422) a buffer_size whose replay buffer cannot fit in the memory available now (psutil), before any
    run is recorded: the buffer (vjepa_robot_lab/learning/replay.py: float16 observations, float32 actions, reward,
    done and timeout, a terminal flag) is allocated whole when training starts. vjepa2 features count as 1-d here
    (their width is known only once the encoder answers): a lower bound, so only sizes that cannot fit are refused."""
    import psutil

    from vjepa_robot_client.contract import FeatureSource
    from vjepa_robot_lab.envs.tasks import task_spec

    spec = task_spec(req.task.value)
    feature = FeatureSource(req.features)
    if feature == FeatureSource.state:
        dim = spec.state_dim
    elif feature == FeatureSource.vjepa2:
        dim = 1
    else:
        from vjepa_robot_lab.perception.features import RandomFeatures

        dim = RandomFeatures().dim
    per_transition = 2 * dim + 4 * spec.action_dim + 3 * 4 + 1
    need, available = int(req.buffer_size) * per_transition, psutil.virtual_memory().available
    if need > available:
        raise Refused(
            422,
            f"buffer_size {req.buffer_size} needs at least {need / 2**30:.1f} GiB for the replay buffer "
            f"({per_transition} bytes per transition with {req.features.value} features), more than the "
            f"{available / 2**30:.1f} GiB of memory available: send buffer_size <= {available // per_transition}",
        )


def complete_sac(req: TrainSACRequest) -> TrainSACRequest:
    """SAC's request completed before anything: a request that leaves `action_repeat` out gets its task's
    (TaskSpec.action_repeat in vjepa_robot_lab/envs/tasks.py: reacher and cheetah 4, walker and finger 2, cartpole
    8), validated again so the episode-length checks run on the filled value and the run's config names it. An
    explicit `action_repeat` is kept as sent. Refused(422) when the task's value does not divide the episodes."""
    if req.action_repeat is not None:
        return req
    from vjepa_robot_lab.envs.tasks import action_repeat

    repeat = action_repeat(req.task)
    try:
        return type(req).model_validate({**req.model_dump(exclude_unset=True), "action_repeat": repeat})
    except ValidationError as exc:
        why = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
        raise Refused(
            422, f"action_repeat left out: task {req.task.value}'s is {repeat} (send action_repeat to choose): {why}"
        ) from None


def _sac_lineage(ctx, req: TrainSACRequest) -> dict:
    """A SAC run renders its own frames (vjepa2) at the request's size and acts at its action repeat; a replay
    buffer that cannot fit in memory is refused first."""
    check_replay_memory(req)
    size = req.image_size if _needs_frames(req.features) else None
    return {"image_size": size, "action_repeat": req.action_repeat, "task": req.task.value}


def _train_sac(ctx, handle: RunHandle, cfg, features, *, resume: bool = False, progress: bool = False) -> dict:
    from vjepa_robot_lab.learning.sac import train_sac

    if cfg.action_repeat is None:  # a record whose config never named it (written before the field): its lineage
        lin = handle.record.lineage  # says the rate it acted at (records/runs.py migrates that)
        cfg = cfg.model_copy(update={"action_repeat": int(lin.action_repeat) if lin else 1})
    return train_sac(cfg, handle, features, resume=resume)


def _sac_network(run_dir: Path):
    from vjepa_robot_lab.learning.sac import policy_from_checkpoint

    return policy_from_checkpoint(run_dir)


def _sac_has_curves(record: RunRecord) -> bool:
    return isinstance(record.metrics, SACMetrics) and bool(record.metrics.curve)


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
        eval_is_run=True,
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
        load_policy=_network_policy,
        train=_train_bc,
        prepare=_prepare_bc,
        lineage=_bc_lineage,
        network=_bc_network,
        has_curves=_bc_has_curves,
        training_result=_bc_training_result,
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
        load_policy=_network_policy,
        train=_train_sac,
        prepare=complete_sac,
        lineage=_sac_lineage,
        network=_sac_network,
        has_curves=_sac_has_curves,
        training_result=_sac_training_result,
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
    "complete_sac",
    "UnknownRunKind",
    "BASELINE",
    "BC",
    "SAC",
]
