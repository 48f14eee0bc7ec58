"""Random P2P instances for the optim tests (always feasible: every agent may sit at zero)."""

from __future__ import annotations

import numpy as np

from p2p_gym.optim import P2PProblem


def random_graph(n: int, density: float, rng: np.random.Generator) -> np.ndarray:
    """Symmetric adjacency with a random spanning tree (connected) plus extra edges of the given density."""
    adj = np.zeros((n, n), dtype=bool)
    order = rng.permutation(n)
    for i in range(1, n):
        j = order[rng.integers(0, i)]
        adj[order[i], j] = adj[j, order[i]] = True
    extra = np.triu(rng.random((n, n)) < density, 1)
    adj |= extra | extra.T
    np.fill_diagonal(adj, False)
    return adj


def random_ptdf(n_bus: int, rng: np.random.Generator) -> np.ndarray:
    """PTDF of a random connected DC network (slack bus 0): float[L, B]."""
    adj = np.triu(random_graph(n_bus, 0.3, rng), 1)
    f, t = np.nonzero(adj)
    x = rng.uniform(0.5, 2.0, f.size)
    n_l = f.size
    inc = np.zeros((n_l, n_bus))
    inc[np.arange(n_l), f] = 1.0
    inc[np.arange(n_l), t] = -1.0
    bf = inc / x[:, None]
    bbus = inc.T @ bf
    ptdf = np.zeros((n_l, n_bus))
    ptdf[:, 1:] = bf[:, 1:] @ np.linalg.inv(bbus[1:, 1:])
    return ptdf


def random_problem(rng: np.random.Generator, *, lines: bool = False, n: int | None = None) -> P2PProblem:
    """A random instance: 2–15 agents, sparse graphs, preferences, trade limits, optionally DC lines."""
    n = int(rng.integers(2, 16)) if n is None else n
    kind = rng.integers(0, 3, n)  # 0 producer, 1 consumer, 2 prosumer
    a = rng.uniform(0.05, 2.0, n) * (rng.random(n) > 0.15)  # some linear costs
    b = np.where(kind == 1, rng.uniform(3.0, 8.0, n), rng.uniform(0.5, 5.0, n))
    cap = rng.uniform(0.5, 10.0, n)
    p_min = np.where(kind == 0, 0.0, -cap)
    p_max = np.where(kind == 1, 0.0, cap * rng.uniform(0.3, 1.5, n))
    adj = None if rng.random() < 0.3 else random_graph(n, rng.uniform(0.0, 0.7), rng)
    pref = rng.uniform(0.0, 0.5, (n, n)) if rng.random() < 0.4 else None
    tmax = None
    if rng.random() < 0.3:
        tmax = rng.uniform(0.2, 5.0, (n, n))
        tmax[rng.random((n, n)) < 0.3] = np.inf
    kw = {}
    if lines:
        n_bus = int(rng.integers(2, 7))
        ptdf = random_ptdf(n_bus, rng)
        bus = rng.integers(0, n_bus, n)
        kw = {"bus": bus, "ptdf": ptdf, "line_max": rng.uniform(0.3, 3.0, ptdf.shape[0])}
    return P2PProblem(a, b, p_min, p_max, adjacency=adj, preference=pref, trade_max=tmax, **kw)
