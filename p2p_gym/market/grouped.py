"""Many independent call markets in one call: the uniform-price and pay-as-bid auctions of several books (the
platforms of a multi-platform simulation) cleared by one compiled loop.

The arithmetic is that of :func:`p2p_gym.market.clear` for ``"uniform"`` and ``"pay_as_bid"`` (the crossing
volume maximises min(demand, supply) over the order prices; orders above the marginal price level fill
completely, those at it pro rata; each trade is a segment of the two filled curves walked side by side; k-pricing),
book by book, on orders sorted once for all books. A book in which one agent has both a bid and an ask (which the
single-book clearing re-pairs to avoid self-trades) is reported so that the caller clears it the ordinary way.
"""

from __future__ import annotations

import numba
import numpy as np

from p2p_gym.market.types import ClearingResult, Orders, Trades


@numba.njit(cache=True)
def _level_fill(price: np.ndarray, qty: np.ndarray, volume: float, descending: bool) -> np.ndarray:
    cum = np.cumsum(qty)
    m = min(int(np.searchsorted(cum, volume)), len(cum) - 1)
    marginal = price[m]
    fill = np.zeros(len(qty))
    rest = volume
    level = 0.0
    for i in range(len(qty)):
        above = price[i] > marginal if descending else price[i] < marginal
        if above:
            fill[i] = qty[i]
            rest -= qty[i]
        elif price[i] == marginal:
            level += qty[i]
    share = min(max(rest, 0.0), level) / level if level > 0 else 0.0
    for i in range(len(qty)):
        if price[i] == marginal:
            fill[i] = qty[i] * share
    return fill


@numba.njit(cache=True)
def _book(
    bids: np.ndarray, asks: np.ndarray, price: np.ndarray, qty: np.ndarray, agent: np.ndarray, k: float,
    discriminatory: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, bool]:  # fmt: skip
    """One book: bids sorted by price descending, asks ascending (order indices). Returns the trades' bid and
    ask order indices, quantities and prices, the uniform price (nan: none / pay-as-bid) and whether a self-trade
    segment appeared (then the caller clears the book the ordinary way)."""
    empty_i = np.zeros(0, np.int64)
    empty_f = np.zeros(0)
    nb, na = len(bids), len(asks)
    if nb == 0 or na == 0:
        return empty_i, empty_i, empty_f, empty_f, np.nan, False
    pb, qb = price[bids], qty[bids]
    pa, qa = price[asks], qty[asks]
    cum_b, cum_a = np.cumsum(qb), np.cumsum(qa)
    volume = 0.0
    neg_pb = -pb
    for c in range(nb + na):
        p = pb[c] if c < nb else pa[c - nb]
        n_d = np.searchsorted(neg_pb, -p, side="right")
        n_s = np.searchsorted(pa, p, side="right")
        d = cum_b[n_d - 1] if n_d > 0 else 0.0
        s = cum_a[n_s - 1] if n_s > 0 else 0.0
        volume = max(volume, min(d, s))
    tol = 1e-12 * max(1.0, volume)
    if volume <= tol:
        return empty_i, empty_i, empty_f, empty_f, np.nan, False
    fb = _level_fill(pb, qb, volume, True)
    fa = _level_fill(pa, qa, volume, False)
    # marginal accepted prices among orders that really trade (a dust fill ≤ tol is dropped)
    real_b, real_a = fb > tol, fa > tol
    b_star = pb[real_b].min() if real_b.any() else pb[fb > 0].min()
    a_star = pa[real_a].max() if real_a.any() else pa[fa > 0].max()
    uniform = k * b_star + (1.0 - k) * a_star
    used_b = np.flatnonzero(fb > 0)
    used_a = np.flatnonzero(fa > 0)
    cb, ca = np.cumsum(fb[used_b]), np.cumsum(fa[used_a])
    top = min(cb[-1], ca[-1])
    edges = np.unique(np.concatenate((np.zeros(1), cb, ca)))
    edges = edges[edges <= top]
    seg = edges[1:] - edges[:-1]
    mid = edges[:-1] + 0.5 * seg
    keep = seg > tol
    seg, mid = seg[keep], mid[keep]
    ib = used_b[np.minimum(np.searchsorted(cb, mid, side="right"), len(cb) - 1)]
    ia = used_a[np.minimum(np.searchsorted(ca, mid, side="right"), len(ca) - 1)]
    buy, sell = bids[ib], asks[ia]
    for m in range(len(seg)):
        if agent[buy[m]] == agent[sell[m]]:
            return empty_i, empty_i, empty_f, empty_f, np.nan, True
    if discriminatory:
        tp = k * pb[ib] + (1.0 - k) * pa[ia]
        uniform = np.nan
    else:
        tp = np.full(len(seg), uniform)
    return buy, sell, seg, tp, uniform, False


