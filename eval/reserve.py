"""Joint energy–reserve P2P market on the IEEE 14-bus case: δ-allocation policies against the pool market.

A reproduction in kind of Le Goff Latimier & Ben Ahmed (2023), §6.3, Fig. 13–14: ``python -m eval.reserve --out
docs/figures`` builds :func:`~p2p_gym.optim.case14_reserve_market` (5 generators, 11 flexible loads, 3 wind farms
and 3 PV plants whose Gaussian forecast errors are correlated 0.6) over 24 hours and solves, at the global
confidence δ = 0.95:

* the pool joint market (eq. 13, :func:`~p2p_gym.optim.solve_joint_centralized`), whose system reserve meets the
  chance constraint exactly for Gaussian errors;
* the P2P joint market (eq. 14) by decentralised ADMM (:func:`~p2p_gym.optim.solve_p2p_reserve_admm`) for each
  δ-allocation policy of :data:`~p2p_gym.optim.reserve_market.DELTA_POLICIES` (Rel. α^1, Rel. α^σ, Rel. α^μ,
  Abs. α^σ), checked against the cvxpy solution of the same problem.

For each it reports the exchanged energy Σ max(p_n, 0) and the physical reserves per hour (Fig. 13 in kind), the
welfare relative to the pool optimum, and the empirical global confidence P(−R⁻ ≤ Σ ε ≤ R⁺) by Monte Carlo over
``--samples`` seeded draws of the error model per hour (Fig. 14 in kind), plus whether each agent's local
confidence δ_n is met by its own coverage. It writes ``reserve_allocation.png`` and ``reserve_allocation.md`` in
``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from p2p_gym.errors import P2PGymError
from p2p_gym.optim.reserve_market import (
    DELTA_POLICIES,
    ReserveMarket,
    allocate_delta,
    case14_reserve_market,
    global_confidence,
    solve_joint_centralized,
    solve_p2p_reserve_admm,
    solve_p2p_reserve_centralized,
)

#: Table columns: (row key, header, format; "" = str).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("setting", "policy", ""),
    ("confidence", "global confidence reached (mean over hours)", ".4f"),
    ("confidence_min", "worst hour", ".4f"),
    ("local_ok", "local δ_n met", ""),
    ("welfare_ratio", "welfare / centralised", ".5f"),
    ("reserve_up", "reserve up (MWh)", ".1f"),
    ("reserve_down", "reserve down (MWh)", ".1f"),
    ("reserve_cost", "reserve cost (€)", ".0f"),
    ("iterations", "ADMM iterations", ""),
    ("admm_gap", "ADMM vs cvxpy welfare (rel.)", ""),
)


def _progress(items: list[str], enabled: bool) -> Any:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but the study does not need it
        return items
    return tqdm(items, desc="reserve study", leave=False)


def _local_ok(market: ReserveMarket, sol: Any, samples: np.ndarray) -> bool:
    """Whether every uncertain agent-hour's own coverage meets its δ_n on the samples (within 4 standard
    errors of the Monte Carlo estimate)."""
    eps = samples
    inside = (eps >= -sol.coverage_down[None]) & (eps <= sol.coverage_up[None])
    got = inside.mean(axis=0)
    d = sol.local_delta
    se = np.sqrt(d * (1.0 - d) / samples.shape[0])
    unc = market.uncertain
    return bool(np.all(got[unc] >= d[unc] - 4.0 * se[unc] - 1e-12))


def study(
    *,
    hours: int = 24,
    start_hour: int = 0,
    delta: float = 0.95,
    n_samples: int = 10_000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the study; returns {"market", "delta", "rows": list of table rows, "series": per-setting hourly
    arrays (injection, reserve_up, reserve_down, confidence)}."""
    market = case14_reserve_market(hours=hours, start_hour=start_hour)
    samples = market.sample_errors(np.random.default_rng(seed), n_samples)
    pool = solve_joint_centralized(market, delta)
    pool_res_cost = pool.reserve_up @ market.c_up + pool.reserve_down @ market.c_down
    conf = global_confidence(pool.total_reserve_up, pool.total_reserve_down, samples)
    rows: list[dict[str, Any]] = [
        {
            "key": "centralised",
            "setting": "centralised (eq. 13)",
            "confidence": float(conf.mean()),
            "confidence_min": float(conf.min()),
            "local_ok": "–",
            "welfare_ratio": 1.0,
            "reserve_up": float(pool.total_reserve_up.sum()),
            "reserve_down": float(pool.total_reserve_down.sum()),
            "reserve_cost": float(pool_res_cost.sum()),
            "iterations": "–",
            "admm_gap": "–",
            "time_admm": float("nan"),
            "time_cvxpy": pool.solve_time,
        }
    ]
    series: dict[str, dict[str, np.ndarray]] = {
        "centralised": {
            "injection": pool.injection,
            "reserve_up": pool.total_reserve_up,
            "reserve_down": pool.total_reserve_down,
            "confidence": conf,
        }
    }
    for key in _progress(list(DELTA_POLICIES), progress):
        label = DELTA_POLICIES[key][0]
        local = allocate_delta(market, delta, key)
        sol = solve_p2p_reserve_admm(market, local)
        if sol.status != "converged":
            raise P2PGymError(f"ADMM for policy {key!r} stopped with status {sol.status!r}")
        ref = solve_p2p_reserve_centralized(market, local)
        conf = global_confidence(sol.total_reserve_up, sol.total_reserve_down, samples)
        res_cost = sol.reserve_up @ market.c_up + sol.reserve_down @ market.c_down
        rows.append(
            {
                "key": key,
                "setting": f"{label} ({key})",
                "confidence": float(conf.mean()),
                "confidence_min": float(conf.min()),
                "local_ok": "yes" if _local_ok(market, sol, samples) else "no",
                "welfare_ratio": sol.welfare / pool.welfare,
                "reserve_up": float(sol.total_reserve_up.sum()),
                "reserve_down": float(sol.total_reserve_down.sum()),
                "reserve_cost": float(res_cost.sum()),
                "iterations": str(sol.iterations),
                "admm_gap": f"{abs(sol.welfare - ref.welfare) / abs(ref.welfare):.1e}",
                "time_admm": sol.solve_time,
                "time_cvxpy": ref.solve_time,
            }
        )
        series[key] = {
            "injection": sol.injection,
            "reserve_up": sol.total_reserve_up,
            "reserve_down": sol.total_reserve_down,
            "confidence": conf,
        }
    return {"market": market, "delta": delta, "rows": rows, "series": series, "start_hour": start_hour}


