"""Grid check speed, measured side by side in one run (``default`` scenario unless ``--scenario``).

Compares, on the same injections (a day of real PV − load profiles from 21 June 2016, and the scenario's
background injections when it has them):

1. a plain loop: set the agents' (and background) sgen ``p_mw`` and call ``pandapower.runpp(net)`` with default
   options;
2. :class:`p2p_gym.grid.GridModel` ``mode="ac", engine="pandapower"`` (same net, recycled structures, warm start);
3. ``mode="ac", engine="lightsim2grid"``: one :meth:`~p2p_gym.grid.GridModel.check` per row, and one
   :meth:`~p2p_gym.grid.GridModel.check_batch` over all rows (lightsim2grid's time series, one call into C++);
4. ``mode="linear"`` (one check per row, and one batch).

It also times the construction of the linear model (finite differences of AC flows) with each engine, and,
when grid2op is importable (it is not a dependency of p2p_gym), grid2op's ``l2rpn_case14_sandbox`` test
environment with lightsim2grid's backend stepping with do-nothing actions, for scale.

Usage: ``python benchmarks/grid_check.py [--scenario default] [--steps 96] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandapower as pp

from p2p_gym.grid import GridModel
from p2p_gym.scenarios import load_scenario


def _best(fn: Callable[[], None], repeat: int) -> float:
    """Best wall time (s) of ``repeat`` runs of ``fn``."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _grid2op_steps_per_s(n_steps: int) -> float | None:
    """Do-nothing steps/s of grid2op's ``l2rpn_case14_sandbox`` test environment on lightsim2grid, or None."""
    try:
        import grid2op
        from lightsim2grid import LightSimBackend
    except ImportError:
        return None
    env = grid2op.make("l2rpn_case14_sandbox", test=True, backend=LightSimBackend())
    env.reset(seed=0)
    do_nothing = env.action_space({})
    for _ in range(10):  # warm-up
        env.step(do_nothing)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        _, _, done, _ = env.step(do_nothing)
        if done:
            env.reset()
    rate = n_steps / (time.perf_counter() - t0)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--steps", type=int, default=96, help="number of checks per timing run")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs; the best is reported")
    parser.add_argument("--no-grid2op", action="store_true", help="skip the grid2op comparison")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    sc = load_scenario(args.scenario)
    start = 172 * sc.steps_per_day  # 21 June 2016
    rows = slice(start, start + args.steps)
    injections = (sc.pv_kw - sc.load_kw)[rows]
    bg_ids = tuple(getattr(sc, "background_ids", ()))
    background = np.asarray(sc.background_kw)[rows] if bg_ids else np.zeros((len(injections), 0))
    b = len(injections)

    net = copy.deepcopy(sc.net)
    names = list(net.sgen.name)
    pos = [names.index(a) for a in (*sc.agent_ids, *bg_ids)]
    p = net.sgen.p_mw.to_numpy(dtype=float, copy=True)
    setpoints = np.concatenate([injections, background], axis=1) / 1000.0

    def plain() -> None:
        for row in setpoints:
            p[pos] = row
            net.sgen["p_mw"] = p
            pp.runpp(net)

    def per_row(model: GridModel) -> Callable[[], None]:
        def run() -> None:
            for inj, bg in zip(injections, background):
                model.check(inj, bg if bg_ids else None)

        return run

    def batch(model: GridModel) -> Callable[[], None]:
        return lambda: model.check_batch(injections, background if bg_ids else None)

    ac_pp = GridModel(sc, "ac", engine="pandapower")  # also compiles pandapower's numba code once
    ac_ls = GridModel(sc, "ac", engine="lightsim2grid")
    t0 = time.perf_counter()
    GridModel(sc, "linear", engine="pandapower")
    build_pp = time.perf_counter() - t0
    t0 = time.perf_counter()
    lin_ls = GridModel(sc, "linear", engine="lightsim2grid")
    build_ls = time.perf_counter() - t0
    for model in (ac_pp, ac_ls, lin_ls):  # first calls: imports, pandapower's first full run
        per_row(model)()

    times = {
        "plain pandapower.runpp loop": _best(plain, args.repeat),
        "GridModel ac, pandapower, per row": _best(per_row(ac_pp), args.repeat),
        "GridModel ac, lightsim2grid, per row": _best(per_row(ac_ls), args.repeat),
        f"GridModel ac, lightsim2grid, batch of {b}": _best(batch(ac_ls), args.repeat),
        "GridModel linear, per row": _best(per_row(lin_ls), args.repeat),
        f"GridModel linear, batch of {b}": _best(batch(lin_ls), args.repeat),
    }
    print(
        f"scenario={args.scenario} agents={sc.n_agents} background={len(bg_ids)} buses={len(sc.net.bus)} "
        f"lines={len(sc.net.line)} trafos={len(sc.net.trafo)} rows={b}"
    )
    base = times["plain pandapower.runpp loop"]
    print(f"{'method':42s} {'flows/s':>10s} {'ms/flow':>9s} {'vs plain':>9s}")
    for name, t in times.items():
        print(f"{name:42s} {b / t:10.0f} {1000 * t / b:9.3f} {base / t:8.0f}x")
    print(
        f"linear model build (1 + 2 x distinct buses AC flows): pandapower {build_pp:.2f} s, "
        f"lightsim2grid {build_ls:.2f} s"
    )
    if not args.no_grid2op:
        rate = _grid2op_steps_per_s(1000)
        if rate is None:
            print("grid2op: not importable (optional; pip install grid2op), comparison skipped")
        else:
            print(
                f"grid2op l2rpn_case14_sandbox (test=True), LightSimBackend, do-nothing steps: {rate:.0f} steps/s"
            )


if __name__ == "__main__":
    main()
