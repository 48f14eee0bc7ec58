"""The evaluation matrix: aggregation against hand-computed values, outputs and the HTML report."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from eval import matrix
from eval.report import FIGURES
from p2p_gym.sim import MarketConfig


def _cell(policy: str, mech: str, seed: int, gains: float, best: float, savings: list[float]) -> dict:
    kpis = {k: 0.0 for k in matrix.KPIS}
    kpis.update(gains_from_trade=gains, optimal_gains_from_trade=best, efficiency=gains / best)
    return {"policy": policy, "mechanism": mech, "seed": seed, "kpis": kpis, "savings": savings}


def test_aggregate_against_hand_computed_values() -> None:
    cells = [
        _cell("zi-c", "uniform", 0, 1.0, 2.0, [1.0, 3.0, 0.0, -1.0]),
        _cell("zi-c", "uniform", 1, 3.0, 4.0, [3.0, 1.0, 2.0, -1.0]),
    ]
    (row,) = matrix.aggregate(cells)
    assert row["seeds"] == 2
    assert row["efficiency"] == pytest.approx((0.5 + 0.75) / 2)
    assert row["efficiency_std"] == pytest.approx(0.125)
    assert row["poa"] == pytest.approx(6.0 / 4.0)  # summed optimal gains / summed realised gains
    # mean savings per agent: [2, 2, 1, -1] → total 4
    assert row["fair_losers_pct"] == pytest.approx(25.0)
    assert row["fair_cr20"] == pytest.approx(2.0 / 4.0)  # top ⌈0.2·4⌉ = 1 agent takes 2 of 4
    assert row["fair_jain"] == pytest.approx(25.0 / (4 * 9.0))  # on non-negative parts [2, 2, 1, 0]
    x = np.array([2.0, 2.0, 1.0, -1.0])
    gini = np.abs(x[:, None] - x[None, :]).sum() / (2 * 16 * 1.0)
    assert row["fair_gini"] == pytest.approx(gini)


def test_aggregate_groups_by_policy_and_mechanism() -> None:
    cells = [_cell(p, m, 0, 1.0, 1.0, [1.0, 1.0]) for p in ("a", "b") for m in ("uniform", "sdr")]
    rows = matrix.aggregate(cells)
    assert [(r["policy"], r["mechanism"]) for r in rows] == [
        ("a", "uniform"),
        ("a", "sdr"),
        ("b", "uniform"),
        ("b", "sdr"),
    ]
    assert all(r["efficiency"] == 1.0 and r["poa"] == 1.0 for r in rows)


def test_outputs_exist_and_are_consistent(tiny_report: Path) -> None:
    for name in ("metrics.json", "runs.csv", "summary.csv", "agents.csv", "hourly.csv", "strategic.csv"):
        assert (tiny_report / name).is_file(), name
    data = json.loads((tiny_report / "metrics.json").read_text())
    assert len(data["cells"]) == 4 and len(data["summary"]) == 4 and len(data["strategic"]) == 4
    with (tiny_report / "runs.csv").open() as fh:
        runs = list(csv.DictReader(fh))
    assert {(r["policy"], r["mechanism"]) for r in runs} == {
        (p, m) for p in ("truthful", "zi-c") for m in ("uniform", "sdr")
    }
    for row in data["summary"]:
        assert 0.0 <= row["efficiency"] <= 1.0 + 1e-9
        assert row["poa"] >= 1.0 - 1e-9
    truthful = {r["mechanism"]: r for r in data["summary"] if r["policy"] == "truthful"}
    # truthful bids cross at every step: the uniform auction realises all gains from trade
    assert truthful["uniform"]["efficiency"] == pytest.approx(1.0)
    # truthful re-clearing of truthful books: no market-power signal
    s = {(r["policy"], r["mechanism"]): r for r in data["strategic"]}
    assert s[("truthful", "uniform")]["price_above_competitive"] == pytest.approx(0.0, abs=1e-12)
    assert s[("truthful", "uniform")]["seller_markup_median"] == pytest.approx(0.0, abs=1e-6)


def test_report_has_a_base64_image_per_figure(tiny_report: Path) -> None:
    text = (tiny_report / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    for key, _, _ in FIGURES:
        m = re.search(rf'id="fig-{key}".*?<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text, re.S)
        assert m, key
        assert base64.b64decode(m.group(1))[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in text and "https://" not in text  # self-contained


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (["--mechanisms", "nope"], "mechanisms: 'nope'"),
        (["--policies", "zi-c,genius"], "policies: 'genius'"),
        (["--policies", "markup:abc"], "policies: 'markup:abc'"),
        (["--days", "0"], "days"),
        (["--grid-policy", "block", "--grid", "none"], "grid_policy"),
    ],
)
def test_bad_arguments_fail_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], field: str
) -> None:
    import argparse

    def no_run(*_a: object, **_k: object) -> None:
        raise AssertionError("a simulation started before the arguments were checked")

    monkeypatch.setattr(matrix, "run_tasks", no_run)
    parser = argparse.ArgumentParser()
    matrix.add_arguments(parser)
    args = parser.parse_args(["--scenario", "tiny", *flags, "--out", str(tmp_path)])
    with pytest.raises(ValueError, match=field.replace("(", r"\(")):
        matrix.main(args)
    assert not (tmp_path / "metrics.json").exists()


def test_market_flags_reach_every_cell(tmp_path: Path) -> None:
    """A market option given on the command line (here the DSO fee) is the option of every run."""
    import argparse

    parser = argparse.ArgumentParser()
    matrix.add_arguments(parser)
    argv = ["--scenario", "tiny", "--policies", "truthful", "--mechanisms", "uniform,bilateral",
            "--days", "1", "--seeds", "1", "--exploit-agents", "0", "--workers", "1", "--quiet",
            "--grid-policy", "fee", "--fee-per-kwh-km", "0.5", "--out", str(tmp_path)]  # fmt: skip
    assert matrix.main(parser.parse_args(argv)) == 0
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["config"]["market"]["grid_policy"] == "fee"
    # a truthful P2P market with trades pays distance fees (tiny's agents sit on different buses)
    assert all(c["kpis"]["fees_total"] > 0 for c in data["cells"])


@pytest.mark.slow
def test_trained_run_directory_as_policy(tmp_path: Path) -> None:
    from training.config import TrainArgs
    from training.sb3 import train

    run = train(
        TrainArgs(
            market=MarketConfig(scenario="tiny", grid="none"),
            timesteps=256,
            hyperparams={"n_steps": 64, "batch_size": 64},
            eval_freq=0,
            checkpoint_freq=0,
            progress=False,
            out=str(tmp_path / "run"),
        )
    )
    cell = matrix.run_cell(MarketConfig(scenario="tiny", grid="none"), str(run), 0, 1)
    assert cell["policy"] == str(run) and len(cell["savings"]) == 4
    assert np.isfinite(cell["kpis"]["welfare"])


@pytest.mark.slow
def test_ray_runner_matches_process_pool() -> None:
    pytest.importorskip("ray")
    tasks = [(matrix.run_cell, (MarketConfig(scenario="tiny", grid="none"), "truthful", 0, 1))]
    a = matrix.run_tasks(tasks, workers=1, progress=False)
    b = matrix.run_tasks(tasks, workers=1, use_ray=True, progress=False)
    assert a[0]["kpis"]["welfare"] == pytest.approx(b[0]["kpis"]["welfare"])
