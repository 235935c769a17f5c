"""The field's aggregate statistics (evaluation/stats.py), checked against rliable's definitions: the IQM is
scipy.stats.trim_mean(x, 0.25) over every score, the bootstrap is stratified by task, the profile is the fraction
of scores above each threshold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import trim_mean

from vjepa_robot_lab.evaluation.stats import iqm, iqm_interval, performance_profile
from vjepa_robot_lab.experiments.studies import mean_ci95


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 10, 13, 40])
def test_iqm_is_scipys_trimmed_mean_as_rliable_computes_it(n):
    x = np.random.default_rng(n).normal(size=n) * 100
    assert iqm(x) == pytest.approx(trim_mean(x, proportiontocut=0.25, axis=None))


def test_iqm_ignores_the_outer_quartiles():
    assert iqm([0, 1, 2, 3, 4, 5, 6, 1000]) == pytest.approx(3.5)  # 0, 1 and 6, 1000 dropped
    with pytest.raises(ValueError):
        iqm([])


def test_the_bootstrap_is_stratified_by_task():
    """Task A's runs all score 0 and task B's all 1: resampled within each task, every replicate holds four of
    each, so the interval is exactly the point; a bootstrap over the pooled runs would spread it."""
    point, lo, hi = iqm_interval([[0.0] * 4, [1.0] * 4], reps=500)
    assert (point, lo, hi) == (0.5, 0.5, 0.5)
    pooled_point, plo, phi = iqm_interval([[0.0] * 4 + [1.0] * 4], reps=500)  # one "task": runs mix
    assert pooled_point == 0.5 and plo < 0.5 < phi


def test_the_interval_holds_the_point_narrows_with_seeds_and_repeats_by_seed():
    rng = np.random.default_rng(0)
    few = [list(rng.normal(50, 10, size=3))]
    many = [list(rng.normal(50, 10, size=30))]
    p, lo, hi = iqm_interval(few, reps=1000)
    assert lo <= p <= hi
    _, mlo, mhi = iqm_interval(many, reps=1000)
    assert (mhi - mlo) < (hi - lo)
    assert iqm_interval(few, reps=300, seed=4) == iqm_interval(few, reps=300, seed=4)
    assert iqm_interval([[5.0]]) == (5.0, None, None)  # nothing to resample


def test_performance_profile_is_the_fraction_above_each_threshold():
    scores = [0.0, 0.2, 0.5, 0.5, 0.9]
    assert performance_profile(scores, [-1, 0.0, 0.5, 0.95]) == [1.0, 0.8, 0.2, 0.0]


def test_a_study_reports_the_iqm_beside_the_mean():
    s = mean_ci95([0.1, 0.2, 0.3, 0.9])
    assert s.iqm == pytest.approx(0.25) and s.iqm_ci95[0] <= s.iqm <= s.iqm_ci95[1]
    assert mean_ci95([0.4]).iqm is None
