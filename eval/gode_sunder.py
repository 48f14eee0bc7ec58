"""Gode & Sunder (1993) replication: zero-intelligence traders in a continuous double auction.

Each session is one trading period of a market with ``n_buyers`` buyers and ``n_sellers`` sellers holding
``units`` units each. Private values and costs are drawn uniformly in ``[low, high]`` (integer prices 1–200 as
in the paper's quote range); a buyer's units are redeemed in decreasing value order and a seller's produced in
increasing cost order, so each trader always quotes for its next (marginal) unit. Traders with units left are
picked one at a time in uniformly random order and submit a one-unit limit order to a
:class:`p2p_gym.market.ContinuousDoubleAuction` (ZI-C: a bid uniform in ``[low, value]``, an ask uniform in
``[cost, high]``; ZI-U: uniform in ``[low, high]``; :meth:`agents.ZeroIntelligence.quote`). As in the paper,
all standing orders are cancelled after every transaction (the book is reset). The period ends after
``patience`` consecutive quotes without a trade (or when one side has no units left).

Allocative efficiency = realised surplus (Σ over trades of buyer value − seller cost; the price is a transfer) /
maximum surplus, the surplus at the competitive equilibrium: values sorted descending against costs sorted
ascending, summing ``value − cost`` while positive. It is computed from the schedules only, independently of
the market code.

ZI-U traders end up trading almost every unit in random pairs, so their efficiency is roughly
``(Σ values − Σ costs) / max surplus``: about 0 when values and costs have the same distribution (the default,
symmetric market) and 50–90% when most values exceed most costs, as in Gode & Sunder's markets
(``--cost-high 100``: costs U{1..100} against values U{1..200}). ZI-C stays at ~97–98% in both.

Usage::

    python -m eval.gode_sunder --sessions 200 --seed 0
    python -m eval.gode_sunder --sessions 200 --seed 0 --cost-high 100
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.zi import ZIP, ZeroIntelligence
from p2p_gym.market import ContinuousDoubleAuction

__all__ = ["KINDS", "Market", "draw_market", "main", "max_surplus", "run_session", "run_sessions"]

KINDS = ("zi-c", "zi-u", "zip")


@dataclass(frozen=True)
class Market:
    """Private schedules of one session.

    Attributes:
        values: float[B, U] buyers' unit values, each row descending (unit 0 is redeemed first).
        costs: float[S, U] sellers' unit costs, each row ascending.
        low: lowest admissible quote.
        high: highest admissible quote.
    """

    values: np.ndarray
    costs: np.ndarray
    low: float
    high: float


def draw_market(
    rng: np.random.Generator,
    n_buyers: int = 6,
    n_sellers: int = 6,
    units: int = 3,
    low: float = 1.0,
    high: float = 200.0,
    cost_high: float | None = None,
) -> Market:
    """Values drawn as integers uniform in ``[low, high]``, costs in ``[low, cost_high]`` (default ``high``),
    sorted per trader (values descending, costs ascending). Quotes are admissible in ``[low, high]``."""
    c_high = high if cost_high is None else cost_high
    values = -np.sort(-rng.integers(int(low), int(high) + 1, (n_buyers, units)).astype(float), axis=1)
    costs = np.sort(rng.integers(int(low), int(c_high) + 1, (n_sellers, units)).astype(float), axis=1)
    return Market(values, costs, float(low), float(high))


def max_surplus(values: np.ndarray, costs: np.ndarray) -> float:
    """Total surplus at the competitive equilibrium: Σ_i max(0, v_(i) − c_(i)) over the sorted schedules."""
    v = np.sort(np.ravel(values))[::-1]
    c = np.sort(np.ravel(costs))
    m = min(len(v), len(c))
    gain = v[:m] - c[:m]
    return float(gain[gain > 0].sum())


def run_session(market: Market, kind: str, rng: np.random.Generator, patience: int = 200) -> float:
    """Allocative efficiency of one trading period with traders of ``kind`` (``"zi-c"``, ``"zi-u"``, ``"zip"``).

    ZIP traders (Cliff's random parameters, :meth:`agents.ZIP.random`) quote ``λ(1 ± μ)`` for their next unit
    and, after every shout, all traders with units left update their margin with :meth:`agents.ZIP.learn`
    (the shout's price, or the trade price if it was accepted). Buyers are agents ``0 … B−1`` of the book,
    sellers ``B … B+S−1``. Returns NaN if no surplus is possible.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {list(KINDS)}, got {kind!r}")
    trader = ZeroIntelligence(constrained=kind == "zi-c")
    b, s = market.values.shape[0], market.costs.shape[0]
    zips = [ZIP.random(rng) for _ in range(b + s)] if kind == "zip" else []
    next_unit = np.zeros(b + s, dtype=int)
    n_units = np.concatenate([np.full(b, market.values.shape[1]), np.full(s, market.costs.shape[1])])

    def limit_of(j: int) -> float:
        return float(market.values[j, next_unit[j]] if j < b else market.costs[j - b, next_unit[j]])

    book = ContinuousDoubleAuction()
    realised = 0.0
    idle = 0
    while idle < patience:
        active = np.flatnonzero(next_unit < n_units)
        if not np.any(active < b) or not np.any(active >= b):
            break
        who = int(rng.choice(active))
        is_buy = who < b
        limit = limit_of(who)
        if zips:
            price = zips[who].quote(limit, is_buy, low=market.low, high=market.high)
        else:
            price = trader.quote(limit, is_buy, rng, market.low, market.high)
        trades = book.submit(who, is_buy, price, 1.0)
        if zips:
            traded = len(trades.quantity) > 0
            q = float(trades.price[0]) if traded else price
            for j in active:
                zips[j].learn(limit_of(j), j < b, q, traded, shout_is_bid=is_buy, rng=rng)
        if len(trades.quantity) == 0:
            idle += 1
            continue
        buyer, seller = int(trades.buyer[0]), int(trades.seller[0])
        realised += market.values[buyer, next_unit[buyer]] - market.costs[seller - b, next_unit[seller]]
        next_unit[buyer] += 1
        next_unit[seller] += 1
        book.reset()  # all standing bids and asks are cancelled after a transaction
        idle = 0
    best = max_surplus(market.values, market.costs)
    return realised / best if best > 0 else float("nan")


def run_sessions(
    kind: str,
    n_sessions: int,
    rng: np.random.Generator,
    n_buyers: int = 6,
    n_sellers: int = 6,
    units: int = 3,
    patience: int = 200,
    cost_high: float | None = None,
) -> np.ndarray:
    """float[n_sessions] allocative efficiencies of independent sessions (a new market drawn for each).

    ``cost_high`` caps the sellers' costs (default 200, the values' cap; see :func:`draw_market`).
    """
    out = np.empty(n_sessions)
    for i in range(n_sessions):
        market = draw_market(rng, n_buyers, n_sellers, units, cost_high=cost_high)
        out[i] = run_session(market, kind, rng, patience)
    return out


def table(n_sessions: int, seed: int, **kw: Any) -> str:
    """The replication table (mean, std, min of the efficiency per trader type) as text.

    Both trader types trade in the same sequence of markets (each type has its own generator seeded ``seed``).
    """
    rows = ["trader  sessions  mean eff.  std     min", "------  --------  ---------  ------  ------"]
    for kind in KINDS:
        eff = run_sessions(kind, n_sessions, np.random.default_rng(seed), **kw)
        eff = eff[np.isfinite(eff)]
        rows.append(f"{kind:6s}  {len(eff):8d}  {eff.mean():9.1%}  {eff.std():6.1%}  {eff.min():6.1%}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the ZI-C vs ZI-U efficiency table."""
    p = argparse.ArgumentParser(prog="python -m eval.gode_sunder", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=200, help="trading periods per trader type")
    p.add_argument("--seed", type=int, default=0, help="seed of the market draws and quotes")
    p.add_argument("--buyers", type=int, default=6)
    p.add_argument("--sellers", type=int, default=6)
    p.add_argument("--units", type=int, default=3, help="units per trader")
    p.add_argument("--patience", type=int, default=200, help="quotes without a trade that end a period")
    p.add_argument(
        "--cost-high", type=int, default=200, help="upper bound of the sellers' costs (values: 200)"
    )
    a = p.parse_args(argv)
    print(
        f"Gode & Sunder (1993) replication: CDA, {a.buyers} buyers × {a.sellers} sellers × {a.units} units, "
        f"values U{{1..200}}, costs U{{1..{a.cost_high}}}, seed {a.seed}"
    )
    print(
        table(
            a.sessions,
            a.seed,
            n_buyers=a.buyers,
            n_sellers=a.sellers,
            units=a.units,
            patience=a.patience,
            cost_high=a.cost_high,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
