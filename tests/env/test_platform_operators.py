"""Platform operators as agents (``coordination="predictive", predictor="agents"``): two kinds of agents with
different spaces in one PettingZoo env, the padded variant, and the batched env."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from p2p_gym.envs import BatchedMarketEnv, P2PMarketEnv
from p2p_gym.errors import EnvConfigError
from p2p_gym.sim.multiscale import OPERATOR_FEATURES
from tests.conftest import cached_scenario

PLATFORM = np.array([0, 0, 1, 1, 0, 1])
KW = dict(grid="none", coordination="predictive", predictor="agents", episode_steps=24)


def _scenario():  # type: ignore[no-untyped-def]
    base = cached_scenario("default", n_agents=6)
    return base.replace(platform=PLATFORM, platform_names=("north", "south"))


def _env(**kw):  # type: ignore[no-untyped-def]
    return P2PMarketEnv(_scenario(), **{**KW, **kw})


@pytest.mark.parametrize("pad", [False, True])
def test_two_level_env_passes_the_pettingzoo_api_tests(pad: bool) -> None:
    env = _env(pad_spaces=pad)
    ops = ["operator_north", "operator_south"]
    assert env.possible_agents[-2:] == ops and len(env.possible_agents) == 8
    pro = env.possible_agents[0]
    if pad:
        assert env.observation_space(ops[0]) is env.observation_space(pro)
        assert env.action_space(ops[0]) is env.action_space(pro)
        assert env.observation_space(pro).shape == (max(env.static.n_obs, len(OPERATOR_FEATURES)) + 1,)
    else:
        assert env.observation_space(ops[0]).shape == (len(OPERATOR_FEATURES),)
        assert env.action_space(ops[0]).shape == (1,)
        assert env.action_space(pro).shape == (3,)
    parallel_api_test(env, num_cycles=30)
    parallel_seed_test(lambda: _env(pad_spaces=pad), num_cycles=20)
    assert env.state().shape == env.state_space.shape


def test_an_operators_action_sets_the_next_price_its_members_face() -> None:
    env = _env(episode_steps=96)
    obs, _ = env.reset(seed=1, options={"start_day": 172})
    sc = env.scenario
    pro = list(env.static.agent_ids)
    zero = {a: np.zeros(3, dtype=np.float32) for a in pro}
    for _ in range(40):  # to 10:00
        obs, *_ = env.step({**zero, "operator_north": np.array([1.0]), "operator_south": np.array([-1.0])})
    t = env.t
    # the prices in force now came from the last actions: retail (north), feed-in (south), with each platform's
    # loss factor and network charge; members observe them (columns 6, 7)
    _, mlf = env.static.pricing.expected(np.array([t]))
    fee = env.static.pricing.fee
    imp = np.array([sc.retail_price[t], sc.feed_in_price[t]]) * (1 - mlf[0]) + fee
    for i, a in enumerate(pro):
        assert obs[a][6] == pytest.approx(imp[PLATFORM[i]], rel=1e-6)
    assert obs["operator_north"][6] == pytest.approx(sc.retail_price[t], rel=1e-6)  # current prediction
    # out-of-range operator actions are clipped and counted
    _, rewards, _, _, infos = env.step(
        {**zero, "operator_north": np.array([3.0]), "operator_south": [np.nan]}
    )
    assert (
        infos["operator_north"]["clipped_actions"] == 1 and infos["operator_south"]["nonfinite_actions"] == 1
    )
    assert infos["operator_north"]["prediction"] == pytest.approx(sc.retail_price[t + 1])
    mid = 0.5 * (sc.retail_price[t + 1] + sc.feed_in_price[t + 1])
    assert infos["operator_south"]["prediction"] == pytest.approx(mid)
    # an operator's reward: its members' money plus its balance, per member
    for k, op in enumerate(["operator_north", "operator_south"]):
        members = [a for i, a in enumerate(pro) if PLATFORM[i] == k]
        total = sum(rewards[a] for a in members) + infos[op]["operator_balance"]
        assert rewards[op] == pytest.approx(total / len(members), abs=1e-12)
    market = infos[pro[0]]["market"]["platforms"]
    assert market["operator_balance"] == [infos["operator_north"]["operator_balance"],
                                          infos["operator_south"]["operator_balance"]]  # fmt: skip
    with pytest.raises(EnvConfigError, match="operator_south"):
        env.step({**zero, "operator_north": np.array([0.0])})


def test_batched_env_runs_the_padded_two_level_episode_of_the_plain_env() -> None:
    with pytest.raises(EnvConfigError, match="pad_spaces"):
        BatchedMarketEnv(_scenario(), n_envs=2, **KW)
    venv = BatchedMarketEnv(_scenario(), n_envs=2, pad_spaces=True, **KW)
    assert venv.possible_agents[-2:] == ["operator_north", "operator_south"]
    obs_b, _ = venv.reset(seed=5)
    envs = [_env(pad_spaces=True) for _ in range(2)]
    obs_p = [e.reset(seed=5 + i)[0] for i, e in enumerate(envs)]
    rng = np.random.default_rng(0)
    for _ in range(24):
        for i, e in enumerate(envs):
            np.testing.assert_allclose(
                obs_b[i], np.stack([obs_p[i][a] for a in e.possible_agents]), rtol=1e-6
            )
        act = rng.uniform(-1.2, 1.2, (2, 8, 3))
        obs_b, rew_b, _, trunc, infos = venv.step(act)
        for i, e in enumerate(envs):
            obs_p[i], rew_p, *_ = e.step({a: act[i, j] for j, a in enumerate(e.possible_agents)})
            np.testing.assert_allclose(rew_b[i], [rew_p[a] for a in e.possible_agents], rtol=1e-9, atol=1e-12)
    assert trunc.all()
    assert infos["platforms"]["operator_balance"].shape == (2, 2)


def test_operator_rules() -> None:
    """The ``expected`` operator rule (agents.operators) acts through the env's action and observation; the built-in
    predictor computes the same prediction inside the simulation: both runs agree step by step. The ``persistence``
    rule predicts the last realised price it has observed, i.e. that of the step before the one just cleared."""
    from agents import act_all, make_policies

    env_a = _env(episode_steps=96)
    env_b = P2PMarketEnv(_scenario(), **{**KW, "predictor": "expected", "episode_steps": 96})
    pol_a = make_policies("zi-c", env_a, operators="expected")
    pol_b = make_policies("zi-c", env_b)
    assert set(pol_a) == set(env_a.possible_agents) and set(pol_b) == set(env_b.possible_agents)
    obs_a, _ = env_a.reset(seed=3, options={"start_day": 172})
    obs_b, _ = env_b.reset(seed=3, options={"start_day": 172})
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(96):
        obs_a, rew_a, *_ = env_a.step(act_all(pol_a, obs_a, rng_a))
        obs_b, rew_b, *_ = env_b.step(act_all(pol_b, obs_b, rng_b))
        for a in env_b.possible_agents:
            assert rew_a[a] == pytest.approx(rew_b[a], abs=1e-12)
    env = _env(episode_steps=48)
    pol = make_policies("zi-c", env, operators="persistence")
    obs, _ = env.reset(seed=3, options={"start_day": 172})
    realised = []
    for k in range(48):
        obs, _, _, _, infos = env.step(act_all(pol, obs, rng_a))
        realised.append(infos[env.possible_agents[0]]["market"]["platforms"]["realised_upstream_price"])
        if k >= 1:
            assert infos["operator_north"]["prediction"] == pytest.approx(realised[k - 1], rel=1e-6)
