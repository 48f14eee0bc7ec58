"""The MARL benchmark: tasks, references, budgets per library, aggregation by hand, CLI, an end-to-end run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval import bench
from training.config import TrainArgs

SMALL = {name: t for name, t in bench.TASKS.items() if name != "multi-platform-v1"}  # mvlv loads in ~10 s


@pytest.mark.parametrize("name", sorted(SMALL))
def test_tasks_build_and_their_rules_exist(name: str) -> None:
    from agents import policy_from_name
    from p2p_gym.envs import parallel_env

    task = bench.TASKS[name]
    assert task.config().day_split == "train"
    ev = task.config(evaluation=True)
    assert ev.day_split == "test" and ev.compute_optimum == "episode"
    env = parallel_env(config=task.config())
    for rule in task.references:
        policy_from_name(rule, env, env.possible_agents[0])  # raises on an unknown rule
    env.close()


@pytest.mark.slow
def test_multi_platform_task_has_three_platforms() -> None:
    from p2p_gym.envs import parallel_env

    env = parallel_env(config=bench.TASKS["multi-platform-v1"].config())
    assert len(env.possible_agents) == 39 and len(set(env.scenario.platform.tolist())) == 3
    env.close()


@pytest.fixture(scope="module")
def strategic_refs() -> dict:
    task = dataclasses.replace(bench.TASKS["strategic-uniform-v1"], eval_episodes=2)
    return bench.reference_scores(task)


def test_references_of_the_uniform_strategic_task(strategic_refs: dict) -> None:
    """Fixed positions and a uniform auction: truthful bids realise every gain from trade (the LP optimum, an
    independent solver), so truthful is the best rule at normalised score 1; random is 0 by construction; ZI-C
    lies strictly between (Gode & Sunder 1993: high but not full efficiency)."""
    refs = strategic_refs
    rules = refs["rules"]
    assert rules["truthful"]["gains"] == pytest.approx(refs["optimum"], rel=1e-6)
    assert bench.normalised(refs["optimum"], refs) == pytest.approx(1.0)
    assert bench.normalised(refs["random"], refs) == pytest.approx(0.0)
    assert 0.0 < bench.normalised(rules["zi-c"]["gains"], refs) < 1.0
    assert refs["best_rule"] in ("truthful", "markup", "zip")
    assert rules[refs["best_rule"]]["gains"] == pytest.approx(max(r["gains"] for r in rules.values()))
    # every rule plays the same days: one reference welfare
    assert len({round(r["reference_welfare"], 9) for r in rules.values()}) == 1


@pytest.mark.parametrize("algo", bench.ALGOS)
def test_every_bench_run_is_a_valid_train_config_at_the_same_market_step_budget(
    algo: str, tmp_path: Path
) -> None:
    lib, name = algo.split(":")
    spec = bench.RunSpec(bench.TASKS["strategic-uniform-v1"], lib, name, seed=3, steps=10_000)
    cfg = spec.train_args(tmp_path / "run", n_agents=8)
    args = TrainArgs.from_dict(cfg)  # unknown hyperparameters or options raise
    assert args.timesteps == (
        10_000 * 8 if lib == "sb3" else 10_000
    )  # sb3's shared policy counts agent steps
    assert args.eval_seed == spec.task.eval_seed and args.market.day_split == "train"
    assert args.market.replace(**args.eval_market).day_split == "test"
    if algo in ("sb3:ppo", "sb3:a2c"):  # evaluations fall on whole rollouts
        assert args.eval_freq % (bench.SB3_ENVS * 8 * args.resolved_hyperparams["n_steps"]) == 0


def _record(task: str, algo: str, final: float, wall: float = 100.0, status: str = "ok") -> dict:
    curve = [
        {"steps": 500.0, "gains": final / 2, "return": 0.0, "eval_seconds": 5.0},
        {"steps": 1000.0, "gains": final, "return": 0.0, "eval_seconds": 20.0},
    ]
    return {"task": task, "algo": algo, "status": status, "wall_seconds": wall, "curve": curve}


REFS = {
    "t": {"random": 0.0, "optimum": 10.0, "best_rule": "flex", "rules": {"flex": {"gains": 5.0}}},
    "u": {"random": -10.0, "optimum": 10.0, "best_rule": "flex", "rules": {"flex": {"gains": 0.0}}},
}


def test_aggregate_by_hand() -> None:
    """Four seeds scoring 0.9, 0.6, 0.7, 0.8 of the optimum: IQM = mean of the middle two = 0.75; the bootstrap
    interval lies within [0.6, 0.9]; above the best rule's 0.5 everywhere, so it beats it; a failed seed is
    counted apart; training speed = 1000 steps / (100 s − 20 s of evaluation)."""
    recs = [_record("t", "sb3:ppo", g) for g in (9.0, 6.0, 7.0, 8.0)]
    recs.append(_record("t", "sb3:ppo", 0.0, status="failed: boom"))
    (row,) = bench.aggregate(recs, REFS)
    assert row["seeds"] == 4 and row["failed"] == 1
    assert row["iqm"] == pytest.approx(0.75)
    assert 0.6 <= row["ci_low"] <= 0.75 <= row["ci_high"] <= 0.9
    assert row["best_rule_norm"] == pytest.approx(0.5) and row["beats_best_rule"]
    assert row["steps_per_second"] == pytest.approx(1000 / 80)
    # a rule at 0.7 sits inside the interval: not beaten
    refs = {"t": {**REFS["t"], "rules": {"flex": {"gains": 7.0}}}}
    assert not bench.aggregate(recs, refs)[0]["beats_best_rule"]


def test_seconds_to_reach_zic_by_hand() -> None:
    """Curves at 500 and 1000 steps with 80 s of training (100 s − 20 s of evaluation): 40 s and 80 s. Halfway the
    four seeds score 0.45, 0.30, 0.35, 0.40 (IQM 0.375), at the end 0.75."""
    recs = [_record("t", "sb3:ppo", g) for g in (9.0, 6.0, 7.0, 8.0)]

    def seconds(zic_gains: float) -> float:
        refs = {"t": {**REFS["t"], "rules": {**REFS["t"]["rules"], "zi-c": {"gains": zic_gains}}}}
        return bench.aggregate(recs, refs)[0]["seconds_to_zic"]

    assert seconds(3.0) == pytest.approx(40.0)  # 0.375 ≥ 0.30 at the first evaluation
    assert seconds(4.0) == pytest.approx(80.0)  # 0.375 < 0.40 ≤ 0.75
    assert seconds(9.5) == math.inf
    assert math.isnan(bench.aggregate(recs, REFS)[0]["seconds_to_zic"])  # no ZI-C reference


def test_overall_pools_tasks_as_strata() -> None:
    recs = [_record("t", "a:x", g) for g in (2.0, 4.0, 6.0, 8.0)]  # 0.2, 0.4, 0.6, 0.8
    recs += [_record("u", "a:x", g) for g in (0.0, 0.0, 0.0, 0.0)]  # 0.5 each
    (row,) = bench.overall(bench.aggregate(recs, REFS))
    pooled = np.sort([0.2, 0.4, 0.6, 0.8, 0.5, 0.5, 0.5, 0.5])
    assert row["iqm"] == pytest.approx(pooled[2:6].mean()) and row["tasks"] == 2 and row["seeds"] == 4


def test_cli_lists_and_rejects_bad_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert bench.main(parser.parse_args(["--list"])) == 0
    assert "community-flex-v1" in capsys.readouterr().out
    out = ["--out", str(tmp_path)]
    assert bench.main(parser.parse_args(["--tasks", "nope", *out])) == 2
    assert "--tasks: unknown task(s) ['nope']" in capsys.readouterr().err
    assert bench.main(parser.parse_args(["--algos", "sb3:qmix", *out])) == 2
    assert bench.main(parser.parse_args(["--seeds", "0", *out])) == 2
    assert bench.main(parser.parse_args(["--timeout", "nan", *out])) == 2
    assert "--timeout: must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_end_to_end_and_resume(tmp_path: Path) -> None:
    """Two seeds of sb3 PPO on a two-episode evaluation: tables, JSON, learning-curve figure; a second call reuses
    the finished runs (their records unchanged)."""
    task = "strategic-uniform-v1"
    cmd = [
        sys.executable,
        "-m",
        "p2p_gym.cli",
        "bench",
        "--tasks",
        task,
        "--algos",
        "sb3:ppo",
        "--seeds",
        "2",
    ]
    cmd += ["--steps", "200", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "bench.json").read_text())
    (row,) = data["rows"]
    assert row["task"] == task and row["algo"] == "sb3:ppo" and row["seeds"] == 2
    assert np.isfinite(row["iqm"]) and row["ci_low"] <= row["iqm"] <= row["ci_high"]
    assert "| strategic-uniform-v1 | sb3:ppo | 2 |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / f"curves-{task}.png").stat().st_size > 10_000
    done = sorted((tmp_path / "runs" / task).glob(f"*/{bench.DONE_FILE}"))
    assert len(done) == 2
    before = [p.stat().st_mtime_ns for p in done]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and [p.stat().st_mtime_ns for p in done] == before
    # --report-only reads the same finished runs and trains nothing; a third seed is not there yet
    report = [*cmd[:-4], "--seeds", "3", "--steps", "200", "--out", str(tmp_path), "--report-only"]
    proc = subprocess.run(report, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and "2 of 3 runs finished" in proc.stderr, proc.stderr[-2000:]
    assert json.loads((tmp_path / "bench.json").read_text())["rows"] == data["rows"]
    assert not (tmp_path / "runs" / task / "sb3-ppo-s2").exists()


def test_merge_adds_the_included_runs_and_references_and_keeps_its_own() -> None:
    """A previous bench.json's task 'u' is added; its run of (t, sb3:ppo, seed 0) loses to this one's; the merged
    records aggregate as if they had been run together (one seed of 'u' at (0 + 10)/20 = 0.5)."""
    mine = [{**_record("t", "sb3:ppo", 9.0), "seed": 0}]
    refs = {"t": dict(REFS["t"])}
    included = {
        "steps": 1000,
        "references": {"t": REFS["t"], "u": REFS["u"]},
        "runs": [{**_record("t", "sb3:ppo", 1.0), "seed": 0}, {**_record("u", "sb3:ppo", 0.0), "seed": 0}],
    }
    bench.merge_references(refs, included, "old.json")
    bench.merge_runs(mine, included)
    assert set(refs) == {"t", "u"} and len(mine) == 2
    rows = {r["task"]: r for r in bench.aggregate(mine, refs)}
    assert rows["t"]["scores"] == pytest.approx([0.9]) and rows["u"]["scores"] == pytest.approx([0.5])
    other = {**included, "references": {"t": {**REFS["t"], "optimum": 12.0}}}
    with pytest.raises(bench.BenchError, match="scored t against other references"):
        bench.merge_references(refs, other, source="old.json")


def test_cli_rejects_an_unusable_include(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    old = tmp_path / "old.json"
    args = ["--tasks", "strategic-pab-v1", "--steps", "500", "--out", str(tmp_path), "--include", str(old)]
    assert bench.main(parser.parse_args(args)) == 2
    assert "--include: cannot read" in capsys.readouterr().err
    old.write_text(json.dumps({"steps": 20000, "references": {}, "runs": []}))
    assert bench.main(parser.parse_args(args)) == 2
    assert "trained 20000 market steps per run, this bench --steps 500" in capsys.readouterr().err
    old.write_text(json.dumps({"rows": []}))
    assert bench.main(parser.parse_args(args)) == 2
    assert "is not a bench.json" in capsys.readouterr().err
    old.write_text(json.dumps({"steps": 500, "references": {}, "runs": [{"task": "t"}]}))
    assert bench.main(parser.parse_args(args)) == 2
    assert "run 0 is not a bench run" in capsys.readouterr().err


def test_order_book_of_truthful_and_of_withheld_orders() -> None:
    """Uniform double auction on the held-out days of strategic-uniform-v1. Truthful: buyers bid retail and sellers
    ask feed-in, so every two-sided book crosses and the market trades exactly in the crossing steps. Orders of
    zero quantity (quantity entry −1): no book, no trade."""
    task = bench.TASKS["strategic-uniform-v1"]
    market = task.config().replace(day_split="test")
    truthful = bench.order_book(market, "truthful", episodes=2, seed=task.eval_seed)
    assert truthful["sell_kwh"] > 0 and truthful["buy_kwh"] > 0
    assert truthful["bid_price"] > truthful["ask_price"]
    assert truthful["crossing"] == pytest.approx(truthful["both_sides"]) and truthful["crossing"] > 0
    assert truthful["trading"] == pytest.approx(truthful["crossing"])
    withheld = bench.order_book(
        market, lambda env, a: lambda obs: np.array([0.0, -1.0, 0.0], np.float32), episodes=2, seed=0
    )
    assert withheld["sell_kwh"] == 0 and withheld["buy_kwh"] == 0
    assert withheld["both_sides"] == 0 and withheld["trading"] == 0 and withheld["traded_kwh"] == 0
    with pytest.raises(ValueError, match="episodes: must be an integer ≥ 1, got 0"):
        bench.order_book(market, "truthful", episodes=0)


def test_a_rows_interval_does_not_depend_on_the_other_rows() -> None:
    recs = [_record("t", "sb3:ppo", g) for g in (9.0, 6.0, 7.0, 8.0, 2.0)]
    alone = bench.aggregate(recs, REFS)[0]
    more = [_record("u", "a:x", g) for g in (1.0, 5.0, 3.0)] + recs
    (with_u,) = [r for r in bench.aggregate(more, REFS) if r["task"] == "t"]
    assert (with_u["ci_low"], with_u["ci_high"]) == (alone["ci_low"], alone["ci_high"])


def test_a_finished_run_stays_finished_when_a_market_option_is_added(tmp_path: Path) -> None:
    """A run saved before a market option existed (its config lacks the key) matches the same run now, whose
    config has the option at its default; a changed option does not."""
    spec = bench.RunSpec(bench.TASKS["strategic-uniform-v1"], "sb3", "ppo", 0, 100)
    current = spec.train_args(bench.run_dir(tmp_path, spec), 8)
    old = {**current, "market": {k: v for k, v in current["market"].items() if k != "peer_obs"}}
    assert "peer_obs" in current["market"] and bench._same_config(old, current)
    changed = {**current, "market": {**current["market"], "mechanism": "pay_as_bid"}}
    assert not bench._same_config(changed, current) and not bench._same_config(
        {**current, "seed": 1}, current
    )
