"""ZI-C / ZI-U limits and ZIP margin updates (hand-worked)."""

from __future__ import annotations

import numpy as np
import pytest

from agents import ZIP, ZeroIntelligence, feature
from p2p_gym.envs import OBS_FEATURES


def _obs(net: float, retail: float = 0.30, feed_in: float = 0.08) -> np.ndarray:
    o = np.zeros(len(OBS_FEATURES), dtype=np.float32)
    o[OBS_FEATURES.index("net")] = net
    o[OBS_FEATURES.index("retail_price")] = retail
    o[OBS_FEATURES.index("feed_in_price")] = feed_in
    return o


def test_zi_c_never_quotes_at_a_loss() -> None:
    rng = np.random.default_rng(1)
    zi = ZeroIntelligence(constrained=True)
    values = rng.uniform(1, 200, 5000)
    bids = np.array([zi.quote(v, True, rng, 1.0, 200.0) for v in values])
    asks = np.array([zi.quote(c, False, rng, 1.0, 200.0) for c in values])
    assert np.all(bids <= values) and np.all(bids >= 1.0)
    assert np.all(asks >= values) and np.all(asks <= 200.0)
    # uniform on [low, limit]: the mean bid relative position is 1/2
    assert np.mean((bids - 1.0) / (values - 1.0)) == pytest.approx(0.5, abs=0.02)


def test_zi_u_ignores_its_limit() -> None:
    rng = np.random.default_rng(2)
    zi = ZeroIntelligence(constrained=False)
    bids = np.array([zi.quote(50.0, True, rng, 1.0, 200.0) for _ in range(4000)])
    assert bids.min() >= 1.0 and bids.max() <= 200.0
    # a buyer with value 50 bids above its value with probability (200 - 50) / 199
    assert np.mean(bids > 50.0) == pytest.approx(150 / 199, abs=0.03)


def test_zi_in_env_actions_within_bounds_and_zi_u_clipped_mass() -> None:
    rng = np.random.default_rng(3)
    zic, ziu = ZeroIntelligence(True, n_actions=6), ZeroIntelligence(False, n_actions=6)
    for net in (-0.5, 0.7):
        a_c = np.array([zic.act(_obs(net), rng) for _ in range(4000)])
        a_u = np.array([ziu.act(_obs(net), rng) for _ in range(4000)])
        for a in (a_c, a_u):
            assert a.shape == (4000, 6) and a.dtype == np.float32
            assert np.all(a >= -1) and np.all(a <= 1)
        assert np.all(a_c[:, 1] == 1.0) and np.all(a_c[:, 2] == 0.0) and np.all(a_c[:, 3:] == 1.0)
        # ZI-C: a0 uniform on [-1, 1]; ZI-U: band 0.5 -> 0.5 / 2 = 25 % of the draws at each tariff
        assert np.mean(a_c[:, 0] == 1.0) == 0.0
        assert np.mean(a_u[:, 0] == 1.0) == pytest.approx(0.25, abs=0.03)
        assert np.mean(a_u[:, 0] == -1.0) == pytest.approx(0.25, abs=0.03)


def test_zip_seller_raises_toward_trade_price_hand_worked() -> None:
    # seller, cost 100, Cliff's relative margin 0.1 -> quote 110; a trade at 120 (p <= q) raises the margin.
    # no perturbation (c_r = c_a = 0): target 120, delta = 0.5 (120 - 110) = 5, gamma = 0 -> new price 115.
    z = ZIP(beta=0.5, gamma=0.0, margin=0.1, c_r=0.0, c_a=0.0)
    rng = np.random.default_rng(0)
    assert z.quote(100.0, False) == pytest.approx(110.0)
    z.learn(100.0, False, shout_price=120.0, traded=True, shout_is_bid=True, rng=rng)
    assert z.quote(100.0, False) == pytest.approx(115.0)
    assert z.margin[False] == pytest.approx(0.15)
    # momentum gamma = 0.5 on the next update: target 120, delta = 0.5 (120 - 115) = 2.5,
    # Gamma = 0.5 * 5 + 0.5 * 2.5 = 3.75 -> price 118.75
    z.gamma = 0.5
    z.learn(100.0, False, shout_price=120.0, traded=True, shout_is_bid=True, rng=rng)
    assert z.quote(100.0, False) == pytest.approx(118.75)


