"""Vectorised call market: the uniform-price auction of :func:`p2p_gym.market.clear` on B books at once.

Each of the B books holds at most one order per agent (the books of B market simulations stepped together);
the rules are exactly those of ``market.clear(..., "uniform")`` (see :mod:`p2p_gym.market.clearing`): the volume is
the largest volume one price supports, orders strictly better than the marginal level are filled, the marginal
level of the long side pro rata, and the price is ``k · b* + (1 − k) · a*``. Sorting, cumulative sums and
comparisons run on [B, N] arrays instead of one Python call per book.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clear_uniform_batch"]


def _level_fill_batch(
    price: np.ndarray, qty: np.ndarray, live: np.ndarray, volume: np.ndarray, descending: bool
) -> np.ndarray:
    """Row-wise :func:`p2p_gym.market.clearing._level_fill` on sorted, padded books float[B, K] (padding has
    ``live`` False and quantity 0 at the end of each row): kWh filled per order for ``volume`` float[B] kWh."""
    cum = np.cumsum(qty, axis=1)
    n_live = live.sum(axis=1)
    # searchsorted(cum, volume, side="left") on each row = number of cumulative values below the volume
    m = np.minimum((cum < volume[:, None]).sum(axis=1), np.maximum(n_live - 1, 0))
    marginal = np.take_along_axis(price, m[:, None], axis=1)
    above = live & ((price > marginal) if descending else (price < marginal))
    at = live & (price == marginal)
    rest = volume - np.where(above, qty, 0.0).sum(axis=1)
    level = np.where(at, qty, 0.0).sum(axis=1)
    ratio = np.divide(
        np.minimum(np.maximum(rest, 0.0), level), level, out=np.zeros_like(level), where=level > 0
    )
    return np.where(above, qty, np.where(at, qty * ratio[:, None], 0.0))


def clear_uniform_batch(
    is_buy: np.ndarray, price: np.ndarray, qty: np.ndarray, k: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uniform-price call market on B books at once, with the rules of ``market.clear(..., "uniform")``.

    Book ``b`` holds at most one order per agent: agent ``n`` bids (``is_buy[b, n]``) or asks ``qty[b, n]`` kWh
    (≤ 0 = no order) at limit price ``price[b, n]`` (currency/kWh). The volume is the largest volume one price
    supports (crossing of the step curves); orders strictly better than the marginal level are filled, the
    marginal level of the long side pro rata; the price is ``k · b* + (1 − k) · a*`` with b*/a* the marginal
    accepted bid/ask (fills ≤ 1e-12 · volume do not count, as in the reference).

    Returns:
        bought float[B, N] (kWh), sold float[B, N] (kWh), clearing price float[B] (currency/kWh, nan without
        trades) and volume float[B] (kWh).
    """
    nb_rows, n = qty.shape
    live = qty > 0
    bid, ask = is_buy & live, ~is_buy & live
    # Bids by price descending, asks ascending; non-orders go last (ties inside a level do not change fills).
    ob = np.argsort(np.where(bid, -price, np.inf), axis=1, kind="stable")
    oa = np.argsort(np.where(ask, price, np.inf), axis=1, kind="stable")
    lb, la = np.take_along_axis(bid, ob, axis=1), np.take_along_axis(ask, oa, axis=1)
    pb = np.where(lb, np.take_along_axis(price, ob, axis=1), -np.inf)
    pa = np.where(la, np.take_along_axis(price, oa, axis=1), np.inf)
    qb = np.where(lb, np.take_along_axis(qty, ob, axis=1), 0.0)
    qa = np.where(la, np.take_along_axis(qty, oa, axis=1), 0.0)
    cum_b, cum_a = np.cumsum(qb, axis=1), np.cumsum(qa, axis=1)
    # D(p) = kWh bid at >= p and S(p) = kWh asked at <= p at every order price (padding candidates masked).
    cand = np.concatenate([pb, pa], axis=1)
    valid = np.concatenate([lb, la], axis=1)
    n_d = (pb[:, None, :] >= cand[:, :, None]).sum(axis=2)
    n_s = (pa[:, None, :] <= cand[:, :, None]).sum(axis=2)
    demand = np.where(n_d > 0, np.take_along_axis(cum_b, np.maximum(n_d - 1, 0), axis=1), 0.0)
    supply = np.where(n_s > 0, np.take_along_axis(cum_a, np.maximum(n_s - 1, 0), axis=1), 0.0)
    volume = np.where(valid, np.minimum(demand, supply), 0.0).max(axis=1, initial=0.0)
    tol = 1e-12 * np.maximum(1.0, volume)
    traded = volume > tol
    fb = _level_fill_batch(pb, qb, lb, volume, descending=True)
    fa = _level_fill_batch(pa, qa, la, volume, descending=False)
    fb[~traded] = 0.0
    fa[~traded] = 0.0
    real_b = fb > tol[:, None]
    real_a = fa > tol[:, None]
    use_b = np.where(real_b.any(axis=1)[:, None], real_b, fb > 0)
    use_a = np.where(real_a.any(axis=1)[:, None], real_a, fa > 0)
    b_star = np.where(use_b, pb, np.inf).min(axis=1)
    a_star = np.where(use_a, pa, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):
        clearing = np.where(traded, k * b_star + (1.0 - k) * a_star, np.nan)
    bought = np.zeros((nb_rows, n))
    sold = np.zeros((nb_rows, n))
    np.put_along_axis(bought, ob, fb, axis=1)
    np.put_along_axis(sold, oa, fa, axis=1)
    return bought, sold, clearing, np.minimum(fb.sum(axis=1), fa.sum(axis=1))
