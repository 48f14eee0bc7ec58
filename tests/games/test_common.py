"""Every mechanism: the ClearingResult contract, settlement money balance, empty books, bad inputs, layering."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from p2p_gym.errors import MarketError
from p2p_gym.games import (
    MECHANISMS,
    gains,
    savings,
    solve_nash_bargaining,
    solve_shapley,
    solve_sharing_game,
    solve_stackelberg,
)
from p2p_gym.market import ClearingResult, Orders, settle
from p2p_gym.market.settlement import grid_only_bill
from tests.games.reference import random_book

R, F = 0.30, 0.10
SOLVERS = {
    "nash_bargaining": solve_nash_bargaining,
    "shapley": solve_shapley,
    "sharing_game": solve_sharing_game,
    "stackelberg": solve_stackelberg,
}


def _margin(name: str, diag) -> float:  # type: ignore[no-untyped-def]
    """The documented operator margin of each mechanism."""
    if name == "shapley":
        return float(diag.side_payment.sum())
    if name == "stackelberg":
        return (diag.buy_price - diag.sell_price) * diag.volume
    return 0.0


@pytest.mark.parametrize("name", list(SOLVERS))
@pytest.mark.parametrize("seed", range(3))
def test_money_balance_and_savings(name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    book = random_book(rng, 8)
    n = 9  # one agent without orders
    res, diag = SOLVERS[name](book, R, F, n)
    assert isinstance(res, ClearingResult)
    assert np.all(res.filled <= book.quantity + 1e-9) and np.all(res.filled >= 0)
    np.testing.assert_allclose(res.bought(n) + res.sold(n),
                               np.bincount(book.agent, res.filled, n), atol=1e-9)  # fmt: skip
    margin = res.paid(n).sum() - res.received(n).sum()
    assert margin == pytest.approx(_margin(name, diag), abs=1e-12)
    assert res.trades.operator_margin == pytest.approx(margin, abs=1e-12)
    # settlement: each agent's net energy is its order; Σ bill − grid balance = the operator margin
    net = np.bincount(book.agent, np.where(book.is_buy, -book.quantity, book.quantity), n)
    st = settle(res, net, R, F)
    assert st.money_imbalance == pytest.approx(margin, abs=1e-12)
    # savings = stand-alone bill − settled bill; gains ≥ 0 (individually rational) for every mechanism
    alone = grid_only_bill(net, R, F)
    np.testing.assert_allclose(savings(book, res, R, F, n), alone - st.bill, atol=1e-12)
    assert np.all(gains(book, res, R, F, n) >= -1e-12)


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_empty_and_one_sided_books(name: str) -> None:
    for book in (
        Orders.empty(),
        Orders(agent=[0, 1], is_buy=[True, True], price=[0.3, 0.2], quantity=[1, 2]),
    ):
        res = MECHANISMS[name](book, R, F)
        assert res.volume == 0.0 and len(res.filled) == len(book)


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_bad_inputs_name_the_field(name: str) -> None:
    fn = MECHANISMS[name]
    book = Orders(agent=[0, 1], is_buy=[True, False], price=[0.3, 0.1], quantity=[1.0, 1.0])
    with pytest.raises(MarketError, match="feed_in_price"):
        fn(book, 0.1, 0.3)
    with pytest.raises(MarketError, match="retail_price"):
        fn(book, float("nan"), 0.1)
    with pytest.raises(MarketError, match="retail_price"):
        fn(book, -1.0, 0.1)
    with pytest.raises(MarketError, match="orders"):
        fn([1, 2], R, F)  # type: ignore[arg-type]
    with pytest.raises(MarketError, match="n_agents"):
        fn(book, R, F, 1)


def test_bad_options_name_the_field() -> None:
    book = Orders(agent=[0, 1], is_buy=[True, False], price=[0.3, 0.1], quantity=[1.0, 1.0])
    two = Orders(agent=[0, 0, 1], is_buy=[True, True, False], price=[0.3, 0.2, 0.1], quantity=[1, 1, 1])
    for solver in (solve_sharing_game, solve_stackelberg):
        with pytest.raises(MarketError, match=r"orders\.agent"):
            solver(two, R, F)
    with pytest.raises(MarketError, match="rule"):
        solve_sharing_game(book, R, F, rule="auction")
    with pytest.raises(MarketError, match="tol"):
        solve_sharing_game(book, R, F, tol=0.0)
    with pytest.raises(MarketError, match="max_iter"):
        solve_sharing_game(book, R, F, max_iter=0)
    with pytest.raises(MarketError, match="objective"):
        solve_stackelberg(book, R, F, objective="profit")
    with pytest.raises(MarketError, match="n_permutations"):
        solve_shapley(book, R, F, n_permutations=1)
    with pytest.raises(MarketError, match="max_exact"):
        solve_shapley(book, R, F, max_exact=30)


def test_the_package_imports_no_rl_or_env_library() -> None:
    probe = "import sys, json\nimport p2p_gym.games\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    mods = set(json.loads(out.stdout.strip().splitlines()[-1]))
    for heavy in ("gymnasium", "pettingzoo", "pandapower", "torch", "cvxpy"):
        assert heavy not in mods, heavy
