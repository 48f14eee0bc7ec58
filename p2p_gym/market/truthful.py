"""Truthful double auctions: McAfee's trade reduction and the VCG double auction, for divisible orders.

Both are selected through :func:`p2p_gym.market.clear` (``"mcafee"``, ``"vcg"``); ``k`` and ``rng`` are unused
by them (each sets its own prices). Neither is budget balanced trade by trade: a trade's buyer pays ``price``
per kWh and its seller receives ``seller_price``, and ``Trades.operator_margin`` = Σ q·(price − seller_price)
is what the market operator keeps (McAfee: ≥ 0) or covers (VCG: ≤ 0). Truthfulness is meant for the setting
of the sources: one order per agent, a buyer's value per kWh = its bid price up to its quantity, a seller's
cost per kWh = its ask price up to its quantity (utility = value·q − payment, payment − cost·q). Agents with
several orders, or on both sides, are cleared by the same rules, but the incentive properties are not claimed
for them.

``"mcafee"`` — trade reduction (McAfee 1992, J. Econ. Theory 56(2):434–450, §2 "The mechanism")
    Every order with a positive quantity is one of McAfee's traders. Bids are ranked by price descending,
    asks ascending (ties by agent, then by order index — never by quantity). With b₁ ≥ b₂ ≥ … and
    s₁ ≤ s₂ ≤ …, ``k`` is the last crossing, the largest ``k`` with ``b_k ≥ s_k``. If ``b_{k+1}`` and
    ``s_{k+1}`` both exist, ``p₀ = (b_{k+1} + s_{k+1})/2``; if ``s_k ≤ p₀ ≤ b_k`` the first ``k`` bids and
    asks win and trade at ``p₀`` (budget balanced). Otherwise the ``k``-th pair is removed (trade reduction):
    the first ``k − 1`` bids and asks win, buyers pay ``b_k`` per kWh, sellers receive ``s_k``, and the
    operator keeps ``(b_k − s_k)`` per kWh traded. The winners' kWh are then traded in full on the short
    side; the long side is rationed **pro rata to quantity**: with ``D`` and ``S`` the winning bids' and asks'
    total kWh, every winning bid gets ``q·min(1, S/D)`` and every winning ask ``q·min(1, D/S)``. The fills are
    paired by walking both sides in rank order (no agent trades with itself; a self pair swaps partners as
    in the call markets). ``clearing_price`` is what buyers pay per kWh.

    *Why this divisible extension.* Who wins and at which price depends only on the ranks of the prices,
    and a winner's kWh only on the winners' quantities, not on anyone's price. With one order per agent this
    keeps McAfee's dominant-strategy argument (a winner's price is set by orders that are not its own, and
    it can change the outcome only by losing), and adds truthfulness in quantity: a winner's price does not
    depend on its quantity, and its pro-rata fill ``q·S/(q + D₋ᵢ)`` increases with ``q``, so reporting
    less than its true quantity never pays. The alternative that locates ``k`` at the efficient *kWh*
    crossing of the step curves and removes the marginal bid and ask orders is **not** truthful in quantity,
    because an intramarginal agent's quantity moves the crossing and hence its own price (demand reduction,
    Ausubel & Cramton 2002, "Demand reduction and inefficiency in multi-unit auctions", §1). Example: bids
    A 1.0×10, B 0.9×1, C 0.2×5; asks D 0.1×10, E 0.5×10 (price×kWh). The kWh crossing is B–E, p₀ = 0.35
    is below E's 0.5, so B and E are removed and A buys 10 kWh at 0.9 (utility 1.0); if A reports 9 kWh the
    crossing becomes B–D, p₀ = 0.35 lies in [0.1, 0.9], and A buys 9 kWh at 0.35 (utility 5.85). Expanding
    orders into unit lots has the same defect for agents holding several lots.

    *Properties.* Individually rational (every winning bid ≥ ``b_k`` ≥ its price, every winning ask ≤ ``s_k``
    ≤ its price; in the p₀ branch ``s_k ≤ p₀ ≤ b_k``), weakly budget balanced (operator margin ≥ 0), and
    dominant-strategy truthful in price and in quantity up to the true quantity for single-order agents
    (McAfee 1992, §3). With equal quantities ``q`` the efficiency loss is at most the reduced pair's gain
    ``q·(b_k − s_k)``, the least valuable of the efficient trades (McAfee 1992, Theorem 1); with unequal
    quantities the rank crossing and the pro-rata rationing can lose more (a 10 kWh bid facing ten 1 kWh
    asks is one trader against ten).

``"vcg"`` — Vickrey–Clarke–Groves double auction (Vickrey 1961, J. Finance 16(1):8–37; Clarke 1971, Public
Choice 11:17–33; Groves 1973, Econometrica 41(4):617–631; as a double auction Parkes, Kalagnanam & Eso 2001,
IJCAI, §2)
    The allocation is efficient: the welfare-maximising matching of the book, the same fills as the uniform
    call market (``"uniform"``; the maximal-volume crossing with pro-rata rationing at the marginal price
    level). The reported welfare of a fill ``x`` is ``W(x) = Σ_bids b·x − Σ_asks s·x`` and
    ``u_i(x)`` is agent i's part of it. With ``W*`` the optimum and ``W₋ᵢ`` the optimum of the book without
    agent i's orders, agent i pays the externality it imposes on the others,

        ``t_i = W₋ᵢ − (W* − u_i(x*))``,

    so that its utility is ``u_i(x*) − t_i = W* − W₋ᵢ``, its marginal contribution. A buyer pays ``t_i``
    (0 ≤ t_i ≤ b·x_i); a seller receives ``−t_i`` (≥ s·x_j). The payments become trade prices through
    :func:`~p2p_gym.market.payments.with_payments`: a buyer's trades are priced at ``t_i / bought_i``, a
    seller's at ``−t_j / sold_j``; an agent on both sides carries its net transfer on the side whose trades
    can carry it (purchases if it pays, sales if it is paid). Dominant-strategy truthful for any quasi-linear
    values (Groves 1973, Theorem 1), individually rational and efficient, but not budget balanced: in a double
    auction the buyers pay less than the sellers receive (Myerson & Satterthwaite 1983, J. Econ. Theory
    29(2):265–281, Theorem 1), so ``operator_margin`` ≤ 0 is the deficit the operator covers.
    ``clearing_price`` is the volume-weighted mean of what buyers pay.
"""

