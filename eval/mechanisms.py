"""Mechanism comparison: every mechanism family of the survey on the same days and populations.

``python -m eval.mechanisms --out docs/figures`` runs the :mod:`eval.matrix` on ``default`` (20 SimBench
households, 60 % with PV, some batteries) for every mechanism of :data:`p2p_gym.sim.MECHANISMS` — call markets
(uniform, pay-as-bid), the continuous double auction, bilateral matching, the truthful double auctions (McAfee,
VCG), the community pricing rules (MMR, SDR, bill sharing) and the games (Nash bargaining, Shapley allocation,
sharing game, Stackelberg) — with truthful, ZI-C, markup and best-response traders (the same days for every
mechanism; ``--dispatch committed`` by default, so orders move the devices), prints a Markdown table (efficiency
vs the optimum, price of anarchy, gains from trade, P2P volume and price, fairness of savings, what the market
operator kept or covered, exploitability, price minus the competitive price) and writes ``eval_mechanisms.png``.

The community rules ignore bids (only quantities matter), so their outcome does not depend on the bidding
policy and one agent cannot gain by shading its price; the auctions and games depend on the bids.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from eval.congestion import markdown_table
from eval.matrix import EvalConfig, evaluate
from p2p_gym.errors import P2PGymError
from p2p_gym.sim import COMMUNITY_RULES, MECHANISMS, MarketConfig

COLUMNS = (
    ("policy", "policy", ""),
    ("mechanism", "mechanism", ""),
    ("efficiency", "efficiency", ".3f"),
    ("gains_from_trade", "gains (EUR)", ".2f"),
    ("p2p_volume_kwh", "P2P kWh", ".1f"),
    ("average_p2p_price", "price (EUR/kWh)", ".3f"),
    ("poa", "PoA", ".2f"),
    ("market_operator_balance", "operator (EUR)", ".2f"),
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
    policies: tuple[str, ...] = ("truthful", "zi-c", "markup", "best-response"),
    days: int = 3,
    seeds: int = 2,
    exploit_agents: int = 1,
    workers: int = 2,
    dispatch: str = "committed",
    mechanisms: tuple[str, ...] = MECHANISMS,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the comparison; returns the table rows and the full :func:`eval.matrix.evaluate` result."""
    cfg = EvalConfig(
        policies=list(policies),
        mechanisms=list(mechanisms),
        market=MarketConfig(scenario=scenario, dispatch=dispatch),
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
        ("market_operator_balance", "operator kept (+) / covered (−), EUR"),
    ]
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.2))
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
    fig.suptitle("Every mechanism on default: auctions, truthful auctions, community rules (shaded), games")
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
    p.add_argument("--policies", default="truthful,zi-c,markup,best-response")
    p.add_argument("--mechanisms", default=",".join(MECHANISMS))
    p.add_argument("--dispatch", default="committed", choices=["fixed", "committed"])
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--exploit-agents", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        rows, _ = compare(a.scenario, tuple(a.policies.split(",")), a.days, a.seeds, a.exploit_agents, a.workers,
                          a.dispatch, tuple(a.mechanisms.split(",")))  # fmt: skip
    except P2PGymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(rows, COLUMNS))
    png = plot(rows, Path(a.out) / "eval_mechanisms.png")
    print(f"\nwrote {png} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
