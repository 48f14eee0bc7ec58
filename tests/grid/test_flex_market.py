"""The DSO's local flexibility market (EUniversal D5.3 (2022), §5.2.1): an exact vertex-enumeration oracle on tiny
instances (with and without active base currents ``a0_ka``), a hand-worked 3-bus feeder, the congested
``default_high_pv`` days checked by the environment's own linear grid check and an interior-point solver, a feeder
with a fixed load and a background element checked by the model's own check and a second-order-cone solver on the
model's current formula, the not-needed case and bad input."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from p2p_gym.errors import GridError
from p2p_gym.grid import (
    FlexOffer,
    GridModel,
    clear_flex_market,
    clear_flex_market_batch,
    line_headroom_ka,
)
from tests.conftest import cached_scenario
from tests.grid._nets import base_ka, loaded_feeder

warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------------------------- 1. oracle
def _oracle_min_cost(s, imax, i0, p, up, down, cu, cd, target_pct, a0=None):  # type: ignore[no-untyped-def]
    """Exact minimum of Σ c⁺u + c⁻d per hour (None when infeasible) by enumerating vertices, no LP solver.

    With prices ≥ 0, the cheapest (u, d) with a given net change δ = u − d is u = max(δ, 0), d = max(−δ, 0)
    (any other split adds (c⁺ + c⁻)·t ≥ 0), so the problem is min g(δ) = Σ c⁺ max(δ, 0) + c⁻ max(−δ, 0) over
    the polytope P = {−D ≤ δ ≤ U, |F⁰ + S δ| ≤ H}. g is linear on each orthant, so its minimum over P is attained
    at a vertex of P cut by the hyperplanes δ_i = 0: a point where N linearly independent hyperplanes among
    {δ_i = −D_i, δ_i = 0, δ_i = U_i, S_l δ = ±H_l − F⁰_l} meet and that lies in P. P is bounded (box), so it is
    empty exactly when no such point exists. ``F⁰ = A0 + S p`` with the active base currents ``a0`` (None = 0).
    """
    n = len(p)
    head = np.sqrt((target_pct / 100.0 * imax) ** 2 - i0**2)  # written out, not line_headroom_ka
    f0 = s @ p + (0.0 if a0 is None else a0)
    planes = [(np.eye(n)[i], v) for i in range(n) for v in (-down[i], 0.0, up[i])]
    planes += [(s[l], sign * head[l] - f0[l]) for l in range(len(imax)) for sign in (1.0, -1.0)]
    best = None
    for combo in itertools.combinations(planes, n):
        a = np.array([c[0] for c in combo])
        if abs(np.linalg.det(a)) < 1e-12:
            continue
        delta = np.linalg.solve(a, np.array([c[1] for c in combo]))
        tol = 1e-9
        if np.any(delta < -down - tol) or np.any(delta > up + tol):
            continue
        if np.any(np.abs(f0 + s @ delta) > head + tol * 1e-3):
            continue
        cost = float(cu @ np.maximum(delta, 0.0) + cd @ np.maximum(-delta, 0.0))
        best = cost if best is None else min(best, cost)
    return best


def _random_instance(rng: np.random.Generator, with_a0: bool = False):  # type: ignore[no-untyped-def]
    """3–4 agents, 2–3 lines, small integers; (rating, reactive current, headroom) are Pythagorean triples so the
    100 % headroom is an integer too (units: mA per kW and mA, scaled to kA). ``with_a0``: also integer active
    base currents (returned last; None without)."""
    triples = np.array([(5, 3, 4), (10, 6, 8), (13, 5, 12), (5, 0, 5), (17, 8, 15)])
    while True:
        n, l = int(rng.integers(3, 5)), int(rng.integers(2, 4))
        s_ma = rng.integers(-2, 3, size=(l, n))
        tri = triples[rng.integers(0, len(triples), l)]
        p_int = rng.integers(-6, 7, n)
        a0_ma = rng.integers(-12, 13, l) if with_a0 else np.zeros(l, dtype=np.int64)
        if np.any(np.abs(a0_ma + s_ma @ p_int) > tri[:, 2]):  # congested before (integer arithmetic: no ties)
            s, imax, i0, p = s_ma * 1e-3, tri[:, 0] * 1e-3, tri[:, 1] * 1e-3, p_int.astype(float)
            up, down = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)
            cu, cd = rng.integers(0, 6, n).astype(float), rng.integers(0, 6, n).astype(float)
            return s, imax, i0, p, up, down, cu, cd, (a0_ma * 1e-3 if with_a0 else None)


@pytest.mark.parametrize("with_a0", [False, True])
@pytest.mark.parametrize("margin_pct", [0.0, 10.0])
def test_lp_cost_equals_vertex_enumeration_oracle(margin_pct: float, with_a0: bool) -> None:
    rng = np.random.default_rng(7 + int(margin_pct) + 100 * with_a0)
    dt = 0.25
    seen = {"cleared": 0, "infeasible": 0}
    for _ in range(150):
        s, imax, i0, p, up, down, cu, cd, a0 = _random_instance(rng, with_a0)
        res = clear_flex_market(s, imax, i0, p, FlexOffer(up, down, cu, cd), dt, margin_pct, a0_ka=a0)
        ref = _oracle_min_cost(s, imax, i0, p, up, down, cu, cd, 100.0 - margin_pct, a0)
        seen[res.status] += 1
        assert res.congested_before >= 1
        if ref is None:
            assert res.status == "infeasible"
            assert res.cost == 0.0 and not res.up_kw.any() and not res.down_kw.any()
            np.testing.assert_array_equal(res.loading_after_pct, res.loading_before_pct)
        else:
            assert res.status == "cleared"
            assert res.cost == pytest.approx(dt * ref, rel=1e-6, abs=1e-7)  # the 1e-9 interior shift
            # the returned activation is within the offers and meets the target on every line
            assert np.all((res.up_kw >= 0) & (res.up_kw <= up) & (res.down_kw >= 0) & (res.down_kw <= down))
            base = 0.0 if a0 is None else a0
            after = np.sqrt(i0**2 + (base + s @ (p + res.up_kw - res.down_kw)) ** 2) / imax * 100.0
            np.testing.assert_allclose(res.loading_after_pct, after, rtol=1e-12)
            assert after.max() <= 100.0 - margin_pct + 1e-7
            # 0, except where the offers meet the limit with no slack at all (integer data make that common here):
            # the exact-limit solve then lands on 100 % up to round-off, which the strict count may report
            assert res.congested_after == np.count_nonzero(after > 100.0)
            assert res.cost == pytest.approx(dt * (cu @ res.up_kw + cd @ res.down_kw), rel=1e-12, abs=1e-12)
    assert seen["cleared"] >= 20 and seen["infeasible"] >= 20, seen  # both outcomes exercised


# --------------------------------------------------------------------------------------------- 2. hand case
# Slack (bus 0) —line 0— bus 1 —line 1— bus 2. Agent A sits at bus 1, agent B (PV) at bus 2. A kW injected at a bus
# flows to the slack through every line in between; with 1 kW ↔ 1 A of active current and flows towards the
# slack negative (the sign pandapower gives a from-bus at the slack side), S = −0.001 · [[1, 1], [0, 1]] kA/kW.
# Line 0: rating 100 A, no-load current 60 A ⇒ headroom √(100² − 60²) = 80 A. Line 1: 200 A, 60 A ⇒ ≈ 190.8 A.
# A draws 10 kW, B exports 100 kW: line 0 carries 90 A ⇒ loading √(60² + 90²)/100 = 108.17 %, over by 10 kW;
# line 1 carries 100 A ⇒ √(60² + 100²)/200 = 58.3 %.
_S3 = -1e-3 * np.array([[1.0, 1.0], [0.0, 1.0]])
_IMAX3 = np.array([0.1, 0.2])
_I03 = np.array([0.06, 0.06])
_P3 = np.array([-10.0, 100.0])


def _offer3(b_down: float) -> FlexOffer:
    # A: 15 kW more consumption at 0.10/kWh, and 20 kW upward (useless: it raises line 0) at 0.01/kWh;
    # B: PV curtailment of b_down kW at 0.05/kWh.
    return FlexOffer(
        up_kw=np.array([20.0, 0.0]),
        down_kw=np.array([15.0, b_down]),
        up_price=np.array([0.01, 0.0]),
        down_price=np.array([0.10, 0.05]),
    )


def test_hand_worked_three_bus_feeder() -> None:
    res = clear_flex_market(_S3, _IMAX3, _I03, _P3, _offer3(100.0), dt_hours=0.25)
    assert res.status == "cleared" and res.congested_before == 1 and res.congested_after == 0
    np.testing.assert_allclose(res.loading_before_pct, [np.hypot(60, 90), np.hypot(60, 100) / 2], rtol=1e-12)
    # the cheaper B curtails exactly the 10 kW overflow; A's up offer (cheapest, but harmful) is not used
    np.testing.assert_allclose(res.down_kw, [0.0, 10.0], atol=1e-6)
    np.testing.assert_allclose(res.up_kw, [0.0, 0.0], atol=1e-12)
    assert res.cost == pytest.approx(0.05 * 10.0 * 0.25, rel=1e-6)  # 0.125
    assert res.loading_after_pct[0] == pytest.approx(100.0, abs=1e-6) and res.loading_after_pct[0] <= 100.0


def test_hand_worked_merit_order_and_margin() -> None:
    # B offers only 4 kW: B 4 kW then A 6 kW; cost 0.25 h · (0.05 · 4 + 0.10 · 6) = 0.2
    res = clear_flex_market(_S3, _IMAX3, _I03, _P3, _offer3(4.0), dt_hours=0.25)
    np.testing.assert_allclose(res.down_kw, [6.0, 4.0], atol=1e-6)
    assert res.cost == pytest.approx(0.2, rel=1e-6)
    # target 90 %: headroom √(90² − 60²) = √4500 A, so B curtails 90 − √4500 ≈ 22.92 kW
    res = clear_flex_market(_S3, _IMAX3, _I03, _P3, _offer3(100.0), dt_hours=0.25, margin_pct=10.0)
    np.testing.assert_allclose(res.down_kw, [0.0, 90.0 - np.sqrt(4500.0)], atol=1e-6)
    assert res.loading_after_pct[0] == pytest.approx(90.0, abs=1e-6)
    # too little offered: 3 + 5 kW < 10 kW overflow
    small = FlexOffer(np.zeros(2), np.array([3.0, 5.0]), np.zeros(2), np.array([0.1, 0.05]))
    res = clear_flex_market(_S3, _IMAX3, _I03, _P3, small, dt_hours=0.25)
    assert res.status == "infeasible" and res.cost == 0.0 and res.congested_after == 1
    # a target below what the no-load current alone gives (55 % of 100 A < 60 A) cannot be met
    res = clear_flex_market(_S3, _IMAX3, _I03, _P3, _offer3(100.0), dt_hours=0.25, margin_pct=45.0)
    assert res.status == "infeasible"


def test_hand_worked_base_currents() -> None:
    # A non-agent generator at bus 1 exporting 20 kW: A0 = −20 A on line 0, which then carries −20 − 90 = −110 A
    # ⇒ loading √(60² + 110²) = 125.3 %; B curtails 30 kW (not 10) to bring it to −80 A.
    res = clear_flex_market(_S3, _IMAX3, _I03, _P3, _offer3(100.0), dt_hours=0.25, a0_ka=[-0.02, 0.0])
    assert res.status == "cleared" and res.congested_before == 1
    assert res.loading_before_pct[0] == pytest.approx(np.hypot(60, 110), rel=1e-12)
    np.testing.assert_allclose(res.down_kw, [0.0, 30.0], atol=1e-6)
    assert res.cost == pytest.approx(0.05 * 30.0 * 0.25, rel=1e-6)
    assert res.loading_after_pct[0] == pytest.approx(100.0, abs=1e-6)
    # a non-agent load at bus 1 drawing 30 kW: A0 = +30 A, line 0 carries 30 − 90 = −60 A ⇒ 84.9 %: nothing to buy
    # (with A0 = 0 the same injections overload it)
    res = clear_flex_market(
        _S3, _IMAX3, _I03, _P3, _offer3(100.0), dt_hours=0.25, a0_ka=np.array([0.03, 0.0])
    )
    assert res.status == "not_needed" and res.cost == 0.0
    assert res.loading_before_pct[0] == pytest.approx(np.hypot(60, 60), rel=1e-12)
    # the batch takes one base per row: rows as the two single calls above
    rows = np.stack([_P3, _P3])
    out = clear_flex_market_batch(
        _S3, _IMAX3, _I03, rows, _offer3(100.0), 0.25, a0_ka=np.array([[-0.02, 0.0], [0.03, 0.0]])
    )
    assert out.status == ("cleared", "not_needed")
    np.testing.assert_allclose(out.down_kw[0], [0.0, 30.0], atol=1e-6)


def test_headroom_formula() -> None:
    np.testing.assert_allclose(line_headroom_ka(_IMAX3, _I03), [0.08, np.sqrt(0.2**2 - 0.06**2)])
    assert np.isnan(line_headroom_ka(np.array([0.1]), np.array([0.06]), 55.0)[0])


# --------------------------------------------------------------------------------------------- 3. real grid
@pytest.fixture(scope="module")
def high_pv():  # type: ignore[no-untyped-def]
    sc = cached_scenario("default_high_pv")
    model = GridModel(sc, "linear")
    day = 144  # 23 May 2016: sunny; the linear check finds 16 congested quarter-hours
    rows = slice(day * sc.steps_per_day, (day + 1) * sc.steps_per_day)
    inj = (sc.pv_kw - sc.load_kw)[rows]
    congested = model.check_batch(inj).kpis()["n_overloaded_lines"] > 0
    assert congested.sum() >= 10
    return sc, model, inj[congested], sc.pv_kw[rows][congested], inj[~congested]


def _real_offer(sc, pv: np.ndarray, share: float) -> FlexOffer:  # type: ignore[no-untyped-def]
    """PV curtailment (down, up to ``share`` of the PV output) priced per agent; batteries both ways (none in
    default_high_pv, kept for scenarios with batteries)."""
    n = sc.n_agents
    price = 0.08 + 0.004 * np.arange(n)  # distinct prices: a unique merit order
    batt = np.broadcast_to(sc.battery_kw, pv.shape)
    return FlexOffer(batt.copy(), share * pv + batt, np.full(n, 0.15), price)


def test_real_congested_day_is_cleared_per_the_env_check(high_pv) -> None:  # type: ignore[no-untyped-def]
    sc, model, inj, pv, _ = high_pv
    sens = model.sensitivities
    s, i0, a0 = sens["line_current_ka_per_kw"], sens["line_current_ka"], sens["line_active_current_ka"]
    offer = _real_offer(sc, pv, 1.0)
    out = clear_flex_market_batch(s, model.max_i_ka, i0, inj, offer, sc.dt_hours, a0_ka=a0)
    assert set(out.status) == {"cleared"}
    after = inj + out.up_kw - out.down_kw
    check = model.check_batch(after).kpis()
    assert check["n_overloaded_lines"].max() == 0
    assert check["max_line_loading_pct"].max() <= 100.0 + 1e-6
    np.testing.assert_allclose(model.check_batch(inj).line_loading_pct, out.loading_before_pct, rtol=1e-12)
    np.testing.assert_allclose(model.check_batch(after).line_loading_pct, out.loading_after_pct, rtol=1e-12)
    assert np.all(out.congested_before > 0) and np.all(out.congested_after == 0)
    assert np.all(out.down_kw <= pv + 1e-9)
    np.testing.assert_allclose(out.cost, sc.dt_hours * (out.down_kw @ offer.down_price[0]), rtol=1e-9)
    # the batch equals row-by-row calls
    k = int(np.argmax(out.cost))
    one = clear_flex_market(s, model.max_i_ka, i0, inj[k], _real_offer(sc, pv[k], 1.0), sc.dt_hours, a0_ka=a0)
    assert one.cost == pytest.approx(out.cost[k], rel=1e-9)
    np.testing.assert_allclose(one.down_kw, out.down_kw[k], atol=1e-6)
    # an interior-point solver on the full LP (all lines, no screening) finds the same minimum
    cp = pytest.importorskip("cvxpy")
    rated = model.max_i_ka > 0
    head = np.sqrt(model.max_i_ka[rated] ** 2 - i0[rated] ** 2)
    d = cp.Variable(sc.n_agents, nonneg=True)
    prob = cp.Problem(
        cp.Minimize(offer.down_price[0] @ d),
        [cp.abs(a0[rated] + s[rated] @ (inj[k] - d)) <= head, d <= pv[k]],
    )
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal"
    assert out.cost[k] == pytest.approx(sc.dt_hours * prob.value, rel=1e-5)


def test_real_too_little_flexibility_is_infeasible(high_pv) -> None:  # type: ignore[no-untyped-def]
    sc, model, inj, pv, _ = high_pv
    sens = model.sensitivities
    s, i0, a0 = sens["line_current_ka_per_kw"], sens["line_current_ka"], sens["line_active_current_ka"]
    offer = _real_offer(sc, pv, 0.02)  # 2 % of the PV output
    out = clear_flex_market_batch(s, model.max_i_ka, i0, inj, offer, sc.dt_hours, a0_ka=a0)
    # certificate of infeasibility, independent of the LP: on some line the flow minus the most that all offers
    # together could move it (Σ_i |S_li| (U_i + D_i)) stays above the headroom
    head = np.sqrt(model.max_i_ka**2 - i0**2)
    reach = (offer.up_kw + offer.down_kw) @ np.abs(s).T  # [B, L]
    certain = np.any(np.abs(a0 + inj @ s.T) - reach > head, axis=1)
    assert certain.any()
    assert all(out.status[b] == "infeasible" for b in np.flatnonzero(certain))
    assert np.all(out.cost[certain] == 0.0) and not out.down_kw[certain].any()
    np.testing.assert_array_equal(out.congested_after[certain], out.congested_before[certain])


def test_feeder_with_base_flows_and_background_is_cleared_per_the_model_check() -> None:
    """A fixed load (A0 ≈ +0.22 kA on line 0, above its 0.2 kA rating alone) and a background element: with
    ``a0_ka`` = A0 + S_bg · b_t the market's loadings are the model's ``check_batch(·, b)`` to round-off, its
    activation brings every line to the target under that check, and its cost is the minimum of a second-order
    cone programme written on the model's current formula √(I0² + (A0 + S_bg b + S p)²) ≤ τ I^max (no headroom
    transformation, no screening). Without ``a0_ka`` the market misjudges the congestion."""
    cp = pytest.importorskip("cvxpy")
    inj = np.array([[-20.0, 10.0, 5.0, -30.0], [50.0, 120.0, 110.0, 80.0], [-40.0, -30.0, -20.0, -10.0]])
    bg = np.array([[10.0], [30.0], [-15.0]])
    sc = loaded_feeder(inj, bg)
    model = GridModel(sc, "linear")
    sens = model.sensitivities
    s, i0, imax = sens["line_current_ka_per_kw"], sens["line_current_ka"], model.max_i_ka
    a0 = base_ka(model, bg)  # [B, L]
    assert abs(sens["line_active_current_ka"][0]) > 0.2  # the load alone overloads line 0
    n = sc.n_agents
    offer = FlexOffer(
        np.full(n, 150.0), np.full(n, 150.0), 0.1 + 0.01 * np.arange(n), 0.05 + 0.01 * np.arange(n)
    )
    margin = 2.0
    out = clear_flex_market_batch(s, imax, i0, inj, offer, 0.25, margin, a0_ka=a0)
    before = model.check_batch(inj, bg)
    np.testing.assert_allclose(out.loading_before_pct, before.line_loading_pct, rtol=1e-12)
    assert set(out.status) == {"cleared"} and np.all(out.congested_before >= 1)
    after = inj + out.up_kw - out.down_kw
    check = model.check_batch(after, bg)
    np.testing.assert_allclose(out.loading_after_pct, check.line_loading_pct, rtol=1e-12)
    assert check.line_loading_pct.max() <= 100.0 - margin + 1e-6
    for b in range(len(inj)):
        u, d = cp.Variable(n, nonneg=True), cp.Variable(n, nonneg=True)
        flow = a0[b] + s @ (inj[b] + u - d)
        cons = [u <= offer.up_kw, d <= offer.down_kw]
        cons += [
            cp.norm(cp.hstack([i0[l], flow[l]])) <= (100.0 - margin) / 100.0 * imax[l]
            for l in range(len(imax))
        ]
        prob = cp.Problem(cp.Minimize(offer.up_price @ u + offer.down_price @ d), cons)
        prob.solve(solver="CLARABEL")
        assert prob.status == "optimal"
        assert out.cost[b] == pytest.approx(0.25 * prob.value, rel=1e-5, abs=1e-9)
    # the market that ignores the base flows: wrong loadings, and its activation fails the model's check
    blind = clear_flex_market_batch(s, imax, i0, inj, offer, 0.25, margin)
    assert np.abs(blind.loading_before_pct - before.line_loading_pct).max() > 20.0
    blind_after = model.check_batch(inj + blind.up_kw - blind.down_kw, bg).line_loading_pct
    assert blind_after.max() > 100.0


# --------------------------------------------------------------------------------------------- 4. not needed
def test_not_needed_when_nothing_is_congested(high_pv) -> None:  # type: ignore[no-untyped-def]
    sc, model, _, _, calm = high_pv
    sens = model.sensitivities
    n = sc.n_agents
    offer = FlexOffer(np.full(n, 5.0), np.full(n, 5.0), 0.1, 0.1)
    out = clear_flex_market_batch(
        sens["line_current_ka_per_kw"], model.max_i_ka, sens["line_current_ka"], calm, offer, sc.dt_hours,
        a0_ka=sens["line_active_current_ka"],
    )  # fmt: skip
    assert set(out.status) == {"not_needed"}
    assert not out.cost.any() and not out.up_kw.any() and not out.down_kw.any()
    assert not out.congested_before.any() and not out.congested_after.any()
    np.testing.assert_array_equal(out.loading_after_pct, out.loading_before_pct)
    one = out.result(0)
    assert one.status == "not_needed" and one.cost == 0.0
    # and in the hand case once B's export is small
    res = clear_flex_market(_S3, _IMAX3, _I03, np.array([-10.0, 50.0]), _offer3(100.0), 0.25)
    assert res.status == "not_needed" and res.cost == 0.0 and res.congested_before == 0


# --------------------------------------------------------------------------------------------- 5. bad input
_OK = {"sens_i": _S3, "max_i_ka": _IMAX3, "i0_ka": _I03, "injection_kw": _P3, "offer": _offer3(100.0)}


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("sens_i", np.ones(3), r"sens_i: expected shape \(L, N\)"),
        ("sens_i", [["a", 1.0]], "sens_i: expected an array of numbers"),
        ("max_i_ka", np.ones(3), r"max_i_ka: expected shape \(2,\)"),
        ("max_i_ka", np.array([0.1, -0.2]), "max_i_ka: must be ≥ 0"),
        ("i0_ka", np.array([0.1, np.nan]), "i0_ka: contains NaN"),
        ("a0_ka", np.ones(3), r"a0_ka: expected shape \(2,\) \(one signed active current per line"),
        ("a0_ka", np.ones((1, 2)), r"a0_ka: expected shape \(2,\)"),
        ("a0_ka", np.array([0.1, np.inf]), "a0_ka: contains NaN"),
        ("injection_kw", np.ones(3), r"injection_kw: expected shape \(2,\)"),
        ("injection_kw", np.array([np.inf, 0.0]), "injection_kw: contains NaN"),
        ("offer", {"up_kw": np.ones(2)}, "offer: expected a FlexOffer"),
        ("offer", FlexOffer(np.ones(3), np.ones(3), 0.1, 0.1), r"offer: expected float\[2\] arrays"),
        ("dt_hours", 0.0, "dt_hours: must be a finite number > 0"),
        ("dt_hours", "x", "dt_hours, margin_pct: expected numbers"),
        ("margin_pct", 100.0, r"margin_pct: must be in \[0, 100\)"),
        ("margin_pct", -1.0, r"margin_pct: must be in \[0, 100\)"),
    ],
)
def test_bad_inputs_raise_grid_errors(field: str, value, match: str) -> None:  # type: ignore[no-untyped-def]
    kwargs = {**_OK, "dt_hours": 0.25, field: value}
    with pytest.raises(GridError, match=match):
        clear_flex_market(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"up_kw": np.array([-1.0, 0.0])}, "offer.up_kw: must be ≥ 0"),
        ({"down_kw": np.ones(3)}, r"offer.down_kw: expected the shape of offer.up_kw \(2,\)"),
        ({"up_price": np.ones(3)}, "offer.up_price: expected a scalar or shape broadcastable"),
        ({"down_price": np.array([0.1, np.nan])}, "offer.down_price: contains NaN"),
        ({"down_price": -0.1}, "offer.down_price: must be ≥ 0"),
        ({"up_kw": np.ones((2, 2, 2)), "down_kw": np.ones((2, 2, 2))}, r"offer.up_kw: expected shape \(N,\)"),
    ],
)
def test_bad_offers_raise_grid_errors(kwargs, match: str) -> None:  # type: ignore[no-untyped-def]
    base = {"up_kw": np.ones(2), "down_kw": np.ones(2), "up_price": 0.1, "down_price": 0.1}
    with pytest.raises(GridError, match=match):
        FlexOffer(**{**base, **kwargs})


def test_batch_bad_shapes() -> None:
    offer = _offer3(100.0)
    with pytest.raises(GridError, match=r"injection_kw: expected shape \(B, 2\)"):
        clear_flex_market_batch(_S3, _IMAX3, _I03, _P3, offer, 0.25)
    rows = np.stack([_P3, _P3, _P3])
    two = FlexOffer(np.ones((2, 2)), np.ones((2, 2)), 0.1, 0.1)
    with pytest.raises(GridError, match=r"offer: expected float\[3, 2\] or float\[2\] arrays"):
        clear_flex_market_batch(_S3, _IMAX3, _I03, rows, two, 0.25)
    out = clear_flex_market_batch(_S3, _IMAX3, _I03, rows, offer, 0.25)  # float[N] offer: same in every row
    assert out.status == ("cleared",) * 3 and out.cost == pytest.approx([0.125] * 3, rel=1e-6)
    assert out.result(2).cost == pytest.approx(0.125, rel=1e-6)
    with pytest.raises(GridError, match=r"a0_ka: expected shape \(2,\) or \(3, 2\)"):
        clear_flex_market_batch(_S3, _IMAX3, _I03, rows, offer, 0.25, a0_ka=np.zeros((2, 2)))
    empty = clear_flex_market_batch(_S3, _IMAX3, _I03, np.zeros((0, 2)), offer, 0.25)
    assert empty.status == () and empty.up_kw.shape == (0, 2) and empty.loading_after_pct.shape == (0, 2)
