"""The welfare optimum of one market interval of a scenario, given the agents' physical positions.

Used by the simulation to report efficiency (:func:`p2p_gym.market.efficiency`); takes the scenario and the
positions, never an environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["step_optimum"]


def step_optimum(scenario: Any, t: Any, net_kwh: np.ndarray) -> Any:
    """Optimal welfare (currency) of scenario step(s) ``t`` given the physical net positions ``net_kwh``.

    Args:
        scenario: a :class:`~p2p_gym.scenarios.Scenario`.
        t: scenario step, int or int[B].
        net_kwh: float[N] or float[B, N], each agent's physical net energy in the step (kWh, positive = export),
            dispatchable generation included.

    Returns:
        float, or float[B] for batched input.

    With fixed positions (households) the optimum matches all internal surplus with internal need and trades only
    the rest with the grid: ``W* = −retail · max(D − S, 0) + feed_in · max(S − D, 0)`` with S and D the
    community's total surplus and need (vectorised over the batch). With dispatchable generators (``ieee39``)
    their output is free in [0, gen_max · dt] at cost ½ a p² + b p, and the centralised P2P QP of
    :func:`p2p_gym.optim.solve_centralized` (Le Goff Latimier & Ben Ahmed 2023, eq. 3) is solved per row with the
    grid supplier as two extra peers (a seller at the retail price, a buyer at the feed-in price); generators sell
    only to peers (they produce what they sell), so the grid buys at most the prosumers' own surplus.
    """
    net = np.asarray(net_kwh, dtype=np.float64)
    single = net.ndim == 1
    net2 = net[None, :] if single else net
    tt = np.broadcast_to(np.asarray(t, dtype=np.int64), (len(net2),))
    sc = scenario
    retail, feed_in = sc.retail_price[tt], sc.feed_in_price[tt]
    gen = sc.gen_max_kw > 0
    if not gen.any():
        surplus = np.clip(net2, 0, None).sum(axis=1)
        need = np.clip(-net2, 0, None).sum(axis=1)
        out = -retail * np.maximum(need - surplus, 0.0) + feed_in * np.maximum(surplus - need, 0.0)
    else:
        out = np.array([_with_generators(sc, int(t_b), row) for t_b, row in zip(tt, net2)])
    return float(out[0]) if single else out


def _with_generators(sc: Any, t: int, net_kwh: np.ndarray) -> float:
    from p2p_gym.optim.centralized import solve_centralized
    from p2p_gym.optim.problem import P2PProblem

    dt = sc.dt_hours
    retail, feed_in = float(sc.retail_price[t]), float(sc.feed_in_price[t])
    gen = sc.gen_max_kw > 0
    base = net_kwh - np.where(gen, np.clip(net_kwh + sc.load_kw[t] * dt, 0, None), 0.0)  # without generation
    cap = sc.gen_max_kw * dt
    big = float(np.abs(base).sum() + cap.sum()) + 1.0
    n = len(net_kwh)
    export_max = float(np.clip(base[~gen], 0, None).sum())
    problem = P2PProblem(
        a=np.concatenate([np.where(gen, sc.gen_cost_a, 0.0), [0.0, 0.0]]),
        b=np.concatenate([np.where(gen, sc.gen_cost_b, 0.0), [retail, feed_in]]),
        p_min=np.concatenate([base, [0.0, -export_max]]),
        p_max=np.concatenate([base + np.where(gen, cap, 0.0), [big, 0.0]]),
        n_prosumers=n,
    )
    return float(solve_centralized(problem).welfare)
