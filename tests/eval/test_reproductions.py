"""The reproductions: congestion study (EUniversal D5.3 (2022), §5) and mechanism comparison, on small budgets."""

from __future__ import annotations

import numpy as np
import pytest

from eval import congestion


def test_no_trade_policy_places_no_order() -> None:
    p = congestion.NoTrade(3)
    assert p.act(np.zeros(11), np.random.default_rng(0)).tolist() == [0.0, -1.0, 0.0]


def test_markdown_table() -> None:
    rows = [{"setting": "a", **{k: 1.0 for k, _, f in congestion.COLUMNS if f}}]
    text = congestion.markdown_table(rows)
    assert text.splitlines()[0].startswith("| setting |") and len(text.splitlines()) == 3


@pytest.mark.slow
def test_congestion_study_one_day(tmp_path) -> None:
    rows = {r["setting"]: r for r in congestion.study(days=1, seeds=1)}
    none, free, block = rows["no P2P"], rows["unchecked P2P"], rows["blocking at 80 %"]
    risk = rows["redirection W=0.2 (at-risk paths)"]
    assert none["p2p_volume_kwh"] == 0 and none["congested_lines"] > 0
    assert free["p2p_flow_on_at_risk_lines_pct"] > 0
    assert block["p2p_flow_on_at_risk_lines_pct"] == pytest.approx(0.0, abs=1e-9)
    assert block["blocked_kwh"] > 0 and block["p2p_volume_kwh"] < free["p2p_volume_kwh"]
    assert risk["p2p_flow_on_at_risk_lines_pct"] < free["p2p_flow_on_at_risk_lines_pct"]
    # trades settle money between fixed physical positions: physical congestion is unchanged
    assert free["overflow_sum_pct"] == pytest.approx(none["overflow_sum_pct"])
    assert congestion.plot(list(rows.values()), tmp_path / "c.png").stat().st_size > 0


@pytest.mark.slow
def test_mechanism_comparison_small(tmp_path) -> None:
    from eval import mechanisms

    rows, _ = mechanisms.compare("tiny", ("zi-c",), days=1, seeds=1, exploit_agents=0, workers=1)
    by = {r["mechanism"]: r for r in rows}
    assert set(by) == set(mechanisms.MECHANISMS)
    for m in ("mmr", "sdr", "bill_sharing"):
        assert by[m]["efficiency"] == pytest.approx(1.0)
    # the operator keeps McAfee's trade-reduction margin and the Stackelberg leader's, and covers VCG's deficit
    assert (
        by["mcafee"]["market_operator_balance"] >= -1e-9
        and by["stackelberg"]["market_operator_balance"] >= -1e-9
    )
    assert by["vcg"]["market_operator_balance"] <= 1e-9
    for m in ("uniform", "pay_as_bid", "bilateral", "nash_bargaining", "sharing_game", "mmr"):
        assert by[m]["market_operator_balance"] == pytest.approx(0.0, abs=1e-9)
    assert mechanisms.plot(rows, tmp_path / "m.png").stat().st_size > 0
