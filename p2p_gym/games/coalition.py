"""Coalitional (transferable-utility) games of a community: the Shapley value and the core (Suthar, Cherukuri
& Pindoriya 2023, §4.1.2, Table 2; Shapley 1953; Gillies 1959).

The market game. Players are the agents with at least one live order; every other agent is a null player
(φ = 0). The value of a coalition S is the welfare of the sub-book of S's orders,

    v(S) = max Σ_{bids of S} v̂·x − Σ_{asks of S} ĉ·y   over fills 0 ≤ x ≤ q, 0 ≤ y ≤ q, Σ x = Σ y,

i.e. what S gains by trading only among its members' orders relative to all of S settling with the grid
(effective limits v̂, ĉ as in the package docstring). It is computed from the step curves of the sub-book:
with the distinct effective prices p_0 < … < p_m of the whole book, demand ``D_S(p)`` (kWh bid by S at ≥ p)
and supply ``S_S(p)`` (kWh asked by S at ≤ p),

    v(S) = ∫ min(D_S(p), S_S(p)) dp = Σ_k (p_{k+1} − p_k) · min(D_S(p_{k+1}), S_S(p_k)),

the area between the demand and supply curves (for a fixed price p, the volume x that is both below the
demand curve and above the supply curve is [0, min(D_S(p), S_S(p))]). ``D_S`` and ``S_S`` are sums of
per-agent rows, so v of many coalitions is one matrix product of their membership masks; v is monotone
(more orders never lower the optimum) and superadditive, so φ_n ≥ v({n}) ≥ 0.

Shapley value. ``φ_n = Σ_{S ∌ n} |S|!(N − |S| − 1)!/N! · (v(S ∪ {n}) − v(S))``: exact by enumerating the 2^N
coalitions (N ≤ ``max_exact`` players, default 15), else the mean marginal contribution over random
permutations of the players (Castro, Gómez & Tejada 2009) with its standard error per player; every
sampled permutation's contributions sum to v(N), so the estimate is efficient exactly.

Core. An allocation x is in the core iff ``Σ_{n ∈ S} x_n ≥ v(S)`` for every S (and Σ x = v(N)).
:func:`core_violation` returns ``max_S v(S) − Σ_{n∈S} x_n``: > 0 means that coalition would rather leave.

Payments (:func:`solve_shapley`). Each agent's gain over its stand-alone outcome is its Shapley value: an agent
that trades in the efficient allocation pays the net amount ``t_n = w_n − φ_n`` (w_n its trade value). An
agent that does not trade but has φ_n > 0 (its orders matter in some coalitions, not in the grand one) cannot
be paid through trade prices: the traders' payments then exceed their receipts by ``Σ_{non-traders} φ_n``,
which the market operator collects and passes on as side payments (``ShapleyDiagnostics.side_payment``).
Money: ``Σ paid − Σ received = operator margin = Σ side_payment ≥ 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import factorial

import numpy as np

from p2p_gym.errors import MarketError
from p2p_gym.games.utility import (
    check_book,
    check_tariffs,
    effective_limits,
    efficient_allocation,
    price_with_transfers,
    savings,
    trade_value,
    trading_agents,
)
from p2p_gym.market.types import BoolArray, ClearingResult, FloatArray, IntArray, Orders

__all__ = [
    "CoalitionalGame",
    "CoreCheck",
    "MarketGame",
    "ShapleyDiagnostics",
    "clear_shapley",
    "core_violation",
    "shapley_exact",
    "shapley_sampled",
    "solve_shapley",
]

#: Largest number of players whose 2^N coalitions are enumerated by default (32,768 coalitions).
MAX_EXACT = 15
#: Largest number of players :meth:`CoalitionalGame.table` accepts (2^20 coalitions).
MAX_TABLE = 20


def _masks(n: int) -> BoolArray:
    """bool[2^n, n]: row s is the coalition with bitmask s (player i in s iff bit i is set)."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)


