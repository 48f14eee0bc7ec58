"""The episode optimum against independent references: Σ step_optimum, hand-worked schedules (batteries,
generators, EV sessions, heat-pump bands, PV curtailment, flexible demand), plain-matrix ``scipy.optimize.linprog``
formulations (batteries; every asset with line limits), dynamic programming over a state-of-charge grid, the
linear grid check, the reference welfare by plain loops, the values before the flexible assets, and the
efficiency against the policy-independent reference."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from scipy.optimize import linprog

from p2p_gym.errors import OptimError, P2PGymError
from p2p_gym.optim import EpisodeOptimum, episode_efficiency, episode_optimum, step_optimum
from p2p_gym.scenarios.base import Scenario
from p2p_gym.sim.stages import battery_dispatch
from tests.conftest import cached_scenario


def _scenario(
    load: Any,
    pv: Any,
    retail: Any,
    feed_in: Any,
    *,
    battery_kwh: Any = None,
    battery_kw: Any = None,
    efficiency: float = 0.95,
    step_minutes: int = 60,
    net: Any = None,
    bus: Any = None,
    **gen: Any,
) -> Scenario:
    """A synthetic scenario from time-by-agent arrays (no network unless ``net`` is given)."""
    load = np.asarray(load, dtype=float)
    n = load.shape[1]
    return Scenario(
        name="synthetic",
        agent_ids=tuple(f"a{i}" for i in range(n))
        if net is None
        else tuple(f"prosumer_{i}" for i in range(n)),
        bus=np.zeros(n, dtype=np.int64) if bus is None else bus,
        load_kw=load,
        pv_kw=np.asarray(pv, dtype=float),
        pv_kwp=np.zeros(n),
        battery_kwh=np.zeros(n) if battery_kwh is None else np.asarray(battery_kwh, dtype=float),
        battery_kw=np.zeros(n) if battery_kw is None else np.asarray(battery_kw, dtype=float),
        retail_price=np.asarray(retail, dtype=float),
        feed_in_price=np.asarray(feed_in, dtype=float),
        step_minutes=step_minutes,
        net=net,
        battery_efficiency=efficiency,
        **gen,
    )


def _no_batteries(sc: Scenario) -> Scenario:
    return sc.replace(battery_kwh=np.zeros(sc.n_agents), battery_kw=np.zeros(sc.n_agents))


def _replay(sc: Scenario, opt: EpisodeOptimum) -> np.ndarray:
    """State of charge when the environment's battery model applies the optimum's battery powers."""
    has = sc.battery_kwh > 0
    soc = [opt.soc_kwh[0]]
    for p in opt.battery_kw:
        setpoint = np.divide(p, sc.battery_kw, out=np.zeros_like(p), where=has)
        kw, nxt = battery_dispatch(
            setpoint, soc[-1], sc.battery_kw, sc.battery_kwh, sc.battery_efficiency, sc.dt_hours, has
        )
        np.testing.assert_allclose(kw, p, atol=1e-7)  # the schedule is within the env's limits
        soc.append(nxt)
    return np.array(soc)


# ------------------------------------------------------------------------------------ 1. Σ step_optimum
@pytest.mark.parametrize(("name", "days"), [("tiny", (0, 3, 6)), ("default", (10, 100, 180, 300))])
def test_without_batteries_equals_sum_of_step_optima(name: str, days: tuple[int, ...]) -> None:
    sc = _no_batteries(cached_scenario(name))
    for day in days:
        t = np.arange(day * 96, (day + 1) * 96)
        net_kwh = (sc.pv_kw[t] - sc.load_kw[t]) * sc.dt_hours
        ref = step_optimum(sc, t, net_kwh)
        opt = episode_optimum(sc, int(t[0]), 96)
        assert opt.status == "optimal"
        np.testing.assert_allclose(opt.welfare_per_step, ref, atol=1e-7)
        assert opt.welfare == pytest.approx(ref.sum(), abs=1e-6)
        # the reference: every agent alone with the grid
        own = sc.feed_in_price[t, None] * np.maximum(net_kwh, 0) - sc.retail_price[t, None] * np.maximum(
            -net_kwh, 0
        )
        assert opt.reference_welfare == pytest.approx(own.sum(), abs=1e-9)
        np.testing.assert_allclose(opt.export_kwh - opt.import_kwh, net_kwh.sum(axis=1), atol=1e-9)


def test_generators_without_batteries_equal_sum_of_step_optima() -> None:
    """ieee39: the per-step QP of step_optimum (centralised P2P, solve_centralized) on 6 steps."""
    sc = cached_scenario("ieee39", days=1)
    t = np.arange(30, 36)
    net_kwh = (sc.pv_kw[t] - sc.load_kw[t]) * sc.dt_hours  # generators at zero: step_optimum frees them
    ref = step_optimum(sc, t, net_kwh)
    opt = episode_optimum(sc, 30, 6)
    assert opt.status == "optimal"
    np.testing.assert_allclose(opt.welfare_per_step, ref, rtol=1e-6)
    assert opt.export_kwh.max() < 1e-3  # generation never leaves the community (no prosumer surplus here)
    assert np.all(opt.gen_kw <= sc.gen_max_kw + 1e-6)


# ------------------------------------------------------------------------------------ 2. hand-worked cases
def test_hand_worked_battery_arbitrage() -> None:
    # Two agents, four 30-minute steps (Δt = 0.5 h), η = 0.9. Agent 0: load 1 kW, battery 2 kWh / 2 kW starting
    # at half charge (1 kWh). Agent 1: PV 3 kW in step 0, load 1 kW in steps 2 and 3.
    # retail = [0.2, 0.2, 0.5, 0.3], feed-in 0.05.
    # Value of one stored kWh: step 3 discharge is not power-limited, so it is worth 0.9 · 0.3 = 0.27; step 2
    # discharge is (2 kW · 0.5 h = 1 kWh out = the whole need), worth 0.9 · 0.5 = 0.45 > 0.27, so it saturates.
    # Charging costs 0.05/0.9 = 0.056 per stored kWh in step 0 (surplus) and 0.2/0.9 = 0.222 in step 1, both
    # < 0.27: step 0 charges 2 kW (power limit; exactly the 1 kWh surplus): soc 1 + 0.9 = 1.9; step 1 fills to
    # capacity: 0.1 kWh stored = 0.1111 kWh bought (0.2222 kW); step 2 discharges 2 kW: soc 2 − 1/0.9 = 0.8889;
    # step 3 empties it: 0.8889 · 0.9 = 0.8 kWh out (1.6 kW), the free terminal state of charge is 0.
    # Welfare: step 0: export 0 → 0; step 1: import 0.5 + 0.1111 → −0.122222; step 2: 0; step 3: import
    # 1 − 0.8 = 0.2 → −0.06. W* = −0.182222.
    # Reference (each agent alone, battery idle): step 0: −0.5·0.2 + 1.5·0.05 = −0.025; step 1: −0.1;
    # step 2: −1·0.5; step 3: −1·0.3. W_ref = −0.925.
    sc = _scenario(
        load=[[1, 0], [1, 0], [1, 1], [1, 1]],
        pv=[[0, 3], [0, 0], [0, 0], [0, 0]],
        retail=[0.2, 0.2, 0.5, 0.3],
        feed_in=0.05,
        battery_kwh=[2.0, 0.0],
        battery_kw=[2.0, 0.0],
        efficiency=0.9,
        step_minutes=30,
    )
    opt = episode_optimum(sc, 0, 4, initial_soc_kwh=0.5)
    assert opt.status == "optimal"
    np.testing.assert_allclose(opt.battery_kw[:, 0], [-2.0, -0.2 / 0.9, 2.0, 1.6], atol=1e-7)
    np.testing.assert_allclose(opt.battery_kw[:, 1], 0.0)
    np.testing.assert_allclose(opt.soc_kwh[:, 0], [1.0, 1.9, 2.0, 2.0 - 1 / 0.9, 0.0], atol=1e-7)
    np.testing.assert_allclose(opt.welfare_per_step, [0.0, -0.2 * (0.5 + 0.1 / 0.9), 0.0, -0.06], atol=1e-8)
    assert opt.welfare == pytest.approx(-0.2 * (0.5 + 0.1 / 0.9) - 0.06, abs=1e-8)
    assert opt.reference_welfare == pytest.approx(-0.925, abs=1e-12)
    np.testing.assert_allclose(opt.import_kwh, [0.0, 0.5 + 0.1 / 0.9, 0.0, 0.2], atol=1e-8)
    np.testing.assert_allclose(_replay(sc, opt), opt.soc_kwh, atol=1e-7)
    # an array initial state of charge in kWh is the same start
    again = episode_optimum(sc, 0, 4, initial_soc_kwh=np.array([1.0, 0.0]))
    assert again.welfare == pytest.approx(opt.welfare, abs=1e-9)


def test_hand_worked_generator_does_not_export() -> None:
    # One 1-hour step. Agent 0: generator, 20 kW, cost ½·0.002·g² + 0.01·g (g in kWh); agent 1: load 10 kW;
    # agent 2: PV surplus 3 kW. retail 0.3, feed-in 0.05.
    # Marginal cost 0.01 + 0.002 g ≤ 0.03 up to g = 10 < feed-in 0.05: generating pays even for export, but
    # the generator sells only to peers, so the grid buys at most agent 2's own 3 kWh: g = 10 (agent 1's need),
    # export 3. W* = 0.05·3 − (½·0.002·100 + 0.01·10) = 0.15 − 0.2 = −0.05 (exporting generation freely would
    # give g = 20, export 13, W = 0.65 − 0.6 = +0.05). W_ref = −0.3·10 + 0.05·3 = −2.85.
    sc = _scenario(
        load=[[0, 10, 0]],
        pv=[[0, 0, 3]],
        retail=[0.3],
        feed_in=[0.05],
        gen_max_kw=np.array([20.0, 0, 0]),
        gen_cost_a=np.array([0.002, 0, 0]),
        gen_cost_b=np.array([0.01, 0, 0]),
    )
    opt = episode_optimum(sc, 0, 1)
    assert opt.status == "optimal"
    assert opt.gen_kw[0, 0] == pytest.approx(10.0, abs=1e-4)
    assert opt.export_kwh[0] == pytest.approx(3.0, abs=1e-4)
    assert opt.welfare == pytest.approx(-0.05, abs=1e-6)
    assert opt.reference_welfare == pytest.approx(-2.85, abs=1e-12)
    assert opt.welfare == pytest.approx(step_optimum(sc, 0, np.array([0.0, -10.0, 3.0])), abs=1e-5)


# ------------------------------------------------------------------------------------ 3. linprog oracle
def _random_instance(rng: np.random.Generator) -> tuple[Scenario, np.ndarray]:
    n, k = int(rng.integers(2, 5)), int(rng.integers(4, 9))
    step = int(rng.choice([15, 30, 60]))
    load = rng.uniform(0.0, 3.0, (k, n))
    pv = rng.uniform(0.0, 4.0, (k, n)) * (rng.random((k, n)) < 0.6)
    retail = rng.uniform(0.1, 0.5, k)
    feed_in = retail * rng.uniform(0.0, 0.9, k)
    cap = rng.uniform(1.0, 8.0, n) * (rng.random(n) < 0.7)
    cap[0] = max(cap[0], 2.0)  # at least one battery
    power = cap * rng.uniform(0.2, 1.0, n)
    sc = _scenario(
        load, pv, retail, feed_in, battery_kwh=cap, battery_kw=power,
        efficiency=float(rng.uniform(0.8, 1.0)), step_minutes=step,
    )  # fmt: skip
    return sc, cap * rng.uniform(0.0, 1.0, n)


def _linprog_welfare(sc: Scenario, soc0: np.ndarray) -> float:
    """The same LP with plain matrices: x = [c (K·B), d (K·B), soc_1..K (K·B), E (K), I (K)]."""
    k, dt, eta = sc.n_steps, sc.dt_hours, sc.battery_efficiency
    bat = np.flatnonzero(sc.battery_kwh > 0)
    nb = bat.size
    nv = 3 * k * nb + 2 * k

    def c(t: int, j: int) -> int:
        return t * nb + j

    def d(t: int, j: int) -> int:
        return k * nb + t * nb + j

    def s(t: int, j: int) -> int:  # state of charge after step t
        return 2 * k * nb + t * nb + j

    def e(t: int) -> int:
        return 3 * k * nb + t

    def i(t: int) -> int:
        return 3 * k * nb + k + t

    cost = np.zeros(nv)
    bounds: list[tuple[float, float | None]] = [(0.0, None)] * nv
    a_eq, b_eq = [], []
    for t in range(k):
        cost[e(t)] = -sc.feed_in_price[t]
        cost[i(t)] = sc.retail_price[t]
        balance = np.zeros(nv)
        balance[e(t)], balance[i(t)] = -1.0, 1.0
        for j, n in enumerate(bat):
            bounds[c(t, j)] = bounds[d(t, j)] = (0.0, float(sc.battery_kw[n]))
            bounds[s(t, j)] = (0.0, float(sc.battery_kwh[n]))
            row = np.zeros(nv)  # soc_{t+1} − soc_t − η c Δt + d Δt / η = 0
            row[s(t, j)] = 1.0
            row[c(t, j)] = -eta * dt
            row[d(t, j)] = dt / eta
            if t > 0:
                row[s(t - 1, j)] = -1.0
            a_eq.append(row)
            b_eq.append(soc0[n] if t == 0 else 0.0)
            balance[d(t, j)], balance[c(t, j)] = dt, -dt
        a_eq.append(balance)
        b_eq.append(-float((sc.pv_kw[t] - sc.load_kw[t]).sum()) * dt)
    res = linprog(cost, A_eq=np.array(a_eq), b_eq=np.array(b_eq), bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return float(-res.fun)


@pytest.mark.parametrize("seed", range(8))
def test_matches_an_independent_linprog_formulation(seed: int) -> None:
    sc, soc0 = _random_instance(np.random.default_rng(seed))
    opt = episode_optimum(sc, 0, sc.n_steps, initial_soc_kwh=soc0)
    assert opt.status == "optimal"
    assert opt.welfare == pytest.approx(_linprog_welfare(sc, soc0), abs=1e-6)
    np.testing.assert_allclose(_replay(sc, opt), opt.soc_kwh, atol=1e-6)
    assert opt.welfare >= opt.reference_welfare - 1e-9


def test_clarabel_agrees_with_highs() -> None:
    sc, soc0 = _random_instance(np.random.default_rng(42))
    w = [episode_optimum(sc, 0, sc.n_steps, soc0, solver=s).welfare for s in ("HIGHS", "CLARABEL")]
    assert w[0] == pytest.approx(w[1], abs=1e-6)


# ------------------------------------------------------------------------------------ 4. dynamic programming
def _dp_welfare(sc: Scenario, soc0: float, grid_points: int, valued: bool = False) -> tuple[float, float]:
    """Backward DP over a state-of-charge grid of agent 0's battery; returns (welfare, grid spacing kWh). With
    ``valued`` the value after the last step is minus the terminal cost: a deficit bought back at the last retail
    price at the battery's terminals (÷ η), a surplus sold at the last feed-in (× η), written out here."""
    cap, p_max, eta, dt = (
        float(sc.battery_kwh[0]),
        float(sc.battery_kw[0]),
        sc.battery_efficiency,
        sc.dt_hours,
    )
    grid = np.linspace(0.0, cap, grid_points)
    delta = grid[None, :] - grid[:, None]  # [from, to] change of the state of charge
    power = np.where(delta > 0, -delta / (eta * dt), -delta * eta / dt)  # kW, positive = discharge
    ok = np.abs(power) <= p_max + 1e-12
    value = np.zeros(grid_points)
    if valued:
        change = grid - soc0
        value = np.where(change < 0, change / eta * sc.retail_price[-1], change * eta * sc.feed_in_price[-1])
    for t in reversed(range(sc.n_steps)):
        net = (float((sc.pv_kw[t] - sc.load_kw[t]).sum()) + power) * dt
        stage = sc.feed_in_price[t] * np.maximum(net, 0) - sc.retail_price[t] * np.maximum(-net, 0)
        value = np.where(ok, stage + value[None, :], -np.inf).max(axis=1)
    start = int(np.argmin(np.abs(grid - soc0)))
    assert grid[start] == pytest.approx(soc0)
    return float(value[start]), float(grid[1] - grid[0])