from __future__ import annotations

import numpy as np

from p2p_gym.errors import MarketError
from p2p_gym.market.clearing import _avoid_self_matches, _call_market, _level_fill, _result
from p2p_gym.market.payments import with_payments
from p2p_gym.market.types import ClearingResult, FloatArray, IntArray, Orders, Trades

__all__ = ["clear_mcafee", "clear_vcg", "vcg_transfers", "welfare_optimum"]


def _check(orders: Orders) -> None:
    if not isinstance(orders, Orders):
        raise MarketError(f"orders: must be an Orders instance, got {type(orders).__name__}")


def _ranked(orders: Orders) -> tuple[IntArray, IntArray]:
    """Order indices of the live bids (price descending) and asks (price ascending); ties by agent, then
    order index, so that no order's rank depends on any quantity."""
    q, p, a = orders.quantity, orders.price, orders.agent
    live = q > 0
    bids = np.flatnonzero(orders.is_buy & live)
    asks = np.flatnonzero(~orders.is_buy & live)
    bids = bids[np.lexsort((bids, a[bids], -p[bids]))]
    asks = asks[np.lexsort((asks, a[asks], p[asks]))]
    return bids, asks


# ------------------------------------------------------------------------------------------------- McAfee


def clear_mcafee(orders: Orders) -> ClearingResult:
    """McAfee's trade-reduction double auction on a book of divisible orders (rules in the module docstring).

    Args:
        orders: the book; every order with a positive quantity is one trader.

    Returns:
        Trades with ``price`` = what buyers pay (p₀ or b_k) and ``seller_price`` = what sellers receive
        (p₀ or s_k); ``clearing_price`` = the buyers' price (nan without trades).

    Raises:
        MarketError: ``orders`` is not an :class:`~p2p_gym.market.Orders`.
    """
    _check(orders)
    n_orders = len(orders)
    bids, asks = _ranked(orders)
    m = min(len(bids), len(asks))
    pb, pa = orders.price[bids], orders.price[asks]
    k = int(
        np.count_nonzero(pb[:m] >= pa[:m])
    )  # b_i − s_i is non-increasing in i: the crossings are a prefix
    if k == 0:
        return ClearingResult.empty(n_orders)
    buy_price = sell_price = float("nan")
    winners = k - 1
    if k < len(bids) and k < len(asks):
        p0 = 0.5 * pb[k] + 0.5 * pa[k]  # (b_{k+1} + s_{k+1}) / 2, written so that it cannot overflow
        if pa[k - 1] <= p0 <= pb[k - 1]:
            winners, buy_price, sell_price = k, float(p0), float(p0)
    if winners == k - 1:
        buy_price, sell_price = float(pb[k - 1]), float(pa[k - 1])
    if winners == 0:
        return ClearingResult.empty(n_orders)
    wb, wa = bids[:winners], asks[:winners]
    qb, qa = orders.quantity[wb], orders.quantity[wa]
    demand, supply = float(qb.sum()), float(qa.sum())
    volume = min(demand, supply)
    fb = qb if demand <= supply else qb * (volume / demand)
    fa = qa if supply <= demand else qa * (volume / supply)
    ib, ia, seg = _walk(fb, fa, orders.agent[wb], orders.agent[wa], volume)
    buy_order, sell_order = wb[ib], wa[ia]
    buyer, seller = orders.agent[buy_order], orders.agent[sell_order]
    own = buyer != seller
    n = int(np.count_nonzero(own))
    trades = Trades._trusted(
        buy_order[own].astype(np.int64, copy=False), sell_order[own].astype(np.int64, copy=False),
        buyer[own].astype(np.int64, copy=False), seller[own].astype(np.int64, copy=False),
        seg[own].astype(np.float64, copy=False), np.full(n, buy_price), np.full(n, sell_price),
    )  # fmt: skip
    return _result(trades, n_orders, buy_price)


