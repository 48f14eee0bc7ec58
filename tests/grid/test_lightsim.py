"""The lightsim2grid engine of GridModel against plain pandapower: every shipped scenario, switches, taps,
batches, divergence, background injections, losses and the linear model built with either engine."""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import numpy as np
import pandapower as pp
import pytest

from p2p_gym.errors import GridEngineError, GridError
from p2p_gym.grid import GRID_ENGINES, GridModel
from p2p_gym.grid import lightsim as lightsim_module
from p2p_gym.scenarios import list_scenarios
from tests.conftest import cached_scenario

warnings.filterwarnings("ignore")
pytest.importorskip("lightsim2grid")

#: agreement with plain pandapower (both solve to pandapower's tolerance 1e-8 from different starting points)
TOL_PCT, TOL_VM, TOL_KW = 1e-5, 1e-6, 1e-4
#: scenarios whose builder takes longer than a unit test should (run in the slow suite)
SLOW_SCENARIOS = {"mvlv"}


def _plain(net, names_kw: dict[str, float], **kwargs):  # type: ignore[no-untyped-def]
    """Independent reference: a fresh copy of the net, sgens set by name (kW), plain ``pandapower.runpp``."""
    net = copy.deepcopy(net)
    for name, p in names_kw.items():
        net.sgen.loc[net.sgen.name == name, "p_mw"] = p / 1000.0
    pp.runpp(net, **kwargs)
    return net


def _assert_matches(report, ref) -> None:  # type: ignore[no-untyped-def]
    assert report.converged and report.error is None
    # a line cut off at both ends by open switches: NaN in pandapower's tables, no current (0) in the model
    ref_line = np.nan_to_num(ref.res_line.loading_percent.to_numpy(dtype=float))
    np.testing.assert_allclose(report.line_loading_pct, ref_line, atol=TOL_PCT, rtol=0)
    np.testing.assert_allclose(report.trafo_loading_pct, ref.res_trafo.loading_percent, atol=TOL_PCT, rtol=0)
    np.testing.assert_allclose(report.vm_pu, ref.res_bus.vm_pu, atol=TOL_VM, rtol=0)
    losses = 1000.0 * (ref.res_line.pl_mw.sum() + ref.res_trafo.pl_mw.sum())
    assert report.losses_kw == pytest.approx(losses, abs=TOL_KW)
    assert report.ext_grid_kw == pytest.approx(1000.0 * ref.res_ext_grid.p_mw.sum(), abs=TOL_KW)


def _scenario_params() -> list:  # type: ignore[type-arg]
    marks = {name: [pytest.mark.slow] if name in SLOW_SCENARIOS else [] for name in list_scenarios()}
    return [pytest.param(name, marks=marks[name]) for name in list_scenarios()]


@pytest.mark.parametrize("name", _scenario_params())
def test_lightsim_equals_plain_pandapower_on_every_scenario(name: str) -> None:
    sc = cached_scenario(name)
    if sc.net is None:
        pytest.skip(f"{name} has no network")
    model = GridModel(sc, "ac", engine="lightsim2grid")
    assert model.engine == "lightsim2grid" and model.engine_fallback is None
    bg_ids = tuple(getattr(sc, "background_ids", ()))
    rng = np.random.default_rng(3)
    compared = 0
    for t in rng.integers(0, sc.n_steps, 6):
        inj = sc.pv_kw[t] - sc.load_kw[t]
        bg = np.asarray(sc.background_kw[t]) if bg_ids else None
        report = model.check(inj, bg)
        setpoints = dict(zip(sc.agent_ids, inj)) | (dict(zip(bg_ids, bg)) if bg_ids else {})
        try:
            ref = _plain(sc.net, setpoints)
        except pp.LoadflowNotConverged:  # ieee39 has steps no engine solves: both must say so
            assert not report.converged
            continue
        _assert_matches(report, ref)
        compared += 1
        if compared == 4:
            break
    assert compared >= 3


def test_pandapower_engine_still_equals_plain_pandapower() -> None:
    sc = cached_scenario("default")
    model = GridModel(sc, "ac", engine="pandapower")
    assert model.engine == "pandapower" and model.engine_fallback is None
    rng = np.random.default_rng(5)
    for t in rng.integers(0, sc.n_steps, 4):
        inj = sc.pv_kw[t] - sc.load_kw[t]
        report = model.check(inj)
        ref = _plain(sc.net, dict(zip(sc.agent_ids, inj)))
        _assert_matches(report, ref)
        np.testing.assert_allclose(model.net.res_bus.vm_pu, ref.res_bus.vm_pu, atol=TOL_VM)


