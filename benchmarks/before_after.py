"""Env step speed of two source trees side by side in one run (interleaved subprocesses, medians of rounds).

Usage::

    git worktree add /tmp/before <commit>
    python benchmarks/before_after.py --before /tmp/before [--rounds 3] [--seconds 2]

Each round measures, in a fresh interpreter per tree, the plain PettingZoo env (``default``, 20 agents, uniform,
linear grid; random actions) and the batched env at B = 128, in agent-steps per second; trees alternate so both
see the same machine load. Prints the medians and the ratios after / before.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import sys, time, json, warnings
sys.path.insert(0, sys.argv[1])
warnings.simplefilter("ignore")
import numpy as np
import p2p_gym
from p2p_gym.scenarios import load_scenario
try:
    from p2p_gym.envs import BatchedMarketEnv
except ImportError:
    from p2p_gym.env import BatchedMarketEnv
seconds = float(sys.argv[2])
sc = load_scenario("default")
env = p2p_gym.parallel_env(sc, mechanism="uniform", grid="linear")
rng = np.random.default_rng(0)
pool = [{a: rng.uniform(-1, 1, 3).astype(np.float32) for a in env.possible_agents} for _ in range(96)]
env.reset(seed=0)
steps, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    if not env.agents:
        env.reset()
    env.step(pool[steps % 96])
    steps += 1
plain = steps * env.n / (time.perf_counter() - t0)
benv = BatchedMarketEnv(sc, n_envs=128, mechanism="uniform", grid="linear")
acts = rng.uniform(-1, 1, (8, 128, benv.n, 3)).astype(np.float32)
benv.reset(seed=0)
steps, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    if benv.done:
        benv.reset()
    benv.step(acts[steps % 8])
    steps += 1
batched = steps * 128 * benv.n / (time.perf_counter() - t0)
print(json.dumps({"plain": plain, "batched_128": batched}))
"""


def measure(tree: str, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, tree, str(seconds)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="source tree of the earlier version")
    parser.add_argument(
        "--after", default=str(Path(__file__).resolve().parents[1]), help="default: this tree"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for name in ("before", "after"):
            runs[name].append(measure(getattr(args, name), args.seconds))
    print("| path | before (agent-steps/s) | after | after / before |\n|---|---:|---:|---:|")
    for key in ("plain", "batched_128"):
        b = statistics.median(r[key] for r in runs["before"])
        a = statistics.median(r[key] for r in runs["after"])
        print(f"| {key} | {b:,.0f} | {a:,.0f} | {a / b:.2f}× |")


if __name__ == "__main__":
    main()
