"""Slow, obviously-correct references for the game-theoretic mechanisms.

Plain Python loops, dense LPs and scipy optimisers, sharing no code with ``p2p_gym.games``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import linprog, minimize


def effective(is_buy, price, retail, feed_in):  # type: ignore[no-untyped-def]
    return [min(p, retail) if b else max(p, feed_in) for b, p in zip(is_buy, price)]


def lp_welfare(is_buy, limit, quantity) -> float:  # type: ignore[no-untyped-def]
    """max Σ limit_b·x_b − Σ limit_a·y_a s.t. 0 ≤ x ≤ q, 0 ≤ y ≤ q, Σ x = Σ y (dense LP)."""
    if not any(is_buy) or all(is_buy) or not len(is_buy):
        return 0.0
    c = [-lim if b else lim for b, lim in zip(is_buy, limit)]
    a_eq = [[1.0 if b else -1.0 for b in is_buy]]
    res = linprog(c, A_eq=a_eq, b_eq=[0.0], bounds=[(0.0, q) for q in quantity], method="highs")
    assert res.status == 0
    return float(-res.fun)


def coalition_value(agent, is_buy, price, quantity, retail, feed_in, members) -> float:  # type: ignore[no-untyped-def]
    """v(S) of the market game by LP on the sub-book of ``members``."""
    lim = effective(is_buy, price, retail, feed_in)
    rows = [k for k in range(len(agent)) if agent[k] in members]
    return lp_welfare([is_buy[k] for k in rows], [lim[k] for k in rows], [quantity[k] for k in rows])


def shapley_by_permutations(players, value) -> dict:  # type: ignore[no-untyped-def]
    """Exact Shapley value averaging marginal contributions over all N! orders (N ≤ 7)."""
    phi = dict.fromkeys(players, 0.0)
    perms = list(itertools.permutations(players))
    for perm in perms:
        before: frozenset = frozenset()
        for p in perm:
            phi[p] += value(before | {p}) - value(before)
            before = before | {p}
    return {p: v / len(perms) for p, v in phi.items()}


def nash_product_numerical(w, caps=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Gains g maximising Σ log g_n s.t. Σ g = Σ w (budget balance: Σ t = 0 with t = w − g), g ≥ 0 and
    g ≤ cap (SLSQP over g from several random starts)."""
    w = np.asarray(w, dtype=float)
    m, total = len(w), float(np.sum(w))
    cap = np.full(m, total) if caps is None else np.minimum(np.asarray(caps, dtype=float), total)
    cons = [{"type": "eq", "fun": lambda g: g.sum() - total}]
    best = None
    rng = np.random.default_rng(0)
    for _ in range(5):
        g0 = np.minimum(rng.dirichlet(np.ones(m)) * total, cap)
        res = minimize(lambda g: -np.sum(np.log(np.maximum(g, 1e-300))), g0, constraints=cons,
                       bounds=[(1e-12, c) for c in cap], method="SLSQP",
                       options={"ftol": 1e-15, "maxiter": 1000})  # fmt: skip
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return np.asarray(best.x)


def sdr_trade_price(s, d, retail, feed_in) -> float:  # type: ignore[no-untyped-def]
    """Liu et al. (2017) SDR: the internal price of a kWh traded in the pool (sell price if S ≤ D)."""
    if d <= 0 or s >= d:
        return feed_in
    if s <= 0:
        return retail
    ratio = s / d
    return retail * feed_in / ((retail - feed_in) * ratio + feed_in)


def pool_payoff(k, actions, is_buy, limit, retail, feed_in, rule="sdr") -> float:  # type: ignore[no-untyped-def]
    s = sum(a for a, b in zip(actions, is_buy) if not b)
    d = sum(a for a, b in zip(actions, is_buy) if b)
    if s <= 0 or d <= 0:
        return 0.0
    rho = sdr_trade_price(s, d, retail, feed_in) if rule == "sdr" else 0.5 * (retail + feed_in)
    if is_buy[k]:
        return (limit[k] - rho) * actions[k] * min(1.0, s / d)
    return (rho - limit[k]) * actions[k] * min(1.0, d / s)


def stackelberg_objective(pb, ps, is_buy, limit, quantity, objective) -> float:  # type: ignore[no-untyped-def]
    """The leader's objective at (p_b, p_s): followers take all or nothing, long side rationed pro rata."""
    if ps > pb:
        return -math.inf
    d = sum(q for b, lim, q in zip(is_buy, limit, quantity) if b and lim >= pb)
    s = sum(q for b, lim, q in zip(is_buy, limit, quantity) if not b and lim <= ps)
    v = min(d, s)
    if v <= 0:
        return 0.0
    if objective == "margin":
        return (pb - ps) * v
    val = sum(lim * q for b, lim, q in zip(is_buy, limit, quantity) if b and lim >= pb)
    cost = sum(lim * q for b, lim, q in zip(is_buy, limit, quantity) if not b and lim <= ps)
    return v / d * val - v / s * cost


def random_book(rng, n, *, multi=False):  # type: ignore[no-untyped-def]
    """A random book of n agents with one order each (two per agent for some if ``multi``)."""
    from p2p_gym.market import Orders

    agent = list(range(n))
    is_buy = list(rng.random(n) < 0.5)
    price = list(rng.uniform(0.05, 0.35, n).round(3))
    qty = list(rng.uniform(0.5, 5.0, n).round(2))
    if multi:
        for a in range(0, n, 3):
            agent.append(a)
            is_buy.append(not is_buy[a])
            price.append(float(rng.uniform(0.05, 0.35)))
            qty.append(float(rng.uniform(0.5, 5.0)))
    return Orders(agent=agent, is_buy=is_buy, price=price, quantity=qty)
