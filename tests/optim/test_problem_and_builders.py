"""Validation, infeasibility, builders (from_positions closed form, scenario step, ieee39), fees, DPP cache."""

from __future__ import annotations

import types

import numpy as np
import pytest

from p2p_gym.errors import OptimError
from p2p_gym.optim import (
    InfeasibleError,
    P2PProblem,
    distance_fees,
    from_positions,
    from_scenario_step,
    ieee39_problem,
    solve_admm,
    solve_centralized,
    solve_pool,
    uniform_fees,
    zonal_fees,
)
from p2p_gym.optim import centralized as central_mod

_OK = {"a": [1.0, 1.0], "b": [1.0, 3.0], "p_min": [0.0, -2.0], "p_max": [2.0, 0.0]}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"a": [-1.0, 1.0]}, "a"),
        ({"b": [1.0, np.nan]}, "b"),
        ({"b": [1.0, 2.0, 3.0]}, "b"),
        ({"p_min": [3.0, -2.0]}, "p_min"),
        ({"p_max": [np.inf, 0.0]}, "p_max"),
        ({"adjacency": [[0, 1], [0, 0]]}, "adjacency"),
        ({"adjacency": [[1, 1], [1, 0]]}, "adjacency"),
        ({"preference": [[0, -1], [0, 0]]}, "preference"),
        ({"trade_max": [[0, -1.0], [1, 0]]}, "trade_max"),
        ({"ptdf": np.ones((1, 2))}, "bus, ptdf, line_max"),
        ({"ptdf": np.ones((1, 2)), "bus": [0, 5], "line_max": [1.0]}, "bus"),
        ({"ptdf": np.ones((1, 2)), "bus": [0, 1], "line_max": [0.0]}, "line_max"),
        ({"n_prosumers": 5}, "n_prosumers"),
    ],
)
def test_bad_inputs_name_the_field(override: dict, field: str) -> None:
    with pytest.raises(OptimError, match=field.split(",")[0]):
        P2PProblem(**{**_OK, **override})


def test_bad_solver_arguments() -> None:
    pb = P2PProblem(**_OK)
    for kw, field in (
        ({"rho": 0.0}, "rho"),
        ({"eps_primal": -1.0}, "eps_primal"),
        ({"max_iter": 0}, "max_iter"),
    ):
        with pytest.raises(OptimError, match=field):
            solve_admm(pb, **kw)  # type: ignore[arg-type]
    with pytest.raises(OptimError, match="stopping"):
        solve_admm(pb, stopping="never")  # type: ignore[arg-type]
    with pytest.raises(OptimError, match="alpha"):
        solve_centralized(pb, alpha=-1.0)
    with pytest.raises(ValueError):  # OptimError is a ValueError
        from_positions([1.0], 0.1, 0.3)


def test_infeasible_problems_are_reported() -> None:
    # two producers that must produce: nobody can buy
    pb = P2PProblem(a=[1, 1], b=[1, 1], p_min=[1.0, 0.5], p_max=[2.0, 2.0])
    with pytest.raises(InfeasibleError, match="infeasible"):
        solve_centralized(pb)
    with pytest.raises(InfeasibleError):
        solve_admm(pb)
    # the components are balanced but the trade limit makes it impossible: caught by the solver status
    tmax = np.array([[0.0, 1.0], [1.0, 0.0]])
    pb2 = P2PProblem(a=[1, 1], b=[1, 3], p_min=[2.0, -5.0], p_max=[3.0, 0.0], trade_max=tmax)
    with pytest.raises(InfeasibleError, match="infeasible"):
        solve_centralized(pb2)
    # isolated agent that must trade
    adj = np.zeros((3, 3), dtype=bool)
    adj[0, 1] = adj[1, 0] = True
    pb3 = P2PProblem(a=[1, 1, 1], b=[1, 3, 3], p_min=[0, -1, -2], p_max=[1, 0, -1], adjacency=adj)
    with pytest.raises(InfeasibleError, match=r"\[2\]"):
        solve_centralized(pb3)


def _grid_only_welfare(net: np.ndarray, retail: float, feed_in: float) -> float:
    return float(-retail * np.clip(-net, 0, None).sum() + feed_in * np.clip(net, 0, None).sum())


