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
