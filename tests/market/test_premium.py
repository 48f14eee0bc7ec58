"""Product differentiation in the bilateral market: buyers pay a premium for sellers' labels, so one buyer pays
different sellers different prices (hand-worked), and the simulation builds the premiums from the labels."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym import market, sim
from p2p_gym.errors import EnvConfigError, MarketError
from p2p_gym.sim import MarketConfig
from tests.conftest import cached_scenario


def _book(green_ask: float = 0.10, demand: float = 3.0) -> market.Orders:
    # buyer 0 bids 0.20; seller 1 (green) and seller 2 (grey) offer 2 kWh each
    return market.Orders(agent=[0, 1, 2], is_buy=[True, False, False], price=[0.20, green_ask, 0.10],
                         quantity=[demand, 2.0, 2.0])  # fmt: skip


PREMIUM = np.array([[0.0, 0.04, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # buyer 0 values seller 1's label


def test_two_sellers_clear_at_different_prices_to_the_same_buyer() -> None:
    res = market.clear(_book(), "bilateral", k=0.5, premium=PREMIUM)
    tr = res.trades
    by_seller = {int(s): (float(q), float(p)) for s, q, p in zip(tr.seller, tr.quantity, tr.price)}
    # surplus per kWh: green 0.20 + 0.04 − 0.10 = 0.14 > grey 0.10: the green seller sells all its 2 kWh first
    assert by_seller[1][0] == pytest.approx(2.0) and by_seller[2][0] == pytest.approx(1.0)
    # k-prices on the buyer's bid plus its premium for the seller: 0.5·0.24 + 0.5·0.10 and 0.5·0.20 + 0.5·0.10
    assert by_seller[1][1] == pytest.approx(0.17) and by_seller[2][1] == pytest.approx(0.15)
    assert res.trades.operator_margin == 0.0


def test_premium_can_beat_a_cheaper_grey_ask() -> None:
    """The green seller asks 0.12 > the grey 0.10, yet with a 0.04 premium its pair has the larger surplus."""
    res = market.clear(_book(green_ask=0.12, demand=2.0), "bilateral", k=0.5, premium=PREMIUM)
    assert res.trades.seller.tolist() == [1] and res.trades.price[0] == pytest.approx(0.5 * 0.24 + 0.5 * 0.12)
    plain = market.clear(_book(green_ask=0.12, demand=2.0), "bilateral", k=0.5)
    assert plain.trades.seller.tolist() == [2]  # without the premium the cheaper grey seller wins


def test_premium_errors() -> None:
    with pytest.raises(MarketError, match="premium"):
        market.clear(_book(), "bilateral", premium=-PREMIUM)
    with pytest.raises(MarketError, match="premium"):
        market.clear(_book(), "uniform", premium=PREMIUM)
    with pytest.raises(EnvConfigError, match="green_premium"):
        MarketConfig(green_premium=0.02)  # uniform: no pairs to price


def test_simulation_builds_premiums_from_labels() -> None:
    sc = cached_scenario("default")
    static = sim.build(MarketConfig(mechanism="bilateral", green_premium=0.03, local_premium=0.01), sc)
    from p2p_gym.grid.topology import feeder_zones

    zone = feeder_zones(sc.net, sc.bus)
    green = sc.pv_kwp > 0
    for i in range(sc.n_agents):
        for j in range(sc.n_agents):
            expected = 0.0 if i == j else 0.03 * green[j] + 0.01 * (zone[i] == zone[j])
            assert static.premium[i, j] == pytest.approx(expected)
    # in a step, every trade's price is the k-price on the buyer's bid plus its premium for that seller
    state = sim.initial_state(static, [150])
    rng = np.random.default_rng(0)
    for _ in range(40):
        state, out = sim.step(static, state, rng.uniform(-1, 1, (1, static.n, static.n_actions)))
        for res, book in zip(out.results, out.books):
            tr = res.trades
            bid = book.price[tr.buy_order] + static.premium[tr.buyer, tr.seller]
            np.testing.assert_allclose(tr.price, 0.5 * bid + 0.5 * book.price[tr.sell_order])
        assert abs(out.money_balance[0]) < 1e-9
