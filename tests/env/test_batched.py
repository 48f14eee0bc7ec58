"""The batched path against its oracle, the plain env: B episodes stepped together must equal B plain episodes
seeded ``seed + b`` under the same actions (observations, rewards, prices, volumes, welfare, grid KPIs)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from p2p_gym import market
from p2p_gym.envs import MECHANISMS, BatchedMarketEnv, P2PMarketEnv
from p2p_gym.envs.vector import AGENT_INFOS
from p2p_gym.errors import EnvConfigError
from p2p_gym.market import clear_community_batch, clear_uniform_batch
from tests.conftest import cached_scenario

warnings.filterwarnings("ignore")

TOL = 1e-9


def _actions(rng: np.random.Generator, b: int, n: int, n_act: int = 3) -> np.ndarray:
    """Random actions, partly out of range, with a few NaN/inf entries."""
    act = rng.uniform(-1.3, 1.3, (b, n, n_act))
    bad = rng.random((b, n, n_act)) < 0.02
    act[bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
    return act


def _compare(
    benv: BatchedMarketEnv, ref: P2PMarketEnv, seed: int, rtol: float = 0.0, atol: float = TOL
) -> None:
    """Run one batched episode and, with the same actions, ``benv.num_envs`` plain episodes (seeds seed + b)."""
    b_n, agents = benv.num_envs, ref.possible_agents
    rng = np.random.default_rng(seed)
    first, _ = benv.reset(seed=seed)
    steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]] = []
    while True:
        act = _actions(rng, b_n, benv.n, benv.n_actions)
        obs, rew, term, trunc, info = benv.step(act)
        assert not term.any()
        steps.append((act, obs, rew, info))
        scale = 1.0 + np.abs(info["bill"]).sum(axis=1)
        assert np.all(np.abs(info["money_balance"]) <= TOL * scale)
        assert np.all(np.abs(info["energy_balance_kwh"]) <= TOL * (1.0 + np.abs(info["p2p_volume_kwh"])))
        if trunc.all():
            break
        assert not trunc.any()
    assert len(steps) == benv.episode_steps

    def close(a: Any, b: Any) -> None:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)

    for b in range(b_n):
        obs0, _ = ref.reset(seed=seed + b)
        close(first[b], np.stack([obs0[a] for a in agents]))
        for act, obs_batch, rew_batch, info in steps:
            o, r, _, trunc, inf = ref.step({a: act[b, i] for i, a in enumerate(agents)})
            m = inf[agents[0]]["market"]
            close(obs_batch[b], np.stack([o[a] for a in agents]))
            close(rew_batch[b], [r[a] for a in agents])
            for key in ("clearing_price", "welfare_optimum", "efficiency"):  # None = nan
                close(info[key][b], np.nan if m[key] is None else m[key])
            for key in (
                "p2p_volume_kwh",
                "welfare",
                "welfare_no_trade",
                "penalty_total",
                "fees_total",
                "blocked_kwh",
            ):
                close(info[key][b], m[key])
            assert info["t"][b] == m["t"] and info["blocked_trades"][b] == m["blocked_trades"]
            if "n_trades" in info:
                assert info["n_trades"][b] == m["n_trades"]
            for key in AGENT_INFOS:
                close(info[key][b], [inf[a][key] for a in agents])
            for key in (
                "ev_kw",
                "hp_kw",
                "flex_kw",
                "pv_used_kw",
                "utility",
                "battery_cost",
            ):  # committed dispatch
                assert (key in info) == (key in inf[agents[0]])
                if key in info:
                    close(info[key][b], [inf[a][key] for a in agents])
            if benv.config.grid != "none":
                for key, value in info["grid"].items():
                    close(value[b], np.nan if m["grid"][key] is None else m["grid"][key])
        assert all(trunc.values())


#: A covering set runs in the main suite (every mechanism, grid mode and policy at least once); the full matrix
#: of mechanism × grid mode × grid policy is marked slow.
_COVER = {
    ("uniform", "linear", "report"),
    ("pay_as_bid", "linear", "block"),
    ("cda", "none", "fee"),
    ("bilateral", "linear", "fee"),
    ("bilateral", "ac", "block"),
    ("mmr", "ac", "report"),
    ("sdr", "none", "report"),
    ("bill_sharing", "linear", "block"),
}
CASES = [
    pytest.param(mech, grid, policy, marks=() if (mech, grid, policy) in _COVER else pytest.mark.slow)
    for mech in MECHANISMS
    for grid in ("none", "linear", "ac")
    for policy in ("report", "block", "fee")
    if not (policy == "block" and grid == "none")
]


@pytest.mark.parametrize(("mechanism", "grid", "grid_policy"), CASES)
def test_matches_plain_env(mechanism: str, grid: str, grid_policy: str) -> None:
    """Every mechanism × grid mode × grid policy, over a full day: the batched env equals B plain envs."""
    sc = cached_scenario("tiny")
    kw: dict[str, Any] = {
        "mechanism": mechanism,
        "grid": grid,
        "grid_policy": grid_policy,
        "block_threshold_pct": 1.0,  # the tiny feeder is lightly loaded: make the rule act
        "fee_per_kwh_km": 0.2,
        "peer_selection": mechanism == "bilateral",
        "peer_obs": mechanism == "bilateral",
        "compute_optimum": True,
        "start_day": 2,
    }
    if grid == "linear":
        kw.update(reward="savings", forecast_steps=2, book_stats=True, k=0.3, grid_penalty=1.0)
    benv = BatchedMarketEnv(sc, n_envs=2, **kw)
    ref = P2PMarketEnv(sc, **kw)
    # AC rows are warm-started from each other in the batch, so they agree to the power flow's tolerance.
    _compare(benv, ref, seed=7, rtol=1e-5 if grid == "ac" else 0.0, atol=1e-6 if grid == "ac" else TOL)


def test_vectorised_clearing_equals_per_book_clearing() -> None:
    """The batch form of the uniform auction and the community rules (used when B > 1 and no rule needs the
    individual trades) against market.clear per book, inside the env (default scenario, 20 agents)."""
    sc = cached_scenario("default")
    for mechanism in ("uniform", "mmr", "sdr", "bill_sharing"):
        kw: dict[str, Any] = {
            "mechanism": mechanism,
            "grid": "linear",
            "grid_penalty": 0.5,
            "compute_optimum": True,
            "episode_steps": 32,
        }
        benv = BatchedMarketEnv(sc, n_envs=3, **kw)
        benv.reset(seed=11)
        benv.step(np.zeros((3, benv.n, 3)))
        assert "n_trades" not in benv._infos(benv.last_step)  # the vectorised path ran
        _compare(BatchedMarketEnv(sc, n_envs=3, **kw), P2PMarketEnv(sc, **kw), seed=11)


def test_grid_penalty_matches_plain_env() -> None:
    sc = cached_scenario("default_high_pv")  # overloads at midday, so the penalty is non-zero
    kw: dict[str, Any] = {"grid": "linear", "grid_penalty": 2.0, "start_day": 102, "episode_steps": 96}
    benv = BatchedMarketEnv(sc, n_envs=2, **kw)
    ref = P2PMarketEnv(sc, **kw)
    _compare(benv, ref, seed=3)
    benv.reset(seed=3)
    pen = [benv.step(np.zeros((2, benv.n, 3)))[4]["penalty_total"] for _ in range(96)]
    assert np.max(pen) > 0


def test_generators_match_plain_env() -> None:
    sc = cached_scenario("ieee39")  # dispatchable generators; MWh-sized books, hence a relative tolerance
    kw: dict[str, Any] = {"grid": "none", "episode_steps": 12, "compute_optimum": True}
    benv = BatchedMarketEnv(sc, n_envs=2, **kw)
    ref = P2PMarketEnv(sc, **kw)
    _compare(benv, ref, seed=5, rtol=1e-9)


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
    info = benv.step(act)[4]
    assert info["clipped_actions"][0, 0] == 3 and info["nonfinite_actions"][0, 0] == 1
    assert info["clipped_actions"][1, 1] == 1 and info["nonfinite_actions"][1, 1] == 1
    assert info["clipped_actions"].sum() == 4
    clean = BatchedMarketEnv(cached_scenario("tiny"), n_envs=2, episode_steps=4)
    clean.reset(seed=0)
    fixed = np.zeros((2, benv.n, 3))
    fixed[0, 0] = [0.0, 1.0, -1.0]
    np.testing.assert_array_equal(clean.step(fixed)[4]["bill"], info["bill"])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mechanism": "vickrey"}, "mechanism"),
        ({"grid": "dc"}, "grid"),
        ({"grid": "none", "grid_policy": "block"}, "grid_policy"),
        ({"grid_policy": "veto"}, "grid_policy"),
        ({"peer_k": 9}, "peer_k"),
        ({"preference": "cost"}, "preference"),
        ({"preference": np.ones((2, 2))}, "preference"),
        ({"render_mode": "video"}, "render_mode"),
        ({"grid": "none", "grid_penalty": 1.0}, "grid_penalty"),
        ({"fee_per_kwh_km": -0.1}, "fee_per_kwh_km"),
        ({"reward": "profit"}, "reward"),
        ({"n_envs": 0}, "n_envs"),
        ({"k": 1.5}, "k"),
        ({"episode_steps": 0}, "episode_steps"),
        ({"start_day": 400}, "start_day"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(EnvConfigError, match=field):
        BatchedMarketEnv(cached_scenario("tiny"), **kwargs)


def test_gymnasium_vector_api_shapes() -> None:
    benv = BatchedMarketEnv(cached_scenario("tiny"), n_envs=3, peer_selection=True)
    n, a = benv.n, benv.n_actions
    assert a == 3 + n - 1 and benv.num_envs == 3
    assert benv.single_action_space.shape == (n, a) and benv.action_space.shape == (3, n, a)
    assert benv.single_observation_space.shape == (n, benv.n_obs)
    assert benv.observation_space.shape == (3, n, benv.n_obs)
    obs, infos = benv.reset(seed=0)
    assert obs.shape == (3, n, benv.n_obs) and infos == {}
    assert benv.observation_space.contains(obs)
    obs, rew, term, trunc, info = benv.step(benv.action_space.sample())
    assert rew.shape == (3, n) and term.shape == trunc.shape == (3,) and info["bill"].shape == (3, n)


def test_step_errors() -> None:
    benv = BatchedMarketEnv(cached_scenario("tiny"), n_envs=2, episode_steps=2)
    with pytest.raises(EnvConfigError, match="reset"):
        benv.step(np.zeros((2, benv.n, 3)))
    benv.reset(seed=0)
    with pytest.raises(EnvConfigError, match="actions"):
        benv.step(np.zeros((3, benv.n, 3)))
    with pytest.raises(EnvConfigError, match="actions"):
        benv.step([["buy"] * 3] * 2)
    benv.step(np.zeros((2, benv.n, 3)))
    assert benv.step(np.zeros((2, benv.n, 3)))[3].all()
    with pytest.raises(EnvConfigError, match="reset"):
        benv.step(np.zeros((2, benv.n, 3)))


def test_auto_reset_continues_each_generator() -> None:
    sc = cached_scenario("tiny")
    benv = BatchedMarketEnv(sc, n_envs=2, episode_steps=3, auto_reset=True)
    benv.reset(seed=4)
    for _ in range(3):
        obs, _, _, done, info = benv.step(np.zeros((2, benv.n, 3)))
    assert done.all() and "final_obs" in info and "bill" in info["final_info"]
    for b in range(2):
        ref = P2PMarketEnv(sc, episode_steps=3)
        ref.reset(seed=4 + b)
        for _ in range(3):
            last, *_ = ref.step({a: np.zeros(3) for a in ref.possible_agents})
        np.testing.assert_array_equal(info["final_obs"][b], np.stack([last[a] for a in ref.possible_agents]))
        first, _ = ref.reset()  # the plain env's next episode, same generator
        np.testing.assert_array_equal(obs[b], np.stack([first[a] for a in ref.possible_agents]))
        assert benv.t[b] == ref.t


def test_vec_env_matches_plain_envs() -> None:
    """The SB3 parameter-sharing VecEnv against plain envs stepped by hand (seeds seed + k + 10 000 · episode)."""
    pytest.importorskip("stable_baselines3")
    from p2p_gym.wrappers import shared_policy_vec_env

    sc = cached_scenario("tiny")
    vec = shared_policy_vec_env(lambda: P2PMarketEnv(sc, grid="none", episode_steps=3), n_envs=2, seed=3)
    envs = [P2PMarketEnv(sc, grid="none", episode_steps=3) for _ in range(2)]
    agents = envs[0].possible_agents
    n = len(agents)
    assert vec.num_envs == 2 * n

    def stacked(obs: list[dict[str, np.ndarray]]) -> np.ndarray:
        return np.stack([o[a] for o in obs for a in agents])

    episode = 0
    ref_obs = stacked([e.reset(seed=3 + k)[0] for k, e in enumerate(envs)])
    np.testing.assert_array_equal(vec.reset(), ref_obs)
    rng = np.random.default_rng(0)
    for _ in range(7):  # crosses two episode ends
        act = rng.uniform(-1, 1, (vec.num_envs, 3)).astype(np.float32)
        o1, r1, d1, i1 = vec.step(act)
        steps = [e.step({a: act[k * n + i] for i, a in enumerate(agents)}) for k, e in enumerate(envs)]
        np.testing.assert_allclose(r1, [s[1][a] for s in steps for a in agents], atol=1e-6)  # float32
        np.testing.assert_allclose([d["bill"] for d in i1], [s[4][a]["bill"] for s in steps for a in agents])
        done = all(all(s[3].values()) for s in steps)
        assert d1.all() == done and d1.any() == done
        if done:
            episode += 1
            np.testing.assert_allclose(
                [d["terminal_observation"] for d in i1], stacked([s[0] for s in steps]), atol=TOL
            )
            ref_obs = stacked([e.reset(seed=3 + k + 10_000 * episode)[0] for k, e in enumerate(envs)])
        else:
            ref_obs = stacked([s[0] for s in steps])
        np.testing.assert_allclose(o1, ref_obs, atol=TOL)


def test_render_frames_equal_the_plain_envs_frames() -> None:
    """rgb_array: one frame per sub-episode, pixel-identical to the plain env playing the same episode (with
    bilateral trades, which both paths form individually)."""
    kw: dict[str, Any] = {"grid": "linear", "episode_steps": 3, "mechanism": "bilateral"}
    venv = BatchedMarketEnv("tiny", 2, render_mode="rgb_array", **kw)
    venv.reset(seed=5)
    act = np.random.default_rng(0).uniform(-1, 1, (2, venv.n, venv.n_actions))
    venv.step(act)
    frames = venv.render()
    assert isinstance(frames, tuple) and len(frames) == 2
    for b in range(2):
        env = P2PMarketEnv("tiny", render_mode="rgb_array", **kw)
        env.reset(seed=5 + b)
        env.step({a: act[b, i] for i, a in enumerate(env.possible_agents)})
        ref = env.render()
        env.close()
        assert frames[b].shape == ref.shape and frames[b].dtype == np.uint8
        assert np.array_equal(frames[b], ref)
    assert not np.array_equal(frames[0], frames[1])  # two different days
    venv.close()
    with pytest.raises(EnvConfigError, match="render_mode"):
        BatchedMarketEnv("tiny", 2, render_mode="video")


def test_config_alone_selects_the_scenario() -> None:
    """`parallel_env(config=...)` uses the config's scenario (not the default one)."""
    import p2p_gym
    from p2p_gym.sim import MarketConfig

    env = p2p_gym.parallel_env(config=MarketConfig(scenario="tiny", grid="none"))
    assert env.scenario.name == "tiny" and env.n == 4
    venv = BatchedMarketEnv(config=MarketConfig(scenario="tiny", grid="none"), n_envs=2)
    assert venv.n == 4


