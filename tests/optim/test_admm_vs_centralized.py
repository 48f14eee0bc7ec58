"""ADMM against the centralised cvxpy optimum on hundreds of random instances."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.optim import P2PProblem, P2PSolution, solve_admm, solve_centralized
from tests.optim._instances import random_problem


def _check_feasible(pb: P2PProblem, sol: P2PSolution, tol: float) -> None:
    adj = pb.adjacency_matrix
    assert np.all(sol.trades[~adj] == 0.0)
    assert np.all(sol.power >= pb.p_min - tol) and np.all(sol.power <= pb.p_max + tol)
    lo, hi = pb.edge_bounds
    e = pb.edges
    p = sol.trades[e.src, e.dst]
    assert np.all(p >= lo - tol) and np.all(p <= hi + tol)
    if pb.has_lines:
        assert np.all(np.abs(sol.line_flows) <= pb.line_max + 10 * tol)


def _compare(pb: P2PProblem, rho: float, **kw: object) -> tuple[P2PSolution, P2PSolution]:
    c = solve_centralized(pb)
    d = solve_admm(pb, rho=rho, max_iter=250_000, **kw)  # type: ignore[arg-type]
    assert d.status == "converged"
    scale = max(1.0, abs(c.cost))
    assert abs(d.cost - c.cost) <= 1e-4 * scale, (d.cost, c.cost)
    assert d.reciprocity_residual <= 1e-5
    _check_feasible(pb, c, 1e-6)
    _check_feasible(pb, d, 1e-5)
    return c, d


@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2, 3))])
def test_random_instances_match_centralized(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    for _ in range(60):  # 4 × 60 = 240 instances
        _compare(random_problem(rng), rho=float(rng.choice([0.5, 1.0, 2.0])))


def test_random_instances_with_line_limits_match_centralized() -> None:
    rng = np.random.default_rng(7)
    binding = 0
    for _ in range(25):
        pb = random_problem(rng, lines=True)
        c, _ = _compare(pb, rho=1.0)
        binding += int(np.any(np.abs(c.line_flows) >= pb.line_max - 1e-6))
    assert binding >= 5  # the limits actually bite in a good share of the instances


@pytest.mark.slow
def test_many_more_random_instances() -> None:
    rng = np.random.default_rng(99)
    for i in range(400):
        _compare(random_problem(rng, lines=i % 5 == 0), rho=1.0)


def test_full_connectivity_equals_pool() -> None:
    """With full connectivity and no preferences, P2P optimum == pool optimum and all prices == pool price."""
    import cvxpy as cp

    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(2, 12))
        a = rng.uniform(0.1, 2.0, n)
        b = rng.uniform(0.5, 8.0, n)
        p_min = -rng.uniform(0, 6, n) * (rng.random(n) < 0.6)
        p_max = rng.uniform(0, 6, n) * (rng.random(n) < 0.6)
        pb = P2PProblem(a, b, p_min, p_max)
        # independent pool solve: min Σ f_n(p_n) s.t. Σ p_n = 0
        x = cp.Variable(n)
        bal = cp.sum(x) == 0
        prob = cp.Problem(cp.Minimize(0.5 * a @ cp.square(x) + b @ x), [bal, x >= p_min, x <= p_max])
        prob.solve(solver=cp.CLARABEL)
        pool_cost = float(prob.value)
        pool_price = -float(bal.dual_value)
        c = solve_centralized(pb)
        d = solve_admm(pb, rho=1.0, eps_primal=1e-7, eps_dual=1e-7)
        for sol in (c, d):
            assert sol.cost == pytest.approx(pool_cost, rel=1e-5, abs=1e-5)
            np.testing.assert_allclose(sol.power, x.value, atol=1e-3)
            off = ~np.eye(n, dtype=bool)
            if np.any(np.abs(x.value) > 1e-6):  # the price is determined once something is traded
                np.testing.assert_allclose(sol.prices[off], pool_price, atol=1e-3)


def test_three_agent_star_hand_checked() -> None:
    """Le Goff Latimier & Ben Ahmed 2023, Fig. 7 graph: ω_i = {j, m}, ω_j = ω_m = {i}. Producer i (cost p +
    ½p²), consumers j and m with
    marginal values 5 − q and 4 − q. Balance: π − 1 = (5 − π) + (4 − π) → π = 10/3, p_i = 7/3, q_j = 5/3,
    q_m = 2/3, cost = 91/18 − 125/18 − 44/18 = −13/3."""
    adj = np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0]], dtype=bool)
    pb = P2PProblem(
        a=[1.0, 1.0, 1.0], b=[1.0, 5.0, 4.0], p_min=[0, -10, -10], p_max=[10, 0, 0], adjacency=adj
    )
    for sol in (solve_centralized(pb), solve_admm(pb, rho=1.0, eps_primal=1e-8, eps_dual=1e-8)):
        assert sol.cost == pytest.approx(-13 / 3, abs=1e-6)
        np.testing.assert_allclose(sol.trades[0, 1:], [5 / 3, 2 / 3], atol=1e-5)
        np.testing.assert_allclose(sol.trades[1:, 0], [-5 / 3, -2 / 3], atol=1e-5)
        assert sol.trades[1, 2] == 0.0
        np.testing.assert_allclose(sol.prices[adj], 10 / 3, atol=1e-5)
    # j dislikes i's product by β = 0.5 per unit: its net marginal value is 4.5 − q, so π = 9.5/3
    pref = np.zeros((3, 3))
    pref[1, 0] = 0.5
    pb2 = P2PProblem(pb.a, pb.b, pb.p_min, pb.p_max, adjacency=adj, preference=pref)
    pi = 9.5 / 3
    for sol in (solve_centralized(pb2), solve_admm(pb2, rho=1.0, eps_primal=1e-8, eps_dual=1e-8)):
        np.testing.assert_allclose(sol.trades[0, 1:], [4.5 - pi, 4 - pi], atol=1e-5)
        np.testing.assert_allclose(sol.prices[adj], pi, atol=1e-5)


def test_preferences_reduce_disliked_trades() -> None:
    """Two sellers with equal costs; the buyer prefers seller 1 (β on seller 0): it buys more from 1."""
    pref = np.zeros((3, 3))
    pref[2, 0] = 0.3
    pb = P2PProblem(a=[1, 1, 1], b=[1, 1, 6], p_min=[0, 0, -10], p_max=[10, 10, 0], preference=pref)
    c, _ = _compare(pb, rho=1.0)
    assert c.trades[1, 2] > c.trades[0, 2] + 0.2
