"""Construction shared by both environments: arguments → (MarketConfig, SimStatic), and action stacking."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from p2p_gym.errors import EnvConfigError
from p2p_gym.sim import MarketConfig, SimStatic, build
from p2p_gym.sim.config import POSITIONAL, field_names


class SimEnvBase:
    """What both environments read the same way from their :class:`~p2p_gym.sim.SimStatic` (and the figure
    they render into)."""

    static: SimStatic
    config: MarketConfig
    _fig: Any = None

    @property
    def scenario(self) -> Any:
        return self.static.scenario

    @property
    def mechanism(self) -> str:
        return self.config.mechanism

    @property
    def episode_steps(self) -> int:
        return self.config.episode_steps

    def close(self) -> None:
        if self._fig is not None:
            import matplotlib.pyplot as plt

            plt.close(self._fig)
            self._fig = None


def make_static(
    scenario: Any, args: Sequence[Any], options: Mapping[str, Any], config: MarketConfig | None
) -> SimStatic:
    """The simulation constants of an environment built as ``Env(scenario, *args, config=..., **options)``.

    ``args`` are the PettingZoo-style positional options (mechanism, grid, peer_selection, episode_steps);
    ``options`` any :class:`~p2p_gym.sim.MarketConfig` field; ``config`` a whole config that they override.
    ``scenario`` is a name or a :class:`~p2p_gym.scenarios.Scenario` (then ``config.scenario`` is its name).
    """
    if len(args) > len(POSITIONAL):
        raise EnvConfigError(
            f"arguments: at most {1 + len(POSITIONAL)} positional arguments, got {1 + len(args)}"
        )
    given = dict(zip(POSITIONAL, args))
    for name, value in options.items():
        if name in given:
            raise EnvConfigError(f"{name}: given both positionally and by keyword")
        given[name] = value
    unknown = sorted(set(given) - set(field_names()))
    if unknown:
        raise EnvConfigError(f"{unknown[0]}: unknown option; options are {list(field_names())}")
    from p2p_gym.scenarios import Scenario

    sc_obj = scenario if isinstance(scenario, Scenario) else None
    if scenario is not None and sc_obj is None:
        if not isinstance(scenario, str):
            raise EnvConfigError(f"scenario: expected a name or Scenario, got {type(scenario).__name__}")
        given["scenario"] = scenario
    elif sc_obj is not None:
        given["scenario"] = sc_obj.name
    base = config if config is not None else MarketConfig()
    if not isinstance(base, MarketConfig):
        raise EnvConfigError(f"config: expected a MarketConfig, got {type(base).__name__}")
    cfg = base.replace(**given) if given else base
    return build(cfg, sc_obj)


def stack_actions(actions: Any, agent_ids: Sequence[str], n_actions: int) -> np.ndarray:
    """float[N, A] from a dict agent id → action; errors name the agent (missing, wrong size, not numeric)."""
    if not isinstance(actions, Mapping):
        raise EnvConfigError(f"actions: expected a dict agent id -> action, got {type(actions).__name__}")
    try:  # fast path: every agent present with a flat numeric action of the right length
        act = np.array([actions[a] for a in agent_ids], dtype=np.float64)
        if act.shape == (len(agent_ids), n_actions):
            return act
    except (KeyError, ValueError, TypeError):
        pass
    act = np.zeros((len(agent_ids), n_actions))
    for i, a in enumerate(agent_ids):
        if a not in actions:
            raise EnvConfigError(f"actions: missing an action for agent {a!r}")
        act[i] = agent_action(a, actions[a], n_actions)
    return act


def agent_action(agent: str, value: Any, n_actions: int) -> np.ndarray:
    """One agent's action as float[A] (errors name the agent and say what is allowed)."""
    if value is None or isinstance(value, (str, bytes)):
        raise EnvConfigError(f"actions[{agent!r}]: expected {n_actions} numbers in [-1, 1], got {value!r}")
    try:
        row = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise EnvConfigError(
            f"actions[{agent!r}]: expected {n_actions} numbers in [-1, 1], got {value!r:.80}"
        ) from None
    if row.size != n_actions:
        raise EnvConfigError(f"actions[{agent!r}]: expected {n_actions} entries, got {row.size}")
    return row
