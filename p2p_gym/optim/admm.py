"""Decentralised P2P market by ADMM (Le Goff Latimier & Ben Ahmed 2023, §4 eq. 5–7, §5.1, §5.3, §6.2).

Derivation (consensus ADMM, Boyd et al. 2011 §7). Each agent owns its trades p_nm; a copy z_nm must lie in
the reciprocity set {z_nm = −z_mn}. With the multiplier λ_nm of p_nm = z_nm and penalty ρ:

* local step: p_n^{k+1} = argmin f_n(Σ_m p_nm) + Σ_m λ_nm·(p_nm − z_nm) + ρ/2·(p_nm − z_nm)², which is
  Le Goff Latimier & Ben Ahmed 2023, eq. (5a) since the projection gives z_nm^k = (p_nm^k − p_mn^k)/2;
* dual step: λ_nm += ρ·(p_nm − z_nm) = **ρ/2**·(p_nm + p_mn). Le Goff Latimier & Ben Ahmed 2023, eq. (5b)
  prints ρ; for this local step the
  consensus derivation gives ρ/2, which is what we use (λ_nm = λ_mn is preserved, and the bilateral price is
  π_nm = −λ_nm).

The local step is solved exactly for all agents at once (:mod:`p2p_gym.optim.local`). Stopping (Le Goff
Latimier & Ben Ahmed 2023, eq. 6–7):
Σ_n r_n ≤ ε_pri² and Σ_n s_n ≤ ε_dual² with r_n = Σ_m (p_nm + p_mn)², s_n = Σ_m (p_nm^{k+1} − p_nm^k)².
``stopping="per_trade"`` (Le Goff Latimier & Ben Ahmed 2023, §5.1) settles a trade, and stops messaging
about it, once its own dual residue
(the change of p_nm and of p_mn in one iteration) is below ``eps_trade``; the settled trade is set to the
reciprocal value (p_nm − p_mn)/2, so settling leaves no imbalance.

Line limits (endogenous approach, Le Goff Latimier & Ben Ahmed 2023, §6.2): the system operator is one more
peer. It holds the line flows
φ with |φ| ≤ F and the coupling H·s = φ (H = PTDF columns at the agents' buses) with multiplier ρ_l·w
(the line prices). The coupling term is linearised in the agents' step (linearised ADMM) with a proximal term
c/2·(s_n − s_n^k)², c ≥ ρ_l·‖H‖², so each agent only receives a nodal price signal ρ_l·(Hᵀ(H s^k − φ^k +
w^k))_n from the operator; the operator's own step is a clip of the flows, and w += H s − φ. This is a
convergent 2-block ADMM, so with limits ADMM reaches the centralised DC-constrained optimum.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from p2p_gym.errors import OptimError
from p2p_gym.optim.centralized import resolve_alpha
from p2p_gym.optim.local import local_step
from p2p_gym.optim.problem import P2PProblem, P2PSolution, solution_from_edges

__all__ = ["AsyncConfig", "auto_rho", "solve_admm"]


@dataclass(frozen=True)
class AsyncConfig:
    """Asynchronous ADMM (Le Goff Latimier & Ben Ahmed 2023, §5.3, Fig. 7–8): agents update after a
    fraction δ of their peers' messages.

    Time is simulated in abstract units: each local update takes ``compute_time``; each message takes an
    exponential delay of mean ``mean_delay``; with probability ``loss`` an attempt is lost and the message is
    retransmitted after ``timeout`` plus a new delay (repeated until delivered).

    Attributes:
        delta: asynchronous rate in (0, 1]: the share of peers whose new message an agent waits for
            (δ = 1 is the synchronous algorithm).
        loss: probability σ ∈ [0, 1) that one transmission attempt is lost.
        mean_delay: mean one-way delay of one attempt.
        timeout: retransmission timeout added per lost attempt.
        compute_time: duration of one local update.
        tick: simulation time step.
    """

    delta: float = 0.5
    loss: float = 0.0
    mean_delay: float = 1.0
    timeout: float = 1.0
    compute_time: float = 0.1
    tick: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.delta <= 1.0:
            raise OptimError(f"AsyncConfig.delta: expected a value in (0, 1], got {self.delta}")
        if not 0.0 <= self.loss < 1.0:
            raise OptimError(f"AsyncConfig.loss: expected a value in [0, 1), got {self.loss}")
        for name in ("mean_delay", "timeout", "compute_time"):
            if not getattr(self, name) >= 0.0:
                raise OptimError(f"AsyncConfig.{name}: must be ≥ 0, got {getattr(self, name)}")
        if not self.tick > 0.0:
            raise OptimError(f"AsyncConfig.tick: must be > 0, got {self.tick}")


@dataclass
class _Ctx:
    """Per-solve constant data (edge arrays, effective costs)."""

    problem: P2PProblem
    src: np.ndarray
    rev: np.ndarray
    beta: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    rho: float
    alpha: float
    H: np.ndarray | None
    rho_line: float
    c_line: float


def _check_args(rho: float, eps_primal: float, eps_dual: float, max_iter: int, stopping: str) -> None:
    if not (np.isfinite(rho) and rho > 0):
        raise OptimError(f"rho: must be finite and > 0, got {rho}")
    for name, v in (("eps_primal", eps_primal), ("eps_dual", eps_dual)):
        if not (np.isfinite(v) and v > 0):
            raise OptimError(f"{name}: must be finite and > 0, got {v}")
    if int(max_iter) < 1:
        raise OptimError(f"max_iter: must be ≥ 1, got {max_iter}")
    if stopping not in ("global", "per_trade"):
        raise OptimError(f"stopping: expected 'global' or 'per_trade', got {stopping!r}")


def _warm_arrays(problem: P2PProblem, warm: P2PSolution | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, λ, ν) initial values from a previous solution (matched by agent pair), or zeros."""
    e = problem.edges
    n = problem.n_agents
    if warm is None:
        return np.zeros(e.n_edges), np.zeros(e.n_edges), problem.b.copy()
    if warm.trades.shape != (n, n):
        raise OptimError(f"warm_start: expected a solution with {n} agents, got {warm.trades.shape[0]}")
    p = np.asarray(warm.trades, dtype=np.float64)[e.src, e.dst]
    lam = -np.nan_to_num(np.asarray(warm.prices, dtype=np.float64)[e.src, e.dst], nan=0.0)
    lam = 0.5 * (lam + lam[e.rev])
    nu = warm.state.get("nu")
    nu = problem.b.copy() if nu is None or nu.shape != (n,) else nu.copy()
    return p, lam, nu


