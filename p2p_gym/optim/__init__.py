"""Optimisation baselines: the centralised P2P optimum (cvxpy) and the decentralised ADMM P2P market.

* :class:`P2PProblem` (validated instance) → :func:`solve_centralized` (cvxpy, Clarabel) or :func:`solve_admm`
  (decentralised ADMM of Le Goff Latimier & Ben Ahmed 2023, §4–6) → :class:`P2PSolution`;
* :func:`step_optimum`: the welfare optimum of one scenario step given the agents' positions;
* :func:`episode_optimum` → :class:`EpisodeOptimum`: the welfare optimum of a whole episode with perfect
  foresight (batteries, generators, tariff, optional DC line limits); :func:`episode_efficiency` against it;
* builders: :func:`from_positions` (one environment step with the grid supplier as peers),
  :func:`from_scenario_step`, :func:`ieee39_problem` (the 39-bus market of Chernova's thesis);
* exogenous network fees γ (Le Goff Latimier & Ben Ahmed 2023, eq. 12): :func:`uniform_fees`,
  :func:`distance_fees`, :func:`zonal_fees`;
* the joint energy–reserve market (Le Goff Latimier & Ben Ahmed 2023, §6.3, eq. 13–14): :class:`ReserveMarket`,
  :func:`solve_joint_centralized`, :func:`solve_p2p_reserve_admm`, :func:`allocate_delta`,
  :func:`case14_reserve_market` (:mod:`p2p_gym.optim.reserve_market`).

Pure numpy/cvxpy: pandapower is imported lazily by :func:`ieee39_problem` / :func:`ptdf_from_net` /
:func:`case14_reserve_market` only.
"""

from p2p_gym.optim.admm import AsyncConfig, solve_admm
from p2p_gym.optim.builders import (
    from_positions,
    from_scenario_step,
    ieee39_problem,
    ptdf_from_net,
    random_market,
)
from p2p_gym.optim.centralized import DEFAULT_ALPHA, solve_centralized, solve_pool
from p2p_gym.optim.episode import EpisodeOptimum, episode_efficiency, episode_optimum
from p2p_gym.optim.fees import distance_fees, uniform_fees, zonal_fees
from p2p_gym.optim.problem import InfeasibleError, P2PProblem, P2PSolution
from p2p_gym.optim.reserve_market import (
    ReserveMarket,
    allocate_delta,
    case14_reserve_market,
    solve_joint_centralized,
    solve_p2p_reserve_admm,
    solve_p2p_reserve_centralized,
)
from p2p_gym.optim.step_optimum import step_optimum

__all__ = [
    "DEFAULT_ALPHA",
    "AsyncConfig",
    "EpisodeOptimum",
    "InfeasibleError",
    "P2PProblem",
    "P2PSolution",
    "ReserveMarket",
    "allocate_delta",
    "case14_reserve_market",
    "distance_fees",
    "episode_efficiency",
    "episode_optimum",
    "from_positions",
    "from_scenario_step",
    "ieee39_problem",
    "ptdf_from_net",
    "random_market",
    "solve_admm",
    "solve_centralized",
    "solve_joint_centralized",
    "solve_p2p_reserve_admm",
    "solve_p2p_reserve_centralized",
    "solve_pool",
    "step_optimum",
    "uniform_fees",
    "zonal_fees",
]
