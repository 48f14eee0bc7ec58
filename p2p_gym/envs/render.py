"""Rendering of the feeder: buses, line loading, agents' net positions and the step's trades."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np


@functools.lru_cache(maxsize=8)
def _layout_for(
    net_id: int, edges: tuple[tuple[int, int], ...], root: int, buses: tuple[int, ...]
) -> dict[int, tuple[float, float]]:
    """Tree layout: x = hop distance from the slack bus, y = order of the leaves below each bus."""
    import networkx as nx

    graph = nx.Graph()
    graph.add_nodes_from(buses)
    graph.add_edges_from(edges)
    pos: dict[int, tuple[float, float]] = {}
    next_y = [0.0]

    def place(node: int, parent: int | None, depth: int) -> float:
        children = [c for c in graph.neighbors(node) if c != parent and c not in pos]
        pos[node] = (float(depth), 0.0)
        if not children:
            y = next_y[0]
            next_y[0] += 1.0
        else:
            y = float(np.mean([place(c, node, depth + 1) for c in children]))
        pos[node] = (float(depth), y)
        return y

    for component in [root, *buses]:
        if component not in pos:
            place(component, None, 0)
    return pos


def feeder_layout(net: Any) -> dict[int, tuple[float, float]]:
    """Bus coordinates for plotting (a deterministic tree layout rooted at the external grid)."""
    edges = [(int(a), int(b)) for a, b in zip(net.line.from_bus, net.line.to_bus)]
    edges += [(int(a), int(b)) for a, b in zip(net.trafo.hv_bus, net.trafo.lv_bus)]
    if len(net.switch):
        sw = net.switch[(net.switch.et == "b") & net.switch.closed]
        edges += [(int(a), int(b)) for a, b in zip(sw.bus, sw.element)]
    root = int(net.ext_grid.bus.iloc[0]) if len(net.ext_grid) else int(net.bus.index[0])
    return _layout_for(id(net), tuple(edges), root, tuple(int(b) for b in net.bus.index))


def render_feeder(env: Any) -> Any:
    """Draw the plain env's feeder (see :func:`draw_feeder`) into its figure; ``rgb_array``: returns the frame."""
    return _render(env, env.last_outcome, env.t, env.steps_taken)


def _render(env: Any, out: Any, t: int, steps_taken: int, price: float | None = None) -> Any:
    import matplotlib

    if env.render_mode == "rgb_array":
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if getattr(env, "_fig", None) is None:
        env._fig = plt.figure(figsize=(9, 6))
    fig = env._fig
    draw_feeder(fig, env.scenario, env.mechanism, out, t, steps_taken, price)
    if env.render_mode == "human":
        plt.pause(0.001)
        return None
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def render_batch(env: Any) -> Any:
    """The vector env's frames: ``rgb_array``: a tuple of one frame per sub-episode (Gymnasium's convention for
    vector envs); ``human``: draws sub-episode 0."""
    last = env.last_step

    def frame(b: int) -> Any:
        out = None if last is None else last.record(b)
        price = None if last is None else float(last.clearing_price[b])
        return _render(env, out, int(env.t[b]), int(env.sim_state.step[b]), price)

    if env.render_mode == "human":
        return frame(0)
    return tuple(frame(b) for b in range(env.num_envs))


def draw_feeder(
    fig: Any, sc: Any, mechanism: str, out: Any, t: int, steps_taken: int, price: float | None = None
) -> None:
    """Draw the feeder with line loading, agents (colour = net injection) and trades (arrows seller → buyer)
    of one step's outcome ``out`` (None before the first step) into the matplotlib figure ``fig``.

    On the vectorised clearing path (uniform price and community rules in a batch) no individual trades are
    formed: no arrows are drawn and the title shows ``price``, the clearing price of that path."""
    import matplotlib.pyplot as plt

    net = sc.net
    pos = feeder_layout(net)
    fig.clf()
    ax = fig.add_subplot(111)
    loading = None
    if out is not None and out.report is not None and out.report.converged:
        loading = out.report.line_loading_pct
    cmap = plt.get_cmap("RdYlGn_r")
    for i, (a, b) in enumerate(zip(net.line.from_bus, net.line.to_bus)):
        (x0, y0), (x1, y1) = pos[int(a)], pos[int(b)]
        c = cmap(min(loading[i] / 100.0, 1.0)) if loading is not None else "0.6"
        ax.plot(
            [x0, x1],
            [y0, y1],
            color=c,
            lw=2 + (3 * min(loading[i] / 100.0, 1.5) if loading is not None else 0),
        )
    for a, b in zip(net.trafo.hv_bus, net.trafo.lv_bus):
        (x0, y0), (x1, y1) = pos[int(a)], pos[int(b)]
        ax.plot([x0, x1], [y0, y1], color="k", lw=3, ls=":")
    xy = np.array([pos[int(b)] for b in sc.bus])
    inj = out.injection_kw if out is not None else np.zeros(sc.n_agents)
    lim = max(float(np.abs(inj).max()), 1e-6)
    sca = ax.scatter(
        xy[:, 0], xy[:, 1], c=inj, cmap="coolwarm_r", vmin=-lim, vmax=lim, s=120, zorder=3, edgecolors="k"
    )
    if out is not None and out.result is not None:
        tr = out.result.trades
        qmax = max(float(tr.quantity.max(initial=0.0)), 1e-9)
        for s, b, q in zip(tr.seller, tr.buyer, tr.quantity):
            (x0, y0), (x1, y1) = xy[s], xy[b]
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={
                    "arrowstyle": "->",
                    "color": "tab:green",
                    "lw": 0.5 + 2.5 * q / qmax,
                    "alpha": 0.7,
                    "connectionstyle": "arc3,rad=0.25",
                },
                zorder=4,
            )
    fig.colorbar(sca, ax=ax, label="agent net injection (kW, + = export)")
    if loading is not None:
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 100))
        fig.colorbar(sm, ax=ax, label="line loading (%)")
    hour = sc.hour_of_day(out.t if out is not None else t)
    if out is not None and out.result is not None:
        price = out.result.clearing_price
    elif price is None:
        price = float("nan")
    minutes = round(float(hour) * 60)
    price_txt = f"price {price:.3f} {sc.currency}/kWh" if np.isfinite(price) else "no P2P trade"
    ax.set_title(
        f"{sc.name} · {mechanism} · step {steps_taken} · {minutes // 60:02d}:{minutes % 60:02d} · {price_txt}"
    )
    ax.set_axis_off()
    fig.tight_layout()
