"""Scenarios: who trades, on which grid, with which load/PV profiles and tariff.

>>> from p2p_gym.scenarios import list_scenarios, load_scenario
>>> sc = load_scenario("tiny")
>>> sc.n_agents, sc.load_kw.shape[1]
(4, 4)

``load_scenario(name, **overrides)`` accepts two kinds of overrides: the builder's own parameters (for example
``n_agents``, ``pv_penetration``, ``battery_share``, ``seed`` for ``default``) and any :class:`Scenario` field
(for example ``retail_price=0.35`` or ``battery_kwh=np.zeros(20)``), which replaces the built value and is
validated again.

Built-in scenarios (:func:`list_scenarios`): ``default`` and ``default_high_pv`` (households on the SimBench LV
grid ``1-LV-semiurb4--0-sw``), ``tiny`` (a synthetic 4-prosumer feeder), ``cigre_lv`` (the CIGRE LV benchmark),
``ieee39`` (the IEEE 39-bus system), ``default_congested`` (``default_high_pv`` with PV on half the roofs and
batteries in the other half: congested middays, flexible buyers) and ``flex``: 118 flexible prosumers — PV,
PV batteries, heat pumps and EV
charging sessions — on the SimBench rural LV grid ``1-LV-rural3--2-sw`` (SimBench: Meinecke et al. 2020,
Energies 13(12):3290; data simbench.de, ODbL v1.0), see :func:`~p2p_gym.scenarios.builders.build_flex`; and
``mvlv``: about 1,000 such prosumers on 15 LV grids (platforms) of the SimBench MV/LV system
``1-MVLV-semiurb-all-2-sw``, the rest of the system as background, see :mod:`p2p_gym.scenarios.mvlv`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from p2p_gym.errors import ScenarioError
from p2p_gym.scenarios.base import Scenario
from p2p_gym.scenarios.builders import (
    build_cigre_lv,
    build_default,
    build_default_congested,
    build_default_high_pv,
    build_flex,
    build_ieee39,
    build_tiny,
)
from p2p_gym.scenarios.mvlv import build_mvlv

_BUILDERS: dict[str, Callable[..., Scenario]] = {
    "default": build_default,
    "default_high_pv": build_default_high_pv,
    "default_congested": build_default_congested,
    "tiny": build_tiny,
    "cigre_lv": build_cigre_lv,
    "ieee39": build_ieee39,
    "flex": build_flex,
    "mvlv": build_mvlv,
}
_BUILDER_PARAMS: dict[str, set[str]] = {
    "default_high_pv": set(inspect.signature(build_default).parameters) - {"name"},
    "default_congested": (set(inspect.signature(build_default).parameters) - {"name"})
    | {"buyer_battery_kwh", "buyer_battery_kw"},
}
_FIELDS = {f.name for f in dataclasses.fields(Scenario)} - {"name", "agent_ids", "net"}


def list_scenarios() -> list[str]:
    """Names of the built-in scenarios."""
    return list(_BUILDERS)


def builder_parameters(name: str) -> set[str]:
    """Names of the builder parameters accepted as overrides by scenario ``name``."""
    _check_name(name)
    if name in _BUILDER_PARAMS:
        return _BUILDER_PARAMS[name]
    return set(inspect.signature(_BUILDERS[name]).parameters) - {"name"}


def load_scenario(name: str, **overrides: Any) -> Scenario:
    """Build scenario ``name``, applying ``overrides`` (builder parameters or Scenario fields).

    Raises:
        ScenarioError: unknown name (the message lists the valid ones), unknown override, or an override of the
            wrong type, shape or range (the message names the field).
    """
    _check_name(name)
    params = builder_parameters(name)
    unknown = sorted(set(overrides) - params - _FIELDS)
    if unknown:
        raise ScenarioError(
            f"{unknown[0]}: not an override of scenario {name!r}; builder parameters: {sorted(params)}; "
            f"scenario fields: {sorted(_FIELDS)}"
        )
    scenario = _BUILDERS[name](**{k: v for k, v in overrides.items() if k in params})
    fields = {k: v for k, v in overrides.items() if k in _FIELDS and k not in params}
    if fields:
        try:
            scenario = scenario.replace(**fields)
        except ScenarioError:
            raise
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"{next(iter(fields))}: invalid override ({exc})") from exc
    return scenario


def _check_name(name: str) -> None:
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ScenarioError(f"scenario name: unknown scenario {name!r}; valid names: {list_scenarios()}")


__all__ = ["Scenario", "builder_parameters", "list_scenarios", "load_scenario"]
