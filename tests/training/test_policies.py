"""Roll-outs used by the evaluation: determinism, slot replacement, model adapter."""

from __future__ import annotations

import numpy as np

from training.policies import ModelPolicy, mixed_factory, play

CFG = {"scenario": "tiny", "mechanism": "uniform", "grid": "linear", "episode_steps": 12}


def test_play_is_deterministic_and_baseline_slot_matches_rule() -> None:
    a = play(CFG, mixed_factory({"prosumer_0": None}, "zi-c", fill_learned_slots="zi-c"), 2, seed=5)
    b = play(CFG, mixed_factory({}, "zi-c"), 2, seed=5)
    assert a.episode_reward == b.episode_reward  # the baseline slot is exactly a ZI-C agent
    assert set(a.episode_reward) == {f"prosumer_{i}" for i in range(4)}
    assert "p2p_volume_kwh" in a.market


def test_model_policy_in_learned_slot() -> None:
    calls: list[np.ndarray] = []

    def model(obs: np.ndarray) -> np.ndarray:
        calls.append(obs)
        return np.array([-1.0, 1.0, 0.0], dtype=np.float32)  # ask the feed-in price for everything

    policy = ModelPolicy(model)
    res = play(CFG, mixed_factory({"prosumer_0": policy}, "zi-c"), 1, seed=1)
    assert len(calls) == 12 and calls[0].shape == (11,)
    truthful = play(
        CFG, mixed_factory({"prosumer_0": policy}, "zi-c", fill_learned_slots="truthful"), 1, seed=1
    )
    assert set(res.episode_reward) == set(truthful.episode_reward)