def _dp_instance(seed: int, k: int = 5) -> Scenario:
    """Two agents, ``k`` one-hour steps: agent 0 has a 4 kWh / 2 kW battery (η = 0.92) and a load, agent 1 PV and a
    load; random prices."""
    rng = np.random.default_rng(seed)
    return _scenario(
        load=np.column_stack([rng.uniform(0.5, 3.0, k), rng.uniform(0.0, 2.0, k)]),
        pv=np.column_stack([np.zeros(k), rng.uniform(0.0, 5.0, k)]),
        retail=rng.uniform(0.1, 0.5, k),
        feed_in=rng.uniform(0.0, 0.1, k),
        battery_kwh=[4.0, 0.0],
        battery_kw=[2.0, 0.0],
        efficiency=0.92,
        step_minutes=60,
    )


@pytest.mark.parametrize("seed", range(3))
def test_matches_dynamic_programming_on_a_soc_grid(seed: int) -> None:
    sc = _dp_instance(100 + seed)
    k = sc.n_steps
    opt = episode_optimum(sc, 0, k, initial_soc_kwh=0.5)
    dp, h = _dp_welfare(sc, 2.0, 1601)
    # The DP is restricted to the grid (dp ≤ W*); rounding the optimal path to the grid moves each of the k
    # states by ≤ h, changing two steps' grid energy by ≤ h/η each.
    assert dp <= opt.welfare + 1e-9
    assert opt.welfare - dp <= 2 * k * sc.retail_price.max() * h / 0.92


