"""The episode optimum against independent references: Σ step_optimum, hand-worked schedules, a plain-matrix
``scipy.optimize.linprog`` formulation, dynamic programming over a state-of-charge grid, the linear grid check,
and the efficiency against the policy-independent reference."""

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
def _dp_welfare(sc: Scenario, soc0: float, grid_points: int) -> tuple[float, float]:
    """Backward DP over a state-of-charge grid of agent 0's battery; returns (welfare, grid spacing kWh)."""
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
    for t in reversed(range(sc.n_steps)):
        net = (float((sc.pv_kw[t] - sc.load_kw[t]).sum()) + power) * dt
        stage = sc.feed_in_price[t] * np.maximum(net, 0) - sc.retail_price[t] * np.maximum(-net, 0)
        value = np.where(ok, stage + value[None, :], -np.inf).max(axis=1)
    start = int(np.argmin(np.abs(grid - soc0)))
    assert grid[start] == pytest.approx(soc0)
    return float(value[start]), float(grid[1] - grid[0])


@pytest.mark.parametrize("seed", range(3))
def test_matches_dynamic_programming_on_a_soc_grid(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    k = 5
    sc = _scenario(
        load=np.column_stack([rng.uniform(0.5, 3.0, k), rng.uniform(0.0, 2.0, k)]),
        pv=np.column_stack([np.zeros(k), rng.uniform(0.0, 5.0, k)]),
        retail=rng.uniform(0.1, 0.5, k),
        feed_in=rng.uniform(0.0, 0.1, k),
        battery_kwh=[4.0, 0.0],
        battery_kw=[2.0, 0.0],
        efficiency=0.92,
        step_minutes=60,
    )
    opt = episode_optimum(sc, 0, k, initial_soc_kwh=0.5)
    dp, h = _dp_welfare(sc, 2.0, 1601)
    # The DP is restricted to the grid (dp ≤ W*); rounding the optimal path to the grid moves each of the k
    # states by ≤ h, changing two steps' grid energy by ≤ h/η each.
    assert dp <= opt.welfare + 1e-9
    assert opt.welfare - dp <= 2 * k * sc.retail_price.max() * h / 0.92


# ------------------------------------------------------------------------------------ 5. line limits
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
    if limit_kw is None:
        return base
    from p2p_gym.grid import GridModel

    sens = GridModel(base, "linear").sensitivities
    s, i0 = sens["line_current_ka_per_kw"][0], sens["line_current_ka"][0]
    net = copy.deepcopy(tiny.net)
    net.line.loc[net.line.index[0], "max_i_ka"] = float(np.hypot(limit_kw * np.abs(s).mean(), i0))
    return base.replace(net=net)


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
        ({"line_limits": "yes"}, "line_limits"),
        ({"solver": "NOT_A_SOLVER"}, "solver"),
    ],
)
def test_bad_arguments_raise_clear_errors(tiny: Scenario, kwargs: dict, field: str) -> None:
    args = {"t0": 0, "steps": 4, **kwargs}
    with pytest.raises(OptimError, match=rf"^{field}: ") as info:
        episode_optimum(tiny, **args)
    assert isinstance(info.value, P2PGymError) and isinstance(info.value, ValueError)
