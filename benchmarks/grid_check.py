"""Grid check speed on the ``default`` scenario, measured side by side in one run.

Compares, on the same injections (a day of real PV − load profiles):

1. a plain loop: set the agents' sgen ``p_mw`` and call ``pandapower.runpp(net)`` with default options;
2. :class:`p2p_gym.grid.GridModel` with ``mode="ac"`` (same net, recycled structures, warm start);
3. :class:`p2p_gym.grid.GridModel` with ``mode="linear"``.

Usage: ``python benchmarks/grid_check.py [--scenario default] [--steps 96] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np
import pandapower as pp

from p2p_gym.grid import GridModel
from p2p_gym.scenarios import load_scenario


def _rate(fn, injections: np.ndarray, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for inj in injections:
            fn(inj)
        best = min(best, time.perf_counter() - t0)
    return len(injections) / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--steps", type=int, default=96, help="number of checks per timing run")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs; the best is reported")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    sc = load_scenario(args.scenario)
    start = 172 * sc.steps_per_day  # 21 June 2016
    injections = (sc.pv_kw - sc.load_kw)[start : start + args.steps]

    net = copy.deepcopy(sc.net)
    pos = [list(net.sgen.name).index(a) for a in sc.agent_ids]
    p = net.sgen.p_mw.to_numpy(dtype=float, copy=True)

    def plain(inj: np.ndarray) -> None:
        p[pos] = inj / 1000.0
        net.sgen["p_mw"] = p
        pp.runpp(net)

    ac = GridModel(sc, "ac")
    lin = GridModel(sc, "linear")
    rates = {
        "plain pandapower.runpp loop": _rate(plain, injections, args.repeat),
        "GridModel(mode='ac')": _rate(ac.check, injections, args.repeat),
        "GridModel(mode='linear')": _rate(lin.check, injections, args.repeat),
    }
    base = rates["plain pandapower.runpp loop"]
    ac_rate = rates["GridModel(mode='ac')"]
    print(f"scenario={args.scenario} agents={sc.n_agents} buses={len(sc.net.bus)} lines={len(sc.net.line)}")
    print(f"{'method':32s} {'checks/s':>12s} {'ms/check':>10s} {'vs plain':>10s} {'vs AC':>10s}")
    for name, r in rates.items():
        print(f"{name:32s} {r:12.1f} {1000 / r:10.3f} {r / base:9.1f}x {r / ac_rate:9.1f}x")


if __name__ == "__main__":
    main()
