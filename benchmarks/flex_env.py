"""Speed of committed dispatch and the local flexibility market, side by side in one run.

Environment steps per second on the congested feeder ``default_congested`` (32 agents, bilateral matching, linear
grid, ``flex`` agents) with fixed positions, with committed dispatch, and with committed dispatch plus the DSO's
local flexibility market; and the batched env (B = 16) for the same three. Medians of ``--repeat`` rounds over
the same sunny day (144).

Usage: ``python benchmarks/flex_env.py [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from agents import make_policies
from p2p_gym.envs import BatchedMarketEnv, parallel_env
from p2p_gym.rollout import play

CASES = {
    "fixed": {"dispatch": "fixed"},
    "committed": {"dispatch": "committed"},
    "committed + LFM": {"dispatch": "committed", "flex_market": True},
}
BASE = {"mechanism": "bilateral", "grid": "linear", "episode_steps": 96, "start_day": 144}


def plain(options: dict) -> float:
    env = parallel_env("default_congested", **BASE, **options)
    pols = make_policies("flex", env)
    t = time.perf_counter()
    play(env, pols, np.random.default_rng(0), seed=0)
    return 96 / (time.perf_counter() - t)


def batched(options: dict, b: int = 16) -> float:
    env = BatchedMarketEnv("default_congested", b, **BASE, **options)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    t = time.perf_counter()
    for _ in range(96):
        env.step(rng.uniform(-1, 1, (b, env.n, env.n_actions)))
    return 96 * b / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    rows = {name: ([], []) for name in CASES}
    for _ in range(a.repeat):  # interleaved, so load changes hit every case alike
        for name, opt in CASES.items():
            rows[name][0].append(plain(opt))
            rows[name][1].append(batched(opt))
    base = np.median(rows["fixed"][0])
    print(f"{'case':<18}{'plain env steps/s':>20}{'vs fixed':>10}{'batched B=16 steps/s':>24}")
    for name, (pl, bt) in rows.items():
        print(f"{name:<18}{np.median(pl):>20.1f}{np.median(pl) / base:>10.2f}{np.median(bt):>24.1f}")


if __name__ == "__main__":
    main()
