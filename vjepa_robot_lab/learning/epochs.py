"""Per-epoch bookkeeping shared by every BC fit (frozen features in bc.py, pixels trained end to end in
perception/pixels.py): what an epoch reports to its progress hook, and the model state kept when validation improves."""

from __future__ import annotations

from torch import nn


def epoch_record(
    epoch: int, epochs: int, train_curve: list, val_curve: list, best_epoch: int | None, best_val: float | None
) -> dict:
    """What `on_epoch` hears after epoch `epoch` (0-based) of `epochs`: the losses so far and the best validation."""
    return {
        "epoch": epoch + 1,
        "epochs": epochs,
        "train_loss": train_curve[-1],
        "val_loss": val_curve[-1],
        "train_loss_curve": list(train_curve),
        "val_loss_curve": list(val_curve),
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
    }


def snapshot(model: nn.Module) -> dict:
    """A detached copy of the model's state (the checkpoint kept at the best validation epoch)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
