"""Agent-steps per second of the plain env and of the batched path (``BatchedMarketEnv``) side by side.

Scenario ``default`` (20 agents), random actions (drawn beforehand, so only the environment is timed), episodes
of 96 steps restarted as they end. All rates are measured in this one run, so the ratios are meaningful even
when absolute speeds vary. Run single-threaded for comparable numbers: ``OMP_NUM_THREADS=1``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/env_batched.py [--grid linear] [--mechanism uniform]
[--seconds 2] [--batch 1 8 32 128]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from p2p_gym.envs import BatchedMarketEnv, parallel_env
from p2p_gym.scenarios import load_scenario


def plain_rate(env, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """Agent-steps/s of the plain env."""
    rng = np.random.default_rng(0)
    pool = [{a: rng.uniform(-1, 1, 3).astype(np.float32) for a in env.possible_agents} for _ in range(96)]
    env.reset(seed=0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(48):
            if not env.agents:
                env.reset()
            env.step(pool[steps % 96])
            steps += 1
    return steps * env.n / (time.perf_counter() - t0)


def batched_rate(env: BatchedMarketEnv, seconds: float) -> float:
    """Agent-steps/s of the batched env (B episodes per step)."""
    rng = np.random.default_rng(0)
    pool = rng.uniform(-1, 1, (8, env.n_envs, env.n, env.n_actions)).astype(np.float32)
    env.reset(seed=0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(8):
            if env.done:
                env.reset()
            env.step(pool[steps % 8])
            steps += 1
    return steps * env.n_envs * env.n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", default="linear", choices=["none", "linear", "ac"])
    parser.add_argument("--mechanism", default="uniform")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32, 128])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    sc = load_scenario("default")
    plain = plain_rate(parallel_env(sc, mechanism=args.mechanism, grid=args.grid), args.seconds)
    rows = [("plain env (P2PMarketEnv)", plain)]
    for b in args.batch:
        env = BatchedMarketEnv(sc, n_envs=b, mechanism=args.mechanism, grid=args.grid)
        rows.append((f"batched, B = {b}", batched_rate(env, args.seconds)))
    print(f"scenario=default agents={sc.n_agents} mechanism={args.mechanism} grid={args.grid}")
    print(f"| {'path':26s} | {'agent-steps/s':>13s} | {'µs per episode-step':>19s} | {'vs plain':>8s} |")
    print(f"|{'-' * 28}|{'-' * 14}:|{'-' * 20}:|{'-' * 9}:|")
    for name, rate in rows:
        us = 1e6 * sc.n_agents / rate
        print(f"| {name:26s} | {rate:13,.0f} | {us:19.1f} | {rate / plain:7.1f}x |")


if __name__ == "__main__":
    main()