def test_net_property_carries_the_last_check_and_its_results() -> None:
    sc = cached_scenario("default")
    model = GridModel(sc, "ac")
    inj = sc.pv_kw[172 * 96 + 50] - sc.load_kw[172 * 96 + 50]
    report = model.check_batch(np.stack([inj * 0.5, inj])).report(1)
    net = model.net
    np.testing.assert_allclose(net.res_line.loading_percent, report.line_loading_pct, atol=TOL_PCT)
    np.testing.assert_allclose(net.sgen.p_mw.sum() * 1000.0, inj.sum())
    assert report.as_dict()["losses_kw"] == report.losses_kw > 0
    assert set(model.check_batch(inj[None]).kpis()) >= {"losses_kw", "ext_grid_kw"}


@pytest.mark.parametrize("rows", [3, 12])  # per-row solves and lightsim2grid's time series
def test_check_batch_rows_equal_separate_checks(rows: int) -> None:
    sc = cached_scenario("default")
    start = 172 * 96 + 40
    inj = sc.pv_kw[start : start + rows] - sc.load_kw[start : start + rows]
    batch = GridModel(sc, "ac").check_batch(inj)
    single = GridModel(sc, "ac")
    assert batch.converged.all()
    for b, row in enumerate(inj):
        r = single.check(row)
        np.testing.assert_allclose(batch.line_loading_pct[b], r.line_loading_pct, atol=1e-6, rtol=0)
        np.testing.assert_allclose(batch.trafo_loading_pct[b], r.trafo_loading_pct, atol=1e-6, rtol=0)
        np.testing.assert_allclose(batch.vm_pu[b], r.vm_pu, atol=1e-8, rtol=0)
        assert batch.losses_kw[b] == pytest.approx(r.losses_kw, abs=1e-5)
        assert batch.ext_grid_kw[b] == pytest.approx(r.ext_grid_kw, abs=1e-5)


@pytest.mark.parametrize("rows", [3, 12])
def test_divergence_is_reported_not_raised_and_the_next_flow_recovers(rows: int) -> None:
    sc = cached_scenario("default")
    model = GridModel(sc, "ac")
    start = 172 * 96 + 48
    inj = sc.pv_kw[start : start + rows] - sc.load_kw[start : start + rows]
    absurd = inj.copy()
    absurd[1, 0] = -1e6  # 1 GW load at one house
    batch = model.check_batch(absurd)
    assert not batch.converged[1] and batch.errors[1] and "converge" in batch.errors[1]
    assert np.isnan(batch.line_loading_pct[1]).all() and np.isnan(batch.losses_kw[1])
    assert batch.kpis()["n_overloaded_lines"][1] == 0 and np.isnan(batch.kpis()["ext_grid_kw"][1])
    ok = np.arange(rows) != 1
    assert batch.converged[ok].all()
    for b in np.flatnonzero(ok)[:3]:  # rows after the failure start again from a sane point
        _assert_matches(batch.report(int(b)), _plain(sc.net, dict(zip(sc.agent_ids, absurd[b]))))
    r = model.check(absurd[1])
    assert not r.converged and r.error and np.isnan(r.max_line_loading_pct)
    _assert_matches(model.check(inj[0]), _plain(sc.net, dict(zip(sc.agent_ids, inj[0]))))


