"""Metric functions against hand-computed values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from p2p_gym import metrics


def test_gini_hand_values() -> None:
    assert metrics.gini(np.array([1.0, 1.0, 1.0, 1.0])) == pytest.approx(0.0)
    # one agent has everything: G = (n - 1) / n
    assert metrics.gini(np.array([0.0, 0.0, 0.0, 4.0])) == pytest.approx(0.75)
    # [1, 2, 3]: Σ|xi-xj| over ordered pairs = 2*(1+2+1) = 8; 8 / (2 * 9 * 2) = 2/9
    assert metrics.gini(np.array([3.0, 1.0, 2.0])) == pytest.approx(2.0 / 9.0)


def test_gini_matches_double_sum_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.normal(1.0, 1.0, rng.integers(2, 12))
        ref = sum(abs(a - b) for a, b in itertools.product(x, x)) / (2 * len(x) ** 2 * abs(x.mean()))
        assert metrics.gini(x) == pytest.approx(ref)


def test_jain() -> None:
    assert metrics.jain(np.array([2.0, 2.0, 2.0])) == pytest.approx(1.0)
    assert metrics.jain(np.array([0.0, 0.0, 5.0])) == pytest.approx(1.0 / 3.0)
    # (1 + 3)^2 / (2 * (1 + 9)) = 16 / 20
    assert metrics.jain(np.array([1.0, 3.0])) == pytest.approx(0.8)


def test_losers_and_cr20() -> None:
    s = np.array([-1.0, 0.0, 2.0, 3.0, 5.0])
    assert metrics.losers_pct(s) == pytest.approx(20.0)
    # top 20 % of 5 agents = 1 agent: 5 / 9
    assert metrics.cr20(s) == pytest.approx(5.0 / 9.0)
    # 10 agents -> top 2
    assert metrics.cr20(np.arange(1.0, 11.0)) == pytest.approx(19.0 / 55.0)


def test_self_sufficiency_and_consumption() -> None:
    assert metrics.self_sufficiency(30.0, 100.0) == pytest.approx(0.7)
    assert metrics.self_consumption(10.0, 40.0) == pytest.approx(0.75)


def test_efficiency_and_scores() -> None:
    assert metrics.efficiency(-8.0, -10.0, -6.0) == pytest.approx(0.5)
    assert np.isnan(metrics.efficiency(-10.0, -10.0, -10.0))
    assert metrics.normalised_score(5.0, 5.0, 9.0) == 0.0
    assert metrics.normalised_score(9.0, 5.0, 9.0) == 1.0
    assert metrics.price_of_anarchy(2.0, 1.0) == 2.0
    np.testing.assert_allclose(metrics.markup(np.array([1.1, 0.9]), np.array([1.0, 1.0])), [0.1, -0.1])


# ------------------------------------------------------------------------------------ aggregate RL scores
def test_iqm_by_hand_and_against_scipy() -> None:
    from scipy.stats import trim_mean

    # 8 values: drop the 2 lowest and the 2 highest, mean of the middle 4
    x = [10.0, 1.0, 3.0, 4.0, 5.0, 6.0, -7.0, 2.0]
    assert metrics.iqm(x) == pytest.approx((2.0 + 3.0 + 4.0 + 5.0) / 4)
    rng = np.random.default_rng(0)
    for n in (4, 8, 20, 100):
        y = rng.normal(size=n)
        assert metrics.iqm(y) == pytest.approx(trim_mean(y, 0.25))
    # 5 values: [1.25, 3.75) of the sorted ranks: 0.75 of the 2nd, all of the 3rd, 0.75 of the 4th
    assert metrics.iqm([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx((0.75 * 2 + 3 + 0.75 * 4) / 2.5)
    assert metrics.iqm([[1.0, 2.0], [3.0, 4.0]]) == pytest.approx(2.5)  # pooled over tasks
    with pytest.raises(ValueError, match="scores"):
        metrics.iqm([])
    with pytest.raises(ValueError, match="scores"):
        metrics.iqm([1.0, np.nan])


def test_bootstrap_ci_covers_the_true_mean_at_its_level() -> None:
    """Percentile bootstrap of the mean of 10 normal draws: over 200 repetitions its 95 % interval holds the
    true mean in 0.95 ± 0.05 of them (percentile intervals undercover slightly at n = 10); and it matches
    scipy's percentile bootstrap on one sample."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(200):
        x = rng.normal(1.0, 2.0, size=10)
        point, lo, hi = metrics.bootstrap_ci(x, rng, statistic=np.mean, n_boot=500)
        assert lo <= point <= hi
        hits += lo <= 1.0 <= hi
    assert 0.87 <= hits / 200 <= 1.0
    x = rng.normal(size=30)
    _, lo, hi = metrics.bootstrap_ci(x, np.random.default_rng(2), statistic=np.mean, n_boot=4000)
    ref = bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=3).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.05) and hi == pytest.approx(ref.high, abs=0.05)


def test_bootstrap_resamples_within_tasks() -> None:
    """Two tasks with constant scores per task: every stratified resample keeps both, so the interval is a point."""
    x = np.array([[0.0, 1.0]] * 5)
    point, lo, hi = metrics.bootstrap_ci(x, np.random.default_rng(0), n_boot=200)
    assert point == lo == hi == pytest.approx(0.5)
    with pytest.raises(ValueError, match="level"):
        metrics.bootstrap_ci(x, np.random.default_rng(0), level=1.0)
    with pytest.raises(ValueError, match="scores"):
        metrics.bootstrap_ci([1.0], np.random.default_rng(0))
