"""The welfare optimum of a whole episode with perfect foresight: the benchmark of a policy's efficiency.

:func:`~p2p_gym.optim.step_optimum` takes each agent's battery power as given, so a policy that never uses its
battery still scores efficiency 1 step by step. :func:`episode_optimum` instead optimises every flexible asset of
the community — batteries, dispatchable generators, EV charging sessions, heat pumps within their energy band,
curtailable PV and flexible demand — over ``steps`` market intervals at once, with perfect foresight of loads, PV
and prices, and :func:`episode_efficiency` measures a policy's realised welfare against it.

Model (one LP, or a QP when generators or flexible demand have a quadratic term), for steps t = t0 … t0+K−1
and agents n, Δt = ``scenario.dt_hours``, η = ``scenario.battery_efficiency`` (one-way). Per agent and step:
p PV used, ``load`` the inflexible load, h heat-pump consumption, e EV charging, c/d battery charge/discharge,
g generation (kW), q flexible demand (kWh in the step).

* Welfare (Le Goff Latimier & Ben Ahmed 2023, eq. 3: the centralised P2P optimum maximises the sum of the
  agents' utilities minus their costs; P2P trades are transfers inside the community and cancel, so only the
  grid supplier — a seller at the retail price, a buyer at the feed-in price, as in
  :func:`~p2p_gym.optim.step_optimum` — the consumers' utility, the generation cost and the battery wear remain):

  W = Σ_t [ feed_in_t · E_t − retail_t · I_t + Σ_n ( β_n q_{t,n} − ½ α_n q_{t,n}² )
            − Σ_n ( ½ a_n (g_{t,n} Δt)² + b_n g_{t,n} Δt ) − Σ_n κ_n (c_{t,n} + d_{t,n}) Δt ]              (1)

  with ``gen_cost_a`` a_n in currency/kWh² per step and ``gen_cost_b`` b_n in currency/kWh, ``flex_util_a`` α_n
  and ``flex_util_b`` β_n likewise (the consumers' utility of the same eq. 3), and ``battery_cost`` κ_n in
  currency per kWh charged or discharged (linear throughput wear), the units of
  :class:`~p2p_gym.scenarios.Scenario` and of the environment.
* Community balance (full netting: internal surplus meets internal need, the rest is traded with the grid):

  Σ_n (p − load − h − e − q/Δt + d − c + g)_{t,n} Δt = E_t − I_t,   E_t, I_t ≥ 0.                         (2)

* Batteries, the environment's model (:func:`p2p_gym.sim.stages.battery_dispatch`: discharging p kW for Δt hours
  removes p/η·Δt kWh, charging adds |p|·η·Δt), with charge c and discharge d:

  soc_{t+1,n} = soc_{t,n} + (η c_{t,n} − d_{t,n}/η) Δt,   0 ≤ c, d ≤ battery_kw_n,
  0 ≤ soc_{t,n} ≤ battery_kwh_n,   soc_{t0,n} given,   soc at the end free.                              (3)

  With ``terminal_value="free"`` (the default) the terminal state of charge is not valued, as in the
  environment's episode reward with the same option: the optimum empties the batteries when that pays. With
  ``"valued"`` see (10). Simultaneous charge and discharge is never
  profitable: prices are ≥ 0 (the scenario validates them), and any (c, d) > 0 with the same state-of-charge
  change is dominated by a one-sided point — d' = d − η²c (or c' = c − d/η²) keeps soc_{t+1}, injects at
  least as much and wears the battery less (κ ≥ 0), so welfare (2)/(1) does not fall. With ``line_limits`` and
  PV that may not be curtailed, an export-limited line is the exception: burning (1 − η²)·c kW in the battery
  then acts as curtailment, which the environment cannot do; the optimum is a relaxation (an upper bound) in that
  corner case.
* Generators (``gen_max_kw > 0``, the ``ieee39`` units): 0 ≤ g_{t,n} ≤ gen_max_kw_n. In the environment they
  produce only what they sell to peers and never export to the grid (the grid buys at most the prosumers' own
  surplus, as in :func:`~p2p_gym.optim.step_optimum`). The restriction matters: in ``ieee39`` the marginal
  cost b + a·g·Δt is at most 0.0003 + 8·10⁻⁸ · 1.1·10⁶ kW · 0.25 h ≈ 0.022 EUR/kWh, below the feed-in price
  0.081, so exporting generation would pay. With x_{t,n} = (p − load − h − e − q/Δt + d − c)_{t,n} an agent's
  own net, it reads E_t ≤ Σ_n max(x_{t,n}, 0) Δt, which is non-convex; it is replaced by its tightest separable
  concave over-estimate, the secant of each convex term over the range [lo_{t,n}, hi_{t,n}] that the bounds of
  the agent's flexible assets allow x_{t,n} (the envelope of a separable function on a box is the sum of the
  envelopes of its one-dimensional terms: Falk & Soland 1969, "An algorithm for separable nonconvex programming
  problems", Management Science 15(9); here mirrored, a concave envelope of convex terms):

  E_t ≤ Σ_n [ max(lo, 0) + (x − lo) · (max(hi, 0) − max(lo, 0)) / (hi − lo) ]_{t,n} Δt,

  and max(x_{t,n}, 0) for an agent without flexibility (lo = hi). The bound is exact when no agent's flexibility
  can flip it between surplus and need within the step — in particular without flexible assets (``ieee39``,
  where it equals step_optimum's rule) — and otherwise a relaxation, so the episode optimum stays an upper bound.
  Without generators the rule is void and not added.
* Line limits (``line_limits=True``, the environment's linear grid check of
  :class:`p2p_gym.grid.GridModel` ``mode="linear"``): a line's current is sqrt(I0² + (A_t + s·p_t)²) with s its
  row of ``line_current_ka_per_kw``, p_t the agents' injections (the terms of (2), kW), A_t = A0 + s_bg·b_t the
  signed active current at zero agent injection — A0 (``line_active_current_ka``) from the net's other elements,
  s_bg·b_t from the scenario's background injections ``background_kw[t]`` (as the environment passes them to
  the check) — and I0 (``line_current_ka``) the reactive rest at zero injection; the check counts it overloaded
  above ``max_i_ka`` (× the loading limit, 100 %). Hence the DC-style limits, with F_l = sqrt(max_i_ka_l² − I0_l²),

  −F_l − A_{t,l} ≤ s_l · p_t ≤ F_l − A_{t,l}   for every line l with max_i_ka_l > 0 and every step t,     (4)

  and the problem is infeasible outright when I0_l ≥ max_i_ka_l. Transformers are not limited (the environment
  counts overloaded lines only).
* EV charging sessions (``ev_sessions``, no V2G). A session (n, a, d, E, P) is plugged in at steps a ≤ t < d;
  the window keeps its part [a', d') = [max(a, t0), min(d, t0+K)) and the energy

  E' = E · (d' − a') / (d − a),   0 ≤ e_{t,n} ≤ P on [a', d'),   Σ_{t∈[a',d')} e_{t,n} Δt = E',             (5)

  and e_{t,n} = 0 while no session of n is plugged in. E' = E for a session inside the window. For a session cut
  by the window start the energy still missing at t0 is unknown to the optimum (it depends on how the EV charged
  before), and for one cut by the window end the energy due after the window is not the window's business; both
  take the energy pro rata to the window's share of the session's steps, what a constant-power charge over the
  whole session would draw in the window. E' ≤ P (d' − a') Δt because the scenario validates E ≤ P (d − a) Δt,
  so (5) is always feasible.
* Heat pumps (``hp_max_kw > 0`` and ``hp_band_kwh > 0``; a heat pump without band follows its reference
  ``hp_kw`` r exactly), an energy band around the reference profile:

  0 ≤ h_{t,n} ≤ hp_max_kw_n,   D_{t+1,n} = D_{t,n} + (h_{t,n} − r_{t,n}) Δt,   D_{t0,n} = 0,
  −hp_band_kwh_n ≤ D_{t,n} ≤ hp_band_kwh_n  for t = t0+1 … t0+K.                                           (6)

  With ``terminal_value="free"`` the terminal deviation D_{t0+K} is free within the band (the environment's
  reward with that option does not value it either), so the optimum ends the window pre-heated or deferred,
  whichever pays; with ``"valued"`` see (10).
* PV: 0 ≤ p_{t,n} ≤ pv_kw_{t,n} when ``pv_curtailable``, else p = pv_kw.                                   (7)
  Without line limits p = pv_kw is optimal and fixed: prices are ≥ 0, so more PV never lowers welfare (the
  energy is netted against an import or exported at feed-in ≥ 0, and the generators' export bound only grows
  with it). With ``line_limits`` the curtailment pv_kw − p is a variable at the steps and agents where it can
  relieve a line that can reach its limit (screening below); elsewhere, by the same argument, p = pv_kw.
* Flexible demand (``flex_max_kw > 0``): 0 ≤ q_{t,n} ≤ flex_max_kw_n Δt kWh in each step, valued by the
  utility β q − ½ α q² of (1). Alone at the margin an agent consumes q = clip((β − price)/α, 0, flex_max Δt)
  (marginal utility = price), and everything when α = 0 and β > price.                                      (8)

* Terminal value (``terminal_value="valued"``, :func:`p2p_gym.market.terminal_cost`, the environment's rule): with
  the last step's prices r_T, f_T and s⁻, s⁺, H⁻, H⁺ ≥ 0,

  soc_{t0+K,n} − soc_{t0,n} = s⁺_n − s⁻_n,   D_{t0+K,n} = H⁺_n − H⁻_n,
  welfare −= Σ_n [ r_T (s⁻_n / η + H⁻_n) − f_T (η s⁺_n + H⁺_n) ].                                        (10)

  A deficit is bought back at retail at the battery's terminals, a surplus is worth feed-in; r_T/η > f_T η keeps
  s⁻ s⁺ = 0 (and H⁻ H⁺ = 0) at an optimum, so (10) is the concave valuation exactly.

A scenario with none of the assets (5)–(8) and no battery wear gets the problem of the batteries-and-generators
model that preceded them (same variables and constraints, identical results), except under ``line_limits``
where PV export can overload a line: PV is ``pv_curtailable`` by default, so curtailment may now raise the
welfare of such a case or make it feasible. Without batteries, generators and the assets (5)–(8) the problem
separates by step and its optimum is Σ_t step_optimum.

Reference W_ref (:attr:`EpisodeOptimum.reference_welfare`, :func:`episode_efficiency`): closed form, no solver,
independent of any policy — no P2P trade, batteries idle (no wear), generators off, heat pumps at their
reference profile r, PV not curtailed, flexible demand 0, and every EV charging on arrival (the usual
uncontrolled-charging reference): at P from a' until E' of (5) is delivered, e_t = min(P, max(0, E'/Δt − (t −
a')·P)). Each agent settles its own net x^ref = pv − load − r − e^ref with the grid step by step (feed-in for a
surplus, retail for a need):

  W_ref = Σ_t Σ_n [ feed_in_t · max(x^ref_{t,n}, 0) − retail_t · max(−x^ref_{t,n}, 0) ] Δt.                (9)

The reference delivers the same EV energy E' as (5), so for the EVs W* − W_ref values when the energy is bought,
not how much. It is a feasible point of (1)–(8) (the battery idles at its initial charge, D stays 0), and full
netting never loses against each agent settling alone (feed-in ≤ retail), so W* ≥ W_ref without line limits.

Solvers: HiGHS for the LP (no quadratic generator cost, α = 0), Clarabel for the QP; the problem is solved in
scaled units (power / the largest power of the instance, money / the largest retail price) with matrix variables
[K, agents with the asset]; an EV column holds every session of its agent (plugged steps as a mask in its upper
bound, one sparse row per session for (5)). Lines that cannot reach their limit at any step (the interval of
A_t + s·p_t over the assets' bounds stays within ±F) are screened out of (4), PV is curtailable only where that
relieves a line that can bind, and agents at one bus (identical sensitivity columns) enter the line rows through
their summed power. pandapower is imported (through :mod:`p2p_gym.grid`) only with ``line_limits=True``; the line
sensitivities are cached per scenario.
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
from typing import Any, NamedTuple

import cvxpy as cp
import cvxpy.settings
import numpy as np
import scipy.sparse as sp

from p2p_gym.errors import OptimError
from p2p_gym.market.settlement import terminal_cost

__all__ = ["EpisodeOptimum", "episode_efficiency", "episode_optimum"]

#: W* − W_ref at or below this (currency) means nothing to gain: :func:`episode_efficiency` returns None.
MIN_GAIN = 1e-9

#: The problem is bounded (welfare ≤ Σ feed_in · the largest export + Σ utility), so this status means infeasible.
_INFEASIBLE_OR_UNBOUNDED = cvxpy.settings.INFEASIBLE_OR_UNBOUNDED

#: the limited lines' linear model per scenario (:class:`_LineModel`)
_LINES: weakref.WeakKeyDictionary[Any, _LineModel] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class EpisodeOptimum:
    """The welfare optimum of ``steps`` market intervals from ``t0`` (see :mod:`p2p_gym.optim.episode`).

    With ``status == "infeasible"`` (line limits that the inflexible load alone violates) the welfare and the
    schedules are nan; ``reference_welfare`` is always defined.
    """

    welfare: float
    """Currency: Σ_t feed_in·E_t − retail·I_t + flexible-demand utility − generation cost − battery wear, eq. (1)."""
    welfare_per_step: np.ndarray
    """float[K], currency: the terms of ``welfare`` per step (they sum to it)."""
    reference_welfare: float
    """Currency: W_ref of eq. (9): no P2P trade, batteries idle, generators off, heat pumps at their reference,
    EVs charging on arrival, PV not curtailed, no flexible demand; each agent settles its own net with the grid."""
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
    ev_kw: np.ndarray
    """float[K, N], kW ≥ 0: EV charging power, eq. (5) (0 for agents without a session plugged in)."""
    hp_kw: np.ndarray
    """float[K, N], kW ≥ 0: heat-pump consumption, eq. (6) (the reference profile for a heat pump without band,
    0 for agents without heat pump)."""
    pv_used_kw: np.ndarray
    """float[K, N], kW ≥ 0: PV used, eq. (7) (the available ``pv_kw`` unless curtailed)."""
    flex_kwh: np.ndarray
    """float[K, N], kWh ≥ 0: flexible demand consumed in each step, eq. (8) (0 for agents without)."""
    terminal_value: str = "free"
    """``"free"`` or ``"valued"`` (eq. 10: the last entry of ``welfare_per_step`` includes the terminal value)."""


class _LineModel(NamedTuple):
    """The limited lines of the environment's linear check (rated lines only): the sensitivities ``s`` float[L', N]
    (kA/kW), the headroom ``f`` float[L'] (kA; −1 where I0 alone reaches the limit), the active current at zero
    injection ``a0`` float[L'] (kA, signed) and the background elements' sensitivities ``s_bg`` float[L', K]."""

    s: np.ndarray
    f: np.ndarray
    a0: np.ndarray
    s_bg: np.ndarray


class _Part(NamedTuple):
    """Flexible injections of some agents in scaled kW (positive = into the grid): ``expr`` [K, k] ranges over
    [lo, hi] (float[K, k]) for the agents ``cols`` (int[k])."""

    expr: Any
    cols: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


class _EvWindow(NamedTuple):
    """The EV sessions cut to a window (eq. 5): ``cols`` int[k] agents with a session; per session its column,
    first step and number of steps in the window, energy E' (kWh) and charger power (kW); ``upper`` float[K, k]
    kW the charger power at plugged steps (0 elsewhere)."""

    cols: np.ndarray
    col: np.ndarray
    start: np.ndarray
    length: np.ndarray
    energy_kwh: np.ndarray
    max_kw: np.ndarray
    upper: np.ndarray

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(session, step offset in the window, steps since the session's first step in the window) of every
        plugged (step, session) cell."""
        session = np.repeat(np.arange(self.col.size), self.length)
        since = np.arange(session.size) - np.repeat(np.cumsum(self.length) - self.length, self.length)
        return session, self.start[session] + since, since

    def on_arrival_kw(self, dt: float) -> np.ndarray:
        """float[K, k] kW: charge on arrival at ``max_kw`` until E' is delivered (the reference, eq. 9)."""
        session, t, since = self.cells()
        p = self.max_kw[session]
        kw = np.minimum(p, np.maximum(0.0, self.energy_kwh[session] / dt - since * p))
        out = np.zeros_like(self.upper)
        out[t, self.col[session]] = kw
        return out


def episode_optimum(
    scenario: Any,
    t0: int,
    steps: int,
    initial_soc_kwh: np.ndarray | float = 0.5,
    line_limits: bool = False,
    solver: str | None = None,
    terminal_value: str = "free",
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
        solver: a cvxpy solver name; default HiGHS for the LP and Clarabel when generators or flexible demand
            have a quadratic term (a > 0).
        terminal_value: ``"free"`` (the stores' terminal state is not valued) or ``"valued"`` (eq. 10, the
            environment's option of the same name).

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
    if terminal_value not in ("free", "valued"):
        raise OptimError(f"terminal_value: must be 'free' or 'valued', got {terminal_value!r}")
    valued = terminal_value == "valued"
    if solver is not None and solver not in cp.installed_solvers():
        raise OptimError(f"solver: must be None or one of {cp.installed_solvers()}, got {solver!r}")
    window = slice(t0, t0 + steps)
    n, dt, eta = sc.n_agents, sc.dt_hours, float(sc.battery_efficiency)
    pv_kw = np.asarray(sc.pv_kw[window], dtype=np.float64)
    load_kw = np.asarray(sc.load_kw[window], dtype=np.float64)
    hp_ref = np.asarray(sc.hp_kw[window], dtype=np.float64)
    retail = np.asarray(sc.retail_price[window], dtype=np.float64)
    feed_in = np.asarray(sc.feed_in_price[window], dtype=np.float64)
    bat = np.flatnonzero((sc.battery_kwh > 0) & (sc.battery_kw > 0))
    gen = np.flatnonzero(sc.gen_max_kw > 0)
    hp = np.flatnonzero((sc.hp_max_kw > 0) & (sc.hp_band_kwh > 0))
    flex = np.flatnonzero(sc.flex_max_kw > 0)
    ev = _ev_window(sc, t0, steps)
    wear = sc.battery_cost[bat]

    # The reference (9) in closed form.
    ev_ref = np.zeros((steps, n))
    ev_ref[:, ev.cols] = ev.on_arrival_kw(dt)
    x_ref = pv_kw - load_kw - hp_ref - ev_ref
    reference = float(
        np.sum(feed_in[:, None] * np.maximum(x_ref, 0) - retail[:, None] * np.maximum(-x_ref, 0)) * dt
    )

    lines = _line_rows(sc) if line_limits else None
    if lines is not None and np.any(lines.f < 0):
        return _infeasible(sc, steps, soc0, reference, start, line_limits, terminal_value)

    # Inflexible net injection (kW): PV (curtailment is a separate variable), load, heat pumps without band.
    hp_fixed = hp_ref.copy()
    hp_fixed[:, hp] = 0.0
    a_kw = pv_kw - load_kw - hp_fixed
    # Scaled units: power / q kW, energy / (q Δt) kWh; the objective in money / (m · q Δt) currency.
    q = max(float(np.abs(a_kw).max(initial=0.0)), float(sc.battery_kw.max(initial=0.0)))
    q = max(q, float(sc.gen_max_kw.max(initial=0.0)), 1e-6)
    q = max(q, float(sc.hp_max_kw.max(initial=0.0)), float(sc.flex_max_kw.max(initial=0.0)))
    q = max(q, float(ev.max_kw.max(initial=0.0)))
    m = max(float(retail.max()), 1e-6)
    e_unit = q * dt
    a_s = a_kw / q

    def box(cols: np.ndarray, upper: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(upper, dtype=np.float64), (steps, cols.size))

    # Which lines can bind, from the bounds of every flexible injection, and where PV is worth curtailing.
    bounds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (cols, lo, hi) scaled kW
    if bat.size:
        bounds.append((bat, box(bat, -sc.battery_kw[bat] / q), box(bat, sc.battery_kw[bat] / q)))
    if gen.size:
        bounds.append((gen, box(gen, 0.0), box(gen, sc.gen_max_kw[gen] / q)))
    if hp.size:
        bounds.append((hp, box(hp, -sc.hp_max_kw[hp] / q), box(hp, 0.0)))
    if ev.cols.size:
        bounds.append((ev.cols, -ev.upper / q, np.zeros_like(ev.upper)))
    if flex.size:
        bounds.append((flex, box(flex, -sc.flex_max_kw[flex] / q), box(flex, 0.0)))
    line_rows = curtail_kw = None
    pv_cols = np.zeros(0, np.int64)
    if lines is not None:
        base_ka = lines.a0 + _background(sc, window) @ lines.s_bg.T  # [K, L'] A_t of (4)
        line_rows, curtail_kw = _active_lines(
            lines, base_ka, a_s, q, bounds, pv_kw if sc.pv_curtailable else None
        )
        if curtail_kw is not None:
            pv_cols = np.flatnonzero(curtail_kw.max(axis=0, initial=0.0) > 0)
            curtail_kw = curtail_kw[:, pv_cols]

    exp = cp.Variable(steps, nonneg=True, name="export")
    imp = cp.Variable(steps, nonneg=True, name="import")
    cons: list[Any] = []
    objective: Any = (feed_in / m) @ exp - (retail / m) @ imp
    community: Any = a_s.sum(axis=1)  # [K] scaled energy per step
    parts: list[_Part] = []  # the prosumers' flexible injections (the generators' are apart: `gen_part`)
    soc = chg = dis = None
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
        parts.append(_Part(y, bat, box(bat, -p_max), box(bat, p_max)))
        if np.any(wear > 0):  # κ (c + d) Δt
            objective = objective - cp.sum((chg + dis) @ (wear / m))
        if valued:  # eq. (10), batteries
            s_short = cp.Variable(bat.size, nonneg=True, name="terminal_deficit")
            s_long = cp.Variable(bat.size, nonneg=True, name="terminal_surplus")
            cons.append(soc[steps] - soc0[bat] / e_unit == s_long - s_short)
            objective = (
                objective
                - (retail[-1] / eta / m) * cp.sum(s_short)
                + (feed_in[-1] * eta / m) * cp.sum(s_long)
            )
    g = gen_part = None
    if gen.size:
        g = cp.Variable((steps, gen.size), nonneg=True, name="generation")
        cons.append(g <= np.broadcast_to(sc.gen_max_kw[gen] / q, (steps, gen.size)))
        # cost per step ½ a (g Δt)² + b g Δt, in money / m with g = q g̃
        quad = sc.gen_cost_a[gen] * q * dt / m
        objective = objective - cp.sum(g @ (sc.gen_cost_b[gen] / m))
        if np.any(quad > 0):
            objective = objective - 0.5 * cp.sum_squares(cp.multiply(g, np.sqrt(quad)[None, :]))
        community = community + cp.sum(g, axis=1)
        gen_part = _Part(g, gen, box(gen, 0.0), box(gen, sc.gen_max_kw[gen] / q))
    h = None
    if hp.size:  # eq. (6): deviation D after each step within ±band (scaled energy)
        h = cp.Variable((steps, hp.size), nonneg=True, name="heat_pump")
        dev = cp.Variable((steps, hp.size), name="hp_deviation")
        ref = hp_ref[:, hp] / q
        band = np.broadcast_to(sc.hp_band_kwh[hp] / e_unit, (steps, hp.size))
        cons += [
            h <= np.broadcast_to(sc.hp_max_kw[hp] / q, (steps, hp.size)),
            dev[0] == h[0] - ref[0],
            dev[1:] == dev[:-1] + h[1:] - ref[1:],
            dev <= band,
            dev >= -band,
        ]
        if valued:  # eq. (10), heat pumps
            h_short = cp.Variable(hp.size, nonneg=True, name="terminal_hp_deficit")
            h_long = cp.Variable(hp.size, nonneg=True, name="terminal_hp_surplus")
            cons.append(dev[steps - 1] == h_long - h_short)
            objective = objective - (retail[-1] / m) * cp.sum(h_short) + (feed_in[-1] / m) * cp.sum(h_long)
        community = community - cp.sum(h, axis=1)
        parts.append(_Part(-h, hp, box(hp, -sc.hp_max_kw[hp] / q), box(hp, 0.0)))
    e = None
    if ev.cols.size:  # eq. (5): the plugged steps as an upper-bound mask, one sparse energy row per session
        e = cp.Variable((steps, ev.cols.size), nonneg=True, name="ev")
        session, t, _ = ev.cells()
        rows = sp.csr_matrix(
            (np.ones(session.size), (session, t + steps * ev.col[session])),
            shape=(ev.col.size, steps * ev.cols.size),
        )
        cons += [e <= ev.upper / q, rows @ cp.vec(e, order="F") == ev.energy_kwh / e_unit]
        community = community - cp.sum(e, axis=1)
        parts.append(_Part(-e, ev.cols, -ev.upper / q, np.zeros_like(ev.upper)))
    x = None
    if flex.size:  # eq. (8): q = x̃ · q Δt kWh, utility β q − ½ α q²
        upper = sc.flex_max_kw[flex] / q
        x = cp.Variable((steps, flex.size), nonneg=True, name="flex_demand")
        cons.append(x <= np.broadcast_to(upper, (steps, flex.size)))
        objective = objective + cp.sum(x @ (sc.flex_util_b[flex] / m))
        quad_u = sc.flex_util_a[flex] * e_unit / m
        if np.any(quad_u > 0):
            objective = objective - 0.5 * cp.sum_squares(cp.multiply(x, np.sqrt(quad_u)[None, :]))
        community = community - cp.sum(x, axis=1)
        parts.append(_Part(-x, flex, box(flex, -upper), box(flex, 0.0)))
    r = None
    if pv_cols.size and curtail_kw is not None:  # eq. (7) where it can relieve a line: curtailment r = pv − p
        r = cp.Variable((steps, pv_cols.size), nonneg=True, name="curtailment")
        cons.append(r <= curtail_kw / q)
        community = community - cp.sum(r, axis=1)
        parts.append(_Part(-r, pv_cols, -curtail_kw / q, np.zeros((steps, pv_cols.size))))
    if gen_part is not None:
        cons.append(exp <= _export_bound(a_s, parts))
    cons.append(community == exp - imp)
    if line_rows is not None and line_rows[0].shape[0]:
        flexible = [*parts, *([gen_part] if gen_part is not None else [])]
        if not flexible:  # nothing can move the flows: feasible or not as they stand
            if np.abs(line_rows[1]).max() > 1.0 + 1e-9:
                return _infeasible(sc, steps, soc0, reference, start, line_limits, terminal_value)
        else:
            cons += _line_constraints(*line_rows, flexible)
    problem = cp.Problem(cp.Maximize(objective), cons)
    is_qp = (gen.size > 0 and bool(np.any(sc.gen_cost_a[gen] > 0))) or bool(np.any(sc.flex_util_a[flex] > 0))
    name = solver or (cp.CLARABEL if is_qp else cp.HIGHS)
    try:
        with _quiet_native_stdout(name == cp.HIGHS):  # HiGHS prints a banner from C++ on its first run
            problem.solve(solver=name)
    except cp.error.SolverError as exc:
        raise OptimError(f"episode_optimum: solver {name} failed: {exc}") from exc
    if problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE, _INFEASIBLE_OR_UNBOUNDED):
        return _infeasible(sc, steps, soc0, reference, start, line_limits, terminal_value)
    if problem.status != cp.OPTIMAL:
        raise OptimError(
            f"episode_optimum: solver {name} did not reach an optimum (status {problem.status!r}; expected "
            "'optimal' or 'infeasible')"
        )

    def value(var: Any, upper: Any) -> np.ndarray:
        return np.clip(np.asarray(var.value) * q, 0.0, upper)

    battery_kw = np.zeros((steps, n))
    soc_kwh = np.broadcast_to(soc0, (steps + 1, n)).copy()
    gen_kw = np.zeros((steps, n))
    ev_kw = np.zeros((steps, n))
    hp_kw = hp_fixed
    pv_used_kw = pv_kw.copy()
    flex_kwh = np.zeros((steps, n))
    wear_cost = np.zeros(steps)
    if chg is not None and dis is not None and soc is not None:
        battery_kw[:, bat] = (np.asarray(dis.value) - np.asarray(chg.value)) * q
        soc_kwh[:, bat] = np.clip(np.asarray(soc.value) * e_unit, 0.0, sc.battery_kwh[bat])
        throughput = value(chg, sc.battery_kw[bat]) + value(dis, sc.battery_kw[bat])  # c + d, kW
        wear_cost = throughput @ wear * dt
    if g is not None:
        gen_kw[:, gen] = value(g, sc.gen_max_kw[gen])
    if h is not None:
        hp_kw[:, hp] = value(h, sc.hp_max_kw[hp])
    if e is not None:
        ev_kw[:, ev.cols] = value(e, ev.upper)
    if x is not None:
        flex_kwh[:, flex] = value(x, sc.flex_max_kw[flex]) * dt
    if r is not None:
        pv_used_kw[:, pv_cols] -= value(r, curtail_kw)
    # The grid exchange from the physical balance (2) of the solved schedule, netted per step.
    net_kw = pv_used_kw - load_kw - hp_kw - ev_kw + battery_kw + gen_kw
    net_kwh = net_kw.sum(axis=1) * dt - flex_kwh.sum(axis=1)
    export_kwh, import_kwh = np.maximum(net_kwh, 0.0), np.maximum(-net_kwh, 0.0)
    gen_kwh = gen_kw * dt
    cost = (0.5 * sc.gen_cost_a * gen_kwh**2 + sc.gen_cost_b * gen_kwh).sum(axis=1)
    utility = (sc.flex_util_b * flex_kwh - 0.5 * sc.flex_util_a * flex_kwh**2).sum(axis=1)
    per_step = feed_in * export_kwh - retail * import_kwh - cost + utility - wear_cost
    if valued:  # eq. (10) in the last step, by the environment's own rule
        hp_dev_kwh = ((hp_kw - hp_ref) * dt).sum(
            axis=0
        )  # 0 but for the banded heat pumps (hp_kw = r elsewhere)
        per_step[-1] -= float(
            terminal_cost(soc0, soc_kwh[-1], eta, hp_dev_kwh, retail[-1], feed_in[-1]).sum()
        )
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
        ev_kw=ev_kw,
        hp_kw=hp_kw,
        pv_used_kw=pv_used_kw,
        flex_kwh=flex_kwh,
        terminal_value=terminal_value,
    )


def episode_efficiency(realised_welfare: float, opt: EpisodeOptimum) -> float | None:
    """(W − W_ref) / (W* − W_ref): a policy's realised episode welfare W against the episode optimum W*.

    W_ref (``opt.reference_welfare``, eq. 9: no P2P trade, idle batteries, generators off, heat pumps at their
    reference, EVs charging on arrival, no curtailment, no flexible demand) depends on the scenario and the window
    only, never on the policy, so every policy is ranked on one scale: 0 is the reference, 1 the optimum of
    :func:`episode_optimum`. A policy that trades perfectly but wastes its devices' flexibility (or uses them
    against the prices) scores below 1, which the per-step optimum, taking battery power as given, cannot show.
    For a policy run from the same initial state (state of charge; heat-pump deviation 0) the value is at most 1
    (W* relaxes every rule of the environment, full netting first, and values the stores' terminal state as the
    environment does with the same ``terminal_value``); it can exceed 1 when W* was computed with ``line_limits``
    and the policy overloads lines, or when the policy's EVs draw more or less than the pro-rata energy (5) of
    sessions cut by the window.

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


def _ev_window(sc: Any, t0: int, steps: int) -> _EvWindow:
    """The sessions plugged in at some step of [t0, t0 + steps), cut to it with the pro-rata energy of eq. (5)."""
    s = np.asarray(sc.ev_sessions, dtype=np.float64).reshape(-1, 5)
    end = t0 + steps
    s = s[(s[:, 1] < end) & (s[:, 2] > t0)]
    arrive, depart = s[:, 1].astype(np.int64), s[:, 2].astype(np.int64)
    first, stop = np.maximum(arrive, t0), np.minimum(depart, end)
    length = stop - first
    cut = length < depart - arrive
    energy = np.where(cut, s[:, 3] * length / np.maximum(depart - arrive, 1), s[:, 3])
    cols, col = np.unique(s[:, 0].astype(np.int64), return_inverse=True)
    upper = np.zeros((steps, cols.size))
    window = _EvWindow(cols, col.reshape(-1), first - t0, length, energy, s[:, 4].copy(), upper)
    session, t, _ = window.cells()
    upper[t, window.col[session]] = window.max_kw[session]
    return window


def _line_rows(sc: Any) -> _LineModel:
    """The limited lines' linear model (:class:`_LineModel`); F < 0 marks a line that I0 alone overloads."""
    hit = _LINES.get(sc)
    if hit is None:
        from p2p_gym.grid import GridModel  # imports pandapower: only with line_limits
        from p2p_gym.grid.model import line_headroom_ka

        model = GridModel(sc, "linear")
        sens = model.sensitivities
        s, i0 = sens["line_current_ka_per_kw"], sens["line_current_ka"]
        keep = model.max_i_ka > 0  # the check never counts a line without a rating as overloaded
        head = line_headroom_ka(model.max_i_ka, i0, model.loading_limit_pct)
        f = np.where(head > 0, head, -1.0)  # NaN (I0 alone overloads) and 0 mark infeasible rows
        hit = _LineModel(
            np.asarray(s[keep], dtype=np.float64),
            np.asarray(f[keep], dtype=np.float64),
            np.asarray(sens["line_active_current_ka"][keep], dtype=np.float64),
            np.asarray(sens["line_current_ka_per_kw_background"][keep], dtype=np.float64),
        )
        _LINES[sc] = hit
    return hit


def _background(sc: Any, window: slice) -> np.ndarray:
    """float[K, K_bg], kW: the scenario's background injections in the window (K_bg = 0 without)."""
    bg = np.asarray(getattr(sc, "background_kw", np.zeros((0, 0))), dtype=np.float64)
    if not bg.size:
        return np.zeros((window.stop - window.start, bg.shape[1] if bg.ndim == 2 else 0))
    return bg[window]


def _active_lines(
    lines: _LineModel,
    base_ka: np.ndarray,
    a_s: np.ndarray,
    q: float,
    bounds: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    pv_kw: np.ndarray | None,
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
    """The rows of (4) that can bind and the PV that may be worth curtailing.

    Returns ((rows, fixed), curtail_kw): ``rows`` float[L', N] the limited lines that can bind, scaled (per scaled
    kW, divided by F so every bound is ±1), ``fixed`` float[K, L'] their inflexible flow (from the agents'
    inflexible injections ``a_s`` and the active current at zero agent injection ``base_ka`` float[K, L] kA, A_t
    of (4), both over F), and ``curtail_kw`` float[K, N] the upper bound of the curtailment (kW; None without
    curtailable PV): a line binds only if the interval of A_t + s·p_t over the flexible injections' bounds
    (``bounds``: agent columns, lower and upper bound [K, k], scaled kW; curtailment of all of ``pv_kw``
    included) leaves [−1, 1] at some step; the others are screened out, which keeps the problem small on robust
    feeders. Curtailing agent n at step t can only pay when it relieves a line that can reach its limit in the
    direction of n's injection (s_ln > 0 and the upper end > 1, or s_ln < 0 and the lower end < −1): elsewhere
    using the PV keeps every line within its limits and never lowers welfare (module docstring, (7)), so the
    curtailment is fixed at 0 there.
    """
    s, f = lines.s, lines.f
    rows = s * (q / f[:, None])  # per scaled kW, relative to the headroom
    fixed = a_s @ rows.T + base_ka / f  # [K, L], the inflexible part of the flow

    def flow_range(every: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        top, bottom = fixed.copy(), fixed.copy()
        for cols, lo, hi in every:
            pos, neg = np.maximum(rows[:, cols], 0.0), np.minimum(rows[:, cols], 0.0)
            top += hi @ pos.T + lo @ neg.T
            bottom += lo @ pos.T + hi @ neg.T
        return top, bottom

    curtail = None
    if pv_kw is not None:  # where curtailment can relieve a line, with every PV curtailable in the ranges
        cols = np.flatnonzero(pv_kw.max(axis=0, initial=0.0) > 0)
        top, bottom = flow_range(
            [*bounds, (cols, -pv_kw[:, cols] / q, np.zeros((fixed.shape[0], cols.size)))]
        )
        over, under = (top > 1.0 - 1e-9).astype(np.float64), (bottom < -1.0 + 1e-9).astype(np.float64)
        useful = (over @ (rows > 0) + under @ (rows < 0)) > 0  # [K, N]
        curtail = np.where(useful, pv_kw, 0.0)
        cols = np.flatnonzero(curtail.max(axis=0, initial=0.0) > 0)
        bounds = [*bounds, (cols, -curtail[:, cols] / q, np.zeros((fixed.shape[0], cols.size)))]
    top, bottom = flow_range(bounds)
    active = np.maximum(np.abs(top), np.abs(bottom)).max(axis=0, initial=0.0) > 1.0 - 1e-9
    return (rows[active], fixed[:, active]), curtail


def _line_constraints(rows: np.ndarray, fixed: np.ndarray, parts: list[_Part]) -> list[Any]:
    """−F_l ≤ A_{t,l} + s_l · p_t ≤ F_l, eq. (4), for the rows that can bind (:func:`_active_lines`), in scaled units.

    The rows are dense (a line's current depends on every agent's injection), so the flexible injections enter
    them once per bus: the parts' powers are first summed per distinct sensitivity column (agents at one bus share
    one; z = Σ_parts var · member), so that each line row has one entry per bus instead of one per agent and
    device (a sparser LP, several times faster on tiled feeders and with several devices per agent).
    """
    cols = np.concatenate([part.cols for part in parts])
    cols_s, inverse = np.unique(rows[:, cols], axis=1, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(parts) == 1 and cols_s.shape[1] == cols.size:
        flow: Any = fixed + parts[0].expr @ rows[:, cols].T
        return [flow <= 1.0, flow >= -1.0]
    total: Any = 0
    offset = 0
    for part in parts:
        k = part.cols.size
        member = sp.csr_matrix(
            (np.ones(k), (np.arange(k), inverse[offset : offset + k])), shape=(k, cols_s.shape[1])
        )
        total = total + part.expr @ member
        offset += k
    z = cp.Variable((fixed.shape[0], cols_s.shape[1]))
    flow = fixed + z @ cols_s.T
    return [z == total, flow <= 1.0, flow >= -1.0]


def _export_bound(a_s: np.ndarray, parts: list[_Part]) -> Any:
    """Right-hand side of the generators' no-export rule, scaled: Σ_n secant of max(x, 0) over the range [lo, hi]
    of each agent's own net x (its inflexible part ``a_s`` plus its flexible injections ``parts``)."""
    lo, hi = a_s.copy(), a_s.copy()
    for part in parts:
        lo[:, part.cols] += part.lo
        hi[:, part.cols] += part.hi
    width = hi - lo
    slope = np.divide(
        np.maximum(hi, 0.0) - np.maximum(lo, 0.0), width, out=np.zeros_like(width), where=width > 0
    )
    # secant at x: max(lo, 0) + (x − lo)·slope, with x − lo = Σ_parts (expr − part.lo)
    bound: Any = np.maximum(lo, 0.0).sum(axis=1)
    for part in parts:
        s = slope[:, part.cols]
        bound = bound - (s * part.lo).sum(axis=1) + cp.sum(cp.multiply(s, part.expr), axis=1)
    return bound


def _infeasible(
    sc: Any,
    steps: int,
    soc0: np.ndarray,
    reference: float,
    start: float,
    line_limits: bool,
    terminal_value: str,
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
        ev_kw=nan_kn.copy(),
        hp_kw=nan_kn.copy(),
        pv_used_kw=nan_kn.copy(),
        flex_kwh=nan_kn.copy(),
        terminal_value=terminal_value,
    )
