"""PettingZoo environment layer: wires scenarios, market, grid and settlement."""

from __future__ import annotations

import sys
import types
from typing import Any

from pettingzoo.utils import conversions, wrappers

from p2p_gym.env.batched import BatchedMarketEnv, batched_vec_env
from p2p_gym.env.market_env import (
    AUCTIONS,
    COMMUNITY_RULES,
    GRID_POLICIES,
    GRIDS,
    MECHANISMS,
    OBS_FEATURES,
    P2PMarketEnv,
    StepOutcome,
    step_optimum,
)


def parallel_env(
    scenario: Any = "default",
    mechanism: str = "uniform",
    grid: str = "linear",
    peer_selection: bool = False,
    episode_steps: int = 96,
    render_mode: str | None = None,
    **kwargs: Any,
) -> P2PMarketEnv:
    """The parallel PettingZoo environment (see :class:`P2PMarketEnv` for every argument).

    ``max_cycles`` (PettingZoo's usual name) is accepted as an alias of ``episode_steps``.
    """
    if "max_cycles" in kwargs:
        episode_steps = int(kwargs.pop("max_cycles"))
    return P2PMarketEnv(scenario, mechanism, grid, peer_selection, episode_steps, render_mode, **kwargs)


def env(**kwargs: Any) -> Any:
    """The AEC version (PettingZoo's standard parallel→AEC conversion, with order enforcing)."""
    aec = conversions.parallel_to_aec(parallel_env(**kwargs))
    return wrappers.OrderEnforcingWrapper(aec)


__all__ = [
    "AUCTIONS",
    "COMMUNITY_RULES",
    "GRIDS",
    "GRID_POLICIES",
    "MECHANISMS",
    "OBS_FEATURES",
    "BatchedMarketEnv",
    "P2PMarketEnv",
    "StepOutcome",
    "batched_vec_env",
    "env",
    "parallel_env",
    "step_optimum",
]


class _CallableModule(types.ModuleType):
    """``p2p_gym.env`` is both this subpackage and the AEC constructor ``p2p_gym.env(**kwargs)`` of the API
    (PettingZoo's convention): calling the module builds the AEC environment."""

    def __call__(self, **kwargs: Any) -> Any:
        return env(**kwargs)


sys.modules[__name__].__class__ = _CallableModule
