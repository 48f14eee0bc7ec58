"""Nash bargaining over payments (Suthar, Cherukuri & Pindoriya 2023, §4.1.2, eqs. 5–6).

Model. Stage one fixes the quantities: the welfare-maximising allocation of the book
(:func:`~p2p_gym.games.utility.efficient_allocation`, the uniform call market on the effective limits), with
value ``w_n`` of agent n's P2P volume and surplus ``W = Σ_n w_n``. Stage two bargains over the net payments
``t_n = paid_n − received_n`` of the M agents that trade:

    max_t  Π_{n ∈ M} g_n,   g_n = w_n − t_n        (eq. 5: U_π + U_p2p − U_ind with U_π = −t_n)
    s.t.   g_n ≥ 0  (eq. 6),   Σ_n t_n = 0  (budget balance)

Budget balance makes ``Σ g_n = W``. Taking logs, ``max Σ log g_n`` s.t. ``Σ g_n = W`` is strictly concave;
its Lagrangian ``Σ log g_n − λ(Σ g_n − W)`` gives ``1/g_n = λ`` for every n, so with transferable utility

    g_n = W / M,   t_n = w_n − W / M                (equal split of the surplus; Nash 1950)

which is also the unique maximiser because the product is strictly log-concave on the simplex.

Option ``price_band=True`` adds that every agent pays and receives prices inside the grid's band: a buyer's
average price is ≥ feed-in and a seller's ≤ retail (the other ends of the band, price ≤ retail for a buyer and
≥ feed-in for a seller, are implied by g_n ≥ 0 and v̂ ≤ retail, ĉ ≥ feed-in). That caps each gain,
``g_n ≤ h_n = w_n − π_f·b_n + π_r·s_n`` (b_n, s_n kWh bought and sold). The KKT conditions
``1/g_n = λ + μ_n``, ``μ_n ≥ 0``, ``μ_n·(h_n − g_n) = 0`` give the water-filling solution
``g_n = min(L, h_n)`` with the level L solving ``Σ min(L, h_n) = W``; it exists because
``Σ h_n = W + (π_r − π_f)·V ≥ W`` (V the traded volume). Both cases are computed in closed form (a sort and a
cumulative sum).

Money. Budget balanced: Σ paid − Σ received = 0 (no operator margin). Agents that do not trade pay nothing
and gain nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2p_gym.games.utility import (
    check_book,
    check_tariffs,
    efficient_allocation,
    price_with_transfers,
    savings,
    trade_value,
    trading_agents,
)
from p2p_gym.market.types import BoolArray, ClearingResult, FloatArray, Orders

__all__ = ["BargainingDiagnostics", "clear_nash_bargaining", "solve_nash_bargaining", "water_fill"]


@dataclass(frozen=True)
class BargainingDiagnostics:
    """The bargaining outcome, per agent (float64[N] over agents ``0 .. N-1``) unless stated.

    Attributes:
        surplus: W, the gains from trade of the efficient allocation (currency).
        trade_value: w_n, value of agent n's P2P volume at its effective limits.
        gains: g_n = w_n − t_n, each agent's gain over its stand-alone outcome (W/M for traders by default).
        savings: stand-alone bill − P2P bill (money only).
        trading: bool[N], the M bargaining agents (at least one trade).
        cap: h_n, the gain cap of ``price_band`` (inf without it; 0 for agents that do not trade).
        level: the common gain W/M (or the water level L with ``price_band``); 0 without trades.
        log_nash_product: Σ_{trading} log g_n (−inf if some g_n = 0; 0 without traders).
        operator_margin: Σ paid − Σ received; 0 (budget balanced).
    """

    surplus: float
    trade_value: FloatArray
    gains: FloatArray
    savings: FloatArray
    trading: BoolArray
    cap: FloatArray
    level: float
    log_nash_product: float
    operator_margin: float


def water_fill(total: float, cap: FloatArray) -> tuple[FloatArray, float]:
    """``(g, L)`` with ``g = min(L, cap)`` and ``Σ g = total`` (caps may be inf): the maximiser of
    ``Σ log g`` over ``{g ≥ 0, g ≤ cap, Σ g = total}``.

    Requires ``0 ≤ total ≤ Σ cap``; a sort and a cumulative sum. With every cap infinite, ``L = total / M``.
    """
    cap = np.asarray(cap, dtype=np.float64)
    m = len(cap)
    if m == 0:
        return np.zeros(0), 0.0
    hs = np.sort(cap)
    below = np.concatenate([[0.0], np.cumsum(hs[:-1])])  # Σ of the k smallest caps, k = 0 .. m-1
    with np.errstate(invalid="ignore"):
        level = (total - below) / (m - np.arange(m))  # the level if the k smallest caps bind
        # k caps bind iff the level lies in [hs[k-1], hs[k]]; the first k with level ≤ hs[k] is it.
        ok = level <= hs
    k = int(np.argmax(ok)) if ok.any() else m - 1
    lvl = float(max(level[k], 0.0))
    return np.minimum(lvl, cap), lvl


def solve_nash_bargaining(
    orders: Orders,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
    *,
    price_band: bool = False,
) -> tuple[ClearingResult, BargainingDiagnostics]:
    """The Nash bargaining solution over payments for the efficient quantities (model in the module docstring).

    Args:
        orders: the book (one interval).
        retail_price, feed_in_price: the grid tariffs (currency/kWh), 0 ≤ feed-in ≤ retail.
        n_agents: N (default max agent index + 1).
        price_band: also keep every agent's average price within [feed-in, retail] (water-filling).

    Returns:
        The efficient trades repriced by the bargaining payments, and the diagnostics.

    Raises:
        MarketError: bad book, tariffs or ``n_agents``.
    """
    retail, feed_in = check_tariffs(retail_price, feed_in_price)
    n = check_book(orders, n_agents)
    alloc = efficient_allocation(orders, retail, feed_in)
    w = trade_value(orders, alloc.filled, retail, feed_in, n)
    trading = trading_agents(alloc, n)
    surplus = float(max(w[trading].sum(), 0.0))
    if price_band:
        cap = np.where(trading, w - feed_in * alloc.bought(n) + retail * alloc.sold(n), 0.0)
    else:
        cap = np.where(trading, np.inf, 0.0)
    g = np.zeros(n)
    g[trading], level = water_fill(surplus, cap[trading])
    result = price_with_transfers(alloc, np.where(trading, w - g, 0.0))
    with np.errstate(divide="ignore"):
        log_product = float(np.sum(np.log(g[trading])))
    diag = BargainingDiagnostics(
        surplus=surplus,
        trade_value=w,
        gains=g,
        savings=savings(orders, result, retail, feed_in, n),
        trading=trading,
        cap=cap,
        level=level,
        log_nash_product=log_product,
        operator_margin=result.trades.operator_margin,
    )
    return result, diag


def clear_nash_bargaining(
    orders: Orders,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
    *,
    price_band: bool = False,
) -> ClearingResult:
    """:func:`solve_nash_bargaining` without the diagnostics."""
    return solve_nash_bargaining(orders, retail_price, feed_in_price, n_agents, price_band=price_band)[0]