def _switch_net():  # type: ignore[no-untyped-def]
    """MV/LV feeder: Dyn5 transformer, a busbar split by a closed bus-bus switch, a ring opened by a line switch,
    a cable open at both ends, a double cable (parallel = 2), two agents and a load."""
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 20.0)
    lv = [pp.create_bus(net, 0.4) for _ in range(5)]
    pp.create_ext_grid(net, mv, vm_pu=1.02)
    pp.create_transformer(net, mv, lv[0], "0.4 MVA 20/0.4 kV")
    pp.create_switch(net, lv[0], lv[1], et="b", closed=True)
    cable = "NAYY 4x150 SE"
    pp.create_line(net, lv[1], lv[2], 0.2, cable)
    pp.create_line(net, lv[2], lv[3], 0.15, cable)
    ring = pp.create_line(net, lv[3], lv[4], 0.1, cable)
    pp.create_line(net, lv[1], lv[4], 0.25, cable, parallel=2)
    dead = pp.create_line(net, lv[4], lv[2], 0.3, cable)
    pp.create_switch(net, lv[4], ring, et="l", closed=False)  # the ring is open at lv[4]
    pp.create_switch(net, lv[4], dead, et="l", closed=False)
    pp.create_switch(net, lv[2], dead, et="l", closed=False)
    pp.create_switch(net, lv[1], 0, et="l", closed=True)
    pp.create_load(net, lv[2], p_mw=0.03, q_mvar=0.01)
    pp.create_sgen(net, lv[3], p_mw=0.0, name="a0")
    pp.create_sgen(net, lv[4], p_mw=0.0, name="a1")
    pp.create_sgen(net, lv[2], p_mw=0.0, name="bg0")
    return net


def _tiny_scenario(net, agent_ids=("a0", "a1"), background_ids=()):  # type: ignore[no-untyped-def]
    t = 4
    return SimpleNamespace(
        net=net,
        agent_ids=agent_ids,
        background_ids=background_ids,
        pv_kw=np.full((t, len(agent_ids)), 20.0),
        load_kw=np.full((t, len(agent_ids)), 5.0),
    )


def test_switches_are_handled_like_pandapower() -> None:
    net = _switch_net()
    model = GridModel(_tiny_scenario(net), "ac", engine="lightsim2grid")
    for inj in ([0.0, 0.0], [40.0, -25.0], [-60.0, 80.0]):
        report = model.check(np.array(inj))
        ref = _plain(net, {"a0": inj[0], "a1": inj[1]})
        _assert_matches(report, ref)
    ring, dead = 2, 4
    assert report.line_loading_pct[ring] > 0  # charging current of a cable open at one end
    assert report.line_loading_pct[dead] == 0.0  # open at both ends: out of service
    same = GridModel(_tiny_scenario(net), "ac", engine="pandapower").check(np.array(inj))
    np.testing.assert_allclose(same.line_loading_pct, report.line_loading_pct, atol=TOL_PCT)


def test_background_injections_ac_and_linear() -> None:
    net = _switch_net()
    sc = _tiny_scenario(net, background_ids=("bg0",))
    ac = GridModel(sc, "ac")
    inj, bg = np.array([30.0, -10.0]), np.array([-45.0])
    _assert_matches(ac.check(inj, bg), _plain(net, {"a0": 30.0, "a1": -10.0, "bg0": -45.0}))
    _assert_matches(ac.check(inj), _plain(net, {"a0": 30.0, "a1": -10.0, "bg0": 0.0}))  # None = zero
    batch = ac.check_batch(np.stack([inj, inj]), bg)  # float[K] broadcast to every row
    np.testing.assert_allclose(batch.losses_kw, ac.check(inj, bg).losses_kw, atol=1e-6)

    lin = GridModel(sc, "linear")
    s = lin.sensitivities
    assert s["line_current_ka_per_kw"].shape == (len(net.line), 2)
    assert s["line_current_ka_per_kw_background"].shape == (len(net.line), 1)
    r = lin.check(inj, bg)
    # the load's flow is the active base current A0 (0 where the load's current does not pass)
    assert abs(s["line_active_current_ka"][0]) > 0.04
    flow = (
        s["line_active_current_ka"]
        + s["line_current_ka_per_kw"] @ inj
        + s["line_current_ka_per_kw_background"] @ bg
    )
    i_ka = np.sqrt(s["line_current_ka"] ** 2 + flow**2)
    # the rating of the double cable counts both systems, as in pandapower's loading
    np.testing.assert_allclose(lin.max_i_ka, net.line.max_i_ka * net.line.parallel)
    np.testing.assert_allclose(r.line_loading_pct, 100 * i_ka / lin.max_i_ka, rtol=1e-12)
    t_flow = (
        s["trafo_active_loading_pct"] + s["trafo_loading_pct_per_kw"] @ inj
        + s["trafo_loading_pct_per_kw_background"] @ bg
    )  # fmt: skip
    np.testing.assert_allclose(r.trafo_loading_pct, np.hypot(s["trafo_loading_pct"], t_flow), rtol=1e-12)
    np.testing.assert_allclose(
        r.vm_pu, s["vm_pu"] + s["vm_pu_per_kw"] @ inj + s["vm_pu_per_kw_background"] @ bg
    )
    # the background sgen shares its bus with the load: its column is the bus's column, as an agent's would be
    a = ac.check(inj, bg)
    assert np.abs(r.vm_pu - a.vm_pu).max() < 2e-3
    np.testing.assert_allclose(r.line_loading_pct, a.line_loading_pct, rtol=0, atol=0.2)
    np.testing.assert_allclose(r.trafo_loading_pct, a.trafo_loading_pct, rtol=0, atol=0.2)


