"""The physical congestion study (EUniversal D5.3 (2022), §5 Table 8 in kind): with committed dispatch the
settings differ for physical reasons (the checks are orderings the physics implies, not pasted numbers)."""

from __future__ import annotations

import pytest

from eval import flex_congestion as fc


@pytest.mark.slow
def test_settings_differ_for_physical_reasons() -> None:
    rows = {r["key"]: r for r in fc.study(days=1, start_day=144)}
    s0, s1 = rows["s0"], rows["s1"]
    # trades to the neighbours' batteries store midday PV on the feeder: less overflow, cheaper LFM
    assert s1["p2p_volume_kwh"] > 0 and s0["p2p_volume_kwh"] == 0
    assert s1["overflow_sum_pct"] < s0["overflow_sum_pct"] and s1["lfm_cost"] < s0["lfm_cost"]
    # the LFM removes every congestion it can: nothing left after it when feasible
    for key in ("s0", "s1", "s2", "s3_100", "s3_80"):
        assert rows[key]["lfm_infeasible_steps"] == 0 and rows[key]["congested_after_lfm"] == 0
    # extreme loading without curtailment: the offers cannot resolve it
    assert rows["s1p"]["lfm_infeasible_steps"] > 0 and rows["s1p"]["congested_after_lfm"] > 0
    # lighter PV: congested without trading, not with it
    assert rows["s0pp"]["congested_line_steps"] > 0 and rows["s1pp"]["congested_line_steps"] == 0
    # the DSO's rules never create congestion the unchecked market did not have
    for key in ("s2", "s3_100", "s3_80"):
        assert rows[key]["overflow_sum_pct"] <= s1["overflow_sum_pct"] + 1e-9
    # large storage: the rules re-pair sellers and buyers, so when each battery charges — and the flows — change,
    # while the energy the batteries buy over the day stays the same (every buyer still finds an allowed seller)
    for key in ("L2", "L3_100", "L3_80"):
        assert abs(rows[key]["overflow_sum_pct"] - rows["L1"]["overflow_sum_pct"]) > 1.0
        assert rows[key]["p2p_volume_kwh"] == pytest.approx(rows["L1"]["p2p_volume_kwh"], rel=0.01)
