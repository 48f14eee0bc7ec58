"""The SimBench extract with flexible assets: counts, profiles against SimBench, EV sessions, heat-pump bands,
and an AC power flow at the peak-load step.

Literal reference values were read from the full SimBench data (simbench 1.6.3,
``simbench.get_simbench_net("1-LV-rural3--2-sw")`` and its ``profiles`` tables, before quantisation).
"""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from p2p_gym.errors import ScenarioError
from p2p_gym.scenarios import flex_data as fd

CODE = "1-LV-rural3--2-sw"
T = 35136  # 2016 (leap year): 366 days × 96 quarter hours
#: element counts of the SimBench grid 1-LV-rural3--2-sw (net.bus, net.line, ... of get_simbench_net)
COUNTS = {"bus": 129, "line": 127, "trafo": 1, "load": 153, "sgen": 27, "storage": 16}
#: loads by SimBench profile family: H0-* 113, G* 5, Air_*/Soil_* 18, HLS_*/APLS_* 17; PV sgens; PV-battery units
KINDS = {"household": 113, "commercial": 5, "heat_pump": 18, "ev": 17, "pv": 27, "pv_battery": 16}
#: name: (Σ profile · 0.25 h, max, argmax, value at step 17000, value at step 30000), from the SimBench tables
SIMBENCH = {
    "H0-A": (1222.069953, 1.0, 824, 0.035112, 0.102528),
    "HLS_A_3.7": (207.156227, 0.995700, 15019, 0.0, 0.0),
    "Soil_Alternative_1": (1267.597905, 1.0, 380, 0.0, 0.0),
    "PV3": (680.737996, 0.616379, 13200, 0.0, 0.122115),
    "Storage_PV3_H0-A": (657.654133, 0.614645, 13200, 0.010261, 0.029963),
    "APLS_A_11.0": (24.747183, 0.983819, 12408, 0.0, 0.0),
}
#: step of the largest total load (Σ load profile × p_mw) and that total, MW, from simbench.get_absolute_values
PEAK_STEP, PEAK_LOAD_MW = 32237, 0.2461522825
#: external-grid import at that step from an AC power flow of the full SimBench data (its own q profiles), MW
PEAK_IMPORT_MW = 0.24502353


@pytest.fixture(scope="module")
def net():  # type: ignore[no-untyped-def]
    return fd.flex_net(CODE)


@pytest.fixture(scope="module")
def elements() -> fd.FlexElements:
    return fd.flex_elements(CODE)


def test_net_loads_with_simbench_counts(net) -> None:  # type: ignore[no-untyped-def]
    for table, n in COUNTS.items():
        assert len(net[table]) == n, table
    assert not net.profiles  # the bulky profile tables are not shipped


def test_elements_match_net_and_kinds(net, elements: fd.FlexElements) -> None:  # type: ignore[no-untyped-def]
    assert len(elements) == COUNTS["load"] + COUNTS["sgen"] + COUNTS["storage"]
    assert {k: int((elements.kind == k).sum()) for k in KINDS} == KINDS
    assert set(elements.bus) <= set(net.bus.index)
    for table in ("load", "sgen", "storage"):
        sel = elements.element == table
        df = net[table].loc[elements.index[sel]]
        assert list(df["bus"]) == list(elements.bus[sel])
        assert list(df["profile"]) == list(elements.profile[sel])
        np.testing.assert_allclose(elements.p_kw[sel], np.abs(df["p_mw"].to_numpy()) * 1000.0)
    storage = elements.element == "storage"
    np.testing.assert_allclose(elements.e_kwh[storage], net.storage["max_e_mwh"].to_numpy() * 1000.0)
    assert np.all(elements.e_kwh[~storage] == 0) and np.all(elements.e_kwh[storage] > 0)
    assert list(elements.injects) == [e != "load" for e in elements.element]
    # every element's profile is shipped
    assert set(elements.profile) <= set(fd.flex_profile_names(CODE))


