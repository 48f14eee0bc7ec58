"""Per-agent payment rules on top of a set of trades.

Mechanisms that decide *who trades how much* once and then *who pays what* by a rule of their own (VCG, Nash
bargaining, Shapley allocations, …) express the payments as trade prices: every trade of buyer i is priced at
``paid_i / bought_i`` (what buyer i pays per kWh) and every trade of seller j at ``received_j / sold_j`` in
:attr:`~p2p_gym.market.Trades.seller_price`. The trades' quantities, the per-agent totals and the settlement
(:func:`p2p_gym.market.settle`) then follow as for any mechanism, and Σ paid − Σ received is what the market operator
keeps (:attr:`~p2p_gym.market.Trades.operator_margin`; negative = a deficit it covers).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from p2p_gym.errors import MarketError
from p2p_gym.market.types import ClearingResult, Trades

__all__ = ["with_payments"]


def with_payments(result: ClearingResult, paid: np.ndarray, received: np.ndarray) -> ClearingResult:
    """``result`` with its trades repriced so that each agent pays ``paid[i]`` for everything it bought and
    receives ``received[j]`` for everything it sold (currency, float[N] over the agents of the trades).

    Agents without purchases (sales) must have ``paid`` (``received``) 0. The clearing price becomes the
    volume-weighted mean of what buyers pay (nan without trades).

    Raises:
        MarketError: payments of the wrong shape, non-finite, or owed by an agent that did not trade that side.
    """
    tr = result.trades
    try:
        pay = np.asarray(paid, dtype=np.float64).reshape(-1)
        rec = np.asarray(received, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise MarketError("paid, received: must be float[N] arrays") from None
    n = max(len(pay), len(rec))
    if len(pay) != len(rec) or (len(tr) and n < int(max(tr.buyer.max(), tr.seller.max())) + 1):
        raise MarketError(f"paid, received: need float[N] of equal length covering every trading agent, got "
                          f"{len(pay)} and {len(rec)}")  # fmt: skip
    if not (np.all(np.isfinite(pay)) and np.all(np.isfinite(rec))):
        raise MarketError("paid, received: must be finite")
    bought, sold = tr.bought(n), tr.sold(n)
    for name, money, qty in (("paid", pay, bought), ("received", rec, sold)):
        bad = np.flatnonzero((qty <= 0) & (np.abs(money) > 1e-12))
        if bad.size:
            raise MarketError(
                f"{name}[{bad[0]}]: agent {bad[0]} has no trades on that side but {money[bad[0]]!r}"
            )
    unit_buy = np.divide(pay, bought, out=np.zeros(n), where=bought > 0)
    unit_sell = np.divide(rec, sold, out=np.zeros(n), where=sold > 0)
    trades = Trades._trusted(tr.buy_order, tr.sell_order, tr.buyer, tr.seller, tr.quantity,
                             unit_buy[tr.buyer], unit_sell[tr.seller])  # fmt: skip
    volume = tr.quantity.sum()
    mean = float(pay.sum() / volume) if volume > 0 else float("nan")
    return replace(result, trades=trades, clearing_price=mean)
