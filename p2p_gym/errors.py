"""Exception hierarchy of p2p_gym.

Every error raised for bad user input is a ``ValueError`` subclass whose message names the field, the
value received and the allowed range, so that callers can catch either ``P2PGymError`` or ``ValueError``.
"""

from __future__ import annotations


class P2PGymError(Exception):
    """Base class of every error raised by p2p_gym."""


class ScenarioError(P2PGymError, ValueError):
    """A scenario name or scenario override is invalid."""


class MarketError(P2PGymError, ValueError):
    """Orders or clearing arguments are invalid."""


class GridError(P2PGymError, ValueError):
    """Arguments to the grid model are invalid (shape, finiteness, mode)."""


class GridEngineError(GridError):
    """The requested power-flow engine cannot model the network (``GridModel(engine="auto")`` then falls back to
    pandapower)."""


class OptimError(P2PGymError, ValueError):
    """An optimisation problem is malformed, infeasible, or a solver failed."""


class EnvConfigError(P2PGymError, ValueError):
    """Environment constructor arguments are invalid."""


class MetricError(P2PGymError, ValueError):
    """A metric got scores it cannot aggregate (empty, non-finite, bad shape or option)."""
