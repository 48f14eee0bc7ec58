"""Network topology the simulation derives once per scenario: electrical distances between agents."""

from __future__ import annotations

from typing import Any

import numpy as np


def path_length_km(net: Any, bus: np.ndarray) -> np.ndarray:
    """float[N, N]: length in km of the shortest line path between the buses of agents n and m.

    Transformers and closed bus-bus switches count as zero length. Used for distance-based network fees
    (Le Goff Latimier & Ben Ahmed 2023, eq. 12) and the ``distance`` preference.
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