def auto_rho(problem: P2PProblem) -> float:
    """Heuristic penalty: mean peer count × median curvature a (> 0), or × median |b| / median bound.

    Each agent's net position responds to ρ through its M_n trades, so ρ·M_n plays the role of the penalty on
    p_n; scaling ρ with the degree keeps the iteration count roughly flat in N (see ``benchmarks/admm.py``).
    """
    deg = float(np.mean(problem.edges.degree)) if problem.edges.n_edges else 1.0
    pos = problem.a[problem.a > 0]
    if pos.size:
        return deg * float(np.median(pos))
    scale = float(np.median(np.maximum(np.abs(problem.p_min), np.abs(problem.p_max))))
    price = float(np.median(np.abs(problem.b)))
    return deg * price / scale if scale > 0 and price > 0 else 1.0


def solve_admm(
    problem: P2PProblem,
    rho: float | Literal["auto"] = "auto",
    eps_primal: float = 1e-5,
    eps_dual: float = 1e-5,
    max_iter: int = 20_000,
    warm_start: P2PSolution | None = None,
    stopping: Literal["global", "per_trade"] = "global",
    asynchronous: AsyncConfig | None = None,
    rng: np.random.Generator | None = None,
    *,
    alpha: float | None = None,
    eps_trade: float | None = None,
    settle_patience: int = 1,
    rho_line: float | None = None,
) -> P2PSolution:
    """Solve the P2P market by decentralised ADMM (see the module docstring for the algorithm).

    Args:
        problem: the instance.
        rho: ADMM penalty ρ > 0 (currency/unit²): strongly affects the iteration count (Le Goff Latimier &
        Ben Ahmed 2023, Fig. 4);
            "auto" uses :func:`auto_rho`.
        eps_primal: global primal tolerance ε_pri (stop when Σ_n r_n ≤ ε_pri²); absolute, in the problem's units.
        eps_dual: global dual tolerance ε_dual (stop when Σ_n s_n ≤ ε_dual²).
        max_iter: iteration cap (status "max_iter" when reached; the result is then not optimal).
        warm_start: a previous solution (e.g. of the preceding time step) to start from: its trades and
            bilateral prices initialise p and λ (Le Goff Latimier & Ben Ahmed 2023, §5.1).
        stopping: "global" (Le Goff Latimier & Ben Ahmed 2023, eq. 6) or "per_trade" (Le Goff Latimier &
        Ben Ahmed 2023, §5.1: a trade whose dual residue, the change of
            p_nm and of p_mn in one iteration, stays below ``eps_trade`` for ``settle_patience`` iterations is
            settled at its reciprocal value; no further messages about it).
        asynchronous: an :class:`AsyncConfig` to simulate the asynchronous algorithm (Le Goff Latimier &
        Ben Ahmed 2023, §5.3), else None.
        rng: random generator for the asynchronous simulation's delays and losses (required with
            ``asynchronous``).
        alpha: trade regulariser α (must match the centralised solve to compare trades; None for the same
            scale-aware default as :func:`solve_centralized`, except 0 for the asynchronous variant with
            δ < 1: its partial updates with α > 0 stall at a residual floor of about 4α/ρ (measured on
            10-agent markets: α = 1e-4 → primal residual ≥ 4e-4), so cost and prices are exact but trades
            between indifferent pairs are not made unique).
        eps_trade: per-trade tolerance (default ``eps_dual``).
        settle_patience: consecutive iterations below ``eps_trade`` before a trade settles.
        rho_line: penalty of the line-flow coupling (default ``rho``); only with line limits.

    Returns:
        :class:`P2PSolution` with iterations, messages and residual histories.

    Raises:
        OptimError: on invalid arguments; InfeasibleError if a peer component cannot balance.
    """
    if isinstance(rho, str):
        if rho != "auto":
            raise OptimError(f"rho: expected a positive number or 'auto', got {rho!r}")
        rho = auto_rho(problem)
    _check_args(rho, eps_primal, eps_dual, max_iter, stopping)
    if alpha is None and asynchronous is not None and asynchronous.delta < 1.0:
        alpha = 0.0  # partial updates with α > 0 stall at a residual floor ≈ 4α/ρ (see the docstring)
    alpha = resolve_alpha(problem, alpha)
    if settle_patience < 1:
        raise OptimError(f"settle_patience: must be ≥ 1, got {settle_patience}")
    eps_trade = eps_dual if eps_trade is None else float(eps_trade)
    if not eps_trade > 0:
        raise OptimError(f"eps_trade: must be > 0, got {eps_trade}")
    problem.check_feasible_components()
    e = problem.edges
    lo, hi = problem.edge_bounds
    H = problem.line_matrix
    rho_l = float(rho if rho_line is None else rho_line)
    if H is not None and not (np.isfinite(rho_l) and rho_l > 0):
        raise OptimError(f"rho_line: must be finite and > 0, got {rho_line}")
    c_line = 0.0 if H is None else 1.01 * rho_l * float(np.linalg.norm(H, 2)) ** 2
    ctx = _Ctx(problem, e.src, e.rev, problem.edge_beta, lo, hi, float(rho), float(alpha), H, rho_l, c_line)
    if asynchronous is not None:
        if rng is None:
            raise OptimError("rng: a numpy Generator is required with asynchronous=AsyncConfig(...)")
        from p2p_gym.optim.asynchronous import run_async

        return run_async(ctx, asynchronous, rng, eps_primal, eps_dual, int(max_iter), warm_start)
    return _run_sync(
        ctx, eps_primal, eps_dual, int(max_iter), warm_start, stopping, eps_trade, settle_patience
    )


