"""Forecast errors, imbalance settlement and the reserve market of the simulation, against hand-worked cases, the
perfect-foresight simulation (zero error) and Monte Carlo draws of the forecast model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from p2p_gym import sim
from p2p_gym.envs import BatchedMarketEnv, P2PMarketEnv
from p2p_gym.errors import EnvConfigError
from p2p_gym.scenarios.base import Scenario
from p2p_gym.scenarios.forecast import calibrate, forecast
from p2p_gym.sim import MarketConfig, uncertainty
from tests.conftest import cached_scenario

RETAIL, FEED_IN, PEN = 0.30, 0.10, 0.05


def _two_agents(pv_day1: float, pv_day2: float) -> Scenario:
    """Two days of hourly steps: a PV owner (no load) and a consumer with 3 kW of load; at hour 12 the PV owner
    produces ``pv_day1`` on the first day and ``pv_day2`` on the second (0 at other hours)."""
    t = 48
    pv = np.zeros((t, 2))
    pv[12, 0], pv[36, 0] = pv_day1, pv_day2
    load = np.zeros((t, 2))
    load[:, 1] = 3.0
    return Scenario(
        name="synthetic",
        agent_ids=("a0", "a1"),
        bus=np.zeros(2, dtype=np.int64),
        load_kw=load,
        pv_kw=pv,
        pv_kwp=np.array([3.0, 0.0]),
        battery_kwh=np.zeros(2),
        battery_kw=np.zeros(2),
        retail_price=np.full(t, RETAIL),
        feed_in_price=np.full(t, FEED_IN),
        step_minutes=60,
        net=None,
    )


def _truthful_step(sc: Scenario, **options: Any) -> Any:
    """The outcome of day 1, hour 12 with truthful full orders (the seller asks feed-in, the buyer bids retail)."""
    cfg = MarketConfig(scenario="synthetic", grid="none", episode_steps=24, imbalance_penalty=PEN, **options)
    static = sim.build(cfg, sc)
    state = sim.initial_state(static, [1], [np.random.default_rng(0)])
    state = state.__class__(**{**state.__dict__, "step": np.array([12])})  # jump to hour 12 of day 1
    act = np.array([[[-1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]])
    return sim.step(static, state, act)[1]


@pytest.mark.parametrize(
    ("pv_day1", "pv_day2", "dev", "imbalance"),
    [
        (2.0, 1.0, -1.0, 1.0 * (RETAIL + PEN)),  # forecast 2 kWh, delivers 1: short 1, pays retail + penalty
        (1.0, 2.0, 1.0, -1.0 * (FEED_IN - PEN)),  # forecast 1, delivers 2: long 1, receives feed-in − penalty
    ],
)
def test_persistence_deviation_settled_at_dual_prices_by_hand(
    pv_day1: float, pv_day2: float, dev: float, imbalance: float
) -> None:
    out = _truthful_step(_two_agents(pv_day1, pv_day2), forecast="persistence")
    p = float(out.clearing_price[0])
    sold = pv_day1  # the seller commits its forecast (yesterday's PV) and sells all of it to the consumer
    assert FEED_IN <= p <= RETAIL
    np.testing.assert_allclose(out.committed_kw[0], [sold, -3.0])
    np.testing.assert_allclose(out.injection_kw[0], [pv_day2, -3.0])
    np.testing.assert_allclose(out.imbalance_kwh[0], [dev, 0.0])
    np.testing.assert_allclose(out.imbalance_cost[0], [imbalance, 0.0])
    # seller: P2P revenue, then its deviation; buyer: P2P purchase plus the committed rest from the grid at retail
    np.testing.assert_allclose(out.bills[0], [-sold * p + imbalance, sold * p + (3.0 - sold) * RETAIL])
    # the grid account receives the buyer's import and the imbalance payment; welfare = − that
    np.testing.assert_allclose(out.welfare[0], -((3.0 - sold) * RETAIL + imbalance))
    # no trade: each realised position at the tariff
    np.testing.assert_allclose(out.welfare_no_trade[0], pv_day2 * FEED_IN - 3.0 * RETAIL)
    assert abs(out.money_balance[0]) < 1e-12 and abs(out.energy_balance_kwh[0]) < 1e-12


def test_dual_price_never_beats_committing() -> None:
    """Whatever the deviation, the seller ends no better than had it committed its realised output."""
    for pv1, pv2 in ((2.0, 1.0), (1.0, 2.0), (2.5, 0.5)):
        with_error = _truthful_step(_two_agents(pv1, pv2), forecast="persistence")
        exact = _truthful_step(_two_agents(pv2, pv2), forecast="persistence")
        assert with_error.welfare[0] <= exact.welfare[0] + 1e-12


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"dispatch": "committed", "scenario": "flex"},
        {"dispatch": "committed", "scenario": "flex", "flex_market": True, "grid": "linear"},
        {"mechanism": "bilateral", "forecast_steps": 4},
    ],
)
def test_zero_forecast_error_changes_nothing(options: dict[str, Any]) -> None:
    """day_ahead with skill 0 (its error is zero) gives every result of perfect foresight, bit for bit."""
    name = options.pop("scenario", "default")
    sc = cached_scenario(name)
    base = MarketConfig(scenario=name, episode_steps=24, **options)
    zero = base.replace(forecast="day_ahead", forecast_skill=0.0, imbalance_penalty=0.1)
    s0, s1 = sim.build(base, sc), sim.build(zero, sc)
    a, b = sim.initial_state(s0, [40]), sim.initial_state(s1, [40], [np.random.default_rng(1)])
    rng = np.random.default_rng(5)
    for _ in range(24):
        act = rng.uniform(-1.2, 1.2, (1, s0.n, s0.n_actions))
        np.testing.assert_array_equal(sim.observations(s0, a), sim.observations(s1, b))
        a, o0 = sim.step(s0, a, act)
        b, o1 = sim.step(s1, b, act)
        for name_ in ("rewards", "bills", "injection_kw", "welfare", "welfare_no_trade", "clearing_price"):
            np.testing.assert_array_equal(getattr(o0, name_), getattr(o1, name_), err_msg=name_)
        assert not np.any(o1.imbalance_kwh) and not np.any(o1.imbalance_cost)


def test_forecasts_reach_observation_and_orders_not_physics() -> None:
    """The observed load and PV are the forecast; the grid sees the realisation."""
    sc = cached_scenario("default")
    cfg = MarketConfig(forecast="persistence", episode_steps=96, grid="linear")
    static = sim.build(cfg, sc)
    state = sim.initial_state(static, [100])
    t = int(state.t[0])
    spd = sc.steps_per_day
    obs = sim.observations(static, state)[0]
    i = static.obs_index
    scale = static.power_scale
    np.testing.assert_allclose(obs[:, i["load"]], (sc.load_kw[t - spd] / scale).astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(obs[:, i["pv"]], (sc.pv_kw[t - spd] / scale).astype(np.float32), rtol=1e-6)
    _, out = sim.step(static, state, np.zeros((1, static.n, static.n_actions)))
    np.testing.assert_allclose(out.injection_kw[0], sc.pv_kw[t] - sc.load_kw[t])  # idle batteries, no gens
    np.testing.assert_allclose(out.committed_kw[0], sc.pv_kw[t - spd] - sc.load_kw[t - spd])


def test_day_ahead_is_seeded_by_the_env_generator() -> None:
    kw = {"forecast": "day_ahead", "episode_steps": 8}
    e1, e2 = P2PMarketEnv("default", **kw), P2PMarketEnv("default", **kw)
    o1, _ = e1.reset(seed=3, options={"start_day": 20})
    o2, _ = e2.reset(seed=3, options={"start_day": 20})
    o3, _ = e2.reset(seed=4, options={"start_day": 20})
    a = e1.agents[0]
    np.testing.assert_array_equal(o1[a], o2[a])
    assert any(not np.array_equal(o1[x], o3[x]) for x in e1.agents)


def test_day_ahead_needs_generators() -> None:
    static = sim.build(MarketConfig(forecast="day_ahead"), cached_scenario("default"))
    with pytest.raises(EnvConfigError, match="rngs"):
        sim.initial_state(static, [0])


def test_config_errors_name_the_field() -> None:
    with pytest.raises(EnvConfigError, match="forecast"):
        MarketConfig(forecast="oracle")
    with pytest.raises(EnvConfigError, match="imbalance_penalty"):
        MarketConfig(imbalance_penalty=-1)
    with pytest.raises(EnvConfigError, match="reserve"):
        MarketConfig(reserve=True, dispatch="committed")  # perfect forecasts: nothing to cover
    with pytest.raises(EnvConfigError, match="reserve"):
        MarketConfig(reserve=True, forecast="day_ahead")  # fixed dispatch: no devices to hold it
    with pytest.raises(EnvConfigError, match="reserve_confidence"):
        MarketConfig(reserve=True, dispatch="committed", forecast="day_ahead", reserve_confidence=1.0)


# ---------------------------------------------------------------------------------------------------- reserve
def test_capacity_auction_by_hand() -> None:
    offer = np.array([[2.0, 3.0, 1.0, 0.0]])
    price = np.array([[0.02, 0.01, 0.03, 0.0]])
    acc, p, short = uncertainty._auction(offer, price, np.array([4.0]))
    np.testing.assert_allclose(acc, [[1.0, 3.0, 0.0, 0.0]])  # cheapest first: 3 at 0.01, then 1 of 2 at 0.02
    assert (
        p[0] == 0.02 and short[0] == 0.0
    )  # the marginal accepted offer sets the price; no zero offer counts
    acc, p, short = uncertainty._auction(offer, price, np.array([7.0]))
    np.testing.assert_allclose(acc, [[2.0, 3.0, 1.0, 0.0]])
    assert p[0] == 0.03 and short[0] == 1.0
    acc, p, short = uncertainty._auction(offer, price, np.array([0.0]))
    assert not acc.any() and p[0] == 0.0 and short[0] == 0.0


def test_requirement_matches_monte_carlo_of_the_forecast_model() -> None:
    """R = z·σ_Σ of the closed form against the spread of Σ ε over draws of the forecast model at noon."""
    from scipy.stats import norm

    sc = cached_scenario("flex")
    stats = calibrate(sc)
    t = 172 * sc.steps_per_day + sc.steps_per_day // 2  # a summer noon: PV everywhere, no clipping at 0
    rng = np.random.default_rng(0)
    sums = []
    for _ in range(3000):
        load_fc, pv_fc = forecast(sc, t, 1, "day_ahead", rng, stats)
        sums.append(float(((sc.pv_kw[t] - pv_fc[0]) - (sc.load_kw[t] - load_fc[0])).sum()))
    static = sim.build(MarketConfig(scenario="flex", forecast="day_ahead"), sc)
    pv_s, load_s, rho = uncertainty.error_sigma(static, sc.pv_kw[t][None])
    sigma = float(uncertainty.system_sigma(pv_s, load_s, rho)[0])
    assert np.std(sums) == pytest.approx(sigma, rel=0.08)
    z = norm.ppf(0.975)
    covered = np.mean(np.abs(np.array(sums) - np.mean(sums)) <= z * sigma)
    assert covered == pytest.approx(0.95, abs=0.02)


def _reserve_run(seed: int, steps: int = 48, ev_sigma_h: float = 1.0) -> list[Any]:
    """Outcomes of a flex-scenario episode with reserve, random actions (a third of the agents never offer)."""
    cfg = MarketConfig(scenario="flex", dispatch="committed", forecast="day_ahead", reserve=True,
                       episode_steps=steps, grid="linear", imbalance_penalty=0.05,
                       ev_arrival_sigma_h=ev_sigma_h)  # fmt: skip
    static = sim.build(cfg, cached_scenario("flex"))
    state = sim.initial_state(
        static, [170, 20], [np.random.default_rng(seed), np.random.default_rng(seed + 1)]
    )
    rng = np.random.default_rng(seed)
    outs = []
    for _ in range(steps):
        act = rng.uniform(-1.0, 1.0, (2, static.n, static.n_actions))
        act[:, ::3, -3:-1] = rng.uniform(-1.0, 0.0, (2, len(range(0, static.n, 3)), 2))  # no offer
        state, out = sim.step(static, state, act)
        outs.append((act, out))
    return outs


def test_reserve_settlement_balances_and_pays_only_offers() -> None:
    activated = 0.0
    for act, out in _reserve_run(0):
        assert np.all(np.abs(out.money_balance) < 1e-9) and np.all(np.abs(out.energy_balance_kwh) < 1e-9)
        rc = out.reserve
        none = np.zeros(act.shape[:2], dtype=bool)
        none[:, ::3] = True
        assert not rc.up_kw[none].any() and not rc.down_kw[none].any() and not rc.payment[none].any()
        assert not out.activated_kw[none].any() and not out.activation_payment[none].any()
        # accepted ≤ offered, activation within the accepted capacity and against the system's imbalance
        assert np.all(rc.up_kw <= rc.offer_up_kw + 1e-12) and np.all(rc.down_kw <= rc.offer_down_kw + 1e-12)
        assert np.all(out.activated_kw <= rc.up_kw + 1e-9) and np.all(-out.activated_kw <= rc.down_kw + 1e-9)
        system = out.imbalance_kwh.sum(axis=1)
        assert np.all(out.activated_kw.sum(axis=1) * system <= 1e-12)  # activation opposes the imbalance
        assert np.all(np.abs(out.activated_kwh) <= np.abs(system) + 1e-9)
        # capacity: Σ payments = Σ charges; each accepted offer is paid the clearing price
        np.testing.assert_allclose(rc.payment.sum(axis=1), rc.charge.sum(axis=1))
        np.testing.assert_allclose(
            rc.payment, (rc.up_kw * rc.price[:, :1] + rc.down_kw * rc.price[:, 1:]) * 0.25
        )
        assert np.all(
            rc.offer_price[rc.up_kw > 1e-12] <= np.repeat(rc.price[:, :1], act.shape[1], 1)[rc.up_kw > 1e-12]
        )
        # activated energy: up paid at the short price (retail + penalty), down bought at the long one
        sc = cached_scenario("flex")
        r, f = sc.retail_price[out.t][:, None], sc.feed_in_price[out.t][:, None]
        up, down = np.maximum(out.activated_kw, 0.0) * 0.25, np.maximum(-out.activated_kw, 0.0) * 0.25
        np.testing.assert_allclose(out.activation_payment, up * (r + 0.05) - down * np.maximum(f - 0.05, 0.0))
        activated += float(np.abs(out.activated_kw).sum())
    assert activated > 0  # the episode did call reserve


@pytest.mark.parametrize("ev_sigma_h", [0.0, 2.0])
def test_reserve_covers_the_imbalance_up_to_the_accepted_capacity(ev_sigma_h: float) -> None:
    """With EV sessions known the headroom is firm: the activated reserve is min(|E|, accepted capacity in the
    needed direction). With EV arrival errors, deferring a car's charge delivers nothing when the car is not there,
    so a provider may deliver less (it is paid for what it delivers), never more. The grid balances the rest."""
    dt = 0.25
    for _, out in _reserve_run(2, steps=48, ev_sigma_h=ev_sigma_h):
        kpi = out.uncertainty_kpis()
        e_kw = kpi["system_imbalance_kwh"] / dt
        accepted = np.where(e_kw < 0, out.reserve.up_kw.sum(axis=1), out.reserve.down_kw.sum(axis=1))
        bound = np.minimum(np.abs(e_kw), accepted)
        got = np.abs(out.activated_kw.sum(axis=1))
        if ev_sigma_h == 0:
            np.testing.assert_allclose(got, bound, atol=1e-9)
        else:
            assert np.all(got <= bound + 1e-9)
        np.testing.assert_allclose(
            np.abs(kpi["residual_imbalance_kwh"]),
            np.abs(kpi["system_imbalance_kwh"]) - np.abs(out.activated_kwh),
            atol=1e-9,
        )


def test_batched_env_equals_plain_env_with_forecasts_and_reserve() -> None:
    kw = {
        "dispatch": "committed",
        "forecast": "day_ahead",
        "reserve": True,
        "episode_steps": 6,
        "grid": "linear",
    }
    venv = BatchedMarketEnv("flex", n_envs=2, **kw)
    obs_b, _ = venv.reset(seed=7)
    envs = [P2PMarketEnv("flex", **kw) for _ in range(2)]
    obs = [e.reset(seed=7 + i)[0] for i, e in enumerate(envs)]
    for i, e in enumerate(envs):
        np.testing.assert_array_equal(obs_b[i], np.stack([obs[i][a] for a in e.possible_agents]))
    rng = np.random.default_rng(0)
    for _ in range(6):
        act = rng.uniform(-1, 1, venv.action_space.shape).astype(np.float32)
        _, rew_b, _, _, info_b = venv.step(act)
        for i, e in enumerate(envs):
            _, rew, _, _, info = e.step({a: act[i, j] for j, a in enumerate(e.possible_agents)})
            np.testing.assert_allclose(rew_b[i], [rew[a] for a in e.possible_agents], rtol=1e-12, atol=1e-12)
            first = e.possible_agents[0]
            assert info_b["reserve_cost_total"][i] == pytest.approx(
                info[first]["market"]["reserve_cost_total"]
            )
            np.testing.assert_allclose(
                info_b["imbalance_kwh"][i], [info[a]["imbalance_kwh"] for a in e.possible_agents]
            )


# ------------------------------------------------------------------------------------------------ EV sessions
def _ev_run(sigma_h: float, steps: int = 96) -> tuple[Any, list[tuple[Any, Any, Any]]]:
    sc = cached_scenario("flex")
    cfg = MarketConfig(scenario="flex", dispatch="committed", forecast="day_ahead", ev_arrival_sigma_h=sigma_h,
                       episode_steps=steps, grid="none")  # fmt: skip
    static = sim.build(cfg, sc)
    state = sim.initial_state(static, [30], [np.random.default_rng(4)])
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(steps):
        expected = uncertainty.ev_sessions(static, state)
        prev = state
        state, out = sim.step(static, state, rng.uniform(-1, 1, (1, static.n, static.n_actions)))
        rows.append((prev, expected, out))
    return static, rows


def test_ev_arrivals_are_shifted_by_the_drawn_error() -> None:
    static, rows = _ev_run(2.0)
    ev = static.ev
    fc = rows[0][0].ev_fc_active[0]  # [S, N]
    t0 = int(rows[0][0].t0[0])
    shifts = []
    for j in np.unique(fc[fc >= 0]):
        a = ev.arrival[j]
        if t0 + 8 <= a and ev.departure[j] - a > 12:  # away from the window's start and the departure clip
            shifts.append(t0 + int(np.argmax((fc == j).any(axis=1))) - a)
    assert len(shifts) >= 10
    assert np.std(shifts) == pytest.approx(8.0, rel=0.5)  # 2 h of 15-minute steps
    assert any(s != 0 for s in shifts)


def test_cars_charge_only_when_really_plugged_in() -> None:
    static, rows = _ev_run(2.0)
    ev = static.ev
    early = late = 0
    for prev, expected, out in rows:
        t = int(prev.t[0])
        real = ev.active[t]
        charged = out.devices.ev_kw[0]
        assert np.all(charged[real < 0] == 0.0)  # no car, no charging
        surprise = (real >= 0) & (expected[0] != real)
        for n in np.flatnonzero(surprise):  # arrived before its owner expected: uncontrolled charging
            j = real[n]
            assert 0.0 <= charged[n] <= ev.max_kw[j] + 1e-12
            early += charged[n] > 0
        late += int(((expected[0] >= 0) & (real < 0)).sum())
        assert abs(out.money_balance[0]) < 1e-9 and abs(out.energy_balance_kwh[0]) < 1e-9
    assert early > 0 and late > 0


def test_ev_energy_is_tracked_on_the_real_session() -> None:
    """Whatever the owners expected, no session receives more than its energy (pro rata inside the episode)."""
    static, rows = _ev_run(2.0)
    ev = static.ev
    got: dict[int, float] = {}
    for prev, _, out in rows:
        real = ev.active[int(prev.t[0])]
        for n in np.flatnonzero(real >= 0):
            got[int(real[n])] = got.get(int(real[n]), 0.0) + out.devices.ev_kw[0, n] * static.dt
    t0, t1 = int(rows[0][0].t0[0]), int(rows[0][0].t0[0]) + 96
    for j, e in got.items():
        a, d = ev.arrival[j], ev.departure[j]
        share = (min(d, t1) - max(a, t0)) / max(d - a, 1)
        assert e <= ev.energy_kwh[j] * share + 1e-9
