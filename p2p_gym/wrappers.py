"""Wrappers: one learner among fixed policies (gymnasium.Env), and a parameter-sharing vector env for SB3."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np

from p2p_gym.envs import BatchedMarketEnv, P2PMarketEnv
from p2p_gym.errors import EnvConfigError
from p2p_gym.rollout import observe, policy_action, reset_policies, truthful_action

Policy = Callable[[np.ndarray], np.ndarray] | Any

__all__ = ["SingleAgentEnv", "batched_vec_env", "shared_policy_vec_env", "truthful_action"]


class SingleAgentEnv(gymnasium.Env):
    """A ``gymnasium.Env`` for one learning agent among fixed policies in a :class:`P2PMarketEnv`.

    Args:
        parallel_env: the multi-agent environment (or keyword arguments to build one).
        agent: the learner's agent id (default: the first agent).
        others: the other agents' policy: ``None``/``"truthful"`` (truthful rule), one policy for all, or a dict
            agent id → policy. A policy has ``act(obs, rng)`` (the :mod:`agents` protocol), ``predict(obs)``
            (stable-baselines3) or is a callable ``obs -> action``.
    """

    metadata = {"render_modes": ["human", "rgb_array"]}

    def __init__(
        self,
        parallel_env: P2PMarketEnv | Mapping[str, Any],
        agent: str | None = None,
        others: Policy | Mapping[str, Policy] | None = None,
    ) -> None:
        self.env = (
            parallel_env if isinstance(parallel_env, P2PMarketEnv) else P2PMarketEnv(**dict(parallel_env))
        )
        self.agent = agent if agent is not None else self.env.possible_agents[0]
        if self.agent not in self.env.possible_agents:
            raise EnvConfigError(f"agent: {self.agent!r} is not one of {self.env.possible_agents}")
        self.others = others
        self.observation_space = self.env.observation_space(self.agent)
        self.action_space = self.env.action_space(self.agent)
        self.render_mode = self.env.render_mode
        self._obs: dict[str, np.ndarray] = {}

    def _policy(self, agent: str) -> Policy:
        if isinstance(self.others, Mapping):
            return self.others.get(agent)
        return self.others

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._obs, infos = self.env.reset(seed=seed, options=options)
        reset_policies(self._others_map())
        return self._obs[self.agent], infos[self.agent]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        n_act = int(np.prod(self.env.action_space(self.agent).shape))
        actions = {
            a: (
                action
                if a == self.agent
                else policy_action(
                    self._policy(a), self._obs[a], self.env.rng, n_act, self.env.static.obs_index
                )
            )
            for a in self.env.possible_agents
        }
        self._obs, rewards, terms, truncs, infos = self.env.step(actions)
        observe(self._others_map(), infos)
        a = self.agent
        return self._obs[a], rewards[a], terms[a], truncs[a], infos[a]

    def _others_map(self) -> dict[str, Any]:
        return {a: self._policy(a) for a in self.env.possible_agents if a != self.agent}

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def shared_policy_vec_env(env_fn: Callable[[], P2PMarketEnv], n_envs: int = 1, seed: int = 0) -> Any:
    """A stable-baselines3 ``VecEnv`` with parameter sharing: every agent of every episode is one sub-env.

    ``n_envs`` episodes of the env that ``env_fn`` builds are stepped together as one
    :class:`~p2p_gym.envs.BatchedMarketEnv` (same config and scenario); sub-env ``k · N + i`` is agent ``i`` of
    episode ``k``. All agents act with the one shared policy; episodes end together (fixed length) and are reset
    automatically with seeds ``seed + k + 10 000 · episode`` (the final observation is in
    ``infos[j]["terminal_observation"]``). Needs stable-baselines3 (the ``train`` extra).
    """
    env = env_fn()
    return batched_vec_env(n_envs=n_envs, seed=seed, scenario=env.scenario, config=env.config)


def batched_vec_env(n_envs: int = 1, seed: int = 0, **env_kwargs: Any) -> Any:
    """:func:`shared_policy_vec_env` from the arguments of :class:`~p2p_gym.envs.BatchedMarketEnv`.

    Per-agent infos hold ``bill`` (currency), ``clipped_actions`` and the step's ``clearing_price``
    (currency/kWh, nan without a price).
    """
    from stable_baselines3.common.vec_env import VecEnv

    env_kwargs.pop("auto_reset", None)
    benv = BatchedMarketEnv(n_envs=n_envs, **env_kwargs)
    n, n_act = benv.n, benv.n_actions

    class SharedPolicyVecEnv(VecEnv):
        def __init__(self) -> None:
            self.env = benv
            self.n_agents = n
            self.agent_ids = list(benv.possible_agents)
            super().__init__(n_envs * n, benv.agent_observation_space, benv.agent_action_space)
            self._seed = seed
            self._actions: np.ndarray | None = None
            self._episode = 0

        def reset(self) -> np.ndarray:
            obs, _ = benv.reset(seed=self._seed + 10_000 * self._episode)
            self._episode += 1
            return obs.reshape(-1, obs.shape[-1])

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = np.asarray(actions)

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
            if self._actions is None:
                raise EnvConfigError("step_wait: call step_async(actions) first")
            obs, rew, _term, trunc, info = benv.step(self._actions.reshape(n_envs, n, n_act))
            dones = np.repeat(trunc, n)
            flat_obs = obs.reshape(-1, obs.shape[-1])
            bill, clipped = info["bill"].ravel().tolist(), info["clipped_actions"].ravel().tolist()
            price = np.repeat(info["clearing_price"], n).tolist()
            infos: list[dict] = [
                {"bill": bill[j], "clipped_actions": clipped[j], "clearing_price": price[j]}
                for j in range(self.num_envs)
            ]
            if trunc.any():
                for j, d in enumerate(infos):
                    d["terminal_observation"] = flat_obs[j]
                    d["TimeLimit.truncated"] = True
                flat_obs = self.reset()
            return flat_obs, rew.ravel().astype(np.float32), dones, infos

        def close(self) -> None:
            benv.close()

        def seed(self, seed: int | None = None) -> list[int | None]:
            self._seed = 0 if seed is None else int(seed)
            self._episode = 0
            return [seed] * self.num_envs

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [getattr(benv, attr_name, None) for _ in self._get_indices(indices)]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            setattr(benv, attr_name, value)

        def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
            out = getattr(benv, method_name)(*args, **kwargs)
            return [out for _ in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False for _ in self._get_indices(indices)]

    return SharedPolicyVecEnv()
