"""Nash bargaining: hand-worked books, the closed form against a numerical maximisation of the product."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.games import solve_nash_bargaining, water_fill
from p2p_gym.market import Orders
from tests.games.reference import effective, lp_welfare, nash_product_numerical, random_book

R, F = 0.30, 0.10


def test_two_agents_split_the_surplus_at_the_midpoint() -> None:
    book = Orders(agent=[0, 1], is_buy=[True, False], price=[0.30, 0.10], quantity=[2.0, 2.0])
    res, d = solve_nash_bargaining(book, R, F)
    assert d.surplus == pytest.approx(0.4)
    np.testing.assert_allclose(d.gains, [0.2, 0.2])
    np.testing.assert_allclose(res.trades.price, [0.2])  # buyer pays 0.6 − 0.2 = 0.4 for 2 kWh
    np.testing.assert_allclose(res.trades.seller_price, [0.2])


def test_three_agents_by_hand_free_and_in_the_price_band() -> None:
    # bids 0.30 × 1 and 0.25 × 10 against an ask 0.10 × 11: W = 0.2 + 1.5 = 1.7
    book = Orders(agent=[0, 1, 2], is_buy=[True, True, False], price=[0.3, 0.25, 0.1], quantity=[1, 10, 11])
    res, d = solve_nash_bargaining(book, R, F)
    np.testing.assert_allclose(d.gains, [1.7 / 3] * 3)
    # equal split makes the small buyer's price negative: 0.3 − 1.7/3 per kWh
    np.testing.assert_allclose(res.paid(3), [0.3 - 1.7 / 3, 2.5 - 1.7 / 3, 0.0])
    res, d = solve_nash_bargaining(book, R, F, price_band=True)
    # caps (v̂ − π_f)·x = 0.2, 1.5 and (π_r − ĉ)·y = 2.2; level L: 0.2 + 2L = 1.7 → L = 0.75
    np.testing.assert_allclose(d.cap, [0.2, 1.5, 2.2])
    np.testing.assert_allclose(d.gains, [0.2, 0.75, 0.75])
    bought, sold = res.bought(3), res.sold(3)
    assert np.all(res.paid(3)[bought > 0] >= F * bought[bought > 0] - 1e-12)
    assert np.all(res.received(3)[sold > 0] <= R * sold[sold > 0] + 1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("band", [False, True])
def test_closed_form_maximises_the_nash_product(seed: int, band: bool) -> None:
    rng = np.random.default_rng(seed)
    book = random_book(rng, 6)
    res, d = solve_nash_bargaining(book, R, F, price_band=band)
    m = d.trading
    if m.sum() < 2:
        pytest.skip("fewer than two traders")
    g_num = nash_product_numerical(d.trade_value[m], d.cap[m] if band else None)
    assert np.sum(np.log(d.gains[m])) >= np.sum(np.log(g_num)) - 1e-7
    np.testing.assert_allclose(d.gains[m], g_num, atol=1e-4)
    assert np.all(d.gains >= 0)  # eq. 6
    assert abs(res.paid().sum() - res.received().sum()) < 1e-12  # budget balance
    assert d.operator_margin == pytest.approx(0.0, abs=1e-12)
    # the surplus is the welfare optimum of the book (independent LP)
    lim = effective(book.is_buy, book.price, R, F)
    assert d.surplus == pytest.approx(lp_welfare(list(book.is_buy), lim, list(book.quantity)), abs=1e-9)


def test_water_fill() -> None:
    g, level = water_fill(6.0, np.array([1.0, np.inf, 10.0]))
    np.testing.assert_allclose(g, [1.0, 2.5, 2.5])
    assert level == pytest.approx(2.5)
    g, level = water_fill(3.0, np.full(3, np.inf))
    np.testing.assert_allclose(g, [1.0, 1.0, 1.0])


def test_agents_with_both_sides() -> None:
    rng = np.random.default_rng(3)
    book = random_book(rng, 7, multi=True)
    res, d = solve_nash_bargaining(book, R, F)
    assert abs(res.paid().sum() - res.received().sum()) < 1e-12
    np.testing.assert_allclose(d.gains[d.trading], d.surplus / d.trading.sum())
