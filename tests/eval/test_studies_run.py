"""The learning studies (PPO learning check, learned peer selection) run end to end at a tiny budget.

They are long by design (their documented budgets take tens of minutes), so these tests only check that they
still run against the current training API and write what they promise; their results are in the README.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")


@pytest.mark.slow
def test_learning_check_runs_and_writes_its_curve(tmp_path: Path) -> None:
    from eval import learning_check
    from training.sb3 import EVAL_FILE

    figure = tmp_path / "curve.png"
    argv = ["--seeds", "0", "--timesteps", "512", "--eval-freq", "256", "--eval-episodes", "1",
            "--out", str(tmp_path / "runs"), "--figure", str(figure)]  # fmt: skip
    assert learning_check.main(argv) in (0, 1)  # PASS/FAIL is a result, not a crash
    assert figure.stat().st_size > 0
    rows = list(csv.DictReader((tmp_path / "runs" / "ppo-single-tiny-uniform-s0" / EVAL_FILE).open()))
    assert rows and {"learner", "zi-c", "truthful"} <= set(rows[0])


@pytest.mark.slow
def test_peer_selection_study_runs() -> None:
    from eval import peer_selection

    assert peer_selection.main(["--seeds", "0", "--timesteps", "256", "--eval-episodes", "1"]) in (0, 1)


@pytest.mark.slow
def test_flex_learning_study_runs(tmp_path: Path) -> None:
    from eval import flex_learning

    for task, steps in (("battery-owner", 512), ("community", 3000), ("reserve", 512)):
        res = flex_learning.study([0], timesteps=steps, episodes=1, out=tmp_path, name=task)
        assert set(res["rules"]) == set(flex_learning.RULES) and set(res["learned"]) == {0}
        for r in (*res["rules"].values(), *res["learned"].values()):
            assert r["efficiency"] <= 1.0 + 1e-6  # nobody beats the episode optimum of the same days
