"""The one roll-out loop: policies × parallel environment → per-step records.

Evaluation (``p2p-gym run``, ``p2p-gym eval``, the studies), training callbacks and the single-agent wrapper all
play episodes through :func:`play` and resolve policies through :func:`policy_action`.

A *policy* is any of: an object with ``act(obs, rng) -> action`` (the :mod:`agents` protocol; optional
``reset()`` at each episode start and ``observe_result(info)`` after each step), a stable-baselines3 model
(``predict(obs, deterministic=True)``), a callable ``obs -> action``, or ``None`` / ``"truthful"`` (offer the
whole position at the outside-option price).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from p2p_gym.errors import EnvConfigError
from p2p_gym.sim.stages import OBS_FEATURES

__all__ = ["Episode", "play", "policy_action", "truthful_action"]

_NET = OBS_FEATURES.index("net")


def truthful_action(
    obs: np.ndarray, n_actions: int, obs_index: Mapping[str, int] | None = None
) -> np.ndarray:
    """The truthful rule: offer the whole position at the outside-option price (a buyer bids retail, a seller
    asks feed-in), battery idle, accept every peer.

    With ``dispatch="committed"`` (``obs_index`` of the env holding ``reference_action``) the order is the
    inflexible position and no device moves: the *myopic* truthful agent (quantity entry = the observed
    ``reference_action``, fallback share 0). With ``reserve=True`` (``obs_index`` holding the reserve features) it
    offers all its headroom as reserve at a capacity price of 0 (the last three entries; :mod:`agents.reserve`).
    """
    a = np.zeros(n_actions, dtype=np.float32)
    a[3:] = 1.0
    if obs_index is not None and "reserve_price_up" in obs_index:
        a[-1] = -1.0
    if obs_index is not None and "reference_action" in obs_index:
        a[0] = 1.0 if obs[obs_index["inflexible_net"]] < 0 else -1.0
        a[1] = obs[obs_index["reference_action"]]
        a[2] = -1.0
        return a
    a[0] = 1.0 if obs[_NET] < 0 else -1.0
    a[1] = 1.0
    return a


def policy_action(
    policy: Any,
    obs: np.ndarray,
    rng: np.random.Generator,
    n_actions: int,
    obs_index: Mapping[str, int] | None = None,
) -> np.ndarray:
    """The action float32[A] of one policy (see the module docstring for what a policy can be)."""
    if policy is None or (isinstance(policy, str) and policy == "truthful"):
        return truthful_action(obs, n_actions, obs_index)
    if hasattr(policy, "act"):
        return np.asarray(policy.act(obs, rng), dtype=np.float32)
    if hasattr(policy, "predict"):  # a stable-baselines3 model
        return np.asarray(policy.predict(obs, deterministic=True)[0], dtype=np.float32)
    if callable(policy):
        return np.asarray(policy(obs), dtype=np.float32)
    raise EnvConfigError(f"policy: must have act(obs, rng), predict(obs) or be callable, got {policy!r}")


def all_actions(
    policies: Mapping[str, Any],
    obs: Mapping[str, np.ndarray],
    agents: list[str],
    rng: np.random.Generator,
    n_actions: int,
    obs_index: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Every agent's action, in ``agents`` order. A policy object with ``act_batch(obs float[k, D], rng)`` that plays
    several agents (a shared trained policy) is asked once for all of them, in one forward pass; the others act one
    by one, in agent order, so their draws from ``rng`` are those of the unbatched loop (a batched policy must not
    draw from ``rng``)."""
    actions: dict[str, np.ndarray] = {}
    groups: dict[int, list[str]] = {}
    for a in agents:
        p = policies.get(a)
        if p is not None and hasattr(p, "act_batch"):
            groups.setdefault(id(p), []).append(a)
        else:
            actions[a] = policy_action(p, obs[a], rng, n_actions, obs_index)
    for ids in groups.values():
        batch = policies[ids[0]].act_batch(np.stack([obs[a] for a in ids]), rng)
        for a, act in zip(ids, np.asarray(batch, dtype=np.float32), strict=True):
            actions[a] = act
    return {a: actions[a] for a in agents}


def reset_policies(policies: Mapping[str, Any]) -> None:
    """Call ``reset()`` on every policy that has it (start of an episode)."""
    for p in policies.values():
        if hasattr(p, "reset"):
            p.reset()


def observe(policies: Mapping[str, Any], infos: Mapping[str, Any]) -> None:
    """Call ``observe_result(infos[a])`` on every policy that has it (after a step)."""
    for a, p in policies.items():
        if a in infos and hasattr(p, "observe_result"):
            p.observe_result(infos[a])


@dataclass
class Episode:
    """What :func:`play` returns for one episode."""

    seed: int | None
    rewards: np.ndarray  # float[T, N] reward of each agent at each step (currency)
    records: list[Any] = field(
        default_factory=list
    )  # whatever ``on_step`` returned at each step (if not None)

    @property
    def returns(self) -> np.ndarray:
        """float[N] summed reward of each agent."""
        return self.rewards.sum(axis=0)


def play(
    env: Any,
    policies: Mapping[str, Any],
    rng: np.random.Generator,
    episodes: int = 1,
    seed: int | None = None,
    on_step: Callable[[Any, Mapping[str, Any], Mapping[str, float]], Any] | None = None,
    progress: Any = None,
) -> list[Episode]:
    """Play ``episodes`` episodes of the parallel env ``env`` with one policy per agent.

    Args:
        env: a :class:`~p2p_gym.envs.P2PMarketEnv` (or any PettingZoo parallel env with its infos).
        policies: agent id → policy; agents without one play the truthful rule.
        rng: the generator policies draw from (passed to ``act``).
        episodes: number of episodes; episode ``e`` is reset with ``seed + e`` (``seed=None``: the env continues
            its own generator).
        seed: base seed of the env's resets.
        on_step: called after every step as ``on_step(env, infos, rewards)``; what it returns (if not None) is
            appended to the episode's ``records``.
        progress: an object with ``update(1)`` called after every step (e.g. a tqdm bar).

    Returns:
        One :class:`Episode` per episode.
    """
    agent_ids = list(env.possible_agents)
    n_act = int(np.prod(env.action_space(agent_ids[0]).shape))
    static = getattr(env, "static", None)
    obs_index = static.obs_index if static is not None else None
    out = []
    for e in range(episodes):
        ep_seed = None if seed is None else seed + e
        obs, _ = env.reset(seed=ep_seed)
        reset_policies(policies)
        rewards, records = [], []
        while env.agents:
            actions = all_actions(policies, obs, env.agents, rng, n_act, obs_index)
            obs, rew, _term, _trunc, infos = env.step(actions)
            observe(policies, infos)
            rewards.append([rew[a] for a in agent_ids])
            if on_step is not None:
                rec = on_step(env, infos, rew)
                if rec is not None:
                    records.append(rec)
            if progress is not None:
                progress.update(1)
        out.append(
            Episode(ep_seed, np.asarray(rewards, dtype=np.float64).reshape(-1, len(agent_ids)), records)
        )
    return out
