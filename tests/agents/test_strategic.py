"""Markup and best response against truthful others under uniform pricing on ``tiny`` (hand-computed).

Tiny at 12:00 (step 48): agents 0 and 1 sell PV surplus, agents 2 and 3 buy their load (0.5 and 0.6 kW, i.e.
0.125 and 0.15 kWh per step); retail 0.30, feed-in 0.08, range 0.22, k = 0.5. Truthful price:
0.5 · 0.30 + 0.5 · 0.08 = 0.19.
"""

from __future__ import annotations

import numpy as np
import pytest

import p2p_gym
from agents import AdaptiveMarkup, Markup, act_all, make_policies, observe_all

RANGE, K = 0.22, 0.5


def _play(spec, steps=96):
    env = p2p_gym.parallel_env("tiny", mechanism="uniform", grid="none", episode_steps=96, start_day=0)
    policies = make_policies(spec, env)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    rewards, supply, demand, actions = [], [], [], []
    sc = env.scenario
    for _ in range(steps):
        t = env.t
        net = (sc.pv_kw[t] - sc.load_kw[t]) * env.dt
        supply.append(net[net > 0].sum())
        demand.append(-net[net < 0].sum())
        acts = act_all(policies, obs, rng)
        actions.append(acts)
        obs, r, _, _, infos = env.step(acts)
        observe_all(policies, infos)
        rewards.append([r[a] for a in env.possible_agents])
    return np.array(rewards), np.array(supply), np.array(demand), actions, env


@pytest.fixture(scope="module")
def truthful():
    return _play("truthful")


def test_buyer_markup_gains_exactly_k_m_range_per_kwh_when_on_short_side(truthful) -> None:
    base, supply, demand, _, _ = truthful
    m = 0.1
    marked, *_ = _play({"prosumer_3": f"markup:{m}"})
    diff = marked[:, 3] - base[:, 3]
    need3 = 0.6 * 0.25  # agent 3's base load 0.3 + 0.1 * 3 kW outside the bumps; 15-minute steps
    short = (supply > demand + 1e-9) & (demand > 0)  # buyers fully served: the shaded bid is the marginal bid
    midday = short & (np.arange(96) >= 44) & (np.arange(96) < 52)  # 11:00-13:00, no load bump
    assert midday.sum() == 8
    # price falls by k * m * range on each of its kWh
    np.testing.assert_allclose(diff[midday], K * m * RANGE * need3, rtol=1e-5)
    assert np.all(diff[short] > 0)
    # long side (supply < demand): the shaded bid is rationed first -> no gain
    long = (supply > 0) & (supply < demand - 1e-9)
    assert long.any() and np.all(diff[long] <= 1e-12)
    # over the day the short-side steps dominate on tiny: the markup agent earns more than truthful
    assert diff.sum() > 0


def test_seller_markup_loses_on_the_long_side(truthful) -> None:
    base, supply, demand, _, _ = truthful
    marked, *_ = _play({"prosumer_0": "markup:0.1"})
    diff = marked[:, 0] - base[:, 0]
    long = (supply > demand + 1e-9) & (demand > 0)  # sellers are the long side
    # at noon agent 1 alone covers the demand: agent 0's shaded ask is not accepted and its surplus goes to the
    # grid at feed-in instead of being sold at 0.19
    assert np.all(diff[long] <= 1e-12) and diff[long].min() < 0
    assert diff.sum() < 0


