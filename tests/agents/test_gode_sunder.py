"""Gode & Sunder replication on a small version, and hand-worked single-market cases."""

from __future__ import annotations

import numpy as np
import pytest

from eval.gode_sunder import Market, draw_market, main, max_surplus, run_session, run_sessions


def test_max_surplus_hand_computed() -> None:
    # sorted values 10, 5 against costs 3, 8: only the first pair gains (7); 5 < 8 stops
    assert max_surplus(np.array([[10.0, 5.0]]), np.array([[3.0, 8.0]])) == 7.0
    # values 9, 7, 4 / costs 1, 2, 6: 8 + 5 + 0 (4 < 6)
    assert max_surplus(np.array([[9.0, 4.0], [7.0, 0.0]]), np.array([[1.0, 6.0], [2.0, 50.0]])) == 13.0


def test_single_pair_zi_c_perfect_zi_u_trades_the_losing_unit() -> None:
    # one buyer (values 10, 5), one seller (costs 3, 8): ZI-C can only trade unit 1 (bids <= 5 never meet
    # asks >= 8) -> efficiency 7 / 7; ZI-U trades both units: (10 - 3) + (5 - 8) = 4 -> 4 / 7
    market = Market(np.array([[10.0, 5.0]]), np.array([[3.0, 8.0]]), 1.0, 200.0)
    rng = np.random.default_rng(0)
    assert run_session(market, "zi-c", rng, patience=2000) == pytest.approx(1.0)
    assert run_session(market, "zi-u", rng, patience=2000) == pytest.approx(4 / 7)


def test_draw_market_schedules_sorted_within_range() -> None:
    m = draw_market(np.random.default_rng(0), 3, 4, 5)
    assert m.values.shape == (3, 5) and m.costs.shape == (4, 5)
    assert np.all(np.diff(m.values, axis=1) <= 0) and np.all(np.diff(m.costs, axis=1) >= 0)
    assert m.values.min() >= 1 and m.costs.max() <= 200


def test_zi_c_efficient_and_better_than_zi_u_small_version() -> None:
    zic = run_sessions("zi-c", 30, np.random.default_rng(0))
    ziu = run_sessions("zi-u", 30, np.random.default_rng(0))
    assert np.all(zic <= 1.0 + 1e-12)  # never beyond the competitive-equilibrium surplus
    assert zic.mean() >= 0.9
    assert zic.mean() > ziu.mean() + 0.2


def test_zi_u_efficiency_follows_value_cost_gap() -> None:
    # costs U{1..100} vs values U{1..200}: ZI-U trades nearly every unit, so its efficiency is close to
    # (sum values - sum costs) / max surplus of each market; ZI-C stays efficient
    rng = np.random.default_rng(3)
    gaps, effs = [], []
    for _ in range(20):
        m = draw_market(rng, cost_high=100)
        gaps.append((m.values.sum() - m.costs.sum()) / max_surplus(m.values, m.costs))
        effs.append(run_session(m, "zi-u", rng, patience=2000))
    assert np.mean(effs) == pytest.approx(np.mean(gaps), abs=0.05)
    assert 0.4 < np.mean(effs) < 0.95
    assert run_sessions("zi-c", 20, np.random.default_rng(3), cost_high=100).mean() >= 0.9


def test_cli_prints_table(capsys) -> None:
    assert main(["--sessions", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "zi-c" in out and "zi-u" in out and "zip" in out and "mean eff." in out


def test_zip_traders_on_the_cda_are_efficient() -> None:
    eff = run_sessions("zip", 10, np.random.default_rng(4))
    assert np.all(eff <= 1.0 + 1e-12) and eff.mean() >= 0.85
