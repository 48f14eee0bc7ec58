"""Community pricing rules: hand-worked examples, edge cases, money balance and vectorisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_gym.market import pricing
from p2p_gym.market.pricing import PRICING_RULES, bill_sharing, mid_market_rate, supply_demand_ratio

R, F = 0.30, 0.10  # retail and feed-in per kWh


def test_registry() -> None:
    assert set(PRICING_RULES) == {"mmr", "sdr", "bill_sharing"}
    assert PRICING_RULES["sdr"] is pricing.supply_demand_ratio


def test_sdr_hand_examples() -> None:
    # S = 5, D = 10: SDR = 0.5; sell = 0.3·0.1 / (0.2·0.5 + 0.1) = 0.03 / 0.2 = 0.15;
    # buy = 0.15·0.5 + 0.30·0.5 = 0.225.
    buy, sell = supply_demand_ratio(5.0, 10.0, R, F)
    assert (float(buy), float(sell)) == pytest.approx((0.225, 0.15))
    # S = 2, D = 8: SDR = 0.25; sell = 0.03 / (0.2·0.25 + 0.1) = 0.03 / 0.15 = 0.2; buy = 0.05 + 0.225 = 0.275.
    buy, sell = supply_demand_ratio(2.0, 8.0, R, F)
    assert (float(buy), float(sell)) == pytest.approx((0.275, 0.2))
    # Surplus (SDR = 2) and balance (SDR = 1): both at feed-in.
    assert tuple(map(float, supply_demand_ratio(10.0, 5.0, R, F))) == pytest.approx((0.10, 0.10))
    assert tuple(map(float, supply_demand_ratio(5.0, 5.0, R, F))) == pytest.approx((0.10, 0.10))


def test_sdr_edge_cases() -> None:
    assert tuple(map(float, supply_demand_ratio(0.0, 4.0, R, F))) == pytest.approx((R, R))  # nobody sells
    assert tuple(map(float, supply_demand_ratio(4.0, 0.0, R, F))) == pytest.approx((F, F))  # nobody buys
    assert tuple(map(float, supply_demand_ratio(0.0, 0.0, R, F))) == pytest.approx((F, F))
    # Zero feed-in with zero supply: no division by zero.
    buy, sell = supply_demand_ratio(0.0, 4.0, R, 0.0)
    assert np.isfinite(buy) and np.isfinite(sell)


def test_mmr_hand_examples() -> None:
    # P_mid = 0.20. S = 5 < D = 10: sell 0.20, buy = (0.20·5 + 0.30·5) / 10 = 0.25.
    assert tuple(map(float, mid_market_rate(5.0, 10.0, R, F))) == pytest.approx((0.25, 0.20))
    # S = 10 > D = 4: buy 0.20, sell = (0.20·4 + 0.10·6) / 10 = 0.14.
    assert tuple(map(float, mid_market_rate(10.0, 4.0, R, F))) == pytest.approx((0.20, 0.14))
    assert tuple(map(float, mid_market_rate(0.0, 4.0, R, F))) == pytest.approx((R, 0.20))
    assert tuple(map(float, mid_market_rate(4.0, 0.0, R, F))) == pytest.approx((0.20, F))
    assert tuple(map(float, mid_market_rate(0.0, 0.0, R, F))) == pytest.approx((0.20, 0.20))


def test_bill_sharing_hand_examples() -> None:
    # S = 5 < D = 10: community imports 5 kWh for 1.50, shared over 10 kWh of demand: buy 0.15; sell 0.
    assert tuple(map(float, bill_sharing(5.0, 10.0, R, F))) == pytest.approx((0.15, 0.0))
    # S = 10 > D = 4: exports 6 kWh for 0.60, shared over 10 kWh of supply: sell 0.06; buy 0.
    assert tuple(map(float, bill_sharing(10.0, 4.0, R, F))) == pytest.approx((0.0, 0.06))
    assert tuple(map(float, bill_sharing(0.0, 4.0, R, F))) == pytest.approx((R, 0.0))
    assert tuple(map(float, bill_sharing(4.0, 0.0, R, F))) == pytest.approx((0.0, F))
    assert tuple(map(float, bill_sharing(0.0, 0.0, R, F))) == pytest.approx((0.0, 0.0))


# Realistic magnitudes (no subnormals): energies in [1e-6, 100] kWh or exactly zero, prices on a 1e-6 grid.
kwh = st.one_of(st.just(0.0), st.floats(1e-6, 100.0))
unit = st.floats(0.0, 1.0).map(lambda x: round(x, 6))


@settings(max_examples=400, deadline=None)
@given(s=kwh, d=kwh, r=unit, frac=unit, rule=st.sampled_from(sorted(PRICING_RULES)))
def test_money_balances_with_the_grid(s: float, d: float, r: float, frac: float, rule: str) -> None:
    """buy·D − sell·S equals the community's net grid bill π_r·(D − S)⁺ − π_f·(S − D)⁺."""
    f = r * frac
    buy, sell = PRICING_RULES[rule](s, d, r, f)
    grid = r * max(d - s, 0.0) - f * max(s - d, 0.0)
    assert float(buy) * d - float(sell) * s == pytest.approx(grid, abs=1e-9)
    if rule in ("sdr", "mmr") and s > 0 and d > 0:
        # Individually rational against the grid: feed-in ≤ sell ≤ buy ≤ retail.
        assert f - 1e-12 <= float(sell) <= float(buy) + 1e-12 <= r + 2e-12


@pytest.mark.parametrize("rule", sorted(PRICING_RULES))
def test_vectorised_over_time_equals_scalar(rule: str) -> None:
    rng = np.random.default_rng(3)
    s, d = rng.uniform(0, 10, 50), rng.uniform(0, 10, 50)
    s[:5] = 0.0
    d[5:10] = 0.0
    r = rng.uniform(0.2, 0.4, 50)
    f = 0.08
    buy, sell = PRICING_RULES[rule](s, d, r, f)
    assert buy.shape == sell.shape == (50,)
    for t in range(50):
        b1, s1 = PRICING_RULES[rule](s[t], d[t], r[t], f)
        assert float(b1) == pytest.approx(buy[t]) and float(s1) == pytest.approx(sell[t])
