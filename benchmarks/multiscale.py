"""Multi-platform environment at scale: speed and memory of the ``mvlv`` env, measured side by side in one run.

Scenario ``mvlv`` (:func:`p2p_gym.scenarios.mvlv.build_mvlv`: prosumers on LV grids of the SimBench MV/LV system
``1-MVLV-semiurb-all-2-sw``, the rest of the system as background), ``--days`` days (7: the year's profiles are
not needed for speed). Actions are random (seed 0, drawn beforehand, so only the environment is timed); every
rate is taken after warm-up steps at noon (numba compiles on first use), episodes of 96 steps. Before each timed
step the episode's step counter is set to the next time of day of a spread permutation of the day (0:00, 9:15,
18:30, 3:45, ...), so that a short timed loop averages over night (few sellers) and day as whole episodes do.

1. **Env at ~1,000 prosumers** (``--prosumers``; the default selection, 991 prosumers on 15 platforms): grid
   ``linear`` and ``ac`` × coordination ``single`` / ``isolated`` / ``negotiation`` (ADMM, and ``negotiation-lp``:
   the centralised LP) / ``pricing`` / ``predictive`` (persistence), ``--mechanism`` (uniform).
   Two rates: the PettingZoo env's ``step`` (dict actions in, observation/reward/info dicts out: what users see)
   and the core :func:`p2p_gym.sim.step` on arrays (B = 1, the env's path). Peak memory (``ru_maxrss``): each
   configuration runs in a child forked from the process that built the scenario, so the child's peak starts at
   the parent's resident set at the fork (scenario, SimBench data cache) and adds the env build (grid model,
   sensitivities) and the steps; the reported peak is the larger of that and the parent's own peak while
   building, i.e. the peak of one process that builds and steps that env.
2. **Step time against N** (``--sizes``, ``max_prosumers`` of the builder, which takes LV grids in spread order
   until the budget is used, so large sizes span many platforms; the largest the extract supports is printed):
   grid ``none``, mechanism ``uniform`` and ``bilateral``, coordination ``single`` (one market of all agents) and
   ``isolated`` (one market per platform), and bilateral in one market with sparse candidate pairs
   (``bilateral_candidates=5``); ms per step and the exponent of CPU time per step against N (slope
   of the log-log least-squares line, and the slope between the two largest sizes).
3. **Single feeder vs grid2op**: ``default`` (20 agents, one LV feeder) with grid ``ac`` beside grid2op's
   ``l2rpn_case14_sandbox`` (test data) on lightsim2grid stepping with do-nothing actions, when grid2op is
   importable (not a dependency of p2p_gym; ``--grid2op-path`` adds a directory to ``sys.path``), via
   ``benchmarks/grid_check.py``'s helper.

Targets (printed next to the measurements, with a met / not met line each): at ~1,000 prosumers ≥ 100 env
steps/s with grid ``linear`` and ≥ 20 with grid ``ac`` on one core; peak memory ≤ 2 GB; bilateral step time
growing no faster than ~N² (every exponent, fitted and last pair, core and env, ≤ 2 with 0.2 of slack for
timing noise).

Each configuration runs in its own forked child with a time limit (``--timeout``); a timed loop stops after
``--steps`` steps or ``--budget`` seconds (at least 2 steps). Run single-threaded for comparable numbers. Both
wall time and the process's CPU time are taken: on a shared machine other jobs inflate the wall time, not the
CPU time, so rates are given in both (targets judged on wall time) and exponents are fitted on CPU time.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/multiscale.py [--quick] [--steps 200] [--prosumers 1000]
[--sizes 100 200 500 1000 2000 5000] [--budget 5] [--days 7] [--mechanism uniform] [--skip-env] [--skip-curve]
[--skip-grid2op] [--grid2op-path /tmp/grid2op_pkg]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from p2p_gym import sim
from p2p_gym.envs import MarketConfig, P2PMarketEnv

TARGET_RATE = {"linear": 100.0, "ac": 20.0}  # env steps/s at ~1,000 prosumers, one core
TARGET_PEAK_MB = 2048.0
TARGET_EXPONENT = 2.0  # bilateral step time ~ N^2 at most
EXPONENT_SLACK = 0.2
EPISODE_STEPS = 96
#: Times of day (step of the episode) of the timed steps: a permutation of the day's 96 steps in spread order
#: (0:00, 9:15, 18:30, 3:45, ...), so that a short timed loop averages over the day as whole episodes do.
TIME_OF_DAY = (np.arange(EPISODE_STEPS) * 37) % EPISODE_STEPS
#: Warm-up steps start at noon (trades on every platform, so every code path is compiled before timing).
WARMUP_TIME_OF_DAY = (TIME_OF_DAY + EPISODE_STEPS // 2) % EPISODE_STEPS


# ------------------------------------------------------------------------------------------------ helpers
def _peak_mb() -> float:
    """Peak resident set of this process (MB; ``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    """Current resident set of this process (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _timed(step: Callable[[int], None], steps: int, budget: float) -> tuple[float, float, int]:
    """Steps/s of ``step(k)`` in wall time and in CPU time over ``steps`` calls, or fewer once ``budget`` seconds
    are spent (at least 2), and the number of calls."""
    done, t0, c0 = 0, time.perf_counter(), time.process_time()
    while done < steps and (done < 2 or time.perf_counter() - t0 < budget):
        step(done)
        done += 1
    return done / (time.perf_counter() - t0), done / max(time.process_time() - c0, 1e-9), done


def _child(conn: Any, fn: Callable[..., dict], args: tuple) -> None:
    try:
        out = fn(*args)
    except Exception as exc:  # reported in the table, the run goes on
        out = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    conn.send(out)
    conn.close()


def in_child(fn: Callable[..., dict], *args: Any, timeout: float) -> dict:
    """``fn(*args)`` in a forked child (own peak RSS, own crash); ``{"error": ...}`` on failure or timeout."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    proc.start()
    send.close()
    try:
        out = recv.recv() if recv.poll(timeout) else {"error": f"timeout after {timeout:.0f} s"}
    except EOFError:
        out = {"error": f"child died (exit code {proc.exitcode})"}
    if proc.is_alive():
        proc.kill()
    proc.join()
    if "trace" in out:
        print(out.pop("trace"), file=sys.stderr)
    return out


def measure_env(sc: Any, options: dict[str, Any], steps: int, budget: float, warmup: int) -> dict:
    """Build the env of ``options`` on ``sc`` and time its step and the core step (run in a child)."""
    warnings.simplefilter("ignore")
    rss_start = _rss_mb()
    t0 = time.perf_counter()
    env = P2PMarketEnv(sc, config=MarketConfig(scenario=sc.name, episode_steps=EPISODE_STEPS, **options))
    build_s = time.perf_counter() - t0
    static = env.static
    rng = np.random.default_rng(0)
    arrays = rng.uniform(-1.0, 1.0, (8, 1, static.n, static.n_actions))
    pool = [
        {a: arrays[k, 0, i].astype(np.float32) for i, a in enumerate(env.possible_agents)} for k in range(8)
    ]

    env.reset(seed=0)
    day = int(env.sim_state.t0[0]) // sc.steps_per_day

    def env_step(k: int, times: np.ndarray = TIME_OF_DAY) -> None:
        if not env.agents:
            env.reset()
        env.sim_state = replace(env.sim_state, step=np.array([times[k % EPISODE_STEPS]]))
        env.step(pool[k % 8])

    t0 = time.perf_counter()
    env_step(0, WARMUP_TIME_OF_DAY)
    first_s = time.perf_counter() - t0
    for k in range(1, warmup):
        env_step(k, WARMUP_TIME_OF_DAY)
    env_rate, env_cpu, env_n = _timed(env_step, steps, budget)

    state = sim.initial_state(static, [day])

    def core_step(k: int) -> None:
        nonlocal state
        state = replace(state, step=np.array([TIME_OF_DAY[k % EPISODE_STEPS]]))
        state, _ = sim.step(static, state, arrays[k % 8], vectorised=False)

    core_rate, core_cpu, core_n = _timed(core_step, steps, budget)
    return {
        "n": static.n,
        "platforms": int(sc.n_platforms),
        "build_s": build_s,
        "first_s": first_s,
        "env_rate": env_rate,
        "env_cpu": env_cpu,
        "env_n": env_n,
        "core_rate": core_rate,
        "core_cpu": core_cpu,
        "core_n": core_n,
        "rss_start_mb": rss_start,
        "peak_mb": _peak_mb(),
    }


def measure_grid2op(steps: int, path: str | None) -> dict:
    """Do-nothing steps/s of grid2op's case14 on lightsim2grid (``benchmarks/grid_check.py``'s helper)."""
    warnings.simplefilter("ignore")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        import grid2op
        import lightsim2grid  # noqa: F401
    except ImportError as exc:
        return {"error": f"not importable ({type(exc).__name__}: {exc})"}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from grid_check import _grid2op_steps_per_s

    rate = _grid2op_steps_per_s(steps)
    if rate is None:
        return {"error": "grid_check._grid2op_steps_per_s found it not importable"}
    return {"env_rate": rate, "version": grid2op.__version__, "peak_mb": _peak_mb()}


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None or not np.isfinite(x) else format(x, spec)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


def exponent(ns: list[int], ms: list[float]) -> tuple[float, float]:
    """Slope of log(ms) against log(N) over all points, and between the two largest N (nan if < 2 points)."""
    if len(ns) < 2:
        return np.nan, np.nan
    x, y = np.log(np.asarray(ns, float)), np.log(np.asarray(ms, float))
    fit = float(np.polyfit(x, y, 1)[0])
    last = float((y[-1] - y[-2]) / (x[-1] - x[-2])) if x[-1] != x[-2] else np.nan
    return fit, last


# ------------------------------------------------------------------------------------------------ parts
def part_env(args: argparse.Namespace, summary: list[str]) -> None:
    from p2p_gym.scenarios import flex_data
    from p2p_gym.scenarios.mvlv import MVLV_CODE, build_mvlv

    t0 = time.perf_counter()
    sc = build_mvlv(days=args.days, max_prosumers=args.prosumers, name="mvlv")
    build_s = time.perf_counter() - t0
    parent_peak = _peak_mb()
    cache_mb = sum(v.nbytes for v in flex_data._profiles(MVLV_CODE).values()) / 2**20
    print(
        f"\n## 1. mvlv env: {sc.n_agents} prosumers on {sc.n_platforms} platforms, {args.days} days, "
        f"mechanism={args.mechanism}, {len(sc.net.bus)} buses, {len(sc.background_ids)} background elements"
    )
    print(
        f"scenario build {build_s:.1f} s; this process: peak {parent_peak:.0f} MB while building, "
        f"{_rss_mb():.0f} MB resident after (of which the SimBench profile cache, full year float64: "
        f"{cache_mb:.0f} MB)"
    )
    rows = []
    for grid in ("linear", "ac"):
        for coord in ("single", "isolated", "negotiation", "negotiation-lp", "pricing", "predictive"):
            opts = {"grid": grid, "coordination": coord.split("-")[0], "mechanism": args.mechanism}
            if coord == "negotiation-lp":
                opts["negotiation"] = "centralized"
            if coord == "predictive":
                opts["predictor"] = "persistence"
            r = in_child(measure_env, sc, opts, args.steps, args.budget, args.warmup, timeout=args.timeout)
            rows.append((grid, coord, r))
    print(
        f"| {'grid':6s} | {'coordination':12s} | {'env build s':>11s} | {'1st step s':>10s} | "
        f"{'core steps/s':>12s} | {'env steps/s':>11s} | {'(CPU time)':>10s} | {'target':>6s} | {'ms/step':>7s} | "
        f"{'step peak MB':>12s} | {'peak MB':>7s} | {'target':>6s} |"
    )
    print(f"|{'-' * 8}|{'-' * 14}|{'-' * 12}:|{'-' * 11}:|{'-' * 13}:|{'-' * 12}:|{'-' * 11}:|{'-' * 7}:|"
          f"{'-' * 8}:|{'-' * 13}:|{'-' * 8}:|{'-' * 7}:|")  # fmt: skip
    at_target = abs(sc.n_agents - 1000) <= 50
    note = "" if at_target else f" (N = {sc.n_agents}, not the ~1,000 of the target)"
    peaks = []
    for grid, coord, r in rows:
        target = TARGET_RATE[grid]
        if "error" in r:
            print(f"| {grid:6s} | {coord:12s} | failed: {r['error']}")
            summary.append(f"env steps/s ≥ {target:.0f}, grid={grid}, {coord}: FAILED ({r['error']})")
            continue
        peak = max(r["peak_mb"], parent_peak)
        peaks.append((peak, grid, coord))
        print(
            f"| {grid:6s} | {coord:12s} | {r['build_s']:11.2f} | {r['first_s']:10.2f} | {r['core_rate']:12.1f} | "
            f"{r['env_rate']:11.1f} | {r['env_cpu']:10.1f} | {'≥ ' + format(target, '.0f'):>6s} | "
            f"{1000 / r['env_rate']:7.2f} | {r['peak_mb']:12.0f} | {peak:7.0f} | {'≤ 2048':>6s} |"
        )
        busy = ""
        if r["env_rate"] < target <= r["env_cpu"]:
            busy = f"; met in CPU time ({r['env_cpu']:.1f}/s): the machine was busy"
        summary.append(
            f"env steps/s ≥ {target:.0f} at ~1,000 prosumers, grid={grid}, coordination={coord}: "
            f"{r['env_rate']:.1f} (core {r['core_rate']:.1f}) → {_verdict(r['env_rate'] >= target)}{busy}{note}"
        )
    if peaks:
        worst = max(peaks)
        summary.append(
            f"peak memory ≤ {TARGET_PEAK_MB:.0f} MB (build + step, worst: grid={worst[1]}, {worst[2]}): "
            f"{worst[0]:.0f} MB → {_verdict(worst[0] <= TARGET_PEAK_MB)}{note}"
        )
    print(
        f"(rates over up to {args.steps} steps or {args.budget:.0f} s after {args.warmup} warm-up steps; "
        "1st step includes numba compilation; step peak: the child that builds the env and steps, from the parent's "
        "resident set at the fork; peak = max(step peak, the parent's peak while building the scenario))"
    )


def part_curve(args: argparse.Namespace, summary: list[str]) -> None:
    from p2p_gym.scenarios.mvlv import build_mvlv, lv_feeders

    feeders = lv_feeders()
    total = sum(len(f.agent_buses) for f in feeders)
    sizes = sorted(set(args.sizes))
    too_big = [s for s in sizes if s > total]
    sizes = [s for s in sizes if s <= total]
    print(
        f"\n## 2. step time against N: grid=none, days={args.days}; the extract has {total} prosumers on "
        f"{len(feeders)} LV grids (largest max_prosumers = {total})"
    )
    if too_big:
        print(f"sizes {too_big} skipped: above {total}")
    # bilateral with sparse candidate pairs (bilateral_candidates=5): the exact LP of one market has ~N² pairs
    configs = [(m, c) for m in ("uniform", "bilateral") for c in ("single", "isolated")] + [
        ("bilateral-k5", "single")
    ]
    results: dict[tuple[str, str], list[tuple[int, dict]]] = {cfg: [] for cfg in configs}
    print(
        f"| {'mechanism':12s} | {'coordination':12s} | {'asked':>6s} | {'N':>5s} | {'P':>3s} | "
        f"{'build s':>7s} | {'env build s':>11s} | {'core ms/step':>12s} | {'env ms/step':>11s} | "
        f"{'env CPU ms':>10s} | {'steps':>5s} | {'peak MB':>7s} |"
    )
    print(f"|{'-' * 14}|{'-' * 14}|{'-' * 7}:|{'-' * 6}:|{'-' * 4}:|{'-' * 8}:|{'-' * 12}:|{'-' * 13}:|"
          f"{'-' * 12}:|{'-' * 11}:|{'-' * 6}:|{'-' * 8}:|")  # fmt: skip
    for size in sizes:
        t0 = time.perf_counter()
        sc = build_mvlv(days=args.days, max_prosumers=size, name=f"mvlv_{size}")
        build_s = time.perf_counter() - t0
        for mech, coord in configs:
            opts = {"grid": "none", "coordination": coord, "mechanism": mech.split("-")[0]}
            if mech == "bilateral-k5":
                opts["bilateral_candidates"] = 5
            r = in_child(
                measure_env, sc, opts, args.curve_steps, args.budget, args.warmup, timeout=args.timeout
            )
            head = f"| {mech:12s} | {coord:12s} | {size:6d} | {sc.n_agents:5d} | {sc.n_platforms:3d} | {build_s:7.1f} |"
            if "error" in r:
                print(f"{head} failed: {r['error']}")
                continue
            results[(mech, coord)].append((sc.n_agents, r))
            print(
                f"{head} {r['build_s']:11.2f} | {1000 / r['core_rate']:12.2f} | {1000 / r['env_rate']:11.2f} | "
                f"{1000 / r['env_cpu']:10.2f} | {r['env_n']:5d} | {r['peak_mb']:7.0f} |"
            )
        del sc
    print(f"\n| {'mechanism':12s} | {'coordination':12s} | {'N range':>11s} | {'exponent core':>13s} | "
          f"{'exponent env':>12s} | {'last pair core':>14s} | {'last pair env':>13s} |")  # fmt: skip
    print(f"|{'-' * 14}|{'-' * 14}|{'-' * 12}:|{'-' * 14}:|{'-' * 13}:|{'-' * 15}:|{'-' * 14}:|")
    for mech, coord in configs:
        pts = results[(mech, coord)]
        ns = [n for n, _ in pts]
        core = exponent(ns, [1000 / r["core_cpu"] for _, r in pts])
        env = exponent(ns, [1000 / r["env_cpu"] for _, r in pts])
        span = f"{min(ns)}–{max(ns)}" if ns else "—"
        print(
            f"| {mech:12s} | {coord:12s} | {span:>11s} | {_fmt(core[0], '13.2f')} | {_fmt(env[0], '12.2f')} | "
            f"{_fmt(core[1], '14.2f')} | {_fmt(env[1], '13.2f')} |"
        )
        if mech.startswith("bilateral"):
            worst = max(core + env) if len(ns) >= 2 else None
            ok = None if worst is None else worst <= TARGET_EXPONENT + EXPONENT_SLACK
            summary.append(
                f"{mech} step time ≲ N^{TARGET_EXPONENT:.0f}, coordination={coord} (N {span}): CPU-time exponent "
                f"core {_fmt(core[0], '.2f')}, env {_fmt(env[0], '.2f')} (last pair {_fmt(core[1], '.2f')} / "
                f"{_fmt(env[1], '.2f')}; largest ≤ {TARGET_EXPONENT + EXPONENT_SLACK:.1f}) → {_verdict(ok)}"
            )
    print(
        "(exponent: slope of log CPU time per step against log N, least squares over all sizes; last pair: between the "
        "two largest sizes, the asymptotic growth; the target is judged on the largest of the four; peak MB: the "
        "child's peak, from the parent's resident set at the fork)"
    )


def part_grid2op(args: argparse.Namespace, summary: list[str]) -> None:
    from p2p_gym.scenarios import load_scenario

    sc = load_scenario("default")
    print(f"\n## 3. single feeder: default ({sc.n_agents} agents, {len(sc.net.bus)} buses) vs grid2op case14")
    opts = {"grid": "ac", "mechanism": args.mechanism}
    ours = in_child(measure_env, sc, opts, args.steps, args.budget, args.warmup, timeout=args.timeout)
    theirs = in_child(measure_grid2op, args.steps, args.grid2op_path, timeout=args.timeout)
    print(f"| {'environment':64s} | {'steps/s':>8s} | {'ms/step':>7s} | {'vs grid2op':>10s} |")
    print(f"|{'-' * 66}|{'-' * 9}:|{'-' * 8}:|{'-' * 11}:|")
    ref = theirs.get("env_rate")
    rows = []
    if "error" not in ours:
        rows += [(f"p2p_gym default, grid=ac, {args.mechanism}, env step (dict actions)", ours["env_rate"]),
                 (f"p2p_gym default, grid=ac, {args.mechanism}, core sim.step", ours["core_rate"])]  # fmt: skip
    else:
        print(f"| p2p_gym default, grid=ac: failed: {ours['error']}")
    if ref is not None:
        rows.append((f"grid2op {theirs['version']} l2rpn_case14_sandbox, LightSimBackend, do nothing", ref))
    for name, rate in rows:
        vs = f"{rate / ref:9.2f}x" if ref else "—"
        print(f"| {name:64s} | {rate:8.1f} | {1000 / rate:7.2f} | {vs:>10s} |")
    if ref is None:
        print(f"grid2op: {theirs['error']} (optional; install it or pass --grid2op-path), comparison skipped")
    elif "error" not in ours:
        summary.append(
            f"default grid=ac env {ours['env_rate']:.0f} steps/s vs grid2op case14 {ref:.0f} steps/s "
            f"({ours['env_rate'] / ref:.2f}x; for scale, no target)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and few steps (a smoke run)")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per rate (default 200; quick 10)"
    )
    parser.add_argument(
        "--curve-steps", type=int, default=None, help="timed steps per size (default 50; quick 5)"
    )
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds per timed loop (default 5; quick 2)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the env's build")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds per configuration (child killed)"
    )
    parser.add_argument(
        "--prosumers", type=int, default=None, help="max_prosumers of part 1 (default 1000; quick 300)"
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="max_prosumers of part 2 (default 100 200 500 1000 2000 5000; quick 100 200 500)",
    )
    parser.add_argument("--days", type=int, default=7, help="days of the mvlv scenario")
    parser.add_argument("--mechanism", default="uniform", help="mechanism of parts 1 and 3")
    parser.add_argument("--skip-env", action="store_true", help="skip part 1 (the ~1,000-prosumer env)")
    parser.add_argument("--skip-curve", action="store_true", help="skip part 2 (step time against N)")
    parser.add_argument("--skip-grid2op", action="store_true", help="skip part 3 (default vs grid2op)")
    parser.add_argument("--grid2op-path", default=None, help="directory added to sys.path to import grid2op")
    args = parser.parse_args()
    if (
        args.grid2op_path
    ):  # before anything imports lightsim2grid: it offers LightSimBackend only if grid2op is
        sys.path.insert(0, args.grid2op_path)  # importable when it is first imported
    q = args.quick
    args.steps = args.steps or (10 if q else 200)
    args.curve_steps = args.curve_steps or (5 if q else 50)
    args.budget = args.budget or (2.0 if q else 5.0)
    args.prosumers = args.prosumers or (300 if q else 1000)
    args.sizes = args.sizes or ([100, 200, 500] if q else [100, 200, 500, 1000, 2000, 5000])
    warnings.simplefilter("ignore")
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"# multiscale benchmark{' (quick)' if q else ''}: python {sys.version.split()[0]}, {os.cpu_count()} "
          f"CPUs, {', '.join(f'{k}={v}' for k, v in threads.items())}")  # fmt: skip
    t0 = time.perf_counter()
    summary: list[str] = []
    if not args.skip_env:
        part_env(args, summary)
    if not args.skip_curve:
        part_curve(args, summary)
    if not args.skip_grid2op:
        part_grid2op(args, summary)
    print(f"\n## summary (total {time.perf_counter() - t0:.0f} s)")
    for line in summary:
        print(f"- {line}")


if __name__ == "__main__":
    main()
