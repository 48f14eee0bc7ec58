"""The batched path against its oracle, the plain env: B episodes stepped together must equal B plain episodes
seeded ``seed + b`` under the same actions (observations, rewards, prices, volumes, welfare, grid KPIs)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from p2p_gym import market
from p2p_gym.env import P2PMarketEnv
from p2p_gym.env.batched import BatchedMarketEnv, clear_community_batch, clear_uniform_batch
from p2p_gym.errors import EnvConfigError
from tests.conftest import cached_scenario

warnings.filterwarnings("ignore")

TOL = 1e-9


def _actions(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """Random actions, partly out of range, with a few NaN/inf entries."""
    act = rng.uniform(-1.3, 1.3, (b, n, 3))
    bad = rng.random((b, n, 3)) < 0.02
    act[bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
    return act


def _compare(benv: BatchedMarketEnv, ref: P2PMarketEnv, seed: int, rtol: float = 0.0) -> None:
    """Run one batched episode and, with the same actions, ``benv.n_envs`` plain episodes (seeds seed + b)."""
    b_n, agents = benv.n_envs, ref.possible_agents
    rng = np.random.default_rng(seed)
    first = benv.reset(seed=seed)
    steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]] = []
    while True:
        act = _actions(rng, b_n, benv.n)
        obs, rew, done, info = benv.step(act)
        steps.append((act, obs, rew, info))
        scale = 1.0 + np.abs(info["bill"]).sum(axis=1)
        assert np.all(np.abs(info["money_balance"]) <= TOL * scale)
        assert np.all(np.abs(info["energy_balance_kwh"]) <= TOL * (1.0 + np.abs(info["p2p_volume_kwh"])))
        if done.all():
            break
        assert not done.any()
    assert len(steps) == benv.episode_steps

    def close(a: Any, b: Any) -> None:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=TOL)

    for b in range(b_n):
        obs0, _ = ref.reset(seed=seed + b)
        close(first[b], np.stack([obs0[a] for a in agents]))
        for act, obs_batch, rew_batch, info in steps:
            o, r, _, trunc, inf = ref.step({a: act[b, i] for i, a in enumerate(agents)})
            m = inf[agents[0]]["market"]
            close(obs_batch[b], np.stack([o[a] for a in agents]))
            close(rew_batch[b], [r[a] for a in agents])
            price = np.nan if m["clearing_price"] is None else m["clearing_price"]
            close(info["clearing_price"][b], price)  # nan == nan for assert_allclose
            close(info["p2p_volume_kwh"][b], m["p2p_volume_kwh"])
            close(info["welfare"][b], m["welfare"])
            close(info["welfare_no_trade"][b], m["welfare_no_trade"])
            close(info["penalty_total"][b], m["penalty_total"])
            assert info["t"][b] == m["t"]
            for key in ("bill", "p2p_sold_kwh", "p2p_bought_kwh", "grid_import_kwh", "battery_kw"):
                close(info[key][b], [inf[a][key] for a in agents])
            for key in ("clipped_actions", "nonfinite_actions"):
                np.testing.assert_array_equal(info[key][b], [inf[a][key] for a in agents])
            if benv.grid == "linear":
                for key, value in info["grid"].items():
                    close(value[b], m["grid"][key])
        assert all(trunc.values())


@pytest.mark.parametrize("grid", ["none", "linear"])
@pytest.mark.parametrize("mechanism", ["uniform", "mmr", "sdr", "bill_sharing"])
def test_matches_plain_env(mechanism: str, grid: str) -> None:
    sc = cached_scenario("default")
    # Vary the other options over the grid modes: rewards, observation extras, k.
    kw: dict[str, Any] = (
        {"reward": "savings", "forecast_steps": 2, "book_stats": True, "k": 0.3}
        if grid == "linear"
        else {"compute_optimum": True}
    )
    benv = BatchedMarketEnv(sc, n_envs=3, mechanism=mechanism, grid=grid, **kw)
    ref = P2PMarketEnv(sc, mechanism=mechanism, grid=grid, **kw)
    _compare(benv, ref, seed=7)


def test_grid_penalty_matches_plain_env() -> None:
    sc = cached_scenario("default_high_pv")  # overloads at midday, so the penalty is non-zero
    kw: dict[str, Any] = {"grid": "linear", "grid_penalty": 2.0, "start_day": 102, "episode_steps": 96}
    benv = BatchedMarketEnv(sc, n_envs=2, **kw)
    ref = P2PMarketEnv(sc, **kw)
    _compare(benv, ref, seed=3)
    benv.reset(seed=3)
    pen = [benv.step(np.zeros((2, benv.n, 3)))[3]["penalty_total"] for _ in range(96)]
    assert np.max(pen) > 0


def test_generators_match_plain_env() -> None:
    sc = cached_scenario("ieee39")  # dispatchable generators; MWh-sized books, hence a relative tolerance
    benv = BatchedMarketEnv(sc, n_envs=2, grid="none", episode_steps=24)
    ref = P2PMarketEnv(sc, grid="none", episode_steps=24)
    _compare(benv, ref, seed=5, rtol=1e-12)


def _random_books(rng: np.random.Generator, b: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    is_buy = rng.random((b, n)) < 0.5
    price = rng.choice([0.08, 0.12, 0.15, 0.2, 0.3], size=(b, n))  # few levels: many ties
    qty = np.where(rng.random((b, n)) < 0.8, rng.choice([0.5, 1.0, 2.0, 0.7], size=(b, n)), 0.0)
    return is_buy, price, qty


def _as_orders(is_buy: np.ndarray, price: np.ndarray, qty: np.ndarray) -> market.Orders:
    keep = np.flatnonzero(qty > 0)
    return market.Orders(agent=keep, is_buy=is_buy[keep], price=price[keep], quantity=qty[keep])


@pytest.mark.parametrize("k", [0.0, 0.5, 1.0])
def test_uniform_batch_equals_market_clear(k: float) -> None:
    rng = np.random.default_rng(1)
    is_buy, price, qty = _random_books(rng, 300, 7)
    bought, sold, clearing, volume = clear_uniform_batch(is_buy, price, qty, k)
    for b in range(len(qty)):
        res = market.clear(_as_orders(is_buy[b], price[b], qty[b]), "uniform", k=k, n_agents=7)
        np.testing.assert_allclose(bought[b], res.bought(7), atol=TOL)
        np.testing.assert_allclose(sold[b], res.sold(7), atol=TOL)
        np.testing.assert_allclose(clearing[b], res.clearing_price, atol=TOL)
        np.testing.assert_allclose(volume[b], res.volume, atol=TOL)


def test_community_batch_prices() -> None:
    rng = np.random.default_rng(2)
    is_buy, _, qty = _random_books(rng, 50, 6)
    retail, feed_in = np.full(50, 0.3), np.full(50, 0.08)
    for rule in ("mmr", "sdr", "bill_sharing"):
        bought, sold, price, volume = clear_community_batch(rule, is_buy, qty, retail, feed_in)
        np.testing.assert_allclose(bought.sum(axis=1), volume, atol=TOL)
        np.testing.assert_allclose(sold.sum(axis=1), volume, atol=TOL)
        s, d = np.where(is_buy, 0, qty).sum(axis=1), np.where(is_buy, qty, 0).sum(axis=1)
        buy_p, sell_p = market.pricing.PRICING_RULES[rule](s, d, retail, feed_in)
        np.testing.assert_allclose(price, np.where(s <= d, sell_p, buy_p))


def test_clipped_and_nonfinite_actions_are_counted() -> None:
    benv = BatchedMarketEnv(cached_scenario("tiny"), n_envs=2, episode_steps=4)
    benv.reset(seed=0)
    act = np.zeros((2, benv.n, 3))
    act[0, 0] = [np.nan, 2.0, -5.0]
    act[1, 1, 2] = np.inf
    info = benv.step(act)[3]
    assert info["clipped_actions"][0, 0] == 3 and info["nonfinite_actions"][0, 0] == 1
    assert info["clipped_actions"][1, 1] == 1 and info["nonfinite_actions"][1, 1] == 1
    assert info["clipped_actions"].sum() == 4
    clean = BatchedMarketEnv(cached_scenario("tiny"), n_envs=2, episode_steps=4)
    clean.reset(seed=0)
    fixed = np.zeros((2, benv.n, 3))
    fixed[0, 0] = [0.0, 1.0, -1.0]
    np.testing.assert_array_equal(clean.step(fixed)[3]["bill"], info["bill"])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mechanism": "cda"}, "mechanism"),
        ({"mechanism": "bilateral"}, "mechanism"),
        ({"mechanism": "pay_as_bid"}, "mechanism"),
        ({"grid": "ac"}, "grid"),
        ({"grid": "linear", "grid_policy": "block"}, "grid_policy"),
        ({"grid": "linear", "grid_policy": "fee"}, "grid_policy"),
        ({"peer_selection": True}, "peer_selection"),
        ({"peer_k": 2}, "peer_k"),
        ({"preference": "distance"}, "preference"),
        ({"render_mode": "human"}, "render_mode"),
        ({"grid_penalty": 1.0}, "grid_penalty"),
        ({"fee_per_kwh_km": 0.1}, "fee_per_kwh_km"),
        ({"reward": "profit"}, "reward"),
        ({"n_envs": 0}, "n_envs"),
        ({"k": 1.5}, "k"),
        ({"episode_steps": 0}, "episode_steps"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(EnvConfigError, match=field):
        BatchedMarketEnv(cached_scenario("tiny"), **kwargs)


def test_compute_optimum_with_generators_is_unsupported() -> None:
    with pytest.raises(EnvConfigError, match="compute_optimum"):
        BatchedMarketEnv(cached_scenario("ieee39"), compute_optimum=True)


def test_step_errors() -> None:
    benv = BatchedMarketEnv(cached_scenario("tiny"), n_envs=2, episode_steps=2)
    with pytest.raises(EnvConfigError, match="reset"):
        benv.step(np.zeros((2, benv.n, 3)))
    benv.reset(seed=0)
    with pytest.raises(EnvConfigError, match="actions"):
        benv.step(np.zeros((3, benv.n, 3)))
    benv.step(np.zeros((2, benv.n, 3)))
    assert benv.step(np.zeros((2, benv.n, 3)))[2].all()
    with pytest.raises(EnvConfigError, match="reset"):
        benv.step(np.zeros((2, benv.n, 3)))


def test_auto_reset_continues_each_generator() -> None:
    sc = cached_scenario("tiny")
    benv = BatchedMarketEnv(sc, n_envs=2, episode_steps=3, auto_reset=True)
    benv.reset(seed=4)
    for _ in range(3):
        obs, _, done, info = benv.step(np.zeros((2, benv.n, 3)))
    assert done.all() and "final_obs" in info
    for b in range(2):
        ref = P2PMarketEnv(sc, episode_steps=3)
        ref.reset(seed=4 + b)
        for _ in range(3):
            last, *_ = ref.step({a: np.zeros(3) for a in ref.possible_agents})
        np.testing.assert_array_equal(info["final_obs"][b], np.stack([last[a] for a in ref.possible_agents]))
        first, _ = ref.reset()  # the plain env's next episode, same generator
        np.testing.assert_array_equal(obs[b], np.stack([first[a] for a in ref.possible_agents]))
        assert benv.t[b] == ref.t


def test_vec_env_matches_shared_policy_vec_env() -> None:
    pytest.importorskip("stable_baselines3")
    from p2p_gym.env.batched import batched_vec_env
    from p2p_gym.wrappers import shared_policy_vec_env

    sc = cached_scenario("tiny")
    fast = batched_vec_env(n_envs=2, seed=3, scenario=sc, grid="none", episode_steps=3)
    slow = shared_policy_vec_env(lambda: P2PMarketEnv(sc, grid="none", episode_steps=3), n_envs=2, seed=3)
    assert fast.num_envs == slow.num_envs == 2 * sc.n_agents
    np.testing.assert_array_equal(fast.reset(), slow.reset())
    rng = np.random.default_rng(0)
    for _ in range(7):  # crosses two episode ends
        act = rng.uniform(-1, 1, (fast.num_envs, 3)).astype(np.float32)
        o1, r1, d1, i1 = fast.step(act)
        o2, r2, d2, i2 = slow.step(act)
        np.testing.assert_allclose(o1, o2, atol=TOL)
        np.testing.assert_allclose(r1, r2, atol=1e-6)  # float32 rewards
        np.testing.assert_array_equal(d1, d2)
        if d1.any():
            for a, b in zip(i1, i2, strict=True):
                np.testing.assert_allclose(a["terminal_observation"], b["terminal_observation"], atol=TOL)
