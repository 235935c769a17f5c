"""A study: one run per training seed under one id; GET /studies/{id} aggregates its runs across seeds.

Across seeds a quantity is reported as its mean with a 95% Student-t interval (n - 1 degrees of freedom):
mean +- t(0.975, n-1) * sd / sqrt(n), with the per-seed values beside it, and its interquartile mean with a 95%
bootstrap interval over the seeds (the field's robust aggregate: Agarwal et al. 2021; evaluation/stats.py).
Each run's success rate keeps its own Wilson interval (episodes within one seed); the t-interval is the spread
*between* seeds.
"""

from __future__ import annotations

import math

from vjepa_robot_client.contract import RunRecord, RunStatus, SeedInterval, StudyRecord, StudyRun
from vjepa_robot_lab.evaluation.stats import iqm_interval, t_interval
from vjepa_robot_lab.records.run_kinds import run_kind
from vjepa_robot_lab.records.runs import StoredStudy, migrate


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
    middle, ilo, ihi = iqm_interval([vals])
    return SeedInterval(n=n, mean=mean, ci95=[lo, hi], values=vals, iqm=middle, iqm_ci95=[ilo, ihi])


def study_status(statuses: list[str]) -> RunStatus:
    s = set(statuses)
    if "running" in s or ("queued" in s and s - {"queued"}):
        return RunStatus.running
    if s == {"queued"}:
        return RunStatus.queued
    if s == {"succeeded"}:
        return RunStatus.succeeded
    return RunStatus.interrupted if "interrupted" in s and "failed" not in s else RunStatus.failed


def aggregate(study: StoredStudy | dict, records: list[RunRecord | dict]) -> StudyRecord:
    """The study's record: per-run status, final metric (the run kind's, run_kinds.py) and latest evaluation;
    means with intervals across seeds."""
    study = StoredStudy.model_validate(study)
    records = [r if isinstance(r, RunRecord) else migrate(r) for r in records]
    kind = run_kind(study.kind)
    rows, finals, successes = [], [], []
    for seed, rec in zip(study.seeds, records):
        _, value = kind.final(rec)
        ev = rec.evaluations[-1] if rec.evaluations else None
        done = ev is not None and ev.status == RunStatus.succeeded
        row = StudyRun(
            run_id=rec.run_id,
            seed=seed,
            status=rec.status,
            error=rec.error,
            final_metric=value if rec.status == RunStatus.succeeded else None,
            eval_status=ev.status if ev is not None else None,
            success_rate=ev.success_rate if done else None,
            success_ci95=ev.success_ci95 if done else None,
            mean_return=ev.mean_return if done else None,
        )
        if done and row.success_rate is not None:  # None: a task without success (tasks.py) reports return only
            successes.append(row.success_rate)
        if row.final_metric is not None:
            finals.append(row.final_metric)
        rows.append(row)
    return StudyRecord(
        study_id=study.study_id,
        kind=study.kind,
        status=study_status([r.status.value for r in rows]),
        seeds=study.seeds,
        run_ids=study.run_ids,
        run_id=study.run_ids[0],
        config=study.config,
        metric=kind.metric,
        final=mean_ci95(finals),
        success=mean_ci95(successes) if successes else None,
        eval_request=study.eval_request,
        runs=rows,
        created_at=study.created_at,
    )