@dataclass(frozen=True)
class CoalitionalGame:
    """A TU game on players ``0 .. n_players-1`` given by a vectorised characteristic function.

    Attributes:
        n_players: number of players N.
        value_fn: maps bool[M, N] coalition masks to float[M] values; v(∅) must be 0.
    """

    n_players: int
    value_fn: Callable[[BoolArray], FloatArray] = field(repr=False)

    def value(self, masks: BoolArray) -> FloatArray:
        """float64[M] v of each coalition of bool[M, N] ``masks``."""
        return np.asarray(self.value_fn(np.asarray(masks, dtype=bool)), dtype=np.float64)

    def table(self) -> FloatArray:
        """float64[2^N] v of every coalition, indexed by bitmask (N ≤ 20)."""
        if self.n_players > MAX_TABLE:
            raise MarketError(f"n_players: the value table needs N <= {MAX_TABLE}, got {self.n_players}")
        return self.value(_masks(self.n_players))

    def prefix_values(self, perms: IntArray) -> FloatArray:
        """float64[P, N] v of the first k+1 players of each permutation (row p, column k)."""
        p, n = perms.shape
        masks = np.zeros((p, n, n), dtype=bool)
        rank = np.empty_like(perms)
        np.put_along_axis(rank, perms, np.arange(n)[None, :].repeat(p, 0), axis=1)
        masks[:] = rank[:, None, :] <= np.arange(n)[None, :, None]
        return self.value(masks.reshape(p * n, n)).reshape(p, n)

    @classmethod
    def from_table(cls, values: FloatArray) -> CoalitionalGame:
        """The game with ``v(S) = values[bitmask(S)]`` (float[2^N], ``values[0] = 0``)."""
        vals = np.asarray(values, dtype=np.float64)
        n = int(np.log2(len(vals))) if len(vals) else -1
        if vals.ndim != 1 or n < 0 or 2**n != len(vals):
            raise MarketError(f"values: must have length 2^N, got shape {vals.shape}")
        if not np.all(np.isfinite(vals)) or vals[0] != 0.0:
            raise MarketError("values: must be finite with v(∅) = values[0] = 0")
        weights = 2 ** np.arange(n)

        def value_fn(masks: BoolArray) -> FloatArray:
            return vals[masks.astype(np.int64) @ weights]

        return cls(n, value_fn)