@pytest.mark.parametrize("name", sorted(SIMBENCH))
def test_profiles_equal_simbench_to_quantisation(name: str) -> None:
    flh, peak, argmax, v17000, v30000 = SIMBENCH[name]
    x = fd.flex_profile(name, CODE)
    assert x.shape == (T,) and not x.flags.writeable
    q = peak / 65535.0  # one quantisation step of this column
    assert x.max() == pytest.approx(peak, abs=1e-6) and int(x.argmax()) == argmax
    assert x[17000] == pytest.approx(v17000, abs=q / 2 + 1e-6)
    assert x[30000] == pytest.approx(v30000, abs=q / 2 + 1e-6)
    assert x.sum() * 0.25 == pytest.approx(flh, abs=T * 0.25 * q / 2)


def test_kinds_behave_like_their_assets(elements: fd.FlexElements) -> None:
    winter, summer = slice(0, 59 * 96), slice(152 * 96, 244 * 96)  # Jan–Feb, Jun–Aug
    for i in range(len(elements)):
        kw = fd.flex_profile(str(elements.profile[i]), CODE) * elements.p_kw[i]
        kind = elements.kind[i]
        if kind == "heat_pump":  # space heating: far more in winter than in summer
            assert kw[winter].mean() > 5 * kw[summer].mean()
        elif (
            kind == "ev"
        ):  # a charger (3.7, 11 or 22 kW) draws at most its rating and is idle most of the time
            assert np.isclose(elements.p_kw[i], [3.7, 10.9, 21.8]).any() and kw.max() <= elements.p_kw[i]
            assert 0.003 < (kw > 0).mean() < 0.1
        elif kind == "household":  # annual consumption of a (small to large) household: 0.5–7 MWh
            assert 500 < kw.sum() * 0.25 < 7000
        elif kind in (
            "pv",
            "pv_battery",
        ):  # more infeed in summer; at summer nights (00–04 h) only from batteries
            night = kw[summer].reshape(-1, 96)[:, :16]
            assert kw[summer].mean() > 2 * kw[winter].mean()
            assert (night.max() > 0) == (kind == "pv_battery")


def _reference_runs(x: np.ndarray, merge_gap: int) -> list[tuple[int, int]]:
    """Slow, plain-loop runs of x > 0 merged across idle gaps shorter than merge_gap."""
    runs: list[list[int]] = []
    t = 0
    while t < len(x):
        if x[t] > 0:
            start = t
            while t < len(x) and x[t] > 0:
                t += 1
            if runs and start - runs[-1][1] < merge_gap:
                runs[-1][1] = t
            else:
                runs.append([start, t])
        else:
            t += 1
    return [(a, b) for a, b in runs]


def test_ev_sessions_energy_windows_and_reference(elements: fd.FlexElements) -> None:
    s = fd.ev_sessions(CODE)
    ev = elements.of_kind("ev")
    assert set(s.load) == set(elements.index[ev])
    for i in ev:
        kw = fd.flex_profile(str(elements.profile[i]), CODE) * elements.p_kw[i]
        mine = s.load == elements.index[i]
        # energy of all sessions = the integral of the charging profile
        assert s.energy_kwh[mine].sum() == pytest.approx(kw.sum() * 0.25, rel=1e-9)
        # sessions = the reference runs, each with its own energy and peak
        ref = _reference_runs(kw, fd.EV_MERGE_GAP_STEPS)
        assert list(zip(s.arrival[mine], s.charge_end[mine])) == ref
        for (a, b), e, m in zip(ref, s.energy_kwh[mine], s.max_kw[mine]):
            assert e == pytest.approx(kw[a:b].sum() * 0.25) and m == kw[a:b].max()
        # plug-in windows of one charger do not overlap
        assert np.all(s.departure[mine][:-1] <= s.arrival[mine][1:])
    rated = elements.p_kw[s.load]
    assert (
        np.all(s.arrival < s.charge_end) and np.all(s.charge_end <= s.departure) and np.all(s.departure <= T)
    )
    assert np.all((s.max_kw > 0) & (s.max_kw <= rated + 1e-9))
    # deliverable: max_kw over the window covers the energy
    assert np.all(s.energy_kwh <= s.max_kw * (s.departure - s.arrival) * 0.25 + 1e-9)
    assert np.all(s.flexibility_hours >= -1e-9)
    # departure rule: home sessions from 17:00 to 05:00 leave at 07:00 unless the next session cuts them
    hour = (s.arrival % 96) / 4
    home = ~np.char.startswith(elements.profile[s.load].astype(str), "APLS")
    overnight = home & ((hour >= 17) | (hour < 5))
    nxt = np.r_[s.arrival[1:], T]
    nxt[np.r_[s.load[1:] != s.load[:-1], True]] = T
    free = overnight & (s.departure < nxt) & (s.departure > s.charge_end)
    assert free.sum() > 100 and np.all(s.departure[free] % 96 == 28)
    work = ~home & (s.departure > s.charge_end)
    assert work.any() and np.all(s.departure[work] - s.arrival[work] <= 32)
    # a plausible mobility pattern: about one session every two days, a few kWh each
    per_day = len(s) / len(ev) / (T / 96)
    assert 0.2 < per_day < 1.0 and 1.0 < s.energy_kwh.mean() < 10.0


