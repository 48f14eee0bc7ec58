"""The bilateral LP on books far from the kWh scale: huge orders (1e7 … 1e300 kWh), orders of 1e-3 kWh beside
them, tiny books, extreme prices. Every legal book clears; the welfare is checked against hand-worked optima
and against ``scipy.optimize.linprog`` on the same transportation LP (``reference.bilateral_optimum``)."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.market import Orders, clear

from . import reference

BIG = [1e7, 1e9, 1e12]
HUGE = [*BIG, 1e15, 1e18, 1e25, 1e300]


def welfare(book: Orders, res, preference: np.ndarray | None = None) -> float:  # type: ignore[no-untyped-def]
    """Σ (bid − ask − β_bs − β_sb) · x over the trades."""
    t = res.trades
    w = book.price[t.buy_order] - book.price[t.sell_order]
    if preference is not None:
        w = w - preference[t.buyer, t.seller] - preference[t.seller, t.buyer]
    return float(w @ t.quantity)


def linprog_welfare(book: Orders, partners: np.ndarray, preference: np.ndarray) -> float:
    return reference.bilateral_optimum(
        book.agent.tolist(),
        book.is_buy.tolist(),
        book.price.tolist(),
        book.quantity.tolist(),
        partners,
        preference,
    )


def assert_not_overfilled(book: Orders, res) -> None:  # type: ignore[no-untyped-def]
    # Relative slack of a few ulps: the fills are float sums of the trades.
    assert np.all(res.filled <= book.quantity * (1 + 1e-12))
    assert np.all(res.trades.quantity > 0)


@pytest.mark.parametrize("big", HUGE)
@pytest.mark.parametrize("huge_side", ["bid", "ask"])
def test_one_huge_order_against_a_small_one(big: float, huge_side: str) -> None:
    """Bid 0.3, ask 0.1, one side `big` kWh and the other 5 kWh: by hand, one trade of 5 kWh at 0.2."""
    qb, qa = (big, 5.0) if huge_side == "bid" else (5.0, big)
    book = Orders.from_sides([0], [0.3], [qb], [1], [0.1], [qa])
    res = clear(book, "bilateral")
    assert len(res.trades) == 1
    assert res.trades.quantity[0] == pytest.approx(5.0, rel=1e-12)
    assert res.trades.price[0] == pytest.approx(0.2)
    assert welfare(book, res) == pytest.approx(1.0, rel=1e-12)
    assert_not_overfilled(book, res)


def mixed_book(big: float) -> tuple[Orders, float, list[float]]:
    """Bids big@0.3, 1e-3@0.25, 3@0.2; asks 1e-3@0.1, big@0.12, 7@0.15; six distinct agents.

    By hand: every bid price is above every ask price, so the big + 3.001 kWh of bids all trade, against the
    cheapest asks first: 1e-3 @0.1, then big @0.12, then 3 of the 7 kWh @0.15. Welfare
    0.3·big + 0.25e-3 + 0.6 − (0.1e-3 + 0.12·big + 0.45) = 0.18·big + 0.15015.
    """
    book = Orders.from_sides(
        [0, 1, 2], [0.3, 0.25, 0.2], [big, 1e-3, 3.0], [3, 4, 5], [0.1, 0.12, 0.15], [1e-3, big, 7.0]
    )
    return book, 0.18 * big + 0.15015, [big, 1e-3, 3.0, 1e-3, big, 3.0]


def two_huge_bids_book(big: float) -> tuple[Orders, float, list[float]]:
    """Bids big@0.3, big@0.2; asks big@0.1, 1e-3@0.15.

    By hand: supply big + 1e-3 < demand, so both asks sell out and the higher bid is served first: fills
    (big, 1e-3 | big, 1e-3), welfare 0.3·big + 0.2e-3 − 0.1·big − 0.15e-3 = 0.2·big + 5e-5.
    """
    book = Orders.from_sides([0, 1], [0.3, 0.2], [big, big], [2, 3], [0.1, 0.15], [big, 1e-3])
    return book, 0.2 * big + 5e-5, [big, 1e-3, big, 1e-3]


@pytest.mark.parametrize("big", BIG)
@pytest.mark.parametrize("make", [mixed_book, two_huge_bids_book])
def test_huge_and_tiny_orders_hand_worked(big: float, make) -> None:  # type: ignore[no-untyped-def]
    book, expected, fills = make(big)
    res = clear(book, "bilateral")
    ones = np.ones((book.n_agents, book.n_agents), bool)
    zeros = np.zeros((book.n_agents, book.n_agents))
    assert welfare(book, res) == pytest.approx(expected, rel=1e-9)
    assert welfare(book, res) == pytest.approx(linprog_welfare(book, ones, zeros), rel=1e-9)
    # Fills are exact up to rounding at the scale of the largest fill (a 1e-3 kWh trade beside a 1e12 kWh
    # one is below float64 resolution of the totals).
    np.testing.assert_allclose(res.filled, fills, rtol=1e-12, atol=2e-12 * big)
    assert_not_overfilled(book, res)


def random_mixed_book(rng: np.random.Generator, big: float) -> tuple[Orders, np.ndarray, np.ndarray]:
    """About 20 % orders of 0.5–1 × `big` kWh, 20 % of 0.5–1 × 1e-3 kWh, the rest 0–5 kWh; random partners
    and preferences."""
    n_agents, k = int(rng.integers(4, 16)), int(rng.integers(6, 30))
    kind = rng.random(k)
    qty = np.where(
        kind < 0.2,
        big * rng.uniform(0.5, 1.0, k),
        np.where(kind < 0.4, 1e-3 * rng.uniform(0.5, 1.0, k), rng.uniform(0.0, 5.0, k)),
    )
    book = Orders(
        agent=rng.integers(0, n_agents, k),
        is_buy=rng.random(k) < 0.5,
        price=rng.uniform(0.05, 0.35, k),
        quantity=qty,
    )
    partners = rng.random((n_agents, n_agents)) < 0.7
    preference = rng.uniform(0.0, 0.02, (n_agents, n_agents)) * (rng.random() < 0.5)
    return book, partners, preference


@pytest.mark.parametrize("big", BIG)
@pytest.mark.parametrize("seed", range(8))
def test_random_mixed_books_match_linprog(big: float, seed: int) -> None:
    rng = np.random.default_rng([seed, int(np.log10(big))])
    book, partners, preference = random_mixed_book(rng, big)
    res = clear(book, "bilateral", partners=partners, preference=preference, n_agents=len(partners))
    expected = linprog_welfare(book, partners, preference)
    got = welfare(book, res, preference)
    if expected == 0.0:
        assert got == 0.0
    else:
        assert got == pytest.approx(expected, rel=1e-9)
    assert_not_overfilled(book, res)
    t = res.trades
    assert np.all(partners[t.buyer, t.seller] & partners[t.seller, t.buyer])


def small_book(scale: float, price_scale: float = 1.0) -> Orders:
    """Bids 2s@0.3p, 1s@0.2p; asks 1.5s@0.1p, 1s@0.15p. By hand: the 2.5s kWh of asks sell out, the 0.3 bid
    fills in full and the 0.2 bid gets 0.5s: fills (2, 0.5, 1.5, 1)·s."""
    return Orders.from_sides(
        [0, 1],
        [0.3 * price_scale, 0.2 * price_scale],
        [2 * scale, 1 * scale],
        [2, 3],
        [0.1 * price_scale, 0.15 * price_scale],
        [1.5 * scale, 1 * scale],
    )


@pytest.mark.parametrize("scale", [1e-6, 1e-11, 1e-13, 1e-20, 1e7, 1e12, 1e300])
def test_books_of_any_quantity_scale(scale: float) -> None:
    res = clear(small_book(scale), "bilateral")
    np.testing.assert_allclose(res.filled / scale, [2.0, 0.5, 1.5, 1.0], rtol=1e-12)


@pytest.mark.parametrize("price_scale", [1e-13, 1e-20, 1e19, 1e21, 1e300])
def test_books_of_any_price_scale(price_scale: float) -> None:
    book = small_book(1.0, price_scale)
    res = clear(book, "bilateral")
    np.testing.assert_allclose(res.filled, [2.0, 0.5, 1.5, 1.0], rtol=1e-12)
    # By hand: 0.3p·2 + 0.2p·0.5 − 0.1p·1.5 − 0.15p·1 = 0.4p.
    assert welfare(book, res) == pytest.approx(0.4 * price_scale, rel=1e-9)


def test_price_difference_beyond_float_range() -> None:
    """bid − ask overflows float64 (1.7e308 − (−1.7e308)); the pair still trades, at the midpoint 0."""
    book = Orders.from_sides([0], [1.7e308], [2.0], [1], [-1.7e308], [1.5])
    res = clear(book, "bilateral")
    np.testing.assert_allclose(res.filled, [1.5, 1.5])
    assert res.trades.price.tolist() == [0.0]
