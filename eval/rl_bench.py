"""``p2p-gym rl-bench``: named benchmark tasks, reference scores and a normalised score for RL libraries.

**Score.** ``R`` = the community's gains from trade per episode (currency): Σ over the episode's steps of
welfare − welfare without trading, with every agent playing the evaluated policy, averaged over
the task's evaluation seeds (seed ``s`` fixes the day, so all policies are scored on the same days). Reference
scores per task: ``random`` (uniform random actions), ``zi-c``, ``truthful`` and ``optimum`` (the optimal gains
of the same step instances, computed by the env with ``compute_optimum=True`` in the ``truthful`` episodes). The
tasks have no batteries, so the physical positions and hence the optimum do not depend on the policy.
The normalised score is ``(R − R_random) / (R_optimum − R_random)``: 0 = random, 1 = the optimum, by
construction (:func:`p2p_gym.metrics.normalised_score`).

**Training.** ``p2p-gym rl-bench --algos ppo,a2c,sac --timesteps 2048`` trains each stable-baselines3 algorithm
(parameter sharing, ``setting="shared"``, through :mod:`training`) and RLlib PPO (``--rllib``, when ray and
:mod:`training.rllib` are importable) on every task, then scores the trained policy; the table lists score,
normalised score, env steps and wall time. The default budgets are tiny (a smoke benchmark that runs in
minutes on 2 cores), far from convergence; raise ``--timesteps`` for real comparisons.

Example::

    p2p-gym rl-bench --tasks tiny-uniform-v0 --algos ppo --timesteps 2048 --out reports/bench
    p2p-gym rl-bench --references-only
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2p_gym import metrics


@dataclass(frozen=True)
class BenchTask:
    """A named benchmark task: a fixed environment and evaluation seeds.

    Attributes:
        name: task id.
        scenario: scenario name (fixes the agent count and the feeder).
        mechanism: market mechanism.
        grid: grid check.
        episode_steps: steps per episode.
        eval_seeds: seeds of the evaluation episodes.
        env_kwargs: further environment arguments (grid policy, ...).
    """

    name: str
    scenario: str
    mechanism: str
    grid: str = "linear"
    episode_steps: int = 96
    eval_seeds: tuple[int, ...] = (0, 1, 2)
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def env_config(self) -> dict[str, Any]:
        """Keyword arguments of :func:`p2p_gym.parallel_env` (with the per-step optimum)."""
        return {
            "scenario": self.scenario,
            "mechanism": self.mechanism,
            "grid": self.grid,
            "episode_steps": self.episode_steps,
            "compute_optimum": True,
            **self.env_kwargs,
        }


#: The benchmark tasks (ids end in the version).
#: No batteries in the tasks: the physical positions (PV − load) are then the same for every policy, so the optimum
#: is a fixed reference and no policy can score above it.
_NO_BATTERY_TINY = {"scenario_overrides": {"battery_kwh": [0.0] * 4, "battery_kw": [0.0] * 4}}
_NO_BATTERY = {"scenario_overrides": {"battery_share": 0.0}}

#: The benchmark tasks (ids end in the version).
TASKS: dict[str, BenchTask] = {
    t.name: t
    for t in (
        BenchTask("tiny-uniform-v0", "tiny", "uniform", grid="none", env_kwargs=_NO_BATTERY_TINY),
        BenchTask("default-uniform-v0", "default", "uniform", env_kwargs=_NO_BATTERY),
        BenchTask("default-pay_as_bid-v0", "default", "pay_as_bid", env_kwargs=_NO_BATTERY),
        BenchTask(
            "highpv-bilateral-block-v0",
            "default_high_pv",
            "bilateral",
            env_kwargs={"grid_policy": "block"},  # default_high_pv has no batteries
        ),
    )
}
#: Reference policies (names of :func:`agents.policy_from_name`).
REFERENCES = ("random", "zi-c", "truthful")


def _gains(task: BenchTask, policies: Any) -> tuple[float, float]:
    """Mean episode gains from trade and mean optimal gains of ``policies`` (a factory or dict) on ``task``."""
    from training.policies import play

    gains, best = [], []
    for s in task.eval_seeds:
        res = play(task.env_config, policies, episodes=1, seed=s)
        m = res.market
        gains.append((m["welfare"] - m["welfare_no_trade"]) * task.episode_steps)
        # welfare_optimum is nan only when undefined; play() averages the finite steps
        best.append((m.get("welfare_optimum", math.nan) - m["welfare_no_trade"]) * task.episode_steps)
    return float(sum(gains) / len(gains)), float(sum(best) / len(best))


def reference_scores(task: BenchTask) -> dict[str, float]:
    """``R`` of :data:`REFERENCES` and of the optimum on ``task``."""
    from training.policies import rule_policy

    out: dict[str, float] = {}
    for name in REFERENCES:
        r, best = _gains(task, lambda env, a, n=name: rule_policy(n, env, a))
        out[name] = r
        if name == "truthful":
            out["optimum"] = best
    return out


def normalised(r: float, refs: dict[str, float]) -> float:
    """``(R − R_random) / (R_optimum − R_random)``."""
    return metrics.normalised_score(r, refs["random"], refs["optimum"])


def train_and_score(
    task: BenchTask, algo: str, lib: str, timesteps: int, seed: int, workdir: Path
) -> dict[str, Any]:
    """Train ``algo`` of ``lib`` on ``task`` (shared policy) and score it; errors are reported in the row."""
    from p2p_gym.sim import MarketConfig
    from training.config import TrainArgs

    row: dict[str, Any] = {"task": task.name, "lib": lib, "algo": algo, "env_steps": timesteps}
    t0 = time.perf_counter()
    try:
        args = TrainArgs(
            algo=algo,
            lib=lib,
            setting="shared",
            market=MarketConfig.from_dict(task.env_config),
            timesteps=timesteps,
            seed=seed,
            out=str(workdir / f"{task.name}-{lib}-{algo}-s{seed}"),
            eval_freq=0,
            checkpoint_freq=0,
            progress=False,
        )
        if lib == "rllib":
            from training.rllib import train as train_rllib

            run = train_rllib(args)
        else:
            from training.sb3 import train

            run = train(args)
        wall = time.perf_counter() - t0
        from training.evaluate import load_run
        from training.policies import rule_policy

        _, learned = load_run(Path(run))
        r, _ = _gains(task, lambda env, a: learned[a] if a in learned else rule_policy("truthful", env, a))
        row.update(score=r, wall_seconds=wall, status="ok")
    except Exception as exc:  # a failing library is a row of the table, not a crash
        row.update(
            score=math.nan,
            wall_seconds=time.perf_counter() - t0,
            status=f"failed: {type(exc).__name__}: {exc}"[:200],
        )
    return row


def format_table(refs: dict[str, dict[str, float]], rows: list[dict[str, Any]]) -> str:
    """Markdown tables: reference scores per task, then the trained algorithms."""
    lines = [
        "| task | random | zi-c | truthful | optimum | zi-c (norm.) | truthful (norm.) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in refs.items():
        lines.append(
            f"| {name} | {r['random']:.3f} | {r['zi-c']:.3f} | {r['truthful']:.3f} | {r['optimum']:.3f} | "
            f"{normalised(r['zi-c'], r):.3f} | {normalised(r['truthful'], r):.3f} |"
        )
    if rows:
        lines += [
            "",
            "| task | library | algorithm | score R | normalised | env steps | wall (s) | status |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        for row in rows:
            n = normalised(row["score"], refs[row["task"]]) if math.isfinite(row["score"]) else math.nan
            lines.append(
                f"| {row['task']} | {row['lib']} | {row['algo']} | {row['score']:.3f} | {n:.3f} | {row['env_steps']} | "
                f"{row['wall_seconds']:.1f} | {row['status']} |"
            )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``p2p-gym rl-bench``."""
    parser.add_argument("--tasks", default=",".join(TASKS), help="task ids, comma-separated (default: all)")
    parser.add_argument(
        "--algos", default="ppo,a2c", help="stable-baselines3 algorithms (default: %(default)s)"
    )
    parser.add_argument("--rllib", action="store_true", help="also train RLlib PPO (needs ray)")
    parser.add_argument(
        "--timesteps", type=int, default=2048, help="training budget per run (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--references-only", action="store_true", help="only compute the reference scores")
    parser.add_argument("--out", default=None, help="write bench.json and bench.md here")
    parser.add_argument("--list", action="store_true", help="list the tasks and exit")