def test_adaptive_markup_raises_after_fill_and_lowers_when_unfilled() -> None:
    am = AdaptiveMarkup(markup=0.1, step=0.05)
    obs = np.zeros(11, dtype=np.float32)
    obs[3], obs[6], obs[7] = -0.5, 0.30, 0.08  # a buyer
    a = am.act(obs, np.random.default_rng(0))
    assert a[0] == pytest.approx(2 * 0.9 - 1)
    am.observe_result({"p2p_bought_kwh": 0.2, "p2p_sold_kwh": 0.0})
    assert am.side_markup[True] == pytest.approx(0.15) and am.side_markup[False] == pytest.approx(0.1)
    am.act(obs, np.random.default_rng(0))
    am.observe_result({"p2p_bought_kwh": 0.0, "p2p_sold_kwh": 0.0})
    assert am.side_markup[True] == pytest.approx(0.10)
    obs[3] = 0.0  # no position, no order: unchanged
    am.act(obs, np.random.default_rng(0))
    am.observe_result({"p2p_bought_kwh": 0.0, "p2p_sold_kwh": 0.0})
    assert am.side_markup[True] == pytest.approx(0.10)


def test_markup_quote_on_market_library() -> None:
    rng = np.random.default_rng(0)
    assert Markup(0.1).quote(100.0, True, rng, 0.0, 200.0) == pytest.approx(80.0)
    assert Markup(0.1).quote(100.0, False, rng, 0.0, 200.0) == pytest.approx(120.0)
    assert Markup(0.9).quote(100.0, False, rng, 0.0, 200.0) == pytest.approx(200.0)  # clipped


def test_best_response_buyer_bids_the_standing_ask_at_noon(truthful) -> None:
    base, *_ = truthful
    rewards, _, _, actions, _ = _play({"prosumer_3": "best-response"})
    # others repeat the last book (sellers at 0.08, ample supply): b* = own bid, price = 0.5 b + 0.04,
    # so the best bid is the lowest that still trades: the feed-in price (a0 = -1), price 0.08
    for t in range(44, 52):
        assert actions[t]["prosumer_3"][0] == pytest.approx(-1.0)
        assert rewards[t, 3] - base[t, 3] == pytest.approx((0.19 - 0.08) * 0.15, rel=1e-5)
    # at night nobody sells: it falls back to the last clearing price and changes nothing
    np.testing.assert_allclose(rewards[:20, 3], base[:20, 3])


def test_best_response_in_cda_keeps_truthful_bid_when_price_is_the_standing_ask() -> None:
    env = p2p_gym.parallel_env("tiny", mechanism="cda", grid="none", episode_steps=96, start_day=0)
    policies = make_policies({"prosumer_3": "best-response"}, env)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(48):
        obs, *_ = env.step(act_all(policies, obs, rng))
    # orders arrive in agent order: the sellers' asks at 0.08 stand, so any bid >= 0.08 trades at 0.08;
    # all candidate prices tie and the tie goes to the truthful end (bid at retail, a0 = +1)
    assert policies["prosumer_3"].act(obs["prosumer_3"], rng)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("mechanism", ["mcafee", "vcg"])
def test_best_response_is_truthful_in_the_truthful_auctions(mechanism: str) -> None:
    """McAfee and VCG make the truthful report a dominant strategy, so against any repeated book the search never
    finds a better price than its limit (ties go to the truthful end); under uniform pricing it shades."""
    found = {}
    for mech in (mechanism, "uniform"):
        env = p2p_gym.parallel_env("tiny", mechanism=mech, grid="none", episode_steps=96, start_day=0)
        policies = make_policies("best-response", env)
        obs, _ = env.reset(seed=0)
        rng = np.random.default_rng(0)
        shaded = searched = 0
        for _ in range(60):
            actions = act_all(policies, obs, rng)
            for a, act in actions.items():
                is_buy = obs[a][3] < 0  # net < 0: a buyer bids retail (a0 = +1), a seller asks feed-in (−1)
                if abs(obs[a][3]) <= 1e-6 or policies[a]._others_book(is_buy) is None:
                    continue  # no order, or no book to search against (it quotes the last price)
                searched += 1
                shaded += abs(act[0] - (1.0 if is_buy else -1.0)) > 1e-6
            obs, *_ = env.step(actions)
        found[mech] = shaded
        assert searched > 20
    assert found[mechanism] == 0
    assert found["uniform"] > 0