@pytest.mark.parametrize(
    ("mechanism", "grid", "grid_policy"),
    [("uniform", "linear", "report"), ("bilateral", "linear", "block"), ("sdr", "none", "report")],
)
def test_committed_dispatch_matches_plain_env(mechanism: str, grid: str, grid_policy: str) -> None:
    """dispatch="committed" with EVs, a heat pump and flexible demand: the batched env equals B plain envs."""
    sc = cached_scenario("tiny")
    hp = np.zeros_like(sc.load_kw)
    hp[:, 2] = 0.8
    sc = sc.replace(
        ev_sessions=[[0, 4, 40, 3.0, 3.7], [3, 100, 130, 4.0, 7.4]], hp_kw=hp, hp_max_kw=[0, 0, 2.0, 0],
        hp_band_kwh=[0, 0, 1.0, 0], flex_max_kw=[0, 0, 0, 1.0], flex_util_a=[0, 0, 0, 0.1],
        flex_util_b=[0, 0, 0, 0.3],
    )  # fmt: skip
    kw: dict[str, Any] = {"mechanism": mechanism, "grid": grid, "grid_policy": grid_policy,
                          "block_threshold_pct": 1.0, "dispatch": "committed", "compute_optimum": True,
                          "start_day": 1}  # fmt: skip
    benv = BatchedMarketEnv(sc, n_envs=2, **kw)
    ref = P2PMarketEnv(sc, **kw)
    _compare(benv, ref, seed=5, rtol=0.0, atol=TOL)
