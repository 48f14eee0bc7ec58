"""p2p_gym: a PettingZoo environment for peer-to-peer electricity markets."""

from __future__ import annotations

from p2p_gym.errors import (
    EnvConfigError,
    GridError,
    MarketError,
    OptimError,
    P2PGymError,
    ScenarioError,
)

__version__ = "0.1.0"

__all__ = [
    "EnvConfigError",
    "GridError",
    "MarketError",
    "OptimError",
    "P2PGymError",
    "ScenarioError",
    "__version__",
]
