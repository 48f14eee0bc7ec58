"""Figures and tables of the ADMM P2P market (Le Goff Latimier & Ben Ahmed 2023, §4–5).

* ``admm_rho.png``: iterations vs ρ for a 10-agent fully connected market (Le Goff Latimier & Ben Ahmed 2023, Fig. 4);
* ``admm_stopping.png``: messages vs final market imbalance |Σ_nm p_nm|, global vs per-trade stopping, 25
  agents × ``--draws`` random markets (Le Goff Latimier & Ben Ahmed 2023, Fig. 5; the paper reports ~10×
  fewer messages);
* ``admm_sparsity.png``: welfare and mean price vs share of links removed at random (Le Goff Latimier & Ben
  Ahmed 2023, Fig. 6);
* ``admm_warm_start.png``: iterations per step over a day of 96 consecutive steps, cold vs warm start;
* ``admm_async.png``: simulated time to converge vs message-loss probability σ, synchronous (δ = 1) vs
  asynchronous (δ < 1) (Le Goff Latimier & Ben Ahmed 2023, Fig. 8).

Run: ``python -m eval.admm_figures --out docs/figures [--draws 1000] [--seed 0]`` (a few minutes).
Every random draw comes from one ``numpy.random.Generator`` seeded by ``--seed``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from p2p_gym.optim import AsyncConfig, P2PProblem, random_market, solve_admm, solve_centralized, uniform_fees


def fig_rho(out: Path, rng: np.random.Generator, n_markets: int = 10) -> None:
    """Iterations vs ρ, 10 agents, fully connected (Le Goff Latimier & Ben Ahmed 2023, Fig. 4)."""
    rhos = np.logspace(-1.5, 2.5, 17)
    its = np.array(
        [
            [
                solve_admm(random_market(10, np.random.default_rng(s)), rho=r, max_iter=20_000).iterations
                for r in rhos
            ]
            for s in rng.integers(0, 2**31, n_markets)
        ]
    )
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(rhos, its.T, color="0.8", lw=0.8)
    ax.loglog(rhos, np.median(its, 0), "o-", color="C0", label="median of 10 markets")
    ax.set(xlabel="ρ", ylabel="iterations (ε = 1e-5)", title="ADMM iterations vs ρ (10 agents)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "admm_rho.png", dpi=110)
    plt.close(fig)
    best = rhos[np.argmin(np.median(its, 0))]
    print("\n## Iterations vs ρ (10 agents, median of 10 markets)")
    print("| ρ | " + " | ".join(f"{r:.3g}" for r in rhos[::2]) + " |")
    print("|---|" + "---|" * len(rhos[::2]))
    print("| iterations | " + " | ".join(f"{m:.0f}" for m in np.median(its, 0)[::2]) + " |")
    print(f"best ρ ≈ {best:.3g}")


def fig_stopping(out: Path, rng: np.random.Generator, draws: int, rho: float) -> None:
    """Messages vs imbalance, global vs per-trade stopping, 25 agents (Le Goff Latimier & Ben Ahmed 2023, Fig. 5)."""
    res = {"global": [], "per_trade": []}
    for _ in range(draws):
        pb = random_market(25, rng)
        opt = solve_centralized(pb).cost
        for mode in res:
            sol = solve_admm(pb, rho=rho, stopping=mode, max_iter=20_000)  # type: ignore[arg-type]
            imbalance = abs(float(sol.trades.sum()))
            res[mode].append((sol.messages, imbalance, abs(sol.cost - opt) / abs(opt)))
    arr = {k: np.array(v) for k, v in res.items()}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, c in (("global", "C0"), ("per_trade", "C1")):
        ax.scatter(arr[k][:, 0], np.maximum(arr[k][:, 1], 1e-16), s=4, alpha=0.4, color=c, label=k)
    ax.set(xscale="log", yscale="log", xlabel="messages", ylabel="final imbalance |Σ p_nm|")
    ax.set_title(f"Stopping criteria, 25 agents × {draws} draws (ρ = {rho:g})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "admm_stopping.png", dpi=110)
    plt.close(fig)
    g, t = arr["global"], arr["per_trade"]
    print(f"\n## Stopping criteria (25 agents, {draws} draws, ρ = {rho:g}, ε = 1e-5)")
    print("| stopping | median messages | median imbalance | median rel. welfare gap |")
    print("|---|---|---|---|")
    for k, v in arr.items():
        print(f"| {k} | {np.median(v[:, 0]):.0f} | {np.median(v[:, 1]):.1e} | {np.median(v[:, 2]):.1e} |")
    print(f"message reduction (median of per-draw ratios): {np.median(g[:, 0] / t[:, 0]):.2f}×")


def fig_sparsity(out: Path, rng: np.random.Generator, n: int = 25, mc: int = 20, fee: float = 0.2) -> None:
    """Welfare and mean price vs share of links removed at random (Le Goff Latimier & Ben Ahmed 2023, Fig. 6).

    Without trade costs, agents relay trades (buy from one peer, resell to another), so welfare holds until the
    graph disconnects; with a uniform fee γ per unit traded (Le Goff Latimier & Ben Ahmed 2023, eq. 12)
    every relay costs, and welfare falls
    with sparsity. Both are shown.
    """
    shares = np.linspace(0.0, 0.95, 11)
    welfare = np.zeros((2, shares.size, mc))
    price = np.zeros((2, shares.size, mc))
    iu = np.triu_indices(n, 1)
    for j in range(mc):
        base = random_market(n, rng)
        order = rng.permutation(iu[0].size)
        for f, pref in enumerate((None, uniform_fees(n, fee))):
            full = None
            for i, share in enumerate(shares):
                adj = ~np.eye(n, dtype=bool)
                drop = order[: round(float(share) * order.size)]
                adj[iu[0][drop], iu[1][drop]] = adj[iu[1][drop], iu[0][drop]] = False
                pb = P2PProblem(base.a, base.b, base.p_min, base.p_max, adjacency=adj, preference=pref)
                sol = solve_admm(pb, rho="auto", max_iter=50_000)
                full = sol.welfare if full is None else full
                welfare[f, i, j] = sol.welfare / full
                sell = sol.trades > 1e-6
                price[f, i, j] = (
                    np.average(sol.prices[sell], weights=sol.trades[sell]) if sell.any() else np.nan
                )
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.2))
    for f, label in enumerate(("no fee", f"fee γ = {fee:g}")):
        ax[0].plot(shares, welfare[f].mean(1), "o-", color=f"C{f}", label=label)
        ax[1].plot(shares, np.nanmean(price[f], 1), "o-", color=f"C{f}", label=label)
    ax[0].set(xlabel="share of links removed", ylabel="welfare / full-connectivity welfare")
    ax[1].set(xlabel="share of links removed", ylabel="volume-weighted bilateral price")
    ax[0].legend()
    fig.suptitle(f"Random link removal, {n} agents, {mc} Monte Carlo draws", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "admm_sparsity.png", dpi=110)
    plt.close(fig)
    print(f"\n## Sparsity ({n} agents, {mc} draws; welfare relative to the full graph)")
    print(
        f"| links removed | welfare (no fee) | price (no fee) | welfare (γ = {fee:g}) | price (γ = {fee:g}) |"
    )
    print("|---|---|---|---|---|")
    for i in range(0, shares.size, 2):
        print(
            f"| {shares[i]:.0%} | {welfare[0, i].mean():.4f} | {np.nanmean(price[0, i]):.3f} "
            f"| {welfare[1, i].mean():.4f} | {np.nanmean(price[1, i]):.3f} |"
        )


def fig_warm_start(out: Path, rng: np.random.Generator, n: int = 20, steps: int = 96) -> None:
    """Iterations per step over a day, cold vs warm start from the previous step (Le Goff Latimier & Ben
    Ahmed 2023, §5.1)."""
    hours = np.arange(steps) * 24 / steps
    pv = np.clip(np.sin(np.pi * (hours - 6) / 12), 0, None)  # PV shape
    demand = 1 + 0.5 * np.sin(np.pi * (hours - 14) / 12) ** 2
    prod = np.arange(n) < n // 2
    a = rng.uniform(0.5, 2.0, n)
    b0 = np.where(prod, rng.uniform(1.0, 4.0, n), rng.uniform(5.0, 9.0, n))
    cap = rng.uniform(1.0, 5.0, n)
    cold_it, warm_it = [], []
    prev = None
    for k in range(steps):
        noise = rng.normal(0, 0.02, n)
        b = np.where(prod, b0 * (1.5 - 0.5 * pv[k]), b0 * demand[k]) * (1 + noise)
        pb = P2PProblem(a, b, np.where(prod, 0.0, -cap * demand[k]), np.where(prod, cap, 0.0))
        cold = solve_admm(pb, rho="auto")
        warm = solve_admm(pb, rho="auto", warm_start=prev)
        cold_it.append(cold.iterations)
        warm_it.append(warm.iterations)
        prev = warm
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(hours, cold_it, label=f"cold (total {sum(cold_it)})")
    ax.plot(hours, warm_it, label=f"warm (total {sum(warm_it)})")
    ax.set(
        xlabel="hour of day", ylabel="iterations", title=f"Warm start over a day ({n} agents, 15-min steps)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "admm_warm_start.png", dpi=110)
    plt.close(fig)
    print(f"\n## Warm start ({n} agents, {steps} steps)")
    print("| start | total iterations | median per step |")
    print("|---|---|---|")
    print(f"| cold | {sum(cold_it)} | {np.median(cold_it):.0f} |")
    print(f"| warm | {sum(warm_it)} | {np.median(warm_it):.0f} |")
    print(f"saving: {1 - sum(warm_it) / sum(cold_it):.0%}")


def fig_async(out: Path, rng: np.random.Generator, n: int = 10, draws: int = 5) -> None:
    """Simulated time to converge vs message loss, synchronous vs asynchronous (Le Goff Latimier & Ben
    Ahmed 2023, Fig. 8)."""
    losses = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    deltas = (1.0, 0.75, 0.5)
    markets = [random_market(n, rng) for _ in range(draws)]
    seeds = rng.integers(0, 2**31, (len(deltas), losses.size, draws))
    t_sim = np.zeros((len(deltas), losses.size, draws))
    for i, d in enumerate(deltas):
        for j, sigma in enumerate(losses):
            for k, pb in enumerate(markets):
                cfg = AsyncConfig(delta=d, loss=float(sigma))
                sol = solve_admm(pb, rho=1.0, asynchronous=cfg, rng=np.random.default_rng(seeds[i, j, k]))
                t_sim[i, j, k] = sol.sim_time if sol.status == "converged" else np.nan
    mean = np.nanmean(t_sim, 2)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, d in enumerate(deltas):
        ax.plot(losses, mean[i], "o-", label=f"δ = {d:g}" + (" (synchronous)" if d == 1 else ""))
    ax.set(
        xlabel="loss probability σ",
        ylabel="simulated time to converge",
        title=f"Asynchronous ADMM ({n} agents)",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "admm_async.png", dpi=110)
    plt.close(fig)
    print(f"\n## Asynchronous vs synchronous ({n} agents, {draws} markets; time units: mean delay = 1)")
    print("| δ | " + " | ".join(f"σ = {s:g}" for s in losses) + " |")
    print("|---|" + "---|" * losses.size)
    for i, d in enumerate(deltas):
        print(f"| {d:g} | " + " | ".join(f"{x:.0f}" for x in mean[i]) + " |")
    print(
        "speed-up vs δ = 1: "
        + ", ".join(f"δ={d:g}: {1 - mean[i].mean() / mean[0].mean():.0%}" for i, d in enumerate(deltas))
    )


def main(argv: list[str] | None = None) -> None:
    """Generate all figures into ``--out`` and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/figures"))
    ap.add_argument("--draws", type=int, default=1000, help="random markets for the stopping figure (Fig. 5)")
    ap.add_argument("--stopping-rho", type=float, default=1.0, help="ρ of the stopping-criteria comparison")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, fn in (
        ("rho", lambda: fig_rho(args.out, rng)),
        ("stopping", lambda: fig_stopping(args.out, rng, args.draws, args.stopping_rho)),
        ("sparsity", lambda: fig_sparsity(args.out, rng)),
        ("warm start", lambda: fig_warm_start(args.out, rng)),
        ("async", lambda: fig_async(args.out, rng)),
    ):
        t0 = time.perf_counter()
        fn()
        print(f"({name}: {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
