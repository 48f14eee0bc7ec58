"""GridModel against plain pandapower, linear vs AC, the congested scenario, bad input."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandapower as pp
import pytest

from p2p_gym.errors import GridError
from p2p_gym.grid import GridModel
from tests.conftest import cached_scenario

warnings.filterwarnings("ignore")


def _plain_runpp(scenario, injection_kw: np.ndarray):  # type: ignore[no-untyped-def]
    """Independent reference: a fresh copy of the scenario net, agents' sgens set by name, plain runpp."""
    net = copy.deepcopy(scenario.net)
    for aid, p in zip(scenario.agent_ids, injection_kw):
        net.sgen.loc[net.sgen.name == aid, "p_mw"] = p / 1000.0
    pp.runpp(net)
    return net


@pytest.mark.parametrize("name", ["default", "default_high_pv", "cigre_lv", "tiny"])
def test_ac_equals_plain_pandapower(name: str) -> None:
    sc = cached_scenario(name)
    model = GridModel(sc, "ac")
    rng = np.random.default_rng(1)
    for t in rng.integers(0, sc.n_steps, 6):
        inj = sc.pv_kw[t] - sc.load_kw[t]
        report = model.check(inj)
        ref = _plain_runpp(sc, inj)
        assert report.converged and report.error is None
        np.testing.assert_allclose(report.line_loading_pct, ref.res_line.loading_percent, atol=1e-3)
        np.testing.assert_allclose(report.trafo_loading_pct, ref.res_trafo.loading_percent, atol=1e-3)
        np.testing.assert_allclose(report.vm_pu, ref.res_bus.vm_pu, atol=1e-6)
        # the exposed net carries the same injections and results
        np.testing.assert_allclose(
            model.net.res_line.loading_percent, ref.res_line.loading_percent, atol=1e-3
        )
        assert report.max_line_loading_pct == pytest.approx(ref.res_line.loading_percent.max(), abs=1e-3)


def test_report_arrays_are_not_overwritten_by_later_checks(tiny) -> None:  # type: ignore[no-untyped-def]
    model = GridModel(tiny, "ac")
    first = model.check(np.array([5.0, 0.0, 0.0, 0.0]))
    kept = first.line_loading_pct.copy()
    model.check(np.array([-5.0, -5.0, 0.0, 0.0]))
    np.testing.assert_array_equal(first.line_loading_pct, kept)


def test_linear_agrees_with_ac_on_default_within_5pp() -> None:
    sc = cached_scenario("default")
    ac, lin = GridModel(sc, "ac"), GridModel(sc, "linear")
    rng = np.random.default_rng(0)
    worst = 0.0
    # realistic injections: real PV - load at random steps, plus batteries at full power either way
    for t in rng.integers(0, sc.n_steps, 40):
        bat = sc.battery_kw * rng.choice([-1.0, 0.0, 1.0], size=sc.n_agents)
        inj = sc.pv_kw[t] - sc.load_kw[t] + bat
        a, b = ac.check(inj), lin.check(inj)
        worst = max(worst, float(np.abs(a.line_loading_pct - b.line_loading_pct).max()))
        np.testing.assert_allclose(a.vm_pu, b.vm_pu, atol=2e-3)
    assert worst < 5.0


def test_linear_agrees_on_congested_midday() -> None:
    sc = cached_scenario("default_high_pv")
    ac, lin = GridModel(sc, "ac"), GridModel(sc, "linear")
    t = 172 * 96 + 13 * 4  # 21 June 2016, 13:00
    inj = sc.pv_kw[t] - sc.load_kw[t]
    a, b = ac.check(inj), lin.check(inj)
    assert np.abs(a.line_loading_pct - b.line_loading_pct).max() < 5.0
    assert (a.n_voltage_violations > 0) == (b.n_voltage_violations > 0)


def test_high_pv_scenario_congests_under_unrestricted_trading() -> None:
    """Midday exports on sunny summer days overload lines or push voltages above 1.05 p.u. (AC check)."""
    sc = cached_scenario("default_high_pv")
    model = GridModel(sc, "ac")
    days = range(150, 240, 3)
    noon = [d * 96 + h * 4 for d in days for h in (12, 13, 14)]
    reports = [model.check(sc.pv_kw[t] - sc.load_kw[t]) for t in noon]
    assert all(r.converged for r in reports)
    assert max(r.vm_max_pu for r in reports) > 1.05
    assert sum(r.n_overloaded_lines > 0 or r.n_voltage_violations > 0 for r in reports) >= 5
    # while the same hours on the default scenario are fine
    base = GridModel(cached_scenario("default"), "ac")
    sc0 = cached_scenario("default")
    assert all(base.check(sc0.pv_kw[t] - sc0.load_kw[t]).ok for t in noon[:10])


def test_overload_counts_match_definition(tiny) -> None:  # type: ignore[no-untyped-def]
    model = GridModel(tiny, "ac", loading_limit_pct=10.0, v_max_pu=1.001)
    r = model.check(np.array([0.0, 0.0, 0.0, 30.0]))
    lines = r.line_loading_pct
    assert r.n_overloaded_lines == int(np.sum(lines > 10.0))
    assert r.overflow_sum_pct == pytest.approx(float(np.sum(lines[lines > 10] - 10)))
    assert r.n_voltage_violations == int(np.sum((r.vm_pu > 1.001) | (r.vm_pu < 0.95)))
    assert r.n_overloaded_lines == 4  # 30 kW on a 50 mm² cable (142 A): ~30% on every line of the path


def test_non_convergence_is_reported_not_raised(tiny) -> None:  # type: ignore[no-untyped-def]
    model = GridModel(tiny, "ac")
    r = model.check(np.array([0.0, 0.0, 0.0, -5e4]))  # 50 MW load at the end of an LV cable
    assert not r.converged and r.error
    assert np.isnan(r.max_line_loading_pct) and r.n_overloaded_lines == 0
    # the model recovers on the next reasonable injection
    r2 = model.check(np.array([1.0, 0.0, 0.0, 0.0]))
    assert r2.converged
    np.testing.assert_allclose(
        r2.vm_pu, _plain_runpp(tiny, np.array([1.0, 0, 0, 0])).res_bus.vm_pu, atol=1e-6
    )


@pytest.mark.parametrize(
    "bad",
    [np.zeros(3), np.zeros((4, 1)), np.array([0.0, np.nan, 0.0, 0.0]), np.array([np.inf, 0, 0, 0]), "abc"],
)
def test_bad_injection_raises_value_error(tiny, bad) -> None:  # type: ignore[no-untyped-def]
    model = GridModel(tiny, "linear")
    with pytest.raises(ValueError, match="injection_kw"):
        model.check(bad)
    with pytest.raises(GridError, match="injection_kw"):
        GridModel(tiny, "ac").check(bad)


def test_bad_mode(tiny) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GridError, match="mode"):
        GridModel(tiny, "dc")
