"""Mechanism comparison: the community pricing rules (mid-market rate, SDR, bill sharing) vs the auctions.

``python -m eval.mechanisms --out docs/figures`` runs the :mod:`eval.matrix` on ``default`` (20 SimBench
households, 60 % with PV, some batteries) for every mechanism with ZI-C and truthful traders (3 days × 2 seeds,
the same days for every mechanism), prints a Markdown table (efficiency vs the optimum, gains from trade, P2P
volume and price, self-sufficiency, fairness of savings, exploitability, price minus the competitive price) and
writes ``eval_mechanisms.png``.

The community rules ignore bids (only quantities matter), so their outcome does not depend on the bidding
policy and one agent cannot gain by shading its price; the auctions depend on the bids.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from eval.congestion import markdown_table
from eval.matrix import EvalConfig, evaluate
from p2p_gym.sim import COMMUNITY_RULES, MECHANISMS, MarketConfig

COLUMNS = (
    ("policy", "policy", ""),
    ("mechanism", "mechanism", ""),
    ("efficiency", "efficiency", ".3f"),
    ("gains_from_trade", "gains (EUR)", ".2f"),
    ("p2p_volume_kwh", "P2P kWh", ".1f"),
    ("average_p2p_price", "price (EUR/kWh)", ".3f"),
    ("self_sufficiency", "self-suff.", ".3f"),
    ("fair_gini", "Gini", ".2f"),
    ("fair_jain", "Jain", ".2f"),
    ("fair_losers_pct", "losers %", ".0f"),
    ("fair_cr20", "CR20", ".2f"),
    ("exploitability", "exploitability (EUR)", ".3f"),
    ("price_above_competitive", "price − competitive", ".3f"),
)


def compare(
    scenario: str = "default",
    policies: tuple[str, ...] = ("zi-c", "truthful"),
    days: int = 3,
    seeds: int = 2,
    exploit_agents: int = 1,
    workers: int = 2,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the comparison; returns the table rows and the full :func:`eval.matrix.evaluate` result."""
    cfg = EvalConfig(
        policies=list(policies),
        mechanisms=list(MECHANISMS),
        market=MarketConfig(scenario=scenario),
        days=days,
        seeds=seeds,
        exploit_agents=exploit_agents,
        workers=workers,
        progress=False,
    )
    result = evaluate(cfg)
    strat = {(s["policy"], s["mechanism"]): s for s in result["strategic"]}
    rows = [
        {
            **r,
            **{
                k: strat[(r["policy"], r["mechanism"])][k]
                for k in ("exploitability", "price_above_competitive")
            },
        }
        for r in result["summary"]
    ]
    return rows, result


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Efficiency, P2P price, Gini and exploitability per mechanism (one bar group per policy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pols = list(dict.fromkeys(r["policy"] for r in rows))
    mechs = list(dict.fromkeys(r["mechanism"] for r in rows))
    keys = [
        ("efficiency", "efficiency vs optimum"),
        ("average_p2p_price", "average P2P price (EUR/kWh)"),
        ("fair_gini", "Gini of savings"),
        ("exploitability", "exploitability (EUR)"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    w = 0.8 / len(pols)
    x = np.arange(len(mechs))
    for ax, (k, title) in zip(axes, keys):
        for i, p in enumerate(pols):
            by = {r["mechanism"]: r for r in rows if r["policy"] == p}
            ax.bar(x + (i - (len(pols) - 1) / 2) * w, [by[m][k] for m in mechs], w, label=p)
        ax.set_xticks(x, mechs, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        for m in COMMUNITY_RULES:
            if m in mechs:
                ax.axvspan(mechs.index(m) - 0.5, mechs.index(m) + 0.5, color="0.93", zorder=0)
    axes[0].legend(fontsize=8)
    fig.suptitle("Community pricing rules (shaded) vs auctions on default")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.mechanisms --out DIR``: print the table and write ``DIR/eval_mechanisms.png``."""
    p = argparse.ArgumentParser(prog="python -m eval.mechanisms", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--scenario", default="default")
    p.add_argument("--policies", default="zi-c,truthful")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--exploit-agents", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    rows, _ = compare(a.scenario, tuple(a.policies.split(",")), a.days, a.seeds, a.exploit_agents, a.workers)
    print(markdown_table(rows, COLUMNS))
    png = plot(rows, Path(a.out) / "eval_mechanisms.png")
    print(f"\nwrote {png} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
