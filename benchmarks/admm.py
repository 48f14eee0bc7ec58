"""Benchmark of the ADMM P2P market against the centralised cvxpy solve.

* ``ieee39`` (pandapower case39, 10 generators + 21 loads, fully connected), primal/dual tolerance 1e-5: ADMM
  time and iterations against the seed's 59 s (000: sequential MATLAB/quadprog, one laptop core) and against
  the centralised Clarabel solve of the same run; also with the 46 DC branch limits (ratings × 0.6).
* Random fully connected markets with N = 10, 50, 100, 200 agents: time vs N for both.

Goals: ieee39 under 0.5 s on one core; ADMM within 2× of the centralised solve at N = 100.
Centralised times are given cold (first solve: cvxpy compilation included) and warm (same structure again:
the DPP cache skips compilation, as in repeated environment steps). Median of ``--repeat`` runs.

Run: ``OMP_NUM_THREADS=1 python benchmarks/admm.py [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from p2p_gym.optim import P2PProblem, ieee39_problem, random_market, solve_admm, solve_centralized
from p2p_gym.optim import centralized as _centralized_mod

SEED_SECONDS = 59.0  # Chernova's thesis: 39-bus, 46 branches, tolerances 1e-5, sequential MATLAB


def _median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _central(pb: P2PProblem, repeat: int) -> tuple[float, float, Any]:
    _centralized_mod._cache.clear()
    t0 = time.perf_counter()
    solve_centralized(pb)
    cold = time.perf_counter() - t0
    warm, sol = _median_time(lambda: solve_centralized(pb), repeat)
    return cold, warm, sol


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark and print the table; returns the rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10, 50, 100, 200])
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    cases: list[tuple[str, P2PProblem, dict[str, Any]]] = [
        ("ieee39 (ρ = 1)", ieee39_problem(), {"rho": 1.0}),
        ("ieee39 (ρ = auto)", ieee39_problem(), {"rho": "auto"}),
        (
            "ieee39 + 46 DC limits (×0.6)",
            ieee39_problem(line_limits=True, rating_scale=0.6),
            {"rho": 0.3, "rho_line": 0.01},
        ),
    ]
    rng = np.random.default_rng(0)
    cases += [(f"random full N={n}", random_market(n, rng), {"rho": "auto"}) for n in args.sizes]
    for name, pb, kw in cases:
        cold, warm, c = _central(pb, args.repeat)
        t_admm, d = _median_time(
            lambda pb=pb, kw=kw: solve_admm(pb, eps_primal=1e-5, eps_dual=1e-5, **kw), args.repeat
        )
        rows.append(
            {
                "case": name,
                "N": pb.n_agents,
                "trades": pb.edges.n_edges,
                "admm_s": t_admm,
                "iters": d.iterations,
                "status": d.status,
                "central_cold_s": cold,
                "central_warm_s": warm,
                "rel_gap": abs(d.cost - c.cost) / max(1.0, abs(c.cost)),
            }
        )
    head = f"{'case':32s} {'N':>4s} {'trades':>6s} {'ADMM s':>8s} {'iters':>6s} {'cvxpy cold s':>12s} "
    head += f"{'cvxpy warm s':>12s} {'ADMM/warm':>9s} {'rel. gap':>9s}"
    print(head)
    for r in rows:
        print(
            f"{r['case']:32s} {r['N']:4d} {r['trades']:6d} {r['admm_s']:8.4f} {r['iters']:6d} "
            f"{r['central_cold_s']:12.4f} {r['central_warm_s']:12.4f} {r['admm_s'] / r['central_warm_s']:9.2f} "
            f"{r['rel_gap']:9.1e}"
        )
    ieee = rows[0]
    print(
        f"\nieee39: ADMM {ieee['admm_s']:.4f} s ({ieee['iters']} iterations) vs the seed's {SEED_SECONDS:.0f} s: "
        f"{SEED_SECONDS / ieee['admm_s']:,.0f}× faster; goal < 0.5 s: {'met' if ieee['admm_s'] < 0.5 else 'MISSED'}"
    )
    n100 = [r for r in rows if r["case"] == "random full N=100"]
    if n100:
        ratio = n100[0]["admm_s"] / n100[0]["central_warm_s"]
        print(
            f"N=100: ADMM / centralised (warm) = {ratio:.2f}; goal ≤ 2: {'met' if ratio <= 2 else 'MISSED'}"
        )
    return rows


if __name__ == "__main__":
    main()