def main(args: argparse.Namespace) -> int:
    """Entry point of ``p2p-gym rl-bench``."""
    if args.list:
        for t in TASKS.values():
            print(
                f"{t.name:28s} {t.scenario}/{t.mechanism} grid={t.grid} {t.env_kwargs} seeds={t.eval_seeds}"
            )
        return 0
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        print(
            f"p2p-gym rl-bench: error: unknown task(s) {unknown}; choose from {list(TASKS)}", file=sys.stderr
        )
        return 2
    refs: dict[str, dict[str, float]] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out) / "runs" if args.out else Path(tmp)
        for n in names:
            t0 = time.perf_counter()
            refs[n] = reference_scores(TASKS[n])
            print(
                f"[bench] references of {n} in {time.perf_counter() - t0:.1f} s: {refs[n]}", file=sys.stderr
            )
            if args.references_only:
                continue
            jobs = [("sb3", a.strip()) for a in args.algos.split(",") if a.strip()]
            if args.rllib:
                jobs.append(("rllib", "ppo"))
            for lib, algo in jobs:
                print(f"[bench] training {lib}/{algo} on {n} ({args.timesteps} steps)", file=sys.stderr)
                rows.append(train_and_score(TASKS[n], algo, lib, args.timesteps, args.seed, work))
    text = format_table(refs, rows)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps({"references": refs, "runs": rows}, indent=1))
        (out / "bench.md").write_text(text + "\n")
    return 0
