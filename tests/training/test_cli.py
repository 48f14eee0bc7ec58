"""End-to-end smoke tests of ``p2p-gym train`` / ``evaluate-policy`` in a subprocess with tiny budgets.

The fast subset (PPO in every setting, the other algorithms in ``single``, evaluate-policy, config round trip)
runs by default; every other algorithm × setting pair is marked ``slow``.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("stable_baselines3")

TINY = ["--scenario", "tiny", "--episode-steps", "16", "--timesteps", "256", "--eval-episodes", "1"]
TINY += ["--eval-freq", "0", "--checkpoint-freq", "128", "--no-progress", "--rounds", "2"]
SMALL_HP = {
    "ppo": ["--hp", "n_steps=64", "--hp", "batch_size=32", "--hp", "n_epochs=2"],
    "a2c": [],
    "sac": ["--hp", "learning_starts=32", "--hp", "batch_size=32"],
    "td3": ["--hp", "learning_starts=32", "--hp", "batch_size=32"],
}
# In the main suite: ppo shared and single, a2c single; the rest (sac, td3, independent) runs in the slow suite.
FAST = {("ppo", "shared"), ("ppo", "single"), ("a2c", "single")}


#: Columns of evaluations.csv besides one per baseline (written by training.sb3.Evaluator).
EVAL_COLUMNS = {"timesteps", "learner", "gains", "welfare", "eval_seconds"}


def cli(*argv: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m p2p_gym.cli ARGV`` and fail with its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "p2p_gym.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _params() -> list:
    out = []
    for algo in ("ppo", "a2c", "sac", "td3"):
        for setting in ("shared", "independent", "single"):
            marks = [] if (algo, setting) in FAST else [pytest.mark.slow]
            out.append(pytest.param(algo, setting, marks=marks, id=f"{algo}-{setting}"))
    return out


@pytest.mark.parametrize(("algo", "setting"), _params())
def test_train_every_algo_and_setting(algo: str, setting: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cli("train", "--algo", algo, "--setting", setting, *TINY, *SMALL_HP[algo], "--out", str(run))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["algo"] == algo and cfg["setting"] == setting and cfg["seed"] == 0
    assert cfg["market"]["scenario"] == "tiny" and cfg["market"]["episode_steps"] == 16
    zips = [run / "model.zip"] if setting != "independent" else sorted(run.glob("agents/*/model.zip"))
    assert zips and all(z.exists() for z in zips)
    if setting == "independent":
        assert len(zips) == 4  # one model per agent of `tiny`
    logs = [run / "progress.csv"] if setting != "independent" else sorted(run.glob("agents/*/progress.csv"))
    assert all(csv_rows(p) for p in logs)
    assert list(run.rglob("events.out.tfevents.*")), "TensorBoard events missing"
    evals = csv_rows(run / "evaluations.csv")
    assert evals and set(evals[0]) == {*EVAL_COLUMNS, "zi-c", "truthful"}
    assert list(run.rglob("checkpoints/*.zip"))


def test_default_run_name_config_reproduces_and_evaluate_policy(tmp_path: Path) -> None:
    """The default run dir carries the seed; ``--config run/config.yaml`` repeats the run exactly (same
    evaluation numbers); evaluate-policy plays the saved policy and prints the baselines and market KPIs."""
    args = ["train", "--algo", "ppo", "--setting", "single", *TINY, *SMALL_HP["ppo"], "--seed", "3"]
    cli(*args, "--normalize-obs", "--normalize-reward", cwd=tmp_path)
    run = tmp_path / "runs" / "ppo-single-tiny-uniform-s3"
    assert (run / "model.zip").exists() and (run / "vecnormalize.pkl").exists()
    first = csv_rows(run / "evaluations.csv")
    cli("train", "--config", str(run / "config.yaml"), "--out", str(tmp_path / "again"), cwd=tmp_path)

    def numbers(rows: list[dict[str, str]]) -> list[dict[str, str]]:  # all but the wall time spent evaluating
        return [{k: v for k, v in r.items() if k != "eval_seconds"} for r in rows]

    assert numbers(csv_rows(tmp_path / "again" / "evaluations.csv")) == numbers(first)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    again = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert {**saved, "out": None} == {**again, "out": None}

    out = cli("evaluate-policy", str(run), "--episodes", "1", cwd=tmp_path).stdout
    assert "prosumer_0" in out and "zi-c" in out and "truthful" in out and "p2p_volume_kwh" in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--hp", "no_such_hp=1"], "no_such_hp"),
        (["--env-kw", "no_such_option=1"], "no_such_option"),
        (["--grid", "none", "--grid-policy", "block"], "grid_policy"),
    ],
)
def test_bad_arguments_are_reported(argv: list[str], named: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "p2p_gym.cli", "train", "--scenario", "tiny", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and named in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_a_platform_operator(tmp_path: Path) -> None:
    """A learned platform operator (coordination=predictive, predictor=agents) among rule-based prosumers and
    operators: the operator's slot is compared with the operator rules."""
    from p2p_gym.scenarios import load_scenario
    from p2p_gym.sim.multiscale import operator_ids

    op = operator_ids(load_scenario("tiny"))[0]
    run = tmp_path / "run"
    cfg = tmp_path / "op.yaml"
    cfg.write_text(yaml.safe_dump({"eval_baselines": ["expected", "persistence"]}))
    market = ["--coordination", "predictive", "--predictor", "agents", *TINY, *SMALL_HP["ppo"]]
    cli("train", "--config", str(cfg), "--algo", "ppo", "--setting", "single", "--agent", op, "--others", "battery",
        *market, "--out", str(run))  # fmt: skip
    assert (run / "model.zip").exists()
    evals = csv_rows(run / "evaluations.csv")
    assert evals and set(evals[0]) == {*EVAL_COLUMNS, "expected", "persistence"}
