"""The ``flex`` scenario against the SimBench extract it is built from (``1-LV-rural3--2-sw``).

References are computed here from :mod:`p2p_gym.scenarios.flex_data` element by element (plain loops over the
element table, aggregated per bus), not through the builder. SimBench: Meinecke et al. 2020, Energies
13(12):3290.
"""

from __future__ import annotations

import contextlib
import io

import networkx as nx
import numpy as np
import pandapower.topology as top
import pytest

import p2p_gym
from p2p_gym.cli import main as cli_main
from p2p_gym.errors import ScenarioError
from p2p_gym.grid import GridModel
from p2p_gym.scenarios import flex_data as fd
from p2p_gym.scenarios import list_scenarios, load_scenario
from p2p_gym.scenarios.builders import _merge_sessions, build_flex

T = 35136  # 2016: 366 days × 96 quarter hours
DT = 0.25
#: buses of 1-LV-rural3--2-sw carrying at least one load, PV sgen or storage unit
N_AGENTS = 118


@pytest.fixture(scope="module")
def sc():  # type: ignore[no-untyped-def]
    return load_scenario("flex")


@pytest.fixture(scope="module")
def el() -> fd.FlexElements:
    return fd.flex_elements()


def _element_kw(el: fd.FlexElements, e: int, n_steps: int = T) -> np.ndarray:
    return fd.flex_profile(str(el.profile[e]))[:n_steps] * el.p_kw[e]


def _per_bus(el: fd.FlexElements, kinds: tuple[str, ...], n_steps: int = T) -> dict[int, float]:
    """kWh over the first n_steps of all elements of ``kinds``, summed per bus (plain loop)."""
    out: dict[int, float] = {}
    for e in range(len(el)):
        if el.kind[e] in kinds:
            b = int(el.bus[e])
            out[b] = out.get(b, 0.0) + float(_element_kw(el, e, n_steps).sum()) * DT
    return out


def _agent_kwh(sc, series: np.ndarray) -> dict[int, float]:  # type: ignore[no-untyped-def]
    kwh = series.sum(axis=0) * sc.dt_hours
    return {int(b): float(v) for b, v in zip(sc.bus, kwh) if v > 0}


def _ev_kw_per_agent(sc, el: fd.FlexElements) -> np.ndarray:  # type: ignore[no-untyped-def]
    """float[T, N]: SimBench charging power of all chargers at each agent's bus."""
    out = np.zeros((sc.n_steps, sc.n_agents))
    col = {int(b): i for i, b in enumerate(sc.bus)}
    for e in el.of_kind("ev"):
        if int(el.bus[e]) in col:
            out[:, col[int(el.bus[e])]] += _element_kw(el, e, sc.n_steps)
    return out


# ------------------------------------------------------------------------------------------------ shape
def test_registered_with_agents_on_every_element_bus(sc, el: fd.FlexElements) -> None:  # type: ignore[no-untyped-def]
    assert "flex" in list_scenarios()
    assert sc.n_agents == N_AGENTS and sc.n_steps == T and sc.step_minutes == 15
    assert sc.agent_ids == tuple(f"prosumer_{i}" for i in range(N_AGENTS))
    assert sorted(sc.bus.tolist()) == sorted(set(el.bus.tolist()))
    assert len(sc.net.bus) == 129 and len(sc.net.line) == 127
    # the net: one sgen per agent, named after it, at its bus; SimBench's loads/sgens/storage removed
    assert len(sc.net.sgen) == N_AGENTS and len(sc.net.load) == 0 and len(sc.net.storage) == 0
    sgen = sc.net.sgen.set_index("name")
    assert list(sgen.loc[list(sc.agent_ids), "bus"]) == list(sc.bus)
    assert "Meinecke et al. 2020" in sc.description and "ODbL" in sc.description
    assert not sc.flex_max_kw.any() and sc.battery_efficiency == 0.95 and sc.has_flexible_assets
    # the time-of-use tariff of default (2016, 15-minute steps on both)
    default = load_scenario("default", n_agents=2)
    np.testing.assert_array_equal(sc.retail_price, default.retail_price)
    np.testing.assert_array_equal(sc.feed_in_price, default.feed_in_price)
    day = sc.retail_price[:96]
    assert day[0] == pytest.approx(0.30) and day[48] == pytest.approx(0.38) and day[72] == pytest.approx(0.46)


