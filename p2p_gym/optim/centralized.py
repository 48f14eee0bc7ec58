"""Centralised P2P optimum with cvxpy (DPP: one compilation per problem structure).

The variables are the directed trades p_e of the peer graph; reciprocity p_nm + p_mn = 0 is one equality per
pair, whose dual is the bilateral price. A tiny α·Σ p_e² makes the trades unique (Le Goff Latimier & Ben
Ahmed 2023, §4); the
reported cost excludes it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from p2p_gym.errors import OptimError
from p2p_gym.optim.problem import InfeasibleError, P2PProblem, P2PSolution, solution_from_edges

__all__ = ["DEFAULT_ALPHA", "solve_centralized", "solve_pool"]

DEFAULT_ALPHA = 1e-6
"""Default relative weight of the trade regulariser: α = DEFAULT_ALPHA · ``problem.alpha_scale`` (currency/unit²)
unless α is given. An absolute α would distort instances in large units (ieee39 in kWh: 2αp ≈ 0.2 EUR/kWh)."""

_CACHE_SIZE = 32


@dataclass
class _Compiled:
    problem: cp.Problem
    p: cp.Variable
    params: dict[str, cp.Parameter]
    reciprocity: cp.Constraint
    line_up: cp.Constraint | None
    line_dn: cp.Constraint | None


_cache: OrderedDict[tuple[Any, ...], _Compiled] = OrderedDict()


def _structure_key(problem: P2PProblem) -> tuple[Any, ...]:
    lo, hi = problem.edge_bounds
    return (
        problem.n_agents,
        problem.adjacency_matrix.tobytes(),
        np.isfinite(lo).tobytes(),
        np.isfinite(hi).tobytes(),
        problem.n_lines,
    )


def _compile(problem: P2PProblem) -> _Compiled:
    n, e = problem.n_agents, problem.edges
    n_e = e.n_edges
    lo, hi = problem.edge_bounds
    p = cp.Variable(n_e, name="p")
    incidence = sp.csr_matrix((np.ones(n_e), (e.src, np.arange(n_e))), shape=(n, n_e))
    prm = {
        "sqrt_a": cp.Parameter(n, nonneg=True, name="sqrt_a"),
        "b": cp.Parameter(n, name="b"),
        "p_min": cp.Parameter(n, name="p_min"),
        "p_max": cp.Parameter(n, name="p_max"),
        "beta": cp.Parameter(n_e, nonneg=True, name="beta"),
        "alpha": cp.Parameter(nonneg=True, name="alpha"),
    }
    # Parameters enter only linear terms and constraints (cvxpy's quadratic coefficient extraction is dense
    # in the parameters): ½·Σ a·s² = ½·‖u‖² with u = √a ⊙ s, and β·|p| = β·τ with τ ≥ ±p.
    s = cp.Variable(n, name="s")
    u = cp.Variable(n, name="u")
    tau = cp.Variable(n_e, name="tau")
    obj = 0.5 * cp.sum_squares(u) + prm["b"] @ s + prm["beta"] @ tau + prm["alpha"] * cp.sum_squares(p)
    reciprocity = p[e.fwd] + p[e.rev[e.fwd]] == 0
    cons: list[cp.Constraint] = [
        reciprocity,
        s == incidence @ p,
        u == cp.multiply(prm["sqrt_a"], s),
        tau >= p,
        tau >= -p,
        s >= prm["p_min"],
        s <= prm["p_max"],
    ]
    lo_idx, hi_idx = np.flatnonzero(np.isfinite(lo)), np.flatnonzero(np.isfinite(hi))
    if lo_idx.size:
        prm["lo"] = cp.Parameter(lo_idx.size, name="lo")
        cons.append(p[lo_idx] >= prm["lo"])
    if hi_idx.size:
        prm["hi"] = cp.Parameter(hi_idx.size, name="hi")
        cons.append(p[hi_idx] <= prm["hi"])
    line_up = line_dn = None
    if problem.n_lines:
        prm["H"] = cp.Parameter((problem.n_lines, n), name="H")
        prm["F"] = cp.Parameter(problem.n_lines, nonneg=True, name="F")
        flow = prm["H"] @ s
        line_up, line_dn = flow <= prm["F"], flow >= -prm["F"]
        cons += [line_up, line_dn]
    prob = cp.Problem(cp.Minimize(obj), cons)
    if not prob.is_dcp(dpp=True):  # type: ignore[call-arg]
        raise OptimError("internal: the centralised P2P problem is not DPP")
    return _Compiled(prob, p, prm, reciprocity, line_up, line_dn)


def _get_compiled(problem: P2PProblem) -> _Compiled:
    key = _structure_key(problem)
    hit = _cache.get(key)
    if hit is None:
        hit = _compile(problem)
        _cache[key] = hit
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return hit


def resolve_alpha(problem: P2PProblem, alpha: float | None) -> float:
    """The regulariser weight to use: ``alpha`` if given (validated), else the scale-aware default."""
    if alpha is None:
        return DEFAULT_ALPHA * problem.alpha_scale
    alpha = float(alpha)
    if alpha < 0 or not np.isfinite(alpha):
        raise OptimError(f"alpha: must be finite and ≥ 0, got {alpha}")
    return alpha


def _check_status(status: str, what: str) -> None:
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InfeasibleError(f"{what}: the problem is infeasible (solver status {status!r})")
    if status != cp.OPTIMAL:
        raise OptimError(f"{what}: solver did not reach an optimum (status {status!r}; expected 'optimal')")


def solve_centralized(
    problem: P2PProblem, solver: str | None = None, *, alpha: float | None = None, **solver_kwargs: Any
) -> P2PSolution:
    """Solve the P2P market problem centrally with cvxpy.

    Args:
        problem: the instance.
        solver: a cvxpy solver name (default Clarabel).
        alpha: weight of the uniqueness regulariser α·Σ p_nm² (excluded from the reported cost); None for
            ``DEFAULT_ALPHA · problem.alpha_scale``.
        **solver_kwargs: passed to ``cvxpy.Problem.solve``.

    Returns:
        The optimal :class:`P2PSolution` (``status="optimal"``).

    Raises:
        InfeasibleError: if no feasible trades exist.
        OptimError: if the solver ends with any other non-optimal status.
    """
    alpha = resolve_alpha(problem, alpha)
    problem.check_feasible_components()
    t0 = time.perf_counter()
    c = _get_compiled(problem)
    # Solve in scaled units (quantities / Q, money / (C·Q)) so that kWh and GWh instances are equally well
    # conditioned; α becomes α·Q/C (= DEFAULT_ALPHA by default) and the duals scale back by C.
    q_s, c_s = problem.quantity_scale, problem.price_scale
    lo, hi = problem.edge_bounds
    c.params["sqrt_a"].value = np.sqrt(problem.a * (q_s / c_s))
    c.params["b"].value = problem.b / c_s
    c.params["p_min"].value = problem.p_min / q_s
    c.params["p_max"].value = problem.p_max / q_s
    c.params["beta"].value = problem.edge_beta / c_s
    c.params["alpha"].value = alpha * q_s / c_s
    if "lo" in c.params:
        c.params["lo"].value = lo[np.isfinite(lo)] / q_s
    if "hi" in c.params:
        c.params["hi"].value = hi[np.isfinite(hi)] / q_s
    if problem.n_lines and problem.line_max is not None:
        c.params["H"].value = problem.line_matrix
        c.params["F"].value = problem.line_max / q_s
    try:
        c.problem.solve(solver=solver or cp.CLARABEL, **solver_kwargs)
    except cp.error.SolverError as exc:
        raise OptimError(f"solve_centralized: solver {solver or 'CLARABEL'} failed: {exc}") from exc
    _check_status(c.problem.status, "solve_centralized")
    e = problem.edges
    p_edge = np.asarray(c.p.value, dtype=np.float64) * q_s
    # cvxpy's equality dual y enters the Lagrangian as +y·(p_nm + p_mn); the ADMM multiplier λ has the same
    # sign, and the price is π = −λ.
    lam_pair = np.asarray(c.reciprocity.dual_value, dtype=np.float64).reshape(-1) * c_s
    lam_edge = lam_pair[e.pair]
    line_prices = None
    if c.line_up is not None and c.line_dn is not None:
        line_prices = (np.asarray(c.line_up.dual_value) - np.asarray(c.line_dn.dual_value)) * c_s
    return solution_from_edges(
        problem,
        p_edge,
        lam_edge,
        status="optimal",
        solver=f"cvxpy/{c.problem.solver_stats.solver_name}",
        solve_time=time.perf_counter() - t0,
        line_prices=line_prices,
    )


def solve_pool(problem: P2PProblem, solver: str | None = None) -> tuple[np.ndarray, float, float]:
    """Pool market (Le Goff Latimier & Ben Ahmed 2023, eq. 1): min Σ f_n(p_n) s.t. Σ p_n = 0 and the
    agents' bounds; ignores the peer graph.

    Returns:
        (power float[N], cost, pool price) where the price is the dual of the balance (marginal cost).
    """
    n = problem.n_agents
    x = cp.Variable(n)
    bal = cp.sum(x) == 0
    obj = 0.5 * cp.sum(cp.multiply(problem.a, cp.square(x))) + problem.b @ x
    prob = cp.Problem(cp.Minimize(obj), [bal, x >= problem.p_min, x <= problem.p_max])
    prob.solve(solver=solver or cp.CLARABEL)
    _check_status(prob.status, "solve_pool")
    power = np.asarray(x.value, dtype=np.float64)
    return power, problem.energy_cost(power) + problem.cost_offset, -float(bal.dual_value)
