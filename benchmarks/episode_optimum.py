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

Flexible assets (``--flex-base``): one day of a feeder with EV charging sessions and heat pumps, the same three
line cases, as an LP (EVs, heat pumps, battery wear κ = 0.02 EUR/kWh) and as a QP (plus price-responsive
flexible demand with quadratic utility at 20 agents: ≤ 2 kW, β = 0.40 EUR/kWh, α = 1 EUR/kWh² per step, scaled
like the rest). ``flex`` is the registered SimBench scenario of that name (118 agents on ``1-LV-rural3--2-sw``,
15 with an EV charger, 18 with a heat pump, 16 batteries), used when the registry has it; ``synthetic`` is
``default`` tiled to ``--flex-agents`` (100) agents as above, with ``--flex-devices`` (20) heat pumps and as many
EV chargers from the SimBench extract :mod:`p2p_gym.scenarios.flex_data`: heat pump j takes SimBench heat pump
j mod 18 (profile, rating and 1.25 h band; repeats rotated by a week), EV j the sessions of SimBench charger
j mod 17 (repeats shifted by a week, sessions that would cross the year's end dropped); both scaled by 20/N like
the tiled households. ``--t0-flex`` (default day 10, January) is the day, when heat pumps run.

Run: ``OMP_NUM_THREADS=1 python benchmarks/episode_optimum.py [--repeat 3] [--sizes 20 50 150] [--t0 14400]
[--flex-base auto|flex|synthetic|both|none]``.
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
from p2p_gym.scenarios import Scenario, list_scenarios, load_scenario


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
        battery_cost=base.battery_cost[src],
        hp_kw=base.hp_kw[rows, src[None, :]] * scale,
        hp_max_kw=base.hp_max_kw[src] * scale,
        hp_band_kwh=base.hp_band_kwh[src] * scale,
        flex_max_kw=base.flex_max_kw[src] * scale,
        flex_util_a=base.flex_util_a[src],
        flex_util_b=base.flex_util_b[src],
        ev_sessions=np.zeros((0, 5)),  # the benchmark tiles scenarios without EVs (``default``)
        net=net,
    )


def tightened(sc: Scenario, t0: int, share: float) -> Scenario:
    """``sc`` with every line rated at ``share`` of the day's largest inflexible (pv − load − heat-pump reference)
    loading, so that the limits bind and the batteries (and other flexible assets) must shave the peaks."""
    from p2p_gym.grid import GridModel

    t = np.arange(t0, t0 + 96)
    inflexible = sc.pv_kw[t] - sc.load_kw[t] - sc.hp_kw[t]
    peak = GridModel(sc, "linear").check_batch(inflexible).line_loading_pct.max()
    net = copy.deepcopy(sc.net)
    net.line["max_i_ka"] = net.line["max_i_ka"] * (peak / 100.0 * share)
    return sc.replace(name=f"{sc.name}_tight", net=net)


def _binding(sc: Scenario, t0: int, opt: Any) -> int:
    """Lines loaded to ≥ 99.9 % at some step by the optimum's injections (linear check)."""
    from p2p_gym.grid import GridModel

    t = np.arange(t0, t0 + 96)
    injection = opt.pv_used_kw - sc.load_kw[t] - opt.hp_kw - opt.ev_kw - opt.flex_kwh / sc.dt_hours
    injection = injection + opt.battery_kw + opt.gen_kw
    loading = GridModel(sc, "linear").check_batch(injection).line_loading_pct
    return int(np.count_nonzero(loading.max(axis=0) >= 99.9))


