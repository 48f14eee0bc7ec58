"""The PettingZoo environment: API conformance, determinism, balances, robustness, hand-checked steps."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test

import p2p_gym
from p2p_gym.envs import MECHANISMS, P2PMarketEnv, parallel_env
from p2p_gym.errors import EnvConfigError
from tests.conftest import cached_scenario

warnings.filterwarnings("ignore")


def _tiny(**kw):  # type: ignore[no-untyped-def]
    return parallel_env(cached_scenario("tiny"), **{"episode_steps": 24, **kw})


def _rollout(env: P2PMarketEnv, seed: int, policy=None) -> list:  # type: ignore[no-untyped-def]
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trace = []
    while env.agents:
        acts = {
            a: (policy(obs[a]) if policy else rng.uniform(-1, 1, env.action_space(a).shape))
            for a in env.agents
        }
        obs, rew, _term, _trunc, info = env.step(acts)
        trace.append((obs, rew, info))
    return trace


@pytest.mark.parametrize("mechanism", ["uniform", "bilateral", "sdr"])
def test_parallel_api(mechanism: str) -> None:
    parallel_api_test(_tiny(mechanism=mechanism, peer_selection=mechanism == "bilateral"), num_cycles=60)


def test_parallel_seed() -> None:
    parallel_seed_test(lambda: _tiny(), num_cycles=30)


def test_aec_api() -> None:
    api_test(p2p_gym.env(scenario=cached_scenario("tiny"), episode_steps=12), num_cycles=30)


def test_max_cycles() -> None:
    mod = types.SimpleNamespace(
        parallel_env=lambda max_cycles: parallel_env(cached_scenario("tiny"), max_cycles=max_cycles),
        env=lambda max_cycles: p2p_gym.env(scenario=cached_scenario("tiny"), max_cycles=max_cycles),
    )
    max_cycles_test(mod)


def test_spaces_are_cached_objects() -> None:
    env = _tiny(peer_selection=True)
    a = env.possible_agents[0]
    assert env.action_space(a) is env.action_space(a)
    assert env.observation_space(a) is env.observation_space(a)
    assert env.action_space(a).shape == (3 + 3,)


def test_two_runs_same_seed_identical() -> None:
    env1, env2 = (
        _tiny(mechanism="bilateral", peer_selection=True),
        _tiny(mechanism="bilateral", peer_selection=True),
    )
    r1, r2 = _rollout(env1, 7), _rollout(env2, 7)
    assert len(r1) == len(r2) == 24
    for (o1, w1, i1), (o2, w2, i2) in zip(r1, r2):
        for a in o1:
            np.testing.assert_array_equal(o1[a], o2[a])
            assert w1[a] == w2[a]
            assert {k: v for k, v in i1[a].items() if k != "market"} == {
                k: v for k, v in i2[a].items() if k != "market"
            }
        m1, m2 = i1[a]["market"], i2[a]["market"]
        assert m1.keys() == m2.keys()
        for k in m1:
            assert m1[k] == m2[k] or (m1[k] != m1[k] and m2[k] != m2[k]), k  # NaN-equal


def test_different_seeds_start_on_different_days() -> None:
    env = parallel_env(cached_scenario("default"), episode_steps=4)
    starts = set()
    for s in range(6):
        env.reset(seed=s)
        starts.add(env.t)
    assert len(starts) > 1


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("grid", ["linear", "ac"])
def test_random_rollout_balances_every_step(mechanism: str, grid: str) -> None:
    env = _tiny(mechanism=mechanism, grid=grid, peer_selection=mechanism == "bilateral", episode_steps=96)
    for _obs, rew, info in _rollout(env, 3):
        m = info["prosumer_0"]["market"]
        assert abs(m["money_balance"]) < 1e-9
        assert abs(m["energy_balance_kwh"]) < 1e-9
        for a, r in rew.items():
            assert np.isfinite(r)
            assert info[a]["market"] is m
        # no buyer pays above retail, no seller receives below feed-in, per kWh
        assert m["gains_from_trade"] >= -1e-9


@pytest.mark.parametrize("name", ["default", "cigre_lv", "default_high_pv", "ieee39"])
@pytest.mark.parametrize("grid", ["linear", "ac"])
def test_random_rollout_every_scenario(name: str, grid: str) -> None:
    env = parallel_env(
        cached_scenario(name), mechanism="uniform", grid=grid, episode_steps=6, grid_policy="block"
    )
    for _, _, info in _rollout(env, 0):
        m = info[env.possible_agents[0]]["market"]
        scale = max(1.0, sum(abs(i["bill"]) for i in info.values()))
        assert abs(m["money_balance"]) < 1e-12 * scale  # relative: ieee39 bills are ~1e4 EUR per step
        assert m["grid"]["converged"]


def test_bad_actions_are_clipped_and_counted() -> None:
    env = _tiny()
    env.reset(seed=0)
    acts = {a: np.zeros(3) for a in env.agents}
    acts["prosumer_0"] = np.array([5.0, np.nan, -np.inf])
    _, rew, _, _, info = env.step(acts)
    assert info["prosumer_0"]["clipped_actions"] == 3
    assert info["prosumer_0"]["nonfinite_actions"] == 2
    assert info["prosumer_1"]["clipped_actions"] == 0
    assert all(np.isfinite(list(rew.values())))


def test_missing_action_names_the_agent_and_lists_are_accepted() -> None:
    env = _tiny()
    env.reset(seed=0)
    good = {a: np.zeros(3) for a in env.agents}
    missing = {a: v for a, v in good.items() if a != "prosumer_2"}
    with pytest.raises(EnvConfigError, match="missing an action for agent 'prosumer_2'"):
        env.step(missing)
    # Column vectors and plain lists are flattened like a flat array: same step as the flat actions.
    env.reset(seed=0)
    _, flat_rew, *_ = env.step({a: np.full(3, 0.5) for a in env.agents})
    env.reset(seed=0)
    mixed = {a: (np.full((3, 1), 0.5) if i % 2 else [0.5, 0.5, 0.5]) for i, a in enumerate(env.agents)}
    _, mixed_rew, *_ = env.step(mixed)
    assert mixed_rew == flat_rew


def test_wrong_action_shape_names_the_agent() -> None:
    env = _tiny()
    env.reset(seed=0)
    acts = {a: np.zeros(3) for a in env.agents}
    acts["prosumer_2"] = np.zeros(5)
    with pytest.raises(EnvConfigError, match="prosumer_2"):
        env.step(acts)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"mechanism": "vickrey"}, "mechanism"),
        ({"grid": "dc"}, "grid"),
        ({"grid_policy": "block", "grid": "none"}, "grid_policy"),
        ({"episode_steps": 0}, "episode_steps"),
        ({"k": 1.5}, "k"),
        ({"preference": np.ones((2, 2))}, "preference"),
        ({"reward": "utility"}, "reward"),
    ],
)
def test_bad_config_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        _tiny(**kw)


def test_truthful_uniform_step_by_hand() -> None:
    """Tiny scenario at 12:00 (step 48): agents 0 and 1 have PV surplus, 2 and 3 need energy.

    Truthful orders: sellers ask feed-in 0.08, buyers bid retail 0.30; uniform k=0.5 gives price 0.19.
    Total surplus S and need D: traded volume min(S, D); with S > D the rest is exported at 0.08.
    """
    sc = cached_scenario("tiny")
    env = parallel_env(sc, mechanism="uniform", grid="none", episode_steps=96, start_day=0, initial_soc=0.5)
    env.reset(seed=0, options={"start_day": 0})
    for _ in range(48):
        env.step({a: np.array([0.0, -1.0, 0.0]) for a in env.agents})  # offer nothing, battery idle
    t = env.t
    assert t == 48
    net = (sc.pv_kw[t] - sc.load_kw[t]) * 0.25
    s, d = net[net > 0].sum(), -net[net < 0].sum()
    assert s > d > 0
    acts = {a: np.array([1.0 if net[i] < 0 else -1.0, 1.0, 0.0]) for i, a in enumerate(env.agents)}
    _, rew, _, _, info = env.step(acts)
    m = info["prosumer_0"]["market"]
    assert m["clearing_price"] == pytest.approx(0.19)
    assert m["p2p_volume_kwh"] == pytest.approx(d)
    # buyers pay 0.19 per kWh instead of 0.30
    for i in (2, 3):
        assert info[f"prosumer_{i}"]["bill"] == pytest.approx(0.19 * -net[i])
        assert rew[f"prosumer_{i}"] == pytest.approx(-0.19 * -net[i])
    # sellers: receipts at 0.19 for their share of d, the rest exported at 0.08
    sold = np.array([info[f"prosumer_{i}"]["p2p_sold_kwh"] for i in (0, 1)])
    assert sold.sum() == pytest.approx(d)
    for k, i in enumerate((0, 1)):
        expected = -(0.19 * sold[k] + 0.08 * (net[i] - sold[k]))
        assert info[f"prosumer_{i}"]["bill"] == pytest.approx(expected)
    # welfare gain over grid-only = (0.30 - 0.08) * d, which is also the optimum: efficiency 1
    assert m["gains_from_trade"] == pytest.approx(0.22 * d)


def _midday_truthful_step(env: P2PMarketEnv, extra: dict | None = None) -> tuple:  # type: ignore[type-arg]
    """Idle until 12:00 of day 0 (step 48), then one truthful step (extra action entries per agent appended)."""
    env.reset(seed=0, options={"start_day": 0})
    n_act = env.action_space(env.possible_agents[0]).shape[0]
    for _ in range(48):
        env.step({a: np.r_[0.0, -1.0, np.zeros(n_act - 2)] for a in env.agents})
    sc = env.scenario
    net = sc.pv_kw[env.t] - sc.load_kw[env.t]
    acts = {
        a: np.r_[1.0 if net[i] < 0 else -1.0, 1.0, 0.0, (extra or {}).get(a, np.zeros(n_act - 3))]
        for i, a in enumerate(env.agents)
    }
    return env.step(acts)


@pytest.mark.parametrize("grid", ["none", "linear"])
def test_network_fee_by_hand(grid: str) -> None:
    """grid_policy="fee": each trade pays fee_per_kwh_km × path length × kWh, half by each side (Le Goff
    Latimier & Ben Ahmed 2023, eq. 12).

    tiny is a chain of 0.1 km cables with agent i at bus i + 2, so agents i and j are 0.1·|i − j| km apart.
    The same step with and without the fee must differ by exactly the fees, which go to the fee collector.
    """
    rate = 0.5
    sc = cached_scenario("tiny")
    bills = {}
    for policy in ("report", "fee"):
        env = parallel_env(
            sc,
            mechanism="uniform",
            grid=grid,
            grid_policy=policy,
            fee_per_kwh_km=rate,
            episode_steps=96,
        )
        _, _, _, _, info = _midday_truthful_step(env)
        bills[policy] = np.array([info[a]["bill"] for a in env.possible_agents])
        fees = np.array([info[a]["fees"] for a in env.possible_agents])
        tr = env.last_outcome.result.trades
        assert len(tr.quantity) >= 2  # two sellers, two buyers: trades over different distances
        expected = np.zeros(4)
        for s, b, q in zip(tr.seller, tr.buyer, tr.quantity):
            fee = rate * 0.1 * abs(int(s) - int(b)) * q
            expected[s] += fee / 2
            expected[b] += fee / 2
        if policy == "report":
            expected[:] = 0.0
        np.testing.assert_allclose(fees, expected, atol=1e-12)
        m = info["prosumer_0"]["market"]
        assert m["fees_total"] == pytest.approx(expected.sum(), abs=1e-12)
        assert abs(m["money_balance"]) < 1e-12
    assert (bills["fee"] - bills["report"]).sum() > 0
    np.testing.assert_allclose(bills["fee"] - bills["report"], fees, atol=1e-12)


def test_optimum_and_efficiency_reported() -> None:
    env = _tiny(compute_optimum=True, grid="none")
    for _, _, info in _rollout(env, 1):
        m = info["prosumer_0"]["market"]
        assert np.isfinite(m["welfare_optimum"])
        assert m["welfare"] <= m["welfare_optimum"] + 1e-9
        gains, best = m["welfare"] - m["welfare_no_trade"], m["welfare_optimum"] - m["welfare_no_trade"]
        if best > 1e-12:
            assert m["efficiency"] == pytest.approx(gains / best)
            assert -1e-9 <= m["efficiency"] <= 1 + 1e-9
        else:  # nothing to gain (0 / 0): undefined, never a default 1.0
            assert m["efficiency"] is None


def test_efficiency_is_none_without_an_optimum() -> None:
    """Without compute_optimum no step reports an efficiency (it used to default to 1.0 in idle steps)."""
    for _, _, info in _rollout(_tiny(grid="none", episode_steps=96), 0):
        m = info["prosumer_0"]["market"]
        assert m["welfare_optimum"] is None and m["efficiency"] is None


def test_block_policy_blocks_only_on_stressed_lines() -> None:
    sc = cached_scenario("default_high_pv")
    day = 172
    kw = {"episode_steps": 96, "start_day": day, "grid": "linear", "mechanism": "uniform"}
    truthful = lambda o: np.array([1.0 if o[3] < 0 else -1.0, 1.0, 0.0])  # noqa: E731
    blocked = _rollout(parallel_env(sc, grid_policy="block", block_threshold_pct=20.0, **kw), 0, truthful)
    free = _rollout(parallel_env(sc, grid_policy="report", **kw), 0, truthful)
    vol_b = sum(s[2]["prosumer_0"]["market"]["p2p_volume_kwh"] for s in blocked)
    vol_f = sum(s[2]["prosumer_0"]["market"]["p2p_volume_kwh"] for s in free)
    n_blocked = sum(s[2]["prosumer_0"]["market"]["blocked_trades"] for s in blocked)
    assert n_blocked > 0 and vol_b < vol_f
    # at night nothing is stressed: identical volume in the first hours
    night_b = [s[2]["prosumer_0"]["market"]["p2p_volume_kwh"] for s in blocked[:16]]
    night_f = [s[2]["prosumer_0"]["market"]["p2p_volume_kwh"] for s in free[:16]]
    assert night_b == pytest.approx(night_f)


def test_registered_tasks_build() -> None:
    from p2p_gym.registration import list_tasks

    for task in list_tasks():
        if "Tiny" in task:
            env = p2p_gym.make(task, episode_steps=4)
            _rollout(env, 0)
    with pytest.raises(ValueError, match="task_id"):
        p2p_gym.make("nope")


def test_render_rgb_array() -> None:
    env = _tiny(render_mode="rgb_array", grid="ac")
    env.reset(seed=0)
    env.step({a: env.action_space(a).sample() for a in env.agents})
    img = env.render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert img.std() > 0
    env.close()


def _pool_oracle(sc, t: int, dt: float) -> float:  # type: ignore[no-untyped-def]
    """Independent optimum of one ieee39 step: a pool with dispatchable units and the grid at retail/feed-in."""
    import cvxpy as cp

    gen = sc.gen_max_kw > 0
    net = (sc.pv_kw[t] - sc.load_kw[t]) * dt
    fixed = float(net.sum())  # all inflexible positions
    g = cp.Variable(int(gen.sum()))
    imp, exp = cp.Variable(nonneg=True), cp.Variable(nonneg=True)
    cost = (
        cp.sum(0.5 * cp.multiply(sc.gen_cost_a[gen], cp.square(g)) + cp.multiply(sc.gen_cost_b[gen], g))
        + sc.retail_price[t] * imp
        - sc.feed_in_price[t] * exp
    )
    # generators produce only what peers buy: the grid can only take the prosumers' own surplus
    surplus = float(np.clip(net[~gen], 0, None).sum())
    cons = [g >= 0, g <= sc.gen_max_kw[gen] * dt, exp <= surplus, fixed + cp.sum(g) + imp - exp == 0]
    prob = cp.Problem(cp.Minimize(cost), cons)
    prob.solve(solver=cp.CLARABEL)
    return -float(prob.value)


def test_ieee39_optimum_matches_pool_oracle() -> None:
    """With generators the env solves the P2P QP; it equals the pool optimum under the env's rule
    that generators sell only to peers."""
    sc = cached_scenario("ieee39")
    env = parallel_env(sc, grid="none", episode_steps=3, compute_optimum=True)
    env.reset(seed=4)
    rng = np.random.default_rng(4)
    while env.agents:
        t = env.t
        _, _, _, _, info = env.step({a: rng.uniform(-1, 1, env.action_space(a).shape) for a in env.agents})
        m = info[env.possible_agents[0]]["market"]
        ref = _pool_oracle(sc, t, env.dt)
        assert m["welfare_optimum"] == pytest.approx(ref, rel=1e-5, abs=1e-3)
        assert m["welfare"] <= m["welfare_optimum"] + 1e-6 * abs(ref)


def test_peer_k_accepts_only_the_top_scored_peers() -> None:
    """tiny at noon: sellers 0, 1 and buyers 2, 3. With peer_k=1 a trade needs both sides' top choice.

    Scores are listed per other agent in index order (self skipped). 0 ↔ 2 and 1 ↔ 3 choose each other; then
    buyer 3 switches its top choice to seller 0, who does not choose it back, so 3 can no longer trade."""
    sc = cached_scenario("tiny")
    env = parallel_env(
        sc, mechanism="bilateral", peer_selection=True, peer_k=1, grid="none", episode_steps=96
    )
    pairs = {
        "prosumer_0": [0.1, 0.9, 0.5],  # others 1, 2, 3 → top: 2
        "prosumer_1": [0.1, 0.5, 0.9],  # others 0, 2, 3 → top: 3
        "prosumer_2": [0.9, 0.5, 0.1],  # others 0, 1, 3 → top: 0
        "prosumer_3": [0.5, 0.9, 0.1],  # others 0, 1, 2 → top: 1
    }
    _midday_truthful_step(env, {a: np.array(v) for a, v in pairs.items()})
    tr = env.last_outcome.result.trades
    assert set(zip(tr.seller.tolist(), tr.buyer.tolist())) == {(0, 2), (1, 3)}
    pairs["prosumer_3"] = [0.9, 0.5, 0.1]  # 3 now prefers 0, but 0 keeps choosing 2
    _midday_truthful_step(env, {a: np.array(v) for a, v in pairs.items()})
    tr = env.last_outcome.result.trades
    assert set(zip(tr.seller.tolist(), tr.buyer.tolist())) == {(0, 2)}


def test_grid_penalty_total_and_allocation() -> None:
    """The penalty is grid_penalty × (overflow sum in % points + 100 × voltage excess in p.u.), recomputed here
    from the step's grid report, and only agents that push flow or voltage the wrong way pay it."""
    sc = cached_scenario("default_high_pv")
    rate = 0.01
    env = parallel_env(
        sc, mechanism="uniform", grid="linear", grid_penalty=rate, episode_steps=96, start_day=146
    )
    env.reset(seed=0)
    seen = 0
    for _ in range(96):
        _, _, _, _, info = env.step({a: np.array([-1.0, 1.0, 0.0]) for a in env.agents})
        rep = env.last_outcome.report
        pen = np.array([info[a]["penalty"] for a in env.possible_agents])
        excess = np.clip(rep.line_loading_pct - 100.0, 0, None).sum()
        volt = (np.clip(rep.vm_pu - 1.05, 0, None) + np.clip(0.95 - rep.vm_pu, 0, None)).sum()
        assert pen.sum() == pytest.approx(rate * (excess + 100.0 * volt), rel=1e-9, abs=1e-15)
        assert np.all(pen >= 0)
        if excess > 0:
            seen += 1
            inj = env.last_outcome.injection_kw
            # at a midday overload every paying agent is exporting (pushing flow out along the feeder)
            assert np.all(inj[pen > 1e-12] > 0)
    assert seen > 0  # the sunny day of default_high_pv does overload lines