def test_heat_pump_band(elements: fd.FlexElements) -> None:
    hp = fd.heat_pump_band(CODE)
    idx = elements.of_kind("heat_pump")
    assert list(hp.load) == list(elements.index[idx]) and hp.profile_kw.shape == (T, len(idx))
    assert np.all(hp.band_kwh >= 0) and np.all(hp.band_kwh > 0)
    np.testing.assert_allclose(hp.band_kwh, 1.25 * hp.rated_kw)  # τ_b·ΔT/ΔT_design = 40 h·1 K/32 K
    assert np.all(hp.profile_kw >= 0) and np.all(hp.profile_kw <= hp.rated_kw + 1e-9)
    for j, i in enumerate(idx):
        np.testing.assert_allclose(
            hp.profile_kw[:, j], fd.flex_profile(str(elements.profile[i]), CODE) * hp.rated_kw[j]
        )
    # SimBench heat pumps are off every day 08:00–09:15, 11:30–12:45 and 17:00–18:45 and on at other times
    on = (hp.profile_kw.reshape(T // 96, 96, -1) > 0).any(axis=(0, 2))
    assert list(np.flatnonzero(~on)) == [*range(32, 37), *range(46, 51), *range(68, 75)]
    assert np.all(fd.heat_pump_band(CODE, hours=0.0).band_kwh == 0)
    with pytest.raises(ScenarioError, match="hours"):
        fd.heat_pump_band(CODE, hours=-1.0)


def test_ac_power_flow_at_peak_load_converges(net) -> None:  # type: ignore[no-untyped-def]
    net = fd.flex_net(CODE)
    prof = {
        n: fd.flex_profile(n, CODE)
        for n in set(net.load.profile) | set(net.sgen.profile) | set(net.storage.profile)
    }
    total = sum(prof[p] * p_mw for p, p_mw in zip(net.load.profile, net.load.p_mw))
    t = int(np.argmax(total))
    assert t == PEAK_STEP and total[t] == pytest.approx(PEAK_LOAD_MW, abs=1e-4)
    for table in ("load", "sgen", "storage"):
        factor = np.array([prof[p][t] for p in net[table].profile])
        net[table]["p_mw"] = net[table]["p_mw"].to_numpy() * factor
        if table == "load":
            net[table]["q_mvar"] = net[table]["q_mvar"].to_numpy() * factor
    pp.runpp(net, numba=False)
    assert net.converged
    # the transformer's tap −1 (2.5 % on the HV side) lifts the LV side: 1.010 p.u. at the lowest bus, 0.985
    # with the tap ignored
    assert 1.0 < net.res_bus.vm_pu.min() < 1.02 and net.res_line.loading_percent.max() < 100
    # the import covers the load less PV, PV batteries and losses as in SimBench's own flow (q differs a little)
    assert net.res_ext_grid.p_mw.sum() == pytest.approx(PEAK_IMPORT_MW, abs=2e-3)
    # flex_net(step=...) applies the same rule
    at = fd.flex_net(CODE, step=t)
    for table in ("load", "sgen", "storage"):
        np.testing.assert_allclose(at[table]["p_mw"].to_numpy(), net[table]["p_mw"].to_numpy())


def test_bad_input() -> None:
    with pytest.raises(ScenarioError, match="code"):
        fd.flex_elements("1-LV-nowhere--2-sw")
    with pytest.raises(ScenarioError, match="name"):
        fd.flex_profile("H9-Z", CODE)
    with pytest.raises(ScenarioError, match="step"):
        fd.flex_net(CODE, step=T)
