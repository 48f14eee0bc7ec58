"""PettingZoo module convention for the P2P market environment: ``env()``, ``parallel_env()`` and ``raw_env``.

>>> from p2p_gym.envs import p2p_market_v0
>>> penv = p2p_market_v0.parallel_env(scenario="tiny", grid="none")   # ParallelEnv
>>> aec = p2p_market_v0.env(scenario="tiny", grid="none")             # AECEnv, with order enforcing
"""

from __future__ import annotations

from typing import Any

from pettingzoo.utils import conversions, wrappers

from p2p_gym.envs.parallel import P2PMarketEnv

#: The parallel environment class (PettingZoo's ``raw_env`` name).
raw_env = P2PMarketEnv


def parallel_env(scenario: Any = None, *args: Any, **kwargs: Any) -> P2PMarketEnv:
    """The parallel PettingZoo environment (see :class:`~p2p_gym.envs.P2PMarketEnv` for every argument).

    Without ``scenario`` the scenario of ``config`` is used (``"default"`` without a config).

    ``max_cycles`` (PettingZoo's usual name) is accepted as an alias of ``episode_steps``.
    """
    if "max_cycles" in kwargs:
        kwargs["episode_steps"] = kwargs.pop("max_cycles")
    return P2PMarketEnv(scenario, *args, **kwargs)


def env(**kwargs: Any) -> Any:
    """The AEC version (PettingZoo's standard parallel → AEC conversion, with order enforcing)."""
    aec = conversions.parallel_to_aec(parallel_env(**kwargs))
    return wrappers.OrderEnforcingWrapper(aec)
