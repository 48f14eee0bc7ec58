"""The simulation core: one market interval of B simulations as pure functions on arrays, without gymnasium or
pettingzoo.

* :class:`MarketConfig` — every option, declared and validated once (the CLI flags and YAML derive from it);
* :func:`build` (config, scenario) → :class:`SimStatic` — the constants derived once (grid model, sensitivities,
  fees, preferences, observation layout);
* :class:`SimState` — the dynamic state with a batch axis (``soc_kwh[B, N]``, ``last_price[B]``, ...);
* :func:`step` (static, state, actions[B, N, A]) → (state, :class:`Outcome`) — decode → assets → orders →
  clear → injections → grid check → grid policy → settle → rewards; :func:`observations` of a state.

Both environments (:mod:`p2p_gym.envs`) are this step with B = 1 (the PettingZoo env) and B > 1 (the vector env).

Example:
    >>> import numpy as np
    >>> from p2p_gym import sim
    >>> static = sim.build(sim.MarketConfig(scenario="tiny", grid="none", episode_steps=4))
    >>> state = sim.initial_state(static, days=[0, 1])
    >>> state, out = sim.step(static, state, np.zeros((2, static.n, static.n_actions)))
    >>> out.bills.shape, sim.observations(static, state).shape
    ((2, 4), (2, 4, 11))
"""

from p2p_gym.sim.config import (
    AUCTIONS,
    COMMUNITY_RULES,
    GRID_POLICIES,
    GRIDS,
    MECHANISMS,
    OPTIMA,
    REWARDS,
    MarketConfig,
    add_config_arguments,
    config_from_args,
    field_names,
)
from p2p_gym.sim.stages import OBS_BOUND, OBS_FEATURES, observations
from p2p_gym.sim.state import SimState
from p2p_gym.sim.static import SimStatic, build
from p2p_gym.sim.step import Outcome, StepOutcome, initial_state, step

__all__ = [
    "AUCTIONS",
    "COMMUNITY_RULES",
    "GRIDS",
    "GRID_POLICIES",
    "MECHANISMS",
    "OBS_BOUND",
    "OBS_FEATURES",
    "OPTIMA",
    "REWARDS",
    "MarketConfig",
    "Outcome",
    "SimState",
    "SimStatic",
    "StepOutcome",
    "add_config_arguments",
    "build",
    "config_from_args",
    "field_names",
    "initial_state",
    "observations",
    "step",
]