def _run_sync(
    ctx: _Ctx,
    eps_primal: float,
    eps_dual: float,
    max_iter: int,
    warm: P2PSolution | None,
    stopping: str,
    eps_trade: float,
    patience: int,
) -> P2PSolution:
    t0 = time.perf_counter()
    pb = ctx.problem
    n = pb.n_agents
    src, rev, rho = ctx.src, ctx.rev, ctx.rho
    p, lam, nu = _warm_arrays(pb, warm)
    z = 0.5 * (p - p[rev])
    s = np.bincount(src, p, minlength=n)
    H = ctx.H
    fmax = np.zeros(0) if pb.line_max is None else pb.line_max
    w = phi = np.zeros(0)
    if H is not None:
        w = np.zeros(H.shape[0]) if warm is None else warm.state.get("w", np.zeros(H.shape[0])).copy()
        phi = np.clip(H @ s, -fmax, fmax)
    per_trade = stopping == "per_trade"
    active = np.ones(src.size, dtype=bool)
    calm: np.ndarray = np.zeros(src.size, dtype=np.int64)
    a_eff, b_eff, pmin_eff, pmax_eff = pb.a, pb.b, pb.p_min, pb.p_max
    pri_hist: list[float] = []
    dual_hist: list[float] = []
    messages = 0
    status = "max_iter"
    k = 0
    eps_p2, eps_d2 = eps_primal**2, eps_dual**2
    for k in range(1, max_iter + 1):  # noqa: B007 - k is the iteration count after the loop
        t = z - lam / rho
        a_it, b_it = a_eff, b_eff
        if H is not None:
            signal = ctx.rho_line * (H.T @ (H @ s - phi + w))
            a_it = a_eff + ctx.c_line
            b_it = b_eff + signal - ctx.c_line * s
        if per_trade and not active.all():
            idx = np.flatnonzero(active)
            fixed_sum = np.bincount(src, np.where(active, 0.0, p), minlength=n)
            p_act, nu = local_step(
                src[idx],
                t[idx],
                ctx.beta[idx],
                ctx.lo[idx],
                ctx.hi[idx],
                a_it,
                b_it + a_it * fixed_sum,
                pmin_eff - fixed_sum,
                pmax_eff - fixed_sum,
                nu,
                rho,
                ctx.alpha,
            )
            p_new = p.copy()
            p_new[idx] = p_act
        else:
            p_new, nu = local_step(
                src, t, ctx.beta, ctx.lo, ctx.hi, a_it, b_it, pmin_eff, pmax_eff, nu, rho, ctx.alpha
            )
        messages += int(active.sum())
        gap = p_new + p_new[rev]
        dp = p_new - p
        p = p_new
        lam = lam + 0.5 * rho * gap * active
        z = 0.5 * (p - p[rev])
        s = np.bincount(src, p, minlength=n)
        r2 = float(gap @ gap)
        d2 = float(dp @ dp)
        if H is not None:
            flow = H @ s
            phi_new = np.clip(flow + w, -fmax, fmax)
            w = w + flow - phi_new
            r2 += float(np.sum((flow - phi_new) ** 2))
            d2 += float(np.sum((phi_new - phi) ** 2))
            phi = phi_new
        pri_hist.append(math.sqrt(r2))
        dual_hist.append(math.sqrt(d2))
        if r2 <= eps_p2 and d2 <= eps_d2:
            status = "converged"
            break
        if per_trade:
            # Le Goff Latimier & Ben Ahmed 2023, §5.1: a trade settles once its own dual residue (the
            # change of p_nm and of p_mn between
            # iterations) is below the tolerance; settling projects it onto reciprocity, so no gap is left.
            quiet = active & (np.abs(dp) <= eps_trade) & (np.abs(dp[rev]) <= eps_trade)
            calm = np.where(quiet, calm + 1, 0)
            settle = active & (calm >= patience) & (calm[rev] >= patience)
            if settle.any():
                v = 0.5 * (p - p[rev])
                p = np.where(settle, v, p)
                z = np.where(settle, v, z)
                active &= ~settle
                s = np.bincount(src, p, minlength=n)
                if not active.any():
                    status = "settled"
                    break
    state = {"nu": nu, "lam": lam}
    line_prices = None
    if H is not None:
        state["w"] = w
        line_prices = ctx.rho_line * w
    return solution_from_edges(
        pb,
        p,
        lam,
        status=status,
        solver="admm" + ("/per_trade" if per_trade else ""),
        iterations=k,
        messages=messages,
        primal_residuals=np.asarray(pri_hist),
        dual_residuals=np.asarray(dual_hist),
        solve_time=time.perf_counter() - t0,
        line_prices=line_prices,
        state=state,
    )
