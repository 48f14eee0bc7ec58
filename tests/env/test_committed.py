"""``dispatch="committed"``: orders are physical commitments of flexible assets.

References: a hand-worked night step on ``tiny``; the fixed-position environment (rule-based agents wrapped for
committed dispatch must reproduce it exactly on scenarios with batteries only); conservation properties of the
EV and heat-pump models under random actions; the balances; the block rule changing physical flows.
"""

from __future__ import annotations

import numpy as np
import pytest

import p2p_gym
from agents import make_policies
from p2p_gym.rollout import play
from tests.conftest import cached_scenario


def _step(env, actions):  # type: ignore[no-untyped-def]
    _, rew, _, _, infos = env.step({a: np.asarray(x, dtype=np.float32) for a, x in actions.items()})
    return rew, infos


@pytest.mark.parametrize(("fallback", "battery_kw", "export_kwh"), [(-1.0, 1.8, 0.0), (1.0, 2.5, 0.175)])
def test_hand_worked_night_step(fallback: float, battery_kw: float, export_kwh: float) -> None:
    """tiny, step 0 (no PV; loads 0.3/0.4/0.5/0.6 kW; Δt = 0.25 h). prosumer_1 (battery 5 kWh, 2.5 kW, SoC 2.5 kWh,
    η = 0.95) targets X_max = −0.4 + 2.5 = 2.1 kW: it sells 0.525 kWh, covering its own 0.4 kW from the battery
    (self part). The others bid their loads: 0.35 kWh match. The battery discharges 0.4 + 0.35/0.25 = 1.8 kW; with
    fallback share 1 also the unmatched 0.7 kW, exported at feed-in (0.175 kWh). SoC − 1.8/0.95·0.25 (or 2.5/…)."""
    env = p2p_gym.parallel_env("tiny", grid="none", dispatch="committed", episode_steps=2, start_day=0)
    env.reset(seed=0)
    actions = {a: [1.0, -1.0, -1.0] for a in env.possible_agents}  # buyers: bid retail, x = X_min = own need
    for a in ("prosumer_0", "prosumer_2", "prosumer_3"):
        actions[a] = [1.0, 1.0, -1.0]  # no flexibility: X_min = X_max = −load
    actions["prosumer_1"] = [-1.0, 1.0, fallback]  # ask feed-in, sell X_max
    _, infos = _step(env, actions)
    i1 = infos["prosumer_1"]
    assert i1["battery_kw"] == pytest.approx(battery_kw, abs=1e-9)
    assert i1["soc"] == pytest.approx((2.5 - battery_kw / 0.95 * 0.25) / 5.0, abs=1e-9)
    assert i1["p2p_sold_kwh"] == pytest.approx(0.35, abs=1e-9)
    assert i1["grid_export_kwh"] == pytest.approx(export_kwh, abs=1e-9)
    assert i1["grid_import_kwh"] == pytest.approx(0.0, abs=1e-12)
    for a in ("prosumer_0", "prosumer_2", "prosumer_3"):
        assert infos[a]["grid_import_kwh"] == pytest.approx(0.0, abs=1e-9)  # all matched in P2P


def test_unmatched_flexible_purchase_does_not_charge_without_fallback() -> None:
    """A buyer targeting more than its need (to charge its battery) charges only what clears: at night nobody
    sells, so with fallback share 0 the battery stays idle, with share 1 it charges from the grid."""
    for fallback, expect in ((-1.0, 0.0), (1.0, -2.5)):
        env = p2p_gym.parallel_env("tiny", grid="none", dispatch="committed", episode_steps=2, start_day=0)
        env.reset(seed=0)
        actions = {a: [1.0, 1.0, -1.0] for a in env.possible_agents}
        actions["prosumer_1"] = [1.0, -1.0, fallback]  # X_min: need 0.4 kW + charge 2.5 kW
        _, infos = _step(env, actions)
        assert infos["prosumer_1"]["battery_kw"] == pytest.approx(expect, abs=1e-9)


@pytest.mark.parametrize(
    ("scenario", "mechanism"), [("tiny", "uniform"), ("default", "bilateral"), ("tiny", "sdr")]
)
@pytest.mark.parametrize("policy", ["truthful", "zi-c", "zi-c+battery"])
def test_rules_reproduce_fixed_dispatch_without_evs_or_heat_pumps(
    scenario: str, mechanism: str, policy: str
) -> None:
    """Rule-based agents are myopic under committed dispatch: on scenarios with batteries only they produce the
    same rewards, step by step, as with fixed positions (an independent code path)."""
    out = {}
    for dispatch in ("fixed", "committed"):
        env = p2p_gym.parallel_env(scenario, mechanism=mechanism, grid="linear", dispatch=dispatch,
                                   episode_steps=96, start_day=150 if scenario == "default" else 3)  # fmt: skip
        eps = play(env, make_policies(policy, env), np.random.default_rng(1), seed=1)
        out[dispatch] = eps[0].rewards
    np.testing.assert_allclose(out["committed"], out["fixed"], atol=1e-7)