@pytest.mark.parametrize("seed", range(3))
def test_terminal_value_matches_dynamic_programming(seed: int) -> None:
    """``terminal_value="valued"``: the DP closes the horizon with the terminal value written out by hand; the
    optimum's welfare (its last step carrying the value) matches it within the grid error, never exceeds the free
    optimum, and ending emptier than the start no longer pays at flat prices."""
    sc = _dp_instance(200 + seed)
    k = sc.n_steps
    opt = episode_optimum(sc, 0, k, initial_soc_kwh=0.5, terminal_value="valued")
    free = episode_optimum(sc, 0, k, initial_soc_kwh=0.5)
    assert opt.terminal_value == "valued" and free.terminal_value == "free"
    dp, h = _dp_welfare(sc, 2.0, 1601, valued=True)
    assert dp <= opt.welfare + 1e-9
    assert opt.welfare - dp <= 2 * (k + 1) * sc.retail_price.max() * h / 0.92
    assert opt.welfare <= free.welfare + 1e-9
    # flat prices, a load to cover: the free optimum empties the battery, the valued one keeps its charge
    flat = sc.replace(retail_price=np.full(k, 0.3), feed_in_price=np.full(k, 0.05))
    assert episode_optimum(flat, 0, k, 0.5).soc_kwh[-1, 0] == pytest.approx(0.0, abs=1e-7)
    kept = episode_optimum(flat, 0, k, 0.5, terminal_value="valued")
    assert kept.soc_kwh[-1, 0] == pytest.approx(2.0, abs=1e-7)


def test_terminal_value_rejects_unknown_names() -> None:
    sc = _scenario(load=np.ones((2, 1)), pv=np.zeros((2, 1)), retail=0.3, feed_in=0.05)
    with pytest.raises(OptimError, match="terminal_value"):
        episode_optimum(sc, 0, 2, terminal_value="neutral")


# ------------------------------------------------------------------------------------ 5. line limits
def _rated(base: Scenario, limit_kw: float) -> Scenario:
    """``base`` (on ``tiny``'s 4-bus feeder) with its first line — every agent is downstream of it — rated to carry
    ``limit_kw`` (the linear model's |s·p| at the mean sensitivity, over the no-load current)."""
    from p2p_gym.grid import GridModel

    sens = GridModel(base, "linear").sensitivities
    s, i0 = sens["line_current_ka_per_kw"][0], sens["line_current_ka"][0]
    net = copy.deepcopy(base.net)
    net.line.loc[net.line.index[0], "max_i_ka"] = float(np.hypot(limit_kw * np.abs(s).mean(), i0))
    return base.replace(net=net)


def _lined(limit_kw: float | None, load_kw: float = 1.0) -> Scenario:
    """``tiny``'s 4-bus feeder; 2 one-hour steps, retail 0.1 then 0.5, feed-in 0; every agent loads
    ``load_kw``; agent 1 has an empty 10 kWh / 5 kW battery. The first line (every agent is downstream of it)
    carries at most ``limit_kw`` (None: its original rating)."""
    tiny = cached_scenario("tiny")
    base = _scenario(
        load=np.full((2, 4), load_kw),
        pv=np.zeros((2, 4)),
        retail=[0.1, 0.5],
        feed_in=[0.0, 0.0],
        battery_kwh=[0, 10.0, 0, 0],
        battery_kw=[0, 5.0, 0, 0],
        net=tiny.net,
        bus=tiny.bus,
    )
    return base if limit_kw is None else _rated(base, limit_kw)


