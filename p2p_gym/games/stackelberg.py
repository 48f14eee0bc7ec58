"""A Stackelberg game between a community manager and its members (Suthar, Cherukuri & Pindoriya 2023,
§4.1.2, eqs. 3–4: a leader sets prices, the prosumers best-respond; there the grid is the leader and chooses its
selling price, here the community manager sets the internal prices).

Model. The leader sets an internal buy price ``p_b`` (what buyers pay per kWh) and sell price ``p_s`` (what
sellers receive), with ``π_f ≤ p_s ≤ p_b ≤ π_r`` (inside the grid's band, and the leader does not subsidise
trades). The followers are the orders (at most one live order per agent): a bid buys its whole quantity iff its
effective value ``v̂ ≥ p_b``, an ask sells its whole quantity iff its effective cost ``ĉ ≤ p_s`` (package
docstring; with prices inside the band this is the same as comparing the raw limits). Demand
``D(p_b) = Σ_{v̂ ≥ p_b} q`` meets supply ``S(p_s) = Σ_{ĉ ≤ p_s} q``; ``V = min(D, S)`` trades and the long
side is rationed pro rata (bid i gets ``q_i·V/D``, ask j delivers ``q_j·V/S``). The leader maximises

* ``objective="margin"``: its own margin ``M = (p_b − p_s)·V``;
* ``objective="welfare"``: the community's welfare (members' gains plus the margin)
  ``W = (V/D)·Σ_{v̂ ≥ p_b} v̂·q − (V/S)·Σ_{ĉ ≤ p_s} ĉ·q``.

Ties are broken towards larger V, then the smaller spread p_b − p_s, then the lower p_b.

Breakpoints. Let ``B = {v̂_i ∈ [π_f, π_r]} ∪ {π_r}`` and ``A = {ĉ_j ∈ [π_f, π_r]} ∪ {π_f}``. Claim: some
maximiser lies in ``B × A``. Proof. D is non-increasing and left-continuous in p_b (a bid stays in at
``p_b = v̂``), so the band splits into intervals ``(β', β]`` with consecutive β', β ∈ B ∪ {π_f} on which the
set of active bids is constant; likewise S is non-decreasing and right-continuous, constant on
``[α, α')`` with consecutive α, α' ∈ A ∪ {π_r}. On such a cell (p_b in ``(β', β]``, p_s in ``[α, α')``)
V, D, S and the active sets are constant, so W is constant and M = (p_b − p_s)·V is non-decreasing in p_b
and non-increasing in p_s; both are therefore maximised over the cell at its corner ``(β, α) ∈ B × A``, which
is feasible whenever any point of the cell is (raising p_b and lowering p_s keeps ``p_s ≤ p_b``). The cells
cover the feasible set, so the best corner is a global maximiser. ∎ Evaluating all ``|B|·|A| = O(N²)``
corners (sorted cumulative sums, one array operation) is therefore exact for any N.

Money: buyers pay p_b, sellers receive p_s, so Σ paid − Σ received = the operator margin ``(p_b − p_s)·V``
(kept by the leader; ``Trades.seller_price`` = p_s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2p_gym.errors import MarketError
from p2p_gym.games.utility import (
    check_book,
    check_tariffs,
    effective_limits,
    efficient_allocation,
    gains,
    single_order_per_agent,
    welfare,
)
from p2p_gym.market.types import ClearingResult, FloatArray, Orders, Trades

__all__ = [
    "OBJECTIVES",
    "StackelbergDiagnostics",
    "clear_stackelberg",
    "follower_outcome",
    "solve_stackelberg",
]

#: The leader's objectives.
OBJECTIVES: tuple[str, ...] = ("margin", "welfare")


@dataclass(frozen=True)
class StackelbergDiagnostics:
    """The leader's optimum.

    Attributes:
        buy_price, sell_price: p_b and p_s (currency/kWh).
        objective: ``"margin"`` or ``"welfare"``.
        objective_value: the leader's objective at the optimum (currency).
        margin: (p_b − p_s)·V, the leader's margin = Σ paid − Σ received (the operator margin).
        welfare: the community's welfare W (members' gains + margin).
        welfare_optimum: W* of the efficient allocation of the same book (W ≤ W*).
        volume: V (kWh).
        demand, supply: D(p_b) and S(p_s) (kWh).
        gains: float64[N] members' gains over their stand-alone outcomes.
        n_candidates: price pairs evaluated (feasible corners of B × A).
    """

    buy_price: float
    sell_price: float
    objective: str
    objective_value: float
    margin: float
    welfare: float
    welfare_optimum: float
    volume: float
    demand: float
    supply: float
    gains: FloatArray
    n_candidates: int


def follower_outcome(
    limit: FloatArray, is_buy: np.ndarray, quantity: FloatArray, buy_price: float, sell_price: float
) -> tuple[FloatArray, float]:
    """``(fill, V)``: kWh filled per order (float[K]) and the volume when the leader posts (p_b, p_s), for
    effective limits ``limit`` (followers' best responses with pro-rata rationing of the long side)."""
    active = np.where(is_buy, limit >= buy_price, limit <= sell_price) & (quantity > 0)
    d = float(quantity[active & is_buy].sum())
    s = float(quantity[active & ~is_buy].sum())
    v = min(d, s)
    if v <= 0:
        return np.zeros(len(quantity)), 0.0
    fill = np.where(active, quantity * np.where(is_buy, v / d, v / s), 0.0)
    return fill, v


def solve_stackelberg(
    orders: Orders,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
    *,
    objective: str = "margin",
) -> tuple[ClearingResult, StackelbergDiagnostics]:
    """The leader's optimal internal prices by enumerating the followers' breakpoints (module docstring).

    Args:
        orders: the book, at most one live order per agent.
        retail_price, feed_in_price: the grid tariffs (currency/kWh), 0 ≤ feed-in ≤ retail.
        n_agents: N (default max agent index + 1).
        objective: ``"margin"`` (the leader's profit) or ``"welfare"`` (the community's welfare).

    Returns:
        Pro-rata trades between the active bids and asks (buyers pay p_b, sellers receive p_s; clearing price
        p_b) and the diagnostics.

    Raises:
        MarketError: bad book (two live orders of one agent), tariffs or objective.
    """
    retail, feed_in = check_tariffs(retail_price, feed_in_price)
    n = check_book(orders, n_agents)
    if objective not in OBJECTIVES:
        raise MarketError(f"objective: must be one of {list(OBJECTIVES)}, got {objective!r}")
    single_order_per_agent(orders, "the Stackelberg game")
    lim = effective_limits(orders, retail, feed_in)
    live = orders.quantity > 0
    bid = live & orders.is_buy
    ask = live & ~orders.is_buy
    pb_cand = np.unique(np.append(lim[bid & (lim >= feed_in)], retail))
    ps_cand = np.unique(np.append(lim[ask & (lim <= retail)], feed_in))
    # D(p_b) and Σ v̂·q over the bids with v̂ ≥ p_b; S(p_s) and Σ ĉ·q over the asks with ĉ ≤ p_s.
    bv, bq = lim[bid], orders.quantity[bid]
    order_b = np.argsort(-bv, kind="stable")
    cum_bq = np.concatenate([[0.0], np.cumsum(bq[order_b])])
    cum_bvq = np.concatenate([[0.0], np.cumsum((bv * bq)[order_b])])
    n_in_b = np.searchsorted(-bv[order_b], -pb_cand, side="right")
    demand, value = cum_bq[n_in_b], cum_bvq[n_in_b]
    av, aq = lim[ask], orders.quantity[ask]
    order_a = np.argsort(av, kind="stable")
    cum_aq = np.concatenate([[0.0], np.cumsum(aq[order_a])])
    cum_acq = np.concatenate([[0.0], np.cumsum((av * aq)[order_a])])
    n_in_a = np.searchsorted(av[order_a], ps_cand, side="right")
    supply, cost = cum_aq[n_in_a], cum_acq[n_in_a]
    pb, ps = pb_cand[:, None], ps_cand[None, :]
    d, s = demand[:, None], supply[None, :]
    vol = np.minimum(d, s)
    feasible = np.broadcast_to(ps <= pb, vol.shape)
    margin = (pb - ps) * vol
    w = (
        np.divide(vol, d, out=np.zeros_like(vol), where=d > 0) * value[:, None]
        - np.divide(vol, s, out=np.zeros_like(vol), where=s > 0) * cost[None, :]
    )
    obj = margin if objective == "margin" else w
    obj = np.where(feasible, obj, -np.inf)
    top = float(obj.max())
    tie = obj >= top - 1e-12 * max(1.0, abs(top))
    spread = np.broadcast_to(pb - ps, vol.shape)
    pbs = np.broadcast_to(pb, vol.shape)
    ii, jj = np.nonzero(tie)
    best = np.lexsort((pbs[ii, jj], spread[ii, jj], -vol[ii, jj]))[0]
    i, j = int(ii[best]), int(jj[best])
    p_b, p_s = float(pb_cand[i]), float(ps_cand[j])
    fill, v = follower_outcome(lim, orders.is_buy, orders.quantity, p_b, p_s)
    result = _pro_rata_trades(orders, fill, v, p_b, p_s)
    diag = StackelbergDiagnostics(
        buy_price=p_b,
        sell_price=p_s,
        objective=objective,
        objective_value=float(obj[i, j]),
        margin=result.trades.operator_margin,
        welfare=welfare(orders, result.filled, retail, feed_in),
        welfare_optimum=welfare(
            orders, efficient_allocation(orders, retail, feed_in).filled, retail, feed_in
        ),
        volume=v,
        demand=float(demand[i]),
        supply=float(supply[j]),
        gains=gains(orders, result, retail, feed_in, n),
        n_candidates=int(np.count_nonzero(feasible)),
    )
    return result, diag


def _pro_rata_trades(
    orders: Orders, fill: FloatArray, volume: float, p_b: float, p_s: float
) -> ClearingResult:
    """Trades ``fill_i·fill_j / V`` between every filled bid i and ask j (buyer pays p_b, seller gets p_s)."""
    k = len(orders)
    if volume <= 0:
        return ClearingResult(Trades.empty(), np.zeros(k), p_b)
    bo = np.flatnonzero(orders.is_buy & (fill > 0))
    so = np.flatnonzero(~orders.is_buy & (fill > 0))
    qty = np.outer(fill[bo], fill[so]).ravel() / volume
    b_idx, s_idx = np.repeat(bo, len(so)), np.tile(so, len(bo))
    m = len(qty)
    trades = Trades(b_idx, s_idx, orders.agent[b_idx], orders.agent[s_idx], qty,
                    np.full(m, p_b), np.full(m, p_s))  # fmt: skip
    filled = np.bincount(b_idx, qty, k) + np.bincount(s_idx, qty, k)
    return ClearingResult(trades=trades, filled=filled, clearing_price=p_b)


def clear_stackelberg(
    orders: Orders,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
    *,
    objective: str = "margin",
) -> ClearingResult:
    """:func:`solve_stackelberg` without the diagnostics."""
    return solve_stackelberg(orders, retail_price, feed_in_price, n_agents, objective=objective)[0]