# ------------------------------------------------------------------------------------------------ energy
def test_load_pv_and_heat_pump_energy_equal_the_extract(sc, el: fd.FlexElements) -> None:  # type: ignore[no-untyped-def]
    for series, kinds in (
        (sc.load_kw, ("household", "commercial")),
        (sc.pv_kw, ("pv", "pv_battery")),
        (sc.hp_kw, ("heat_pump",)),
    ):
        ref = _per_bus(el, kinds)
        got = _agent_kwh(sc, series)
        assert got.keys() == ref.keys(), kinds
        for b in ref:
            assert got[b] == pytest.approx(ref[b], rel=1e-9), (kinds, b)
        assert series.sum() * DT == pytest.approx(sum(ref.values()), rel=1e-9)
    # SimBench totals (MWh/a, from the 16-bit extract): load 347.5, PV incl. PV-battery units 224.7, HP 108.6
    assert sc.load_kw.sum() * DT / 1e3 == pytest.approx(347.5, abs=0.1)
    assert sc.pv_kw.sum() * DT / 1e3 == pytest.approx(224.7, abs=0.1)
    assert sc.hp_kw.sum() * DT / 1e3 == pytest.approx(108.6, abs=0.1)


def test_ratings_batteries_and_heat_pumps(sc, el: fd.FlexElements) -> None:  # type: ignore[no-untyped-def]
    col = {int(b): i for i, b in enumerate(sc.bus)}
    kwp, bat_kw, bat_kwh, hp_kw, band = (np.zeros(sc.n_agents) for _ in range(5))
    for e in range(len(el)):
        i = col[int(el.bus[e])]
        if el.kind[e] in ("pv", "pv_battery"):
            kwp[i] += el.p_kw[e]
        if el.kind[e] == "pv_battery":
            bat_kw[i] += el.p_kw[e]
            bat_kwh[i] += el.e_kwh[e]
        if el.kind[e] == "heat_pump":
            hp_kw[i] += el.p_kw[e]
            band[i] += 1.25 * el.p_kw[e]  # τ_b·ΔT/ΔT_design = 40 h · 1 K / 32 K
    np.testing.assert_allclose(sc.pv_kwp, kwp)
    np.testing.assert_allclose(sc.battery_kw, bat_kw)
    np.testing.assert_allclose(sc.battery_kwh, bat_kwh)
    # SimBench's capacity is 2 h of the unit's power (to its rounding)
    has = bat_kw > 0
    assert has.sum() == 16 and np.allclose(sc.battery_kwh[has], 2.0 * bat_kw[has], rtol=0.03)
    np.testing.assert_allclose(sc.hp_max_kw, hp_kw)  # SimBench HP profiles peak at 1: ratings suffice
    np.testing.assert_allclose(sc.hp_band_kwh, band)
    assert np.all(sc.hp_kw <= sc.hp_max_kw + 1e-9) and np.count_nonzero(sc.hp_max_kw) == 18
    assert np.all(sc.pv_kw <= sc.pv_kwp + 1e-9) and np.count_nonzero(sc.pv_kwp) == 43


def test_ev_sessions_hold_the_simbench_charging(sc, el: fd.FlexElements) -> None:  # type: ignore[no-untyped-def]
    """Each agent's SimBench charging (all its chargers) happens inside its sessions, and each session's energy
    is the profile's integral over its window: the merged sessions lose and invent no energy."""
    ev_kw = _ev_kw_per_agent(sc, el)
    total = sum(float(_element_kw(el, e).sum()) * DT for e in el.of_kind("ev"))
    assert sc.ev_sessions[:, 3].sum() == pytest.approx(total, rel=1e-9)
    assert total / 1e3 == pytest.approx(12.39, abs=0.01)
    covered = np.zeros_like(ev_kw, dtype=bool)
    for a, t0, t1, energy, max_kw in sc.ev_sessions:
        a, t0, t1 = int(a), int(t0), int(t1)
        window = ev_kw[t0:t1, a]
        assert energy == pytest.approx(window.sum() * DT, rel=1e-9, abs=1e-9)
        assert window.max() <= max_kw + 1e-9
        covered[t0:t1, a] = True
    assert not ev_kw[~covered].any()
    per_agent = {int(a): 0.0 for a in np.unique(sc.ev_sessions[:, 0])}
    for row in sc.ev_sessions:
        per_agent[int(row[0])] += row[3]
    for a, e in per_agent.items():
        assert e == pytest.approx(ev_kw[:, a].sum() * DT, rel=1e-9)
    assert len(per_agent) == 15 and set(np.flatnonzero(ev_kw.any(axis=0))) == set(per_agent)


