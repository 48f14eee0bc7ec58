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


def feeder_zones(net: Any, bus: np.ndarray) -> np.ndarray:
    """int[N]: the zone of each agent's bus — the feeder it hangs on, numbered 0, 1, ... (−1 above the first
    branching).

    From the external grid's bus, the path to the agent's bus is followed to the first bus where the network
    branches (three or more branches, e.g. a transformer's LV busbar with its feeders); the branch taken there (a
    line or a transformer) names the zone. In a radial distribution grid the feeder head lines are its most
    loaded, fragile lines, so these are zones "defined by the most fragile lines" as the zonal network fee of
    Le Goff Latimier & Ben Ahmed (2023, §3.3) describes.
    """
    import networkx as nx
    import pandapower.topology as top

    root = int(net.ext_grid.bus.iloc[0]) if len(net.ext_grid) else int(net.bus.index[0])
    graph = top.create_nxgraph(net, calc_branch_impedances=False, multi=False, include_trafos=True)
    paths = nx.single_source_shortest_path(graph, root)
    labels: dict[Any, int] = {}
    out = np.full(len(bus), -1, dtype=np.int64)
    for i, b in enumerate(bus):
        path = paths.get(int(b))
        if path is None:
            continue
        for k in range(len(path) - 1):
            if graph.degree(path[k]) >= 3:
                out[i] = labels.setdefault((path[k], path[k + 1]), len(labels))
                break
    return out
