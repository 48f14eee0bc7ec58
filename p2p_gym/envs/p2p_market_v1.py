"""PettingZoo module convention for version 1 of the P2P market environment: ``env()``, ``parallel_env()`` and
``raw_env``, with **committed dispatch** by default.

Version 1 makes trades physical: orders are commitments that the agents' flexible assets (battery, EV charging,
heat pump, flexible demand, PV curtailment, generators) deliver after the market and the DSO's rule, so the grid
sees the cleared outcome (:mod:`p2p_gym.sim.assets`). The action's entries 1 and 2 change meaning: entry 1 is
the planned net injection within the agent's flexibility range (``flex_min`` at −1, ``flex_max`` at +1; the
observation's ``reference_action`` gives the entry of the inflexible position), entry 2 the share of the
unmatched flexible part executed against the grid. Version 0 (:mod:`p2p_gym.envs.p2p_market_v0`, and
``p2p_gym.parallel_env``) keeps fixed positions; ``dispatch="fixed"`` selects them here too.

>>> from p2p_gym.envs import p2p_market_v1
>>> penv = p2p_market_v1.parallel_env(scenario="tiny", grid="none")
>>> penv.config.dispatch
'committed'
"""

from __future__ import annotations

from typing import Any

from pettingzoo.utils import conversions, wrappers

from p2p_gym.envs.parallel import P2PMarketEnv


def parallel_env(scenario: Any = None, *args: Any, **kwargs: Any) -> P2PMarketEnv:
    """The parallel PettingZoo environment, version 1 (every argument of :class:`~p2p_gym.envs.P2PMarketEnv`;
    ``dispatch`` defaults to ``"committed"`` unless given, directly or in ``config``)."""
    if "max_cycles" in kwargs:
        kwargs["episode_steps"] = kwargs.pop("max_cycles")
    if "dispatch" not in kwargs and kwargs.get("config") is None:
        kwargs["dispatch"] = "committed"
    return P2PMarketEnv(scenario, *args, **kwargs)


#: PettingZoo's ``raw_env`` name: the parallel environment of this version.
raw_env = parallel_env


def env(**kwargs: Any) -> Any:
    """The AEC version (PettingZoo's standard parallel → AEC conversion, with order enforcing)."""
    aec = conversions.parallel_to_aec(parallel_env(**kwargs))
    return wrappers.OrderEnforcingWrapper(aec)