def test_ev_sessions_deliverable_and_disjoint(sc) -> None:  # type: ignore[no-untyped-def]
    s = sc.ev_sessions
    assert s.shape[1] == 5 and len(s) > 2000
    last_departure: dict[int, float] = {}
    for a, t0, t1, energy, max_kw in s:  # sorted by agent, then arrival
        assert 0 <= t0 < t1 <= sc.n_steps and 0 < max_kw and 0 <= energy
        assert energy <= max_kw * (t1 - t0) * sc.dt_hours + 1e-9
        assert t0 >= last_departure.get(int(a), 0)
        last_departure[int(a)] = t1
    # sessions of a single charger keep their SimBench power limit (≤ the rating); merged ones add chargers
    assert s[:, 4].max() <= 21.8 + 3.7 + 1e-9


def test_merge_sessions_by_hand() -> None:
    rows = np.array(
        [
            # agent, charger, arrival, departure, kWh, kW
            # agent 0: charger 7 [0, 4) and [6, 10) chained through charger 8 [3, 8); charger 7 alone [12, 14)
            [0, 7, 6, 10, 3.0, 3.7],
            [0, 7, 0, 4, 2.0, 3.5],
            [0, 8, 3, 8, 5.0, 11.0],
            [0, 7, 12, 14, 1.0, 3.7],
            # agent 1: charger 8 [0, 10) holds charger 7's [2, 4) and [6, 8), which do not touch each other
            [1, 8, 0, 10, 5.0, 11.0],
            [1, 7, 2, 4, 2.0, 3.5],
            [1, 7, 6, 8, 3.0, 3.7],
            # agent 2: touching windows of two chargers stay apart
            [2, 9, 0, 4, 1.0, 3.7],
            [2, 10, 4, 6, 1.0, 3.7],
        ]
    )
    got = _merge_sessions(*(rows[:, k].astype(int) for k in range(4)), rows[:, 4], rows[:, 5])
    want = [
        [0, 0, 10, 10.0, 3.7 + 11.0],  # charger 7's larger session power + charger 8's
        [0, 12, 14, 1.0, 3.7],
        [1, 0, 10, 10.0, 11.0 + 3.7],
        [2, 0, 4, 1.0, 3.7],
        [2, 4, 6, 1.0, 3.7],
    ]
    np.testing.assert_allclose(got, want)
    assert _merge_sessions(*(np.zeros(0, int) for _ in range(4)), np.zeros(0), np.zeros(0)).shape == (0, 5)


def test_shorter_horizon_cuts_sessions_and_keeps_energy(el: fd.FlexElements) -> None:
    days = 13  # two (identical) home chargers are charging across midnight at the end of day 13
    short = load_scenario("flex", days=days)
    n = days * 96
    assert short.n_steps == n and short.load_kw.shape == (n, N_AGENTS)
    ref = _per_bus(el, ("household", "commercial"), n)
    assert short.load_kw.sum() * DT == pytest.approx(sum(ref.values()), rel=1e-9)
    ev = sum(float(_element_kw(el, e, n).sum()) * DT for e in el.of_kind("ev"))
    assert short.ev_sessions[:, 3].sum() == pytest.approx(ev, rel=1e-9)
    assert short.ev_sessions[:, 2].max() == n  # the cut session departs at the end
    ev_kw = _ev_kw_per_agent(short, el)
    for a, t0, t1, energy, _ in short.ev_sessions:
        assert energy == pytest.approx(ev_kw[int(t0) : int(t1), int(a)].sum() * DT, rel=1e-9)


