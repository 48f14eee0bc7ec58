"""The multi-platform MV/LV scenario ``mvlv``: LV feeders as local P2P platforms on a SimBench MV grid.

SimBench (Meinecke et al. 2020, "SimBench—A Benchmark Dataset of Electric Power Systems to Compare Innovative
Solutions Based on Power Flow Analysis", Energies 13(12):3290; data https://simbench.de, ODbL v1.0) ships
complete MV/LV systems ``1-MVLV-*-all-*-sw``: one 20 kV grid with every LV grid below it. The extract shipped
here is ``1-MVLV-semiurb-all-2-sw`` (semi-urban, scenario 2 "future"): 9,104 buses, 8,998 lines, two 110/20 kV
and 110 20/0.4 kV transformers, 11,209 loads (7,824 households, 886 commercial, 1,286 heat pumps, 1,151 EV
chargers, 71 other), 1,407 sgens (1,398 PV, 5 wind, 1 biomass, 1 hydro on the MV side) and 1,025 PV-battery
units, with their 2016 15-minute profiles (``scripts/build_simbench_flex_extract.py --code
1-MVLV-semiurb-all-2-sw``; 4.8 MB compressed).

The multiscale view follows Morstyn, Savelli & Hepburn (2021), "Multiscale design for system-wide
peer-to-peer energy trading", One Earth 4(5):629–638: local platforms nested under a system-level market.
Here a platform is one LV grid (one MV/LV transformer). :func:`lv_feeders` lists the 110 LV grids in *spread
order* (round-robin over the nine MV feeders that carry them, each MV feeder's LV grids by name), so that the
first k platforms hang on different MV feeders and inter-platform trades cross MV lines.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from p2p_gym.errors import ScenarioError
from p2p_gym.scenarios import flex_data
from p2p_gym.scenarios.base import Scenario

MVLV_CODE = "1-MVLV-semiurb-all-2-sw"


@dataclasses.dataclass(frozen=True)
class LvFeeder:
    """One LV grid of the MV/LV system (a candidate platform)."""

    name: str
    """SimBench subnet name, e.g. ``"LV2.201"`` (the LV grid type 1–6 and a serial number)."""
    trafo: int
    """Index of its MV/LV transformer in ``net.trafo``."""
    hv_bus: int
    """MV bus of the transformer."""
    lv_bus: int
    """LV busbar of the transformer."""
    mv_feeder: int
    """Which MV feeder it hangs on (0, 1, ...: connected pieces of the MV grid once the HV/MV substation
    busbar is removed, ordered by smallest bus index)."""
    buses: tuple[int, ...]
    """Every bus of the LV grid (the busbar included)."""
    agent_buses: tuple[int, ...]
    """Buses with at least one load, PV plant or storage unit (one prosumer each), ascending."""


@functools.lru_cache(maxsize=2)
def lv_feeders(code: str = MVLV_CODE) -> tuple[LvFeeder, ...]:
    """The LV grids of the MV/LV extract ``code`` in spread order (see the module docstring)."""
    import networkx as nx
    import pandapower.topology as top

    net = flex_data.flex_net(code)
    el = flex_data.flex_elements(code)
    mv_buses = net.bus.index[net.bus.vn_kv > 1.0]
    graph = top.create_nxgraph(net, multi=False, include_trafos=False)
    mv = graph.subgraph(mv_buses).copy()
    hv_mv = net.trafo[net.trafo.vn_lv_kv > 1.0]
    mv.remove_nodes_from(int(b) for b in hv_mv.lv_bus)
    feeder_of = {b: k for k, comp in enumerate(sorted(nx.connected_components(mv), key=min)) for b in comp}
    element_buses = {int(b) for b in el.bus}
    subnet = net.bus.subnet.astype(str)
    per_mv: dict[int, list[LvFeeder]] = {}
    for idx, row in net.trafo[net.trafo.vn_lv_kv <= 1.0].iterrows():
        name = str(row.subnet).split("_")[0]
        buses = tuple(int(b) for b in net.bus.index[subnet.str.split("_").str[0] == name])
        if int(row.lv_bus) not in buses:
            raise ScenarioError(f"{code}: transformer {idx}'s LV bus is not in subnet {name}")
        feeder = LvFeeder(
            name=name,
            trafo=int(idx),
            hv_bus=int(row.hv_bus),
            lv_bus=int(row.lv_bus),
            mv_feeder=feeder_of[int(row.hv_bus)],
            buses=buses,
            agent_buses=tuple(sorted(element_buses.intersection(buses))),
        )
        per_mv.setdefault(feeder.mv_feeder, []).append(feeder)
    queues = [sorted(v, key=lambda f: f.name) for _, v in sorted(per_mv.items())]
    order: list[LvFeeder] = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return tuple(order)


def _select(
    feeders: tuple[LvFeeder, ...],
    platforms: Sequence[str] | None,
    n_platforms: int | None,
    max_prosumers: int,
) -> list[LvFeeder]:
    by_name = {f.name: f for f in feeders}
    if platforms is not None:
        if isinstance(platforms, str):
            platforms = [p.strip() for p in platforms.split(",") if p.strip()]
        unknown = [p for p in platforms if p not in by_name]
        if unknown or not platforms or len(set(platforms)) != len(platforms):
            raise ScenarioError(
                f"platforms: need distinct LV grid names of {MVLV_CODE}, got unknown {unknown[:3]} "
                f"(valid: {', '.join(f.name for f in feeders[:6])}, ...; see p2p_gym.scenarios.mvlv.lv_feeders)"
            )
        return [by_name[p] for p in platforms]
    if n_platforms is not None:
        if not isinstance(n_platforms, (int, np.integer)) or not 1 <= n_platforms <= len(feeders):
            raise ScenarioError(
                f"n_platforms: must be an integer in [1, {len(feeders)}], got {n_platforms!r}"
            )
        return list(feeders[: int(n_platforms)])
    total = sum(len(f.agent_buses) for f in feeders)
    if not isinstance(max_prosumers, (int, np.integer)) or not 1 <= max_prosumers <= total:
        raise ScenarioError(f"max_prosumers: must be an integer in [1, {total}], got {max_prosumers!r}")
    chosen: list[LvFeeder] = []
    count = 0
    for f in feeders:
        if count + len(f.agent_buses) > max_prosumers and chosen:
            continue
        chosen.append(f)
        count += len(f.agent_buses)
    return chosen


def _element_kw(code: str, elements: np.ndarray, n_steps: int) -> np.ndarray:
    """float[T] summed net injection (kW, + = export) of ``elements`` (indices into flex_elements) as SimBench
    operates them (loads, heat pumps and EV chargers consume their profile; PV and PV-battery units inject)."""
    el = flex_data.flex_elements(code)
    weight: dict[str, float] = {}
    for e in elements:
        sign = 1.0 if el.injects[e] else -1.0
        weight[str(el.profile[e])] = weight.get(str(el.profile[e]), 0.0) + sign * float(el.p_kw[e])
    out = np.zeros(n_steps)
    for profile, w in weight.items():
        out += w * flex_data.flex_profile(profile, code)[:n_steps]
    return out


def build_mvlv(
    days: int = 366,
    platforms: Sequence[str] | str | None = None,
    n_platforms: int | None = None,
    max_prosumers: int = 1000,
    name: str = "mvlv",
) -> Scenario:
    """Prosumers on several LV grids (platforms) of the SimBench MV/LV system ``1-MVLV-semiurb-all-2-sw``.

    **Platforms.** ``platforms`` names LV grids explicitly (``"LV2.201,LV5.207"`` or a list); else
    ``n_platforms`` takes the first n LV grids in spread order (:func:`lv_feeders`); else LV grids are taken in
    spread order, skipping any that would exceed ``max_prosumers``, until none fits (default: 1,000 → 996
    prosumers on 15 platforms across all nine MV feeders).

    **Prosumers.** On a platform every bus with a load, PV plant or storage unit is one agent, aggregating the
    elements at its bus exactly as ``flex`` does (:func:`~p2p_gym.scenarios.builders.prosumer_assets`:
    household/commercial load, PV and PV-battery units with their battery, heat pumps with a 1.25 h band,
    EV charging sessions). Agents are numbered ``prosumer_0, ...`` platform by platform (buses ascending within
    a platform); :attr:`Scenario.platform` gives each one's platform and :attr:`Scenario.platform_trafo` its
    MV/LV transformer.

    **Background.** Everything else keeps its SimBench operation and enters the grid check as
    :attr:`Scenario.background_kw`: each LV grid that is not a platform is reduced to one element at its
    transformer's LV busbar (its buses and lines beyond the busbar removed; its loads, heat pumps, EV chargers,
    PV and PV-battery units summed, so the MV/LV transformer and the MV grid carry its real profile), and the
    loads and generators on the MV side (wind, PV, biomass, hydro, MV-connected loads) are one element per MV
    bus. Reactive power is not modelled (all elements at unity power factor, as in the other scenarios).

    The transformer taps act (SimBench tap positions ±1 on several transformers; see
    :func:`~p2p_gym.scenarios.data.set_tap_changer_type`). Time-of-use retail and feed-in tariff as ``default``.

    Args:
        days: number of days from 2016-01-01 (1 to 366).
        platforms: LV grid names to use as platforms (see :func:`lv_feeders`), or None.
        n_platforms: number of LV grids in spread order (1 to 110), used when ``platforms`` is None.
        max_prosumers: prosumer budget of the default selection (used when both are None).
        name: the scenario name.
    """
    import pandapower as pp
    from pandapower.toolbox import drop_buses

    from p2p_gym.scenarios.builders import _agent_net, _check_int, _tou_prices, prosumer_assets

    days = _check_int("days", days, 1, 366)
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"name: must be a non-empty string, got {name!r}")
    code = MVLV_CODE
    feeders = lv_feeders(code)
    chosen = _select(feeders, platforms, n_platforms, max_prosumers)
    step = round(flex_data.STEP_HOURS * 60)
    n_steps = days * 1440 // step

    agent_bus = np.array([b for f in chosen for b in f.agent_buses], dtype=np.int64)
    platform = np.array([k for k, f in enumerate(chosen) for _ in f.agent_buses], dtype=np.int64)
    assets = prosumer_assets(code, agent_bus, n_steps)

    # background: the other LV grids at their busbar, MV elements per MV bus
    el = flex_data.flex_elements(code)
    net = flex_data.flex_net(code)
    chosen_names = {f.name for f in chosen}
    bus_of_el = el.bus
    bg_ids: list[str] = []
    bg_bus: list[int] = []
    bg_kw: list[np.ndarray] = []
    drop: list[int] = []
    for f in feeders:
        if f.name in chosen_names:
            continue
        members = np.flatnonzero(np.isin(bus_of_el, f.buses))
        bg_ids.append(f"lv_{f.name}")
        bg_bus.append(f.lv_bus)
        bg_kw.append(_element_kw(code, members, n_steps))
        drop.extend(b for b in f.buses if b != f.lv_bus)
    mv = np.flatnonzero(net.bus.vn_kv.reindex(bus_of_el).to_numpy() > 1.0)
    for b in sorted({int(x) for x in bus_of_el[mv]}):
        members = mv[bus_of_el[mv] == b]
        bg_ids.append(f"mv_{net.bus.at[b, 'name']}")
        bg_bus.append(b)
        bg_kw.append(_element_kw(code, members, n_steps))

    agent_ids = tuple(f"prosumer_{i}" for i in range(len(agent_bus)))
    net = _agent_net(net, agent_bus, agent_ids)
    drop_buses(net, drop, drop_elements=True)
    if bg_ids:
        pp.create_sgens(net, bg_bus, p_mw=0.0, q_mvar=0.0, name=bg_ids, type="background")
    retail, feed_in = _tou_prices(n_steps, step)
    background = np.stack(bg_kw, axis=1) if bg_kw else np.zeros((n_steps, 0))
    background.flags.writeable = False
    return Scenario(
        name=name,
        agent_ids=agent_ids,
        bus=agent_bus,
        **assets,
        retail_price=retail,
        feed_in_price=feed_in,
        step_minutes=step,
        net=net,
        battery_efficiency=0.95,
        background_ids=tuple(bg_ids),
        background_kw=background,
        voltage_band=(0.90, 1.10),  # EN 50160: ±10 % of nominal at the supply terminals (LV and MV)
        platform=platform,
        platform_names=tuple(f.name for f in chosen),
        platform_trafo=np.array([f.trafo for f in chosen], dtype=np.int64),
        start_time="2016-01-01 00:00",
        description=(
            f"SimBench {code} (Meinecke et al. 2020, Energies 13(12):3290; simbench.de, ODbL v1.0): "
            f"{len(agent_bus)} prosumers on {len(chosen)} LV platforms of a semi-urban 20 kV grid, "
            f"{int(np.count_nonzero(assets['pv_kwp']))} with PV, {int(np.count_nonzero(assets['battery_kwh']))} "
            f"with batteries, {int(np.count_nonzero(assets['hp_max_kw']))} with heat pumps, "
            f"{len(np.unique(assets['ev_sessions'][:, 0]))} with EV charging; {len(bg_ids)} background "
            f"elements (other LV grids, MV loads and generators); {days} days of 2016, 15-minute steps; ToU "
            "tariff."
        ),
    )
