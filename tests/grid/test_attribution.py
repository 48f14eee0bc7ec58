"""The DSO's block rule and the grid-penalty allocation with the linear model's base currents (``i0_ka``, ``a0_ka``):
a hand-worked radial feeder, and a feeder with a fixed load and a background element against brute force on the
model's own ``check_batch`` (move a trade's kW, or remove an agent's injection, and see what the loading does)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from p2p_gym.errors import GridError
from p2p_gym.grid import FlowAttribution, GridModel, allocate_penalty, blocked_trades
from tests.grid._nets import base_ka, loaded_feeder

warnings.filterwarnings("ignore")

# Radial hand case (as tests/grid/test_dso_rules.py): slack ─line 0─▶ A ─line 1─▶ B, slack ─line 2─▶ C; an export
# flows against the lines' direction, S = −1 A/kW downstream. A exports 25 kW, B 85 kW, C consumes 30 kW.
A, B, C = 0, 1, 2
S_HAND = -1e-3 * np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
MAX_I = np.full(3, 0.1)
INJ = np.array([25.0, 85.0, -30.0])
SELLER, BUYER = np.array([A, C, B, C]), np.array([C, A, C, B])  # trades A→C, C→A, B→C, C→B


def test_hand_case_block_rule_follows_the_direction_of_the_base_flow() -> None:
    kw = np.full(4, 5.0)
    # without base currents (the earlier rule): line 0 carries −110 A (110 %), line 1 −85 A; at 100 % only line 0
    # is stressed, and trades that push more export through it (A→C, B→C: ΔS0 = −1 A/kW) are blocked
    plain = FlowAttribution(S_HAND, MAX_I)
    assert blocked_trades(plain, INJ, SELLER, BUYER, kw, 100.0).tolist() == [True, False, True, False]
    # a 250 kW non-agent load at A's bus: line 0 carries +140 A, with its direction; now the trades towards A and B
    # (C→A, C→B: ΔS0 = +1 A/kW) load it
    loaded = FlowAttribution(S_HAND, MAX_I, a0_ka=np.array([0.25, 0.0, 0.0]))
    assert blocked_trades(loaded, INJ, SELLER, BUYER, kw, 100.0).tolist() == [False, True, False, True]
    np.testing.assert_allclose(loaded.loading_pct(INJ), [140.0, 85.0, 30.0])
    # a per-call base overrides the attribution's: a 90 kW non-agent generator at A's bus (−200 A on line 0)
    per_call = blocked_trades(loaded, INJ, SELLER, BUYER, kw, 100.0, a0_ka=np.array([-0.09, 0.0, 0.0]))
    assert per_call.tolist() == [True, False, True, False]
    # a reactive current counts towards the loading: line 1 (85 A active) at √(85² + 60²) = 104 % with 60 A
    reactive = FlowAttribution(
        S_HAND, MAX_I, i0_ka=np.array([0.0, 0.06, 0.0]), a0_ka=np.array([0.25, 0.0, 0.0])
    )
    np.testing.assert_allclose(reactive.loading_pct(INJ)[1], np.hypot(85.0, 60.0))
    b_to_a = blocked_trades(reactive, INJ, np.array([B]), np.array([A]), np.array([5.0]), 100.0)
    assert b_to_a.tolist() == [True]  # B→A raises line 1's export (ΔS1 = −1 A/kW)
    assert not blocked_trades(plain, INJ, np.array([B]), np.array([A]), np.array([5.0]), 100.0).any()


def test_hand_case_penalty_goes_to_the_agents_driving_the_base_flow_direction() -> None:
    # line 0 at 140 % (+140 A with the 250 kW load): 40 % points of excess at rate 1. The flow runs towards A and
    # B; both export, which relieves it, and C is not on line 0 ⇒ no contributor ⇒ equal shares (the fallback).
    ones, ok, sens_v, a0 = np.ones((1, 1)), np.ones(1, bool), np.zeros((1, 3)), [0.25, 0.0, 0.0]
    out = allocate_penalty(
        1.0, INJ[None], np.array([[140.0, 85.0, 30.0]]), ones, ok, S_HAND, sens_v, a0_ka=a0
    )
    np.testing.assert_allclose(out, [[40.0 / 3] * 3])
    # A imports 20 kW instead: line 0 carries 250 + 20 − 85 = +185 A, and A, driving it that way, pays all 85
    inj = np.array([[-20.0, 85.0, -30.0]])
    line = np.array([[185.0, 85.0, 30.0]])
    out = allocate_penalty(1.0, inj, line, ones, ok, S_HAND, sens_v, a0_ka=a0)
    np.testing.assert_allclose(out, [[85.0, 0.0, 0.0]])
    # the earlier rule (no base) reads the flow as the agents' −65 A export and charges B, the exporter
    out = allocate_penalty(1.0, inj, line, ones, ok, S_HAND, sens_v)
    np.testing.assert_allclose(out, [[0.0, 85.0, 0.0]])


@pytest.fixture(scope="module")
def feeder():  # type: ignore[no-untyped-def]
    """Rows: (0) moderate export with the load's flow dominating line 0, (1) one importer among exporters, line 0
    overloaded by the load, (2) heavy export overloading lines 0 and 1 against their direction."""
    inj = np.array([[30.0, 20.0, 20.0, 0.0], [-30.0, 40.0, 0.0, 20.0], [50.0, 120.0, 110.0, 80.0]])
    bg = np.array([[0.0], [0.0], [30.0]])
    sc = loaded_feeder(inj, bg)
    model = GridModel(sc, "linear")
    return model, inj, bg, base_ka(model, bg)


def test_block_rule_against_the_model_check(feeder) -> None:  # type: ignore[no-untyped-def]
    model, inj, bg, a0 = feeder
    sens = model.sensitivities
    att = FlowAttribution(
        sens["line_current_ka_per_kw"], model.max_i_ka, i0_ka=sens["line_current_ka"],
        a0_ka=sens["line_active_current_ka"],
    )  # fmt: skip
    n = inj.shape[1]
    seller, buyer = np.nonzero(~np.eye(n, dtype=bool))
    kw = np.full(len(seller), 2.0)
    check = model.check_batch(inj, bg).line_loading_pct
    np.testing.assert_allclose(att.loading_pct(inj, a0), check, rtol=1e-12)
    threshold = 60.0
    seen = 0
    for b in range(len(inj)):
        stressed = check[b] >= threshold
        assert stressed.any()
        mask = blocked_trades(att, inj[b], seller, buyer, kw, threshold, a0_ka=a0[b])
        moved = np.repeat(inj[b][None], len(seller), axis=0)
        moved[np.arange(len(seller)), seller] += kw
        moved[np.arange(len(seller)), buyer] -= kw
        delta = model.check_batch(moved, bg[b]).line_loading_pct[:, stressed] - check[b, stressed]
        np.testing.assert_array_equal(mask, delta.max(axis=1) > 1e-9)
        assert 0 < mask.sum() < len(mask)
        seen += int(mask.sum())
    # without the base flow the rule blocks the other direction on line 0 in row 0
    blind = FlowAttribution(sens["line_current_ka_per_kw"], model.max_i_ka, i0_ka=sens["line_current_ka"])
    wrong = blocked_trades(blind, inj[0], seller, buyer, kw, threshold)
    right = blocked_trades(att, inj[0], seller, buyer, kw, threshold, a0_ka=a0[0])
    assert wrong.any() and right.any() and not (wrong & right).any()
    assert seen > 0


def test_penalty_allocation_against_the_model_check(feeder) -> None:  # type: ignore[no-untyped-def]
    """Brute force: an agent's share is what removing its injection takes off the overloaded lines' active
    currents, Σ_l max(0, |F_l(p)| − |F_l(p − p_n e_n)|), with |F| read off the model's loading
    (√((loading · I^max / 100)² − I0²)); no line flow changes sign when one agent is removed in these rows."""
    model, inj, bg, a0 = feeder
    sens = model.sensitivities
    s, i0, imax = sens["line_current_ka_per_kw"], sens["line_current_ka"], model.max_i_ka
    check = model.check_batch(inj, bg)
    rows = [1, 2]
    b, n = len(rows), inj.shape[1]
    vm = np.ones((b, 1))  # no voltage violation: the line part only
    out = allocate_penalty(
        2.0,
        inj[rows],
        check.line_loading_pct[rows],
        vm,
        np.ones(b, bool),
        s,
        np.zeros((1, n)),
        a0_ka=a0[rows],
    )
    for k, r in enumerate(rows):
        loading = check.line_loading_pct[r]
        over = loading > 100.0
        assert over.any()

        def active(row_loading: np.ndarray) -> np.ndarray:
            return np.sqrt(np.clip((row_loading * imax / 100.0) ** 2 - i0**2, 0.0, None))

        drop = np.zeros(n)
        for agent in range(n):
            without = inj[r].copy()
            without[agent] = 0.0
            after = model.check_batch(without[None], bg[r]).line_loading_pct[0]
            drop[agent] = np.maximum(active(loading) - active(after), 0.0)[over].sum()
        total = 2.0 * (loading[over] - 100.0).sum()
        np.testing.assert_allclose(out[k], total * drop / drop.sum(), rtol=1e-6, atol=1e-9)
        assert out[k].sum() == pytest.approx(total)
    # row 1: the importer (agent 0) drives the load's flow on line 0 and pays it all; the earlier rule (no base)
    # sees the agents' net export and charges the exporters instead
    assert out[0, 0] == pytest.approx(out[0].sum()) and out[0, 0] > 0
    blind = allocate_penalty(
        2.0, inj[[1]], check.line_loading_pct[[1]], vm[:1], np.ones(1, bool), s, np.zeros((1, n))
    )
    assert blind[0, 0] == 0.0 and blind[0, 1] > 0
    # a float[L] base is the same for every row
    same = allocate_penalty(
        2.0, inj[[1, 1]], check.line_loading_pct[[1, 1]], np.ones((2, 1)), np.ones(2, bool), s, np.zeros((1, n)),
        a0_ka=a0[1],
    )  # fmt: skip
    np.testing.assert_allclose(same, np.stack([out[0], out[0]]), rtol=1e-12)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: FlowAttribution(S_HAND[0], MAX_I), "line_current_ka_per_kw"),
        (lambda: FlowAttribution(S_HAND, MAX_I[:2]), "max_i_ka"),
        (lambda: FlowAttribution(S_HAND, MAX_I, i0_ka=-np.ones(3)), "i0_ka"),
        (lambda: FlowAttribution(S_HAND, MAX_I, i0_ka=np.ones(2)), "i0_ka"),
        (lambda: FlowAttribution(S_HAND, MAX_I, a0_ka=np.ones(4)), "a0_ka"),
        (lambda: FlowAttribution(S_HAND, MAX_I, a0_ka=[0.0, np.nan, 0.0]), "a0_ka"),
        (
            lambda: blocked_trades(
                FlowAttribution(S_HAND, MAX_I), INJ, SELLER, BUYER, np.ones(4), 80.0, a0_ka=np.zeros((2, 3))
            ),
            "a0_ka",
        ),
        (
            lambda: allocate_penalty(
                1.0,
                INJ[None],
                np.full((1, 3), 120.0),
                np.ones((1, 1)),
                np.ones(1, bool),
                S_HAND,
                np.zeros((1, 3)),
                a0_ka=np.zeros((2, 3)),
            ),
            "a0_ka",
        ),
    ],
)
def test_bad_base_currents_raise_grid_errors(call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GridError, match=f"^{field}"):
        call()
