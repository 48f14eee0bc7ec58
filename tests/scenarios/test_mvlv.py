"""The MV/LV multi-platform scenario: selection, the background reduction against the full SimBench grid, taps."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandapower as pp
import pytest

from p2p_gym.errors import ScenarioError
from p2p_gym.scenarios import flex_data, load_scenario
from p2p_gym.scenarios.data import set_tap_changer_type
from p2p_gym.scenarios.mvlv import MVLV_CODE, lv_feeders
from tests.conftest import cached_scenario

warnings.filterwarnings("ignore")


def test_lv_feeders_cover_the_mv_grid_in_spread_order() -> None:
    feeders = lv_feeders()
    assert len(feeders) == 110  # the 110 MV/LV transformers of 1-MVLV-semiurb-all-2-sw
    assert len({f.name for f in feeders}) == 110
    mv = [f.mv_feeder for f in feeders]
    assert len(set(mv)) == 9  # nine MV feeders from the two 20 kV busbars carry LV grids
    assert len(set(mv[:9])) == 9  # the first nine platforms hang on nine different MV feeders
    net = flex_data.flex_net(MVLV_CODE)
    for f in feeders[:10]:
        assert net.trafo.at[f.trafo, "lv_bus"] == f.lv_bus and f.lv_bus in f.buses
        assert set(f.agent_buses) <= set(f.buses)
        assert (net.bus.loc[list(f.buses), "vn_kv"] < 1.0).all()


def test_default_selection_is_about_1000_prosumers_on_10_to_30_platforms() -> None:
    sc = cached_scenario("mvlv", days=1)
    assert 900 <= sc.n_agents <= 1000
    assert 10 <= sc.n_platforms <= 30
    counts = np.bincount(sc.platform)
    feeders = {f.name: f for f in lv_feeders()}
    assert [len(feeders[p].agent_buses) for p in sc.platform_names] == counts.tolist()
    assert len({feeders[p].mv_feeder for p in sc.platform_names}) == 9
    # platform transformers are MV/LV transformers of the net, and the agents sit below their own
    for k, trafo in enumerate(sc.platform_trafo):
        assert sc.net.trafo.at[trafo, "vn_lv_kv"] == pytest.approx(0.4)
        assert set(sc.bus[sc.platform == k]) <= set(feeders[sc.platform_names[k]].buses)
    # each agent and background element is an sgen named after it
    names = set(sc.net.sgen.name)
    assert set(sc.agent_ids) <= names and set(sc.background_ids) <= names
    lv = [b for b in sc.background_ids if b.startswith("lv_")]
    assert sorted(lv) == sorted(f"lv_{f}" for f in feeders if f not in sc.platform_names)
    assert all(b.startswith(("lv_", "mv_")) for b in sc.background_ids)


def test_explicit_platforms_and_errors() -> None:
    sc = load_scenario("mvlv", days=1, platforms="LV1.201,LV4.201")
    assert sc.platform_names == ("LV1.201", "LV4.201")
    assert sc.n_agents == 13 + 39
    assert load_scenario("mvlv", days=1, n_platforms=2).n_platforms == 2
    with pytest.raises(ScenarioError, match="platforms"):
        load_scenario("mvlv", days=1, platforms=["LV9.999"])
    with pytest.raises(ScenarioError, match="n_platforms"):
        load_scenario("mvlv", days=1, n_platforms=0)
    with pytest.raises(ScenarioError, match="max_prosumers"):
        load_scenario("mvlv", days=1, max_prosumers=10**6)


def _element_power_at(step: int):  # type: ignore[no-untyped-def]
    """The full SimBench MV/LV net with every element at its profile value (independent of the scenario)."""
    net = flex_data.flex_net(MVLV_CODE, step=step)
    for table in ("load", "sgen", "storage"):
        if "q_mvar" in net[table]:
            net[table]["q_mvar"] = 0.0  # the scenario runs at unity power factor
    return net


@pytest.mark.parametrize("step", [172 * 96 + 52, 10 * 96 + 72])
def test_background_equals_the_simbench_elements_of_each_reduced_lv_grid(step: int) -> None:
    sc = cached_scenario("mvlv", days=173, n_platforms=3)
    full = _element_power_at(step)
    bg = dict(zip(sc.background_ids, sc.background_kw[step]))
    for f in lv_feeders():
        if f.name in sc.platform_names:
            continue
        at = list(f.buses)
        export_mw = (
            full.sgen.p_mw[full.sgen.bus.isin(at)].sum()
            - full.storage.p_mw[full.storage.bus.isin(at)].sum()  # storage p < 0 is injection
            - full.load.p_mw[full.load.bus.isin(at)].sum()
        )
        assert bg[f"lv_{f.name}"] == pytest.approx(export_mw * 1000.0, rel=1e-6, abs=1e-6)


@pytest.mark.slow
def test_reduced_grid_matches_the_full_simbench_grid_at_the_mv_level() -> None:
    """AC flows of the reduced net (agents + background) against the full 9,104-bus SimBench net: the MV lines
    and transformers carry the same flows up to the losses inside the reduced LV grids."""
    step = 172 * 96 + 48  # 21 June, 12:00
    sc = cached_scenario("mvlv", days=173, n_platforms=3)
    full = _element_power_at(step)
    pp.runpp(full)
    # agents inject what SimBench's elements at their bus inject (PV − load − heat pump − EV profile)
    red = copy.deepcopy(sc.net)
    p = dict(zip(sc.background_ids, sc.background_kw[step] / 1000.0))
    for aid, bus in zip(sc.agent_ids, sc.bus):
        p[aid] = (
            full.sgen.p_mw[full.sgen.bus == bus].sum()
            - full.storage.p_mw[full.storage.bus == bus].sum()
            - full.load.p_mw[full.load.bus == bus].sum()
        )
    red.sgen["p_mw"] = red.sgen.name.map(p).to_numpy(dtype=float)
    pp.runpp(red)
    mv_lines = red.line.index[red.bus.loc[red.line.from_bus, "vn_kv"].to_numpy() > 1.0]
    np.testing.assert_allclose(
        red.res_line.loading_percent[mv_lines], full.res_line.loading_percent[mv_lines], atol=1.0
    )
    np.testing.assert_allclose(
        red.res_trafo.loading_percent, full.res_trafo.loading_percent, rtol=0.03, atol=0.5
    )
    platform_lines = red.line.index[red.bus.loc[red.line.from_bus, "vn_kv"].to_numpy() < 1.0]
    np.testing.assert_allclose(
        red.res_line.loading_percent[platform_lines], full.res_line.loading_percent[platform_lines], atol=0.5
    )
    assert red.res_ext_grid.p_mw.sum() == pytest.approx(full.res_ext_grid.p_mw.sum(), rel=0.02, abs=0.05)


def test_simbench_taps_act_hand_calculation() -> None:
    """The flex grid's 20/0.4 kV transformer sits at tap −1 of 2.5 % on the HV side: with no load its LV busbar
    is at V_hv / (1 − 0.025) (the HV winding has 2.5 % fewer turns), not at V_hv as with the tap ignored."""
    net = flex_data.flex_net()
    trafo = net.trafo.iloc[0]
    assert trafo.tap_changer_type == "Ratio" and trafo.tap_pos == -1 and trafo.tap_side == "hv"
    for table in ("load", "sgen", "storage"):
        net[table]["in_service"] = False
    net.trafo["pfe_kw"] = 0.0
    net.trafo["i0_percent"] = 0.0  # no magnetising branch and no cable charging: no current flows,
    net.line["c_nf_per_km"] = 0.0  # so the no-load ratio is exact
    pp.runpp(net)
    v_hv = net.res_bus.vm_pu[trafo.hv_bus]
    assert net.res_bus.vm_pu[trafo.lv_bus] == pytest.approx(
        v_hv / (1 - 0.025 * trafo.tap_step_percent / 2.5), abs=1e-5
    )
    ignored = copy.deepcopy(net)
    ignored.trafo["tap_changer_type"] = None
    pp.runpp(ignored)
    assert ignored.res_bus.vm_pu[trafo.lv_bus] == pytest.approx(v_hv, abs=1e-9)


def test_set_tap_changer_type_leaves_set_types_and_phase_shifters() -> None:
    net = flex_data.flex_net()
    net.trafo["tap_changer_type"] = None
    two = pp.create_transformer_from_parameters(
        net, int(net.trafo.hv_bus.iloc[0]), int(net.trafo.lv_bus.iloc[0]), 0.4, 20.0, 0.4, 1.0, 4.0, 0.0, 0.0,
        tap_step_percent=1.0, tap_step_degree=5.0, tap_pos=0, tap_neutral=0, tap_side="hv",
    )  # fmt: skip
    set_tap_changer_type(net)
    assert net.trafo.at[0, "tap_changer_type"] == "Ratio"
    assert net.trafo.at[two, "tap_changer_type"] is None or np.isnan(net.trafo.at[two, "tap_changer_type"])


def test_voltage_band_is_the_scenarios_and_is_validated() -> None:
    """mvlv counts violations against EN 50160's ±10 % band (its taps lift the LV side above 1.05 p.u. by design);
    the band reaches the grid check of the simulation, and a bad band is named."""
    from p2p_gym import sim

    sc = load_scenario("mvlv", days=1, n_platforms=2)
    assert sc.voltage_band == (0.90, 1.10)
    static = sim.build(sim.MarketConfig(scenario=sc.name, grid="linear"), sc)
    assert (static.grid_model.v_min_pu, static.grid_model.v_max_pu) == (0.90, 1.10)
    narrow = sim.build(
        sim.MarketConfig(scenario=sc.name, grid="linear"), sc.replace(voltage_band=(0.95, 1.05))
    )
    state = sim.initial_state(static, days=[0])
    zero = np.zeros((1, static.n, static.n_actions))
    _, wide_out = sim.step(static, state, zero)
    _, narrow_out = sim.step(narrow, sim.initial_state(narrow, days=[0]), zero)
    vm = wide_out.grid.vm_pu[0]
    assert wide_out.grid.kpis()["n_voltage_violations"][0] == int(((vm < 0.90) | (vm > 1.10)).sum())
    assert narrow_out.grid.kpis()["n_voltage_violations"][0] == int(((vm < 0.95) | (vm > 1.05)).sum()) > 0
    with pytest.raises(ScenarioError, match="voltage_band"):
        sc.replace(voltage_band=(1.1, 0.9))
