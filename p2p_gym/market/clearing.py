"""Market clearing: uniform-price and pay-as-bid call markets, the continuous double auction, and bilateral
P2P matching with partner choice and preferences.

Mechanisms (Suthar, Cherukuri & Pindoriya 2023, §4.2 for the double auctions; EUniversal D5.3 (2022) for
the cost-preference matrix):

``"uniform"``
    Call market with one price. Bids are sorted by price descending, asks ascending (ties: agent, then
    quantity descending, so results do not depend on the order indices). The traded volume is the maximum
    volume that one price can support, ``V = max_p min(D(p), S(p))`` with ``D(p)`` the kWh bid at ≥ p and
    ``S(p)`` the kWh asked at ≤ p (the crossing of the step curves). Orders priced strictly better than the
    marginal price level are filled completely; orders *at* the marginal level of the long side are rationed
    **pro rata** to their quantity. The price is ``k·b* + (1 − k)·a*`` with ``b*`` the lowest accepted bid and
    ``a*`` the highest accepted ask (k-double auction). Where the curves overlap on a horizontal segment,
    ``b* = a*`` and the price is that segment's price whatever ``k``; where they meet on a vertical segment,
    ``b* > a*`` and ``k`` splits the gap. Every accepted bid is ≥ the price ≥ every accepted ask.
``"pay_as_bid"``
    Discriminatory: the same accepted quantities as ``"uniform"``; the bid and ask curves are walked in sort
    order and each matched (bid, ask) segment trades at the pair's own k-price ``k·bid + (1 − k)·ask``
    (``k = 0.5``: the midpoint). ``clearing_price`` is the volume-weighted mean trade price.
``"cda"``
    Continuous double auction (:class:`~p2p_gym.market.cda.ContinuousDoubleAuction`); the array order is the
    arrival order. ``clearing_price`` is the last trade price.
``"bilateral"``
    P2P matching: bid i (agent b) and ask j (agent s) may trade only if ``partners[b, s]`` and
    ``partners[s, b]`` (mutual acceptance) and ``b ≠ s``. The quantities ``x_ij ≥ 0`` maximise the traded net
    surplus ``Σ (bid_i − ask_j − β[b, s] − β[s, b]) · x_ij`` subject to ``Σ_j x_ij ≤ q_i`` and
    ``Σ_i x_ij ≤ q_j`` (a transportation LP, solved exactly by HiGHS' primal simplex); only pairs with
    strictly positive net surplus trade. β (``preference``) is a non-monetary cost per kWh that each side
    attaches to trading with the other (distance, CO₂, a DSO incentive as EUniversal D5.3 (2022), Scenario
    3); it changes who
    matches but is not paid to anyone. Each trade is priced by the pair's k-price ``k·bid + (1 − k)·ask``.
    Product differentiation (``premium``): buyer b values seller s's energy at ``bid_i + premium[b, s]`` (labels
    such as green or local, Le Goff Latimier & Ben Ahmed 2023, §3), which enters the pair's surplus and its
    k-price — so one buyer pays different sellers different prices.
``"mcafee"``, ``"vcg"``
    Truthful double auctions (:mod:`p2p_gym.market.truthful`): McAfee's (1992) trade reduction (weakly budget
    balanced, the operator keeps ``price − seller_price`` per kWh) and the VCG double auction (efficient, the
    operator covers a deficit). ``k`` is unused by both.

Self-trades never happen. In the call markets a walk segment that pairs an agent with itself swaps partners
with another segment whose two sides are other agents (every order keeps its fill); if no such segment is
left, the self segment is dropped, which changes neither the agent's net position nor anyone's money (the
reported volume is then below the one-price maximum). The CDA skips the agent's own standing orders, and the
bilateral LP has no self edges. ``rng`` is accepted for API symmetry; every mechanism here is
deterministic.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from p2p_gym.errors import MarketError
from p2p_gym.market.types import ClearingResult, FloatArray, IntArray, Orders, Trades

__all__ = ["AUCTIONS", "MECHANISMS", "clear"]

#: Mechanisms that clear bids against asks.
AUCTIONS: tuple[str, ...] = ("uniform", "pay_as_bid", "cda", "bilateral", "mcafee", "vcg")
#: Every mechanism of :func:`clear`: the auctions and the community rules of :mod:`p2p_gym.market.community`.
MECHANISMS: tuple[str, ...] = (*AUCTIONS, "mmr", "sdr", "bill_sharing")


def clear(
    orders: Orders,
    mechanism: str,
    *,
    k: float = 0.5,
    partners: ArrayLike | None = None,
    preference: ArrayLike | None = None,
    premium: ArrayLike | None = None,
    n_agents: int | None = None,
    rng: np.random.Generator | None = None,
    retail_price: float | None = None,
    feed_in_price: float | None = None,
    candidates: int | None = None,
) -> ClearingResult:
    """Clear a book of orders with one of :data:`MECHANISMS` (semantics in the module docstring; the community
    rules ``"mmr"``, ``"sdr"``, ``"bill_sharing"`` in :mod:`p2p_gym.market.community`).

    Args:
        orders: the book.
        mechanism: ``"uniform"``, ``"pay_as_bid"``, ``"cda"``, ``"bilateral"``, ``"mcafee"``, ``"vcg"``, or a
            community rule.
        k: k-pricing weight in [0, 1]: a price is ``k·bid + (1 − k)·ask`` (1 favours sellers); unused by
            ``"cda"``, where the standing order sets the price, and by ``"mcafee"`` and ``"vcg"``, which set
            their own prices (:mod:`p2p_gym.market.truthful`).
        partners: bool[N, N], ``partners[i, j]``: agent i accepts agent j (``"bilateral"`` only; default all).
        preference: float[N, N] ≥ 0, β[i, j] cost per kWh agent i attaches to trading with j
            (``"bilateral"`` only; default 0).
        premium: float[N, N] ≥ 0, product differentiation (``"bilateral"`` only; default 0): ``premium[i, j]``
            is what buyer i will pay per kWh on top of its bid for energy from seller j (for j's labels, e.g.
            green or local). The pair's surplus and its price use the buyer's bid plus the premium, so one buyer
            pays different sellers different prices (Le Goff Latimier & Ben Ahmed 2023, §3: heterogeneous
            preferences between peers; unlike β it is money paid to the seller).
        n_agents: number of agents N (default: the size of ``partners``/``preference`` if given, else max
            agent index + 1); ``partners``/``preference`` must be N × N; ``"vcg"`` sizes its transfers by it.
        rng: unused (all mechanisms are deterministic); accepted so callers can pass one uniformly.
        retail_price, feed_in_price: the interval's tariffs (currency/kWh); needed by the community rules only.
        candidates: ``"bilateral"`` only: match over sparse candidate pairs (:func:`candidate_pairs`) instead of
            every profitable pair, so the LP has O(N·k) pairs instead of O(N²). ``None`` (default): exact.

    Returns:
        The trades, the fill of every order and the clearing price (nan without trades).

    Raises:
        MarketError: unknown mechanism, ``k`` outside [0, 1], bad ``partners``/``preference``/``n_agents``, a
            community rule without tariffs.
    """
    del rng
    if not isinstance(orders, Orders):
        raise MarketError(f"orders: must be an Orders instance, got {type(orders).__name__}")
    if mechanism not in MECHANISMS:
        raise MarketError(f"mechanism: must be one of {list(MECHANISMS)}, got {mechanism!r}")
    k = float(k)
    if not 0.0 <= k <= 1.0:
        raise MarketError(f"k: must be in [0, 1], got {k!r}")
    if n_agents is None and mechanism == "bilateral":
        # Size the agent axis from the matrices when given (agents without orders may still be listed).
        for matrix in (partners, preference, premium):
            if matrix is not None and np.ndim(matrix) == 2:
                n_agents = max(int(np.shape(matrix)[0]), orders.n_agents)
                break
    n = _n_agents(orders, n_agents)
    if candidates is not None and (
        isinstance(candidates, (bool, np.bool_))
        or not isinstance(candidates, (int, np.integer))
        or candidates < 1
    ):
        raise MarketError(f"candidates: must be None or an integer ≥ 1, got {candidates!r}")
    if mechanism == "bilateral":
        part = _partners(partners, n)
        pref = _preference(preference, n)
        prem = _preference(premium, n, "premium")
        return _bilateral(orders, k, part, pref, candidates, prem)
    if candidates is not None:
        raise MarketError(f"candidates: only used by mechanism 'bilateral', got mechanism {mechanism!r}")
    if partners is not None or preference is not None or premium is not None:
        raise MarketError(
            f"partners/preference/premium: only used by mechanism 'bilateral', got mechanism {mechanism!r}"
        )
    if mechanism not in AUCTIONS:
        from p2p_gym.market.community import clear_community

        return clear_community(orders, mechanism, retail_price, feed_in_price)  # type: ignore[arg-type]
    if mechanism == "cda":
        from p2p_gym.market.cda import ContinuousDoubleAuction

        return ContinuousDoubleAuction().run(orders)
    if mechanism in ("mcafee", "vcg"):
        from p2p_gym.market.truthful import clear_mcafee, clear_vcg

        return clear_mcafee(orders) if mechanism == "mcafee" else clear_vcg(orders, n)
    return _call_market(orders, k, discriminatory=mechanism == "pay_as_bid")


# ----------------------------------------------------------------------------------------------- validation


def _n_agents(orders: Orders, n_agents: int | None) -> int:
    top = orders.n_agents
    if n_agents is None:
        return top
    if isinstance(n_agents, bool) or not isinstance(n_agents, int | np.integer) or n_agents < top:
        raise MarketError(f"n_agents: must be an integer >= max agent index + 1 = {top}, got {n_agents!r}")
    return int(n_agents)


def _square(name: str, value: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (n, n):
        raise MarketError(f"{name}: must have shape ({n}, {n}) (n_agents × n_agents), got {arr.shape}")
    return arr


def _partners(partners: ArrayLike | None, n: int) -> np.ndarray:
    if partners is None:
        return np.ones((n, n), dtype=bool)
    arr = _square("partners", partners, n)
    if arr.dtype.kind != "b":
        if arr.dtype.kind not in "iuf" or np.any((arr != 0) & (arr != 1)):
            raise MarketError(f"partners: must be booleans (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def _preference(preference: ArrayLike | None, n: int, name: str = "preference") -> np.ndarray | None:
    if preference is None:
        return None
    arr = _square(name, preference, n)
    if arr.dtype.kind not in "biuf":
        raise MarketError(f"{name}: must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise MarketError(f"{name}: must be finite, got {arr[~np.isfinite(arr)][0]!r}")
    if np.any(arr < 0):
        raise MarketError(f"{name}: must be >= 0 (a cost per kWh), got {arr[arr < 0][0]!r}")
    return arr


# ---------------------------------------------------------------------------------------------- call market


def _sides(orders: Orders) -> tuple[IntArray, IntArray]:
    """Order indices of the bids (price desc) and asks (price asc) with positive quantity.

    Ties are broken by agent, then by quantity descending; only identical orders of one agent keep their
    index order, which cannot change any agent's totals.
    """
    q, p, a = orders.quantity, orders.price, orders.agent
    live = q > 0
    bids = np.flatnonzero(orders.is_buy & live)
    asks = np.flatnonzero(~orders.is_buy & live)
    bids = bids[np.lexsort((-q[bids], a[bids], -p[bids]))]
    asks = asks[np.lexsort((-q[asks], a[asks], p[asks]))]
    return bids, asks


def _level_fill(price: FloatArray, qty: FloatArray, volume: float, descending: bool) -> FloatArray:
    """Fill of sorted orders for ``volume``: full above the marginal price level, pro rata at it."""
    cum = np.cumsum(qty)
    m = min(int(np.searchsorted(cum, volume, side="left")), len(cum) - 1)
    marginal = price[m]
    if descending:
        above = price > marginal
    else:
        above = price < marginal
    at = price == marginal
    rest = volume - float(qty[above].sum())
    level = float(qty[at].sum())
    fill = np.where(above, qty, 0.0)
    fill[at] = qty[at] * (min(max(rest, 0.0), level) / level)
    return fill


def _call_market(orders: Orders, k: float, discriminatory: bool) -> ClearingResult:
    n_orders = len(orders)
    bids, asks = _sides(orders)
    if not len(bids) or not len(asks):
        return ClearingResult.empty(n_orders)
    pb, qb = orders.price[bids], orders.quantity[bids]
    pa, qa = orders.price[asks], orders.quantity[asks]
    cum_b, cum_a = np.cumsum(qb), np.cumsum(qa)
    # D(p) = kWh bid at >= p, S(p) = kWh asked at <= p, evaluated at every order price.
    cand = np.concatenate([pb, pa])
    n_d = np.searchsorted(-pb, -cand, side="right")
    n_s = np.searchsorted(pa, cand, side="right")
    demand = np.where(n_d > 0, cum_b[np.maximum(n_d - 1, 0)], 0.0)
    supply = np.where(n_s > 0, cum_a[np.maximum(n_s - 1, 0)], 0.0)
    volume = float(np.max(np.minimum(demand, supply)))
    tol = 1e-12 * max(1.0, volume)  # dust: float mismatch of the two cumulative curves
    if volume <= tol:
        return ClearingResult.empty(n_orders)
    fb = _level_fill(pb, qb, volume, descending=True)
    fa = _level_fill(pa, qa, volume, descending=False)
    # Marginal accepted prices among orders that really trade (a dust fill ≤ tol is dropped below).
    b_star = float(pb[fb > tol].min()) if np.any(fb > tol) else float(pb[fb > 0].min())
    a_star = float(pa[fa > tol].max()) if np.any(fa > tol) else float(pa[fa > 0].max())
    uniform_price = k * b_star + (1.0 - k) * a_star
    # Walk both filled curves: each segment between consecutive cumulative breakpoints is one trade.
    used_b, used_a = np.flatnonzero(fb > 0), np.flatnonzero(fa > 0)
    cb, ca = np.cumsum(fb[used_b]), np.cumsum(fa[used_a])
    top = min(cb[-1], ca[-1])
    edges = np.unique(np.concatenate([[0.0], cb, ca]))
    edges = edges[edges <= top]
    seg = np.diff(edges)
    mid = edges[:-1] + 0.5 * seg
    keep = seg > tol
    seg, mid = seg[keep], mid[keep]
    ib = used_b[np.minimum(np.searchsorted(cb, mid, side="right"), len(cb) - 1)]
    ia = used_a[np.minimum(np.searchsorted(ca, mid, side="right"), len(ca) - 1)]
    agent_b, agent_a = orders.agent[bids], orders.agent[asks]
    if np.any(agent_b[ib] == agent_a[ia]):
        ib, ia, seg = _avoid_self_matches(ib, ia, seg, agent_b, agent_a, tol)
    buy_order, sell_order = bids[ib], asks[ia]
    buyer, seller = orders.agent[buy_order], orders.agent[sell_order]
    own = buyer != seller
    if discriminatory:
        price = k * pb[ib] + (1.0 - k) * pa[ia]
    else:
        price = np.full(len(seg), uniform_price)
    trades = Trades._trusted(
        buy_order[own].astype(np.int64, copy=False), sell_order[own].astype(np.int64, copy=False),
        buyer[own].astype(np.int64, copy=False), seller[own].astype(np.int64, copy=False),
        seg[own].astype(np.float64, copy=False), price[own].astype(np.float64, copy=False),
    )  # fmt: skip
    return _result(trades, n_orders, None if discriminatory else uniform_price)


def _avoid_self_matches(
    ib: IntArray, ia: IntArray, seg: FloatArray, agent_b: IntArray, agent_a: IntArray, tol: float
) -> tuple[IntArray, IntArray, FloatArray]:
    """Re-pair segments so that no agent trades with itself, keeping every order's fill where possible.

    A self segment (bid and ask of agent A, r kWh) and another segment t with neither side A swap partners
    for ``min(r, q_t)``: (bid_A, ask_t) and (bid_t, ask_A) are both between distinct agents, and every order
    keeps its fill. Only self segments are visited (none in books with one side per agent). Self segments
    that cannot be re-paired are left for the caller to drop.
    """
    cap = len(seg) + 2 * int(np.count_nonzero(agent_b[ib] == agent_a[ia])) + 2
    b_idx, a_idx, qty = np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap)
    n = len(seg)
    who_b, who_a = np.zeros(cap, np.int64), np.zeros(cap, np.int64)  # agents of each segment's two sides
    b_idx[:n], a_idx[:n], qty[:n] = ib, ia, seg
    who_b[:n], who_a[:n] = agent_b[ib], agent_a[ia]
    for s in np.flatnonzero(who_b[:n] == who_a[:n]):
        me = who_b[s]
        while qty[s] > tol:
            ok = (who_b[:n] != me) & (who_a[:n] != me) & (qty[:n] > tol)
            if not ok.any():
                break
            t = int(np.argmax(ok))
            r = min(qty[s], qty[t])
            if n + 2 > cap:  # pragma: no cover - capacity grows only if many swaps split segments
                grow = max(cap, 8)
                b_idx = np.concatenate([b_idx, np.zeros(grow, np.int64)])
                a_idx = np.concatenate([a_idx, np.zeros(grow, np.int64)])
                qty = np.concatenate([qty, np.zeros(grow)])
                who_b = np.concatenate([who_b, np.zeros(grow, np.int64)])
                who_a = np.concatenate([who_a, np.zeros(grow, np.int64)])
                cap += grow
            b_idx[n], a_idx[n], qty[n] = b_idx[s], a_idx[t], r
            b_idx[n + 1], a_idx[n + 1], qty[n + 1] = b_idx[t], a_idx[s], r
            who_b[n], who_a[n], who_b[n + 1], who_a[n + 1] = me, who_a[t], who_b[t], me
            n += 2
            qty[s] -= r
            qty[t] -= r
    keep = qty[:n] > tol
    return b_idx[:n][keep], a_idx[:n][keep], qty[:n][keep]


def _result(trades: Trades, n_orders: int, price: float | None) -> ClearingResult:
    """Wrap trades: fills by bincount; price = given, else volume-weighted mean (nan without trades)."""
    if not len(trades):
        return ClearingResult.empty(n_orders)
    q = trades.quantity
    filled = np.bincount(trades.buy_order, q, n_orders) + np.bincount(trades.sell_order, q, n_orders)
    if price is None:
        price = float(trades.price @ q / q.sum())
    return ClearingResult(trades=trades, filled=filled, clearing_price=price)


# ------------------------------------------------------------------------------------------------ bilateral


def candidate_pairs(
    weight: FloatArray, ok: np.ndarray, price_b: FloatArray, price_a: FloatArray, q_b: FloatArray,
    q_a: FloatArray, k: int,
) -> np.ndarray:  # fmt: skip
    """bool[Nb, Na]: the allowed pairs ``ok`` kept by sparse bilateral matching with ``k`` candidates.

    Each bid keeps its ``k`` asks of largest surplus ``weight`` (bid − ask − preference costs) and each ask its
    ``k`` such bids; and every bid keeps the asks whose place in the merit order (bids by price descending, asks
    ascending, positioned by cumulative quantity) overlaps its own, widened by ``k`` asks on each side. Without
    preferences and partner choices the overlapping pairs alone carry the merit-order matching, which is optimal
    (it fills the same orders as the uniform-price auction), so the sparse LP loses nothing; with them it is an
    approximation, exact once ``k`` reaches the number of counterparts. The LP then has at most about
    ``(3k + 2)·(Nb + Na)`` pairs instead of ``Nb·Na``.
    """
    nb, na = ok.shape
    keep = np.zeros_like(ok)
    w = np.where(ok, weight, -np.inf)
    kb, ka = min(k, na), min(k, nb)
    rows = np.arange(nb)[:, None]
    keep[rows, np.argpartition(-w, kb - 1, axis=1)[:, :kb]] = True
    keep[np.argpartition(-w, ka - 1, axis=0)[:ka, :], np.arange(na)[None, :]] = True
    ob = np.argsort(-price_b, kind="stable")
    oa = np.argsort(price_a, kind="stable")
    hb = np.cumsum(q_b[ob])
    lb = hb - q_b[ob]
    ha = np.cumsum(q_a[oa])
    la = ha - q_a[oa]
    first = np.searchsorted(
        ha, lb, side="right"
    )  # first ask (merit rank) whose interval ends after the bid's start
    last = np.searchsorted(la, hb, side="left")  # one past the last ask that starts before the bid's end
    first = np.clip(first - k, 0, na)
    last = np.clip(last + k, 0, na)
    span = last - first
    if span.sum():
        rank = np.repeat(first, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span))
        keep[np.repeat(ob, span), oa[rank]] = True
    return keep & ok


def _bilateral(
    orders: Orders,
    k: float,
    partners: np.ndarray,
    preference: np.ndarray | None,
    candidates: int | None = None,
    premium: np.ndarray | None = None,
) -> ClearingResult:
    n_orders = len(orders)
    q, p, a = orders.quantity, orders.price, orders.agent
    live = q > 0
    # Canonical order (agent, price, quantity) so the LP, hence the solution, ignores the order indices.
    bids = np.flatnonzero(orders.is_buy & live)
    asks = np.flatnonzero(~orders.is_buy & live)
    bids = bids[np.lexsort((q[bids], p[bids], a[bids]))]
    asks = asks[np.lexsort((q[asks], p[asks], a[asks]))]
    if not len(bids) or not len(asks):
        return ClearingResult.empty(n_orders)
    ab, aa = a[bids], a[asks]
    value = (
        p[bids][:, None] if premium is None else p[bids][:, None] + premium[ab][:, aa]
    )  # the buyer's, per seller
    with np.errstate(over="ignore"):
        weight = value - p[asks][None, :]
        if preference is not None:
            weight = weight - preference[ab][:, aa] - preference[aa][:, ab].T
    if not np.all(np.isfinite(weight)):
        # Prices near the float64 limit overflowed the difference: a quarter of every term cannot overflow,
        # and a positive multiple of the weights has the same signs and the same optimal flows.
        weight = 0.25 * value - 0.25 * p[asks][None, :]
        if preference is not None:
            weight = weight - 0.25 * preference[ab][:, aa] - 0.25 * preference[aa][:, ab].T
    ok = (weight > 0) & partners[ab][:, aa] & partners[aa][:, ab].T & (ab[:, None] != aa[None, :])
    if not ok.any():
        return ClearingResult.empty(n_orders)
    if candidates is not None:
        ok = candidate_pairs(weight, ok, p[bids], p[asks], q[bids], q[asks], candidates)
    ii, jj, x, q_lp = _transport(weight, ok, q[bids], q[asks])
    # Remove solver noise: drop dust and scale so that no order is overfilled even by rounding. The flows are
    # sums and differences of the LP's capacities, exact up to rounding of order eps × the largest of them;
    # flows below 1e-12 × that are dust.
    x = np.where(x > 1e-12 * q_lp, x, 0.0)
    fill_b = np.bincount(ii, x, len(bids))
    fill_a = np.bincount(jj, x, len(asks))
    rb = np.minimum(1.0, np.divide(q[bids], fill_b, out=np.ones(len(bids)), where=fill_b > 0))
    ra = np.minimum(1.0, np.divide(q[asks], fill_a, out=np.ones(len(asks)), where=fill_a > 0))
    x = x * np.minimum(rb[ii], ra[jj])
    pos = x > 0
    ii, jj, x = ii[pos], jj[pos], x[pos]
    bo, so = bids[ii], asks[jj]
    bid = p[bo] if premium is None else p[bo] + premium[a[bo], a[so]]
    price = k * bid + (1.0 - k) * p[so]
    return _result(Trades(bo, so, a[bo], a[so], x, price), n_orders, None)


def _transport(
    weight: FloatArray, ok: np.ndarray, cap_b: FloatArray, cap_a: FloatArray
) -> tuple[IntArray, IntArray, FloatArray, float]:
    """Exact optimum of the transportation LP over the allowed pairs ``ok``: edges (bid, ask), flows, and the
    largest capacity of the LP solved (kWh).

    HiGHS' tolerances are absolute (1e-10 here) and it reads bounds and costs of 1e20 or more as infinite.
    Books whose largest order lies in [2^-10, 2^18) kWh are solved in kWh as they are; for the others the LP
    is first put on a scale where it solves exactly. No step changes the optimal flows:

    * a capacity above twice the total capacity of the orders it may trade with is lowered to that total
      times two (the row still never binds), so that an order too large to trade in full does not set the
      scale of the others;
    * quantities are then divided by a power of two (exact in floating point, undone on the flows) that
      brings the largest into [2^17, 2^18) if it is 2^18 kWh or more, into [1, 2) if it is below 2^-10. Up
      to 2^18 the rounding noise stays below the feasibility tolerance (eps × 2^18 ≈ 6e-11); above about
      2e6 kWh it does not, and the primal simplex called legal books unbounded;
    * weights are divided by a power of two that brings the largest into [1, 2);
    * every flow gets the upper bound 2 × the largest capacity. No feasible flow reaches it, but the LP is
      then bounded by construction and cannot be reported unbounded.
    """
    ii, jj = np.nonzero(ok)
    w = weight[ii, jj]
    q_max = max(float(cap_b.max()), float(cap_a.max()))
    sq = 1.0
    if not 2.0**-10 <= q_max < 2.0**18:
        cap_b = np.minimum(cap_b, 2.0 * np.bincount(ii, cap_a[jj], len(cap_b)))
        cap_a = np.minimum(cap_a, 2.0 * np.bincount(jj, cap_b[ii], len(cap_a)))
        q_max = max(float(cap_b.max()), float(cap_a.max()))
        if q_max >= 2.0**18:
            sq = _pow2_floor(q_max) / 2.0**17
        elif q_max < 2.0**-10:
            sq = _pow2_floor(q_max)
    sw = _pow2_floor(float(w.max()))
    cb, ca = cap_b / sq, cap_a / sq
    upper = np.full(len(w), 2.0 * q_max / sq)
    try:
        import highspy  # noqa: F401
    except ImportError:  # pragma: no cover - highspy ships with cvxpy, a core dependency
        return ii, jj, sq * _transport_linprog(w / sw, ii, jj, cb, ca, upper), q_max
    return ii, jj, sq * _transport_lp(w / sw, ii, jj, cb, ca, upper), q_max


def _pow2_floor(v: float) -> float:
    """The largest power of two ≤ ``v`` (``v`` > 0 and finite)."""
    return math.ldexp(1.0, math.frexp(v)[1] - 1)


_HIGHS = threading.local()


def _highs() -> Any:
    """This thread's HiGHS instance, made once and reused (``passModel`` replaces the model each solve).

    Since HiGHS 1.16, ``highspy.Highs()`` writes its banner to file descriptor 1 while it is constructed,
    before ``output_flag`` can be set, so the construction runs with fd 1 pointed at ``/dev/null``: a market
    library must not print. Reuse also saves the construction (~0.1 ms) on every bilateral clearing. The
    process id is part of the key so a forked worker makes its own instance.
    """
    import highspy

    pid = os.getpid()
    if getattr(_HIGHS, "pid", None) != pid:
        if sys.stdout is not None:  # push pending Python output out before fd 1 is redirected
            sys.stdout.flush()
        try:
            saved = os.dup(1)
        except OSError:  # no fd 1 (a detached daemon): nothing to protect
            saved = -1
        try:
            if saved >= 0:
                with open(os.devnull, "w") as null:
                    os.dup2(null.fileno(), 1)
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
        finally:
            if saved >= 0:
                os.dup2(saved, 1)
                os.close(saved)
        # Primal simplex without presolve or scaling: ~20× faster than the defaults on these network LPs
        # (100 agents × 1 bid + 1 ask, all partners: 4 ms instead of 90 ms).
        h.setOptionValue("simplex_strategy", 4)
        h.setOptionValue("presolve", "off")
        h.setOptionValue("simplex_scale_strategy", 0)
        h.setOptionValue("primal_feasibility_tolerance", 1e-10)
        h.setOptionValue("dual_feasibility_tolerance", 1e-10)
        _HIGHS.pid, _HIGHS.h = pid, h
    return _HIGHS.h


def _transport_lp(
    w: FloatArray, ii: IntArray, jj: IntArray, cap_b: FloatArray, cap_a: FloatArray, upper: FloatArray
) -> FloatArray:
    """Flows of max Σ w_e x_e s.t. Σ_{e at bid i} x_e ≤ cap_b[i], Σ_{e at ask j} x_e ≤ cap_a[j],
    0 ≤ x_e ≤ upper[e] (HiGHS).
    """
    import highspy

    nb, m = len(cap_b), len(w)
    h = _highs()
    h.clearModel()  # also drops the last basis, so a solve never depends on the previous one
    n_rows = nb + len(cap_a)
    index = np.empty(2 * m, dtype=np.int32)
    index[0::2] = ii
    index[1::2] = nb + jj
    # Array overload of passModel (column-wise matrix, minimise): no per-field copies through HighsLp.
    status_pass = h.passModel(
        m,
        n_rows,
        2 * m,
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        np.ascontiguousarray(-w, dtype=np.float64),
        np.zeros(m),
        np.ascontiguousarray(upper, dtype=np.float64),
        np.full(n_rows, -highspy.kHighsInf),
        np.concatenate([cap_b, cap_a]).astype(np.float64),
        np.arange(0, 2 * m, 2, dtype=np.int32),
        index,
        np.ones(2 * m),
        np.zeros(m, dtype=np.int32),  # all columns continuous
    )
    if status_pass != highspy.HighsStatus.kOk:
        raise MarketError(f"bilateral: the LP was rejected by HiGHS (status {status_pass})")
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise MarketError(f"bilateral: LP solver status must be optimal, got {h.modelStatusToString(status)}")
    return np.asarray(h.getSolution().col_value, dtype=np.float64)


def _transport_linprog(
    w: FloatArray, ii: IntArray, jj: IntArray, cap_b: FloatArray, cap_a: FloatArray, upper: FloatArray
) -> FloatArray:  # pragma: no cover - fallback without highspy
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    nb, m = len(cap_b), len(w)
    cols = np.arange(m)
    a_ub = csr_matrix((np.ones(2 * m), (np.concatenate([ii, nb + jj]), np.concatenate([cols, cols]))))
    res: Any = linprog(
        -w,
        A_ub=a_ub,
        b_ub=np.concatenate([cap_b, cap_a]),
        bounds=np.column_stack([np.zeros(m), upper]),
        method="highs-ds",
    )
    if res.status != 0:
        raise MarketError(f"bilateral: LP solver status must be optimal (0), got {res.status}: {res.message}")
    return np.asarray(res.x, dtype=np.float64)
