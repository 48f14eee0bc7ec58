"""ADMM features: message counting, per-trade stopping, warm start, asynchronous variant, line limits."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.errors import OptimError
from p2p_gym.optim import (
    AsyncConfig,
    P2PProblem,
    ieee39_problem,
    random_market,
    solve_admm,
    solve_centralized,
)
from tests.optim._instances import random_graph


def _market(n: int, rng: np.random.Generator, sparse: bool = False) -> P2PProblem:
    prod = np.arange(n) < n // 2
    a = rng.uniform(0.5, 2.0, n)
    b = np.where(prod, rng.uniform(1.0, 4.0, n), rng.uniform(5.0, 9.0, n))
    cap = rng.uniform(1.0, 5.0, n)
    adj = random_graph(n, 0.3, rng) if sparse else None
    return P2PProblem(a, b, np.where(prod, 0.0, -cap), np.where(prod, cap, 0.0), adjacency=adj)


def test_messages_one_per_peer_per_iteration() -> None:
    pb = _market(8, np.random.default_rng(0), sparse=True)
    sol = solve_admm(pb, rho=1.0)
    assert sol.messages == sol.iterations * pb.edges.n_edges
    assert len(sol.primal_residuals) == len(sol.dual_residuals) == sol.iterations
    assert sol.primal_residuals[-1] <= 1e-5 and sol.dual_residuals[-1] <= 1e-5
    lam = sol.state["lam"]
    np.testing.assert_allclose(lam, lam[pb.edges.rev])  # λ_nm = λ_mn with the ρ/2 dual step


def test_per_trade_stopping_saves_messages() -> None:
    rng = np.random.default_rng(1)
    saved = []
    for _ in range(10):
        pb = _market(12, rng)
        c = solve_centralized(pb)
        g = solve_admm(pb, rho=3.0)
        t = solve_admm(pb, rho=3.0, stopping="per_trade", eps_trade=1e-5)
        assert t.status in ("settled", "converged")
        assert t.messages < g.messages
        assert t.cost == pytest.approx(c.cost, rel=1e-4)  # as close to cvxpy as the global criterion
        assert t.reciprocity_residual <= 1e-5
        saved.append(g.messages / t.messages)
    assert (
        np.mean(saved) > 1.8
    )  # ≈ 2.3 on these 12-agent markets (Le Goff Latimier & Ben Ahmed 2023, §5.1 settles trade by trade)


def test_warm_start_cuts_iterations() -> None:
    rng = np.random.default_rng(2)
    pb = _market(15, rng)
    cold = solve_admm(pb, rho=1.0)
    # the next time slot: costs move by 2 %
    nxt = P2PProblem(pb.a, pb.b * rng.uniform(0.98, 1.02, pb.n_agents), pb.p_min, pb.p_max)
    c1 = solve_admm(nxt, rho=1.0)
    w1 = solve_admm(nxt, rho=1.0, warm_start=cold)
    assert w1.iterations < 0.7 * c1.iterations
    assert w1.cost == pytest.approx(solve_centralized(nxt).cost, rel=1e-4)
    with pytest.raises(OptimError, match="warm_start"):
        solve_admm(_market(4, rng), warm_start=cold)


def test_asynchronous_delta_one_is_synchronous() -> None:
    pb = _market(6, np.random.default_rng(3), sparse=True)
    sync = solve_admm(pb, rho=1.0)
    cfg = AsyncConfig(delta=1.0, loss=0.2, mean_delay=0.5, compute_time=0.1, tick=0.05)
    asy = solve_admm(pb, rho=1.0, asynchronous=cfg, rng=np.random.default_rng(0))
    # same iterates (the stopping test sees agents up to one update apart, hence the tolerance)
    assert abs(asy.iterations - sync.iterations) <= 1
    np.testing.assert_allclose(asy.trades, sync.trades, atol=1e-5)
    # without delays every agent updates at every tick: exactly the synchronous iterates
    instant = AsyncConfig(delta=1.0, mean_delay=0.0, compute_time=0.0, tick=1.0)
    exact = solve_admm(pb, rho=1.0, asynchronous=instant, rng=np.random.default_rng(0))
    assert exact.iterations == sync.iterations
    np.testing.assert_allclose(exact.trades, sync.trades, atol=1e-13)
    assert asy.sim_time > sync.iterations * (cfg.compute_time + 0.5 * cfg.mean_delay)


def test_asynchronous_converges_to_optimum_and_is_faster() -> None:
    rng = np.random.default_rng(4)
    pb = _market(8, rng)
    c = solve_centralized(pb)
    times = {}
    for delta in (1.0, 0.5):
        sol = solve_admm(pb, rho=1.0, asynchronous=AsyncConfig(delta=delta), rng=np.random.default_rng(5))
        assert sol.status == "converged"
        assert sol.cost == pytest.approx(c.cost, rel=1e-4)
        times[delta] = sol.sim_time
    assert times[0.5] < times[1.0]
    with pytest.raises(OptimError, match="rng"):
        solve_admm(pb, asynchronous=AsyncConfig())
    with pytest.raises(OptimError, match="delta"):
        AsyncConfig(delta=0.0)
    with pytest.raises(OptimError, match="loss"):
        AsyncConfig(loss=1.0)


def test_ieee39_line_limits_admm_matches_dc_opf() -> None:
    """Endogenous approach (Le Goff Latimier & Ben Ahmed 2023, §6.2, Fig. 11–12): the operator peer prices
    flows; same optimum as the QP."""
    pb = ieee39_problem(line_limits=True, rating_scale=0.6)
    c = solve_centralized(pb)
    d = solve_admm(pb, rho=0.3, rho_line=0.01)
    assert d.status == "converged"
    assert d.cost == pytest.approx(c.cost, rel=1e-6)
    binding = np.abs(c.line_flows) >= pb.line_max * (1 - 1e-6)
    assert binding.sum() >= 3
    assert np.all(np.abs(d.line_flows) <= pb.line_max * (1 + 1e-6))
    # the operator's line prices match the QP's shadow prices on the binding lines
    np.testing.assert_allclose(d.line_prices[binding], c.line_prices[binding], rtol=1e-2, atol=1e-3)
    free = solve_centralized(ieee39_problem())
    assert c.cost > free.cost + 1.0  # the limits cost welfare


def test_rho_auto_and_bad_rho() -> None:
    pb = _market(30, np.random.default_rng(6))
    sol = solve_admm(pb)  # rho="auto"
    assert sol.status == "converged" and sol.iterations < 200
    with pytest.raises(OptimError, match="rho"):
        solve_admm(pb, rho="fast")  # type: ignore[arg-type]


def test_asynchronous_partial_updates_reach_tight_tolerances() -> None:
    """Regression: with δ < 1 and a regulariser α > 0 the iterates stalled above ε (floor ≈ 4α/ρ)."""
    pb = random_market(10, np.random.default_rng(0))
    c = solve_centralized(pb)
    cfg = AsyncConfig(delta=0.5, loss=0.2)
    sol = solve_admm(pb, rho=1.0, asynchronous=cfg, rng=np.random.default_rng(1), max_iter=5000)
    assert sol.status == "converged"
    assert sol.cost == pytest.approx(c.cost, rel=1e-5)
    np.testing.assert_allclose(sol.power, c.power, atol=1e-4)
