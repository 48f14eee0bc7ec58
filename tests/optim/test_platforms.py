"""The platform operators' market: ADMM against the centralised LP, both against an order-to-order transport
LP written independently, hand-worked cases, and the allocation's balances and individual rationality."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from p2p_gym.errors import OptimError
from p2p_gym.optim.platforms import allocate, negotiate_admm, negotiate_centralized, operator_book


def _instance(rng: np.random.Generator, p: int, n: int):  # type: ignore[no-untyped-def]
    platform = np.sort(rng.integers(0, p, n))
    is_buy = rng.random(n) < 0.5
    # residual books after a local call market do not cross: on each platform, bids below a local price m_p,
    # asks above it
    m = rng.uniform(0.12, 0.36, p)[platform]
    price = np.round(np.where(is_buy, rng.uniform(0.08, m), rng.uniform(m, 0.40)), 3)
    residual = rng.uniform(0.0, 5.0, n) * (rng.random(n) < 0.85)
    # fees by distance along a line (a metric, as MV path lengths): trading through a platform between two
    # others costs the same as trading directly, the case the allocation reroutes
    x = rng.uniform(0.0, 10.0, p)
    fee = 0.002 * np.abs(x[:, None] - x[None, :])
    return price, residual, is_buy, platform, fee


def _transport_welfare(price, residual, is_buy, platform, fee) -> float:  # type: ignore[no-untyped-def]
    """Independent oracle: match asks to bids of *other* platforms directly, one variable per (ask, bid) pair,
    gain bid − ask − both sides' fees, each order at most its residual."""
    asks = np.flatnonzero(~is_buy & (residual > 0))
    bids = np.flatnonzero(is_buy & (residual > 0))
    pairs = [(i, j) for i in asks for j in bids if platform[i] != platform[j]]
    if not pairs:
        return 0.0
    gain = np.array([price[j] - price[i] - fee[platform[i], platform[j]] - fee[platform[j], platform[i]]
                     for i, j in pairs])  # fmt: skip
    rows = {o: r for r, o in enumerate(np.r_[asks, bids])}
    a = np.zeros((len(rows), len(pairs)))
    for k, (i, j) in enumerate(pairs):
        a[rows[i], k] = a[rows[j], k] = 1.0
    cap = residual[np.r_[asks, bids]]
    res = linprog(-gain, A_ub=a, b_ub=cap, bounds=(0, None), method="highs")
    assert res.status == 0
    return float(-res.fun)


@pytest.mark.parametrize("seed", range(6))
def test_admm_equals_centralized_equals_order_transport(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, n = int(rng.integers(2, 7)), int(rng.integers(6, 50))
    price, residual, is_buy, platform, fee = _instance(rng, p, n)
    book = operator_book(price, residual, is_buy, platform, p)
    admm = negotiate_admm(book, fee)
    central = negotiate_centralized(book, fee)
    oracle = _transport_welfare(price, residual, is_buy, platform, fee)
    assert admm.status == "converged"
    assert central.welfare == pytest.approx(oracle, abs=1e-7)
    assert admm.welfare == pytest.approx(oracle, abs=1e-4 * (1 + abs(oracle)))
    np.testing.assert_allclose(admm.position, central.position, atol=1e-4)
    trading = np.abs(central.position) > 1e-3
    # marginal prices: equal up to the LP's degenerate duals (with metric fees several routings are optimal)
    np.testing.assert_allclose(admm.marginal[trading], central.marginal[trading], atol=1e-3)
    assert np.all(admm.position <= book.supply + 1e-4) and np.all(admm.position >= -book.demand - 1e-4)


def test_hand_worked_two_platforms() -> None:
    """Platform 0 has 3 kWh unmatched at 0.10, platform 1 wants 2 kWh at up to 0.30; with 0.02 per side the
    2 kWh cross and the welfare is 2 · (0.30 − 0.10 − 0.04) = 0.32. With 0.12 per side nothing crosses."""
    price = np.array([0.10, 0.30])
    residual = np.array([3.0, 2.0])
    is_buy = np.array([False, True])
    platform = np.array([0, 1])
    book = operator_book(price, residual, is_buy, platform, 2)
    for fee_side, volume, welfare in ((0.02, 2.0, 0.32), (0.12, 0.0, 0.0)):
        fee = np.array([[0.0, fee_side], [fee_side, 0.0]])
        for sol in (negotiate_admm(book, fee), negotiate_centralized(book, fee)):
            assert sol.position[0] == pytest.approx(volume, abs=1e-5)
            assert sol.welfare == pytest.approx(welfare, abs=1e-5)
            alloc = allocate(book, sol, fee, 2)
            assert alloc.sold[0] == pytest.approx(volume, abs=1e-5)
            assert alloc.bought[1] == pytest.approx(volume, abs=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_allocation_balances_and_is_individually_rational(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    p, n = 5, 60
    price, residual, is_buy, platform, fee = _instance(rng, p, n)
    book = operator_book(price, residual, is_buy, platform, p)
    for sol in (negotiate_admm(book, fee), negotiate_centralized(book, fee)):
        alloc = allocate(book, sol, fee, n)
        assert alloc.sold.sum() == pytest.approx(alloc.bought.sum(), abs=1e-12)
        assert alloc.received.sum() == pytest.approx(alloc.paid.sum(), abs=1e-12)
        assert np.all(alloc.sold <= np.where(is_buy, 0.0, residual) + 1e-9)
        assert np.all(alloc.bought <= np.where(is_buy, residual, 0.0) + 1e-9)
        # each member trades only at a price it accepts (net of its share of the fees)
        s = alloc.sold > 1e-6
        assert np.all((alloc.received[s] - alloc.fees[s]) / alloc.sold[s] >= price[s] - 1e-4)
        b = alloc.bought > 1e-6
        assert np.all((alloc.paid[b] + alloc.fees[b]) / alloc.bought[b] <= price[b] + 1e-4)
        # the gains equal the operators' welfare (fees included) within the solver's tolerance
        gain = (alloc.received - alloc.fees)[s].sum() - (price * alloc.sold).sum()
        gain += (price * alloc.bought).sum() - (alloc.paid + alloc.fees)[b].sum()
        assert gain == pytest.approx(sol.welfare, abs=1e-3)


def test_bad_fee_and_empty_books() -> None:
    book = operator_book(np.array([0.1]), np.array([1.0]), np.array([False]), np.array([0]), 2)
    assert not book.tradeable
    with pytest.raises(OptimError, match="fee"):  # wrong shape
        negotiate_admm(book, np.zeros((3, 3)))
    sol = negotiate_admm(book, np.zeros((2, 2)))
    assert sol.volume == 0.0 and np.all(sol.position == 0.0)
