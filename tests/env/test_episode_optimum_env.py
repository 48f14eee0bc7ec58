"""``compute_optimum="episode"``: efficiency against the optimum of the whole episode.

The independent check: replaying the optimum's own battery schedule, with truthful orders (a uniform auction then
nets the whole community), must realise the optimum's welfare (efficiency 1), while the same truthful orders with
idle batteries score below 1 on a day with a price spread. Both runs go through the environment's own battery
model and settlement, not through the optimisation.
"""

from __future__ import annotations

import numpy as np
import pytest

import p2p_gym
from p2p_gym.optim import episode_optimum
from p2p_gym.rollout import play, truthful_action
from p2p_gym.sim import MarketConfig
from tests.conftest import cached_scenario

KW = {"scenario": "default", "mechanism": "uniform", "grid": "none", "start_day": 172, "episode_steps": 96}


def _play(env, battery_setpoint):  # type: ignore[no-untyped-def]
    """Truthful orders; battery entry from ``battery_setpoint(step) -> float[N]``; returns the last market info."""
    agents = env.possible_agents
    n_act = env.action_space(agents[0]).shape[0]
    last: dict = {}

    class Policy:
        def __init__(self, i: int) -> None:
            self.i = i

        def act(self, obs, rng):  # type: ignore[no-untyped-def]
            a = truthful_action(obs, n_act)
            a[2] = battery_setpoint(env.steps_taken)[self.i]
            return a

    def record(e, infos, _r):  # type: ignore[no-untyped-def]
        last.update(infos[agents[0]]["market"])

    play(env, {a: Policy(i) for i, a in enumerate(agents)}, np.random.default_rng(0), seed=0, on_step=record)
    return last


@pytest.mark.parametrize("terminal", ["free", "valued"])
def test_replaying_the_optimal_schedule_reaches_efficiency_one_and_idle_batteries_do_not(
    terminal: str,
) -> None:
    env = p2p_gym.parallel_env(config=MarketConfig(**KW, compute_optimum="episode", terminal_value=terminal))
    sc = env.scenario
    opt = episode_optimum(sc, 172 * sc.steps_per_day, 96, 0.5, terminal_value=terminal)
    assert (sc.battery_kwh > 0).any()
    scale = np.where(sc.battery_kw > 0, sc.battery_kw, 1.0)
    replay = _play(env, lambda k: np.clip(opt.battery_kw[k] / scale, -1.0, 1.0))
    idle = _play(env, lambda k: np.zeros(sc.n_agents))
    assert replay["optimum"] == "episode"
    assert replay["episode_welfare_optimum"] == pytest.approx(opt.welfare, rel=1e-9)
    assert replay["episode_welfare"] == pytest.approx(opt.welfare, abs=1e-4)
    assert replay["episode_efficiency"] == pytest.approx(1.0, abs=1e-5)
    assert idle["episode_efficiency"] < 0.9  # the batteries' arbitrage over the day is lost
    # the reference (no trade, idle batteries) is the same for both policies: one scale
    assert idle["episode_reference_welfare"] == replay["episode_reference_welfare"]


def test_step_mode_is_the_old_boolean_and_episode_efficiency_only_at_the_end() -> None:
    assert MarketConfig(compute_optimum=True).compute_optimum == "step"
    assert MarketConfig(compute_optimum=False).compute_optimum == "none"
    with pytest.raises(ValueError, match="compute_optimum"):
        MarketConfig(compute_optimum="daily")
    env = p2p_gym.parallel_env(config=MarketConfig(**{**KW, "episode_steps": 8}, compute_optimum="episode"))
    infos = []
    play(env, {}, np.random.default_rng(0), seed=0,
         on_step=lambda e, i, r: infos.append(i[e.possible_agents[0]]["market"]))  # fmt: skip
    assert all(m["efficiency"] is None for m in infos)  # no per-step efficiency against an episode optimum
    assert all(m["episode_efficiency"] is None for m in infos[:-1])
    assert np.isclose(sum(m["welfare"] for m in infos), infos[-1]["episode_welfare"])


def test_batched_env_reports_the_same_episode_efficiency() -> None:
    cfg = MarketConfig(**{**KW, "episode_steps": 16}, compute_optimum="episode")
    venv = p2p_gym.envs.BatchedMarketEnv(config=cfg, n_envs=2)
    obs, _ = venv.reset(seed=3)
    for _ in range(16):
        acts = np.stack([[truthful_action(o, venv.n_actions) for o in ob] for ob in obs])
        obs, _, _, _, infos = venv.step(acts)
    for b in range(2):
        env = p2p_gym.parallel_env(config=cfg)
        eps = play(env, {}, np.random.default_rng(0), seed=3 + b,
                   on_step=lambda e, i, r: i[e.possible_agents[0]]["market"])  # fmt: skip
        ref = eps[0].records[-1]["episode_efficiency"]
        got = infos["episode_efficiency"][b]
        assert (ref is None and np.isnan(got)) or got == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("terminal", ["free", "valued"])
