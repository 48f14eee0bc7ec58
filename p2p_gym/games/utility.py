"""The utility model shared by every mechanism of :mod:`p2p_gym.games` (defined in the package docstring).

Functions here map a book, an outcome and the tariffs to per-agent quantities (float64[N] over the agents
``0 .. N-1``): the effective limits, the trade value ``w_n``, the gain ``g_n`` and the money savings, and
the welfare-maximising allocation every cooperative mechanism starts from.
"""

from __future__ import annotations

import math

import numpy as np

from p2p_gym.errors import MarketError
from p2p_gym.market.clearing import clear
from p2p_gym.market.payments import with_payments
from p2p_gym.market.types import BoolArray, ClearingResult, FloatArray, Orders

__all__ = [
    "check_book",
    "check_tariffs",
    "effective_book",
    "effective_limits",
    "efficient_allocation",
    "gains",
    "price_with_transfers",
    "savings",
    "single_order_per_agent",
    "trade_value",
    "trading_agents",
    "welfare",
]


def check_tariffs(retail_price: float, feed_in_price: float) -> tuple[float, float]:
    """The tariffs as floats; 0 ≤ feed-in ≤ retail, both finite.

    Raises:
        MarketError: naming ``retail_price`` or ``feed_in_price`` and the allowed range.
    """
    out = []
    for name, value in (("retail_price", retail_price), ("feed_in_price", feed_in_price)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise MarketError(f"{name}: must be a real number (currency/kWh), got {value!r}") from None
        if not math.isfinite(v) or v < 0:
            raise MarketError(f"{name}: must be finite and >= 0 (currency/kWh), got {value!r}")
        out.append(v)
    retail, feed_in = out
    if feed_in > retail:
        raise MarketError(f"feed_in_price: must be <= retail_price = {retail!r}, got {feed_in!r}")
    return retail, feed_in


def check_book(orders: Orders, n_agents: int | None) -> int:
    """Number of agents N for ``orders`` (``n_agents`` if given, else max agent index + 1).

    Raises:
        MarketError: ``orders`` is not an :class:`Orders`, or ``n_agents`` is not an integer ≥ max index + 1.
    """
    if not isinstance(orders, Orders):
        raise MarketError(f"orders: must be an Orders instance, got {type(orders).__name__}")
    top = orders.n_agents
    if n_agents is None:
        return top
    if isinstance(n_agents, bool) or not isinstance(n_agents, int | np.integer) or n_agents < top:
        raise MarketError(f"n_agents: must be an integer >= max agent index + 1 = {top}, got {n_agents!r}")
    return int(n_agents)


def single_order_per_agent(orders: Orders, mechanism: str) -> None:
    """Raise unless every agent has at most one order with positive quantity (players are orders).

    Raises:
        MarketError: naming ``orders.agent`` and the first agent with two live orders.
    """
    live = orders.agent[orders.quantity > 0]
    counts = np.bincount(live, minlength=1)
    if np.any(counts > 1):
        a = int(np.argmax(counts > 1))
        raise MarketError(
            f"orders.agent: {mechanism} needs at most one order per agent (players are orders), agent {a} "
            f"has {int(counts[a])}"
        )


def effective_limits(orders: Orders, retail_price: float, feed_in_price: float) -> FloatArray:
    """float64[K] each order's marginal value (bid) or cost (ask) for P2P volume: ``v̂ = min(limit, retail)``
    for bids, ``ĉ = max(limit, feed-in)`` for asks (the grid is the outside option)."""
    return np.where(
        orders.is_buy, np.minimum(orders.price, retail_price), np.maximum(orders.price, feed_in_price)
    )


def effective_book(orders: Orders, retail_price: float, feed_in_price: float) -> Orders:
    """``orders`` with every limit replaced by its effective limit (:func:`effective_limits`)."""
    return Orders._trusted(
        orders.agent.copy(),
        orders.is_buy.copy(),
        effective_limits(orders, retail_price, feed_in_price),
        orders.quantity.copy(),
    )


def efficient_allocation(orders: Orders, retail_price: float, feed_in_price: float) -> ClearingResult:
    """The welfare-maximising allocation of the book: the uniform call market (k = 0.5) on the effective book.

    The call market fills the highest bids against the lowest asks while bid ≥ ask, which maximises
    ``Σ v̂·x − Σ ĉ·y`` over all feasible fills (the area between the step demand and supply curves). Its
    trade indices refer to the rows of ``orders``; its prices are the uniform price of the effective book.
    """
    return clear(effective_book(orders, retail_price, feed_in_price), "uniform", k=0.5)


def trade_value(
    orders: Orders, filled: FloatArray, retail_price: float, feed_in_price: float, n_agents: int
) -> FloatArray:
    """float64[N] ``w_n = Σ_{bids of n} v̂·x − Σ_{asks of n} ĉ·y``: the value of agent n's P2P volume before
    payments (``filled`` is float[K], kWh filled per order)."""
    lim = effective_limits(orders, retail_price, feed_in_price)
    signed = np.where(orders.is_buy, lim, -lim) * np.asarray(filled, dtype=np.float64)
    return np.bincount(orders.agent, signed, n_agents).astype(np.float64)


def welfare(orders: Orders, filled: FloatArray, retail_price: float, feed_in_price: float) -> float:
    """``W = Σ_n w_n``: the gains from P2P trade of an allocation (payments cancel or go to the operator)."""
    lim = effective_limits(orders, retail_price, feed_in_price)
    return float(np.where(orders.is_buy, lim, -lim) @ np.asarray(filled, dtype=np.float64))


def gains(
    orders: Orders,
    result: ClearingResult,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
) -> FloatArray:
    """float64[N] each agent's gain ``g_n = w_n − paid_n + received_n`` over its stand-alone outcome."""
    n = check_book(orders, n_agents)
    return (
        trade_value(orders, result.filled, retail_price, feed_in_price, n)
        - result.paid(n)
        + result.received(n)
    )


def savings(
    orders: Orders,
    result: ClearingResult,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
) -> FloatArray:
    """float64[N] stand-alone bill − P2P bill: ``retail·bought − paid + received − feed-in·sold`` (money)."""
    n = check_book(orders, n_agents)
    bought, sold = result.bought(n), result.sold(n)
    return retail_price * bought - result.paid(n) + result.received(n) - feed_in_price * sold


def price_with_transfers(result: ClearingResult, transfer: FloatArray) -> ClearingResult:
    """``result`` repriced so that agent n's net payment ``paid_n − received_n`` equals ``transfer[n]``.

    With ρ the result's (uniform) clearing price, ``b_n``/``s_n`` kWh bought/sold and
    ``δ_n = transfer_n − ρ·(b_n − s_n)``: ``paid_n = ρ·b_n + δ_n·b_n/(b_n + s_n)`` and
    ``received_n = ρ·s_n − δ_n·s_n/(b_n + s_n)``. A pure buyer pays ``transfer_n``, a pure seller receives
    ``−transfer_n``; an agent on both sides keeps ρ on its sales and purchases up to its share of ``δ_n``.
    Agents without trades must have ``transfer`` 0 (:func:`~p2p_gym.market.payments.with_payments`).
    """
    n = len(transfer)
    b, s = result.bought(n), result.sold(n)
    rho = result.clearing_price if np.isfinite(result.clearing_price) else 0.0
    delta = transfer - rho * (b - s)
    tot = b + s
    share_b = np.divide(b, tot, out=np.zeros(n), where=tot > 0)
    share_s = np.divide(s, tot, out=np.zeros(n), where=tot > 0)
    paid = np.where(b > 0, rho * b + delta * share_b, 0.0)
    received = np.where(s > 0, rho * s - delta * share_s, 0.0)
    return with_payments(result, paid, received)


def trading_agents(result: ClearingResult, n_agents: int) -> BoolArray:
    """bool[N] agents with at least one trade in ``result``."""
    return (result.bought(n_agents) + result.sold(n_agents)) > 0