@pytest.mark.parametrize(
    "bad", [np.zeros(2), np.zeros((3, 1)), np.array([np.nan]), np.array([np.inf]), "abc"]
)
def test_bad_background_raises(bad) -> None:  # type: ignore[no-untyped-def]
    sc = _tiny_scenario(_switch_net(), background_ids=("bg0",))
    for mode in ("ac", "linear"):
        model = GridModel(sc, mode)
        with pytest.raises(GridError, match="background_kw"):
            model.check(np.zeros(2), bad)
        with pytest.raises(GridError, match="background_kw"):
            model.check_batch(np.zeros((2, 2)), bad)


def test_missing_background_sgen_raises() -> None:
    with pytest.raises(GridError, match="background_ids"):
        GridModel(_tiny_scenario(_switch_net(), background_ids=("nope",)), "ac")


def _tap_net(side: str, tap_pos: int, tap_neutral: int, kind: str | None, load_mw: float):  # type: ignore[no-untyped-def]
    net = pp.create_empty_network()
    hv, lv = pp.create_bus(net, 20.0), pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, hv, vm_pu=1.0)
    pp.create_transformer_from_parameters(
        net, hv, lv, sn_mva=0.4, vn_hv_kv=20.0, vn_lv_kv=0.4, vkr_percent=1.2, vk_percent=6.0, pfe_kw=0.0,
        i0_percent=0.0, shift_degree=150.0, tap_side=side, tap_neutral=tap_neutral, tap_min=-5, tap_max=5,
        tap_step_percent=2.5, tap_pos=tap_pos, tap_changer_type=kind,
    )  # fmt: skip
    pp.create_load(net, lv, p_mw=load_mw, q_mvar=0.3 * load_mw)
    pp.create_sgen(net, lv, p_mw=0.0, name="a0")
    return net


@pytest.mark.parametrize(
    ("side", "tap_pos", "tap_neutral", "kind", "ratio"),
    [
        ("hv", 2, 0, "Ratio", 1 / 1.05),  # +2 steps of 2.5 % on the HV side: V_lv = 1 / (1 + 0.05)
        ("hv", 1, 3, "Ratio", 1 / 0.95),
        ("lv", 2, 0, "Ratio", 1.05),  # on the LV side: V_lv = 1 + 0.05
        ("lv", -1, 1, "Ratio", 0.95),
        ("hv", 2, 0, None, 1.0),  # untyped tap changer: pandapower 3 ignores tap_pos, and so must the engine
    ],
)
def test_transformer_taps_like_pandapower_and_by_hand(side, tap_pos, tap_neutral, kind, ratio) -> None:  # type: ignore[no-untyped-def]
    no_load = _tap_net(side, tap_pos, tap_neutral, kind, 0.0)
    model = GridModel(_tiny_scenario(no_load, agent_ids=("a0",)), "ac", engine="lightsim2grid")
    report = model.check(np.zeros(1))
    assert report.vm_pu[1] == pytest.approx(ratio, abs=1e-9)  # no magnetising current, no load: exact ratio
    _assert_matches(report, _plain(no_load, {}))
    loaded = _tap_net(side, tap_pos, tap_neutral, kind, 0.2)
    model = GridModel(_tiny_scenario(loaded, agent_ids=("a0",)), "ac", engine="lightsim2grid")
    for p in (0.0, 50.0, -80.0):
        _assert_matches(model.check(np.array([p])), _plain(loaded, {"a0": p}))


