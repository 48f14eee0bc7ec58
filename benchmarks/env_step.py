"""Environment step speed on ``default`` (20 agents), per grid mode, beside a plain pandapower.runpp loop.

All rates are measured in this one run on this machine, so the ratios are meaningful even when absolute speeds
vary. Actions are fixed truthful orders, so the clearing has trades every step.

Usage: ``python benchmarks/env_step.py [--steps 400] [--mechanism uniform]``
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import pandapower as pp

from p2p_gym.envs import parallel_env
from p2p_gym.scenarios import load_scenario
from p2p_gym.wrappers import truthful_action


def steps_per_second(env, n_steps: int) -> float:  # type: ignore[no-untyped-def]
    obs, _ = env.reset(seed=0)
    n_act = env.action_space(env.possible_agents[0]).shape[0]
    done = 0
    t0 = time.perf_counter()
    while done < n_steps:
        if not env.agents:
            obs, _ = env.reset()
        obs, *_ = env.step({a: truthful_action(obs[a], n_act) for a in env.agents})
        done += 1
    return n_steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--mechanism", default="uniform")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    sc = load_scenario("default", n_agents=20)

    net = copy.deepcopy(sc.net)
    pos = [list(net.sgen.name).index(a) for a in sc.agent_ids]
    p = net.sgen.p_mw.to_numpy(dtype=float, copy=True)
    inj = sc.pv_kw - sc.load_kw
    n_pf = max(args.steps // 8, 20)
    t0 = time.perf_counter()
    for k in range(n_pf):
        p[pos] = inj[16500 + k] / 1000.0
        net.sgen["p_mw"] = p
        pp.runpp(net)
    plain = n_pf / (time.perf_counter() - t0)

    rows = [("plain pandapower.runpp loop (no market)", plain)]
    for grid in ("none", "linear", "ac"):
        env = parallel_env(sc, mechanism=args.mechanism, grid=grid, episode_steps=96)
        n = args.steps if grid != "ac" else max(args.steps // 4, 50)
        rows.append((f"env step, grid={grid!r}", steps_per_second(env, n)))
    print(f"scenario=default agents={sc.n_agents} mechanism={args.mechanism}")
    print(f"{'what':42s} {'steps/s':>10s} {'agent-steps/s':>14s} {'vs plain runpp':>15s}")
    for name, rate in rows:
        print(f"{name:42s} {rate:10.1f} {rate * sc.n_agents:14.0f} {rate / plain:14.1f}x")


if __name__ == "__main__":
    main()
