"""Slow, obviously-correct reference implementations the market code is checked against.

Written with plain Python loops and a dense LP, deliberately sharing no code with ``p2p_gym.market``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog


def uniform_volume(agent, is_buy, price, quantity) -> float:  # type: ignore[no-untyped-def]
    """Max volume at one price: max over candidate prices p of min(kWh bid at >= p, kWh asked at <= p).

    D is non-increasing and S non-decreasing and both only change at order prices, so the maximum is
    attained at one of the order prices.
    """
    best = 0.0
    for p in price:
        d = sum(q for b, pr, q in zip(is_buy, price, quantity) if b and pr >= p)
        s = sum(q for b, pr, q in zip(is_buy, price, quantity) if not b and pr <= p)
        best = max(best, min(d, s))
    return best


def uniform_marginal_prices(is_buy, price, quantity, volume):  # type: ignore[no-untyped-def]
    """(lowest accepted bid, highest accepted ask) when the top ``volume`` kWh of each curve trades."""
    bids = sorted([(p, q) for b, p, q in zip(is_buy, price, quantity) if b and q > 0], reverse=True)
    asks = sorted([(p, q) for b, p, q in zip(is_buy, price, quantity) if not b and q > 0])

    def marginal(side):  # type: ignore[no-untyped-def]
        acc = 0.0
        for p, q in side:
            acc += q
            if acc >= volume - 1e-12:
                return p
        return side[-1][0]

    return marginal(bids), marginal(asks)


def bilateral_optimum(agent, is_buy, price, quantity, partners, preference) -> float:  # type: ignore[no-untyped-def]
    """Optimal surplus Σ (bid − ask − β_bs − β_sb)·x over mutually accepted pairs of distinct agents.

    A dense LP over *every* (bid, ask) pair: pairs that may not trade get an upper bound of 0.
    """
    bids = [i for i in range(len(agent)) if is_buy[i]]
    asks = [j for j in range(len(agent)) if not is_buy[j]]
    if not bids or not asks:
        return 0.0
    c, bounds = [], []
    a_ub = np.zeros((len(bids) + len(asks), len(bids) * len(asks)))
    col = 0
    for bi, i in enumerate(bids):
        for aj, j in enumerate(asks):
            b, s = agent[i], agent[j]
            w = price[i] - price[j] - preference[b][s] - preference[s][b]
            allowed = b != s and partners[b][s] and partners[s][b]
            c.append(-w)
            bounds.append((0.0, None if allowed else 0.0))
            a_ub[bi, col] = 1.0
            a_ub[len(bids) + aj, col] = 1.0
            col += 1
    b_ub = [quantity[i] for i in bids] + [quantity[j] for j in asks]
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return max(0.0, -float(res.fun))


def cda(orders):  # type: ignore[no-untyped-def]
    """Reference CDA: lists re-sorted at every arrival; returns [(buy_id, sell_id, qty, price)]."""
    book = []  # [id, agent, is_buy, price, remaining]
    trades = []
    for oid, (ag, buy, pr, qt) in enumerate(orders):
        rem = qt
        while rem > 0:
            if buy:
                cands = [o for o in book if not o[2] and o[1] != ag and o[3] <= pr and o[4] > 0]
                cands.sort(key=lambda o: (o[3], o[0]))
            else:
                cands = [o for o in book if o[2] and o[1] != ag and o[3] >= pr and o[4] > 0]
                cands.sort(key=lambda o: (-o[3], o[0]))
            if not cands:
                break
            o = cands[0]
            q = min(rem, o[4])
            o[4] -= q
            rem -= q
            trades.append((oid, o[0], q, o[3]) if buy else (o[0], oid, q, o[3]))
        book.append([oid, ag, buy, pr, rem])
    return trades
