"""Benchmark of p2p_gym.market clearing: median wall time of repeated runs, printed as a table.

Targets: uniform 1,000 orders ≤ 1 ms, 100,000 ≤ 100 ms; CDA 10,000 orders ≤ 100 ms;
bilateral with 100 agents ≤ 10 ms.

Run: ``python benchmarks/clearing.py [--repeat 21]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from p2p_gym.market import Orders, clear, settle


def random_book(n_orders: int, n_agents: int, rng: np.random.Generator) -> Orders:
    """Half bids, half asks; prices uniform in [0.05, 0.35] per kWh, quantities in [0, 5] kWh."""
    return Orders(
        agent=rng.integers(0, n_agents, n_orders),
        is_buy=rng.random(n_orders) < 0.5,
        price=rng.uniform(0.05, 0.35, n_orders),
        quantity=rng.uniform(0.0, 5.0, n_orders),
    )


def both_sides_book(n_agents: int, rng: np.random.Generator) -> Orders:
    """Every agent places one bid and one ask (2·n_agents orders)."""
    agents = np.arange(n_agents)
    return Orders.from_sides(
        agents,
        rng.uniform(0.10, 0.35, n_agents),
        rng.uniform(0.0, 5.0, n_agents),
        agents,
        rng.uniform(0.05, 0.30, n_agents),
        rng.uniform(0.0, 5.0, n_agents),
    )


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="timed runs per case (median reported)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random books")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    b1k = random_book(1_000, 100, rng)
    b100k = random_book(100_000, 10_000, rng)
    b10k = random_book(10_000, 1_000, rng)
    both100 = both_sides_book(100, rng)
    one100 = random_book(100, 100, rng)
    one100 = Orders(np.arange(100), one100.is_buy, one100.price, one100.quantity)
    half = rng.random((100, 100)) < 0.5
    pref = rng.uniform(0.0, 0.02, (100, 100))
    res100 = clear(both100, "uniform", n_agents=100)
    net = rng.normal(0.0, 2.0, 100)

    cases: list[tuple[str, Callable[[], object], float | None]] = [
        ("uniform, 1,000 orders", lambda: clear(b1k, "uniform"), 1.0),
        ("uniform, 100,000 orders", lambda: clear(b100k, "uniform"), 100.0),
        ("pay_as_bid, 1,000 orders", lambda: clear(b1k, "pay_as_bid"), None),
        ("pay_as_bid, 100,000 orders", lambda: clear(b100k, "pay_as_bid"), None),
        ("cda, 10,000 orders", lambda: clear(b10k, "cda"), 100.0),
        ("bilateral, 100 agents × (1 bid + 1 ask), all partners", lambda: clear(both100, "bilateral"), 10.0),
        (
            "bilateral, 100 agents × (1 bid + 1 ask), 50% partners + β",
            lambda: clear(both100, "bilateral", partners=half, preference=pref),
            10.0,
        ),
        ("bilateral, 100 agents × 1 order, all partners", lambda: clear(one100, "bilateral"), 10.0),
        ("settle, 100 agents", lambda: settle(res100, net, 0.30, 0.05, fee_per_kwh=0.01), None),
    ]
    print(f"{'case':<58} {'median ms':>10} {'target ms':>10}  ok")
    print("-" * 86)
    for name, fn, target in cases:
        ms = median_ms(fn, args.repeat)
        ok = "" if target is None else ("yes" if ms <= target else "NO")
        tgt = "" if target is None else f"{target:.0f}"
        print(f"{name:<58} {ms:>10.3f} {tgt:>10}  {ok}")


if __name__ == "__main__":
    main()
