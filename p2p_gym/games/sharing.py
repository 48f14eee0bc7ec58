"""The non-cooperative energy-sharing game over a community pool (EUniversal D5.3 (2022) §5.2.2: each peer
optimises its own objective given the others'; Suthar, Cherukuri & Pindoriya 2023, §4.1.1 eqs. 1–2 and
Table 4: the (generalised) Nash equilibrium of an energy-sharing game, computed by iterating best responses).

Model. Players are the orders (at most one live order per agent). Order k chooses how many kWh
``a_k ∈ [0, q_k]`` of its order to place in the community pool; the rest settles with the grid as it would
stand-alone. With ``S = Σ_{asks} a_k`` and ``D = Σ_{bids} a_k`` the pool clears pro rata
(:mod:`p2p_gym.market.community`): buyer k receives ``x_k = a_k·min(1, S/D)``, seller k delivers
``y_k = a_k·min(1, D/S)``, all at the pool's trade price

    ρ(S, D) = P_sell(S, D) if S ≤ D else P_buy(S, D)

of a community pricing rule (``rule``, :data:`p2p_gym.market.pricing.PRICING_RULES`). The default is the
supply–demand-ratio price of Liu et al. (2017): for S ≤ D, ``ρ = π_r·π_f / ((π_r − π_f)·S/D + π_f)``, falling
from retail (S → 0) to feed-in (S = D); for S > D, ρ = π_f. ``"mmr"`` prices at the mid-market rate
(π_r + π_f)/2 whatever S and D. Order k's payoff is its gain over its stand-alone outcome (package
docstring): ``u_k = (v̂_k − ρ)·x_k`` for a buyer, ``u_k = (ρ − ĉ_k)·y_k`` for a seller. The pool balance
``Σ x = Σ y`` — the shared constraint of the generalised game — holds for every action profile by the
pro-rata rule, so strategy sets are the boxes [0, q_k] and an equilibrium of this game is a Nash equilibrium
``u_k(a*_k, a*_{−k}) ≥ u_k(a_k, a*_{−k})`` for all a_k ∈ [0, q_k] and all k (Suthar et al. 2023, §4.1.1).
Under SDR the price falls as supply grows and rises as demand grows, so sellers withhold and buyers shade their
demand towards the supply (a bilateral monopoly of one buyer and one seller unravels to no trade).

Algorithm. Gauss–Seidel best responses starting from full placement ``a = q``: each order in turn maximises
its payoff given the others' current placements; the game is aggregative (u_k depends on the others only
through S and D), so one best response is a one-dimensional search: a grid of ``grid`` points on [0, q_k]
plus the kink ``S = D`` (where the rationing and the SDR branch switch), then repeated zooms on the bracket
around the best point until the bracket is below 1e-3·tol·max q. An order keeps its action when nothing is
strictly better. A sweep's residual is ``max_k |Δa_k| / max_k q_k``; the iteration stops below ``tol`` or
after ``max_iter`` sweeps (``SharingDiagnostics.converged``).

Verification at the returned point: each order's payoff on ``check_points`` evenly spaced deviations over
[0, q_k] (and the kink) never beats its equilibrium payoff by more than ``deviation_gain[k]`` (an ε-Nash
certificate), and the one-sided first-order conditions of a box-constrained maximum — right derivative ≤ 0
where a_k < q_k, left derivative ≥ 0 where a_k > 0 — hold up to ``kkt_residual[k]`` (finite differences).

Price of anarchy ``PoA = W* / W_eq ≥ 1``: the welfare of the efficient allocation of the same book over the
welfare of the equilibrium (inf if W_eq = 0 < W*, 1 if W* = 0). Money: every pool trade is paid by its buyer
to its seller at ρ, so Σ paid − Σ received = 0 (no operator margin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2p_gym.errors import MarketError
from p2p_gym.games.utility import (
    check_book,
    check_tariffs,
    effective_limits,
    efficient_allocation,
    gains,
    single_order_per_agent,
    welfare,
)
from p2p_gym.market.community import clear_community
from p2p_gym.market.pricing import PRICING_RULES
from p2p_gym.market.types import BoolArray, ClearingResult, FloatArray, Orders

__all__ = ["SharingDiagnostics", "clear_sharing_game", "pool_price", "solve_sharing_game"]


def pool_price(
    rule: str, supply: FloatArray, demand: FloatArray, retail: float, feed_in: float
) -> FloatArray:
    """ρ(S, D): the pool's trade price under ``rule`` (sell price if S ≤ D, else buy price), elementwise.

    ``"sdr"`` and ``"mmr"`` are evaluated in closed form (the same values as
    :data:`~p2p_gym.market.pricing.PRICING_RULES`, which validates its inputs on every call — too slow inside the
    best-response search): SDR ρ = π_f if S ≥ D, π_r if S = 0 < D, else π_r·π_f / ((π_r − π_f)·S/D + π_f);
    MMR ρ = (π_r + π_f)/2."""
    s, d = np.asarray(supply, dtype=np.float64), np.asarray(demand, dtype=np.float64)
    if rule == "mmr":
        return np.full(np.broadcast(s, d).shape, 0.5 * (retail + feed_in))
    if rule == "sdr":
        with np.errstate(divide="ignore", invalid="ignore"):
            short = retail * feed_in / ((retail - feed_in) * (s / d) + feed_in)
        return np.where(s >= d, feed_in, np.where(s > 0, short, retail))
    buy, sell = PRICING_RULES[rule](supply, demand, retail, feed_in)
    return np.where(s <= d, sell, buy)


@dataclass(frozen=True)
class _Game:
    rule: str
    retail: float
    feed_in: float
    is_buy: BoolArray  # bool[P] players' sides
    limit: FloatArray  # float[P] effective limits
    cap: FloatArray  # float[P] q_k

    def payoff(self, k: np.ndarray, a: np.ndarray, s_other: np.ndarray, d_other: np.ndarray) -> np.ndarray:
        """Payoff of players k (any shape, broadcast with ``a``) placing ``a`` given the others' totals."""
        buy = self.is_buy[k]
        s = np.where(buy, s_other, s_other + a)
        d = np.where(buy, d_other + a, d_other)
        rho = pool_price(self.rule, np.maximum(s, 0.0), np.maximum(d, 0.0), self.retail, self.feed_in)
        ratio = np.where(buy, np.divide(s, d, out=np.zeros_like(s), where=d > 0),
                         np.divide(d, s, out=np.zeros_like(s), where=s > 0))  # fmt: skip
        filled = a * np.minimum(1.0, ratio)
        return np.where(buy, self.limit[k] - rho, rho - self.limit[k]) * filled

    def kink(self, k: int, s_other: float, d_other: float) -> float:
        """The action where S = D (nan if outside [0, q_k])."""
        x = s_other - d_other if self.is_buy[k] else d_other - s_other
        return x if 0.0 <= x <= self.cap[k] else float("nan")

    def best_response(
        self, k: int, current: float, s_other: float, d_other: float, grid: int, width: float
    ) -> float:
        """Order k's best response (kept at ``current`` unless strictly better), to a bracket of ``width``."""
        lo, hi = 0.0, float(self.cap[k])
        kink = self.kink(k, s_other, d_other)
        kk = np.array([k])
        u_now = float(self.payoff(kk, np.array([current]), np.array([s_other]), np.array([d_other]))[0])
        best_a, best_u = current, u_now
        while hi - lo > width:
            pts = np.linspace(lo, hi, grid)
            if lo <= kink <= hi:
                pts = np.sort(np.append(pts, kink))
            u = self.payoff(np.full(len(pts), k), pts, np.full(len(pts), s_other), np.full(len(pts), d_other))
            j = int(np.argmax(u))
            if u[j] > best_u:
                best_a, best_u = float(pts[j]), float(u[j])
            lo, hi = float(pts[max(j - 1, 0)]), float(pts[min(j + 1, len(pts) - 1)])
        scale = max(abs(best_u), abs(u_now), 1e-300)
        return current if best_u <= u_now + 1e-13 * scale else best_a