def test_from_positions_closed_form_welfare() -> None:
    rng = np.random.default_rng(5)
    for i in range(25):
        n = int(rng.integers(1, 12))
        net = rng.normal(0, 2, n)
        retail = rng.uniform(0.2, 0.4)
        feed_in = rng.uniform(0.0, retail)
        pb = from_positions(net, retail, feed_in)
        assert pb.n_prosumers == n and list(pb.grid_peers) == [n, n + 1]
        supply, demand = np.clip(net, 0, None).sum(), np.clip(-net, 0, None).sum()
        gain = (retail - feed_in) * min(supply, demand)
        sol = solve_centralized(pb)
        assert sol.welfare - _grid_only_welfare(net, retail, feed_in) == pytest.approx(gain, abs=1e-6)
        assert sol.welfare == pytest.approx(
            -retail * max(demand - supply, 0) + feed_in * max(supply - demand, 0)
        )
        np.testing.assert_allclose(sol.power[:n], net, atol=1e-7)
        if i < 5:
            d = solve_admm(pb, rho=0.1)
            assert d.status == "converged"
            assert d.welfare == pytest.approx(sol.welfare, abs=1e-4 * max(1.0, abs(sol.welfare)))


def test_from_positions_flexibility_and_options() -> None:
    net = np.array([3.0, -1.0, -1.0])
    # the surplus agent may deviate at cost ½·a·dev²; one more kWh exported earns the feed-in 0.05, so it
    # raises its output until the marginal deviation cost a·dev equals 0.05: dev = 0.05 / 0.5 = 0.1
    pb = from_positions(net, 0.3, 0.05, flexibility_kwh=[2.0, 0.0, 0.0], a_flex=0.5)
    sol = solve_centralized(pb)
    assert sol.power[0] == pytest.approx(3.0 + 0.1, abs=1e-5)
    assert pb.objective(np.zeros((5, 5))) == pytest.approx(0.5 * 0.5 * 9)  # offset = ½·a·net² at p = 0
    adj = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    pb2 = from_positions(net, 0.3, 0.05, adjacency=adj, preference=np.full((3, 3), 0.01))
    sol2 = solve_centralized(pb2)
    # agent 2 has no prosumer peers: it trades with the grid peers only
    assert np.all(sol2.trades[2, :3] == 0.0) and sol2.trades[2, 3:].sum() == pytest.approx(-1.0, abs=1e-6)
    for bad, field in (({"flexibility_kwh": -1.0}, "flexibility_kwh"), ({"a_flex": 0.0}, "a_flex")):
        with pytest.raises(OptimError, match=field):
            from_positions(net, 0.3, 0.05, **bad)  # type: ignore[arg-type]


def test_from_scenario_step_with_stand_in() -> None:
    sc = types.SimpleNamespace(
        pv_kw=np.array([[4.0, 0.0, 1.0], [0.0, 0.0, 0.0]]),
        load_kw=np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0]]),
        step_minutes=30,
        retail_price=np.array([0.3, 0.35]),
        feed_in_price=np.array([0.1, 0.08]),
    )
    pb = from_scenario_step(sc, 0)
    np.testing.assert_allclose(pb.p_min[:3], [1.5, -1.0, 0.0])
    assert pb.b[3] == 0.3 and pb.b[4] == 0.1
    sol = solve_centralized(pb)
    assert sol.welfare == pytest.approx(0.1 * 0.5)  # 1.5 surplus, 1.0 traded internally, 0.5 exported
    with pytest.raises(OptimError, match="t:"):
        from_scenario_step(sc, 2)


def test_ieee39_builder() -> None:
    pb = ieee39_problem()
    assert pb.n_agents == 31 and not pb.has_lines
    assert np.all(pb.a[:10] == pytest.approx(0.02)) and np.all(pb.b[:10] == pytest.approx(0.3))
    pbl = ieee39_problem(line_limits=True, rating_scale=0.6, peers="bipartite")
    assert pbl.n_lines == 46 and pbl.ptdf.shape == (46, 39)
    assert not pbl.adjacency_matrix[:10, :10].any()
    sol = solve_centralized(ieee39_problem(line_limits=True))
    # a DC power flow of the optimal injections reproduces the PTDF flows
    assert np.all(np.abs(sol.line_flows) <= pbl.line_max / 0.6 + 1e-6)
    assert sol.power.sum() == pytest.approx(0.0, abs=1e-6)