def test_bad_engine_name() -> None:
    with pytest.raises(GridError, match=r"engine: must be one of .*'lightsim2grid'.*got 'klu'"):
        GridModel(cached_scenario("tiny"), "ac", engine="klu")
    assert GRID_ENGINES == ("auto", "lightsim2grid", "pandapower")


def test_unsupported_net_falls_back_or_raises() -> None:
    net = _switch_net()
    pp.create_ext_grid(net, 3, vm_pu=1.0)  # a second slack: the engine does not model it
    sc = _tiny_scenario(net)
    auto = GridModel(sc, "ac")
    assert auto.engine == "pandapower" and "ext_grid" in (auto.engine_fallback or "")
    with pytest.raises(GridEngineError, match="ext_grid"):
        GridModel(sc, "ac", engine="lightsim2grid")
    with pytest.raises(GridError, match="engine"):  # GridEngineError is a GridError (and a ValueError)
        GridModel(sc, "ac", engine="lightsim2grid")


def test_missing_lightsim2grid_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lightsim_module, "lightsim_available", lambda: False)
    sc = cached_scenario("tiny")
    model = GridModel(sc, "ac")
    assert model.engine == "pandapower" and "not installed" in (model.engine_fallback or "")
    with pytest.raises(GridEngineError, match="not installed"):
        GridModel(sc, "ac", engine="lightsim2grid")


@pytest.mark.parametrize("name", ["default", "flex"])
def test_linear_sensitivities_agree_between_engines(name: str) -> None:
    """Entries above 0.1 % of the largest agree to 1e-6 relative; the rest sit at the finite differences' noise
    floor, 1e-4 of the largest entry. The active base currents of ``default`` and ``flex`` (no loads but the
    agents': only the flows that feed the cables' losses, ~1e-11 kA) are compared on the scale of the whole base
    current, where they are the power flows' tolerance."""
    sc = cached_scenario(name)
    fast, ref = GridModel(sc, "linear"), GridModel(sc, "linear", engine="pandapower")
    assert fast.engine == "lightsim2grid" and ref.engine == "pandapower"
    base = {"line_active_current_ka": "line_current_ka", "trafo_active_loading_pct": "trafo_loading_pct"}
    for key, value in ref.sensitivities.items():
        mine = fast.sensitivities[key]
        if not value.size:
            continue
        scale = np.abs(value).max()
        if key in base:
            scale = max(scale, np.hypot(ref.sensitivities[base[key]], value).max())
        big = np.abs(value) > 1e-3 * scale
        np.testing.assert_allclose(mine[big], value[big], rtol=0, atol=1e-6 * scale, err_msg=key)
        np.testing.assert_allclose(mine, value, rtol=0, atol=1e-4 * scale, err_msg=key)


def test_losses_and_import_of_the_linear_model_on_default() -> None:
    """Linear losses (AC at zero injection + the change of Σ 3 I² R and transformer copper losses) within 1 % of
    the AC losses at real injections, midday peaks included; the import within 0.05 kW (energy balance)."""
    sc = cached_scenario("default")
    ac, lin = GridModel(sc, "ac"), GridModel(sc, "linear")
    zero = np.zeros(sc.n_agents)
    assert lin.check(zero).losses_kw == pytest.approx(ac.check(zero).losses_kw, abs=1e-6)
    assert lin.check(zero).ext_grid_kw == pytest.approx(ac.check(zero).ext_grid_kw, abs=1e-6)
    rng = np.random.default_rng(2)
    steps = np.concatenate([rng.integers(0, sc.n_steps, 20), [d * 96 + 13 * 4 for d in range(150, 240, 9)]])
    inj = sc.pv_kw[steps] - sc.load_kw[steps]
    a, b = ac.check_batch(inj), lin.check_batch(inj)
    assert a.converged.all() and (a.losses_kw > 1.0).all()  # the transformer's iron losses alone are 1.2 kW
    np.testing.assert_allclose(b.losses_kw, a.losses_kw, rtol=0.01)
    np.testing.assert_allclose(b.ext_grid_kw, a.ext_grid_kw, rtol=0, atol=0.05)
    # AC energy balance: import = losses − injections (default has no loads but the agents')
    np.testing.assert_allclose(a.ext_grid_kw, a.losses_kw - inj.sum(axis=1), atol=1e-3)
