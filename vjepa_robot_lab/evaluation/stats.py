"""Intervals, defined once: a run's success rate (Wilson, episodes within one run) and a quantity across seeds
(Student t, the spread between runs). Pure Python; used by evaluation, studies, the report and the CLI."""

from __future__ import annotations

import math

# 97.5% quantiles of Student's t for df = 1..30 (two-sided 95% intervals); beyond 30, 1.96 + 2.5/df (within 0.1%)
T975 = (
    12.7062047362,
    4.3026527297,
    3.1824463053,
    2.7764451052,
    2.5705818356,
    2.4469118511,
    2.3646242516,
    2.3060041352,
    2.2621571628,
    2.228138852,
    2.2009851601,
    2.1788128297,
    2.1603686565,
    2.1447866879,
    2.1314495456,
    2.1199052992,
    2.1098155778,
    2.1009220402,
    2.0930240544,
    2.0859634473,
    2.0796138447,
    2.0738730679,
    2.0686576104,
    2.0638985616,
    2.0595385528,
    2.0555294386,
    2.0518305165,
    2.0484071418,
    2.0452296421,
    2.0422724563,
)  # scipy.stats.t.ppf(0.975, df), to 10 decimals


def wilson_ci95(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for a success rate; exactly 0 (1) at the bound with 0 (n) successes."""
    if n <= 0:
        return (0.0, 1.0)
    z = 1.959963984540054
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if successes <= 0 else max(0.0, centre - half), 1.0 if successes >= n else min(1.0, centre + half))


def t975(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.96 + 2.5 / df


def t_interval(values: list[float]) -> tuple[float, float | None, float | None]:
    """(mean, lo, hi): the 95% t-interval of the mean across values (None bounds for fewer than 2 values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


# ----------------------------------------------------------------------------------------------------------------
# The field's aggregate statistics (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice", and
# its `rliable` library): the interquartile mean (IQM) with a stratified-bootstrap interval, and performance
# profiles. rliable 1.2.0 installs here but does not import (its `arch` dependency breaks on pandas 3), so these are
# written out with numpy and checked against rliable's definitions in tests/test_stats_iqm.py:
#   IQM = scipy.stats.trim_mean(scores, 0.25) over every (run, task) score (rliable metrics.aggregate_iqm);
#   stratified bootstrap = each task's runs resampled with replacement, separately (arch StratifiedBootstrap, as
#   rliable library.get_interval_estimates does), percentile interval;
#   performance profile = for each threshold tau, the fraction of (run, task) scores above tau
#   (rliable library.create_performance_profile's score distribution).
# ----------------------------------------------------------------------------------------------------------------


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% of the scores (the lowest and highest int(n/4) dropped)."""
    import numpy as np

    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        raise ValueError("iqm of no scores")
    k = int(0.25 * n)  # scipy.stats.trim_mean's cut: int(proportiontocut * n) from each end
    return float(x[k : n - k].mean())


def iqm_interval(
    scores_by_task: list[list[float]], reps: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float | None, float | None]:
    """(IQM, lo, hi): the IQM over every run of every task with a stratified-bootstrap percentile interval (runs
    resampled within each task). No interval when no task has 2 runs (nothing to resample)."""
    import numpy as np

    tasks = [np.asarray(t, dtype=np.float64) for t in scores_by_task if len(t)]
    if not tasks:
        raise ValueError("iqm_interval of no scores")
    point = iqm(np.concatenate(tasks))
    if max(t.size for t in tasks) < 2:
        return point, None, None
    rng = np.random.default_rng(seed)
    boot = np.empty(reps)
    for r in range(reps):
        boot[r] = iqm(np.concatenate([t[rng.integers(0, t.size, t.size)] for t in tasks]))
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return point, float(lo), float(hi)


def performance_profile(scores, taus) -> list[float]:
    """For each threshold tau, the fraction of scores strictly above it (a run-score distribution)."""
    import numpy as np

    x = np.asarray(scores, dtype=np.float64).ravel()
    return [float((x > tau).mean()) for tau in taus]