def test_ptdf_matches_pandapower_dc_flow() -> None:
    import pandapower as pp
    import pandapower.networks as pn

    from p2p_gym.optim import ptdf_from_net

    net = pn.case39()
    ptdf, rate = ptdf_from_net(net)
    pp.rundcpp(net)
    inj = np.zeros(len(net.bus))
    pos = {b: i for i, b in enumerate(net.bus.index)}
    for tab, sign in ((net.res_gen, 1.0), (net.res_ext_grid, 1.0)):
        for idx, p in tab.p_mw.items():
            elem = net.gen if tab is net.res_gen else net.ext_grid
            inj[pos[elem.at[idx, "bus"]]] += sign * p
    for idx, p in net.load.p_mw.items():
        inj[pos[net.load.at[idx, "bus"]]] -= p
    flows = np.r_[net.res_line.p_from_mw.to_numpy(), net.res_trafo.p_hv_mw.to_numpy()]
    np.testing.assert_allclose(ptdf @ inj, flows, atol=1e-6)
    assert rate.shape == (46,)


def test_fee_helpers() -> None:
    u = uniform_fees(3, 0.2)
    assert u[0, 1] == pytest.approx(0.1) and u[0, 0] == 0.0  # γ split over the two sides
    d = distance_fees([0.0, 1.0, 3.0], 0.1)
    assert d[0, 2] == pytest.approx(0.15) and np.allclose(d, d.T)
    z = zonal_fees([0, 0, 1], 0.4)
    assert z[0, 1] == 0.0 and z[0, 2] == pytest.approx(0.2)
    with pytest.raises(OptimError, match="gamma"):
        uniform_fees(3, -1.0)
    # a fee of γ between a seller (cost 1 + p) and a buyer (value 5 − q) is a wedge: 1 + q + γ = 5 − q
    base = P2PProblem(a=[1, 1], b=[1, 5], p_min=[0, -10], p_max=[10, 0])
    feed = P2PProblem(base.a, base.b, base.p_min, base.p_max, preference=uniform_fees(2, 1.0))
    q0, q1 = solve_centralized(base).trades[0, 1], solve_centralized(feed).trades[0, 1]
    assert q0 == pytest.approx(2.0, abs=1e-5) and q1 == pytest.approx(1.5, abs=1e-5)


def test_dpp_cache_reuses_compilation() -> None:
    rng = np.random.default_rng(0)
    pb = P2PProblem(rng.uniform(0.1, 1, 8), rng.uniform(1, 5, 8), -np.ones(8), np.ones(8))
    solve_centralized(pb)
    before = len(central_mod._cache)
    key = central_mod._structure_key(pb)
    compiled = central_mod._cache[key]
    for _ in range(3):
        pb2 = P2PProblem(rng.uniform(0.1, 1, 8), rng.uniform(1, 5, 8), -np.ones(8), np.ones(8))
        sol = solve_centralized(pb2)
        assert sol.cost == pytest.approx(pb2.objective(sol.trades))
    assert len(central_mod._cache) == before and central_mod._cache[key] is compiled


@pytest.mark.parametrize("units", [1e-3, 1.0, 1e6])
def test_solution_is_unit_invariant(units: float) -> None:
    """kWh vs MWh vs GWh: the optimum is the pool optimum (oracle) in any unit, and prices do not move.

    Regression: an absolute regulariser α = 1e-6 on an ieee39 step in kWh (trades ~1e5) added a marginal
    2αp ≈ 0.2 EUR/kWh and cut the units' output by half.
    """
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.1, 1.0, 6), rng.uniform(1.0, 5.0, 6)
    lo, hi = -rng.uniform(0.5, 3.0, 6), rng.uniform(0.5, 3.0, 6)
    pb = P2PProblem(a / units, b, lo * units, hi * units)
    sol = solve_centralized(pb)
    power, cost, price = solve_pool(pb)
    assert sol.cost == pytest.approx(cost, rel=1e-6, abs=1e-9 * units)
    np.testing.assert_allclose(sol.power, power, atol=1e-5 * units)
    off = ~np.eye(6, dtype=bool) & (np.abs(sol.trades) > 1e-3 * units)
    np.testing.assert_allclose(sol.prices[off], price, rtol=1e-4)
    eps = 1e-5 * min(units, 1.0)  # ADMM tolerances are absolute, in the problem's units
    admm = solve_admm(pb, rho="auto", max_iter=50_000, eps_primal=eps, eps_dual=eps)
    assert admm.status == "converged"
    assert admm.cost == pytest.approx(cost, rel=1e-4, abs=1e-6 * units)
