"""Environments: thin adapters over the simulation core :mod:`p2p_gym.sim`.

* :class:`P2PMarketEnv` — the PettingZoo parallel env (:func:`p2p_gym.sim.step` with B = 1);
* :class:`BatchedMarketEnv` — B episodes at once, shaped like Gymnasium's vector API (the same step, B > 1);
* :mod:`p2p_gym.envs.p2p_market_v0` — PettingZoo's ``env()`` / ``parallel_env()`` / ``raw_env`` convention
  (fixed positions);
* :mod:`p2p_gym.envs.p2p_market_v1` — the same with committed dispatch (physical trades) by default.
"""

from __future__ import annotations

from p2p_gym.envs import p2p_market_v0, p2p_market_v1
from p2p_gym.envs.p2p_market_v0 import env, parallel_env
from p2p_gym.envs.parallel import P2PMarketEnv
from p2p_gym.envs.vector import BatchedMarketEnv
from p2p_gym.sim import (
    AUCTIONS,
    COMMUNITY_RULES,
    GRID_POLICIES,
    GRIDS,
    MECHANISMS,
    OBS_FEATURES,
    MarketConfig,
    StepOutcome,
)

__all__ = [
    "AUCTIONS",
    "COMMUNITY_RULES",
    "GRIDS",
    "GRID_POLICIES",
    "MECHANISMS",
    "OBS_FEATURES",
    "BatchedMarketEnv",
    "MarketConfig",
    "P2PMarketEnv",
    "StepOutcome",
    "env",
    "p2p_market_v0",
    "p2p_market_v1",
    "parallel_env",
]
