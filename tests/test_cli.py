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
