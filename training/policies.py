"""Policies for training and evaluation: trained models behind the :mod:`agents` protocol, rule-based
baselines by name, and :func:`play`, which plays a policy per agent in the parallel environment (on the one
roll-out loop :func:`p2p_gym.rollout.play`) and summarises rewards and market KPIs."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2p_gym import rollout
from p2p_gym.envs import P2PMarketEnv, parallel_env
from p2p_gym.sim import MarketConfig


class ModelPolicy:
    """A trained model (stable-baselines3 ``predict`` or any ``obs -> action`` callable) with the
    :mod:`agents` protocol ``act(obs, rng)``; applies the observation normalisation it was trained with.

    Args:
        model: an object with ``predict(obs, deterministic=True)`` or a callable ``obs -> action``.
        normalizer: SB3 ``VecNormalize`` whose ``normalize_obs`` is applied first (``None``: raw obs).
        deterministic: act with the mean action instead of sampling.
    """

    def __init__(self, model: Any, normalizer: Any = None, deterministic: bool = True) -> None:
        self.model = model
        self.normalizer = normalizer
        self.deterministic = deterministic

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The model's action for one observation float[obs_dim] (``rng`` is unused)."""
        x = np.asarray(obs, dtype=np.float32)
        if self.normalizer is not None and getattr(self.normalizer, "norm_obs", False):
            x = np.asarray(self.normalizer.normalize_obs(x[None])[0], dtype=np.float32)
        if hasattr(self.model, "predict"):
            return np.asarray(self.model.predict(x, deterministic=self.deterministic)[0], dtype=np.float32)
        return np.asarray(self.model(x), dtype=np.float32)

    def act_batch(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Actions float32[k, A] for k observations float[k, obs_dim] at once (one forward pass of a
        stable-baselines3 model; a plain callable is called per row). Used when one policy plays many agents."""
        x = np.asarray(obs, dtype=np.float32)
        if self.normalizer is not None and getattr(self.normalizer, "norm_obs", False):
            x = np.asarray(self.normalizer.normalize_obs(x), dtype=np.float32)
        if hasattr(self.model, "predict"):
            return np.asarray(self.model.predict(x, deterministic=self.deterministic)[0], dtype=np.float32)
        return np.stack([np.asarray(self.model(row), dtype=np.float32) for row in x])


def rule_policy(name: str, env: P2PMarketEnv, agent_id: str) -> Any:
    """A rule-based policy of :mod:`agents` by name (``zi-c``, ``truthful``, ``zi-c+random-k``, ...)."""
    from agents import policy_from_name

    return policy_from_name(name, env, agent_id)


@dataclass(frozen=True)
class PlayResult:
    """Outcome of :func:`play`: per-agent mean episode reward and mean market KPIs."""

    episode_reward: dict[str, float]  # agent id -> mean over episodes of the summed reward (currency)
    episode_reward_std: dict[str, float]  # agent id -> standard deviation over episodes
    market: dict[str, float]  # KPI name -> mean over all steps of the numeric entries of infos["market"]
    #: per episode, the community's gains from trade (currency): Σ_t welfare − the episode's reference welfare (no
    #: trade, idle devices) with ``compute_optimum="episode"``, else Σ_t (welfare − welfare without trade)
    gains: tuple[float, ...] = ()
    #: per episode, the optimum's gains over the same reference (nan unless ``compute_optimum="episode"``)
    optimum_gains: tuple[float, ...] = ()
    #: per episode, Σ_t welfare (currency): policy-dependent; the gains of a run without the episode optimum are this
    #: minus the reference welfare of the same days measured once with ``compute_optimum="episode"``
    welfare: tuple[float, ...] = ()
    #: per episode, the welfare of the day without trade and with idle devices (nan unless ``"episode"``)
    reference_welfare: tuple[float, ...] = ()

    def mean_over(self, agent_ids: list[str]) -> float:
        """Mean episode reward over ``agent_ids``."""
        return float(np.mean([self.episode_reward[a] for a in agent_ids]))


PolicyFactory = Callable[[P2PMarketEnv, str], Any]


def play(
    env_config: Mapping[str, Any] | MarketConfig,
    policies: Mapping[str, Any] | PolicyFactory,
    episodes: int = 3,
    seed: int = 0,
) -> PlayResult:
    """Play ``episodes`` episodes with one policy per agent (on the roll-out loop :func:`p2p_gym.rollout.play`).

    Args:
        env_config: keyword arguments of :func:`p2p_gym.parallel_env`, or a :class:`~p2p_gym.sim.MarketConfig`.
        policies: agent id -> policy (``act(obs, rng)``), or a factory ``(env, agent_id) -> policy`` called once
            on a fresh environment (rule-based agents need the env to read its scenario).
        episodes: number of episodes; episode ``e`` is reset with seed ``seed + e`` (so two calls with the same
            seed play the same days).
        seed: base seed.

    The policies draw from the environment's generator ``env.rng`` (re-seeded by each reset), so an episode's
    random actions follow from its seed alone.
    """
    if isinstance(env_config, MarketConfig):
        env = parallel_env(config=env_config)
    else:
        env = parallel_env(**dict(env_config))
    agent_ids = list(env.possible_agents)
    pol = {a: policies(env, a) for a in agent_ids} if callable(policies) else dict(policies)
    kpi_sum: dict[str, float] = {}
    kpi_n: dict[str, int] = {}

    def add_kpis(env: Any, infos: Mapping[str, Any], rewards: Mapping[str, float]) -> tuple[float, ...]:
        market = infos[agent_ids[0]].get("market") or {}
        for key, value in market.items():
            if isinstance(value, (int, float, np.number)) and math.isfinite(float(value)):
                kpi_sum[key] = kpi_sum.get(key, 0.0) + float(value)
                kpi_n[key] = kpi_n.get(key, 0) + 1
        keys = ("welfare", "welfare_no_trade", "episode_reference_welfare", "episode_welfare_optimum")
        return tuple(math.nan if market.get(k) is None else float(market[k]) for k in keys)

    try:
        played = rollout.play(env, pol, _EnvRng(env), episodes=episodes, seed=seed, on_step=add_kpis)
    finally:
        env.close()
    totals = np.asarray([ep.returns for ep in played], dtype=np.float64).reshape(episodes, len(agent_ids))
    gains, best, welfare, references = [], [], [], []
    for ep in played:
        rec = np.asarray(ep.records, dtype=np.float64).reshape(-1, 4)
        reference, optimum = rec[-1, 2], rec[-1, 3]
        welfare.append(float(rec[:, 0].sum()))
        references.append(float(reference))
        if math.isfinite(reference):
            gains.append(float(rec[:, 0].sum() - reference))
            best.append(float(optimum - reference))
        else:
            gains.append(float((rec[:, 0] - rec[:, 1]).sum()))
            best.append(math.nan)
    return PlayResult(
        episode_reward={a: float(totals[:, i].mean()) for i, a in enumerate(agent_ids)},
        episode_reward_std={a: float(totals[:, i].std()) for i, a in enumerate(agent_ids)},
        market={k: kpi_sum[k] / kpi_n[k] for k in kpi_sum},
        gains=tuple(gains),
        optimum_gains=tuple(best),
        welfare=tuple(welfare),
        reference_welfare=tuple(references),
    )


class _EnvRng:
    """The generator ``env.rng`` of the moment: a reset with a seed replaces it, so the roll-out loop gets this
    proxy, which every draw reaches through, instead of the generator before the first reset."""

    def __init__(self, env: P2PMarketEnv) -> None:
        self._env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env.rng, name)


def mixed_factory(
    learned: Mapping[str, Any], fill: str, fill_learned_slots: str | None = None
) -> PolicyFactory:
    """A factory giving the learned policy in its slots and the rule ``fill`` elsewhere; with
    ``fill_learned_slots`` the learned slots are played by that rule instead (the baseline comparison)."""

    def factory(env: P2PMarketEnv, agent_id: str) -> Any:
        if agent_id in learned:
            return (
                learned[agent_id]
                if fill_learned_slots is None
                else rule_policy(fill_learned_slots, env, agent_id)
            )
        return rule_policy(fill, env, agent_id)

    return factory