def _flex_tiny():  # type: ignore[no-untyped-def]
    sc = cached_scenario("tiny")
    t = sc.n_steps
    hp = np.zeros((t, 4))
    hp[:, 2] = 1.0 + 0.5 * np.sin(np.arange(t) / 10.0)
    return sc.replace(
        ev_sessions=[[0, 4, 20, 3.0, 3.7], [0, 40, 60, 5.0, 11.0], [3, 10, 30, 4.0, 7.4]],
        hp_kw=hp,
        hp_max_kw=[0.0, 0.0, 3.0, 0.0],
        hp_band_kwh=[0.0, 0.0, 1.5, 0.0],
        flex_max_kw=[0.0, 0.0, 0.0, 2.0],
        flex_util_a=[0.0, 0.0, 0.0, 0.2],
        flex_util_b=[0.0, 0.0, 0.0, 0.25],
        battery_cost=[0.0, 0.02, 0.0, 0.0],
    )


def test_ev_sessions_are_delivered_and_heat_pumps_stay_in_band_under_random_actions() -> None:
    sc = _flex_tiny()
    env = p2p_gym.parallel_env(sc, mechanism="uniform", grid="linear", dispatch="committed", episode_steps=72,
                               start_day=0)  # fmt: skip
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    ev = np.zeros((72, 4))
    hp = np.zeros((72, 4))
    k = 0
    while env.agents:
        acts = {a: rng.uniform(-1, 1, env.action_space(a).shape) for a in env.agents}
        _, infos = _step(env, acts)
        m = infos["prosumer_0"]["market"]
        assert abs(m["money_balance"]) < 1e-9 and abs(m["energy_balance_kwh"]) < 1e-9
        ev[k] = [infos[a]["ev_kw"] for a in env.possible_agents]
        hp[k] = [infos[a]["hp_kw"] for a in env.possible_agents]
        k += 1
    dt = sc.dt_hours
    for agent, arrive, depart, energy, max_kw in sc.ev_sessions:
        a, lo, hi = int(agent), int(arrive), int(depart)
        assert ev[lo:hi, a].sum() * dt == pytest.approx(energy, abs=1e-9)  # delivered exactly by departure
        assert ev[lo:hi, a].max() <= max_kw + 1e-9
    plugged = np.zeros((72, 4), dtype=bool)
    for agent, arrive, depart, *_ in sc.ev_sessions:
        plugged[int(arrive) : int(depart), int(agent)] = True
    assert np.all(ev[~plugged] == 0.0)
    deviation = np.cumsum((hp[:, 2] - sc.hp_kw[:72, 2]) * dt)
    assert (
        np.all(np.abs(deviation) <= 1.5 + 1e-9)
        and np.all(hp[:, 2] >= -1e-12)
        and np.all(hp[:, 2] <= 3.0 + 1e-9)
    )
    assert np.abs(deviation).max() > 0.1  # random actions do use the band


def test_flexible_demand_utility_and_battery_cost_enter_reward_and_welfare() -> None:
    """prosumer_3 consumes 2 kW of flexible demand for one step (q = 0.5 kWh): its reward gains
    u = 0.25·0.5 − ½·0.2·0.5² = 0.1, and welfare includes it (hand computation)."""
    sc = _flex_tiny()
    env = p2p_gym.parallel_env(sc, grid="none", dispatch="committed", episode_steps=2, start_day=0)
    obs, _ = env.reset(seed=0)  # everyone at its inflexible position (the reference action)
    idx = env.static.obs_index["reference_action"]
    ref = {a: [1.0, float(obs[a][idx]), -1.0] for a in env.possible_agents}
    rew0, inf0 = _step(env, ref)
    env.reset(seed=0)
    flex = dict(ref)
    flex["prosumer_3"] = [
        1.0,
        -1.0,
        1.0,
    ]  # X_min, executed against the grid: EV idle at t=0, flex demand 2 kW
    rew1, inf1 = _step(env, flex)
    i3 = inf1["prosumer_3"]
    assert i3["flex_kw"] == pytest.approx(2.0) and i3["utility"] == pytest.approx(0.1)
    extra_cost = 0.5 * float(sc.retail_price[0])  # 0.5 kWh more imported at retail
    assert rew1["prosumer_3"] - rew0["prosumer_3"] == pytest.approx(0.1 - extra_cost, abs=1e-9)
    w0, w1 = inf0["prosumer_0"]["market"]["welfare"], inf1["prosumer_0"]["market"]["welfare"]
    assert w1 - w0 == pytest.approx(0.1 - extra_cost, abs=1e-9)