@dataclass(frozen=True)
class SharingDiagnostics:
    """The equilibrium of the sharing game.

    Attributes:
        placed: float64[K] kWh each order places in the pool (its equilibrium action; 0 for dead orders).
        pool_price: ρ at the equilibrium (currency/kWh).
        supply, demand: S and D placed at the equilibrium (kWh).
        gains: float64[N] each agent's gain over its stand-alone outcome.
        converged: the last sweep's residual was ≤ ``tol``.
        iterations: Gauss–Seidel sweeps done.
        residuals: float64[iterations] max |Δa| / max q per sweep.
        deviation_gain: float64[K] the best payoff gain an order finds by a unilateral deviation on the
            check grid (≤ 0 up to rounding at an equilibrium; 0 for dead orders).
        max_deviation_gain: max of ``deviation_gain`` (the ε of an ε-Nash equilibrium).
        kkt_residual: float64[K] violation of the one-sided first-order conditions (currency/kWh).
        welfare: W_eq, the welfare of the equilibrium (currency).
        welfare_optimum: W*, the welfare of the efficient allocation of the same book.
        price_of_anarchy: W* / W_eq (≥ 1; inf if W_eq = 0 < W*; 1 if W* = 0).
        operator_margin: Σ paid − Σ received = 0.
    """

    placed: FloatArray
    pool_price: float
    supply: float
    demand: float
    gains: FloatArray
    converged: bool
    iterations: int
    residuals: FloatArray
    deviation_gain: FloatArray
    max_deviation_gain: float
    kkt_residual: FloatArray
    welfare: float
    welfare_optimum: float
    price_of_anarchy: float
    operator_margin: float


