"""p2p_gym: a PettingZoo environment for peer-to-peer electricity markets.

The core (``p2p_gym.market``, ``p2p_gym.optim``, ``p2p_gym.grid``, ``p2p_gym.scenarios``) imports lazily, so
``import p2p_gym.market`` does not pull in gymnasium, pettingzoo or pandapower.

``p2p_gym.parallel_env(...)`` builds the parallel PettingZoo environment and ``p2p_gym.env(...)`` the AEC one;
the environments live in :mod:`p2p_gym.envs`, the gym-free simulation core in :mod:`p2p_gym.sim`.
"""

from __future__ import annotations

from typing import Any

from p2p_gym.errors import (
    EnvConfigError,
    GridError,
    MarketError,
    OptimError,
    P2PGymError,
    ScenarioError,
)

__version__ = "0.1.0"


def parallel_env(*args: Any, **kwargs: Any) -> Any:
    """The parallel PettingZoo environment; see :class:`p2p_gym.envs.P2PMarketEnv`."""
    from p2p_gym.envs import parallel_env as _parallel_env

    return _parallel_env(*args, **kwargs)


def env(**kwargs: Any) -> Any:
    """The AEC PettingZoo environment (PettingZoo's parallel → AEC conversion with order enforcing)."""
    from p2p_gym.envs import env as _env

    return _env(**kwargs)


def make(task_id: str, **overrides: Any) -> Any:
    """A registered task configuration; see :data:`p2p_gym.registration.TASKS`."""
    from p2p_gym.registration import make as _make

    return _make(task_id, **overrides)


__all__ = [
    "EnvConfigError",
    "GridError",
    "MarketError",
    "OptimError",
    "P2PGymError",
    "ScenarioError",
    "__version__",
    "env",
    "make",
    "parallel_env",
]
