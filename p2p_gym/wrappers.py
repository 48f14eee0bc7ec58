"""Wrappers: one learner among fixed policies (gymnasium.Env), and a parameter-sharing vector env for SB3."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np

from p2p_gym.env.market_env import OBS_FEATURES, P2PMarketEnv
from p2p_gym.errors import EnvConfigError

Policy = Callable[[np.ndarray], np.ndarray] | Any

_NET = OBS_FEATURES.index("net")
_HAS_BAT = OBS_FEATURES.index("has_battery")


def truthful_action(obs: np.ndarray, n_actions: int) -> np.ndarray:
    """The truthful rule: offer the whole position at the outside-option price (a buyer bids retail, a seller
    asks feed-in), battery idle, accept every peer."""
    a = np.zeros(n_actions, dtype=np.float32)
    a[0] = 1.0 if obs[_NET] < 0 else -1.0
    a[1] = 1.0
    a[3:] = 1.0
    return a


def _call(policy: Policy, obs: np.ndarray, rng: np.random.Generator, n_actions: int) -> np.ndarray:
    if policy is None or policy == "truthful":
        return truthful_action(obs, n_actions)
    if hasattr(policy, "act"):
        return np.asarray(policy.act(obs, rng), dtype=np.float32)
    if hasattr(policy, "predict"):  # a stable-baselines3 model
        return np.asarray(policy.predict(obs, deterministic=True)[0], dtype=np.float32)
    if callable(policy):
        return np.asarray(policy(obs), dtype=np.float32)
    raise EnvConfigError(
        f"others: a policy must have act(obs, rng), predict(obs) or be callable, got {policy!r}"
    )


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
        for a in self.env.possible_agents:
            policy = self._policy(a)
            if a != self.agent and hasattr(policy, "reset"):
                policy.reset()
        return self._obs[self.agent], infos[self.agent]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        n_act = int(np.prod(self.env.action_space(self.agent).shape))
        actions = {
            a: (action if a == self.agent else _call(self._policy(a), self._obs[a], self.env.rng, n_act))
            for a in self.env.possible_agents
        }
        self._obs, rewards, terms, truncs, infos = self.env.step(actions)
        for a in self.env.possible_agents:
            policy = self._policy(a)
            if a != self.agent and hasattr(policy, "observe_result"):
                policy.observe_result(infos[a])
        a = self.agent
        return self._obs[a], rewards[a], terms[a], truncs[a], infos[a]

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def shared_policy_vec_env(env_fn: Callable[[], P2PMarketEnv], n_envs: int = 1, seed: int = 0) -> Any:
    """A stable-baselines3 ``VecEnv`` with parameter sharing: every agent of every env copy is one sub-env.

    ``n_envs`` copies of the multi-agent env are stepped together; sub-env ``k · N + i`` is agent ``i`` of copy
    ``k``. All agents act with the one shared policy; episodes of all copies end together (fixed length) and are
    reset automatically (the final observation is in ``infos[i]["terminal_observation"]``). Copy ``k`` is seeded
    with ``seed + k``. Needs stable-baselines3 (the ``train`` extra).
    """
    from stable_baselines3.common.vec_env import VecEnv

    class SharedPolicyVecEnv(VecEnv):
        def __init__(self) -> None:
            self.envs = [env_fn() for _ in range(n_envs)]
            first = self.envs[0]
            self.agent_ids = list(first.possible_agents)
            self.n_agents = len(self.agent_ids)
            super().__init__(
                n_envs * self.n_agents,
                first.observation_space(self.agent_ids[0]),
                first.action_space(self.agent_ids[0]),
            )
            self._seed = seed
            self._actions: np.ndarray | None = None
            self._episode = 0

        def _stack(self, per_env: list[dict[str, Any]]) -> np.ndarray:
            return np.stack([d[a] for d in per_env for a in self.agent_ids])

        def reset(self) -> np.ndarray:
            obs = [e.reset(seed=self._seed + k + 10_000 * self._episode)[0] for k, e in enumerate(self.envs)]
            self._episode += 1
            return self._stack(obs)

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = np.asarray(actions)

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
            assert self._actions is not None
            obs_l, rew, dones, infos = [], [], [], []
            for k, e in enumerate(self.envs):
                acts = {a: self._actions[k * self.n_agents + i] for i, a in enumerate(self.agent_ids)}
                obs, r, term, trunc, info = e.step(acts)
                done = any(term.values()) or any(trunc.values())
                for a in self.agent_ids:
                    d = dict(info[a])
                    if done:
                        d["terminal_observation"] = obs[a]
                        d["TimeLimit.truncated"] = bool(trunc[a] and not term[a])
                    infos.append(d)
                    rew.append(r[a])
                    dones.append(done)
                if done:
                    obs = e.reset(seed=self._seed + k + 10_000 * self._episode)[0]
                obs_l.append(obs)
            if any(dones):
                self._episode += 1
            return self._stack(obs_l), np.asarray(rew, dtype=np.float32), np.asarray(dones), infos

        def close(self) -> None:
            for e in self.envs:
                e.close()

        def seed(self, seed: int | None = None) -> list[int | None]:
            self._seed = 0 if seed is None else int(seed)
            self._episode = 0
            return [seed] * self.num_envs

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [
                getattr(self.envs[i // self.n_agents], attr_name, None) for i in self._get_indices(indices)
            ]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            for i in self._get_indices(indices):
                setattr(self.envs[i // self.n_agents], attr_name, value)

        def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
            return [
                getattr(self.envs[i // self.n_agents], method_name)(*args, **kwargs)
                for i in self._get_indices(indices)
            ]

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False for _ in self._get_indices(indices)]

        def get_images(self) -> list[Any]:
            return [e.render() for e in self.envs]

    return SharedPolicyVecEnv()
