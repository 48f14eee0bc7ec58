"""``python -m eval.uncertainty``: one test day of each setting."""

from __future__ import annotations

import pytest


def test_uncertainty_study_rows() -> None:
    from eval import uncertainty

    rows = {r["setting"]: r for r in uncertainty.run(episodes=1)}
    assert set(rows) == {label for label, _ in uncertainty.SETTINGS}
    perfect, da, res = rows["perfect"], rows["day_ahead"], rows["day_ahead + reserve"]
    assert perfect["short_kwh"] == perfect["long_kwh"] == perfect["imbalance_cost"] == 0.0
    # the same seeded forecasts: the agents' own deviations are the same with and without reserve …
    assert res["short_kwh"] == pytest.approx(da["short_kwh"])
    assert res["long_kwh"] == pytest.approx(da["long_kwh"])
    # … and activation only ever offsets the system's imbalance
    assert res["residual_kwh"] <= da["residual_kwh"] + 1e-9
    assert da["short_kwh"] > 0 and da["imbalance_cost"] > 0


def test_uncertainty_cli_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    from eval import uncertainty

    assert uncertainty.main(["--episodes", "0"]) == 2
    assert uncertainty.main(["--policy", "oracle", "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error:") for line in err)


def test_run_summary_reports_imbalance_and_reserve() -> None:
    """``p2p-gym run`` sums the imbalance KPIs over the steps; the text shows them only with forecasts."""
    from p2p_gym.run import RunConfig, format_table, simulate
    from p2p_gym.sim import MarketConfig

    base = MarketConfig(scenario="default", dispatch="committed", grid="none", imbalance_penalty=0.05)
    perfect = simulate(RunConfig(market=base, agents="truthful", progress=False))
    s = perfect["summary"]
    assert s["imbalance_kwh"] == s["imbalance_cost_total"] == s["reserve_cost_total"] == 0.0
    assert "imbalance" not in format_table(perfect)
    res = simulate(RunConfig(market=base.replace(forecast="day_ahead", reserve=True), agents="zi-c",
                             progress=False))  # fmt: skip
    s = res["summary"]
    assert s["imbalance_kwh"] > 0 and s["reserve_cost_total"] > 0  # zi-c asks a random capacity price
    assert s["residual_imbalance_kwh"] <= s["imbalance_kwh"] + 1e-9
    assert "reserve capacity cost" in format_table(res)


def test_mechanisms_cli_error_is_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    from eval import mechanisms

    assert mechanisms.main(["--mechanisms", "oracle", "--days", "1", "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: mechanisms:")
