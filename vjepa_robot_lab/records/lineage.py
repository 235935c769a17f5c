"""The lineage a run starts with and the facts added once its feature source is open: written once, used by the
trainer's job layer and by a bake-off cell running anywhere (experiments/bakeoff.py)."""

from __future__ import annotations

from vjepa_robot_client.contract import RunLineage, TrainBCRequest, TrainSACRequest
from vjepa_robot_lab.records.context import TrainerContext
from vjepa_robot_lab.records.refused import Refused
from vjepa_robot_lab.records.run_kinds import kind_of_request
from vjepa_robot_lab.records.runs import lineage_from_features


def train_lineage(ctx: TrainerContext, req: TrainBCRequest | TrainSACRequest) -> RunLineage:
    """Validate a training request and return the lineage its runs start with: the readout and the pooling it
    reads (vjepa_robot_lab/perception/readouts.py), and what the run kind's lineage hook says (frame size, action
    repeat, task; a BC run's dataset: run_kinds.py)."""
    from vjepa_robot_lab.perception.readouts import check_readout, readout_lineage

    try:
        check_readout(req.features.value, req.readout)
    except ValueError as exc:
        raise Refused(422, str(exc)) from None
    readout = readout_lineage(req.readout, req.grid_size)  # readout, pooling, grid_size
    kind = kind_of_request(req)
    own = kind.lineage(ctx, req) if kind.lineage is not None else {}
    return RunLineage(features=req.features, **own, **readout)


def encoder_lineage(features, cfg) -> dict:
    """The lineage facts known once the feature source is open: dim, and for vjepa2 the encoder the source
    loaded (id, model, input size, dtype, and `random_init` as the encoder's GET /info states it: None from an
    encoder too old to say), its pooling, and the readout the config asks for."""
    lin = lineage_from_features(features.lineage())
    info = getattr(features, "info", None)  # vjepa2: the EncoderInfo the source read from GET /info
    if info is not None:
        lin["random_init"] = getattr(info, "random_init", None)
        for key in ("weights", "family", "fusion", "token_pooling", "family_label"):  # issue 18: pinned weights
            lin[key] = getattr(info, key, None)
    for key in ("pooling", "grid_size"):  # a source reading a pooled grid says so itself
        value = getattr(features, key, None)
        if value is not None:
            lin[key] = getattr(value, "value", value)
    readout = getattr(cfg, "readout", None)  # a config field once readouts land; mean before
    lin["readout"] = getattr(readout, "value", readout) or "mean"
    return lin
