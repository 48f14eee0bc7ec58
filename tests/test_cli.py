"""The console script: `p2p-gym scenarios` and the main job `p2p-gym run` (in a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "p2p_gym.cli", *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_scenarios_lists_and_summarises() -> None:
    res = _cli("scenarios", "--show", "tiny")
    assert res.returncode == 0, res.stderr
    for name in ("default", "tiny", "cigre_lv", "ieee39", "default_high_pv"):
        assert f"  {name}\n" in res.stdout
    assert "agents" in res.stdout and "prosumer_3@" in res.stdout


def test_run_writes_files_and_a_sane_table(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = _cli(
        "run", "--scenario", "tiny", "--mechanism", "uniform", "--agents", "zi-c", "--days", "2",
        "--grid", "linear", "--seed", "0", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for f in (
        "summary.json",
        "steps.csv",
        "agents.csv",
        "prices_volume.png",
        "bills.png",
        "line_loading.png",
    ):
        assert (out / f).stat().st_size > 0, f
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 < summary["efficiency"] <= 1.0 + 1e-9
    assert summary["steps"] == 192 and summary["agents"] == 4
    # money: community bill = what the grid receives; savings = grid-only minus market bills
    assert summary["total_bill"] <= summary["total_grid_only_bill"] + 1e-9
    assert summary["gains_from_trade"] == pytest.approx(
        summary["total_grid_only_bill"] - summary["total_bill"]
    )
    assert "efficiency vs optimum" in res.stdout and "prosumer_3" in res.stdout
    rows = (out / "steps.csv").read_text().splitlines()
    assert len(rows) == 193


def test_run_bad_arguments_exit_cleanly() -> None:
    res = _cli("run", "--scenario", "nope", "--no-progress")
    assert res.returncode == 2 and "valid names" in res.stderr
    res = _cli("run", "--scenario", "tiny", "--agents", "genius", "--no-progress")
    assert res.returncode == 2 and "genius" in res.stderr


def test_run_market_flags_are_derived_from_market_config() -> None:
    """Every MarketConfig field is a flag of `p2p-gym run` except the two the run sets itself."""
    import argparse

    from p2p_gym import run
    from p2p_gym.sim import field_names

    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    flags = {opt for a in parser._actions for opt in a.option_strings}
    expected = {"--" + f.replace("_", "-") for f in field_names()} - {"--episode-steps", "--compute-optimum"}
    assert expected <= flags
    assert "--episode-steps" not in flags  # set from --days


def test_run_yaml_config_and_flags_layer(tmp_path: Path) -> None:
    """`--config` YAML sets market options; a flag overrides the file (defaults < YAML < flags)."""
    import argparse

    from p2p_gym import run

    cfg = tmp_path / "market.yaml"
    cfg.write_text(
        "scenario: tiny\nmechanism: bilateral\ngrid: none\ngrid_policy: fee\nfee_per_kwh_km: 0.5\n"
    )
    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    with_fee = run.simulate(run.config_from_namespace(parser.parse_args(
        ["--config", str(cfg), "--agents", "truthful", "--no-progress"])))  # fmt: skip
    no_fee = run.simulate(run.config_from_namespace(parser.parse_args(
        ["--config", str(cfg), "--agents", "truthful", "--no-progress", "--grid-policy", "report"])))  # fmt: skip
    assert with_fee["summary"]["config"]["market"]["mechanism"] == "bilateral"
    assert with_fee["summary"]["fees_total"] > 0 and no_fee["summary"]["fees_total"] == 0
    assert no_fee["summary"]["config"]["market"]["grid_policy"] == "report"


def test_run_against_the_episode_optimum() -> None:
    """`--compute-optimum episode`: the run's optimum is the episode optimum of the same days (solved
    independently here) and efficiency is measured from the no-trade, idle-battery reference."""
    from p2p_gym import run
    from p2p_gym.optim import episode_optimum
    from p2p_gym.scenarios import load_scenario
    from p2p_gym.sim import MarketConfig

    market = MarketConfig(scenario="default", grid="none", start_day=172, compute_optimum="episode")
    s = run.simulate(run.RunConfig(market=market, agents="zi-c", days=1, progress=False))["summary"]
    sc = load_scenario("default")
    opt = episode_optimum(sc, 172 * sc.steps_per_day, sc.steps_per_day, 0.5)
    assert s["optimum"] == "episode"
    assert s["welfare_optimum"] == pytest.approx(opt.welfare, rel=1e-6)
    assert s["welfare_reference"] == pytest.approx(opt.reference_welfare, rel=1e-9)
    expected = (s["welfare"] - opt.reference_welfare) / (opt.welfare - opt.reference_welfare)
    assert s["efficiency"] == pytest.approx(expected, rel=1e-6)
    assert 0.0 < s["efficiency"] < 1.0  # ZI-C with idle batteries leaves the batteries' value on the table
