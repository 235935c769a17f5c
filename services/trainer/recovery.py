"""What a trainer does when it starts and stops on a store: take the store's lease, then fix what dead processes left.

    start(ctx, url) -> StoreLease       StoreInUse when another live trainer holds the store (nothing is touched)
    stop(ctx, lease)                    this trainer's own leftovers -> interrupted, the lease given back

At start, holding the lease (services/common/lease.py), the trainer records every stale state once, so reads never
have to guess and every route agrees with them:
  - runs and evaluations `queued`/`running` whose owner is gone -> `interrupted` (RunStore.recover);
  - datasets `running` whose generator is gone -> `failed` with the error saying how to resume (datasets.fail_stale);
  - bake-offs `queued`/`running` whose owner is gone -> `interrupted`, their unfinished cells too.
Work owned by another live process on this host (a CLI job writing the same store) is never touched.
"""

from __future__ import annotations

import logging

from services.common.lease import StoreLease, store_lease
from services.common.owner import owned_by_live_process
from vjepa_robot_client.contract import BakeoffRecord, RunStatus
from vjepa_robot_lab.records.context import TrainerContext

log = logging.getLogger("vjepa_robot.trainer")
ACTIVE = (RunStatus.queued, RunStatus.running)


def start(ctx: TrainerContext, url: str | None = None) -> StoreLease:
    from vjepa_robot_lab.data.datasets import fail_stale

    lease = store_lease(ctx.store.uri, ctx.runs.root, url).acquire()  # StoreInUse: refuse before touching anything
    try:
        runs = ctx.runs.recover()
        if runs:
            log.warning("marked %d run(s) interrupted after a restart: %s", len(runs), ", ".join(runs))
        datasets = fail_stale(ctx.store, include_own=True)
        if datasets:
            log.warning("marked %d dataset(s) failed (generator gone): %s", len(datasets), ", ".join(datasets))
        bakeoffs = recover_bakeoffs(ctx)
        if bakeoffs:
            log.warning("marked %d bake-off(s) interrupted after a restart: %s", len(bakeoffs), ", ".join(bakeoffs))
    except BaseException:
        lease.release()
        raise
    return lease


def stop(ctx: TrainerContext, lease: StoreLease | None) -> None:
    try:
        ctx.runs.recover(only_mine=True)
    finally:
        if lease is not None:
            lease.release(all_holds=True)  # the process's hold from serve() too: nothing runs after a SIGTERM


def recover_bakeoffs(ctx: TrainerContext) -> list[str]:
    """Bake-offs left queued/running by a process that is gone -> interrupted (recorded, not decided on read)."""
    from services.trainer import bakeoff

    base = bakeoff.root(ctx)
    fixed = []
    for path in sorted(base.glob(f"*/{bakeoff.RECORD_JSON}")) if base.is_dir() else []:
        try:
            record = BakeoffRecord.model_validate_json(path.read_text())
        except (OSError, ValueError):
            continue
        if record.status not in ACTIVE:
            continue
        if owned_by_live_process(record):
            continue  # a live `vjepa-robot bake-off` on this host
        bakeoff._end_unfinished(record, "interrupted", "the trainer stopped during this bake-off: start it again")
        bakeoff.save(ctx, record)
        fixed.append(record.bakeoff_id)
    return fixed