@dataclass(frozen=True)
class MarketGame(CoalitionalGame):
    """The market game of a book (module docstring): players are the agents with live orders.

    Attributes:
        players: int64[N] agent index of each player.
        step: float64[m] price steps p_{k+1} − p_k (currency/kWh).
        demand: float64[N, m] kWh player n bids at ≥ p_{k+1}.
        supply: float64[N, m] kWh player n asks at ≤ p_k.
    """

    players: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    step: FloatArray = field(default_factory=lambda: np.zeros(0))
    demand: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    supply: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))

    @classmethod
    def from_book(cls, orders: Orders, retail_price: float, feed_in_price: float) -> MarketGame:
        """The market game of ``orders`` at the given tariffs."""
        retail, feed_in = check_tariffs(retail_price, feed_in_price)
        live = orders.quantity > 0
        lim = effective_limits(orders, retail, feed_in)[live]
        agent, is_buy, q = orders.agent[live], orders.is_buy[live], orders.quantity[live]
        players, idx = np.unique(agent, return_inverse=True)
        levels = np.unique(lim)
        step = np.diff(levels)
        n, m = len(players), len(step)
        demand = np.zeros((n, m))
        supply = np.zeros((n, m))
        if m:
            bid_rows = is_buy[:, None] & (lim[:, None] >= levels[None, 1:])
            ask_rows = ~is_buy[:, None] & (lim[:, None] <= levels[None, :-1])
            np.add.at(demand, idx, np.where(bid_rows, q[:, None], 0.0))
            np.add.at(supply, idx, np.where(ask_rows, q[:, None], 0.0))

        def value_fn(masks: BoolArray) -> FloatArray:
            mf = masks.astype(np.float64)
            return np.minimum(mf @ demand, mf @ supply) @ step

        return cls(n, value_fn, players.astype(np.int64), step, demand, supply)

    def prefix_values(self, perms: IntArray) -> FloatArray:
        """float64[P, N] v of each permutation's prefixes, by cumulative sums of the players' curves."""
        p, n = perms.shape
        m = len(self.step)
        out = np.zeros((p, n))
        chunk = max(1, 2_000_000 // max(1, n * m))
        for lo in range(0, p, chunk):
            sl = perms[lo : lo + chunk]
            d = np.cumsum(self.demand[sl], axis=1)
            s = np.cumsum(self.supply[sl], axis=1)
            out[lo : lo + chunk] = np.minimum(d, s) @ self.step
        return out


def shapley_exact(game: CoalitionalGame) -> FloatArray:
    """float64[N] the exact Shapley value by enumerating the 2^N coalitions (N ≤ 20)."""
    n = game.n_players
    if n == 0:
        return np.zeros(0)
    v = game.table()
    masks = np.arange(2**n)
    size = np.bitwise_count(masks) if hasattr(np, "bitwise_count") else _popcount(masks)
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    phi = np.empty(n)
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        phi[i] = weight[size[without]] @ (v[without | (1 << i)] - v[without])
    return phi


def _popcount(x: IntArray) -> IntArray:
    out = np.zeros_like(x)
    y = x.copy()
    while np.any(y):
        out += y & 1
        y >>= 1
    return out


def shapley_sampled(
    game: CoalitionalGame, n_permutations: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """``(φ, se)`` float64[N] each: the mean marginal contribution over ``n_permutations`` uniformly random
    orders of the players (drawn from ``rng``), and its standard error (sample std / √P)."""
    n = game.n_players
    if n == 0:
        return np.zeros(0), np.zeros(0)
    perms = rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1)
    prefix = game.prefix_values(perms)
    contrib_in_order = np.diff(prefix, axis=1, prepend=0.0)
    contrib = np.empty_like(contrib_in_order)
    np.put_along_axis(contrib, perms, contrib_in_order, axis=1)
    phi = contrib.mean(axis=0)
    se = contrib.std(axis=0, ddof=1) / np.sqrt(n_permutations) if n_permutations > 1 else np.full(n, np.inf)
    return phi, se


@dataclass(frozen=True)
class CoreCheck:
    """Result of :func:`core_violation`.

    Attributes:
        violation: max over the coalitions checked of v(S) − Σ_{n∈S} x_n (> 0: S blocks the allocation).
        coalition: bool[N] the coalition attaining it.
        exact: every coalition was checked (else a sample: ``violation`` is a lower bound).
        n_checked: number of coalitions checked.
    """

    violation: float
    coalition: BoolArray
    exact: bool
    n_checked: int


def core_violation(
    game: CoalitionalGame,
    allocation: FloatArray,
    *,
    max_exact: int = MAX_EXACT,
    n_samples: int = 20_000,
    rng: np.random.Generator | None = None,
) -> CoreCheck:
    """The largest excess ``v(S) − Σ_{n∈S} x_n`` over the non-empty coalitions S.

    Exact for N ≤ ``max_exact``; beyond, over every singleton, every complement of a singleton and
    ``n_samples`` random coalitions (each with its own inclusion probability drawn uniformly, so small and
    large coalitions are both sampled), which gives a lower bound on the largest excess.

    Raises:
        MarketError: ``allocation`` not float[N]; sampling needed but ``rng`` is None.
    """
    n = game.n_players
    x = np.asarray(allocation, dtype=np.float64)
    if x.shape != (n,):
        raise MarketError(f"allocation: must have shape ({n},) (one value per player), got {x.shape}")
    if n == 0:
        return CoreCheck(0.0, np.zeros(0, bool), True, 0)
    exact = n <= max_exact
    if exact:
        masks = _masks(n)[1:]
    else:
        if rng is None:
            raise MarketError(
                f"rng: a numpy Generator is needed to sample coalitions of N = {n} > {max_exact}"
            )
        eye = np.eye(n, dtype=bool)
        prob = rng.random((n_samples, 1))
        sampled = rng.random((n_samples, n)) < prob
        masks = np.concatenate([eye, ~eye, sampled[sampled.any(axis=1)]])
    excess = game.value(masks) - masks.astype(np.float64) @ x
    i = int(np.argmax(excess))
    return CoreCheck(float(excess[i]), masks[i].copy(), exact, len(masks))


@dataclass(frozen=True)
class ShapleyDiagnostics:
    """The Shapley allocation of a book, per agent (float64[N] over agents ``0 .. N-1``) unless stated.

    Attributes:
        shapley: φ_n, each agent's gain (0 for agents without orders).
        std_error: standard error of φ_n (0 when exact).
        exact: φ was computed by enumeration (else by permutation sampling).
        n_permutations: permutations sampled (0 when exact).
        grand_value: v(N), the welfare of the efficient allocation (= Σ φ).
        stand_alone_value: v({n}), what agent n gains alone (trading its own bids against its own asks).
        trade_value: w_n, the value of agent n's volume in the efficient allocation.
        savings: stand-alone bill − P2P bill (money; excludes side payments).
        side_payment: φ_n paid by the operator to agents that do not trade (0 for traders).
        core: the core check of φ (exact for small N, sampled beyond; None if not requested).
        operator_margin: Σ paid − Σ received = Σ side_payment.
    """

    shapley: FloatArray
    std_error: FloatArray
    exact: bool
    n_permutations: int
    grand_value: float
    stand_alone_value: FloatArray
    trade_value: FloatArray
    savings: FloatArray
    side_payment: FloatArray
    core: CoreCheck | None
    operator_margin: float


def _positive_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise MarketError(f"{name}: must be an integer >= {low}, got {value!r}")
    return int(value)


def solve_shapley(
    orders: Orders,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
    *,
    max_exact: int = MAX_EXACT,
    n_permutations: int = 2000,
    rng: np.random.Generator | None = None,
    check_core: bool = True,
    n_core_samples: int = 20_000,
) -> tuple[ClearingResult, ShapleyDiagnostics]:
    """The efficient trades, priced so that each agent's gain is its Shapley value (module docstring).

    Args:
        orders: the book (one interval).
        retail_price, feed_in_price: the grid tariffs (currency/kWh), 0 ≤ feed-in ≤ retail.
        n_agents: N (default max agent index + 1).
        max_exact: enumerate coalitions when the number of agents with orders is ≤ this (≤ 20).
        n_permutations: permutations sampled beyond ``max_exact`` (≥ 2).
        rng: generator for the sampling (needed only beyond ``max_exact``).
        check_core: also run :func:`core_violation` on φ.
        n_core_samples: coalitions sampled by the core check beyond ``max_exact``.

    Raises:
        MarketError: bad book, tariffs, options, or sampling needed without ``rng``.
    """
    retail, feed_in = check_tariffs(retail_price, feed_in_price)
    n = check_book(orders, n_agents)
    max_exact = _positive_int("max_exact", max_exact, 0)
    if max_exact > MAX_TABLE:
        raise MarketError(f"max_exact: must be <= {MAX_TABLE} (2^N coalitions), got {max_exact}")
    n_permutations = _positive_int("n_permutations", n_permutations, 2)
    n_core_samples = _positive_int("n_core_samples", n_core_samples, 1)
    game = MarketGame.from_book(orders, retail, feed_in)
    exact = game.n_players <= max_exact
    if exact:
        phi_p, se_p = shapley_exact(game), np.zeros(game.n_players)
    else:
        if rng is None:
            raise MarketError(
                f"rng: a numpy Generator is needed to sample the Shapley value of {game.n_players} > "
                f"max_exact = {max_exact} agents"
            )
        phi_p, se_p = shapley_sampled(game, n_permutations, rng)
    core = (
        core_violation(game, phi_p, max_exact=max_exact, n_samples=n_core_samples, rng=rng)
        if check_core
        else None
    )
    phi, se, alone = np.zeros(n), np.zeros(n), np.zeros(n)
    phi[game.players], se[game.players] = phi_p, se_p
    alone[game.players] = game.value(np.eye(game.n_players, dtype=bool))
    alloc = efficient_allocation(orders, retail, feed_in)
    w = trade_value(orders, alloc.filled, retail, feed_in, n)
    trading = trading_agents(alloc, n)
    result = price_with_transfers(alloc, np.where(trading, w - phi, 0.0))
    side = np.where(trading, 0.0, phi)
    diag = ShapleyDiagnostics(
        shapley=phi,
        std_error=se,
        exact=exact,
        n_permutations=0 if exact else n_permutations,
        grand_value=float(w.sum()),
        stand_alone_value=alone,
        trade_value=w,
        savings=savings(orders, result, retail, feed_in, n),
        side_payment=side,
        core=core,
        operator_margin=result.trades.operator_margin,
    )
    return result, diag


def clear_shapley(
    orders: Orders,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
    **options: object,
) -> ClearingResult:
    """:func:`solve_shapley` without the diagnostics (the core check is skipped unless asked for)."""
    options.setdefault("check_core", False)
    return solve_shapley(orders, retail_price, feed_in_price, n_agents, **options)[0]  # type: ignore[arg-type]
