"""Problem builders: one environment step (prosumers + grid supplier), a scenario step, and IEEE 39-bus.

pandapower is imported lazily inside :func:`ieee39_problem` and :func:`ptdf_from_net` only.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from p2p_gym.errors import OptimError
from p2p_gym.optim.problem import P2PProblem

__all__ = ["from_positions", "from_scenario_step", "ieee39_problem", "ptdf_from_net", "random_market"]


def from_positions(
    net_kwh: Any,
    retail_price: float,
    feed_in_price: float,
    *,
    flexibility_kwh: Any = 0.0,
    a_flex: float = 1.0,
    adjacency: Any = None,
    preference: Any = None,
) -> P2PProblem:
    """The P2P problem of one environment step, with the grid supplier as two extra peers.

    Agents 0..N−1 are the prosumers; agent N is the grid *seller* (f = retail·p, 0 ≤ p ≤ big) and agent N+1
    the grid *buyer* (f = feed_in·p, −big ≤ p ≤ 0, i.e. it pays feed_in per unit bought), with big = Σ|net| +
    Σ flex (enough to cover any position). Both grid peers trade with every prosumer, not with each other.
    ``problem.n_prosumers == N`` and ``problem.grid_peers == [N, N+1]``.

    Prosumer n has the fixed net position ``net_kwh[n]`` (> 0 surplus) unless ``flexibility_kwh[n] > 0``: it
    may then deviate by up to that amount at the cost ½·a_flex·(p − net)² (the constant ½·a_flex·net² is in
    ``cost_offset``, so the cost is the deviation cost). Welfare = −Σ f = −retail·import + feed_in·export −
    deviation costs − preferences. With fixed positions and full connectivity the optimum gains
    (retail − feed_in)·min(S, D) over grid-only trading (S, D: total surplus and need).

    Args:
        net_kwh: float[N], net position of each prosumer for the step (kWh; > 0 surplus, < 0 need).
        retail_price: price of buying from the grid (currency/kWh).
        feed_in_price: price of selling to the grid (currency/kWh), ≤ retail_price.
        flexibility_kwh: float[N] or scalar ≥ 0, allowed deviation from the position.
        a_flex: > 0, quadratic cost of deviating (currency/kWh²).
        adjacency: bool[N, N] | None, peer graph among prosumers (None = full).
        preference: float[N, N] | None, β among prosumers (trades with the grid carry none).

    Returns:
        The :class:`P2PProblem` with N + 2 agents.
    """
    net = np.array(net_kwh, dtype=np.float64).reshape(-1)
    n = net.size
    if n < 1 or not np.all(np.isfinite(net)):
        raise OptimError(f"net_kwh: expected a non-empty finite 1-D array, got {net_kwh!r}")
    retail, feed_in = float(retail_price), float(feed_in_price)
    if not (np.isfinite(retail) and np.isfinite(feed_in)):
        raise OptimError(f"retail_price, feed_in_price: must be finite, got {retail}, {feed_in}")
    if feed_in > retail:
        raise OptimError(f"feed_in_price: must be ≤ retail_price={retail:g}, got {feed_in:g}")
    flex = np.broadcast_to(np.asarray(flexibility_kwh, dtype=np.float64), (n,)).copy()
    if not np.all(np.isfinite(flex)) or np.any(flex < 0):
        raise OptimError(f"flexibility_kwh: must be finite and ≥ 0, got min {flex.min():g}")
    if not (np.isfinite(a_flex) and a_flex > 0):
        raise OptimError(f"a_flex: must be finite and > 0, got {a_flex}")
    has_flex = flex > 0
    a = np.where(has_flex, a_flex, 0.0)
    b = -a * net
    offset = float(np.sum(0.5 * a * net * net))
    big = float(np.abs(net).sum() + flex.sum()) + 1.0
    adj = np.ones((n + 2, n + 2), dtype=bool)
    np.fill_diagonal(adj, False)
    adj[n, n + 1] = adj[n + 1, n] = False
    if adjacency is not None:
        sub = np.asarray(adjacency, dtype=bool)
        if sub.shape != (n, n):
            raise OptimError(f"adjacency: expected shape ({n}, {n}), got {sub.shape}")
        adj[:n, :n] = sub
    pref = None
    if preference is not None:
        sub_p = np.asarray(preference, dtype=np.float64)
        if sub_p.shape != (n, n):
            raise OptimError(f"preference: expected shape ({n}, {n}), got {sub_p.shape}")
        pref = np.zeros((n + 2, n + 2))
        pref[:n, :n] = sub_p
    return P2PProblem(
        a=np.r_[a, 0.0, 0.0],
        b=np.r_[b, retail, feed_in],
        p_min=np.r_[net - flex, 0.0, -big],
        p_max=np.r_[net + flex, big, 0.0],
        adjacency=adj,
        preference=pref,
        cost_offset=offset,
        n_prosumers=n,
    )


def random_market(n: int, rng: np.random.Generator) -> P2PProblem:
    """A random fully connected market of the ADMM benchmarks and figures (the setting of Le Goff Latimier
    & Ben Ahmed 2023, §5).

    Agents 0..⌊n/2⌋−1 are producers (marginal cost b + a·p, b ~ U[1, 4], 0 ≤ p ≤ cap), the rest consumers
    (marginal value b − a·q, b ~ U[5, 9], −cap ≤ p ≤ 0); a ~ U[0.5, 2], cap ~ U[1, 5] (units and currency
    arbitrary). The draws come from ``rng`` only.
    """
    if n < 2:
        raise OptimError(f"n: expected at least 2 agents, got {n}")
    prod = np.arange(n) < n // 2
    a = rng.uniform(0.5, 2.0, n)
    b = np.where(prod, rng.uniform(1.0, 4.0, n), rng.uniform(5.0, 9.0, n))
    cap = rng.uniform(1.0, 5.0, n)
    return P2PProblem(a, b, np.where(prod, 0.0, -cap), np.where(prod, cap, 0.0))


def from_scenario_step(scenario: Any, t: int, **kwargs: Any) -> P2PProblem:
    """:func:`from_positions` for step ``t`` of a scenario.

    Uses ``scenario.pv_kw[t]``, ``scenario.load_kw[t]`` (kW, agents on the last axis),
    ``scenario.step_minutes``, ``scenario.retail_price[t]`` and ``scenario.feed_in_price[t]``; the net position
    is (pv − load)·step_minutes/60 kWh. Extra keyword arguments go to :func:`from_positions`.
    """
    n_steps = len(scenario.pv_kw)
    if not 0 <= int(t) < n_steps:
        raise OptimError(f"t: expected a step in [0, {n_steps}), got {t}")
    hours = float(scenario.step_minutes) / 60.0
    net = (np.asarray(scenario.pv_kw[t], dtype=np.float64) - np.asarray(scenario.load_kw[t])) * hours
    return from_positions(net, float(scenario.retail_price[t]), float(scenario.feed_in_price[t]), **kwargs)


def ptdf_from_net(net: Any) -> tuple[np.ndarray, np.ndarray]:
    """DC PTDF of a pandapower net (lines then transformers, in the internal branch order) and the ratings.

    Runs ``pandapower.rundcpp`` to build the internal case, then ``pandapower.pypower.makePTDF`` with the
    reference (ext_grid) bus as slack. Branch ratings are the case's RATE_A (MVA).

    Returns:
        (ptdf float[L, B] indexed by pandapower bus position, rate_a float[L]).
    """
    import pandapower as pp
    from pandapower.pypower.idx_brch import RATE_A
    from pandapower.pypower.idx_bus import BUS_TYPE, REF
    from pandapower.pypower.makePTDF import makePTDF

    pp.rundcpp(net)
    ppc = net._ppc
    slack = int(np.flatnonzero(ppc["bus"][:, BUS_TYPE] == REF)[0])
    ptdf = makePTDF(ppc["baseMVA"], ppc["bus"], ppc["branch"], slack=slack)
    lookup = np.asarray(net._pd2ppc_lookups["bus"])
    cols = lookup[np.asarray(net.bus.index)]
    return np.asarray(ptdf)[:, cols], np.asarray(ppc["branch"][:, RATE_A].real, dtype=np.float64)


def ieee39_problem(
    *,
    line_limits: bool = False,
    rating_scale: float = 1.0,
    value_of_load: float = 40.0,
    reference_price: float = 15.0,
    load_margin: float = 1.2,
    peers: Literal["full", "bipartite"] = "full",
) -> P2PProblem:
    """The IEEE 39-bus market of 000 (pandapower ``case39``): 10 generators and 21 loads as peers (MW, €).

    * Producers: the 9 ``gen`` and the ``ext_grid`` with their ``poly_cost`` (case39 gives every unit
      cp2 = 0.01 €/MW², cp1 = 0.3 €/MW, cp0 = 0.2 €; the constant is dropped), so a = 2·cp2, b = cp1, and
      p ∈ [min_p_mw, max_p_mw].
    * Consumers: each load j (nominal L_j MW) has the utility of a linear demand curve whose willingness to pay
      is ``value_of_load`` €/MWh for the first MW and ``reference_price`` at the nominal load:
      b = value_of_load, a = (value_of_load − reference_price)/L_j, p ∈ [−load_margin·L_j, 0]. The default
      value (40 €/MWh) exceeds every generator's marginal cost at full output (0.02·1100 + 0.3 = 22.3 €/MWh).
    * Peers: ``"full"`` (everybody trades with everybody) or ``"bipartite"`` (producers with consumers).
    * ``line_limits=True`` adds the DC limits of the 46 branches (35 lines + 11 transformers; PTDF from the
      branch reactances, ratings RATE_A × ``rating_scale``).
    """
    import pandapower.networks as pn

    if not (np.isfinite(rating_scale) and rating_scale > 0):
        raise OptimError(f"rating_scale: must be finite and > 0, got {rating_scale}")
    if not value_of_load > reference_price > 0:
        raise OptimError(
            f"value_of_load, reference_price: need value_of_load > reference_price > 0, "
            f"got {value_of_load}, {reference_price}"
        )
    if not load_margin >= 1.0:
        raise OptimError(f"load_margin: must be ≥ 1, got {load_margin}")
    if peers not in ("full", "bipartite"):
        raise OptimError(f"peers: expected 'full' or 'bipartite', got {peers!r}")
    net = pn.case39()
    cost = net.poly_cost.set_index(["et", "element"])
    units = [("gen", i) for i in net.gen.index] + [("ext_grid", i) for i in net.ext_grid.index]
    g_bus, g_a, g_b, g_min, g_max = [], [], [], [], []
    for et, idx in units:
        tab = getattr(net, et)
        g_bus.append(int(tab.at[idx, "bus"]))
        g_a.append(2.0 * float(cost.at[(et, idx), "cp2_eur_per_mw2"]))
        g_b.append(float(cost.at[(et, idx), "cp1_eur_per_mw"]))
        g_min.append(float(tab.at[idx, "min_p_mw"]))
        g_max.append(float(tab.at[idx, "max_p_mw"]))
    loads = net.load[net.load.p_mw > 0]
    nominal = loads.p_mw.to_numpy(dtype=np.float64)
    n_g, n_l = len(units), len(nominal)
    a = np.r_[g_a, (value_of_load - reference_price) / nominal]
    b = np.r_[g_b, np.full(n_l, value_of_load)]
    p_min = np.r_[g_min, -load_margin * nominal]
    p_max = np.r_[g_max, np.zeros(n_l)]
    adj = np.ones((n_g + n_l, n_g + n_l), dtype=bool)
    np.fill_diagonal(adj, False)
    if peers == "bipartite":
        adj[:n_g, :n_g] = False
        adj[n_g:, n_g:] = False
    bus_pos = {b_: i for i, b_ in enumerate(net.bus.index)}
    bus = np.array([bus_pos[x] for x in [*g_bus, *loads.bus.astype(int)]], dtype=np.int64)
    kw: dict[str, Any] = {}
    if line_limits:
        ptdf, rate = ptdf_from_net(net)
        kw = {"bus": bus, "ptdf": ptdf, "line_max": rate * rating_scale}
    return P2PProblem(a=a, b=b, p_min=p_min, p_max=p_max, adjacency=adj, **kw)
