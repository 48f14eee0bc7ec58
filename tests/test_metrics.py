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