def _check_options(rule: str, tol: float, max_iter: int, grid: int, check_points: int) -> None:
    if rule not in PRICING_RULES:
        raise MarketError(f"rule: must be one of {list(PRICING_RULES)}, got {rule!r}")
    if not (isinstance(tol, int | float) and 0 < tol < 1):
        raise MarketError(f"tol: must be a number in (0, 1), got {tol!r}")
    for name, value, low in (("max_iter", max_iter, 1), ("grid", grid, 5), ("check_points", check_points, 2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise MarketError(f"{name}: must be an integer >= {low}, got {value!r}")


def solve_sharing_game(
    orders: Orders,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
    *,
    rule: str = "sdr",
    tol: float = 1e-9,
    max_iter: int = 500,
    grid: int = 129,
    check_points: int = 2001,
    verify: bool = True,
) -> tuple[ClearingResult, SharingDiagnostics]:
    """The Nash equilibrium of the sharing game by Gauss–Seidel best responses (module docstring).

    Args:
        orders: the book, at most one live order per agent.
        retail_price, feed_in_price: the grid tariffs (currency/kWh), 0 ≤ feed-in ≤ retail.
        n_agents: N (default max agent index + 1).
        rule: the pool's pricing rule, a key of :data:`~p2p_gym.market.pricing.PRICING_RULES`.
        tol: stop when a sweep moves no placement by more than ``tol·max q``.
        max_iter: at most this many sweeps.
        grid: points of each zoom of a best-response search (≥ 5).
        check_points: deviations per order of the equilibrium check (≥ 2).
        verify: run the equilibrium check (``deviation_gain``, ``kkt_residual``; nan when skipped).

    Returns:
        The pool trades at the equilibrium placements (:func:`~p2p_gym.market.community.clear_community` of the
        placed book; ``filled`` refers to the rows of ``orders``) and the diagnostics.

    Raises:
        MarketError: bad book (two live orders of one agent), tariffs or options.
    """
    retail, feed_in = check_tariffs(retail_price, feed_in_price)
    n = check_book(orders, n_agents)
    _check_options(rule, tol, max_iter, grid, check_points)
    single_order_per_agent(orders, "the sharing game")
    live = np.flatnonzero(orders.quantity > 0)
    game = _Game(rule, retail, feed_in, orders.is_buy[live].copy(),
                 effective_limits(orders, retail, feed_in)[live], orders.quantity[live].copy())  # fmt: skip
    a = game.cap.copy()
    q_max = float(game.cap.max()) if len(live) else 0.0
    residuals: list[float] = []
    converged = len(live) == 0
    for _ in range(max_iter if len(live) else 0):
        change = 0.0
        for k in range(len(live)):
            s_tot = float(a[~game.is_buy].sum())
            d_tot = float(a[game.is_buy].sum())
            s_o = s_tot - (0.0 if game.is_buy[k] else a[k])
            d_o = d_tot - (a[k] if game.is_buy[k] else 0.0)
            new = game.best_response(k, float(a[k]), s_o, d_o, grid, 1e-3 * tol * q_max)
            change = max(change, abs(new - a[k]))
            a[k] = new
        residuals.append(change / q_max)
        if residuals[-1] <= tol:
            converged = True
            break
    a[a <= tol * q_max] = 0.0  # what the iteration drives to zero stops at tol; the checks below see 0
    placed = np.zeros(len(orders))
    placed[live] = a
    book = Orders._trusted(orders.agent.copy(), orders.is_buy.copy(), orders.price.copy(), placed.copy())
    result = clear_community(book, rule, retail, feed_in)
    if verify:
        dev, kkt = _verify(game, a, check_points)
    else:
        dev = kkt = np.full(len(live), np.nan)
    deviation, kkt_res = np.zeros(len(orders)), np.zeros(len(orders))
    deviation[live], kkt_res[live] = dev, kkt
    w_eq = welfare(orders, result.filled, retail, feed_in)
    w_opt = welfare(orders, efficient_allocation(orders, retail, feed_in).filled, retail, feed_in)
    scale = 1e-12 * max(1.0, abs(w_opt))
    if w_opt <= scale:
        poa = 1.0
    elif w_eq <= scale:
        poa = float("inf")
    else:
        poa = w_opt / w_eq
    s_eq, d_eq = float(a[~game.is_buy].sum()), float(a[game.is_buy].sum())
    diag = SharingDiagnostics(
        placed=placed,
        pool_price=float(pool_price(rule, np.array(s_eq), np.array(d_eq), retail, feed_in)),
        supply=s_eq,
        demand=d_eq,
        gains=gains(orders, result, retail, feed_in, n),
        converged=converged,
        iterations=len(residuals),
        residuals=np.asarray(residuals, dtype=np.float64),
        deviation_gain=deviation,
        max_deviation_gain=float(np.max(deviation)) if len(deviation) else 0.0,
        kkt_residual=kkt_res,
        welfare=w_eq,
        welfare_optimum=w_opt,
        price_of_anarchy=poa,
        operator_margin=result.trades.operator_margin,
    )
    return result, diag


def _verify(game: _Game, a: FloatArray, points: int) -> tuple[FloatArray, FloatArray]:
    """Per player: the best deviation gain on a grid (+ the kink) and the first-order-condition residual."""
    p = len(a)
    if p == 0:
        return np.zeros(0), np.zeros(0)
    s_tot, d_tot = float(a[~game.is_buy].sum()), float(a[game.is_buy].sum())
    s_o = np.where(game.is_buy, s_tot, s_tot - a)
    d_o = np.where(game.is_buy, d_tot - a, d_tot)
    k = np.arange(p)
    u_eq = game.payoff(k, a, s_o, d_o)
    kink = np.where(game.is_buy, s_o - d_o, d_o - s_o)
    kink = np.clip(kink, 0.0, game.cap)
    dev = np.linspace(0.0, 1.0, points)[None, :] * game.cap[:, None]
    dev = np.concatenate([dev, kink[:, None]], axis=1)
    u_dev = game.payoff(k[:, None], dev, s_o[:, None], d_o[:, None])
    gain = u_dev.max(axis=1) - u_eq
    h = 1e-7 * game.cap
    right = (game.payoff(k, np.minimum(a + h, game.cap), s_o, d_o) - u_eq) / np.where(h > 0, h, 1.0)
    left = (u_eq - game.payoff(k, np.maximum(a - h, 0.0), s_o, d_o)) / np.where(h > 0, h, 1.0)
    kkt = np.maximum(np.where(a + h <= game.cap, np.maximum(right, 0.0), 0.0),
                     np.where(a - h >= 0.0, np.maximum(-left, 0.0), 0.0))  # fmt: skip
    return gain, kkt


def clear_sharing_game(
    orders: Orders,
    retail_price: float,
    feed_in_price: float,
    n_agents: int | None = None,
    **options: object,
) -> ClearingResult:
    """:func:`solve_sharing_game` without the diagnostics (and without the equilibrium check, unless
    ``verify=True``)."""
    options.setdefault("verify", False)
    return solve_sharing_game(orders, retail_price, feed_in_price, n_agents, **options)[0]  # type: ignore[arg-type]
