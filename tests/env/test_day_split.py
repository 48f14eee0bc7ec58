"""``day_split``: random episodes start on train days or on the held-out test days (every fifth day), never both."""

from __future__ import annotations

import numpy as np
import pytest

import p2p_gym
from p2p_gym.envs import BatchedMarketEnv
from p2p_gym.sim import MarketConfig


def _days(env, n: int) -> set[int]:  # type: ignore[no-untyped-def]
    seen = set()
    for i in range(n):
        env.reset(seed=i)
        seen.add(int(env.sim_state.t0[0]) // env.scenario.steps_per_day)
    return seen


def test_train_and_test_days_are_disjoint_and_test_is_every_fifth_day() -> None:
    kw = {"scenario": "tiny", "episode_steps": 96, "grid": "none"}
    n_days = p2p_gym.parallel_env(**kw).static.n_start_days
    test = _days(p2p_gym.parallel_env(**kw, day_split="test"), 60)
    train = _days(p2p_gym.parallel_env(**kw, day_split="train"), 200)
    assert test and train and not test & train
    assert test == {d for d in range(n_days) if d % 5 == 4}  # 60 draws hit every one of the few test days
    assert max(train) < n_days
    # the batched env draws from the same days
    venv = BatchedMarketEnv(config=MarketConfig(**kw, day_split="test"), n_envs=8)
    venv.reset(seed=0)
    assert {int(t) // 96 for t in venv.sim_state.t0} <= test


def test_all_keeps_the_draws_of_earlier_versions() -> None:
    """``"all"`` draws ``rng.integers(n_days)`` exactly as before the option existed."""
    env = p2p_gym.parallel_env(scenario="tiny", episode_steps=96, grid="none")
    env.reset(seed=7)
    assert int(env.sim_state.t0[0]) // 96 == int(np.random.default_rng(7).integers(env.static.n_start_days))


def test_an_empty_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="day_split"):
        p2p_gym.parallel_env(scenario="tiny", episode_steps=96 * 4, grid="none", day_split="test")
    with pytest.raises(ValueError, match="day_split"):
        MarketConfig(day_split="validation")
