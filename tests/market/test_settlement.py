"""Settlement: hand-worked bills, money and energy balance on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_gym.market import Orders, Trades, clear, grid_only_bill, settle

from .strategies import books


def test_hand_worked_settlement() -> None:
    # A0 buys 2 kWh from A1 at 0.20. Physical net: A0 −3 (needs 3), A1 +1.5 (had 1.5 to spare), A2 +1.
    # A0: residual −3 − (0 − 2) = −1 → imports 1 at 0.30; pays 0.40 P2P; fee ½·0.02·2 = 0.02 → bill 0.72.
    # A1: residual 1.5 − 2 = −0.5 → imports 0.5 at 0.30 = 0.15; receives 0.40; fee 0.02 → bill −0.23.
    # A2: exports 1 at 0.05 → bill −0.05.
    tr = Trades([0], [1], [0], [1], [2.0], [0.20])
    s = settle(tr, np.array([-3.0, 1.5, 1.0]), 0.30, 0.05, fee_per_kwh=0.02)
    np.testing.assert_allclose(s.p2p_bought_kwh, [2, 0, 0])
    np.testing.assert_allclose(s.p2p_sold_kwh, [0, 2, 0])
    np.testing.assert_allclose(s.grid_import_kwh, [1, 0.5, 0])
    np.testing.assert_allclose(s.grid_export_kwh, [0, 0, 1])
    np.testing.assert_allclose(s.fees, [0.02, 0.02, 0])
    np.testing.assert_allclose(s.bill, [0.72, -0.23, -0.05])
    assert s.grid_balance == pytest.approx(0.45 - 0.05)
    assert s.fee_total == pytest.approx(0.04)
    assert s.is_balanced()
    # Without a market: A0 pays 0.90, A1 gets 0.075, A2 gets 0.05.
    np.testing.assert_allclose(grid_only_bill(np.array([-3.0, 1.5, 1.0]), 0.30, 0.05), [0.90, -0.075, -0.05])


def test_per_agent_prices_and_result_input() -> None:
    o = Orders(agent=[0, 1], is_buy=[True, False], price=[0.3, 0.1], quantity=[1.0, 1.0])
    res = clear(o, "uniform")  # 1 kWh at 0.20
    s = settle(res, np.array([-1.0, 1.0]), np.array([0.30, 0.25]), np.array([0.05, 0.04]), n_agents=2)
    np.testing.assert_allclose(s.bill, [0.20, -0.20])
    np.testing.assert_allclose(s.grid_import_kwh + s.grid_export_kwh, 0.0)


@settings(max_examples=400, deadline=None)
@given(
    book=books(),
    mechanism=st.sampled_from(["uniform", "pay_as_bid", "cda", "bilateral"]),
    seed=st.integers(0, 2**32 - 1),
    per_agent=st.booleans(),
)
def test_money_and_energy_balance(book: Orders, mechanism: str, seed: int, per_agent: bool) -> None:
    n = 8
    rng = np.random.default_rng(seed)
    res = clear(book, mechanism, n_agents=n)
    net = rng.normal(0.0, 3.0, n)
    retail = rng.uniform(0.2, 0.4, n) if per_agent else 0.3
    feed_in = rng.uniform(0.0, 0.1, n) if per_agent else 0.05
    fee = rng.uniform(0.0, 0.02, n) if per_agent else 0.01
    s = settle(res, net, retail, feed_in, fee_per_kwh=fee)
    parts = s.p2p_paid - s.p2p_received + s.grid_import_cost - s.grid_export_revenue + s.fees
    np.testing.assert_allclose(s.bill, parts, atol=1e-12)
    assert abs(s.bill.sum() - s.grid_balance - s.fee_total) <= 1e-9
    assert s.is_balanced(1e-9)
    assert s.grid_import_kwh.sum() - s.grid_export_kwh.sum() == pytest.approx(-net.sum(), abs=1e-9)
    assert np.all(s.grid_import_kwh >= 0) and np.all(s.grid_export_kwh >= 0)
    assert np.all(s.grid_import_kwh * s.grid_export_kwh == 0)
    # With no trades the bill is the grid-only bill.
    if len(res.trades) == 0:
        np.testing.assert_allclose(s.bill, grid_only_bill(net, retail, feed_in))


def test_imbalance_cost_dual_price_hand_values() -> None:
    """Short 2 kWh at retail 0.30 + penalty 0.05 pays 0.70; long 1 kWh at feed-in 0.08 − 0.05 receives 0.03; with a
    penalty above feed-in the long side receives nothing; no deviation costs nothing."""
    from p2p_gym.market import imbalance_cost

    got = imbalance_cost(np.array([-2.0, 1.0, 0.0]), 0.30, 0.08, 0.05)
    np.testing.assert_allclose(got, [0.70, -0.03, 0.0])
    assert imbalance_cost(1.0, 0.30, 0.08, 0.10) == 0.0
    # deviating never beats committing: for any deviation d the cost is ≥ what the same energy earns/costs at the tariff
    d = np.linspace(-3, 3, 13)
    assert np.all(imbalance_cost(d, 0.30, 0.08, 0.0) >= -d * np.where(d > 0, 0.08, 0.30) - 1e-12)
    with pytest.raises(ValueError, match="penalty"):
        imbalance_cost(1.0, 0.3, 0.08, -0.1)
    with pytest.raises(ValueError, match="deviation_kwh"):
        imbalance_cost([1.0, float("nan")], 0.3, 0.08)
    with pytest.raises(ValueError, match="retail_price"):
        imbalance_cost(1.0, "high", 0.08)


def test_terminal_cost_hand_values() -> None:
    """η = 0.9, retail 0.30, feed-in 0.08. A battery that ends 2 kWh below its start owes 2/0.9 kWh at its terminals:
    2/0.9 · 0.30 = 0.6667; one that ends 2 kWh above has 2 · 0.9 = 1.8 kWh to sell: −1.8 · 0.08 = −0.144. A heat
    pump 1 kWh behind its reference owes 1 kWh at retail (0.30); 1 kWh ahead is worth feed-in (−0.08). No change,
    no cost."""
    from p2p_gym.market import terminal_cost

    got = terminal_cost(
        [5.0, 5.0, 5.0, 5.0, 5.0], [3.0, 7.0, 5.0, 5.0, 3.0], 0.9, [0.0, 0.0, -1.0, 1.0, 1.0], 0.30, 0.08
    )
    np.testing.assert_allclose(got, [2 / 0.9 * 0.30, -1.8 * 0.08, 0.30, -0.08, 2 / 0.9 * 0.30 - 0.08])
    assert terminal_cost(2.0, 2.0, 0.95, 0.0, 0.3, 0.08) == 0.0
    # ending emptier never pays: the deficit costs more than any discharge could have earned at these prices
    assert terminal_cost(5.0, 4.0, 0.9, 0.0, 0.30, 0.08) > 0.9 * 0.30
    with pytest.raises(ValueError, match="efficiency"):
        terminal_cost(1.0, 1.0, 1.5, 0.0, 0.3, 0.08)
    with pytest.raises(ValueError, match="retail_price"):
        terminal_cost(1.0, 1.0, 0.9, 0.0, float("nan"), 0.08)
    with pytest.raises(ValueError, match="soc_end_kwh"):
        terminal_cost(1.0, [1.0, float("nan")], 0.9, 0.0, 0.3, 0.08)
    with pytest.raises(ValueError, match="hp_deviation_kwh"):
        terminal_cost(1.0, 1.0, 0.9, "warm", 0.3, 0.08)