def test_replaying_the_optimum_with_evs_heat_pumps_and_flexible_demand_reaches_one(terminal: str) -> None:
    """Committed dispatch on tiny with an EV (prosumer_0), the battery (prosumer_1), a heat pump (prosumer_2) and
    flexible demand (prosumer_3) — one device each, so the merit order cannot split a delta differently from the
    optimum: planning each agent's net injection at the optimum's schedule (executed whatever clears, truthful
    prices, uniform price) realises the optimum's welfare through the environment's own device models."""
    sc = cached_scenario("tiny")
    hp = np.zeros_like(sc.load_kw)
    hp[:, 2] = 1.0 + 0.5 * np.sin(np.arange(sc.n_steps) / 7.0)
    sc = sc.replace(
        ev_sessions=[[0, 100, 130, 6.0, 3.7], [0, 150, 180, 4.0, 3.7]], hp_kw=hp, hp_max_kw=[0, 0, 3.0, 0],
        hp_band_kwh=[0, 0, 2.0, 0], flex_max_kw=[0, 0, 0, 2.0], flex_util_a=[0, 0, 0, 0.4],
        flex_util_b=[0, 0, 0, 0.35], battery_cost=[0, 0.01, 0, 0],
    )  # fmt: skip
    day = 1
    env = p2p_gym.parallel_env(sc, mechanism="uniform", grid="none", dispatch="committed",
                               compute_optimum="episode", episode_steps=96, start_day=day,
                               terminal_value=terminal)  # fmt: skip
    t0 = day * sc.steps_per_day
    opt = episode_optimum(sc, t0, 96, 0.5, terminal_value=terminal)
    dt = sc.dt_hours
    w = slice(t0, t0 + 96)
    x_opt = (opt.pv_used_kw - sc.load_kw[w] - opt.hp_kw - opt.ev_kw - opt.flex_kwh / dt + opt.battery_kw
             + opt.gen_kw)  # fmt: skip
    idx = env.static.obs_index
    agents = env.possible_agents

    class Planned:
        def __init__(self, i: int) -> None:
            self.i = i

        def act(self, obs, rng):  # type: ignore[no-untyped-def]
            k = env.steps_taken
            lo, hi = obs[idx["flex_min"]], obs[idx["flex_max"]]
            scale = env.static.power_scale[self.i]
            x = float(np.clip(x_opt[k, self.i] / scale, lo, hi))
            a = np.ones(3, dtype=np.float32)
            a[0] = 1.0 if x < 0 else -1.0
            a[1] = 2 * (x - lo) / (hi - lo) - 1 if hi - lo > 1e-12 else 0.0
            a[2] = 1.0  # execute the plan whatever clears
            return a

    def record(e, i, r):  # type: ignore[no-untyped-def]
        return i[agents[0]]["market"], [i[a]["terminal_cost"] for a in agents]

    eps = play(
        env, {a: Planned(i) for i, a in enumerate(agents)}, np.random.default_rng(0), seed=0, on_step=record
    )
    last, terminal_cost = eps[0].records[-1]
    assert all(not any(c) for _, c in eps[0].records[:-1])  # valued only at the episode's last step
    if terminal == "valued":  # the battery's and the heat pump's change over the day, priced by hand
        r, f, eta = sc.retail_price[t0 + 95], sc.feed_in_price[t0 + 95], sc.battery_efficiency
        d_soc = opt.soc_kwh[-1, 1] - opt.soc_kwh[0, 1]
        d_hp = float((opt.hp_kw[:, 2] - sc.hp_kw[w, 2]).sum() * dt)
        expect = [
            0.0,
            -d_soc * r / eta if d_soc < 0 else -d_soc * eta * f,
            -d_hp * r if d_hp < 0 else -d_hp * f,
            0.0,
        ]
        np.testing.assert_allclose(terminal_cost, expect, atol=1e-6)
    else:
        assert not any(terminal_cost)
    assert last["episode_welfare_optimum"] == pytest.approx(opt.welfare, rel=1e-9)
    assert last["episode_efficiency"] == pytest.approx(1.0, abs=1e-4)
    assert opt.ev_kw[:, 0].sum() * dt == pytest.approx(
        10.0, abs=1e-6
    )  # both sessions inside the day, delivered


def test_sessions_cut_by_the_episode_count_pro_rata_like_the_optimum() -> None:
    """An EV session from 18:00 on day 0 to 06:00 on day 1 (12 kWh), episode = day 1: the environment charges the
    share of the session inside the episode, 6/12 of its steps → 6 kWh, whatever the actions (must-charge rule)."""
    sc = cached_scenario("tiny")
    spd = sc.steps_per_day
    sc = sc.replace(ev_sessions=[[0, 72, spd + 24, 12.0, 3.7]])
    env = p2p_gym.parallel_env(sc, grid="none", dispatch="committed", episode_steps=spd, start_day=1)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    charged = 0.0
    while env.agents:
        _, _, _, _, infos = env.step({a: rng.uniform(-1, 1, 3).astype(np.float32) for a in env.agents})
        charged += infos["prosumer_0"]["ev_kw"] * sc.dt_hours
    assert charged == pytest.approx(12.0 * 24 / 48, abs=1e-9)
