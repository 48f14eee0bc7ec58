"""Peer selectors choose as documented (hand-checked on the tiny feeder: 4 buses in a line, 0.1 km apart)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import p2p_gym
from agents import (
    CheapestPeers,
    GreenestPeers,
    NearestPeers,
    RandomPeers,
    WithPeerSelection,
    act_all,
    make_policies,
    policy_from_name,
)
from p2p_gym.envs import OBS_FEATURES
from p2p_gym.market import Trades


@pytest.fixture(scope="module")
def tiny_env():
    return p2p_gym.parallel_env(
        "tiny", mechanism="bilateral", grid="none", peer_selection=True, episode_steps=96
    )


def _obs(net: float) -> np.ndarray:
    o = np.zeros(len(OBS_FEATURES), dtype=np.float32)
    o[OBS_FEATURES.index("net")] = net
    return o


def test_nearest_on_tiny_line_feeder(tiny_env) -> None:
    rng = np.random.default_rng(0)
    sc = tiny_env.scenario
    # agent 0 (bus LV1): the adjacent agent 1; agent 2: its two neighbours 1 and 3; agent 3: agent 2
    assert list(NearestPeers.from_scenario(sc, 0, k=1).choose(_obs(0), rng)) == [1]
    assert sorted(NearestPeers.from_scenario(sc, 2, k=2).choose(_obs(0), rng)) == [1, 3]
    assert list(NearestPeers.from_scenario(sc, 3, k=1).choose(_obs(0), rng)) == [2]
    # equal distances (agent 1: 0 and 2 at 0.1 km) are broken by agent index
    assert list(NearestPeers.from_scenario(sc, 1, k=1).choose(_obs(0), rng)) == [0]
    # scores over the others in possible_agents order, self skipped: agent 2's others are (0, 1, 3)
    np.testing.assert_array_equal(NearestPeers.from_scenario(sc, 2, k=2).scores(_obs(0), rng), [-1, 1, 1])


def test_nearest_from_explicit_distances() -> None:
    d = np.array([[0, 5, 1, 3], [5, 0, 2, 2], [1, 2, 0, 9], [3, 2, 9, 0]], dtype=float)
    np.testing.assert_array_equal(
        NearestPeers(d, 0, k=2).scores(_obs(0), np.random.default_rng()), [-1, 1, 1]
    )


def test_greenest_prefers_largest_pv_only_among_pv_owners(tiny_env) -> None:
    rng = np.random.default_rng(0)
    kwp = np.array([1.0, 3.0, 0.0, 2.0])
    np.testing.assert_array_equal(GreenestPeers(kwp, 0, k=2).scores(_obs(0), rng), [1, -1, 1])  # peers 1, 3
    np.testing.assert_array_equal(GreenestPeers(kwp, 2, k=1).scores(_obs(0), rng), [-1, 1, -1])  # peer 1
    # tiny: only agents 0 and 1 have PV; agent 0 with k = 2 accepts just agent 1
    sc = tiny_env.scenario
    assert list(GreenestPeers(sc.pv_kwp, 0, k=2).choose(_obs(0), rng)) == [1]
    assert sorted(GreenestPeers(sc.pv_kwp, 3, k=2).choose(_obs(0), rng)) == [0, 1]


def _fake_env(buyer, seller, price, qty=None):
    qty = np.ones(len(buyer)) if qty is None else np.asarray(qty, float)
    n = len(buyer)
    tr = Trades(np.arange(n), np.arange(n), np.array(buyer), np.array(seller), qty, np.array(price, float))
    return SimpleNamespace(last_outcome=SimpleNamespace(result=SimpleNamespace(trades=tr)))


def test_cheapest_greedy_by_past_prices() -> None:
    rng = np.random.default_rng(0)
    sel = CheapestPeers(4, 0, k=2)
    # nothing known: untried peers first, by index
    assert sorted(sel.choose(_obs(-1), rng)) == [1, 2]
    sel.env = _fake_env(buyer=[0, 0, 2], seller=[1, 2, 3], price=[0.20, 0.15, 0.10])
    sel.observe_result({})
    # as a buyer: peer 3 untried (first), then peer 2 (0.15 < 0.20); the trade 2 <- 3 is not ours
    assert sorted(sel.choose(_obs(-1), rng)) == [2, 3]
    sel.env = _fake_env(buyer=[0, 0], seller=[3, 1], price=[0.25, 0.10], qty=[1.0, 3.0])
    sel.observe_result({})
    # means: peer 1 (0.20 + 3 * 0.10) / 4 = 0.125, peer 2 0.15, peer 3 0.25 -> the two cheapest 1, 2
    np.testing.assert_allclose(sel.mean_price(True)[1:], [0.125, 0.15, 0.25])
    assert sorted(sel.choose(_obs(-1), rng)) == [1, 2]
    # as a seller it has no history: first k untried by index
    assert sorted(sel.choose(_obs(+1), rng)) == [1, 2]
    sel.env = _fake_env(buyer=[3, 2, 1], seller=[0, 0, 0], price=[0.2, 0.1, 0.3])
    sel.observe_result({})
    assert sorted(sel.choose(_obs(+1), rng)) == [1, 3]  # the two that paid most
    sel.reset()
    assert np.isnan(sel.mean_price(True)).all()


def test_random_k_chooses_exactly_k_from_rng() -> None:
    sel = RandomPeers(6, 2, k=3)
    picks = [sel.scores(_obs(0), np.random.default_rng(s)) for s in range(50)]
    assert all((p == 1).sum() == 3 and (p == -1).sum() == 2 for p in picks)
    assert np.all(np.array(picks).max(axis=0) == 1)  # every peer chosen at some point
    np.testing.assert_array_equal(
        sel.scores(_obs(0), np.random.default_rng(7)), sel.scores(_obs(0), np.random.default_rng(7))
    )


def test_composed_names_set_peer_scores(tiny_env) -> None:
    obs, _ = tiny_env.reset(seed=0)
    rng = np.random.default_rng(0)
    p = policy_from_name("zi-c+nearest:1", tiny_env, "prosumer_3")
    assert isinstance(p, WithPeerSelection)
    a = p.act(obs["prosumer_3"], rng)
    assert a.shape == (6,) and np.all(np.abs(a) <= 1)
    np.testing.assert_array_equal(a[3:], [-1, -1, 1])  # others (0, 1, 2): only agent 2 is adjacent


def test_only_mutually_accepted_neighbours_trade_on_tiny(tiny_env) -> None:
    # nearest:2 accepts 0->{1,2}, 1->{0,2}, 2->{1,3}, 3->{2,1}; mutual seller/buyer pair at noon: 1 -> 2 only
    policies = make_policies("truthful+nearest:2", tiny_env)
    obs, _ = tiny_env.reset(seed=0, options={"start_day": 0})
    rng = np.random.default_rng(0)
    for _ in range(48):  # to 12:00
        obs, *_ = tiny_env.step(act_all(policies, obs, rng))
    tr = tiny_env.last_outcome.result.trades
    assert len(tr.quantity) > 0
    assert set(zip(tr.seller.tolist(), tr.buyer.tolist())) == {(1, 2)}