def test_state_concatenates_all_observations() -> None:
    env = _tiny(forecast_steps=2, book_stats=True)
    obs, _ = env.reset(seed=0)
    state = env.state()
    assert env.state_space.contains(state)
    np.testing.assert_array_equal(state, np.concatenate([obs[a] for a in env.possible_agents]))


def test_peer_observation_is_distance_and_pv_of_each_peer_in_score_order() -> None:
    """``peer_obs``: per other agent, in the order of the peer scores, the line-path distance ÷ the largest and the
    PV peak ÷ the largest; distances against pandapower's own shortest paths (``calc_distance_to_bus``)."""
    import pandapower.topology as top

    sc = cached_scenario("default")
    env = parallel_env(sc, mechanism="bilateral", peer_selection=True, peer_obs=True, episode_steps=4)
    obs, _ = env.reset(seed=0)
    n = len(env.possible_agents)
    km = np.array([top.calc_distance_to_bus(sc.net, int(b)).reindex(sc.bus).to_numpy() for b in sc.bus])
    pv = sc.pv_kw.max(axis=0)
    at = env.static.obs_index
    assert env.observation_space(env.possible_agents[0]).shape == (11 + 2 * (n - 1),)
    for i, a in enumerate(env.possible_agents):
        peers = [j for j in range(n) if j != i]
        d = obs[a][at["peer_distance"] : at["peer_distance"] + n - 1]
        np.testing.assert_allclose(d, km[i, peers] / km.max(), atol=1e-6)
        np.testing.assert_allclose(
            obs[a][at["peer_pv"] : at["peer_pv"] + n - 1], pv[peers] / pv.max(), atol=1e-6
        )
    with pytest.raises(ValueError, match=r"peer_obs: .* needs peer_selection=true"):
        parallel_env(sc, peer_obs=True)


