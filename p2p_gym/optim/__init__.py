"""Optimisation baselines: the centralised P2P optimum (cvxpy) and the decentralised ADMM P2P market.

Pure numpy/cvxpy (pandapower is imported lazily by :func:`ieee39_problem` only).
"""

from p2p_gym.optim.admm import AsyncConfig, solve_admm
from p2p_gym.optim.centralized import DEFAULT_ALPHA, solve_centralized, solve_pool
from p2p_gym.optim.problem import InfeasibleError, P2PProblem, P2PSolution

__all__ = [
    "DEFAULT_ALPHA",
    "AsyncConfig",
    "InfeasibleError",
    "P2PProblem",
    "P2PSolution",
    "solve_admm",
    "solve_centralized",
    "solve_pool",
]
