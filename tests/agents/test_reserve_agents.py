"""Rule-based reserve offers (``reserve=True``): what each mode offers, and that the env pays only offers."""

from __future__ import annotations

import numpy as np
import pytest

from agents import AgentConfigError, act_all, make_policies
from agents.reserve import ReserveOffer
from p2p_gym.envs import parallel_env

KW = {"dispatch": "committed", "forecast": "day_ahead", "reserve": True, "grid": "none", "episode_steps": 24}


def _env():  # type: ignore[no-untyped-def]
    return parallel_env("default", **KW)


def test_modes_write_the_last_three_entries() -> None:
    env = _env()
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    a = env.possible_agents[0]
    truthful = make_policies("truthful", env)[a].act(obs[a], rng)
    np.testing.assert_array_equal(truthful[-3:], [1.0, 1.0, -1.0])  # all headroom, price 0
    none = make_policies("truthful+noreserve", env)[a].act(obs[a], rng)
    np.testing.assert_array_equal(none[-3:], [-1.0, -1.0, -1.0])
    np.testing.assert_array_equal(none[:3], truthful[:3])  # the energy part is the rule's
    zi = make_policies("zi-c", env)[a]
    prices = [zi.act(obs[a], rng)[-1] for _ in range(200)]
    assert min(prices) >= -1.0 and max(prices) <= 1.0 and np.std(prices) > 0.4  # uniform on [-1, 1]: sd 0.577
    with pytest.raises(AgentConfigError, match="mode"):
        ReserveOffer(zi, "always")


def test_agents_without_offers_are_never_paid_for_reserve() -> None:
    env = _env()
    ids = env.possible_agents
    spec = {a: ("truthful+noreserve" if i % 2 else "flex") for i, a in enumerate(ids)}
    policies = make_policies(spec, env)
    obs, _ = env.reset(seed=2, options={"start_day": 170})
    rng = np.random.default_rng(0)
    called = 0.0
    while env.agents:
        obs, _, _, _, infos = env.step(act_all(policies, obs, rng))
        for i, a in enumerate(ids):
            if i % 2:
                assert infos[a]["reserve_payment"] == 0.0 and infos[a]["activation_payment"] == 0.0
                assert infos[a]["reserve_up_kw"] == 0.0 and infos[a]["activated_kw"] == 0.0
            called += abs(infos[a]["activated_kw"])
        assert abs(infos[ids[0]]["market"]["money_balance"]) < 1e-9
    assert called > 0
