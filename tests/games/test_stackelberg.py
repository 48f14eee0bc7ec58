"""Stackelberg leader: hand-worked books; brute force over a fine price grid never beats the breakpoints."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.games import solve_stackelberg
from p2p_gym.market import Orders
from tests.games.reference import effective, random_book, stackelberg_objective

R, F = 0.30, 0.10
BOOK = Orders(agent=[0, 1, 2, 3], is_buy=[True, True, False, False], price=[0.3, 0.25, 0.1, 0.2],
              quantity=[2.0, 2.0, 3.0, 3.0])  # fmt: skip


def test_margin_by_hand() -> None:
    # corners (p_b, p_s) ∈ {0.25, 0.30} × {0.10, 0.20}: margins 0.45, 0.2, 0.4, 0.1 → (0.25, 0.10)
    res, d = solve_stackelberg(BOOK, R, F, objective="margin")
    assert (d.buy_price, d.sell_price) == (0.25, 0.1)
    assert d.volume == pytest.approx(3.0) and d.margin == pytest.approx(0.45)
    np.testing.assert_allclose(res.bought(4), [1.5, 1.5, 0, 0])  # D = 4 > S = 3: buyers rationed 3/4
    assert res.paid().sum() - res.received().sum() == pytest.approx(0.45)
    assert d.n_candidates == 4


def test_welfare_by_hand() -> None:
    # W at the corners: (0.25,0.10) 0.75·1.1 − 0.3 = 0.525; (0.25,0.20) 1.1 − 0.6 = 0.5; (0.3,·) ≤ 0.4
    _, d = solve_stackelberg(BOOK, R, F, objective="welfare")
    assert (d.buy_price, d.sell_price) == (0.25, 0.1)
    assert d.welfare == pytest.approx(0.525) and d.welfare_optimum == pytest.approx(0.6)
    assert d.gains.sum() + d.margin == pytest.approx(d.welfare)


@pytest.mark.parametrize("objective", ["margin", "welfare"])
@pytest.mark.parametrize("seed", range(4))
def test_fine_grid_never_beats_the_breakpoints(objective: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    book = random_book(rng, 7)
    _, d = solve_stackelberg(book, R, F, objective=objective)
    lim = effective(book.is_buy, book.price, R, F)
    args = (list(book.is_buy), lim, list(book.quantity), objective)
    assert d.objective_value == pytest.approx(stackelberg_objective(d.buy_price, d.sell_price, *args))
    grid = np.linspace(F, R, 121)
    best = max(stackelberg_objective(pb, ps, *args) for pb in grid for ps in grid if ps <= pb)
    assert best <= d.objective_value + 1e-12
    assert d.welfare <= d.welfare_optimum + 1e-12
    assert F <= d.sell_price <= d.buy_price <= R
    assert d.margin == pytest.approx((d.buy_price - d.sell_price) * d.volume)
