"""The welfare optimum of a whole episode with perfect foresight: the benchmark of a policy's efficiency.

:func:`~p2p_gym.optim.step_optimum` takes each agent's battery power as given, so a policy that never uses its
battery still scores efficiency 1 step by step. :func:`episode_optimum` instead optimises the batteries and the
dispatchable generators of the community over ``steps`` market intervals at once, with perfect foresight of
loads, PV and prices, and :func:`episode_efficiency` measures a policy's realised welfare against it.

Model (one LP, or a QP when generators have a quadratic cost), for steps t = t0 … t0+K−1 and agents n, with
a_{t,n} = pv − load (kW), Δt = ``scenario.dt_hours``, η = ``scenario.battery_efficiency`` (one-way):

* Welfare (Le Goff Latimier & Ben Ahmed 2023, eq. 3: the centralised P2P optimum minimises the sum of the
  agents' costs; P2P trades are transfers inside the community and cancel, so only the grid supplier — a seller
  at the retail price, a buyer at the feed-in price, as in :func:`~p2p_gym.optim.step_optimum` — and the
  generation cost remain):

  W = Σ_t [ feed_in_t · E_t − retail_t · I_t − Σ_n ( ½ a_n (g_{t,n} Δt)² + b_n g_{t,n} Δt ) ]          (1)

  with ``gen_cost_a`` a_n in currency/kWh² per step and ``gen_cost_b`` b_n in currency/kWh, the units of
  :class:`~p2p_gym.scenarios.Scenario` and of the environment's production cost.
* Community balance (full netting: internal surplus meets internal need, the rest is traded with the grid):

  Σ_n (a_{t,n} + d_{t,n} − c_{t,n} + g_{t,n}) Δt = E_t − I_t,   E_t, I_t ≥ 0.                          (2)

* Batteries, the environment's model (:func:`p2p_gym.sim.stages.battery_dispatch`: discharging p kW for Δt hours
  removes p/η·Δt kWh, charging adds |p|·η·Δt), with charge c and discharge d:

  soc_{t+1,n} = soc_{t,n} + (η c_{t,n} − d_{t,n}/η) Δt,   0 ≤ c, d ≤ battery_kw_n,
  0 ≤ soc_{t,n} ≤ battery_kwh_n,   soc_{t0,n} given,   soc at the end free.                              (3)

  The terminal state of charge is free because the environment's episode reward does not value stored energy
  either: the optimum empties the batteries when that pays. Simultaneous charge and discharge is never
  profitable: prices are ≥ 0 (the scenario validates them), and any (c, d) > 0 with the same state-of-charge
  change is dominated by a one-sided point — d' = d − η²c (or c' = c − d/η²) keeps soc_{t+1} and injects at
  least as much, so welfare (2)/(1) does not fall. With ``line_limits`` an export-limited line is the exception:
  burning (1 − η²)·c kW in the battery then acts as curtailment, which the environment cannot do; the optimum is
  a relaxation (an upper bound) in that corner case.
* Generators (``gen_max_kw > 0``, the ``ieee39`` units): 0 ≤ g_{t,n} ≤ gen_max_kw_n. In the environment they
  produce only what they sell to peers and never export to the grid (the grid buys at most the prosumers' own
  surplus, as in :func:`~p2p_gym.optim.step_optimum`). The restriction matters: in ``ieee39`` the marginal
  cost b + a·g·Δt is at most 0.0003 + 8·10⁻⁸ · 1.1·10⁶ kW · 0.25 h ≈ 0.022 EUR/kWh, below the feed-in price
  0.081, so exporting generation would pay. It reads E_t ≤ Σ_n max(a_{t,n} + y_{t,n}, 0) Δt with y = d − c, which is
  non-convex in y; it is replaced by its tightest separable concave over-estimate, the secant of each convex
  term over the battery's power range [−battery_kw, battery_kw] (the envelope of a separable function on a box
  is the sum of the envelopes of its one-dimensional terms: Falk & Soland 1969, "An algorithm for separable
  nonconvex programming problems", Management Science 15(9); here mirrored, a concave envelope of convex terms):

  E_t ≤ Σ_n [ f_n(−P_n) + (y_{t,n} + P_n) · (f_n(P_n) − f_n(−P_n)) / (2 P_n) ] Δt,  f_n(y) = max(a_{t,n} + y, 0),

  and max(a_{t,n}, 0) for an agent without battery (P_n = 0). The bound is exact when no battery can flip its
  owner between surplus and need within the step — in particular without batteries (``ieee39``, where
  it equals step_optimum's rule) — and otherwise a relaxation, so the episode optimum stays an upper bound.
  Without generators the rule is void and not added.
* Line limits (``line_limits=True``, the environment's linear grid check of
  :class:`p2p_gym.grid.GridModel` ``mode="linear"``): a line's current is sqrt(I0² + (s·p_t)²) with I0 its
  no-load current, s its row of ``line_current_ka_per_kw`` and p_t the agents' injections (a + d − c + g, kW);
  the check counts it overloaded above ``max_i_ka`` (× the loading limit, 100 %). Hence the DC-style limits

  |s_l · p_t| ≤ sqrt(max_i_ka_l² − I0_l²)   for every line l with max_i_ka_l > 0 and every step t,          (4)

  and the problem is infeasible outright when I0_l ≥ max_i_ka_l. Transformers are not limited (the environment
  counts overloaded lines only).

Without batteries and generators the problem separates by step and its optimum is Σ_t step_optimum. The
reference W_ref of :func:`episode_efficiency` is closed-form: no P2P trade, batteries idle, generators off,
each agent settles its own a_{t,n} Δt with the grid (feed-in for a surplus, retail for a need).

Solvers: HiGHS for the LP (no quadratic generator cost), Clarabel for the QP; the problem is solved in scaled
units (power / the largest power of the instance, money / the largest retail price) with matrix variables
[K, agents with a battery / generator]. Lines that cannot reach their limit at any step (|s·a_t| + Σ |s_n| ·
largest flexible power ≤ F) are screened out of (4), and agents at one bus (identical sensitivity columns) enter
the line rows through their summed power. pandapower is imported (through :mod:`p2p_gym.grid`) only with
``line_limits=True``; the line sensitivities are cached per scenario.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import cvxpy.settings
import numpy as np
import scipy.sparse as sp

from p2p_gym.errors import OptimError

__all__ = ["EpisodeOptimum", "episode_efficiency", "episode_optimum"]

#: W* − W_ref at or below this (currency) means nothing to gain: :func:`episode_efficiency` returns None.
MIN_GAIN = 1e-9

#: The problem is bounded (welfare ≤ Σ feed_in · the largest export), so this status means infeasible.
_INFEASIBLE_OR_UNBOUNDED = cvxpy.settings.INFEASIBLE_OR_UNBOUNDED

#: line sensitivities per scenario: (s float[L, N] kA/kW, F float[L] kA or -1 where I0 ≥ max_i_ka)
_LINES: weakref.WeakKeyDictionary[Any, tuple[np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class EpisodeOptimum:
    """The welfare optimum of ``steps`` market intervals from ``t0`` (see :mod:`p2p_gym.optim.episode`).

    With ``status == "infeasible"`` (line limits that the inflexible load alone violates) the welfare and the
    schedules are nan; ``reference_welfare`` is always defined.
    """

    welfare: float
    """Currency: Σ_t feed_in·E_t − retail·I_t − generation cost, eq. (1)."""
    welfare_per_step: np.ndarray
    """float[K], currency: the terms of ``welfare`` per step."""
    reference_welfare: float
    """Currency: no P2P trade, batteries idle, generators off; each agent settles pv − load with the grid."""
    battery_kw: np.ndarray
    """float[K, N], kW: battery power, positive = discharge (d − c; 0 for agents without battery)."""
    soc_kwh: np.ndarray
    """float[K+1, N], kWh: state of charge at the start of each step and after the last one."""
    gen_kw: np.ndarray
    """float[K, N], kW: dispatchable generation (0 for agents without generator)."""
    import_kwh: np.ndarray
    """float[K], kWh: energy the community buys from the grid in each step."""
    export_kwh: np.ndarray
    """float[K], kWh: energy the community sells to the grid in each step."""
    status: str
    """``"optimal"`` or ``"infeasible"``."""
    solve_seconds: float
    """Wall time of building and solving the problem (s; the line sensitivities are cached per scenario)."""
    line_limits: bool
    """True when the DC line limits (4) were imposed."""


def episode_optimum(
    scenario: Any,
    t0: int,
    steps: int,
    initial_soc_kwh: np.ndarray | float = 0.5,
    line_limits: bool = False,
    solver: str | None = None,
) -> EpisodeOptimum:
    """The welfare optimum of scenario steps ``t0 … t0+steps−1`` with perfect foresight (module docstring).

    Args:
        scenario: a :class:`~p2p_gym.scenarios.Scenario`.
        t0: first step, 0 ≤ t0 < scenario.n_steps.
        steps: number of steps K ≥ 1 with t0 + K ≤ scenario.n_steps.
        initial_soc_kwh: state of charge at the start: a float in [0, 1] is a fraction of each battery's
            capacity (as the environment's ``initial_soc``), an array float[N] is kWh per agent in
            [0, battery_kwh].
        line_limits: impose the DC line limits (4) of the environment's linear grid model.
        solver: a cvxpy solver name; default HiGHS for the LP and Clarabel when generators have a > 0.

    Returns:
        The :class:`EpisodeOptimum`; ``status="infeasible"`` (welfare nan) when line limits cannot be met.

    Raises:
        OptimError: an argument out of range (the message names it and the allowed range), or a solver that
            fails or ends with a status other than optimal or infeasible.
    """
    start = time.perf_counter()
    sc = scenario
    t0, steps = _check_window(sc, t0, steps)
    soc0 = _initial_soc(sc, initial_soc_kwh)
    if not isinstance(line_limits, (bool, np.bool_)):
        raise OptimError(f"line_limits: must be True or False, got {line_limits!r}")
    if solver is not None and solver not in cp.installed_solvers():
        raise OptimError(f"solver: must be None or one of {cp.installed_solvers()}, got {solver!r}")
    window = slice(t0, t0 + steps)
    n, dt, eta = sc.n_agents, sc.dt_hours, float(sc.battery_efficiency)
    a_kw = np.asarray(sc.pv_kw[window] - sc.load_kw[window], dtype=np.float64)  # [K, N]
    retail = np.asarray(sc.retail_price[window], dtype=np.float64)
    feed_in = np.asarray(sc.feed_in_price[window], dtype=np.float64)
    reference = float(
        np.sum(feed_in[:, None] * np.maximum(a_kw, 0) - retail[:, None] * np.maximum(-a_kw, 0)) * dt
    )

    bat = np.flatnonzero((sc.battery_kwh > 0) & (sc.battery_kw > 0))
    gen = np.flatnonzero(sc.gen_max_kw > 0)
    lines = _line_rows(sc) if line_limits else None
    if lines is not None and np.any(lines[1] < 0):
        return _infeasible(sc, steps, soc0, reference, start, line_limits)

    # Scaled units: power / q kW, energy / (q Δt) kWh, money / m currency.
    q = max(float(np.abs(a_kw).max(initial=0.0)), float(sc.battery_kw.max(initial=0.0)))
    q = max(q, float(sc.gen_max_kw.max(initial=0.0)), 1e-6)
    m = max(float(retail.max()), 1e-6)
    e_unit = q * dt
    a_s = a_kw / q
    exp = cp.Variable(steps, nonneg=True, name="export")
    imp = cp.Variable(steps, nonneg=True, name="import")
    cons: list[Any] = []
    objective: Any = (feed_in / m) @ exp - (retail / m) @ imp
    community: Any = a_s.sum(axis=1)  # [K] scaled energy per step
    inj_parts: list[tuple[Any, np.ndarray, np.ndarray]] = []  # (variable [K, k], agent columns, max |·|)
    y = soc = None
    if bat.size:
        p_max = sc.battery_kw[bat] / q
        chg = cp.Variable((steps, bat.size), nonneg=True, name="charge")
        dis = cp.Variable((steps, bat.size), nonneg=True, name="discharge")
        soc = cp.Variable((steps + 1, bat.size), nonneg=True, name="soc")
        cons += [
            chg <= np.broadcast_to(p_max, (steps, bat.size)),
            dis <= np.broadcast_to(p_max, (steps, bat.size)),
            soc <= np.broadcast_to(sc.battery_kwh[bat] / e_unit, (steps + 1, bat.size)),
            soc[0] == soc0[bat] / e_unit,
            soc[1:] == soc[:-1] + eta * chg - dis / eta,
        ]
        y = dis - chg
        community = community + cp.sum(y, axis=1)
        inj_parts.append((y, bat, p_max))
    g = None
    if gen.size:
        g = cp.Variable((steps, gen.size), nonneg=True, name="generation")
        cons.append(g <= np.broadcast_to(sc.gen_max_kw[gen] / q, (steps, gen.size)))
        # cost per step ½ a (g Δt)² + b g Δt, in money / m with g = q g̃
        quad = sc.gen_cost_a[gen] * q * dt / m
        objective = objective - cp.sum(g @ (sc.gen_cost_b[gen] / m))
        if np.any(quad > 0):
            objective = objective - 0.5 * cp.sum_squares(cp.multiply(g, np.sqrt(quad)[None, :]))
        community = community + cp.sum(g, axis=1)
        inj_parts.append((g, gen, sc.gen_max_kw[gen] / q))
        cons.append(exp <= _export_bound(a_s, bat, sc.battery_kw / q, y))
    cons.append(community == exp - imp)
    if lines is not None:
        cons += _line_constraints(lines, a_s, q, inj_parts)
    problem = cp.Problem(cp.Maximize(objective), cons)
    is_qp = gen.size > 0 and bool(np.any(sc.gen_cost_a[gen] > 0))
    name = solver or (cp.CLARABEL if is_qp else cp.HIGHS)
    try:
        with _quiet_native_stdout(name == cp.HIGHS):  # HiGHS prints a banner from C++ on its first run
            problem.solve(solver=name)
    except cp.error.SolverError as exc:
        raise OptimError(f"episode_optimum: solver {name} failed: {exc}") from exc
    if problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE, _INFEASIBLE_OR_UNBOUNDED):
        return _infeasible(sc, steps, soc0, reference, start, line_limits)
    if problem.status != cp.OPTIMAL:
        raise OptimError(
            f"episode_optimum: solver {name} did not reach an optimum (status {problem.status!r}; expected "
            "'optimal' or 'infeasible')"
        )

    battery_kw = np.zeros((steps, n))
    soc_kwh = np.broadcast_to(soc0, (steps + 1, n)).copy()
    gen_kw = np.zeros((steps, n))
    if bat.size and y is not None and soc is not None:
        battery_kw[:, bat] = np.asarray(y.value) * q
        soc_kwh[:, bat] = np.clip(np.asarray(soc.value) * e_unit, 0.0, sc.battery_kwh[bat])
    if g is not None:
        gen_kw[:, gen] = np.clip(np.asarray(g.value) * q, 0.0, sc.gen_max_kw[gen])
    # The grid exchange from the physical balance (2) of the solved schedule, netted per step.
    net_kwh = (a_kw + battery_kw + gen_kw).sum(axis=1) * dt
    export_kwh, import_kwh = np.maximum(net_kwh, 0.0), np.maximum(-net_kwh, 0.0)
    gen_kwh = gen_kw * dt
    cost = (0.5 * sc.gen_cost_a * gen_kwh**2 + sc.gen_cost_b * gen_kwh).sum(axis=1)
    per_step = feed_in * export_kwh - retail * import_kwh - cost
    return EpisodeOptimum(
        welfare=float(per_step.sum()),
        welfare_per_step=per_step,
        reference_welfare=reference,
        battery_kw=battery_kw,
        soc_kwh=soc_kwh,
        gen_kw=gen_kw,
        import_kwh=import_kwh,
        export_kwh=export_kwh,
        status="optimal",
        solve_seconds=time.perf_counter() - start,
        line_limits=bool(line_limits),
    )


def episode_efficiency(realised_welfare: float, opt: EpisodeOptimum) -> float | None:
    """(W − W_ref) / (W* − W_ref): a policy's realised episode welfare W against the episode optimum W*.

    W_ref (``opt.reference_welfare``: no P2P trade, idle batteries, generators off) depends on the scenario and
    the window only, never on the policy, so every policy is ranked on one scale: 0 is the reference, 1 the
    optimum of :func:`episode_optimum`. A policy that trades perfectly but wastes its batteries' flexibility (or
    uses them against the prices) scores below 1, which the per-step optimum, taking battery power as given,
    cannot show. For a policy run from the same initial state of charge the value is at most 1 (W* relaxes every
    rule of the environment: full netting, free terminal state of charge); it can exceed 1 only when W* was
    computed with ``line_limits`` and the policy overloads lines.

    Args:
        realised_welfare: the policy's welfare over the same window (currency), e.g. the sum of the
            environment's per-step welfare.
        opt: the episode optimum of that window.

    Returns:
        The efficiency, or None when there is nothing to gain (W* − W_ref ≤ 1e-9) or W* is undefined
        (infeasible).
    """
    gain = opt.welfare - opt.reference_welfare
    if not np.isfinite(gain) or gain <= MIN_GAIN:
        return None
    return float((float(realised_welfare) - opt.reference_welfare) / gain)


# ----------------------------------------------------------------------------------------------- internals
@contextlib.contextmanager
def _quiet_native_stdout(active: bool) -> Iterator[None]:
    """Send what native code writes to the process's standard output to /dev/null while active (Python's own
    ``sys.stdout`` is untouched when it is not the process's file descriptor, e.g. under pytest's capture)."""
    try:
        fd = sys.__stdout__.fileno() if active and sys.__stdout__ is not None else -1
    except (OSError, ValueError):
        fd = -1
    if fd < 0:
        yield
        return
    sys.stdout.flush()
    saved, null = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


def _check_window(sc: Any, t0: Any, steps: Any) -> tuple[int, int]:
    n_steps = int(sc.n_steps)
    if isinstance(t0, bool) or not isinstance(t0, numbers.Integral) or not 0 <= int(t0) < n_steps:
        raise OptimError(f"t0: must be an integer in [0, {n_steps - 1}] (the scenario's steps), got {t0!r}")
    t0 = int(t0)
    if (
        isinstance(steps, bool)
        or not isinstance(steps, numbers.Integral)
        or not 1 <= int(steps) <= n_steps - t0
    ):
        raise OptimError(
            f"steps: must be an integer in [1, {n_steps - t0}] (t0 + steps ≤ {n_steps} scenario steps), "
            f"got {steps!r}"
        )
    return t0, int(steps)


def _initial_soc(sc: Any, value: Any) -> np.ndarray:
    cap = np.asarray(sc.battery_kwh, dtype=np.float64)
    if isinstance(value, bool):
        raise OptimError(
            f"initial_soc_kwh: expected a fraction in [0, 1] or float[{sc.n_agents}], got {value!r}"
        )
    if np.ndim(value) == 0:
        try:
            frac = float(value)
        except (TypeError, ValueError) as exc:
            raise OptimError(
                f"initial_soc_kwh: expected a fraction in [0, 1] or float[{sc.n_agents}] kWh, got {value!r:.60}"
            ) from exc
        if not (np.isfinite(frac) and 0.0 <= frac <= 1.0):
            raise OptimError(f"initial_soc_kwh: a scalar is a fraction of capacity in [0, 1], got {frac}")
        return frac * cap
    try:
        soc = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OptimError(f"initial_soc_kwh: expected float[{sc.n_agents}] kWh, got {value!r:.60}") from exc
    if soc.shape != (sc.n_agents,):
        raise OptimError(
            f"initial_soc_kwh: expected shape ({sc.n_agents},) (one kWh per agent), got {soc.shape}"
        )
    bad = ~np.isfinite(soc) | (soc < 0) | (soc > cap + 1e-9)
    if bad.any():
        i = int(np.argmax(bad))
        raise OptimError(
            f"initial_soc_kwh: agent {i} must be in [0, battery_kwh = {cap[i]:.6g}] kWh, got {soc[i]:.6g}"
        )
    return np.minimum(soc, cap)


def _line_rows(sc: Any) -> tuple[np.ndarray, np.ndarray]:
    """(s float[L', N] kA/kW, F float[L'] kA) of the limited lines; F < 0 marks a line that I0 alone overloads."""
    hit = _LINES.get(sc)
    if hit is None:
        from p2p_gym.grid import GridModel  # imports pandapower: only with line_limits

        model = GridModel(sc, "linear")
        sens = model.sensitivities
        s, i0 = sens["line_current_ka_per_kw"], sens["line_current_ka"]
        limit = model.max_i_ka * model.loading_limit_pct / 100.0
        keep = model.max_i_ka > 0  # the check never counts a line without a rating as overloaded
        head = limit**2 - i0**2
        f = np.where(head > 0, np.sqrt(np.clip(head, 0, None)), -1.0)
        hit = (np.asarray(s[keep], dtype=np.float64), np.asarray(f[keep], dtype=np.float64))
        _LINES[sc] = hit
    return hit


def _line_constraints(
    lines: tuple[np.ndarray, np.ndarray],
    a_s: np.ndarray,
    q: float,
    parts: list[tuple[Any, np.ndarray, np.ndarray]],
) -> list[Any]:
    """|s_l · p_t| ≤ F_l, eq. (4), in scaled units: rows divided by F so every bound is ±1."""
    s, f = lines
    rows = s * (q / f[:, None])  # per scaled kW, relative to the headroom
    fixed = a_s @ rows.T  # [K, L], the inflexible part of the flow
    # A line binds only if some step's flow can reach its limit: |fixed| + Σ_flexible |row| · (largest power)
    # ≤ 1 at every step means never (screened out, which keeps the problem small on robust feeders).
    reach = np.abs(fixed)
    for _var, cols, bound in parts:
        reach = reach + (np.abs(rows[:, cols]) @ bound)[None, :]
    active = reach.max(axis=0, initial=0.0) > 1.0 - 1e-9
    if not active.any():
        return []
    rows = rows[active]
    flow: Any = fixed[:, active]
    cons: list[Any] = []
    for var, cols, _ in parts:
        # Agents at one bus share a sensitivity column: sum their power first (z = var · member), so each line
        # row has one entry per bus instead of one per agent (sparser LP, several times faster on tiled feeders).
        cols_s, inverse = np.unique(rows[:, cols], axis=1, return_inverse=True)
        if cols_s.shape[1] < cols.size:
            member = sp.csr_matrix(
                (np.ones(cols.size), (np.arange(cols.size), inverse.reshape(-1))),
                shape=(cols.size, cols_s.shape[1]),
            )
            z = cp.Variable((var.shape[0], cols_s.shape[1]))
            cons.append(z == var @ member)
            flow = flow + z @ cols_s.T
        else:
            flow = flow + var @ rows[:, cols].T
    return [*cons, flow <= 1.0, flow >= -1.0]


def _export_bound(a_s: np.ndarray, bat: np.ndarray, p_all: np.ndarray, y: Any) -> Any:
    """Right-hand side of the generators' no-export rule, scaled: Σ_n secant of max(a + y, 0) on [−P, P]."""
    const = np.maximum(a_s, 0.0).sum(axis=1)  # agents without battery: max(a, 0)
    if not bat.size or y is None:
        return const
    p = p_all[bat][None, :]
    ab = a_s[:, bat]
    lo, hi = np.maximum(ab - p, 0.0), np.maximum(ab + p, 0.0)
    slope = (hi - lo) / (2.0 * p)
    # secant at y: lo + (y + P)·slope; the constant part replaces max(a, 0) of these agents
    base = const - np.maximum(ab, 0.0).sum(axis=1) + (lo + p * slope).sum(axis=1)
    return base + cp.sum(cp.multiply(slope, y), axis=1)


def _infeasible(
    sc: Any, steps: int, soc0: np.ndarray, reference: float, start: float, line_limits: bool
) -> EpisodeOptimum:
    n = sc.n_agents
    nan_kn = np.full((steps, n), np.nan)
    return EpisodeOptimum(
        welfare=float("nan"),
        welfare_per_step=np.full(steps, np.nan),
        reference_welfare=reference,
        battery_kw=nan_kn,
        soc_kwh=np.vstack([soc0[None, :], np.full((steps, n), np.nan)]),
        gen_kw=nan_kn.copy(),
        import_kwh=np.full(steps, np.nan),
        export_kwh=np.full(steps, np.nan),
        status="infeasible",
        solve_seconds=time.perf_counter() - start,
        line_limits=bool(line_limits),
    )
