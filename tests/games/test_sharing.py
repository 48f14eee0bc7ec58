"""The energy-sharing game: hand-worked equilibria, no profitable deviation (independent payoffs), PoA."""

from __future__ import annotations

import math

import numpy as np
import pytest

from p2p_gym.games import solve_sharing_game
from p2p_gym.market import Orders, clear_community
from tests.games.reference import effective, lp_welfare, pool_payoff, random_book

R, F = 0.30, 0.10


def test_mid_market_rate_places_every_profitable_order() -> None:
    # MMR prices the pool at 0.20 whatever S and D: placing all is dominant iff v̂ > 0.20 (ĉ < 0.20)
    book = Orders(agent=[0, 1, 2, 3, 4], is_buy=[True, True, False, False, False],
                  price=[0.3, 0.18, 0.1, 0.12, 0.25], quantity=[5, 4, 3, 6, 2])  # fmt: skip
    res, d = solve_sharing_game(book, R, F, rule="mmr")
    np.testing.assert_allclose(d.placed, [5, 0, 3, 6, 0])
    assert d.pool_price == pytest.approx(0.2) and d.converged
    np.testing.assert_allclose(res.bought(5), [5, 0, 0, 0, 0])
    np.testing.assert_allclose(res.sold(5), [0, 0, 5 / 3, 10 / 3, 0])  # pro rata 3:6 of 5 kWh
    # W_eq = 0.3·5 − 0.1·5/3 − 0.12·10/3; W* = 0.2·3 + 0.18·2 + 0.06·4 (the 0.18 bid buys from 0.12)
    assert d.welfare == pytest.approx(1.5 - 0.5 / 3 - 0.4)
    assert d.welfare_optimum == pytest.approx(1.2)
    assert d.price_of_anarchy == pytest.approx(d.welfare_optimum / d.welfare) and d.price_of_anarchy >= 1


def test_bilateral_monopoly_under_sdr_unravels() -> None:
    # one buyer (0.30 × 10) and one seller (0.10 × 10): the buyer's best response is d = s (price π_f),
    # the seller's s = (√3 − 1)/2·d (maximise r(1 − r)/(2r + 1)), so placements shrink geometrically to 0
    book = Orders(agent=[0, 1], is_buy=[True, False], price=[0.3, 0.1], quantity=[10.0, 10.0])
    res, d = solve_sharing_game(book, R, F)
    assert d.converged
    np.testing.assert_allclose(d.placed, [0.0, 0.0])
    assert res.volume == 0.0 and d.welfare_optimum == pytest.approx(2.0) and math.isinf(d.price_of_anarchy)
    ratios = d.residuals[2:8] / d.residuals[1:7]
    np.testing.assert_allclose(ratios, (math.sqrt(3) - 1) / 2, rtol=1e-3)


@pytest.mark.parametrize("seed", range(4))
def test_no_profitable_unilateral_deviation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    book = random_book(rng, 6)
    res, d = solve_sharing_game(book, R, F)
    assert d.converged and d.max_deviation_gain <= 1e-9 and np.all(d.kkt_residual <= 1e-5)
    lim = effective(book.is_buy, book.price, R, F)
    a = list(d.placed)
    for k in range(len(book)):
        u_eq = pool_payoff(k, a, list(book.is_buy), lim, R, F)
        assert d.gains[book.agent[k]] == pytest.approx(u_eq, abs=1e-12)
        for x in np.linspace(0.0, book.quantity[k], 401):
            dev = [*a[:k], x, *a[k + 1 :]]
            assert pool_payoff(k, dev, list(book.is_buy), lim, R, F) <= u_eq + 1e-9
    w_opt = lp_welfare(list(book.is_buy), lim, list(book.quantity))
    assert d.welfare_optimum == pytest.approx(w_opt, abs=1e-9)
    assert d.price_of_anarchy >= 1.0
    assert d.operator_margin == pytest.approx(0.0, abs=1e-12)
    # the outcome is the community pool clearing of the placed book
    placed = Orders(book.agent, book.is_buy, book.price, d.placed)
    ref = clear_community(placed, "sdr", R, F)
    np.testing.assert_allclose(res.filled, ref.filled)


def test_identical_sellers_place_alike() -> None:
    book = Orders(agent=[0, 1, 2, 3], is_buy=[True, True, False, False], price=[0.3, 0.3, 0.12, 0.12],
                  quantity=[6.0, 6.0, 4.0, 4.0])  # fmt: skip
    _, d = solve_sharing_game(book, R, F)
    assert d.placed[2] == pytest.approx(d.placed[3], rel=1e-6)
    assert d.placed[0] == pytest.approx(d.placed[1], rel=1e-6)
