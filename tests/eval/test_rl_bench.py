"""Benchmark tasks: reference scores and the normalised score."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from eval import rl_bench as bench


@pytest.fixture(scope="module")
def tiny_refs() -> dict[str, float]:
    task = dataclasses.replace(bench.TASKS["tiny-uniform-v0"], eval_seeds=(0,))
    return bench.reference_scores(task)


def test_reference_scores_are_ordered(tiny_refs: dict[str, float]) -> None:
    assert set(tiny_refs) == {"random", "zi-c", "truthful", "optimum"}
    # truthful bids realise every gain from trade in the uniform auction; nobody beats the optimum
    assert tiny_refs["truthful"] == pytest.approx(tiny_refs["optimum"])
    assert tiny_refs["random"] < tiny_refs["zi-c"] <= tiny_refs["optimum"] + 1e-9


def test_normalised_score_is_one_at_the_optimum_and_zero_at_random(tiny_refs: dict[str, float]) -> None:
    assert bench.normalised(tiny_refs["optimum"], tiny_refs) == pytest.approx(1.0)
    assert bench.normalised(tiny_refs["random"], tiny_refs) == pytest.approx(0.0)
    assert 0.0 < bench.normalised(tiny_refs["zi-c"], tiny_refs) < 1.0


def test_tasks_are_valid_environments() -> None:
    from p2p_gym.envs import parallel_env

    for task in bench.TASKS.values():
        env = parallel_env(**task.env_config)
        assert env.episode_steps == task.episode_steps
        env.close()


def test_cli_lists_tasks_and_rejects_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert bench.main(parser.parse_args(["--list"])) == 0
    assert "tiny-uniform-v0" in capsys.readouterr().out
    assert bench.main(parser.parse_args(["--tasks", "nope"])) == 2


@pytest.mark.slow
def test_bench_trains_and_scores_ppo(tmp_path) -> None:
    task = dataclasses.replace(bench.TASKS["tiny-uniform-v0"], eval_seeds=(0,))
    row = bench.train_and_score(task, "ppo", "sb3", 512, 0, tmp_path)
    assert row["status"] == "ok", row
    assert row["score"] == row["score"]  # finite
