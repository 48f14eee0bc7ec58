"""The canonical PettingZoo → SuperSuit → stable-baselines3 path of PettingZoo's tutorials works on this env as
written (parameter sharing: one sub-env per agent, several copies concatenated)."""

from __future__ import annotations

import numpy as np


def test_pettingzoo_supersuit_sb3_tutorial_path() -> None:
    import supersuit as ss
    from stable_baselines3 import PPO
    from stable_baselines3.common.utils import set_random_seed

    import p2p_gym

    env = p2p_gym.parallel_env("tiny", grid="none", episode_steps=16)
    n_agents = len(env.possible_agents)
    env = ss.pettingzoo_env_to_vec_env_v1(env)
    env = ss.concat_vec_envs_v1(env, 2, num_cpus=0, base_class="stable_baselines3")
    assert env.num_envs == 2 * n_agents
    # SuperSuit's ConcatVecEnv has no seed(): seed torch/numpy and the copies through reset(seed=) instead of
    # PPO(seed=...)
    set_random_seed(0)
    env.venv.reset(seed=0)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=64, n_epochs=1, verbose=0, device="cpu")
    model.learn(total_timesteps=2 * 32 * env.num_envs)
    assert model.num_timesteps >= 2 * 32 * env.num_envs
    obs = env.reset()
    action, _ = model.predict(obs, deterministic=True)
    obs, rewards, _dones, infos = env.step(action)
    assert obs.shape == (env.num_envs, *env.observation_space.shape)
    assert np.all(np.isfinite(rewards)) and len(infos) == env.num_envs
    env.close()