def _median(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def with_devices(sc: Scenario, n_devices: int) -> Scenario:
    """``sc`` (tiled ``default``) with ``n_devices`` heat pumps and as many EV chargers from the SimBench extract
    (module docstring), scaled by 20/N; heat pump j at agent 5j mod N, EV j at agent 5j + 2 mod N."""
    from p2p_gym.scenarios import flex_data

    n, scale = sc.n_agents, 20 / sc.n_agents
    week = 7 * sc.steps_per_day
    hp = flex_data.heat_pump_band()
    ev = flex_data.ev_sessions()
    chargers = np.unique(ev.load)
    hp_kw, hp_max, band = np.zeros((sc.n_steps, n)), np.zeros(n), np.zeros(n)
    sessions = []
    for j in range(n_devices):
        i, rep = j % hp.rated_kw.size, j // hp.rated_kw.size
        agent = (5 * j) % n
        hp_kw[:, agent] += np.roll(hp.profile_kw[: sc.n_steps, i], rep * week) * scale
        hp_max[agent] += hp.rated_kw[i] * scale
        band[agent] += hp.band_kwh[i] * scale
        c, rep = j % chargers.size, j // chargers.size
        mine = ev.load == chargers[c]
        arrive, depart = ev.arrival[mine] + rep * week, ev.departure[mine] + rep * week
        keep = depart <= sc.n_steps
        sessions.append(
            np.column_stack(
                [
                    np.full(int(keep.sum()), (5 * j + 2) % n),
                    arrive[keep],
                    depart[keep],
                    ev.energy_kwh[mine][keep] * scale,
                    ev.max_kw[mine][keep] * scale,
                ]
            )
        )
    return sc.replace(
        name=f"{sc.name}_devices{n_devices}",
        hp_kw=hp_kw,
        hp_max_kw=np.maximum(hp_max, hp_kw.max(axis=0)),
        hp_band_kwh=band,
        ev_sessions=np.vstack(sessions),
    )


def with_wear_and_demand(sc: Scenario, n_flex: int) -> tuple[Scenario, Scenario]:
    """(LP: battery wear 0.02 EUR/kWh, QP: also flexible demand at ``n_flex`` agents), scaled like ``tiled``."""
    wear = sc.replace(battery_cost=np.where(sc.battery_kwh > 0, 0.02, 0.0))
    scale = 20 / sc.n_agents
    pick = np.zeros(sc.n_agents, bool)
    pick[np.linspace(0, sc.n_agents - 1, n_flex).astype(int)] = True
    demand = wear.replace(
        name=f"{sc.name}_demand",
        flex_max_kw=np.where(pick, 2.0 * scale, 0.0),
        flex_util_a=np.where(pick, 1.0 / scale, 0.0),
        flex_util_b=np.where(pick, 0.40, 0.0),
    )
    return wear, demand


def _row(sc: Scenario, t0: int, limits: bool, label: str, repeat: int, kind: str) -> dict[str, Any]:
    start = time.perf_counter()
    episode_optimum(sc, t0, 96, line_limits=limits)  # with limits: builds the line sensitivities
    first = time.perf_counter() - start
    seconds, opt = _median(lambda: episode_optimum(sc, t0, 96, line_limits=limits), repeat)
    return {
        "scenario": sc.name,
        "kind": kind,
        "N": sc.n_agents,
        "batteries": int(np.count_nonzero(sc.battery_kwh)),
        "evs": len(np.unique(sc.ev_sessions[:, 0])),
        "hps": int(np.count_nonzero(sc.hp_max_kw)),
        "flex": int(np.count_nonzero(sc.flex_max_kw)),
        "limits": label,
        "median_s": seconds,
        "first_call_s": first,
        "binding": _binding(sc, t0, opt) if limits and opt.status == "optimal" else 0,
        "status": opt.status,
        "welfare": opt.welfare,
        "reference": opt.reference_welfare,
        "curtailed_kwh": float((sc.pv_kw[t0 : t0 + 96] - opt.pv_used_kw).sum() * sc.dt_hours),
    }


def _line_cases(sc: Scenario, t0: int, tight: float) -> list[tuple[str, Scenario, bool]]:
    return [
        ("none", sc, False),
        ("ratings", sc, True),
        (f"tight {tight:.0%}", tightened(sc, t0, tight), True),
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark and print the table; returns the rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="*", default=[20, 50, 150])
    ap.add_argument("--t0", type=int, default=150 * 96, help="first step (default: day 150, late May)")
    ap.add_argument("--tight", type=float, default=0.6, help="line rating share of the 'tight' case")
    ap.add_argument(
        "--flex-base",
        choices=["auto", "flex", "synthetic", "both", "none"],
        default="auto",
        help="the flexible-asset case: the registered 'flex' scenario, default + SimBench devices, both, or "
        "none (auto: 'flex' when registered, else synthetic)",
    )
    ap.add_argument("--flex-agents", type=int, default=100, help="agents of the synthetic flexible case")
    ap.add_argument("--flex-devices", type=int, default=20, help="heat pumps and EVs of the synthetic case")
    ap.add_argument("--t0-flex", type=int, default=10 * 96, help="first step of the flexible-asset case")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", module="pandapower")
    base = load_scenario("default")
    episode_optimum(base, args.t0, 96)  # warm-up: imports, solver start
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        for label, sc, limits in _line_cases(tiled(base, n), args.t0, args.tight):
            rows.append(_row(sc, args.t0, limits, label, args.repeat, "LP"))
    bases = {"auto": ["flex" if "flex" in list_scenarios() else "synthetic"], "both": ["flex", "synthetic"]}
    flex_rows: list[dict[str, Any]] = []
    for which in bases.get(args.flex_base, [] if args.flex_base == "none" else [args.flex_base]):
        if which == "flex":
            devices = load_scenario("flex", days=max(args.t0_flex // 96 + 2, 1))
        else:
            devices = with_devices(tiled(base, args.flex_agents), args.flex_devices)
        lp, qp = with_wear_and_demand(devices, args.flex_devices)
        for label, sc, limits in _line_cases(lp, args.t0_flex, args.tight):
            flex_rows.append(_row(sc, args.t0_flex, limits, label, args.repeat, "LP"))
        flex_rows.append(_row(qp, args.t0_flex, False, "none", args.repeat, "QP"))
    print(
        f"{'N':>4} {'batt':>5} {'line limits':>11} {'median s':>9} {'1st call s':>10} {'binding':>7} "
        f"{'status':>8} {'W*':>9} {'W_ref':>9}"
    )
    for r in rows:
        print(
            f"{r['N']:>4} {r['batteries']:>5} {r['limits']:>11} {r['median_s']:>9.3f} {r['first_call_s']:>10.2f} "
            f"{r['binding']:>7} {r['status']:>8} {r['welfare']:>9.3f} {r['reference']:>9.3f}"
        )
    if flex_rows:
        print(f"\nflexible assets, one day from step {args.t0_flex}:")
        print(
            f"{'scenario':>22} {'':>2} {'N':>4} {'batt':>4} {'EV':>3} {'HP':>3} {'flex':>4} {'line limits':>11} "
            f"{'median s':>9} {'1st call s':>10} {'binding':>7} {'curt kWh':>8} {'status':>8} {'W*':>9} {'W_ref':>9}"
        )
        for r in flex_rows:
            print(
                f"{r['scenario'][:22]:>22} {r['kind']:>2} {r['N']:>4} {r['batteries']:>4} {r['evs']:>3} "
                f"{r['hps']:>3} {r['flex']:>4} {r['limits']:>11} {r['median_s']:>9.3f} {r['first_call_s']:>10.2f} "
                f"{r['binding']:>7} {r['curtailed_kwh']:>8.2f} {r['status']:>8} {r['welfare']:>9.3f} "
                f"{r['reference']:>9.3f}"
            )
    return rows + flex_rows


if __name__ == "__main__":
    main()