def test_binding_line_limits_lower_welfare() -> None:
    # Without limits the battery buys 4/0.95² kWh at 0.1 to cover the 4 kWh need at 0.5: import 4 + 4.43 kW at
    # step 0. A 6 kW line leaves 2 kW for charging, so welfare falls.
    free = episode_optimum(_lined(None), 0, 2, initial_soc_kwh=0.0)
    assert free.battery_kw[0, 1] == pytest.approx(-4 / 0.95**2, abs=1e-6)
    limited_sc = _lined(6.0)
    limited = episode_optimum(limited_sc, 0, 2, initial_soc_kwh=0.0, line_limits=True)
    assert limited.status == "optimal" and limited.line_limits
    assert limited.welfare < free.welfare - 0.1
    assert limited.battery_kw[0, 1] == pytest.approx(-2.0, abs=0.05)
    # the environment's linear check of the limited schedule: the first line at its limit (to the solver's
    # tolerance), none above
    from p2p_gym.grid import GridModel

    injection = -limited_sc.load_kw[:2] + limited.battery_kw
    loading = GridModel(limited_sc, "linear").check_batch(injection).line_loading_pct
    assert loading.max() <= 100.0 + 1e-6
    assert loading[0, 0] == pytest.approx(100.0, abs=1e-4)
    # without line_limits the limited scenario reaches the free optimum again
    assert episode_optimum(limited_sc, 0, 2, 0.0).welfare == pytest.approx(free.welfare, abs=1e-9)


def test_infeasible_line_limits_are_a_status_not_an_exception() -> None:
    # 4 kW of inflexible load at step 0, an empty battery, a 3 kW line: nothing can relieve it.
    opt = episode_optimum(_lined(3.0), 0, 2, initial_soc_kwh=0.0, line_limits=True)
    assert opt.status == "infeasible"
    assert np.isnan(opt.welfare) and np.isnan(opt.welfare_per_step).all()
    assert np.isfinite(opt.reference_welfare)
    assert episode_efficiency(-1.0, opt) is None


def test_no_load_current_above_the_rating_is_infeasible() -> None:
    sc = _lined(None)
    net = copy.deepcopy(sc.net)
    net.line["max_i_ka"] = 1e-9  # below the cable's charging current
    opt = episode_optimum(sc.replace(net=net), 0, 2, line_limits=True)
    assert opt.status == "infeasible"


# ------------------------------------------------------------------------------------ 6. efficiency
def test_idle_batteries_score_below_one(default_scenario: Scenario) -> None:
    sc = default_scenario
    assert sc.battery_kwh.sum() > 0
    t0 = 150 * 96
    opt = episode_optimum(sc, t0, 96, initial_soc_kwh=0.5)
    t = np.arange(t0, t0 + 96)
    idle = float(step_optimum(sc, t, (sc.pv_kw[t] - sc.load_kw[t]) * sc.dt_hours).sum())  # full netting
    eff = episode_efficiency(idle, opt)
    assert eff is not None and 0.0 < eff < 0.99
    assert episode_efficiency(opt.welfare, opt) == pytest.approx(1.0)
    assert episode_efficiency(opt.reference_welfare, opt) == pytest.approx(0.0)
    np.testing.assert_allclose(_replay(sc, opt), opt.soc_kwh, atol=1e-6)


def test_nothing_to_gain_gives_none() -> None:
    sc = _scenario(load=[[1.0], [2.0]], pv=[[0.0], [0.0]], retail=[0.3, 0.3], feed_in=[0.1, 0.1])
    opt = episode_optimum(sc, 0, 2)
    assert opt.welfare == pytest.approx(opt.reference_welfare)
    assert episode_efficiency(opt.welfare, opt) is None


# ------------------------------------------------------------------------------------ 7. bad arguments
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"t0": -1}, "t0"),
        ({"t0": 96 * 7}, "t0"),
        ({"t0": 1.5}, "t0"),
        ({"steps": 0}, "steps"),
        ({"t0": 96 * 7 - 10, "steps": 11}, "steps"),
        ({"steps": True}, "steps"),
        ({"initial_soc_kwh": 1.5}, "initial_soc_kwh"),
        ({"initial_soc_kwh": -0.1}, "initial_soc_kwh"),
        ({"initial_soc_kwh": np.zeros(3)}, "initial_soc_kwh"),
        ({"initial_soc_kwh": np.array([0.0, -1.0, 0.0, 0.0])}, "initial_soc_kwh"),
        ({"initial_soc_kwh": np.array([0.0, 6.0, 0.0, 0.0])}, "initial_soc_kwh"),
        ({"initial_soc_kwh": "half"}, "initial_soc_kwh"),
        ({"initial_soc_kwh": float("nan")}, "initial_soc_kwh"),
        ({"initial_soc_kwh": np.array([0.0, np.nan, 0.0, 0.0])}, "initial_soc_kwh"),
        ({"steps": 2.0}, "steps"),
        ({"t0": np.int64(-3)}, "t0"),
        ({"line_limits": "yes"}, "line_limits"),
        ({"solver": "NOT_A_SOLVER"}, "solver"),
    ],
)
def test_bad_arguments_raise_clear_errors(tiny: Scenario, kwargs: dict, field: str) -> None:
    args = {"t0": 0, "steps": 4, **kwargs}
    with pytest.raises(OptimError, match=rf"^{field}: ") as info:
        episode_optimum(tiny, **args)
    assert isinstance(info.value, P2PGymError) and isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------ 8. unchanged without new assets
def test_results_without_flexible_assets_are_unchanged(default_scenario: Scenario) -> None:
    """The values the model gave before EVs, heat pumps, curtailment, flexible demand and battery wear were added
    (same HiGHS/Clarabel problem: identical to the solver's last digits)."""
    sc = default_scenario
    assert not sc.has_flexible_assets
    for t0, welfare, reference in [
        (150 * 96, -10.86981538758312, -30.02560694858974),
        (10 * 96, -87.47495643308316, -94.34094590676739),
    ]:
        opt = episode_optimum(sc, t0, 96)
        assert opt.welfare == pytest.approx(welfare, rel=1e-9)
        assert opt.reference_welfare == pytest.approx(reference, rel=1e-12)
        np.testing.assert_array_equal(opt.pv_used_kw, sc.pv_kw[t0 : t0 + 96])
        for extra in (opt.ev_kw, opt.hp_kw, opt.flex_kwh):
            np.testing.assert_array_equal(extra, 0.0)
    ieee = episode_optimum(cached_scenario("ieee39", days=1), 30, 6)
    assert ieee.welfare == pytest.approx(-5392.905925060693, rel=1e-9)


def test_inflexible_assets_equal_the_same_load(default_scenario: Scenario) -> None:
    # A heat pump without band and an EV session that needs max_kw at every plugged step cannot move: the optimum
    # and the reference equal those of the scenario with that consumption added to the load.
    sc, t0, k = default_scenario, 150 * 96, 96
    n, dt = sc.n_agents, sc.dt_hours
    hp_kw = np.zeros((sc.n_steps, n))
    hp_kw[:, 3] = 1.5 + np.sin(np.arange(sc.n_steps) / 7.0)  # in [0.5, 2.5] kW
    sessions = [[2, t0 + 10, t0 + 30, 3.7 * 20 * dt, 3.7], [5, t0 + 80, t0 + 90, 11.0 * 10 * dt, 11.0]]
    flexible = sc.replace(
        hp_kw=hp_kw, hp_max_kw=np.where(np.arange(n) == 3, 3.0, 0.0), hp_band_kwh=np.zeros(n),
        ev_sessions=sessions,
    )  # fmt: skip
    load = sc.load_kw + hp_kw
    load[t0 + 10 : t0 + 30, 2] += 3.7
    load[t0 + 80 : t0 + 90, 5] += 11.0
    loaded = sc.replace(load_kw=load)
    a, b = episode_optimum(flexible, t0, k), episode_optimum(loaded, t0, k)
    assert a.welfare == pytest.approx(b.welfare, abs=1e-6)
    assert a.reference_welfare == pytest.approx(b.reference_welfare, abs=1e-9)
    np.testing.assert_allclose(a.ev_kw[10:30, 2], 3.7, atol=1e-7)
    np.testing.assert_allclose(a.hp_kw[:, 3], hp_kw[t0 : t0 + k, 3], atol=1e-12)


