"""Live training curves: TensorBoard event files in each run's directory, and Weights & Biases where asked for.

    with open_curves(run.dir, run_id=run.run_id, kind="bc", config=cfg_dict) as curves:
        curves.log({"loss/train": 0.12, "loss/val": 0.15}, step=epoch)      # None values are skipped

    tensorboard --logdir <runs dir>        # every run is one TensorBoard run (named by its run id), live

The training loops own *what* is logged (DrQ-v2's split: the agent's update returns a metrics dict, the loop
logs it); this module owns *where*. Tags (the same across runs, so TensorBoard overlays them):

    BC  (step = epoch):      loss/train, loss/val
    SAC (step = env steps):  train/episode_return, train/episode_success (means over the episodes that ended at
                             that vector step), eval/mean_return, eval/success_rate, loss/critic, loss/actor,
                             train/alpha (means over the updates since the last point), perf/env_steps_per_s

Writer: torch.utils.tensorboard.SummaryWriter, chosen on purpose: it ships with torch (already a core dependency)
and needs only the `tensorboard` package (the trainer extra), which also brings the viewer and the
EventAccumulator the tests read the files back with; tensorboardX would be a second writer implementation of the
same format. Events are flushed every FLUSH_S seconds (SummaryWriter's default is 120 s: too slow to watch).
A resumed SAC run passes `purge_step` (its checkpoint's env steps + 1): TensorBoard then drops the points the
interrupted run logged past its last checkpoint, so the curve does not double back.

Weights & Biases (optional: `pip install "vjepa-robot[wandb]"`): on when `wandb=True` (the CLI's `--wandb` sets
$VJEPA_ROBOT_WANDB for its own process) or $VJEPA_ROBOT_WANDB is 1/true/yes/on in the trainer's environment.
The W&B run is named and identified by the run id, its files go to <run dir>/wandb, the project is $WANDB_PROJECT
(default "vjepa-robot"). WANDB_MODE=offline works without an account (`wandb sync <run dir>/wandb/offline-run-*`
uploads later). Asking for W&B without wandb installed fails the run at its start, naming the extra.

A curve never costs a run: a write error is logged once and that writer is dropped; training goes on.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("vjepa_robot.trainer")

WANDB_ENV = "VJEPA_ROBOT_WANDB"
WANDB_PROJECT_DEFAULT = "vjepa-robot"
FLUSH_S = 5.0  # seconds between event-file flushes: what "live" means in TensorBoard


def wandb_requested(wandb: bool | None = None) -> bool:
    """`wandb` if given, else $VJEPA_ROBOT_WANDB (1/true/yes/on)."""
    if wandb is not None:
        return bool(wandb)
    return os.environ.get(WANDB_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class Curves:
    """The scalar writers of one run: TensorBoard always (when installed), W&B when asked for."""

    def __init__(
        self,
        run_dir: Path | str,
        *,
        run_id: str,
        kind: str,
        config: Mapping[str, Any] | None = None,
        purge_step: int | None = None,
        wandb: bool | None = None,
    ):
        self.run_dir, self.run_id, self.kind = Path(run_dir), run_id, kind
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._tb = self._wb = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is in the trainer extra; a bare core install trains without curves
            log.warning(
                "run %s: no live curves (the `tensorboard` package is not installed: pip install "
                "'vjepa-robot[trainer]')",
                run_id,
            )
        else:
            self._tb = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step, flush_secs=FLUSH_S)
            if config and not purge_step:
                import json

                self._tb.add_text("config", "```\n" + json.dumps(dict(config), indent=1, default=str) + "\n```", 0)
        if wandb_requested(wandb):
            self._wb = _wandb_run(self.run_dir, run_id, kind, config)

    @property
    def log_dir(self) -> Path:
        return self.run_dir

    def log(self, metrics: Mapping[str, float | int | bool | None], step: int) -> None:
        """Scalars at `step` (BC: epoch; SAC: env steps). None and non-numbers are skipped."""
        values = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))
        }
        if not values:
            return
        if self._tb is not None:
            try:
                for tag, v in values.items():
                    self._tb.add_scalar(tag, v, int(step))
            except Exception as exc:
                log.warning("run %s: TensorBoard logging stopped: %s", self.run_id, exc)
                self._tb = None
        if self._wb is not None:
            try:
                self._wb.log(values, step=int(step))
            except Exception as exc:
                log.warning("run %s: W&B logging stopped: %s", self.run_id, exc)
                self._wb = None

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self, failed: bool = False) -> None:
        """Flush and close every writer (call it in `finally`: a failed run keeps the curve it had)."""
        tb, wb, self._tb, self._wb = self._tb, self._wb, None, None
        if tb is not None:
            tb.close()
        if wb is not None:
            wb.finish(exit_code=1 if failed else 0)

    def __enter__(self) -> Curves:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def _wandb_run(run_dir: Path, run_id: str, kind: str, config: Mapping[str, Any] | None):
    try:
        import wandb
    except ImportError:
        raise RuntimeError(
            f"W&B logging was asked for (--wandb or {WANDB_ENV}=1) but the `wandb` package is not "
            "installed: pip install 'vjepa-robot[wandb]' (or unset it)"
        ) from None
    # reinit="create_new": the trainer runs up to two jobs at once in one process, each with its own W&B run
    return wandb.init(
        project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT_DEFAULT),
        name=run_id,
        id=run_id,
        dir=str(run_dir),
        config=dict(config or {}),
        job_type=kind,
        resume="allow",
        reinit="create_new",
    )


def open_curves(
    run_dir: Path | str,
    *,
    run_id: str,
    kind: str,
    config: Mapping[str, Any] | None = None,
    purge_step: int | None = None,
    wandb: bool | None = None,
) -> Curves:
    """A Curves for a run directory (see the module docstring for tags and steps)."""
    return Curves(run_dir, run_id=run_id, kind=kind, config=config, purge_step=purge_step, wandb=wandb)


class MeanOf:
    """Running means of metric dicts between two log points (SAC's many updates per logged point)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.n += 1

    def pop(self) -> dict[str, float]:
        out = {k: s / self.n for k, s in self.sums.items()} if self.n else {}
        self.sums, self.n = {}, 0
        return out


__all__ = ["Curves", "open_curves", "MeanOf", "wandb_requested", "WANDB_ENV"]
