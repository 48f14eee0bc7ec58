"""Scenarios: shapes, units, real profile behaviour, overrides and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym.errors import ScenarioError
from p2p_gym.scenarios import list_scenarios, load_scenario
from tests.conftest import cached_scenario

ALL = ["default", "default_high_pv", "tiny", "cigre_lv", "ieee39"]


def test_list_scenarios_has_builtins() -> None:
    assert set(ALL) <= set(list_scenarios())


@pytest.mark.parametrize("name", ALL)
def test_shapes_units_and_consistency(name: str) -> None:
    sc = cached_scenario(name)
    n, t = sc.n_agents, sc.n_steps
    assert sc.agent_ids == tuple(sc.agent_ids) and len(sc.agent_ids) == n
    assert sc.bus.shape == (n,) and sc.bus.dtype.kind == "i"
    assert set(sc.bus) <= set(sc.net.bus.index)
    assert sc.load_kw.shape == (t, n) and sc.pv_kw.shape == (t, n)
    for arr in (sc.load_kw, sc.pv_kw, sc.battery_kwh, sc.battery_kw, sc.retail_price, sc.feed_in_price):
        assert np.all(np.isfinite(arr)) and np.all(arr >= 0)
    assert np.all(sc.feed_in_price <= sc.retail_price)
    assert 1440 % sc.step_minutes == 0
    # each agent is one sgen of the net at its bus, named after it
    sgen = sc.net.sgen.set_index("name")
    assert list(sgen.loc[list(sc.agent_ids), "bus"]) == list(sc.bus)
    assert not sc.load_kw.flags.writeable


def test_default_is_real_simbench_year() -> None:
    sc = cached_scenario("default")
    assert sc.n_agents >= 12
    assert sc.n_steps == 35136 and sc.step_minutes == 15  # 2016 is a leap year: 366 * 96
    assert len(sc.net.bus) == 44 and len(sc.net.line) == 42  # SimBench 1-LV-semiurb4--0-sw
    # household annual consumption in the usual German range (1.5–6 MWh)
    annual = sc.load_kw.sum(axis=0) * sc.dt_hours / 1000
    assert np.all((annual > 1.0) & (annual < 7.0))
    # real variability: profiles differ between households and from day to day
    day = sc.load_kw[: 96 * 7].reshape(7, 96, -1)
    assert np.std(day.sum(axis=1), axis=0).min() > 0
    assert np.corrcoef(sc.load_kw[:, 0], sc.load_kw[:, 1])[0, 1] < 0.99


def test_pv_zero_at_night_and_summer_above_winter() -> None:
    sc = cached_scenario("default")
    hours = sc.hour_of_day(np.arange(sc.n_steps))
    night = (hours < 3.0) | (hours >= 22.0)
    assert sc.pv_kw[night].max() == 0.0
    owners = sc.pv_kwp > 0
    assert owners.any()
    june = sc.pv_kw[152 * 96 : 182 * 96, owners].sum()
    december = sc.pv_kw[335 * 96 : 365 * 96, owners].sum()
    assert june > 3 * december
    # never above the installed peak power
    assert np.all(sc.pv_kw <= sc.pv_kwp[None, :] + 1e-9)


def test_tariff_is_time_of_use() -> None:
    sc = cached_scenario("default")
    day = sc.retail_price[:96]
    assert day[0] == pytest.approx(0.30)  # 00:00 night
    assert day[12 * 4] == pytest.approx(0.38)  # 12:00 day
    assert day[18 * 4] == pytest.approx(0.46)  # 18:00 evening peak
    assert np.all(sc.feed_in_price == pytest.approx(0.081))


def test_overrides_pv_penetration_and_battery_share() -> None:
    sc = load_scenario("default", pv_penetration=1.0, battery_share=0.5, n_agents=12, seed=3)
    assert sc.n_agents == 12
    assert np.count_nonzero(sc.pv_kwp) == 12
    assert np.count_nonzero(sc.battery_kwh) == 6
    none = load_scenario("default", pv_penetration=0.0, n_agents=12)
    assert none.pv_kw.sum() == 0 and none.battery_kwh.sum() == 0


def test_field_override_replaces_and_validates() -> None:
    sc = load_scenario("tiny", retail_price=0.5)
    assert np.all(sc.retail_price == 0.5)


def test_tiny_closed_form() -> None:
    sc = cached_scenario("tiny")
    # 12:00-12:15: mid-step 12.125 h; PV = 5 sin(pi * 6.125 / 12)
    t = 12 * 4
    assert sc.pv_kw[t, 0] == pytest.approx(5.0 * np.sin(np.pi * 6.125 / 12.0))
    assert sc.pv_kw[t, 2] == 0.0
    assert sc.load_kw[t, 3] == pytest.approx(0.6)
    assert sc.load_kw[19 * 4, 0] == pytest.approx(1.8)  # evening bump 1.5 + base 0.3


def test_ieee39_has_case39_generators_and_loads() -> None:
    sc = cached_scenario("ieee39")
    assert len(sc.net.bus) == 39 and len(sc.net.line) + len(sc.net.trafo) == 46
    gens = sc.gen_max_kw > 0
    assert gens.sum() == 10 and (~gens).sum() == 21
    # case39 max_p_mw: gens 1040+725+652+508+687+580+564+865+1100 = 6721, ext_grid 646
    assert sc.gen_max_kw.sum() == pytest.approx((6721.0 + 646.0) * 1000.0)
    assert np.all(sc.gen_cost_b[gens] == pytest.approx(0.3 / 1000))  # 0.3 EUR/MWh
    assert sc.load_kw[:, gens].sum() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"pv_penetration": 1.5}, "pv_penetration"),
        ({"pv_penetration": "half"}, "pv_penetration"),
        ({"n_agents": 33}, "n_agents"),
        ({"n_agents": 0}, "n_agents"),
        ({"n_agents": 2.5}, "n_agents"),
        ({"battery_kwh": -np.ones(20)}, "battery_kwh"),
        ({"battery_kwh": np.ones(7)}, "battery_kwh"),
        ({"battery_kw": np.full(20, np.nan)}, "battery_kw"),
        ({"retail_price": np.nan}, "retail_price"),
        ({"feed_in_price": 1.0}, "feed_in_price"),
        ({"step_minutes": 7.5}, "step_minutes"),
        ({"no_such_thing": 1}, "no_such_thing"),
    ],
)
def test_bad_overrides_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ScenarioError, match=field):
        load_scenario("default", **overrides)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="valid names") as err:
        load_scenario("nope")
    assert "default" in str(err.value) and "tiny" in str(err.value)


def test_flexible_asset_fields_are_validated() -> None:
    """EV sessions, heat-pump and flexible-demand fields: defaults are 'none', bad values name the field."""
    from p2p_gym.errors import ScenarioError
    from p2p_gym.scenarios import load_scenario

    sc = load_scenario("tiny")
    assert not sc.has_flexible_assets and sc.ev_sessions.shape == (0, 5)
    assert sc.hp_kw.shape == sc.load_kw.shape and not sc.hp_kw.any()
    ok = sc.replace(ev_sessions=[[1, 10, 14, 2.0, 3.7], [0, 4, 8, 1.0, 11.0]])
    assert ok.has_flexible_assets and ok.ev_sessions[0, 0] == 0  # sorted by agent
    dt = sc.dt_hours
    cases = [
        ({"ev_sessions": [[9, 0, 4, 1.0, 3.7]]}, "ev_sessions"),  # agent out of range
        ({"ev_sessions": [[0, 8, 4, 1.0, 3.7]]}, "ev_sessions"),  # departs before it arrives
        ({"ev_sessions": [[0, 0, 4, 4 * 3.7 * dt + 0.1, 3.7]]}, "more than max_kw"),  # not deliverable
        ({"ev_sessions": [[0, 0, 8, 1.0, 3.7], [0, 4, 12, 1.0, 3.7]]}, "overlap"),
        ({"hp_max_kw": [-1.0, 0, 0, 0]}, "hp_max_kw"),
        ({"hp_kw": np.ones_like(sc.load_kw)}, "hp_kw"),  # above a zero rating
        ({"flex_util_a": [0.0, 0.0, 0.0]}, "flex_util_a"),
        ({"pv_curtailable": "yes"}, "pv_curtailable"),
    ]
    for change, field in cases:
        with pytest.raises(ScenarioError, match=field):
            sc.replace(**change)
