"""Sparse bilateral matching (``candidates=k``): without preferences and partner choices its welfare equals the
exact LP's and the uniform-price auction's (the merit-order pairs it keeps carry an optimal matching); with
distance preferences it is an approximation whose loss shrinks as k grows and vanishes once k covers every
counterpart. References: the exact LP of ``market.clear`` (itself tested against scipy's linprog) and
``scipy.optimize.linprog`` on the transportation LP restricted to the kept pairs."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.errors import MarketError
from p2p_gym.market import Orders, clear
from p2p_gym.market.clearing import candidate_pairs

from .test_bilateral_scale import welfare


def _book(rng: np.random.Generator, n: int) -> Orders:
    return Orders(
        agent=np.arange(n), is_buy=rng.random(n) < 0.5, price=rng.uniform(0.08, 0.4, n),
        quantity=rng.uniform(0.01, 2.0, n),
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_without_preferences_sparse_equals_exact_and_uniform(seed: int) -> None:
    rng = np.random.default_rng(seed)
    book = _book(rng, int(rng.integers(10, 300)))
    exact = clear(book, "bilateral")
    uniform = clear(book, "uniform")
    for k in (1, 3):
        sparse = clear(book, "bilateral", candidates=k)
        assert welfare(book, sparse) == pytest.approx(welfare(book, exact), rel=1e-9, abs=1e-12)
        assert sparse.volume == pytest.approx(uniform.volume, rel=1e-9, abs=1e-12)
        assert np.all(sparse.filled <= book.quantity * (1 + 1e-12))


def test_with_preferences_the_loss_shrinks_with_k_and_vanishes() -> None:
    rng = np.random.default_rng(7)
    n = 120
    book = _book(rng, n)
    pos = rng.uniform(0, 5, (n, 2))
    pref = 0.01 * np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    best = welfare(book, clear(book, "bilateral", preference=pref), pref)
    got = [
        welfare(book, clear(book, "bilateral", preference=pref, candidates=k), pref) for k in (1, 4, 16, n)
    ]
    assert all(g <= best + 1e-9 for g in got)
    assert got == sorted(got)  # more candidates, never less welfare (the kept pairs only grow)
    assert got[-1] == pytest.approx(best, rel=1e-9)
    assert got[2] >= 0.95 * best


def test_kept_pairs_are_sparse_and_allowed() -> None:
    rng = np.random.default_rng(1)
    nb, na, k = 400, 380, 3
    pb, pa = rng.uniform(0.1, 0.4, nb), rng.uniform(0.1, 0.4, na)
    w = pb[:, None] - pa[None, :]
    ok = (w > 0) & (rng.random((nb, na)) < 0.9)
    keep = candidate_pairs(w, ok, pb, pa, rng.uniform(0.1, 1, nb), rng.uniform(0.1, 1, na), k)
    assert not np.any(keep & ~ok)
    assert keep.sum() <= (3 * k + 2) * (nb + na)
    assert keep.sum() < 0.1 * ok.sum()


def test_bad_candidates() -> None:
    book = _book(np.random.default_rng(0), 10)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(MarketError, match="candidates"):
            clear(book, "bilateral", candidates=bad)  # type: ignore[arg-type]
    with pytest.raises(MarketError, match="candidates"):
        clear(book, "uniform", candidates=3)
