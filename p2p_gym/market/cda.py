"""Continuous double auction (CDA) with an incremental limit-order book.

Rules (Suthar, Cherukuri & Pindoriya 2023, §4.2, describes CDA-based P2P trading):

* Orders arrive one at a time. An incoming bid trades against the standing asks whose price is ≤ its own,
  best (lowest) ask first; an incoming ask against standing bids priced ≥ its own, best (highest) first.
* Each trade is at the **standing** order's price (the order that was in the book first).
* Price-time priority: among standing orders at the same price the earliest is served first.
* Partial fills: the incoming order walks the book until it is filled or no longer crosses; its residual
  rests in the book at its limit price. Standing orders are partially filled in place, keeping priority.
* No self-trades: standing orders of the incoming order's own agent are skipped (they stay in the book).

The book is two binary heaps keyed ``(±price, arrival)`` plus per-order lists of remaining quantity and
agent, so a submission costs O(log B) per touched order.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from p2p_gym.errors import MarketError
from p2p_gym.market.types import ClearingResult, Orders, Trades

__all__ = ["ContinuousDoubleAuction"]


class ContinuousDoubleAuction:
    """Incremental CDA book; order ids are arrival indices 0, 1, 2, … since the last :meth:`reset`.

    Example:
        >>> book = ContinuousDoubleAuction()
        >>> len(book.submit(agent=0, is_buy=False, price=0.10, quantity=2.0))  # rests, no trade
        0
        >>> t = book.submit(agent=1, is_buy=True, price=0.20, quantity=1.5)
        >>> float(t.price[0]), float(t.quantity[0])  # at the standing ask's price
        (0.1, 1.5)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Empty the book and forget all orders and trades; the next order id is 0."""
        self._bids: list[tuple[float, int]] = []  # heap of (-price, order id)
        self._asks: list[tuple[float, int]] = []  # heap of (price, order id)
        self._remaining: list[float] = []
        self._agent: list[int] = []
        self._t_buy: list[int] = []
        self._t_sell: list[int] = []
        self._t_buyer: list[int] = []
        self._t_seller: list[int] = []
        self._t_qty: list[float] = []
        self._t_price: list[float] = []

    # ------------------------------------------------------------------------------------------- queries
    @property
    def best_bid(self) -> float:
        """Highest standing bid price (nan if there is none)."""
        return -self._bids[0][0] if self._bids else math.nan

    @property
    def best_ask(self) -> float:
        """Lowest standing ask price (nan if there is none)."""
        return self._asks[0][0] if self._asks else math.nan

    @property
    def n_orders(self) -> int:
        """Orders submitted since the last reset (the next order id)."""
        return len(self._agent)

    def remaining(self, order_id: int) -> float:
        """kWh of order ``order_id`` still unfilled (resting in the book if > 0)."""
        return self._remaining[order_id]

    def trades(self) -> Trades:
        """All trades since the last reset, in execution order."""
        return self._trades_since(0)

    # ---------------------------------------------------------------------------------------- submission
    def submit(self, agent: int, is_buy: bool, price: float, quantity: float) -> Trades:
        """Submit one limit order; match it against the book and rest any residual.

        Args:
            agent: agent index (≥ 0).
            is_buy: True for a bid, False for an ask.
            price: limit price per kWh (finite).
            quantity: kWh (finite, ≥ 0).

        Returns:
            The trades this order caused (``buy_order``/``sell_order`` are order ids).

        Raises:
            MarketError: a negative agent, a non-finite price or a negative or non-finite quantity.
        """
        if isinstance(agent, bool) or not isinstance(agent, int | np.integer) or agent < 0:
            raise MarketError(f"agent: must be an integer >= 0, got {agent!r}")
        price, quantity = float(price), float(quantity)
        if not math.isfinite(price):
            raise MarketError(f"price: must be finite, got {price!r}")
        if not (math.isfinite(quantity) and quantity >= 0.0):
            raise MarketError(f"quantity: must be finite and >= 0, got {quantity!r}")
        start = len(self._t_qty)
        self._match(int(agent), bool(is_buy), price, quantity)
        return self._trades_since(start)

    def run(self, orders: Orders) -> ClearingResult:
        """Reset, submit every order of ``orders`` in array order and return the clearing result.

        ``buy_order``/``sell_order`` are then indices into ``orders``; ``clearing_price`` is the last trade
        price (nan without trades). Orders left in the book stay there until the next reset.
        """
        self.reset()
        match = self._match
        for ag, buy, pr, qt in zip(
            orders.agent.tolist(), orders.is_buy.tolist(), orders.price.tolist(), orders.quantity.tolist()
        ):
            match(ag, buy, pr, qt)
        trades = self.trades()
        n = len(orders)
        if not len(trades):
            return ClearingResult.empty(n)
        q = trades.quantity
        filled = np.bincount(trades.buy_order, q, n) + np.bincount(trades.sell_order, q, n)
        return ClearingResult(trades=trades, filled=filled, clearing_price=float(trades.price[-1]))

    # ---------------------------------------------------------------------------------------- internals
    def _trades_since(self, start: int) -> Trades:
        return Trades(
            buy_order=np.array(self._t_buy[start:], dtype=np.int64),
            sell_order=np.array(self._t_sell[start:], dtype=np.int64),
            buyer=np.array(self._t_buyer[start:], dtype=np.int64),
            seller=np.array(self._t_seller[start:], dtype=np.int64),
            quantity=np.array(self._t_qty[start:], dtype=np.float64),
            price=np.array(self._t_price[start:], dtype=np.float64),
        )

    def _match(self, agent: int, is_buy: bool, price: float, quantity: float) -> None:
        oid = len(self._agent)
        self._agent.append(agent)
        remaining, agents = self._remaining, self._agent
        rem = quantity
        if is_buy:
            book, sign, own_book = self._asks, 1.0, self._bids
        else:
            book, sign, own_book = self._bids, -1.0, self._asks
        skipped: list[tuple[float, int]] = []
        pop = heapq.heappop
        while rem > 0.0 and book:
            key, sid = book[0]
            standing = sign * key  # the standing order's price
            if (standing > price) if is_buy else (standing < price):
                break
            other = agents[sid]
            if other == agent:
                skipped.append(pop(book))
                continue
            avail = remaining[sid]
            q = rem if rem < avail else avail
            if is_buy:
                self._t_buy.append(oid)
                self._t_sell.append(sid)
                self._t_buyer.append(agent)
                self._t_seller.append(other)
            else:
                self._t_buy.append(sid)
                self._t_sell.append(oid)
                self._t_buyer.append(other)
                self._t_seller.append(agent)
            self._t_qty.append(q)
            self._t_price.append(standing)
            rem -= q
            if q == avail:
                remaining[sid] = 0.0
                pop(book)
            else:
                remaining[sid] = avail - q
        for entry in skipped:
            heapq.heappush(book, entry)
        remaining.append(rem)
        if rem > 0.0:
            heapq.heappush(own_book, (-price if is_buy else price, oid))
