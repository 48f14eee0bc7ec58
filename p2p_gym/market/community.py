"""Community clearing: a pricing rule without bids (mid-market rate, supply-demand ratio, bill sharing).

Offered supply S (sum of sell quantities) meets offered demand D (sum of buy quantities) **pro rata**: every sell
order j and buy order i trade ``q_ij = (s_j / S) · (d_i / D) · min(S, D)``, so seller j sells ``s_j · min(S, D) / S``
and buyer i buys ``d_i · min(S, D) / D``. The rule (:mod:`p2p_gym.market.pricing`, after Zhou, Wu & Long 2018)
returns the per-kWh internal buy and sell prices, which already blend in the grid for the long side. Internal
trades are priced so that the usual settlement (residuals at retail/feed-in, :func:`p2p_gym.market.settle`)
reproduces the rule: at the sell price when S ≤ D (sellers sell everything internally; buyers pay
``(P_sell · S + retail · (D − S)) / D`` per kWh, which is the rule's buy price for SDR and MMR), at the buy price
when S > D. The reported clearing price is that trade price, defined even without trades.

:func:`clear_community` clears one :class:`~p2p_gym.market.Orders` book; :func:`clear_community_batch` clears B
books of at most one order per agent at once on [B, N] arrays, with the same arithmetic.
"""

from __future__ import annotations

import numpy as np

from p2p_gym.errors import MarketError
from p2p_gym.market.pricing import PRICING_RULES
from p2p_gym.market.types import ClearingResult, Orders, Trades

__all__ = ["COMMUNITY_RULES", "clear_community", "clear_community_batch"]

#: The community rules, keys of :data:`p2p_gym.market.pricing.PRICING_RULES`.
COMMUNITY_RULES: tuple[str, ...] = ("mmr", "sdr", "bill_sharing")


def _check(rule: str, retail: float | np.ndarray | None, feed_in: float | np.ndarray | None) -> None:
    if rule not in PRICING_RULES:
        raise MarketError(f"mechanism: community rule must be one of {list(PRICING_RULES)}, got {rule!r}")
    if retail is None or feed_in is None:
        raise MarketError(f"retail_price, feed_in_price: the community rule {rule!r} needs both tariffs")


def clear_community(orders: Orders, rule: str, retail_price: float, feed_in_price: float) -> ClearingResult:
    """Clear one book by the community rule ``rule`` (``"mmr"``, ``"sdr"`` or ``"bill_sharing"``).

    Args:
        orders: the book (prices are ignored; only sides and quantities matter).
        rule: the pricing rule.
        retail_price, feed_in_price: the tariffs (currency/kWh) of the interval.

    Returns:
        Pro-rata trades at the rule's price; ``clearing_price`` is that price (also without trades).
    """
    _check(rule, retail_price, feed_in_price)
    sell = ~orders.is_buy
    s_q, d_q = orders.quantity[sell], orders.quantity[orders.is_buy]
    supply, demand = float(s_q.sum()), float(d_q.sum())
    buy_price, sell_price = PRICING_RULES[rule](supply, demand, float(retail_price), float(feed_in_price))
    price = float(sell_price if supply <= demand else buy_price)
    k = len(orders)
    if supply <= 0 or demand <= 0:
        return ClearingResult(Trades.empty(), np.zeros(k), price)
    s_idx, b_idx = np.flatnonzero(sell), np.flatnonzero(orders.is_buy)
    qty = np.outer(s_q / supply, d_q / demand).ravel() * min(supply, demand)
    so, bo = np.repeat(s_idx, len(b_idx)), np.tile(b_idx, len(s_idx))
    trades = Trades(
        buy_order=bo.astype(np.int64),
        sell_order=so.astype(np.int64),
        buyer=orders.agent[bo].astype(np.int64),
        seller=orders.agent[so].astype(np.int64),
        quantity=qty,
        price=np.full(len(qty), price),
    )
    filled = np.bincount(bo, qty, k) + np.bincount(so, qty, k)
    return ClearingResult(trades=trades, filled=filled, clearing_price=price)


def clear_community_batch(
    rule: str, is_buy: np.ndarray, qty: np.ndarray, retail: np.ndarray, feed_in: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`clear_community` on B books at once.

    Args:
        rule: the pricing rule.
        is_buy: bool[B, N] side of each agent's order; qty: float[B, N] kWh (≤ 0 = no order).
        retail, feed_in: float[B] tariffs (currency/kWh).

    Returns:
        bought float[B, N] (kWh), sold float[B, N] (kWh), price float[B] (currency/kWh) and volume float[B] (kWh).
    """
    _check(rule, retail, feed_in)
    live = qty > 0
    sell = ~is_buy & live
    buy = is_buy & live
    s = np.where(sell, qty, 0.0).sum(axis=1)
    d = np.where(buy, qty, 0.0).sum(axis=1)
    buy_price, sell_price = PRICING_RULES[rule](s, d, retail, feed_in)
    price = np.where(s <= d, sell_price, buy_price)
    trade = (s > 0) & (d > 0)
    vol = np.where(trade, np.minimum(s, d), 0.0)
    s_safe, d_safe = np.where(trade, s, 1.0), np.where(trade, d, 1.0)
    sold = np.where(sell, qty / s_safe[:, None], 0.0) * vol[:, None]
    bought = np.where(buy, qty / d_safe[:, None], 0.0) * vol[:, None]
    return bought, sold, price, vol
