"""Single-agent wrapper (SB3 check_env) and the parameter-sharing vector env."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from p2p_gym.envs import parallel_env
from p2p_gym.wrappers import SingleAgentEnv, shared_policy_vec_env, truthful_action
from tests.conftest import cached_scenario

warnings.filterwarnings("ignore")


def test_single_agent_env_passes_sb3_check_env() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env

    env = SingleAgentEnv(parallel_env(cached_scenario("tiny"), episode_steps=8), agent="prosumer_2")
    check_env(env, warn=True)


def test_single_agent_env_others_follow_their_policy() -> None:
    calls = []

    def seller_policy(obs: np.ndarray) -> np.ndarray:
        calls.append(obs)
        return np.array([-1.0, 1.0, 0.0])

    env = SingleAgentEnv(
        parallel_env(cached_scenario("tiny"), episode_steps=4), agent="prosumer_3", others=seller_policy
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape
    _, reward, term, trunc, info = env.step(np.zeros(3, dtype=np.float32))
    assert len(calls) == 3  # the three other agents
    assert np.isfinite(reward) and not term and not trunc and "bill" in info


def test_truthful_action_sides() -> None:
    obs = np.zeros(11, dtype=np.float32)
    obs[3] = -0.5  # net < 0: a buyer bids the retail price
    assert truthful_action(obs, 3)[0] == 1.0
    obs[3] = 0.5
    assert truthful_action(obs, 3)[0] == -1.0


def test_shared_policy_vec_env_steps_all_agents() -> None:
    pytest.importorskip("stable_baselines3")
    vec = shared_policy_vec_env(
        lambda: parallel_env(cached_scenario("tiny"), episode_steps=3), n_envs=2, seed=5
    )
    assert vec.num_envs == 8
    obs = vec.reset()
    assert obs.shape == (8, vec.observation_space.shape[0])
    for _step in range(3):
        obs, rew, dones, infos = vec.step(np.zeros((8, 3), dtype=np.float32))
        assert rew.shape == (8,) and len(infos) == 8
    assert dones.all() and "terminal_observation" in infos[0]