@numba.njit(cache=True)
def _all_books(
    order: np.ndarray, bounds: np.ndarray, n_bids: np.ndarray, price: np.ndarray, qty: np.ndarray,
    agent: np.ndarray, k: float, discriminatory: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    g = len(bounds) - 1
    cap = (
        len(order) + 1
    )  # a book's trades are segments between its filled orders' breakpoints: fewer than its orders
    tb, ta = np.empty(cap, np.int64), np.empty(cap, np.int64)
    tq, tp, tg = np.empty(cap), np.empty(cap), np.empty(cap, np.int64)
    uniform = np.full(g, np.nan)
    fallback = np.zeros(g, np.bool_)
    pos = 0
    for j in range(g):
        lo, hi = bounds[j], bounds[j + 1]
        bids = order[lo : lo + n_bids[j]]
        asks = order[lo + n_bids[j] : hi]
        b, a, q, p, u, bad = _book(bids, asks, price, qty, agent, k, discriminatory)
        uniform[j] = u
        fallback[j] = bad
        m = len(q)
        tb[pos : pos + m], ta[pos : pos + m] = b, a
        tq[pos : pos + m], tp[pos : pos + m] = q, p
        tg[pos : pos + m] = j
        pos += m
    return tb[:pos], ta[:pos], tq[:pos], tp[:pos], tg[:pos], uniform, fallback


def clear_groups(
    book: Orders, group: np.ndarray, n_groups: int, k: float = 0.5, discriminatory: bool = False
) -> tuple[Trades, np.ndarray, np.ndarray, np.ndarray]:
    """Clear the orders of each group of ``book`` as its own call market.

    Args:
        book: every group's orders in one book (any order).
        group: int[K], the group (book) of each order, in [0, ``n_groups``).
        n_groups: G.
        k: k-pricing weight.
        discriminatory: pay-as-bid (each trade at k·bid + (1 − k)·ask) instead of one uniform price per group.

    Returns:
        The trades of all groups (order indices into ``book``), the group of each trade int[M], each group's
        clearing price float[G] (uniform: its price, nan without trades; pay-as-bid: nan) and bool[G] the groups
        the caller must clear with :func:`p2p_gym.market.clear` instead (an agent on both sides of one book).
    """
    q, p, a = book.quantity, book.price, book.agent
    live = q > 0
    key = np.where(book.is_buy, -p, p)  # bids by price descending, asks ascending
    # tie-breaks as the single-book clearing: agent, then quantity descending
    order = np.lexsort((-q, a, key, ~book.is_buy, group))
    order = order[live[order]]
    g_sorted = group[order]
    bounds = np.searchsorted(g_sorted, np.arange(n_groups + 1))
    n_bids = np.bincount(group[live & book.is_buy], minlength=n_groups)
    tb, ta, tq, tp, tg, uniform, fallback = _all_books(
        order.astype(np.int64), bounds.astype(np.int64), n_bids.astype(np.int64), p, q, a, float(k),
        bool(discriminatory),
    )  # fmt: skip
    trades = Trades._trusted(tb, ta, a[tb], a[ta], tq, tp)
    return trades, tg, uniform, fallback


def result_of_group(book: Orders, trades: Trades, tg: np.ndarray, j: int, price: float) -> ClearingResult:
    """The :class:`ClearingResult` of group ``j`` on ``book`` (fills of every order of the book; only group ``j``'s
    orders can be filled)."""
    sel = tg == j
    t = Trades._trusted(*(getattr(trades, f)[sel] for f in ("buy_order", "sell_order", "buyer", "seller",
                                                             "quantity", "price")))  # fmt: skip
    n = len(book)
    if not len(t):
        return ClearingResult.empty(n)
    filled = np.bincount(t.buy_order, t.quantity, n) + np.bincount(t.sell_order, t.quantity, n)
    if not np.isfinite(price):
        price = float(t.price @ t.quantity / t.quantity.sum())
    return ClearingResult(trades=t, filled=filled, clearing_price=price)