# ------------------------------------------------------------------------------------ 9. hand-worked flexible assets
def _ev_case(t0: int, steps: int) -> EpisodeOptimum:
    """One agent, five 1-hour steps, load 1 kW, retail [0.3, 0.4, 0.2, 0.1, 0.25], feed-in 0; one EV session
    plugged in at steps 1–4 (arrival 1, departure 5) needing 6 kWh at ≤ 3 kW."""
    sc = _scenario(
        load=np.ones((5, 1)), pv=np.zeros((5, 1)), retail=[0.3, 0.4, 0.2, 0.1, 0.25], feed_in=0.0,
        ev_sessions=[[0, 1, 5, 6.0, 3.0]],
    )  # fmt: skip
    return episode_optimum(sc, t0, steps)


@pytest.mark.parametrize(
    ("t0", "steps", "ev_kw", "welfare", "reference"),
    [
        # Whole session: the cheapest plugged steps are 3 (0.1) and 2 (0.2), 3 kW each = 6 kWh:
        # e = [0, 0, 3, 3, 0]; W* = −(0.3·1 + 0.4·1 + 0.2·4 + 0.1·4 + 0.25·1) = −2.15.
        # Charge on arrival: e = [0, 3, 3, 0, 0]; W_ref = −(0.3 + 0.4·4 + 0.2·4 + 0.1 + 0.25) = −3.05.
        (0, 5, [0, 0, 3, 3, 0], -2.15, -3.05),
        # Cut by the window start (steps 2–4, 3 of the session's 4 steps): E' = 6·3/4 = 4.5 kWh;
        # e = [1.5, 3, 0] (step 3 full, the rest at 0.2); W* = −(0.2·2.5 + 0.1·4 + 0.25) = −1.15.
        # On arrival from the window start: e = [3, 1.5, 0]; W_ref = −(0.2·4 + 0.1·2.5 + 0.25) = −1.3.
        (2, 3, [1.5, 3, 0], -1.15, -1.3),
        # Cut by the window end (steps 0–2, 2 of 4): E' = 3 kWh at the cheaper step 2: e = [0, 0, 3];
        # W* = −(0.3 + 0.4 + 0.2·4) = −1.5; on arrival e = [0, 3, 0]: W_ref = −(0.3 + 0.4·4 + 0.2) = −2.1.
        (0, 3, [0, 0, 3], -1.5, -2.1),
        # Cut at both ends (steps 2–3, 2 of 4): E' = 3 kWh at step 3: W* = −(0.2 + 0.1·4) = −0.6;
        # on arrival at step 2: W_ref = −(0.2·4 + 0.1) = −0.9.
        (2, 2, [0, 3], -0.6, -0.9),
    ],
)
def test_hand_worked_ev_session(
    t0: int, steps: int, ev_kw: list[float], welfare: float, reference: float
) -> None:
    opt = _ev_case(t0, steps)
    assert opt.status == "optimal"
    np.testing.assert_allclose(opt.ev_kw[:, 0], ev_kw, atol=1e-7)
    assert opt.welfare == pytest.approx(welfare, abs=1e-8)
    assert opt.reference_welfare == pytest.approx(reference, abs=1e-12)
    np.testing.assert_allclose(opt.import_kwh, 1.0 + np.asarray(ev_kw), atol=1e-7)


