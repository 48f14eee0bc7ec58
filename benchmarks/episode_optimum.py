"""Benchmark of the episode optimum: solve time of one day (96 steps) at 20, 50 and 150 agents.

Instances: ``default`` (20 households on the SimBench semi-urban LV feeder, 6 of them with batteries) for
N = 20; for larger N, ``default``'s agents tiled: copy j of agent i sits at agent i's bus, takes its load and
PV profiles rotated by j weeks (weekday structure kept, so copies are not identical) and its battery, and every
power and battery size is scaled by 20/N so that the feeder carries the same total load and PV as ``default``
(line limits stay meaningful). Each copy is one more ``sgen`` of the network, named after the agent.

Timed: :func:`p2p_gym.optim.episode_optimum` (problem build + solve, HiGHS LP) of the day from ``--t0``, with
three line cases: none; the DC line limits of the linear grid model at the feeder's own ratings (lightly loaded:
no line binds, the limits are screened out); and "tight", every line rated at ``--tight`` (60 %) of the day's
largest inflexible loading, so that the limits bind and the batteries must shave the peaks. "1st call" includes
the line sensitivities (AC power flows, cached per scenario afterwards); "median" is the median of ``--repeat``
further calls; "binding" counts lines at ≥ 99.9 % loading at some step of the optimum.

Run: ``OMP_NUM_THREADS=1 python benchmarks/episode_optimum.py [--repeat 3] [--sizes 20 50 150] [--t0 14400]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from typing import Any

import numpy as np

from p2p_gym.optim import episode_optimum
from p2p_gym.scenarios import Scenario, load_scenario


def tiled(base: Scenario, n_agents: int) -> Scenario:
    """``base``'s agents tiled to ``n_agents`` (module docstring), powers scaled by ``base.n_agents / n``."""
    import pandapower as pp

    n0 = base.n_agents
    if n_agents == n0:
        return base
    week = 7 * base.steps_per_day
    idx = np.arange(n_agents)
    src, rep = idx % n0, idx // n0
    scale = n0 / n_agents
    t = np.arange(base.n_steps)[:, None]
    rows = (t + rep[None, :] * week) % base.n_steps  # [T, N] source step of each copy
    ids = tuple(base.agent_ids[i] if j == 0 else f"{base.agent_ids[i]}#{j}" for i, j in zip(src, rep))
    net = copy.deepcopy(base.net)
    for aid, i, j in zip(ids, src, rep):
        if j > 0:
            pp.create_sgen(net, bus=int(base.bus[i]), p_mw=0.0, q_mvar=0.0, name=aid, type="prosumer")
    return base.replace(
        name=f"{base.name}_x{n_agents}",
        agent_ids=ids,
        bus=base.bus[src],
        load_kw=base.load_kw[rows, src[None, :]] * scale,
        pv_kw=base.pv_kw[rows, src[None, :]] * scale,
        pv_kwp=base.pv_kwp[src] * scale,
        battery_kwh=base.battery_kwh[src] * scale,
        battery_kw=base.battery_kw[src] * scale,
        gen_max_kw=np.zeros(n_agents),
        gen_cost_a=np.zeros(n_agents),
        gen_cost_b=np.zeros(n_agents),
        net=net,
    )


def tightened(sc: Scenario, t0: int, share: float) -> Scenario:
    """``sc`` with every line rated at ``share`` of the day's largest inflexible (pv − load) loading, so that the
    limits bind and the batteries must shave the peaks."""
    from p2p_gym.grid import GridModel

    t = np.arange(t0, t0 + 96)
    peak = GridModel(sc, "linear").check_batch(sc.pv_kw[t] - sc.load_kw[t]).line_loading_pct.max()
    net = copy.deepcopy(sc.net)
    net.line["max_i_ka"] = net.line["max_i_ka"] * (peak / 100.0 * share)
    return sc.replace(name=f"{sc.name}_tight", net=net)


def _binding(sc: Scenario, t0: int, opt: Any) -> int:
    """Lines loaded to ≥ 99.9 % at some step by the optimum's injections (linear check)."""
    from p2p_gym.grid import GridModel

    t = np.arange(t0, t0 + 96)
    injection = sc.pv_kw[t] - sc.load_kw[t] + opt.battery_kw
    loading = GridModel(sc, "linear").check_batch(injection).line_loading_pct
    return int(np.count_nonzero(loading.max(axis=0) >= 99.9))


def _median(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark and print the table; returns the rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="*", default=[20, 50, 150])
    ap.add_argument("--t0", type=int, default=150 * 96, help="first step (default: day 150, late May)")
    ap.add_argument("--tight", type=float, default=0.6, help="line rating share of the 'tight' case")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", module="pandapower")
    base = load_scenario("default")
    episode_optimum(base, args.t0, 96)  # warm-up: imports, solver start
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        plain = tiled(base, n)
        cases = [("none", plain, False), ("ratings", plain, True)]
        cases.append((f"tight {args.tight:.0%}", tightened(plain, args.t0, args.tight), True))
        for label, sc, limits in cases:
            start = time.perf_counter()
            episode_optimum(sc, args.t0, 96, line_limits=limits)  # with limits: builds the line sensitivities
            first = time.perf_counter() - start
            seconds, opt = _median(
                lambda sc=sc, limits=limits: episode_optimum(sc, args.t0, 96, line_limits=limits), args.repeat
            )
            rows.append(
                {
                    "N": n,
                    "batteries": int(np.count_nonzero(sc.battery_kwh)),
                    "limits": label,
                    "median_s": seconds,
                    "first_call_s": first,
                    "binding": _binding(sc, args.t0, opt) if limits and opt.status == "optimal" else 0,
                    "status": opt.status,
                    "welfare": opt.welfare,
                    "reference": opt.reference_welfare,
                }
            )
    print(
        f"{'N':>4} {'batt':>5} {'line limits':>11} {'median s':>9} {'1st call s':>10} {'binding':>7} "
        f"{'status':>8} {'W*':>9} {'W_ref':>9}"
    )
    for r in rows:
        print(
            f"{r['N']:>4} {r['batteries']:>5} {r['limits']:>11} {r['median_s']:>9.3f} {r['first_call_s']:>10.2f} "
            f"{r['binding']:>7} {r['status']:>8} {r['welfare']:>9.3f} {r['reference']:>9.3f}"
        )
    return rows


if __name__ == "__main__":
    main()