# ------------------------------------------------------------------------------------------------ subset
def test_feeder_order(sc) -> None:  # type: ignore[no-untyped-def]
    """Agents follow a depth-first walk from the substation: every agent's path to the transformer passes only
    agents numbered before it, and the nine feeders come one after the other."""
    graph = top.create_nxgraph(sc.net, multi=False)
    lv = int(sc.net.trafo.lv_bus.iloc[0])
    position = {int(b): i for i, b in enumerate(sc.bus)}
    heads = []
    for i, b in enumerate(sc.bus):
        path = nx.shortest_path(graph, lv, int(b))
        assert all(position[p] < i for p in path[:-1] if p in position)
        heads.append(path[1])
    changes = [h for k, h in enumerate(heads) if k == 0 or h != heads[k - 1]]
    assert changes == sorted(set(heads)) and len(changes) == 9


def test_max_agents_keeps_the_first_agents() -> None:
    full = load_scenario("flex", days=3)
    k = 12
    sub = load_scenario("flex", days=3, max_agents=k)
    assert sub.agent_ids == full.agent_ids[:k] and list(sub.bus) == list(full.bus[:k])
    for name in ("load_kw", "pv_kw", "hp_kw"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(full, name)[:, :k])
    for name in ("pv_kwp", "battery_kw", "battery_kwh", "hp_max_kw", "hp_band_kwh"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(full, name)[:k])
    np.testing.assert_array_equal(sub.ev_sessions, full.ev_sessions[full.ev_sessions[:, 0] < k])
    assert len(sub.net.sgen) == k and len(sub.net.bus) == len(full.net.bus)
    assert load_scenario("flex", days=1, max_agents=1).n_agents == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"days": 0}, "days"),
        ({"days": 367}, "days"),
        ({"days": 1.5}, "days"),
        ({"days": True}, "days"),
        ({"max_agents": 0}, "max_agents"),
        ({"max_agents": N_AGENTS + 1}, "max_agents"),
        ({"max_agents": 2.0}, "max_agents"),
        ({"n_agents": 5}, "n_agents"),
    ],
)
def test_bad_parameters_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ScenarioError, match=field):
        load_scenario("flex", **overrides)


def test_name_parameter() -> None:
    assert build_flex(days=1, max_agents=2, name="mine").name == "mine"
    with pytest.raises(ScenarioError, match="name"):
        build_flex(days=1, name="")


# ------------------------------------------------------------------------------------------------ grid, env, CLI
def test_ac_converges_at_the_peak_net_load_step(sc, el: fd.FlexElements) -> None:  # type: ignore[no-untyped-def]
    ev_max = np.zeros_like(sc.load_kw)
    for a, t0, t1, _, max_kw in sc.ev_sessions:
        ev_max[int(t0) : int(t1), int(a)] += max_kw
    injection = sc.pv_kw - sc.load_kw - sc.hp_kw - ev_max
    t = int(np.argmax(-injection.sum(axis=1)))
    report = GridModel(sc, "ac").check(injection[t])
    assert report.converged and report.ok
    assert 0.95 < report.vm_min_pu and report.max_line_loading_pct < 100
    # the linear model works and agrees with AC at that point to a few percentage points
    linear = GridModel(sc, "linear").check(injection[t])
    assert linear.converged and abs(linear.max_line_loading_pct - report.max_line_loading_pct) < 5


def test_env_runs_with_random_actions() -> None:
    env = p2p_gym.parallel_env("flex", grid="linear", episode_steps=4)
    obs, _ = env.reset(seed=0)
    assert len(obs) == N_AGENTS
    for agent in env.possible_agents:
        env.action_space(agent).seed(hash(agent) % 2**31)
    steps = 0
    while env.agents:
        actions = {a: env.action_space(a).sample() for a in env.agents}
        obs, rewards, _, truncated, _ = env.step(actions)
        assert all(np.isfinite(r) for r in rewards.values())
        steps += 1
    assert steps == 4 and all(truncated.values())


def test_cli_shows_flex() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["scenarios", "--show", "flex"]) == 0
    text = out.getvalue()
    assert "  flex" in text and "Scenario 'flex'" in text and "Meinecke et al. 2020" in text
    assert "heat_pump_agents" in text and "prosumer_117@" in text
