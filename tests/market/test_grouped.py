"""Several call markets in one compiled loop (``market.grouped.clear_groups``) against clearing each group's book
with ``market.clear``: the same trades, fills and prices, on random books with ties, dust and empty groups; a book
with an agent on both sides is handed back."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.market import Orders, clear
from p2p_gym.market.grouped import clear_groups, result_of_group


def _book(rng: np.random.Generator, n: int, ties: bool) -> Orders:
    price = rng.choice([0.1, 0.2, 0.3], n) if ties else rng.uniform(0.08, 0.4, n)
    qty = rng.uniform(0.0, 2.0, n) * (rng.random(n) < 0.9)
    qty[rng.random(n) < 0.05] = 1e-14  # dust
    return Orders(agent=np.arange(n), is_buy=rng.random(n) < 0.5, price=price, quantity=qty)


@pytest.mark.parametrize("mechanism", ["uniform", "pay_as_bid"])
@pytest.mark.parametrize("seed", range(8))
def test_groups_clear_as_their_own_books(mechanism: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, g = int(rng.integers(5, 200)), int(rng.integers(1, 9))
    book = _book(rng, n, ties=seed % 2 == 1)
    group = rng.integers(0, g, n)
    k = float(rng.uniform())
    trades, tg, price, fallback = clear_groups(book, group, g, k, mechanism == "pay_as_bid")
    assert not fallback.any()
    for j in range(g):
        idx = np.flatnonzero(group == j)
        sub = Orders(agent=book.agent[idx], is_buy=book.is_buy[idx], price=book.price[idx],
                     quantity=book.quantity[idx])  # fmt: skip
        ref = clear(sub, mechanism, k=k)
        got = result_of_group(book, trades, tg, j, price[j])
        # the same trades, order indices mapped back to the whole book
        np.testing.assert_array_equal(idx[ref.trades.buy_order], got.trades.buy_order)
        np.testing.assert_array_equal(idx[ref.trades.sell_order], got.trades.sell_order)
        np.testing.assert_allclose(got.trades.quantity, ref.trades.quantity, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(got.trades.price, ref.trades.price, rtol=1e-12)
        np.testing.assert_allclose(got.filled[idx], ref.filled, rtol=1e-12, atol=1e-15)
        if mechanism == "uniform":
            assert (np.isnan(price[j]) and np.isnan(ref.clearing_price)) or price[j] == pytest.approx(
                ref.clearing_price, rel=1e-12
            )


def test_an_agent_on_both_sides_is_handed_back() -> None:
    book = Orders(agent=np.array([0, 0, 1, 2]), is_buy=np.array([True, False, True, False]),
                  price=np.array([0.3, 0.1, 0.25, 0.2]), quantity=np.ones(4))  # fmt: skip
    _, _, _, fallback = clear_groups(book, np.array([0, 0, 1, 1]), 2)
    assert fallback.tolist() == [True, False]