def test_zip_buyer_lowers_after_trade_and_raises_after_rejected_bid() -> None:
    rng = np.random.default_rng(0)
    # buyer value 100, margin 0.2 -> bid 80; trade at 70 (p >= q): target 70, new bid 80 + 0.5 (70 - 80) = 75
    z = ZIP(beta=0.5, gamma=0.0, margin=0.2, c_r=0.0, c_a=0.0)
    z.learn(100.0, True, shout_price=70.0, traded=True, shout_is_bid=False, rng=rng)
    assert z.quote(100.0, True) == pytest.approx(75.0)
    # a rejected bid at 90 (p = 75 <= 90): raise toward 90 -> 75 + 0.5 * 15 = 82.5
    z.learn(100.0, True, shout_price=90.0, traded=False, shout_is_bid=True, rng=rng)
    assert z.quote(100.0, True) == pytest.approx(82.5)
    # a rejected bid at 60 below our price: no change (Cliff's rule needs p <= q)
    z.learn(100.0, True, shout_price=60.0, traded=False, shout_is_bid=True, rng=rng)
    assert z.quote(100.0, True) == pytest.approx(82.5)


def test_zip_margin_never_negative_and_perturbation_bounds() -> None:
    rng = np.random.default_rng(5)
    z = ZIP(beta=1.0, gamma=0.0, margin=0.1, c_r=0.05, c_a=0.05)
    # seller cost 100 asks 110; rejected offer at 50 -> target below 50, price cannot go under the cost
    z.learn(100.0, False, shout_price=50.0, traded=False, shout_is_bid=False, rng=rng)
    assert z.margin[False] == 0.0 and z.quote(100.0, False) == pytest.approx(100.0)
    # raise: with beta 1 the new price is the target R q + A scale, R in [1, 1.05], A in [0, 0.05] (scale 100)
    z.learn(100.0, False, shout_price=120.0, traded=True, shout_is_bid=True, rng=rng)
    assert 120.0 <= z.quote(100.0, False) <= 120.0 * 1.05 + 5.0


def test_zip_in_env_moves_toward_clearing_price() -> None:
    # env units: seller limit x = 0, margin 0.2 -> x = 0.2 (price 0.08 + 0.2 * 0.22 = 0.124)
    z = ZIP(beta=0.5, gamma=0.0, margin=0.2, c_r=0.0, c_a=0.0)
    rng = np.random.default_rng(0)
    a = z.act(_obs(0.5), rng)
    assert a[0] == pytest.approx(2 * 0.2 - 1)
    # it sold at a clearing price of 0.19 (x = 0.5): new x = 0.2 + 0.5 (0.5 - 0.2) = 0.35
    z.observe_result({"p2p_sold_kwh": 1.0, "p2p_bought_kwh": 0.0, "market": {"clearing_price": 0.19, "t": 3}})
    assert z.margin[False] == pytest.approx(0.35)
    # as a buyer (margin 0.2 -> x = 0.8) without a fill while the market cleared at x = 0.9: raise to 0.85
    z.act(_obs(-0.5), rng)
    z.observe_result(
        {"p2p_sold_kwh": 0.0, "p2p_bought_kwh": 0.0, "market": {"clearing_price": 0.08 + 0.9 * 0.22}}
    )
    assert 1.0 - z.margin[True] == pytest.approx(0.85)
    # nothing cleared: its own bid is the rejected shout, target = R * p with R = 1 (c_r = 0): no move
    z.act(_obs(-0.5), rng)
    z.observe_result({"p2p_sold_kwh": 0.0, "p2p_bought_kwh": 0.0, "market": {"clearing_price": float("nan")}})
    assert 1.0 - z.margin[True] == pytest.approx(0.85)
    # ... with c_r = 0.1 and beta = 1 the bid rises to R * 0.85, R in [1, 1.1]; a seller's ask falls likewise
    z2 = ZIP(beta=1.0, gamma=0.0, margin=0.2, c_r=0.1, c_a=0.0)
    nothing = {"p2p_sold_kwh": 0.0, "p2p_bought_kwh": 0.0, "market": {"clearing_price": None}}
    z2.act(_obs(-0.5), rng)
    z2.observe_result(nothing)
    assert 0.8 < 1.0 - z2.margin[True] <= 0.8 * 1.1 + 1e-9
    z2.act(_obs(0.5), rng)
    z2.observe_result(nothing)
    assert 0.2 * 0.9 - 1e-9 <= z2.margin[False] < 0.2
    # no order placed (zero position): nothing learnt
    before = dict(z2.margin)
    z2.act(_obs(0.0), rng)
    z2.observe_result(nothing)
    assert z2.margin == before
    z.reset()
    assert z.margin == {True: 0.2, False: 0.2}


def test_feature_reads_named_entries() -> None:
    assert feature(_obs(0.25, retail=0.4), "retail_price") == pytest.approx(0.4)