def plot(result: dict[str, Any], path: Path) -> Path:
    """Fig. 13–14 in kind: hourly exchanged energy and reserves, hourly global confidence, welfare ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, series, delta = result["rows"], result["series"], result["delta"]
    hours = (result["start_hour"] + np.arange(result["market"].n_hours)) % 24
    x = np.arange(hours.size)
    colors = ["black", "tab:blue", "tab:orange", "tab:green", "tab:red"]
    styles = ["-", "--", "-", "-", ":"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = (
        ("injection", "exchanged energy Σ max(p, 0) (MWh)"),
        ("reserve_up", "upward reserve Σ ρ⁺ (MW)"),
        ("reserve_down", "downward reserve Σ ρ⁻ (MW)"),
        ("confidence", "global confidence (Monte Carlo)"),
    )
    for ax, (key, title) in zip(axes.flat, panels):
        for row, col, ls in zip(rows, colors, styles):
            ax.plot(x, series[row["key"]][key], ls, color=col, label=row["setting"], marker=".")
        ax.set_title(title)
        ax.set_xticks(x[:: max(1, x.size // 8)], [str(h) for h in hours[:: max(1, x.size // 8)]])
        ax.set_xlabel("hour")
        ax.grid(alpha=0.3)
    axes[1, 0].axhline(delta, color="grey", lw=1, ls="--")
    axes[0, 0].legend(fontsize=8)
    names = [r["setting"].split(" (")[0] for r in rows]
    for ax, key, title, ref in (
        (axes[1, 1], "welfare_ratio", "welfare / centralised", 1.0),
        (axes[1, 2], "confidence", f"global confidence, mean over hours (δ = {delta})", delta),
    ):
        vals = np.array([r[key] for r in rows])
        ax.bar(names, vals, color=colors[: len(rows)])
        lo, hi = min(vals.min(), ref), max(vals.max(), ref)
        pad = 0.15 * (hi - lo) + 1e-4
        ax.set_ylim(lo - pad, hi + pad)
        ax.axhline(ref, color="grey", lw=1, ls="--")
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=20)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.4f}", ha="center", va="bottom", fontsize=8)
    fig.suptitle(
        "Joint energy–reserve P2P market, IEEE 14-bus, 24 h: δ-allocation policies vs the centralised market "
        "(in kind of Le Goff Latimier & Ben Ahmed 2023, Fig. 13–14)",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the study's rows (:data:`COLUMNS`)."""
    from eval.congestion import markdown_table as table

    return table(rows, COLUMNS)


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.reserve --out DIR``: print the table, write ``DIR/reserve_allocation.{png,md}``."""
    p = argparse.ArgumentParser(prog="python -m eval.reserve", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/figures", help="output directory")
    p.add_argument("--hours", type=int, default=24, help="number of hours (1-24)")
    p.add_argument("--start-hour", type=int, default=0, help="first hour of the day")
    p.add_argument("--delta", type=float, default=0.95, help="global confidence δ")
    p.add_argument("--samples", type=int, default=10_000, help="Monte Carlo draws of the errors per hour")
    p.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo draws")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        res = study(
            hours=a.hours,
            start_hour=a.start_hour,
            delta=a.delta,
            n_samples=a.samples,
            seed=a.seed,
            progress=not a.quiet,
        )
        table = markdown_table(res["rows"])
        out = Path(a.out)
        png = plot(res, out / "reserve_allocation.png")
        rows = res["rows"]
        t_admm = sum(r["time_admm"] for r in rows[1:])
        t_cvx = sum(r["time_cvxpy"] for r in rows[1:])
        note = (
            f"IEEE 14-bus joint energy–reserve market, {a.hours} h from hour {a.start_hour}, δ = {a.delta}, "
            f"{a.samples} Monte Carlo draws per hour (seed {a.seed}); `python -m eval.reserve`. "
            f"P2P rows: ADMM ({t_admm:.1f} s for the {len(rows) - 1} policies), checked against cvxpy "
            f"({t_cvx:.1f} s). The relative policies share the violation budget N·(1 − δ) of all "
            f"N = {res['market'].n_agents} agents among the uncertain ones (3 wind farms at night, 6 renewables "
            "by day); see `DELTA_POLICIES` in `p2p_gym/optim/reserve_market.py`."
        )
        md = out / "reserve_allocation.md"
        md.write_text(f"{note}\n\n{table}\n", encoding="utf-8")
    except (P2PGymError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table)
    print(f"\nwrote {png} and {md} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