def _walk(
    fb: FloatArray, fa: FloatArray, agent_b: IntArray, agent_a: IntArray, volume: float
) -> tuple[IntArray, IntArray, FloatArray]:
    """Pair fills ``fb`` (bids in rank order) with ``fa`` (asks in rank order): (bid position, ask position,
    kWh) per segment between consecutive cumulative breakpoints, self pairs re-paired where possible."""
    tol = 1e-12 * max(1.0, volume)
    cb, ca = np.cumsum(fb), np.cumsum(fa)
    top = min(cb[-1], ca[-1])
    edges = np.unique(np.concatenate([[0.0], cb, ca]))
    edges = edges[edges <= top]
    seg = np.diff(edges)
    mid = edges[:-1] + 0.5 * seg
    keep = seg > tol
    seg, mid = seg[keep], mid[keep]
    ib = np.minimum(np.searchsorted(cb, mid, side="right"), len(cb) - 1)
    ia = np.minimum(np.searchsorted(ca, mid, side="right"), len(ca) - 1)
    if np.any(agent_b[ib] == agent_a[ia]):
        ib, ia, seg = _avoid_self_matches(ib, ia, seg, agent_b, agent_a, tol)
    return ib, ia, seg


# ---------------------------------------------------------------------------------------------------- VCG


def _surplus(pb: FloatArray, qb: FloatArray, pa: FloatArray, qa: FloatArray) -> float:
    """Optimal gains from trade of sorted bids (price descending) and asks (ascending): the area between
    the demand and supply step curves up to their crossing, Σ over walk segments of kWh·max(b − s, 0)."""
    if not len(pb) or not len(pa):
        return 0.0
    cb, ca = np.cumsum(qb), np.cumsum(qa)
    edges = np.unique(np.concatenate([[0.0], cb, ca]))
    edges = edges[edges <= min(cb[-1], ca[-1])]
    seg = np.diff(edges)
    mid = edges[:-1] + 0.5 * seg
    gain = (
        pb[np.minimum(np.searchsorted(cb, mid, side="right"), len(cb) - 1)]
        - pa[np.minimum(np.searchsorted(ca, mid, side="right"), len(ca) - 1)]
    )
    return float(seg @ np.maximum(gain, 0.0))