def test_hand_worked_heat_pump_preheats() -> None:
    # One agent, four 1-hour steps, heat pump reference r = 1 kW, rating 2 kW, band 0.5 kWh; retail
    # p = [0.25, 0.2, 0.5, 0.3], feed-in 0, nothing else. With h_t = 1 + D_{t+1} − D_t (D_0 = 0), summation by parts
    # gives the cost Σ p_t h_t = Σ p_t + D_1 (p_0 − p_1) + D_2 (p_1 − p_2) + D_3 (p_2 − p_3) + p_3 D_4
    #   = 1.25 + 0.05 D_1 − 0.3 D_2 + 0.2 D_3 + 0.3 D_4,
    # and each D_t ranges over [−0.5, 0.5] independently (|D_{t+1} − D_t| ≤ 1 keeps h in [0, 2]). So
    # D = (−0.5, 0.5, −0.5, −0.5): defer 0.5 kWh at step 0, pre-heat 1 kWh at the cheapest step 1 before the
    # expensive step 2, which the heat pump skips, and end the window deferred (terminal D free within the band):
    # h = [0.5, 2, 0, 1], cost 1.25 − 0.025 − 0.15 − 0.1 − 0.15 = 0.825. W* = −0.825; W_ref = −1.25 (h = r).
    sc = _scenario(
        load=np.zeros((4, 1)), pv=np.zeros((4, 1)), retail=[0.25, 0.2, 0.5, 0.3], feed_in=0.0,
        hp_kw=np.ones((4, 1)), hp_max_kw=[2.0], hp_band_kwh=[0.5],
    )  # fmt: skip
    opt = episode_optimum(sc, 0, 4)
    assert opt.status == "optimal"
    np.testing.assert_allclose(opt.hp_kw[:, 0], [0.5, 2.0, 0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(np.cumsum(opt.hp_kw[:, 0] - 1.0), [-0.5, 0.5, -0.5, -0.5], atol=1e-7)
    assert opt.welfare == pytest.approx(-0.825, abs=1e-8)
    assert opt.reference_welfare == pytest.approx(-1.25, abs=1e-12)
    np.testing.assert_allclose(opt.welfare_per_step, [-0.125, -0.4, 0.0, -0.3], atol=1e-8)
    # Valued terminal deviation: D_4 < 0 is bought back at r_T = 0.3, cancelling its coefficient 0.3 D_4, and
    # D_4 > 0 earns feed-in 0: the cost is 1.25 − 0.025 − 0.15 − 0.1 + max(0.3 D_4, 0) = 0.975 for D_4 ≤ 0.
    valued = episode_optimum(sc, 0, 4, terminal_value="valued")
    assert valued.welfare == pytest.approx(-0.975, abs=1e-8)
    assert np.sum(valued.hp_kw[:, 0] - 1.0) <= 1e-7


def test_pv_curtailment_relieves_an_export_limited_line() -> None:
    # tiny's feeder, 2 one-hour steps: agent 0 has 10 kW of PV, every agent loads 1 kW: 6 kW flow out through the
    # first line. Feed-in 0.05, retail 0.3. Without limits: export 6 kWh per step, W = 2 · 0.3 = 0.6. A 4 kW
    # line: ≈ 2 kW of PV is curtailed (the only flexibility), export ≈ 4 kWh, W ≈ 0.4. PV that may not be
    # curtailed cannot meet the limit: infeasible.
    tiny = cached_scenario("tiny")
    pv = np.zeros((2, 4))
    pv[:, 0] = 10.0
    base = _scenario(
        load=np.ones((2, 4)), pv=pv, retail=[0.3, 0.3], feed_in=[0.05, 0.05], net=tiny.net, bus=tiny.bus
    )
    free = episode_optimum(base, 0, 2)
    assert free.welfare == pytest.approx(0.6, abs=1e-9)
    np.testing.assert_array_equal(free.pv_used_kw, pv)  # never curtailed without line limits
    sc = _rated(base, 4.0)
    limited = episode_optimum(sc, 0, 2, line_limits=True)
    assert limited.status == "optimal"
    assert limited.welfare < free.welfare - 0.15
    np.testing.assert_allclose(limited.pv_used_kw[:, 0], 8.0, atol=0.05)
    np.testing.assert_array_equal(limited.pv_used_kw[:, 1:], 0.0)
    assert limited.welfare == pytest.approx(0.05 * limited.export_kwh.sum(), abs=1e-12)
    from p2p_gym.grid import GridModel

    loading = GridModel(sc, "linear").check_batch(limited.pv_used_kw - sc.load_kw).line_loading_pct
    assert loading.max() <= 100.0 + 1e-6
    assert loading[:, 0] == pytest.approx(100.0, abs=1e-4)  # curtailed exactly to the limit
    stuck = episode_optimum(sc.replace(pv_curtailable=False), 0, 2, line_limits=True)
    assert stuck.status == "infeasible"


@pytest.mark.parametrize("a", [0.2, 0.0])
def test_flexible_demand_consumes_where_marginal_utility_meets_the_price(a: float) -> None:
    # One agent, five 1-hour steps, load 5 kW (it always imports at retail, whatever it adds), except step 4 with
    # 10 kW of PV (a surplus: the marginal kWh is worth the feed-in 0.05). Utility b q − ½ a q², b = 0.4,
    # q ≤ 1.6 kWh. Marginal utility = price: q = clip((b − price)/a, 0, 1.6) with price =
    # [0.1, 0.2, 0.3, 0.45 (retail), 0.05 (feed-in)]: [1.5, 1.0, 0.5, 0, 1.6]; with a = 0, q = 1.6 where b > price.
    retail = np.array([0.1, 0.2, 0.3, 0.45, 0.3])
    price = np.r_[retail[:4], 0.05]
    sc = _scenario(
        load=np.full((5, 1), 5.0), pv=[[0.0], [0.0], [0.0], [0.0], [10.0]], retail=retail, feed_in=0.05,
        flex_max_kw=[1.6], flex_util_a=[a], flex_util_b=[0.4],
    )  # fmt: skip
    opt = episode_optimum(sc, 0, 5)
    assert opt.status == "optimal"
    q = np.clip((0.4 - price) / a, 0.0, 1.6) if a > 0 else np.where(0.4 > price, 1.6, 0.0)
    np.testing.assert_allclose(opt.flex_kwh[:, 0], q, atol=1e-6)
    energy = np.array([5.0, 5.0, 5.0, 5.0, -5.0]) + q  # kWh bought (negative: sold)
    welfare = -retail * np.maximum(energy, 0) + 0.05 * np.maximum(-energy, 0) + 0.4 * q - 0.5 * a * q**2
    np.testing.assert_allclose(opt.welfare_per_step, welfare, atol=1e-7)
    assert opt.welfare == pytest.approx(opt.welfare_per_step.sum(), abs=1e-12)
    assert opt.reference_welfare == pytest.approx(-(retail[:4] * 5).sum() + 0.05 * 5, abs=1e-12)


def test_generator_export_bound_with_a_heat_pump() -> None:
    # Two 1-hour steps. Agent 0: generator 20 kW at 0.01 /kWh; agent 1: heat pump, reference 10 kW, rating 20 kW,
    # band 5 kWh; agent 2: 3 kW of PV surplus. retail 0.3, feed-in 0.05. The generator (0.01 < every price)
    # covers the heat pump, which ends the window 5 kWh deferred (Σh = 15); agent 1 never has a surplus (its net
    # is in [−20, 0]: the secant of the no-export rule is 0, exact), so the grid buys only agent 2's 3 kWh per
    # step. W* = 2·3·0.05 − 0.01·15 = 0.15 (exporting generation would give 0.05·(20 + 3 − h) per step).
    sc = _scenario(
        load=np.zeros((2, 3)), pv=[[0, 0, 3.0], [0, 0, 3.0]], retail=[0.3, 0.3], feed_in=[0.05, 0.05],
        hp_kw=[[0, 10.0, 0], [0, 10.0, 0]], hp_max_kw=[0, 20.0, 0], hp_band_kwh=[0, 5.0, 0],
        gen_max_kw=np.array([20.0, 0, 0]), gen_cost_a=np.zeros(3), gen_cost_b=np.array([0.01, 0, 0]),
    )  # fmt: skip
    opt = episode_optimum(sc, 0, 2)
    assert opt.status == "optimal"
    assert opt.welfare == pytest.approx(0.15, abs=1e-7)
    np.testing.assert_allclose(opt.export_kwh, 3.0, atol=1e-7)
    np.testing.assert_allclose(opt.gen_kw[:, 0], opt.hp_kw[:, 1], atol=1e-7)
    assert opt.hp_kw[:, 1].sum() == pytest.approx(15.0, abs=1e-7)
    assert opt.reference_welfare == pytest.approx(2 * (3 * 0.05 - 10 * 0.3), abs=1e-12)


# ------------------------------------------------------------------------------------ 10. linprog oracle, all assets
def _window_sessions(sc: Scenario, t0: int, k: int) -> list[tuple[int, int, int, float, float]]:
    """(agent, first, stop, energy, max_kw) of each session cut to [t0, t0 + k), steps relative to t0, with the
    pro-rata energy of the documented rule (energy × window steps / session steps), by a plain loop."""
    out = []
    for agent, arrive, depart, energy, max_kw in sc.ev_sessions:
        first, stop = max(int(arrive), t0), min(int(depart), t0 + k)
        if first < stop:
            share = (stop - first) / (int(depart) - int(arrive))
            out.append((int(agent), first - t0, stop - t0, float(energy) * share, float(max_kw)))
    return out


def _flex_instance(
    rng: np.random.Generator, lines: bool, loaded: bool = False
) -> tuple[Scenario, int, int, np.ndarray]:
    """A random instance on tiny's 4-bus feeder with batteries (with wear), EV sessions (some cut by the window),
    heat pumps (some without band), linear flexible demand and PV (curtailable or not); with ``lines``, three
    times the PV and the first line rated below the largest export (and above the largest import); with
    ``loaded`` (after the rating) also a fixed non-agent load at the second bus and a background element at the
    last one (``background_kw`` in ±4 kW), so that the lines carry active base currents."""
    tiny = cached_scenario("tiny")
    n, k = 4, int(rng.integers(4, 8))
    t0, t_all = int(rng.integers(0, 3)), k + 4
    step = int(rng.choice([15, 30, 60]))
    dt = step / 60
    load = rng.uniform(0.0, 2.0, (t_all, n))
    pv = rng.uniform(0.0, 6.0, (t_all, n)) * (rng.random((t_all, n)) < 0.6) * (3.0 if lines else 1.0)
    retail = rng.uniform(0.1, 0.5, t_all)
    feed_in = retail * rng.uniform(0.0, 0.9, t_all)
    cap = rng.uniform(1.0, 6.0, n) * (rng.random(n) < 0.6)
    hp_max = rng.uniform(1.0, 3.0, n) * (rng.random(n) < 0.6)
    hp_kw = rng.uniform(0.0, 1.0, (t_all, n)) * hp_max
    band = rng.uniform(0.0, 2.0, n) * (rng.random(n) < 0.8)
    sessions = []
    for agent in range(n):
        t = int(rng.integers(0, 4))
        while t < t_all - 1 and rng.random() < 0.8:
            depart = int(rng.integers(t + 1, min(t + 6, t_all) + 1))
            p = float(rng.uniform(2.0, 11.0))
            sessions.append([agent, t, depart, float(rng.uniform(0, 1)) * p * (depart - t) * dt, p])
            t = depart + int(rng.integers(0, 3))
    sc = _scenario(
        load, pv, retail, feed_in, battery_kwh=cap, battery_kw=cap * rng.uniform(0.3, 1.0, n),
        efficiency=float(rng.uniform(0.85, 1.0)), step_minutes=step, net=tiny.net, bus=tiny.bus,
        battery_cost=rng.uniform(0.0, 0.05, n), hp_kw=hp_kw, hp_max_kw=hp_max, hp_band_kwh=band,
        ev_sessions=np.array(sessions).reshape(-1, 5), flex_max_kw=rng.uniform(0, 2, n) * (rng.random(n) < 0.5),
        flex_util_b=rng.uniform(0.0, 0.6, n), pv_curtailable=bool(rng.random() < 0.75),
    )  # fmt: skip
    if lines:
        net = (pv - load - hp_kw)[t0 : t0 + k].sum(axis=1)
        sc = _rated(sc, max(float(rng.uniform(0.3, 0.8)) * net.max(), 1.2 * -net.min(), 1.0))
    if loaded:
        sc = _with_base_flows(sc, float(rng.uniform(-4.0, 4.0)), rng.uniform(-4.0, 4.0, (t_all, 1)))
    return sc, t0, k, cap * rng.uniform(0.0, 1.0, n)


def _with_base_flows(sc: Scenario, load_kw: float, background_kw: np.ndarray) -> Scenario:
    """``sc`` (on tiny's feeder) with a fixed non-agent load of ``load_kw`` (negative: a generator) at the second
    bus and a background element ``bg0`` at the last bus with the series ``background_kw`` float[T, 1]."""
    import pandapower as pp

    net = copy.deepcopy(sc.net)
    pp.create_load(net, 3, p_mw=load_kw / 1000.0, q_mvar=0.0)
    pp.create_sgen(net, 5, p_mw=0.0, name="bg0")
    return sc.replace(net=net, background_ids=("bg0",), background_kw=background_kw)


def _linprog_flex(sc: Scenario, t0: int, k: int, soc0: np.ndarray, lines: bool) -> tuple[int, float]:
    """The LP of every asset with plain matrices; every agent has every variable (bounds 0 where absent):
    per step and agent c, d, soc (after the step), e (EV), h (heat pump), D (deviation after the step), f
    (flexible demand, kWh), r (curtailment, also without line limits); per step E, I. Returns (status, W*)."""
    n, dt, eta = sc.n_agents, sc.dt_hours, sc.battery_efficiency
    w = slice(t0, t0 + k)
    pv, load, ref = sc.pv_kw[w], sc.load_kw[w], sc.hp_kw[w]
    kinds = ["c", "d", "soc", "e", "h", "D", "f", "r"]
    size = k * n

    def v(kind: str, t: int, i: int) -> int:
        return kinds.index(kind) * size + t * n + i

    e_at, i_at = len(kinds) * size, len(kinds) * size + k
    nv = i_at + k
    lo, hi = np.zeros(nv), np.full(nv, np.inf)
    cost = np.zeros(nv)
    ev_max = np.zeros((k, n))
    sessions = _window_sessions(sc, t0, k)
    for agent, first, stop, _, p in sessions:
        ev_max[first:stop, agent] = p
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    inj = np.zeros((k, n, nv))  # injection of agent i at step t as a linear function of x (plus the constant)
    for t in range(k):
        cost[e_at + t], cost[i_at + t] = -sc.feed_in_price[t0 + t], sc.retail_price[t0 + t]
        balance = np.zeros(nv)
        balance[e_at + t], balance[i_at + t] = -1.0, 1.0
        for i in range(n):
            has_bat = sc.battery_kwh[i] > 0 and sc.battery_kw[i] > 0
            hi[v("c", t, i)] = hi[v("d", t, i)] = sc.battery_kw[i] if has_bat else 0.0
            hi[v("soc", t, i)] = sc.battery_kwh[i]
            hi[v("e", t, i)] = ev_max[t, i]
            hi[v("h", t, i)] = sc.hp_max_kw[i]
            lo[v("D", t, i)], hi[v("D", t, i)] = -sc.hp_band_kwh[i], sc.hp_band_kwh[i]
            hi[v("f", t, i)] = sc.flex_max_kw[i] * dt
            hi[v("r", t, i)] = pv[t, i] if sc.pv_curtailable else 0.0
            cost[v("c", t, i)] = cost[v("d", t, i)] = sc.battery_cost[i] * dt
            cost[v("f", t, i)] = -sc.flex_util_b[i]
            row = np.zeros(nv)  # soc_t − soc_{t−1} − η c Δt + d Δt / η = 0 (soc_{−1} = soc0)
            row[v("soc", t, i)], row[v("c", t, i)], row[v("d", t, i)] = 1.0, -eta * dt, dt / eta
            if t:
                row[v("soc", t - 1, i)] = -1.0
            a_eq.append(row)
            b_eq.append(soc0[i] if t == 0 and has_bat else 0.0)
            row = np.zeros(nv)  # D_t − D_{t−1} − h Δt = −ref Δt (D_{−1} = 0)
            row[v("D", t, i)], row[v("h", t, i)] = 1.0, -dt
            if t:
                row[v("D", t - 1, i)] = -1.0
            a_eq.append(row)
            b_eq.append(-ref[t, i] * dt)
            for kind, sign in (("d", 1.0), ("c", -1.0), ("e", -1.0), ("h", -1.0), ("r", -1.0)):
                inj[t, i, v(kind, t, i)] = sign
            inj[t, i, v("f", t, i)] = -1.0 / dt
            balance += inj[t, i] * dt
        a_eq.append(balance)
        b_eq.append(-float((pv[t] - load[t]).sum()) * dt)
    for agent, first, stop, energy, _ in sessions:
        row = np.zeros(nv)
        for t in range(first, stop):
            row[v("e", t, agent)] = dt
        a_eq.append(row)
        b_eq.append(energy)
    if lines:  # the model's check: √(I0² + (A0 + S_bg b_t + S p_t)²) ≤ I^max
        from p2p_gym.grid import GridModel

        model = GridModel(sc, "linear")
        sens = model.sensitivities
        s, i0, a0 = sens["line_current_ka_per_kw"], sens["line_current_ka"], sens["line_active_current_ka"]
        s_bg, bg = sens["line_current_ka_per_kw_background"], sc.background_kw[w]
        limit = model.max_i_ka * model.loading_limit_pct / 100.0
        for line in np.flatnonzero(model.max_i_ka > 0):
            f = np.sqrt(limit[line] ** 2 - i0[line] ** 2)
            for t in range(k):
                flow = s[line] @ inj[t]
                const = float(a0[line] + s_bg[line] @ bg[t] + s[line] @ (pv[t] - load[t]))
                a_ub += [flow, -flow]
                b_ub += [f - const, f + const]
    res = linprog(
        cost, A_ub=np.array(a_ub) if a_ub else None, b_ub=np.array(b_ub) if b_ub else None,
        A_eq=np.array(a_eq), b_eq=np.array(b_eq), bounds=list(zip(lo, hi)), method="highs",
    )  # fmt: skip
    return res.status, float(-res.fun) if res.status == 0 else float("nan")


@pytest.mark.parametrize("seed", range(10))
def test_flexible_assets_match_an_independent_linprog_formulation(seed: int) -> None:
    lines = seed % 2 == 1
    sc, t0, k, soc0 = _flex_instance(np.random.default_rng(1000 + seed), lines)
    assert len(sc.ev_sessions) and sc.hp_max_kw.any()
    status, oracle = _linprog_flex(sc, t0, k, soc0, lines)
    opt = episode_optimum(sc, t0, k, initial_soc_kwh=soc0, line_limits=lines)
    if status == 2:
        assert opt.status == "infeasible"
        return
    assert status == 0 and opt.status == "optimal"
    assert opt.welfare == pytest.approx(oracle, abs=1e-6)
    assert opt.welfare == pytest.approx(opt.welfare_per_step.sum(), abs=1e-12)
    if not lines:
        assert opt.welfare >= opt.reference_welfare - 1e-9
    # the schedule obeys (5)-(8) and the environment's battery model
    dt, w = sc.dt_hours, slice(t0, t0 + k)
    for agent, first, stop, energy, p in _window_sessions(sc, t0, k):
        assert opt.ev_kw[first:stop, agent].sum() * dt == pytest.approx(energy, abs=1e-7)
        assert opt.ev_kw[first:stop, agent].max(initial=0.0) <= p + 1e-9
    plugged = np.zeros((k, sc.n_agents), bool)
    for agent, first, stop, *_ in _window_sessions(sc, t0, k):
        plugged[first:stop, agent] = True
    np.testing.assert_array_equal(opt.ev_kw[~plugged], 0.0)
    deviation = np.cumsum(opt.hp_kw - sc.hp_kw[w], axis=0) * dt
    assert np.all(np.abs(deviation) <= sc.hp_band_kwh + 1e-7)
    assert np.all(opt.hp_kw <= sc.hp_max_kw + 1e-9)
    assert np.all((opt.pv_used_kw >= 0) & (opt.pv_used_kw <= sc.pv_kw[w] + 1e-12))
    if not (lines and sc.pv_curtailable):
        np.testing.assert_array_equal(opt.pv_used_kw, sc.pv_kw[w])
    assert np.all((opt.flex_kwh >= 0) & (opt.flex_kwh <= sc.flex_max_kw * dt + 1e-9))
    np.testing.assert_allclose(_replay(sc, opt), opt.soc_kwh, atol=1e-6)
    net = (opt.pv_used_kw - sc.load_kw[w] - opt.hp_kw - opt.ev_kw + opt.battery_kw).sum(axis=1) * dt
    np.testing.assert_allclose(opt.export_kwh - opt.import_kwh, net - opt.flex_kwh.sum(axis=1), atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_line_limits_with_base_flows_match_linprog_and_the_model_check(seed: int) -> None:
    """A fixed non-agent load or generator and a background element: the optimum equals the independent linprog
    with the check's base currents A0 + S_bg b_t, and its schedule passes the model's own check with the
    background."""
    from p2p_gym.grid import GridModel

    sc, t0, k, soc0 = _flex_instance(np.random.default_rng(3000 + seed), lines=True, loaded=True)
    status, oracle = _linprog_flex(sc, t0, k, soc0, lines=True)
    opt = episode_optimum(sc, t0, k, initial_soc_kwh=soc0, line_limits=True)
    if status == 2:
        assert opt.status == "infeasible"
        return
    assert status == 0 and opt.status == "optimal"
    assert opt.welfare == pytest.approx(oracle, abs=1e-6)
    w = slice(t0, t0 + k)
    net_kw = (
        opt.pv_used_kw - sc.load_kw[w] - opt.hp_kw - opt.ev_kw + opt.battery_kw - opt.flex_kwh / sc.dt_hours
    )
    model = GridModel(sc, "linear")
    assert np.abs(model.sensitivities["line_active_current_ka"]).max() > 1e-3  # the base flow is there
    loading = model.check_batch(net_kw, sc.background_kw[w]).line_loading_pct
    assert loading.max() <= 100.0 + 1e-5


def test_a_fixed_load_takes_its_share_of_the_line() -> None:
    # As test_binding_line_limits_lower_welfare, with a 1 kW non-agent load behind the 6 kW line: 5 kW are left for
    # the agents, so the battery charges 1 kW at step 0 instead of 2 (the earlier rule ignored the load).
    sc = _with_base_flows(_lined(6.0), 1.0, np.zeros((2, 1)))
    limited = episode_optimum(sc, 0, 2, initial_soc_kwh=0.0, line_limits=True)
    assert limited.status == "optimal"
    assert limited.battery_kw[0, 1] == pytest.approx(-1.0, abs=0.05)
    from p2p_gym.grid import GridModel

    injection = -sc.load_kw[:2] + limited.battery_kw
    loading = GridModel(sc, "linear").check_batch(injection, sc.background_kw[:2]).line_loading_pct
    assert loading.max() <= 100.0 + 1e-6
    assert loading[0, 0] == pytest.approx(100.0, abs=1e-4)
    # a background element injecting 2 kW at the end of the feeder gives the agents 2 kW more
    relieved = _with_base_flows(_lined(6.0), 1.0, np.full((2, 1), 2.0))
    more = episode_optimum(relieved, 0, 2, initial_soc_kwh=0.0, line_limits=True)
    assert more.battery_kw[0, 1] == pytest.approx(-3.0, abs=0.05)


def test_quadratic_flexible_demand_matches_the_linear_limit() -> None:
    # Clarabel's QP with a tiny α is the HiGHS LP with α = 0 up to ½ α Σ q² ≤ ½ · 1e-9 · 4 agents · K · (1.5 Δt)²
    # (< 1e-7 here).
    sc, t0, k, soc0 = _flex_instance(np.random.default_rng(7), lines=False)
    sc = sc.replace(flex_max_kw=np.full(4, 1.5), flex_util_b=np.array([0.2, 0.3, 0.4, 0.5]))
    lp = episode_optimum(sc, t0, k, soc0)
    qp = episode_optimum(sc.replace(flex_util_a=np.full(4, 1e-9)), t0, k, soc0)
    assert lp.welfare == pytest.approx(qp.welfare, abs=1e-6)
    assert qp.welfare == pytest.approx(qp.welfare_per_step.sum(), abs=1e-12)


# ------------------------------------------------------------------------------------ 11. reference, plain loops
@pytest.mark.parametrize("seed", range(4))
def test_reference_welfare_by_plain_loops(seed: int) -> None:
    sc, t0, k, _ = _flex_instance(np.random.default_rng(2000 + seed), lines=False)
    dt = sc.dt_hours
    ev = np.zeros((k, sc.n_agents))
    for agent, first, stop, energy, p in _window_sessions(sc, t0, k):
        left = energy
        for t in range(first, stop):  # charge on arrival at full power until the window's energy is in
            ev[t, agent] = min(p, left / dt)
            left -= ev[t, agent] * dt
    total = 0.0
    for t in range(k):
        for i in range(sc.n_agents):
            net = (sc.pv_kw[t0 + t, i] - sc.load_kw[t0 + t, i] - sc.hp_kw[t0 + t, i] - ev[t, i]) * dt
            price = sc.feed_in_price[t0 + t] if net > 0 else sc.retail_price[t0 + t]
            total += price * net
    opt = episode_optimum(sc, t0, k)
    assert opt.reference_welfare == pytest.approx(total, abs=1e-12)
