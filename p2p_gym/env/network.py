"""Network data the environment derives once per scenario: trade flow attribution and electrical distances."""

from __future__ import annotations

from typing import Any

import numpy as np


def path_length_km(net: Any, bus: np.ndarray) -> np.ndarray:
    """float[N, N]: length in km of the shortest line path between the buses of agents n and m.

    Transformers and closed bus-bus switches count as zero length. Used for distance-based network fees
    (001, eq. 12) and the ``distance`` preference.
    """
    import networkx as nx
    import pandapower.topology as top

    graph = top.create_nxgraph(net, calc_branch_impedances=False, multi=False)
    lengths: dict[Any, dict[Any, float]] = {}
    for u, v, data in graph.edges(data=True):
        w = float(data.get("weight", 0.0) or 0.0)
        graph[u][v]["km"] = w if np.isfinite(w) else 0.0
    uniq = np.unique(bus)
    for b in uniq:
        lengths[b] = nx.single_source_dijkstra_path_length(graph, int(b), weight="km")
    n = len(bus)
    out = np.zeros((n, n))
    for i in range(n):
        row = lengths[bus[i]]
        for j in range(n):
            out[i, j] = float(row.get(int(bus[j]), np.inf))
    return out


class FlowAttribution:
    """Attributed line flows of bilateral trades, from the linear grid model's current sensitivities.

    A trade of ``q`` kW from seller ``s`` to buyer ``b`` is attributed the signed line currents
    ``(S[:, s] − S[:, b]) · q`` (kA): the flow that would change if ``s`` injected ``q`` more and ``b`` withdrew
    ``q`` more, everything else fixed. This is the path accounting of 003 §5 (a trade's power flows along the
    lines between the two peers).
    """

    def __init__(self, line_current_ka_per_kw: np.ndarray, max_i_ka: np.ndarray) -> None:
        self.s = np.asarray(line_current_ka_per_kw, dtype=float)
        with np.errstate(divide="ignore"):
            self.pct_per_ka = np.where(max_i_ka > 0, 100.0 / max_i_ka, 0.0)

    def trade_loading_pct(self, seller: np.ndarray, buyer: np.ndarray, kw: np.ndarray) -> np.ndarray:
        """float[L, M]: signed loading (% of limit) attributed to each of M trades."""
        return (self.s[:, seller] - self.s[:, buyer]) * kw[None, :] * self.pct_per_ka[:, None]