def test_block_rule_changes_physical_flows_under_committed_dispatch() -> None:
    """With committed dispatch the DSO's block rule removes the flexible part of blocked trades from the physical
    injection (with fixed positions it changes only money)."""
    kw = dict(mechanism="bilateral", grid="linear", episode_steps=48, start_day=160,
              scenario_overrides={"pv_penetration": 0.5, "pv_kwp_per_mwh": 10.0})  # fmt: skip
    loads = {}
    for dispatch in ("fixed", "committed"):
        for policy in ("report", "block"):
            env = p2p_gym.parallel_env("default_high_pv", dispatch=dispatch, grid_policy=policy,
                                       block_threshold_pct=20.0, **kw)  # fmt: skip
            pols = {a: _Sell(env) for a in env.possible_agents} if dispatch == "committed" else {}
            eps = play(env, pols, np.random.default_rng(0), seed=0,
                       on_step=lambda e, i, r: e.last_outcome.injection_kw.copy())  # fmt: skip
            loads[(dispatch, policy)] = np.array(eps[0].records)
    np.testing.assert_allclose(loads[("fixed", "report")], loads[("fixed", "block")])
    assert not np.allclose(loads[("committed", "report")], loads[("committed", "block")])


class _Sell:
    """Truthful prices, orders at X_max / X_min by side, fallback 0 (flexible parts depend on the clearing)."""

    def __init__(self, env) -> None:  # type: ignore[no-untyped-def]
        self.i = env.static.obs_index

    def act(self, obs, rng):  # type: ignore[no-untyped-def]
        n0 = obs[self.i["inflexible_net"]]
        a = np.ones(3, dtype=np.float32)
        a[0] = 1.0 if n0 < 0 else -1.0
        a[1] = -1.0 if n0 < 0 else 1.0
        a[2] = -1.0
        return a


def test_version_1_module_passes_the_pettingzoo_api_tests() -> None:
    from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test

    from p2p_gym.envs import p2p_market_v1

    sc = _flex_tiny()
    penv = p2p_market_v1.parallel_env(sc, grid="linear", episode_steps=48)
    assert penv.config.dispatch == "committed"
    parallel_api_test(penv, num_cycles=60)
    parallel_seed_test(lambda: p2p_market_v1.parallel_env(sc, grid="none", episode_steps=24), num_cycles=30)
    api_test(p2p_market_v1.env(scenario=sc, episode_steps=12), num_cycles=30)
    max_cycles_test(p2p_market_v1)
    assert p2p_market_v1.parallel_env("tiny", dispatch="fixed").config.dispatch == "fixed"


def test_network_fees_enter_the_bilateral_clearing() -> None:
    """A uniform fee above every pair's surplus (bid − ask ≤ retail − feed-in) stops all bilateral trades; a high
    zonal fee stops exactly the trades between feeders (default has two); with redistribution the DSO keeps
    nothing and the money still balances."""
    from p2p_gym.grid.topology import feeder_zones

    sc = cached_scenario("default")
    spread = float((sc.retail_price - sc.feed_in_price).max())
    kw = dict(mechanism="bilateral", grid="none", grid_policy="fee", episode_steps=96, start_day=172)
    env = p2p_gym.parallel_env("default", fee_type="uniform", fee_per_kwh=spread + 0.01, **kw)
    eps = play(env, {}, np.random.default_rng(0), seed=0,
               on_step=lambda e, i, r: i[e.possible_agents[0]]["market"]["p2p_volume_kwh"])  # fmt: skip
    assert sum(eps[0].records) == 0.0
    zone = feeder_zones(sc.net, sc.bus)
    assert len(set(zone.tolist())) == 2
    env = p2p_gym.parallel_env("default", fee_type="zonal", fee_per_kwh=spread + 0.01, fee_fixed=0.01,
                               fee_redistribution="equal", **kw)  # fmt: skip

    def check(e, infos, _r):  # type: ignore[no-untyped-def]
        tr = e.last_outcome.result.trades
        assert np.all(zone[tr.seller] == zone[tr.buyer])
        m = infos[e.possible_agents[0]]["market"]
        assert abs(m["fees_total"]) < 1e-9 and abs(m["money_balance"]) < 1e-9  # all fees paid back
        return float(tr.quantity.sum())

    eps = play(env, {}, np.random.default_rng(0), seed=0, on_step=check)
    assert sum(eps[0].records) > 0  # trades within each feeder remain


def test_committed_episode_can_end_on_the_scenarios_last_step() -> None:
    """The observation after the last step of the year needs the flexibility range of a step that does not exist."""
    sc = cached_scenario("tiny")
    env = p2p_gym.parallel_env(
        sc, grid="none", dispatch="committed", episode_steps=96, start_day=sc.n_days - 1
    )
    eps = play(env, {}, np.random.default_rng(0), seed=0)
    assert eps[0].rewards.shape == (96, 4)
