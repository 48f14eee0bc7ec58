"""The DSO's pre-emptive rules (EUniversal D5.3 (2022) §5.3): at-risk lines, forbidden pairs, redirection.

References are independent of the code: a sensitivity matrix written by hand from a radial topology (with and
without active base currents ``a0_ka``), the same topology as a pandapower net, the env's own linear check of
injections ± 1 kW on a congested summer step and on a feeder with a fixed load and a background element, and a
transportation LP over directional (seller, buyer) pairs solved with scipy for the clearing inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from p2p_gym import market
from p2p_gym.errors import GridError, P2PGymError
from p2p_gym.grid import (
    GridModel,
    at_risk_lines,
    clearing_preference,
    forbidden_pairs,
    pair_effects,
    partners_from_forbidden,
    redirect_preference,
)
from tests.conftest import cached_scenario
from tests.grid._nets import base_ka, loaded_feeder

# ------------------------------------------------------------------------------------------ hand case
# Radial feeder (arrows: each line's from → to direction):
#
#     bus 0 (slack) ──line 0──▶ bus 1 (A) ──line 1──▶ bus 2 (B)
#          └────────line 2──▶ bus 3 (C)
#
# An export at a bus flows towards the slack, i.e. against the line's direction, through every line between the
# bus and the slack: the signed current on line l per kW injected at agent n is −k if n is downstream of l,
# else 0 (k = 1 A/kW here, in kA).
A, B, C = 0, 1, 2
K = 1e-3
S_HAND = -K * np.array(
    [
        [1.0, 1.0, 0.0],  # line 0 carries A and B
        [0.0, 1.0, 0.0],  # line 1 carries B
        [0.0, 0.0, 1.0],  # line 2 carries C
    ]
)
MAX_I = np.full(3, 0.1)  # kA
I0 = np.zeros(3)
# A exports 25 kW, B 85 kW (PV), C consumes 30 kW:
#   F0 = −(25 + 85) A = −0.110 kA → 110 %;  F1 = −0.085 kA → 85 %;  F2 = +0.030 kA → 30 %.
INJ = np.array([25.0, 85.0, -30.0])
#
# A trade s → b changes line l's flow by ΔS_l = S[l, s] − S[l, b] per kW. Both at-risk flows are negative, so a
# pair loads line 0 or 1 if its ΔS there is negative and relieves it if positive:
#
#   pair    ΔS0    ΔS1    line 0    line 1
#   A→B      0     +k     neutral   relieves
#   A→C     −k      0     loads     neutral
#   B→A      0     −k     neutral   loads
#   B→C     −k     −k     loads     loads
#   C→A     +k      0     relieves  neutral
#   C→B     +k     +k     relieves  relieves
#
# Set "≥ 80 %" = {line 0, line 1}: forbidden A→C, B→A, B→C.  Set "≥ 100 %" = {line 0}: forbidden A→C, B→C.
FORBIDDEN_80 = {(A, C), (B, A), (B, C)}
FORBIDDEN_100 = {(A, C), (B, C)}
# (loads, relieves) per pair and line set, read off the table:
EFFECTS_80 = {(A, B): (0, 1), (A, C): (1, 0), (B, A): (1, 0), (B, C): (2, 0), (C, A): (0, 1), (C, B): (0, 2)}
EFFECTS_100 = {(A, B): (0, 0), (A, C): (1, 0), (B, A): (0, 0), (B, C): (1, 0), (C, A): (0, 1), (C, B): (0, 1)}


def _pairs(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(s), int(b)) for s, b in zip(*np.nonzero(mask))}


@pytest.mark.parametrize(
    ("threshold", "risk", "expected"),
    [(80.0, [True, True, False], FORBIDDEN_80), (100.0, [True, False, False], FORBIDDEN_100)],
)
def test_hand_case_at_risk_lines_and_forbidden_pairs(threshold, risk, expected) -> None:  # type: ignore[no-untyped-def]
    at_risk, flow = at_risk_lines(S_HAND, MAX_I, I0, INJ, threshold)
    np.testing.assert_allclose(flow, [-0.110, -0.085, 0.030])
    assert at_risk.tolist() == risk
    forbidden = forbidden_pairs(S_HAND, at_risk, flow)
    assert forbidden.shape == (3, 3) and forbidden.dtype == bool
    assert _pairs(forbidden) == expected
    assert not forbidden.diagonal().any()


def test_no_load_current_counts_in_the_loading() -> None:
    """The linear model's loading is sqrt(I0² + F²)/limit: a no-load current of 75 A lifts line 2 (30 A of
    active flow) to sqrt(75² + 30²) = 80.8 A = 80.8 %. Its flow is positive (0 → 3), so a pair loads it if
    ΔS2 > 0: A→C and B→C (C withdraws: ΔS2 = 0 − (−k) = +k); C→A, C→B relieve it."""
    at_risk, flow = at_risk_lines(S_HAND, MAX_I, [0.0, 0.0, 0.075], INJ, 80.0)
    assert at_risk.tolist() == [True, True, True]
    load, relieve = pair_effects(S_HAND, at_risk, flow)
    assert load[A, C] == 2 and load[B, C] == 3  # line 0 (+ line 1 for B) + line 2
    assert relieve[C, A] == 2 and relieve[C, B] == 3
    # a line at risk through its no-load current alone (no active flow): any active flow raises its loading
    at_risk, flow = at_risk_lines(S_HAND, MAX_I, [0.0, 0.0, 0.09], np.zeros(3), 80.0)
    assert at_risk.tolist() == [False, False, True] and flow[2] == 0.0
    assert _pairs(forbidden_pairs(S_HAND, at_risk, flow)) == {(A, C), (B, C), (C, A), (C, B)}


def test_batched_rows_equal_single_rows() -> None:
    rng = np.random.default_rng(3)
    inj = np.vstack([INJ, -INJ, rng.normal(0, 60, (4, 3))])
    risk, flow = at_risk_lines(S_HAND, MAX_I, I0, inj, 80.0)
    assert risk.shape == flow.shape == (6, 3)
    fb = forbidden_pairs(S_HAND, risk, flow)
    beta = rng.uniform(0.01, 0.1, (3, 3))
    red = redirect_preference(beta, S_HAND, risk, flow)
    assert fb.shape == red.shape == (6, 3, 3)
    for b in range(6):
        r, f = at_risk_lines(S_HAND, MAX_I, I0, inj[b], 80.0)
        np.testing.assert_array_equal(risk[b], r)
        np.testing.assert_array_equal(fb[b], forbidden_pairs(S_HAND, r, f))
        np.testing.assert_allclose(red[b], redirect_preference(beta, S_HAND, r, f))
    # -INJ reverses both flows: the forbidden pairs are the reversed ones
    assert _pairs(fb[1]) == {(b, s) for s, b in FORBIDDEN_80}


# ------------------------------------------------------------------------------------------ redirection
@pytest.mark.parametrize(("threshold", "effects"), [(80.0, EFFECTS_80), (100.0, EFFECTS_100)])
def test_hand_case_redirection_factors(threshold, effects) -> None:  # type: ignore[no-untyped-def]
    w = 0.2
    at_risk, flow = at_risk_lines(S_HAND, MAX_I, I0, INJ, threshold)
    base = 0.05 * (1.0 - np.eye(3))  # a uniform base cost
    out = redirect_preference(base, S_HAND, at_risk, flow, w=w)
    for (s, b), (k, m) in effects.items():
        assert out[s, b] == pytest.approx(0.05 * (1 + w) ** k * (1 - w) ** m), (s, b)
    np.testing.assert_array_equal(out.diagonal(), 0.0)
    # named cases: B→C loads two lines at 80 % → (1.2)² = 1.44; C→B relieves two → (0.8)² = 0.64
    if threshold == 80.0:
        assert out[B, C] / 0.05 == pytest.approx(1.44) and out[C, B] / 0.05 == pytest.approx(0.64)
    else:  # A→B and B→A touch no at-risk line: unchanged
        assert out[A, B] == out[B, A] == 0.05
    # additive: β + W·spread·(k − m), spread defaults to the largest off-diagonal β
    add = redirect_preference(base, S_HAND, at_risk, flow, w=w, mode="additive")
    for (s, b), (k, m) in effects.items():
        assert add[s, b] == pytest.approx(max(0.0, 0.05 + w * 0.05 * (k - m))), (s, b)


def test_redirection_signs_on_a_distance_base() -> None:
    """Loading pairs' β rises, relieving pairs' falls, untouched pairs keep theirs; a zero base stays zero in
    the multiplicative rule (the report's) and moves in the additive one."""
    at_risk, flow = at_risk_lines(S_HAND, MAX_I, I0, INJ, 100.0)
    dist = np.array([[0.0, 0.1, 0.2], [0.1, 0.0, 0.3], [0.2, 0.3, 0.0]])  # km along the feeder
    beta = 0.02 * dist
    beta[A, B] = 0.0  # as if A and B shared a bus
    out = redirect_preference(beta, S_HAND, at_risk, flow)
    assert out[A, C] > beta[A, C] and out[B, C] > beta[B, C]  # load line 0
    assert out[C, A] < beta[C, A] and out[C, B] < beta[C, B]  # relieve it
    assert out[B, A] == beta[B, A]  # touches no at-risk line
    assert out[A, B] == 0.0
    add = redirect_preference(beta, S_HAND, at_risk, flow, mode="additive", spread=0.01)
    assert add[A, C] == pytest.approx(beta[A, C] + 0.002) and add[C, A] == pytest.approx(beta[C, A] - 0.002)
    assert add[B, A] == beta[B, A] and add[A, B] == 0.0
    assert np.all(redirect_preference(beta, S_HAND, at_risk, flow, w=1.0, mode="additive", spread=1.0) >= 0)


def test_directional_beta_cancels_in_the_clearing_without_projection() -> None:
    """The bilateral clearing charges a pair β[b, s] + β[s, b]. Writing the directional update into both entries
    of a symmetric base gives β0·(1 + W) + β0·(1 − W) = 2·β0 for a pair loading one line: no effect. The
    projection with the order sides charges the trade's own direction."""
    at_risk, flow = at_risk_lines(S_HAND, MAX_I, I0, INJ, 100.0)
    base = 0.05 * (1.0 - np.eye(3))
    out = redirect_preference(base, S_HAND, at_risk, flow)
    assert out[A, C] + out[C, A] == pytest.approx(0.10)  # = 2 β0: the naive sum loses the signal
    is_buy = np.array([False, False, True])  # A, B sell; C buys
    p = clearing_preference(out, is_buy)
    np.testing.assert_allclose(p, p.T)
    assert p[A, C] + p[C, A] == pytest.approx(out[A, C]) == pytest.approx(0.06)
    assert p[B, C] + p[C, B] == pytest.approx(out[B, C])
    # A and B both sell: direction unknown → the larger of the two directional costs
    assert p[A, B] + p[B, A] == pytest.approx(max(out[A, B], out[B, A]))


# Base currents of non-agent elements, A0 = [+250, 0, −60] A (a 250 kW load at bus 1, a 60 kW generator at bus 3):
#   F0 = 0.250 − 0.110 = +0.140 kA → 140 %;  F1 = −0.085 → 85 %;  F2 = 0.030 − 0.060 = −0.030 → 30 %.
# Line 0 now flows with its direction, so the pairs with ΔS0 > 0 load it (C→A, C→B) and those with ΔS0 < 0
# relieve it (A→C, B→C); line 1 as before. At 80 %: forbidden B→A, B→C (line 1) and C→A, C→B (line 0).
A0_HAND = np.array([0.25, 0.0, -0.06])
FORBIDDEN_A0 = {(B, A), (B, C), (C, A), (C, B)}
EFFECTS_A0 = {(A, B): (0, 1), (A, C): (0, 1), (B, A): (1, 0), (B, C): (1, 1), (C, A): (1, 0), (C, B): (1, 1)}


def test_hand_case_with_base_currents() -> None:
    at_risk, flow = at_risk_lines(S_HAND, MAX_I, I0, INJ, 80.0, a0_ka=A0_HAND)
    np.testing.assert_allclose(flow, [0.140, -0.085, -0.030])
    assert at_risk.tolist() == [True, True, False]
    assert _pairs(forbidden_pairs(S_HAND, at_risk, flow)) == FORBIDDEN_A0
    load, relieve = pair_effects(S_HAND, at_risk, flow)
    assert {p: (int(load[p]), int(relieve[p])) for p in EFFECTS_A0} == EFFECTS_A0
    # a batch of base currents, one per row: the rows of single calls (row 1 without base currents)
    rows = np.stack([INJ, INJ])
    risk2, flow2 = at_risk_lines(S_HAND, MAX_I, I0, rows, 80.0, a0_ka=np.stack([A0_HAND, np.zeros(3)]))
    np.testing.assert_allclose(flow2, [[0.140, -0.085, -0.030], [-0.110, -0.085, 0.030]])
    assert _pairs(forbidden_pairs(S_HAND, risk2, flow2)[1]) == FORBIDDEN_80
    # a reactive current puts a line with no active flow at risk: every pair across it loads it
    risk3, flow3 = at_risk_lines(S_HAND, MAX_I, [0.0, 0.0, 0.09], INJ, 80.0, a0_ka=[0.0, 0.0, -0.03])
    assert risk3.tolist() == [True, True, True] and flow3[2] == 0.0
    assert {(A, C), (C, A), (B, C), (C, B)} <= _pairs(forbidden_pairs(S_HAND, risk3, flow3))


def test_feeder_with_base_flows_and_background_against_the_model_check() -> None:
    """A fixed load (A0 ≈ +0.22 kA on line 0) and a background element: with ``a0_ka`` = A0 + S_bg · b_t the
    at-risk sets are those of the model's ``check_batch(·, b)`` and a pair is forbidden iff moving 1 kW from its
    buyer to its seller raises an at-risk line's loading under that check (brute force); ignoring the base flows
    gets line 0's direction wrong at a moderate export (row 0)."""
    inj = np.array([[30.0, 20.0, 20.0, 0.0], [-40.0, -30.0, -20.0, -10.0], [50.0, 120.0, 110.0, 80.0]])
    bg = np.array([[0.0], [-15.0], [30.0]])
    sc = loaded_feeder(inj, bg)
    lin = GridModel(sc, "linear")
    sens = lin.sensitivities
    s, i0, n, threshold = sens["line_current_ka_per_kw"], sens["line_current_ka"], sc.n_agents, 50.0
    a0 = base_ka(lin, bg)
    risk, flow = at_risk_lines(s, lin.max_i_ka, i0, inj, threshold, a0_ka=a0)
    check = lin.check_batch(inj, bg).line_loading_pct
    np.testing.assert_array_equal(risk, check >= threshold)
    np.testing.assert_allclose(100.0 * np.hypot(i0, flow) / lin.max_i_ka, check, rtol=1e-12)
    assert flow[0, 0] > 0 > (inj[0] @ s.T)[0]  # the load's flow outweighs the agents' export on line 0
    forbidden = forbidden_pairs(s, risk, flow)
    load, relieve = pair_effects(s, risk, flow)
    seller, buyer = np.nonzero(~np.eye(n, dtype=bool))
    for b in range(len(inj)):
        moved = np.repeat(inj[b][None], len(seller), axis=0)
        moved[np.arange(len(seller)), seller] += 1.0
        moved[np.arange(len(seller)), buyer] -= 1.0
        after = lin.check_batch(moved, bg[b]).line_loading_pct[:, risk[b]]
        delta = after - check[b, risk[b]]  # [pairs, at-risk lines], % points
        is_forbidden = forbidden[b, seller, buyer]
        assert 0 < is_forbidden.sum() < len(seller)
        assert np.all(delta[is_forbidden].max(axis=1) > 0.1)  # 1 kW ≈ 0.7 % on a 200 A cable
        assert np.all(delta[~is_forbidden].max(axis=1, initial=-1.0) < 0.01)
        np.testing.assert_array_equal(load[b, seller, buyer], (delta > 0.1).sum(axis=1))
        np.testing.assert_array_equal(relieve[b, seller, buyer], (delta < -0.1).sum(axis=1))
        # a single row with its own float[L] base gives the same
        one_risk, one_flow = at_risk_lines(s, lin.max_i_ka, i0, inj[b], threshold, a0_ka=a0[b])
        np.testing.assert_array_equal(one_risk, risk[b])
        np.testing.assert_array_equal(forbidden_pairs(s, one_risk, one_flow), forbidden[b])
    blind_risk, blind_flow = at_risk_lines(s, lin.max_i_ka, i0, inj[0], threshold)
    assert blind_risk[0] and blind_flow[0] < 0  # the blind rule sees an export on line 0 ...
    blind = forbidden_pairs(s, blind_risk, blind_flow)
    assert _pairs(blind) and not (_pairs(blind) & _pairs(forbidden[0]))  # ... and forbids the opposite pairs


# ------------------------------------------------------------------------------------------ pandapower net
def _three_bus_scenario():  # type: ignore[no-untyped-def]
    import pandapower as pp

    from p2p_gym.scenarios import Scenario

    net = pp.create_empty_network()
    b0, b1, b2, b3 = (pp.create_bus(net, vn_kv=0.4) for _ in range(4))
    pp.create_ext_grid(net, b0, vm_pu=1.0)
    for f, t in ((b0, b1), (b1, b2), (b0, b3)):  # line 0, 1, 2 as in the hand case
        pp.create_line(net, f, t, length_km=0.05, std_type="NAYY 4x50 SE")  # max_i_ka 0.142
    ids = ("A", "B", "C")
    bus = np.array([b1, b2, b3])
    for aid, b in zip(ids, bus):
        pp.create_sgen(net, bus=int(b), p_mw=0.0, name=aid)
    inj = np.array([[25.0, 85.0, -30.0]])  # 110 kW through line 0 (≈ 112 %), 85 kW through line 1 (≈ 86 %)
    return Scenario(
        name="three_bus",
        agent_ids=ids,
        bus=bus,
        load_kw=np.clip(-inj, 0, None),
        pv_kw=np.clip(inj, 0, None),
        pv_kwp=np.array([25.0, 85.0, 0.0]),
        battery_kwh=np.zeros(3),
        battery_kw=np.zeros(3),
        retail_price=0.30,
        feed_in_price=0.08,
        step_minutes=15,
        net=net,
    )


def test_pandapower_net_gives_the_hand_derived_pairs() -> None:
    sc = _three_bus_scenario()
    lin = GridModel(sc, "linear")
    sens = lin.sensitivities
    s = sens["line_current_ka_per_kw"]
    # the model's sensitivities have the hand case's pattern: −1/(√3 · 0.4 kV) kA per kW downstream, ~0 elsewhere
    np.testing.assert_allclose(s, S_HAND / K * 1e-3 / (np.sqrt(3) * 0.4), atol=2e-5)
    inj = sc.net_kw[0]
    # the at-risk sets agree with an AC power flow of the same injections
    ac = GridModel(sc, "ac").check(inj).line_loading_pct
    assert ac[0] >= 100.0 and 80.0 <= ac[1] < 100.0 and ac[2] < 80.0
    for threshold, expected in ((80.0, FORBIDDEN_80), (100.0, FORBIDDEN_100)):
        risk, flow = at_risk_lines(
            s, lin.max_i_ka, sens["line_current_ka"], inj, threshold, a0_ka=sens["line_active_current_ka"]
        )
        assert risk.tolist() == (ac >= threshold).tolist()
        assert _pairs(forbidden_pairs(s, risk, flow)) == expected
        load, relieve = pair_effects(s, risk, flow)
        effects = EFFECTS_80 if threshold == 80.0 else EFFECTS_100
        assert {p: (int(load[p]), int(relieve[p])) for p in effects} == effects


# ------------------------------------------------------------------------------------------ congested feeder
HIGH_PV = {"pv_penetration": 0.5, "pv_kwp_per_mwh": 10.0}
T_CONGESTED = 204 * 96 + 11 * 4  # 22 July 2016, 11:00


@pytest.fixture(scope="module")
def congested():  # type: ignore[no-untyped-def]
    sc = cached_scenario("default_high_pv", **HIGH_PV)
    return sc, GridModel(sc, "linear")


@pytest.mark.parametrize("threshold", [80.0, 100.0])
def test_forbidden_pairs_are_those_that_load_an_at_risk_line(congested, threshold) -> None:  # type: ignore[no-untyped-def]
    """For every (seller, buyer): the env's linear check of the injections with 1 kW moved from the buyer to the
    seller raises some at-risk line's loading iff the pair is forbidden; relieving pairs lower them."""
    sc, lin = congested
    sens = lin.sensitivities
    s, n = sens["line_current_ka_per_kw"], sc.n_agents
    inj = sc.net_kw[T_CONGESTED]
    base = lin.check(inj).line_loading_pct
    risk, flow = at_risk_lines(
        s, lin.max_i_ka, sens["line_current_ka"], inj, threshold, a0_ka=sens["line_active_current_ka"]
    )
    np.testing.assert_array_equal(risk, base >= threshold)  # the env's loading, exactly
    assert risk.sum() >= 3
    forbidden = forbidden_pairs(s, risk, flow)
    load, relieve = pair_effects(s, risk, flow)
    seller, buyer = np.nonzero(~np.eye(n, dtype=bool))
    moved = np.repeat(inj[None], len(seller), axis=0)
    moved[np.arange(len(seller)), seller] += 1.0
    moved[np.arange(len(seller)), buyer] -= 1.0
    delta = lin.check_batch(moved).line_loading_pct[:, risk] - base[risk]  # [pairs, at-risk lines], % points
    is_forbidden = forbidden[seller, buyer]
    assert 0 < is_forbidden.sum() < len(seller)
    assert np.all(delta[is_forbidden].max(axis=1) > 0.1)  # 1 kW ≈ 0.5 % on a 270 A cable
    assert np.all(delta[~is_forbidden].max(axis=1) < 0.01)
    # counts agree with the check: lines up by > 0.1 pp are the loaded ones, down by > 0.1 pp the relieved ones
    np.testing.assert_array_equal(load[seller, buyer], (delta > 0.1).sum(axis=1))
    np.testing.assert_array_equal(relieve[seller, buyer], (delta < -0.1).sum(axis=1))
    assert (relieve > 0).any()


# ------------------------------------------------------------------------------------------ clearing inputs
def test_partners_block_only_the_forbidden_direction_given_the_sides() -> None:
    at_risk, flow = at_risk_lines(S_HAND, MAX_I, I0, INJ, 80.0)
    fb = forbidden_pairs(S_HAND, at_risk, flow)  # A→C, B→A, B→C
    # without sides: a pair is blocked if either direction is forbidden → every pair here (over-restriction)
    assert not partners_from_forbidden(fb)[~np.eye(3, dtype=bool)].any()

    def volume(sellers: list[int], buyers: list[int], sides: bool) -> dict[tuple[int, int], float]:
        agents = sellers + buyers
        book = market.Orders(
            agent=agents,
            is_buy=[False] * len(sellers) + [True] * len(buyers),
            price=[0.1] * len(sellers) + [0.3] * len(buyers),
            quantity=[float(len(buyers))] * len(sellers) + [1.0] * len(buyers),
        )
        is_buy = np.zeros(3, dtype=bool)
        is_buy[buyers] = True
        partners = partners_from_forbidden(fb, is_buy if sides else None)
        np.testing.assert_array_equal(partners, partners.T)
        tr = market.clear(book, "bilateral", partners=partners).trades
        return {(int(s), int(b)): float(q) for s, b, q in zip(tr.seller, tr.buyer, tr.quantity)}

    assert volume([C], [A, B], sides=True) == {(C, A): 1.0, (C, B): 1.0}  # relieving trades go through
    assert volume([C], [A, B], sides=False) == {}  # lost by the conservative projection
    assert volume([A, B], [C], sides=True) == {}  # both load line 0
    assert volume([A], [B], sides=True) == {(A, B): 1.0}
    assert volume([B], [A], sides=True) == {}


def test_projected_inputs_clear_like_a_directional_lp() -> None:
    """Random books with one order per agent: the bilateral clearing fed with the projected partners and
    preference reaches the optimum of the transport LP over allowed (seller, buyer) pairs with directional
    costs, solved independently with scipy."""
    from scipy.optimize import linprog

    rng = np.random.default_rng(7)
    n, n_lines = 6, 5
    for _ in range(25):
        s = rng.choice([0.0, -K], size=(n_lines, n))
        inj = rng.normal(0, 40, n)
        risk, flow = at_risk_lines(s, np.full(n_lines, 0.05), np.zeros(n_lines), inj, 30.0)
        fb = forbidden_pairs(s, risk, flow)
        cost = redirect_preference(rng.uniform(0.0, 0.05, (n, n)), s, risk, flow)
        is_buy = rng.random(n) < 0.5
        price = np.where(is_buy, rng.uniform(0.15, 0.3, n), rng.uniform(0.05, 0.2, n))
        qty = rng.uniform(0.5, 2.0, n)
        book = market.Orders(agent=np.arange(n), is_buy=is_buy, price=price, quantity=qty)
        res = market.clear(
            book,
            "bilateral",
            partners=partners_from_forbidden(fb, is_buy),
            preference=clearing_preference(cost, is_buy),
        )
        tr = res.trades
        assert not fb[tr.seller, tr.buyer].any()
        got = float(np.sum((price[tr.buyer] - price[tr.seller] - cost[tr.seller, tr.buyer]) * tr.quantity))
        sellers, buyers = np.flatnonzero(~is_buy), np.flatnonzero(is_buy)
        pairs = [(a, b) for a in sellers for b in buyers if not fb[a, b]]
        if not pairs:
            assert got == 0.0
            continue
        gain = np.array([price[b] - price[a] - cost[a, b] for a, b in pairs])
        a_ub = np.array(
            [[float(p[0] == a) for p in pairs] for a in sellers]
            + [[float(p[1] == b) for p in pairs] for b in buyers]
        )
        b_ub = np.concatenate([qty[sellers], qty[buyers]])
        lp = linprog(-gain, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        assert lp.status == 0
        assert got == pytest.approx(max(0.0, -lp.fun), abs=1e-9)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: at_risk_lines(S_HAND[0], MAX_I, I0, INJ), "sens_i"),
        (lambda: at_risk_lines(S_HAND, MAX_I[:2], I0, INJ), "max_i_ka"),
        (lambda: at_risk_lines(S_HAND, -MAX_I, I0, INJ), "max_i_ka"),
        (lambda: at_risk_lines(S_HAND, MAX_I, [0, 0, np.nan], INJ), "i0_ka"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, INJ[:2]), "injection_kw"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, np.zeros((2, 2, 3))), "injection_kw"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, [np.inf, 0, 0]), "injection_kw"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, "abc"), "injection_kw"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, INJ, -1.0), "threshold_pct"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, INJ, a0_ka=np.zeros(2)), "a0_ka"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, INJ, a0_ka=[0.0, np.nan, 0.0]), "a0_ka"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, INJ, a0_ka=np.zeros((2, 3))), "a0_ka"),
        (lambda: at_risk_lines(S_HAND, MAX_I, I0, np.stack([INJ] * 3), a0_ka=np.zeros((2, 3))), "a0_ka"),
        (lambda: forbidden_pairs(S_HAND, [True, False], np.ones(3)), "at_risk"),
        (lambda: forbidden_pairs(S_HAND, [0.5, 1.0, 0.0], np.ones(3)), "at_risk"),
        (lambda: forbidden_pairs(S_HAND, np.ones(3, bool), np.ones(4)), "flow"),
        (lambda: forbidden_pairs(S_HAND, np.ones((2, 3), bool), np.ones((3, 3))), "at_risk, flow"),
        (lambda: forbidden_pairs(S_HAND, np.ones(3, bool), np.ones(3), tol=2.0), "tol"),
        (lambda: redirect_preference(np.ones((2, 2)), S_HAND, np.ones(3, bool), np.ones(3)), "beta"),
        (lambda: redirect_preference(-np.ones((3, 3)), S_HAND, np.ones(3, bool), np.ones(3)), "beta"),
        (lambda: redirect_preference(np.ones((3, 3)), S_HAND, np.ones(3, bool), np.ones(3), w=1.5), "w"),
        (
            lambda: redirect_preference(np.ones((3, 3)), S_HAND, np.ones(3, bool), np.ones(3), mode="x"),
            "mode",
        ),
        (
            lambda: redirect_preference(
                np.ones((3, 3)), S_HAND, np.ones(3, bool), np.ones(3), mode="additive", spread=-1.0
            ),
            "spread",
        ),
        (lambda: partners_from_forbidden(np.zeros((3, 2), bool)), "forbidden"),
        (lambda: partners_from_forbidden(np.zeros((3, 3))), "forbidden"),
        (lambda: partners_from_forbidden(np.zeros((3, 3), bool), np.zeros(3)), "is_buy"),
        (lambda: partners_from_forbidden(np.zeros((3, 3), bool), np.zeros(2, bool)), "is_buy"),
        (lambda: clearing_preference(-np.ones((3, 3))), "cost"),
        (lambda: clearing_preference(np.ones((3, 3)), np.zeros(4, bool)), "is_buy"),
    ],
)
def test_bad_inputs_raise_errors_naming_the_argument(call, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GridError, match=f"^{field}") as info:
        call()
    assert isinstance(info.value, (P2PGymError, ValueError))
