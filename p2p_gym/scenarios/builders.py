"""Built-in scenarios: ``default``, ``default_high_pv``, ``tiny``, ``cigre_lv``, ``ieee39`` and ``flex``."""

from __future__ import annotations

from typing import Any

import numpy as np

from p2p_gym.errors import ScenarioError
from p2p_gym.scenarios import data, flex_data
from p2p_gym.scenarios.base import Scenario


# --------------------------------------------------------------------------------------------- helpers
def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ScenarioError(f"{name}: must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ScenarioError(f"{name}: must be a finite number ≥ 0, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise ScenarioError(f"{name}: must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def _agent_net(base_net: Any, buses: np.ndarray, agent_ids: tuple[str, ...], keep_gens: bool = False) -> Any:
    """Strip loads/generators from ``base_net`` and add one sgen per agent (p_mw = 0) at its bus.

    With ``keep_gens`` the voltage-controlling ``gen`` elements stay (with ``p_mw = 0``) so that transmission
    cases keep their PV buses; the agents' active power still enters through their sgens.
    """
    import pandapower as pp

    net = base_net
    for table in ("load", "sgen", "storage", "gen"):
        if table in net and len(net[table]):
            if table == "gen" and keep_gens:
                net.gen["p_mw"] = 0.0
                continue
            net[table] = net[table].iloc[0:0]
    for table in ("profiles", "loadcases"):
        if table in net:
            net[table] = net[table].iloc[0:0] if hasattr(net[table], "iloc") else {}
    if len(agent_ids):
        pp.create_sgens(
            net, [int(b) for b in buses], p_mw=0.0, q_mvar=0.0, name=list(agent_ids), type="prosumer"
        )
    return net


def _pv_and_battery(
    rng: np.random.Generator,
    annual_mwh: np.ndarray,
    n_steps: int,
    pv_penetration: float,
    pv_kwp_per_mwh: float,
    battery_share: float,
    battery_kwh_per_kwp: float,
    battery_c_rate: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Choose PV owners, their size and SimBench PV profile, and battery owners among them."""
    n = len(annual_mwh)
    n_pv = round(pv_penetration * n)
    owners = np.sort(rng.choice(n, size=n_pv, replace=False)) if n_pv else np.zeros(0, dtype=int)
    pv_kwp = np.zeros(n)
    pv_kwp[owners] = np.round(pv_kwp_per_mwh * annual_mwh[owners], 1)
    names = data.pv_profile_names()
    pv_kw = np.zeros((n_steps, n))
    for i in owners:
        pv_kw[:, i] = pv_kwp[i] * data.pv_profile(names[int(rng.integers(len(names)))])[:n_steps]
    n_bat = round(battery_share * n_pv)
    bat_owners = rng.choice(owners, size=n_bat, replace=False) if n_bat else np.zeros(0, dtype=int)
    battery_kwh = np.zeros(n)
    battery_kwh[bat_owners] = np.round(battery_kwh_per_kwp * pv_kwp[bat_owners], 1)
    battery_kw = battery_c_rate * battery_kwh
    return pv_kw, pv_kwp, battery_kwh, battery_kw


def _tou_prices(n_steps: int, step_minutes: int) -> tuple[np.ndarray, np.ndarray]:
    hours = (np.arange(n_steps) * step_minutes % 1440) / 60.0
    return data.tou_retail_price(hours), np.full(n_steps, data.FEED_IN_PRICE)


# --------------------------------------------------------------------------------------------- default
def build_default(
    n_agents: int = 20,
    pv_penetration: float = 0.6,
    pv_kwp_per_mwh: float = 1.5,
    battery_share: float = 0.5,
    battery_kwh_per_kwp: float = 1.0,
    battery_c_rate: float = 0.5,
    profile_shift_weeks: int = 3,
    seed: int = 0,
    name: str = "default",
) -> Scenario:
    """SimBench ``1-LV-semiurb4--0-sw`` (semi-urban LV feeder, 0.4 kV, 400 kVA transformer) with households.

    Args:
        n_agents: number of household prosumers (2 to 32: the feeder has 32 household loads); they are taken
            evenly spread over the feeder's household loads in bus order.
        pv_penetration: share of agents owning PV, chosen at random with ``seed``.
        pv_kwp_per_mwh: PV size in kWp per MWh of the owner's annual consumption (1.5 ≈ 4.5 kWp for 3 MWh/a).
        battery_share: share of PV owners with a home battery.
        battery_kwh_per_kwp: battery size in kWh per kWp of PV.
        battery_c_rate: battery power limit in kW per kWh of capacity.
        profile_shift_weeks: SimBench gives all households of one type (H0-A, H0-B, H0-G, H0-L) the same shape;
            each agent's load profile is rotated by a random whole number of weeks in
            [-profile_shift_weeks, profile_shift_weeks] (weekday structure kept) so that no two agents are
            perfectly correlated. 0 keeps the original profiles.
        seed: seed of the PV/battery allocation, PV profile choice and profile shifts.
        name: the scenario name.
    """
    pv_penetration = _check_fraction("pv_penetration", pv_penetration)
    battery_share = _check_fraction("battery_share", battery_share)
    pv_kwp_per_mwh = _check_nonneg("pv_kwp_per_mwh", pv_kwp_per_mwh)
    battery_kwh_per_kwp = _check_nonneg("battery_kwh_per_kwp", battery_kwh_per_kwp)
    battery_c_rate = _check_nonneg("battery_c_rate", battery_c_rate)
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    base = data.simbench_net()
    households = base.load[base.load.profile.str.startswith("H0")].sort_values(["bus", "name"])
    n_agents = _check_int("n_agents", n_agents, 2, len(households))
    pick = households.iloc[np.round(np.linspace(0, len(households) - 1, n_agents)).astype(int)]
    profile_shift_weeks = _check_int("profile_shift_weeks", profile_shift_weeks, 0, 26)
    rng = np.random.default_rng(seed)
    step = data.profile_step_minutes()
    week = 7 * 1440 // step
    shifts = rng.integers(-profile_shift_weeks, profile_shift_weeks + 1, size=n_agents) * week
    load_kw = np.stack(
        [
            row.p_mw * 1000.0 * np.roll(data.load_profile(row.profile), int(k))
            for row, k in zip(pick.itertuples(), shifts)
        ],
        axis=1,
    )
    n_steps = load_kw.shape[0]
    annual_mwh = load_kw.sum(axis=0) * step / 60.0 / 1000.0
    pv_kw, pv_kwp, battery_kwh, battery_kw = _pv_and_battery(
        rng,
        annual_mwh,
        n_steps,
        pv_penetration,
        pv_kwp_per_mwh,
        battery_share,
        battery_kwh_per_kwp,
        battery_c_rate,
    )
    agent_ids = tuple(f"prosumer_{i}" for i in range(n_agents))
    bus = pick.bus.to_numpy()
    retail, feed_in = _tou_prices(n_steps, step)
    return Scenario(
        name=name,
        agent_ids=agent_ids,
        bus=bus,
        load_kw=load_kw,
        pv_kw=pv_kw,
        pv_kwp=pv_kwp,
        battery_kwh=battery_kwh,
        battery_kw=battery_kw,
        retail_price=retail,
        feed_in_price=feed_in,
        step_minutes=step,
        net=_agent_net(base, bus, agent_ids),
        start_time="2016-01-01 00:00",
        description=(
            f"SimBench {data.SIMBENCH_CODE}: {n_agents} households with SimBench H0 load profiles, "
            f"{int(np.count_nonzero(pv_kwp))} with PV (SimBench PV1-PV8 profiles), "
            f"{int(np.count_nonzero(battery_kwh))} with batteries; 2016, 15-minute steps; ToU tariff. "
            "Data: SimBench (simbench.de), ODbL v1.0."
        ),
    )


def build_default_high_pv(**overrides: Any) -> Scenario:
    """``default`` with all 32 households owning a large PV system (5 kWp per MWh of annual consumption, about
    15 kWp each, 473 kWp in all on a 400 kVA transformer).

    Under unrestricted trading, sunny middays lift feeder-end voltages above 1.05 p.u. (the slack is at
    1.025 p.u.) and load cables above 100 %: in 2016 about 360 hours see voltage violations and 140 hours line
    overloads (AC check of PV − load). The grid check matters here.
    """
    kw: dict[str, Any] = {"n_agents": 32, "pv_penetration": 1.0, "pv_kwp_per_mwh": 5.0, "battery_share": 0.0}
    kw.update(overrides)
    kw.setdefault("name", "default_high_pv")
    return build_default(**kw)


def build_default_congested(
    buyer_battery_kwh: float = 10.0, buyer_battery_kw: float = 5.0, **overrides: Any
) -> Scenario:
    """A congested feeder with flexible buyers, for the physical market and the DSO's rules.

    ``default_high_pv``'s 32 households with the PV concentrated on half of them (10 kWp per MWh of annual
    consumption: 474 kWp on 16 roofs), so that sunny middays overload feeder cables, and a home battery
    (``buyer_battery_kwh`` kWh, ``buyer_battery_kw`` kW) in every household *without* PV — neighbours that can store
    the PV surplus they buy. With committed dispatch the P2P market thus moves power: a trade from a PV roof to a
    neighbour's battery keeps energy on the feeder instead of exporting it through the loaded cables.
    """
    _check_nonneg("buyer_battery_kwh", buyer_battery_kwh)
    _check_nonneg("buyer_battery_kw", buyer_battery_kw)
    kw: dict[str, Any] = {"pv_penetration": 0.5, "pv_kwp_per_mwh": 10.0, "name": "default_congested"}
    kw.update(overrides)
    sc = build_default_high_pv(**kw)
    buyers = sc.pv_kwp == 0
    return sc.replace(
        battery_kwh=np.where(buyers, float(buyer_battery_kwh), sc.battery_kwh),
        battery_kw=np.where(buyers, float(buyer_battery_kw), sc.battery_kw),
        description=sc.description
        + f" Congested variant: PV on half the roofs, a {buyer_battery_kwh:g} kWh / {buyer_battery_kw:g} kW battery"
        " in every household without PV.",
    )


# --------------------------------------------------------------------------------------------- tiny
def build_tiny(days: int = 7, pv_kwp: float = 5.0, name: str = "tiny") -> Scenario:
    """Four prosumers on a synthetic 4-bus cable feeder; closed-form, repeating daily profiles.

    * PV on agents 0 and 1: ``pv_kwp · max(0, sin(π (h − 6) / 12))`` (sunrise 6 h, sunset 18 h);
    * load of agent i: ``0.3 + 0.1 i`` kW base plus a 1.5 kW evening bump (18–21 h) and 0.5 kW morning bump
      (7–8 h);
    * agent 1 has a 5 kWh / 2.5 kW battery; flat retail 0.30, feed-in 0.08 currency/kWh, 15-minute steps.
    """
    import pandapower as pp

    days = _check_int("days", days, 1, 366)
    pv_kwp = _check_nonneg("pv_kwp", pv_kwp)
    step = 15
    n_steps = days * 96
    hours = (np.arange(n_steps) * step % 1440) / 60.0 + step / 120.0  # mid-step hour
    sun = np.clip(np.sin(np.pi * (hours - 6.0) / 12.0), 0.0, None)
    sun[(hours < 6.0) | (hours > 18.0)] = 0.0
    base = 0.3 + 0.1 * np.arange(4)
    bump = 1.5 * ((hours >= 18.0) & (hours < 21.0)) + 0.5 * ((hours >= 7.0) & (hours < 8.0))
    load_kw = base[None, :] + bump[:, None]
    kwp = np.array([pv_kwp, pv_kwp, 0.0, 0.0])
    pv_kw = sun[:, None] * kwp[None, :]

    net = pp.create_empty_network(name="tiny feeder")
    mv = pp.create_bus(net, vn_kv=20.0, name="MV")
    lv0 = pp.create_bus(net, vn_kv=0.4, name="LV0")
    pp.create_ext_grid(net, mv, vm_pu=1.0)
    pp.create_transformer(net, mv, lv0, std_type="0.25 MVA 20/0.4 kV")
    prev = lv0
    buses = []
    for i in range(4):
        b = pp.create_bus(net, vn_kv=0.4, name=f"LV{i + 1}")
        pp.create_line(net, prev, b, length_km=0.1, std_type="NAYY 4x50 SE")
        buses.append(b)
        prev = b
    agent_ids = tuple(f"prosumer_{i}" for i in range(4))
    bus = np.array(buses)
    return Scenario(
        name=name,
        agent_ids=agent_ids,
        bus=bus,
        load_kw=load_kw,
        pv_kw=pv_kw,
        pv_kwp=kwp,
        battery_kwh=np.array([0.0, 5.0, 0.0, 0.0]),
        battery_kw=np.array([0.0, 2.5, 0.0, 0.0]),
        retail_price=np.full(n_steps, 0.30),
        feed_in_price=np.full(n_steps, 0.08),
        step_minutes=step,
        net=_agent_net(net, bus, agent_ids),
        description="Synthetic 4-prosumer feeder with closed-form daily profiles (for tests and examples).",
    )


# --------------------------------------------------------------------------------------------- cigre_lv
#: SimBench load profile mapped onto each CIGRE LV load class (R residential, I industrial, C commercial).
CIGRE_PROFILE = {"R": ("H0-A", "H0-B", "H0-G", "H0-L"), "I": ("G2-A",), "C": ("G1-A", "G4-A", "G4-B", "G6-A")}


def build_cigre_lv(
    pv_penetration: float = 0.6,
    pv_kwp_per_mwh: float = 1.0,
    battery_share: float = 0.5,
    battery_kwh_per_kwp: float = 1.0,
    battery_c_rate: float = 0.5,
    seed: int = 0,
    name: str = "cigre_lv",
) -> Scenario:
    """pandapower's CIGRE LV benchmark network; its 15 (aggregated) loads become agents.

    Residential loads get SimBench H0 profiles, the industrial load G2-A and commercial loads G1/G4/G6 profiles,
    each scaled so that its peak equals the load's nominal ``p_mw``. PV and batteries as in ``default``.
    """
    import pandapower.networks as pn

    pv_penetration = _check_fraction("pv_penetration", pv_penetration)
    battery_share = _check_fraction("battery_share", battery_share)
    pv_kwp_per_mwh = _check_nonneg("pv_kwp_per_mwh", pv_kwp_per_mwh)
    battery_kwh_per_kwp = _check_nonneg("battery_kwh_per_kwp", battery_kwh_per_kwp)
    battery_c_rate = _check_nonneg("battery_c_rate", battery_c_rate)
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    net = pn.create_cigre_network_lv()
    loads = net.load.sort_index()
    cols = []
    counters = {"R": 0, "I": 0, "C": 0}
    for row in loads.itertuples():
        cls = str(row.name).split()[-1][0]
        options = CIGRE_PROFILE[cls]
        prof = data.load_profile(options[counters[cls] % len(options)])
        counters[cls] += 1
        cols.append(row.p_mw * 1000.0 * prof / prof.max())
    load_kw = np.stack(cols, axis=1)
    n_steps = load_kw.shape[0]
    step = data.profile_step_minutes()
    annual_mwh = load_kw.sum(axis=0) * step / 60.0 / 1000.0
    rng = np.random.default_rng(seed)
    pv_kw, pv_kwp, battery_kwh, battery_kw = _pv_and_battery(
        rng,
        annual_mwh,
        n_steps,
        pv_penetration,
        pv_kwp_per_mwh,
        battery_share,
        battery_kwh_per_kwp,
        battery_c_rate,
    )
    agent_ids = tuple(str(nm).replace("Load ", "").lower() for nm in loads.name)
    bus = loads.bus.to_numpy()
    retail, feed_in = _tou_prices(n_steps, step)
    return Scenario(
        name=name,
        agent_ids=agent_ids,
        bus=bus,
        load_kw=load_kw,
        pv_kw=pv_kw,
        pv_kwp=pv_kwp,
        battery_kwh=battery_kwh,
        battery_kw=battery_kw,
        retail_price=retail,
        feed_in_price=feed_in,
        step_minutes=step,
        net=_agent_net(net, bus, agent_ids),
        description="CIGRE LV benchmark (pandapower) with SimBench 2016 load and PV profiles (ODbL v1.0).",
    )


# --------------------------------------------------------------------------------------------- ieee39
def build_ieee39(days: int = 366, name: str = "ieee39") -> Scenario:
    """pandapower ``case39`` (New England, 39 buses, 35 lines + 11 transformers): 10 generators + 21 loads.

    Generators (9 ``gen`` + the ``ext_grid``) are agents with dispatchable capacity ``max_p_mw`` and the quadratic
    cost of ``net.poly_cost`` (case39 gives every unit the same: 0.01 EUR/MW²h and 0.3 EUR/MWh, converted to
    per-kWh units). Loads are agents whose consumption follows the SimBench ``G4-A``/``H0-A`` mix (50/50),
    scaled so each load's yearly peak equals its nominal ``p_mw``. Retail/feed-in prices are the ToU tariff and
    the EEG rate as in ``default``; the consumers' utility parameters used by the optimisation baseline are
    documented in :func:`p2p_gym.optim` (``ieee39_problem``).
    """
    import pandapower.networks as pn

    days = _check_int("days", days, 1, 366)
    net = pn.case39()
    step = data.profile_step_minutes()
    n_steps = days * 1440 // step
    mix = 0.5 * data.load_profile("G4-A") + 0.5 * data.load_profile("H0-A")
    mix = (mix / mix.max())[:n_steps]
    gens = [("gen", i, r.bus, r.max_p_mw) for i, r in net.gen.iterrows()]
    gens += [("ext_grid", i, r.bus, r.max_p_mw) for i, r in net.ext_grid.iterrows()]
    cost = net.poly_cost.set_index(["et", "element"])
    loads = net.load.sort_index()
    n_gen, n_load = len(gens), len(loads)
    n = n_gen + n_load
    load_kw = np.zeros((n_steps, n))
    load_kw[:, n_gen:] = np.clip(loads.p_mw.to_numpy(), 0.0, None)[None, :] * 1000.0 * mix[:, None]
    gen_max = np.zeros(n)
    a = np.zeros(n)
    b = np.zeros(n)
    dt = step / 60.0
    for k, (et, idx, _bus, pmax) in enumerate(gens):
        gen_max[k] = pmax * 1000.0
        c = cost.loc[(et, idx)]
        # cost per step of producing p kWh: cp2·(P MW)²·dt + cp1·P·dt with P = p / (1000 dt)
        a[k] = 2.0 * float(c.cp2_eur_per_mw2) / (1e6 * dt)
        b[k] = float(c.cp1_eur_per_mw) / 1000.0
    agent_ids = tuple([f"{et}_{idx}" for et, idx, _, _ in gens] + [f"load_{i}" for i in loads.index])
    bus = np.array([g[2] for g in gens] + list(loads.bus))
    retail, feed_in = _tou_prices(n_steps, step)
    return Scenario(
        name=name,
        agent_ids=agent_ids,
        bus=bus,
        load_kw=load_kw,
        pv_kw=np.zeros((n_steps, n)),
        pv_kwp=np.zeros(n),
        battery_kwh=np.zeros(n),
        battery_kw=np.zeros(n),
        retail_price=retail,
        feed_in_price=feed_in,
        step_minutes=step,
        net=_agent_net(net, bus, agent_ids, keep_gens=True),
        gen_max_kw=gen_max,
        gen_cost_a=a,
        gen_cost_b=b,
        description="IEEE 39-bus (pandapower case39): 10 generators with case39 costs and 21 loads.",
    )


# --------------------------------------------------------------------------------------------- flex
def _feeder_order(net: Any) -> dict[int, int]:
    """Rank of every bus in a depth-first walk of the grid from the external grid, smaller bus index first.

    On a radial LV grid this lists the feeders one after the other (in the order of their first bus's index),
    each from the substation outward, one branch at a time; the first k buses of it are a connected piece of
    the grid. Closed switches connect, open ones separate (pandapower's topology graph).
    """
    import pandapower.topology as top

    graph = top.create_nxgraph(net, multi=False)
    roots = [int(b) for b in net.ext_grid.bus]
    order: list[int] = []
    seen = set(roots)
    stack = list(reversed(roots))
    while stack:
        b = stack.pop()
        order.append(b)
        for nb in sorted((int(x) for x in graph.neighbors(b)), reverse=True):
            if nb not in seen:
                seen.add(nb)
                stack.append(nb)
    rank = {b: i for i, b in enumerate(order)}
    for b in net.bus.index:  # isolated buses (none on the shipped grid) last, in index order
        rank.setdefault(int(b), len(rank))
    return rank


def _merge_sessions(
    agent: np.ndarray,
    charger: np.ndarray,
    arrival: np.ndarray,
    departure: np.ndarray,
    energy_kwh: np.ndarray,
    max_kw: np.ndarray,
) -> np.ndarray:
    """EV sessions float[S', 5] (:data:`~p2p_gym.scenarios.base.EV_COLUMNS`) with overlapping windows of one
    agent merged.

    Sessions of one agent (one bus, possibly several chargers) whose windows [arrival, departure) overlap —
    directly or through a chain — become one session: the union window, the summed energy, and as power
    limit the sum over the chargers involved of each charger's largest ``max_kw`` in the group. It stays
    deliverable: a charger's own sessions are disjoint, so each charger delivers its energy within the union
    window at its largest power.
    """
    if not len(agent):
        return np.zeros((0, 5))
    order = np.lexsort((arrival, agent))
    agent, charger, arrival, departure = agent[order], charger[order], arrival[order], departure[order]
    energy_kwh, max_kw = energy_kwh[order], max_kw[order]
    # running latest departure within each agent: offsetting by agent·(T+1) keeps agents apart in the cummax
    key = agent * (int(departure.max()) + 1)
    reach = np.maximum.accumulate(departure + key) - key
    new = np.r_[True, (agent[1:] != agent[:-1]) | (arrival[1:] >= reach[:-1])]
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    pairs, pair_of = np.unique(np.stack([group, charger], axis=1), axis=0, return_inverse=True)
    charger_kw = np.zeros(len(pairs))
    np.maximum.at(charger_kw, pair_of.ravel(), max_kw)
    limit = np.zeros(len(starts))
    np.add.at(limit, pairs[:, 0], charger_kw)
    return np.stack(
        [
            agent[starts],
            arrival[starts],
            np.maximum.reduceat(departure, starts),
            np.add.reduceat(energy_kwh, starts),
            limit,
        ],
        axis=1,
    ).astype(np.float64)


def prosumer_assets(code: str, agent_bus: np.ndarray, n_steps: int) -> dict[str, Any]:
    """The flexible prosumers at ``agent_bus`` (one per bus) of the shipped SimBench extract ``code``.

    Aggregates every element at an agent's bus as :func:`build_flex` documents (household/commercial load,
    PV and PV-battery units, batteries, heat pumps with their band, EV sessions merged per agent) over the
    first ``n_steps`` steps of 2016. Returns the :class:`Scenario` fields ``load_kw``, ``pv_kw``, ``pv_kwp``,
    ``battery_kw``, ``battery_kwh``, ``hp_kw``, ``hp_max_kw``, ``hp_band_kwh`` and ``ev_sessions``.
    """
    el = flex_data.flex_elements(code)
    n = len(agent_bus)
    dt = flex_data.STEP_HOURS
    agent_of = {int(b): i for i, b in enumerate(agent_bus)}
    agent_el = np.array([agent_of.get(int(b), -1) for b in el.bus])

    load_kw = np.zeros((n_steps, n))
    pv_kw = np.zeros((n_steps, n))
    pv_kwp = np.zeros(n)
    battery_kw = np.zeros(n)
    battery_kwh = np.zeros(n)
    for e in np.flatnonzero(agent_el >= 0):
        kind, i = str(el.kind[e]), agent_el[e]
        if kind in ("heat_pump", "ev"):
            continue  # from heat_pump_band / ev_sessions below
        kw = flex_data.flex_profile(str(el.profile[e]), code)[:n_steps] * el.p_kw[e]
        if el.injects[e]:  # PV sgen or PV-battery storage unit
            pv_kw[:, i] += kw
            pv_kwp[i] += el.p_kw[e]
            if el.element[e] == "storage":
                battery_kw[i] += el.p_kw[e]
                battery_kwh[i] += el.e_kwh[e]
        else:  # household, commercial (or any other inflexible load)
            load_kw[:, i] += kw

    position = {int(el.index[e]): e for e in np.flatnonzero(el.element == "load")}  # net.load index → element
    hp = flex_data.heat_pump_band(code)
    hp_kw = np.zeros((n_steps, n))
    hp_max_kw = np.zeros(n)
    hp_band_kwh = np.zeros(n)
    for j, load in enumerate(hp.load):
        i = agent_el[position[int(load)]]
        if i >= 0:
            hp_kw[:, i] += hp.profile_kw[:n_steps, j]
            hp_max_kw[i] += hp.rated_kw[j]
            hp_band_kwh[i] += hp.band_kwh[j]
    hp_max_kw = np.maximum(hp_max_kw, hp_kw.max(axis=0))

    s = flex_data.ev_sessions(code)
    charger = np.array([position[int(x)] for x in s.load], dtype=np.int64)
    agent = agent_el[charger]
    keep = (agent >= 0) & (s.arrival < n_steps)
    energy = s.energy_kwh[keep].copy()
    for k in np.flatnonzero(s.charge_end[keep] > n_steps):  # still charging at the horizon's end
        e, a = charger[keep][k], int(s.arrival[keep][k])
        energy[k] = flex_data.flex_profile(str(el.profile[e]), code)[a:n_steps].sum() * el.p_kw[e] * dt
    ev = _merge_sessions(
        agent[keep],
        charger[keep],
        s.arrival[keep],
        np.minimum(s.departure[keep], n_steps),
        energy,
        s.max_kw[keep],
    )

    for arr in (load_kw, pv_kw, hp_kw):
        arr.flags.writeable = False  # handed to Scenario without a copy
    return {
        "load_kw": load_kw,
        "pv_kw": pv_kw,
        "pv_kwp": pv_kwp,
        "battery_kw": battery_kw,
        "battery_kwh": battery_kwh,
        "hp_kw": hp_kw,
        "hp_max_kw": hp_max_kw,
        "hp_band_kwh": hp_band_kwh,
        "ev_sessions": ev,
    }


def build_flex(days: int = 366, max_agents: int | None = None, name: str = "flex") -> Scenario:
    """Flexible prosumers on the SimBench rural LV grid ``1-LV-rural3--2-sw`` (scenario 2, "future").

    SimBench (Meinecke et al. 2020, Energies 13(12):3290; simbench.de, ODbL v1.0): a 0.4 kV grid of 129 buses,
    127 cables (NAYY 4x150, 270 A) in nine feeders and one 400 kVA transformer, with 113 households, 5
    commercial loads, 18 heat pumps, 17 EV chargers, 27 PV plants and 16 PV plants with a home battery; 2016
    in 15-minute steps (profiles and the element table: :mod:`p2p_gym.scenarios.flex_data`).

    **Agents.** Every bus with at least one load, PV plant or storage unit is one agent (118 buses), the agents
    numbered ``prosumer_0``, ``prosumer_1``, ... in *feeder order*: a depth-first walk from the substation,
    feeders one after the other (by their first bus index), each from the transformer outward, smaller bus
    index first at a branching. An agent aggregates the elements at its bus (power in kW = SimBench profile ×
    rated power):

    * ``load_kw``: household (``H0-*``) and commercial (``G*``) loads;
    * ``pv_kw``: the PV sgens, and the storage units. A SimBench storage unit is a PV plant with a home battery
      run for self-consumption; its profile is the unit's net injection (≥ 0, also at night when the battery
      discharges) and is taken as PV output. ``pv_kwp`` sums the rated powers of both (the storage unit's
      |p_mw|). Such an agent also gets a battery of |p| kW and SimBench's ``max_e_mwh`` (2 h × |p| within
      SimBench's rounding) — an extra flexibility on top of the SimBench operation already in its profile;
    * ``hp_kw``: heat-pump consumption (SimBench electric profiles × rating), ``hp_max_kw`` the summed ratings
      (at least the peak of ``hp_kw``), ``hp_band_kwh`` the summed virtual-storage bands of
      :func:`~p2p_gym.scenarios.flex_data.heat_pump_band` (1.25 h of rated power);
    * ``ev_sessions``: the charging sessions of :func:`~p2p_gym.scenarios.flex_data.ev_sessions`. Where an
      agent has several chargers (two buses have two), sessions whose windows overlap are merged into one
      (union window, summed energy, power limit the sum of each charger's largest session power), so that
      sessions of one agent never overlap and each stays deliverable. With fewer than 366 ``days`` a session
      still plugged in at the end keeps the energy its SimBench profile charges before the end, and departs
      at the end.

    Flexible demand (``flex_*``) is zero: the data has none. Battery efficiency 0.95 and the time-of-use retail
    and feed-in tariff as ``default``.

    The net holds the full grid with one ``sgen`` per agent at its bus (the SimBench loads, sgens and storage
    units removed).

    **Headline figures** (366 days, all 118 agents): every agent has household or commercial load (113 + 5
    loads, 347.5 MWh/a: 246.7 households, 100.9 commercial); 43 have PV (27 PV plants of 252.3 kWp, 165.2
    MWh/a, and 16 PV-battery units of 93.0 kWp, 59.5 MWh/a: 224.7 MWh/a in all); 16 a battery (93 kW,
    185.9 kWh); 18 a heat pump (119.9 kW rated, 108.6 MWh/a); 15 an EV charger (17 chargers, 2,996 SimBench
    sessions, 2,755 after merging at the two buses with two chargers, 12.4 MWh/a).

    **Grid** (linear model of :class:`~p2p_gym.grid.GridModel`, every step of 2016, no trade: each agent
    injects PV − load − heat pump − EV charging, batteries idle). With EV charging as in SimBench the largest
    line loading is 48.5 % (the head cable of the feeder at bus 6), above 40 % in 155 steps, never above 80 %;
    the transformer peaks at 55 %. Bus voltages span 1.025–1.073 p.u.: the transformer's tap at −1 (2.5 % per step,
    HV side) lifts the LV side by 2.6 % (``set_tap_changer_type``; before taps acted, 1.000–1.048 p.u.), so the
    largest PV exports (step 19631) go above a 1.05 p.u. band (AC, EVs at full power from arrival: 48.3 % line,
    56.9 % transformer loading at most). With every plugged-in EV
    charging at full power the line maximum is 51.4 % (4 steps above 50 %). The feeder is not congested by
    its own profiles: congestion studies need added load or PV, or a lower ``loading_limit_pct``. At the peak
    net-load step (step 34422, 24 December 13:30, 245 kW net import with EVs at full power) an AC power flow
    converges with 44.7 % line and 61.0 % transformer loading (linear model: 43.7 % and 56.0 %; it omits the
    losses).

    Args:
        days: number of days from 2016-01-01 (1 to 366; 366 = the whole leap year, 35,136 steps).
        max_agents: keep only the first ``max_agents`` agents in feeder order (1 to 118; None = all). The grid
            stays whole; the other buses carry no agent.
        name: the scenario name.
    """
    days = _check_int("days", days, 1, 366)
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"name: must be a non-empty string, got {name!r}")
    el = flex_data.flex_elements()
    net = flex_data.flex_net()
    rank = _feeder_order(net)
    agent_bus = np.array(sorted({int(b) for b in el.bus}, key=rank.__getitem__), dtype=np.int64)
    if max_agents is not None:
        max_agents = _check_int("max_agents", max_agents, 1, len(agent_bus))
        agent_bus = agent_bus[:max_agents]
    n = len(agent_bus)
    step = round(flex_data.STEP_HOURS * 60)
    n_steps = days * 1440 // step
    assets = prosumer_assets(flex_data.FLEX_CODE, agent_bus, n_steps)
    ev = assets["ev_sessions"]
    agent_ids = tuple(f"prosumer_{i}" for i in range(n))
    retail, feed_in = _tou_prices(n_steps, step)
    ev_agents = len(np.unique(ev[:, 0]))
    return Scenario(
        name=name,
        agent_ids=agent_ids,
        bus=agent_bus,
        **assets,
        retail_price=retail,
        feed_in_price=feed_in,
        step_minutes=step,
        net=_agent_net(net, agent_bus, agent_ids),
        battery_efficiency=0.95,
        start_time="2016-01-01 00:00",
        description=(
            f"SimBench {flex_data.FLEX_CODE} (Meinecke et al. 2020, Energies 13(12):3290; simbench.de, "
            f"ODbL v1.0): {n} prosumers on a rural LV grid, {int(np.count_nonzero(assets['pv_kwp']))} with PV, "
            f"{int(np.count_nonzero(assets['battery_kwh']))} with batteries, "
            f"{int(np.count_nonzero(assets['hp_max_kw']))} with heat "
            f"pumps, {ev_agents} with EV charging ({len(ev)} sessions); {days} days of 2016, 15-minute steps; "
            "ToU tariff."
        ),
    )