def test_blocked_generation_is_not_produced() -> None:
    """ieee39 under the block rule: a generator produces only what it still sells after the DSO removed trades, so
    blocked sales are neither produced nor exported at the feed-in price (they used to be, 3.97 GWh in this day)."""
    sc = cached_scenario("ieee39")
    env = parallel_env(
        sc, grid="linear", grid_policy="block", block_threshold_pct=20.0, episode_steps=24, start_day=0
    )
    gens = [a for i, a in enumerate(env.possible_agents) if sc.gen_max_kw[i] > 0]
    obs, _ = env.reset(seed=0)
    blocked = 0.0
    while env.agents:  # truthful: sellers ask feed-in, buyers bid retail
        acts = {a: np.array([-1.0 if obs[a][3] >= 0 else 1.0, 1.0, 0.0]) for a in env.agents}
        obs, _, _, _, info = env.step(acts)
        m = info[gens[0]]["market"]
        blocked += m["blocked_kwh"]
        assert abs(m["energy_balance_kwh"]) < 1e-6 and abs(m["money_balance"]) < 1e-6
        out = env.last_outcome
        for g in gens:
            i = env.possible_agents.index(g)
            assert info[g]["grid_export_kwh"] == 0.0
            # physical injection = own net load (none for the generators here) + what it still sold
            assert out.injection_kw[i] * env.dt == pytest.approx(info[g]["p2p_sold_kwh"], rel=1e-9, abs=1e-6)
    assert blocked > 1e5  # the rule acted


def test_non_numeric_actions_name_the_agent() -> None:
    env = _tiny()
    env.reset(seed=0)
    for bad in ("buy", None, ["a", "b", "c"], {"x": 1}):
        acts = {a: np.zeros(3) for a in env.agents}
        acts["prosumer_1"] = bad
        with pytest.raises(EnvConfigError, match=r"actions\['prosumer_1'\]"):
            env.step(acts)