def welfare_optimum(orders: Orders, without_agent: int | None = None) -> float:
    """W*: the largest reported gains from trade Σ b·x − Σ s·x over feasible fills of the book (the surplus of
    the uniform call market's allocation), optionally with every order of agent ``without_agent`` removed.

    Raises:
        MarketError: ``orders`` is not an :class:`~p2p_gym.market.Orders`.
    """
    _check(orders)
    bids, asks = _ranked(orders)
    if without_agent is not None:
        bids = bids[orders.agent[bids] != without_agent]
        asks = asks[orders.agent[asks] != without_agent]
    p, q = orders.price, orders.quantity
    return _surplus(p[bids], q[bids], p[asks], q[asks])


def vcg_transfers(orders: Orders, n_agents: int | None = None) -> tuple[FloatArray, FloatArray]:
    """VCG transfers of the efficient allocation: (``t`` float[N], ``fills`` float[K]).

    ``t_i = W₋ᵢ − (W* − u_i(x*))`` is what agent i pays (negative: what it receives); ``fills`` are the
    efficient kWh per order (the uniform call market's fills before any self pair is dropped).

    Raises:
        MarketError: ``orders`` is not an :class:`~p2p_gym.market.Orders`; ``n_agents`` ≤ an agent index.
    """
    _check(orders)
    top = orders.n_agents
    if n_agents is None:
        n_agents = top
    if isinstance(n_agents, bool) or not isinstance(n_agents, int | np.integer) or n_agents < top:
        raise MarketError(f"n_agents: must be an integer >= max agent index + 1 = {top}, got {n_agents!r}")
    n = int(n_agents)
    fills = np.zeros(len(orders))
    bids, asks = _ranked(orders)
    p, q, a = orders.price, orders.quantity, orders.agent
    if not len(bids) or not len(asks):
        return np.zeros(n), fills
    pb, qb, pa, qa = p[bids], q[bids], p[asks], q[asks]
    # Efficient volume: the crossing of the step curves (segments with b ≥ s), as the uniform call market.
    cb, ca = np.cumsum(qb), np.cumsum(qa)
    edges = np.unique(np.concatenate([[0.0], cb, ca]))
    edges = edges[edges <= min(cb[-1], ca[-1])]
    seg = np.diff(edges)
    mid = edges[:-1] + 0.5 * seg
    crossing = (
        pb[np.minimum(np.searchsorted(cb, mid, side="right"), len(cb) - 1)]
        >= pa[np.minimum(np.searchsorted(ca, mid, side="right"), len(ca) - 1)]
    )
    volume = float(seg[crossing].sum())
    if volume <= 1e-12 * max(1.0, volume):
        return np.zeros(n), fills
    fills[bids] = _level_fill(pb, qb, volume, descending=True)
    fills[asks] = _level_fill(pa, qa, volume, descending=False)
    signed = np.where(orders.is_buy, p, -p) * fills
    utility = np.bincount(a, signed, n)  # u_i(x*): agent i's part of the reported welfare
    w_star = float(signed.sum())
    t = np.zeros(n)
    for i in np.unique(a[fills > 0]):  # an agent without fills has W₋ᵢ = W* and u_i = 0: t_i = 0
        keep_b, keep_a = a[bids] != i, a[asks] != i
        w_without = _surplus(pb[keep_b], qb[keep_b], pa[keep_a], qa[keep_a])
        t[i] = w_without - (w_star - utility[i])
    return t, fills


def clear_vcg(orders: Orders, n_agents: int | None = None) -> ClearingResult:
    """The VCG double auction (rules in the module docstring): the uniform call market's trades, repriced so
    that every agent pays (or receives) its VCG transfer.

    Args:
        orders: the book.
        n_agents: number of agents N (default: max agent index + 1).

    Returns:
        Trades with ``price`` = transfer per kWh bought, ``seller_price`` = transfer per kWh sold; the deficit is
        ``-trades.operator_margin`` (≥ 0 for single-order agents).

    Raises:
        MarketError: ``orders`` is not an :class:`~p2p_gym.market.Orders`; ``n_agents`` ≤ an agent index.
    """
    t, _ = vcg_transfers(orders, n_agents)
    res = _call_market(orders, 0.5, discriminatory=False)
    if not len(res.trades):
        return ClearingResult.empty(len(orders))
    n = len(t)
    bought, sold = res.trades.bought(n), res.trades.sold(n)
    pays = (bought > 0) & ((t >= 0) | (sold <= 0))
    paid = np.where(pays, t, 0.0)
    received = np.where(~pays & (sold > 0), -t, 0.0)
    return with_payments(res, paid, received)
