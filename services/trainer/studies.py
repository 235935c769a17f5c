"""A study: one run per training seed under one id; GET /studies/{id} aggregates its runs across seeds.

Across seeds a quantity is reported as its mean with a 95% Student-t interval (n - 1 degrees of freedom):
mean +- t(0.975, n-1) * sd / sqrt(n), with the per-seed values beside it. Each run's success rate keeps its
own Wilson interval (episodes within one seed); the t-interval is the spread *between* seeds.
"""

from __future__ import annotations

import math

from .stats import t_interval
from vjepa_robot_client.contract import RunStatus, SeedInterval, StudyRecord, StudyRun


def mean_ci95(values: list[float]) -> SeedInterval:
    """Mean and 95% t-interval across seeds (no interval with fewer than 2 values)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return SeedInterval(n=0)
    mean = sum(vals) / n
    if n < 2:
        return SeedInterval(n=n, mean=mean, values=vals)
    _, lo, hi = t_interval(vals)
    return SeedInterval(n=n, mean=mean, ci95=[lo, hi], values=vals)


def final_metric(record: dict) -> tuple[str, float | None]:
    """(name, value) of a run's headline training result: BC validation MSE of the kept checkpoint, SAC final
    evaluation return."""
    m = record.get("metrics") or {}
    if record["kind"] == "sac":
        fe = m.get("final_eval") or {}
        return "final_eval.mean_return", fe.get("mean_return")
    # the validation MSE of the checkpoint BC kept (the best epoch by default), not of its last epoch
    curve, kept = m.get("val_loss_curve") or [], m.get("selected_epoch")
    if isinstance(kept, int) and 1 <= kept <= len(curve) and curve[kept - 1] is not None:
        return "val_loss", curve[kept - 1]
    return "val_loss", m.get("val_loss")


def study_status(statuses: list[str]) -> RunStatus:
    s = set(statuses)
    if "running" in s or ("queued" in s and s - {"queued"}):
        return RunStatus.running
    if s == {"queued"}:
        return RunStatus.queued
    if s == {"succeeded"}:
        return RunStatus.succeeded
    return RunStatus.interrupted if "interrupted" in s and "failed" not in s else RunStatus.failed


def aggregate(study: dict, records: list[dict]) -> StudyRecord:
    """The study's record: per-run status, final metric and latest evaluation; means with intervals across seeds."""
    rows, finals, successes = [], [], []
    metric = "val_loss" if study["kind"] == "bc" else "final_eval.mean_return"
    for seed, rec in zip(study["seeds"], records):
        metric, value = final_metric(rec)
        ev = (rec.get("evaluations") or [None])[-1]
        done = ev is not None and ev.get("status") == "succeeded"
        row = StudyRun(run_id=rec["run_id"], seed=seed, status=rec["status"], error=rec.get("error"),
                       final_metric=value if rec["status"] == "succeeded" else None,
                       eval_status=ev.get("status") if ev is not None else None,
                       success_rate=ev.get("success_rate") if done else None,
                       success_ci95=ev.get("success_ci95") if done else None,
                       mean_return=ev.get("mean_return") if done else None)
        if done:
            successes.append(row.success_rate)
        if row.final_metric is not None:
            finals.append(row.final_metric)
        rows.append(row)
    return StudyRecord(
        study_id=study["study_id"], kind=study["kind"], status=study_status([r.status.value for r in rows]),
        seeds=study["seeds"], run_ids=study["run_ids"], run_id=study["run_ids"][0], config=study.get("config") or {},
        metric=metric, final=mean_ci95(finals), success=mean_ci95(successes) if successes else None,
        eval_request=study.get("eval_request"), runs=rows, created_at=study.get("created_at"))
