"""The P2P market problem (Le Goff Latimier & Ben Ahmed 2023, eq. 3 and 12) and its solution type.

The problem is

    min  Σ_n f_n(Σ_m p_nm) + Σ_n Σ_m β_nm·|p_nm|      f_n(p) = ½·a_n·p² + b_n·p
    s.t. p_nm = −p_mn,  −T_mn ≤ p_nm ≤ T_nm  (0 if n and m are not peers),
         p_min_n ≤ Σ_m p_nm ≤ p_max_n,
         |PTDF · P_bus| ≤ F   (optional DC line limits)

with p_n > 0 producing (selling) and p_n < 0 consuming (buying). ``T_nm = trade_max[n, m]`` is the most
n may sell to m, so the reciprocal trade p_mn = −p_nm is bounded by ``T_nm`` from below, consistently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from p2p_gym.errors import OptimError

__all__ = ["Edges", "InfeasibleError", "P2PProblem", "P2PSolution"]


class InfeasibleError(OptimError):
    """The P2P problem has no feasible trades (bounds, peer graph or line limits cannot be met)."""


def _vec(name: str, value: Any, n: int | None) -> np.ndarray:
    arr: np.ndarray | None = (
        np.array(value, dtype=np.float64, copy=True).reshape(-1) if np.ndim(value) else None
    )
    if arr is None:
        if n is None:
            raise OptimError(f"{name}: expected a 1-D array, got the scalar {value!r}")
        arr = np.full(n, float(value))
    if n is not None and arr.shape != (n,):
        raise OptimError(f"{name}: expected shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise OptimError(f"{name}: all entries must be finite, got {arr[~np.isfinite(arr)][:3]}")
    arr.setflags(write=False)
    return arr


def _mat(name: str, value: Any, shape: tuple[int, int], dtype: type = np.float64) -> np.ndarray:
    arr: np.ndarray = np.array(value, dtype=dtype, copy=True)
    if arr.shape != shape:
        raise OptimError(f"{name}: expected shape {shape}, got {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Edges:
    """Directed-edge (sparse) storage of a peer graph: edge e is the trade p_{src[e], dst[e]}.

    Edges are sorted by ``src`` then ``dst``; ``rev[e]`` is the index of the reverse edge (m, n) and
    ``pair[e]`` the index of the undirected pair (shared by e and rev[e]); ``fwd`` lists the edges with
    src < dst (one per pair, ordered by pair index).
    """

    src: np.ndarray  # int[E]
    dst: np.ndarray  # int[E]
    rev: np.ndarray  # int[E]
    pair: np.ndarray  # int[E], in [0, E/2)
    fwd: np.ndarray  # int[E/2]
    degree: np.ndarray  # int[N], number of peers

    @property
    def n_edges(self) -> int:
        """Number of directed edges E (twice the number of peer pairs)."""
        return int(self.src.size)


@dataclass(frozen=True)
class P2PProblem:
    """A P2P market instance (validated, immutable).

    Attributes:
        a: float[N] ≥ 0, quadratic cost coefficient (currency/unit²).
        b: float[N], linear cost coefficient (currency/unit); for a consumer, its willingness to pay.
        p_min: float[N], lower bound on the net injection Σ_m p_nm (negative = consumption).
        p_max: float[N] ≥ p_min, upper bound on the net injection.
        adjacency: bool[N, N] | None, symmetric peer graph without self-loops; None = fully connected.
        preference: float[N, N] ≥ 0 | None, β_nm: cost per unit of |p_nm| borne by n (preferences,
            product differentiation, network fees γ_nm of Le Goff Latimier & Ben Ahmed 2023, eq. 12).
        trade_max: float[N, N] ≥ 0 | None, T_nm: the most n may sell to m (p_nm ≤ T_nm, p_nm ≥ −T_mn);
            +inf allowed; None = unlimited.
        bus: int[N] | None, column of ``ptdf`` at which each agent is connected.
        ptdf: float[L, B] | None, DC power transfer distribution factors (line flow per unit injection).
        line_max: float[L] > 0 | None, line flow limits F (same unit as the powers).
        cost_offset: constant added to the reported cost (e.g. ½·a·x₀² of a cost written around x₀).
        n_prosumers: number of leading agents that are prosumers; agents after them are grid peers
            (see :func:`~p2p_gym.optim.from_positions`). None = all agents are prosumers.
    """

    a: np.ndarray
    b: np.ndarray
    p_min: np.ndarray
    p_max: np.ndarray
    adjacency: np.ndarray | None = None
    preference: np.ndarray | None = None
    trade_max: np.ndarray | None = None
    bus: np.ndarray | None = None
    ptdf: np.ndarray | None = None
    line_max: np.ndarray | None = None
    cost_offset: float = 0.0
    n_prosumers: int | None = field(default=None)

    def __post_init__(self) -> None:
        a = _vec("a", self.a, None)
        n = a.size
        if n < 1:
            raise OptimError("a: at least one agent is required, got 0")
        set_ = object.__setattr__
        set_(self, "a", a)
        for name in ("b", "p_min", "p_max"):
            set_(self, name, _vec(name, getattr(self, name), n))
        if np.any(a < 0):
            raise OptimError(f"a: must be ≥ 0 (convex costs), got min {a.min():g}")
        bad = np.flatnonzero(self.p_min > self.p_max)
        if bad.size:
            i = int(bad[0])
            raise OptimError(
                f"p_min: must be ≤ p_max, got p_min[{i}]={self.p_min[i]:g} > p_max[{i}]={self.p_max[i]:g}"
            )
        if self.adjacency is not None:
            adj = _mat("adjacency", self.adjacency, (n, n), bool)
            if not np.array_equal(adj, adj.T):
                raise OptimError("adjacency: must be symmetric (peering is mutual)")
            if np.any(np.diag(adj)):
                raise OptimError("adjacency: diagonal must be False (no self-trades)")
            set_(self, "adjacency", adj)
        if self.preference is not None:
            pref = _mat("preference", self.preference, (n, n))
            if not np.all(np.isfinite(pref)) or np.any(pref < 0):
                raise OptimError(f"preference: must be finite and ≥ 0, got min {np.nanmin(pref):g}")
            set_(self, "preference", pref)
        if self.trade_max is not None:
            tm = _mat("trade_max", self.trade_max, (n, n))
            if np.any(np.isnan(tm)) or np.any(tm < 0):
                raise OptimError(f"trade_max: must be ≥ 0 (inf allowed), got min {np.nanmin(tm):g}")
            set_(self, "trade_max", tm)
        net = (self.bus is not None, self.ptdf is not None, self.line_max is not None)
        if any(net) and not all(net):
            raise OptimError(f"bus, ptdf, line_max: give all three or none, got {net}")
        if all(net):
            ptdf = np.array(self.ptdf, dtype=np.float64, copy=True)
            if ptdf.ndim != 2 or not np.all(np.isfinite(ptdf)):
                raise OptimError(f"ptdf: expected a finite 2-D array [L, B], got shape {ptdf.shape}")
            n_lines, n_bus = ptdf.shape
            bus = np.array(self.bus, dtype=np.int64, copy=True).reshape(-1)
            if bus.shape != (n,) or np.any(bus < 0) or np.any(bus >= n_bus):
                raise OptimError(f"bus: expected {n} integers in [0, {n_bus}), got {bus}")
            fmax = _vec("line_max", self.line_max, n_lines)
            if np.any(fmax <= 0):
                raise OptimError(f"line_max: must be > 0, got min {fmax.min():g}")
            ptdf.setflags(write=False)
            bus.setflags(write=False)
            set_(self, "ptdf", ptdf)
            set_(self, "bus", bus)
            set_(self, "line_max", fmax)
        if not np.isfinite(self.cost_offset):
            raise OptimError(f"cost_offset: must be finite, got {self.cost_offset}")
        if self.n_prosumers is not None and not 0 <= int(self.n_prosumers) <= n:
            raise OptimError(f"n_prosumers: expected an integer in [0, {n}], got {self.n_prosumers}")

    # ------------------------------------------------------------------ derived structure
    @property
    def n_agents(self) -> int:
        """Number of agents N (grid peers included)."""
        return int(self.a.size)

    @property
    def has_lines(self) -> bool:
        """Whether DC line limits are part of the problem."""
        return self.ptdf is not None

    @property
    def n_lines(self) -> int:
        """Number of limited lines L (0 without network data)."""
        return 0 if self.ptdf is None else int(self.ptdf.shape[0])

    @property
    def grid_peers(self) -> np.ndarray:
        """int[·]: indices of the grid-supplier peers (agents after ``n_prosumers``)."""
        k = self.n_agents if self.n_prosumers is None else int(self.n_prosumers)
        return np.arange(k, self.n_agents)

    @cached_property
    def adjacency_matrix(self) -> np.ndarray:
        """bool[N, N]: the peer graph (full graph without self-loops when ``adjacency`` is None)."""
        if self.adjacency is not None:
            return self.adjacency
        full = ~np.eye(self.n_agents, dtype=bool)
        full.setflags(write=False)
        return full

    @cached_property
    def edges(self) -> Edges:
        """Sparse directed-edge structure of the peer graph."""
        adj = self.adjacency_matrix
        src, dst = np.nonzero(adj)  # row-major: sorted by src then dst
        src, dst = src.astype(np.int64), dst.astype(np.int64)
        n = self.n_agents
        key = src * n + dst
        rev = np.searchsorted(key, dst * n + src)
        fwd = np.flatnonzero(src < dst)
        pair = np.empty(src.size, dtype=np.int64)
        pair[fwd] = np.arange(fwd.size)
        pair[rev[fwd]] = np.arange(fwd.size)
        degree = np.bincount(src, minlength=n)
        return Edges(src=src, dst=dst, rev=rev, pair=pair, fwd=fwd, degree=degree)

    @cached_property
    def quantity_scale(self) -> float:
        """Q: the largest finite bound |p_min|, |p_max| (units; 1 when there is none)."""
        bounds = np.abs(np.concatenate([self.p_min, self.p_max]))
        bounds = bounds[np.isfinite(bounds)]
        return float(bounds.max()) if bounds.size and bounds.max() > 0 else 1.0

    @cached_property
    def price_scale(self) -> float:
        """C: the largest of |b|, a·Q and β (currency/unit; 1 when all are zero)."""
        prices = [float(np.abs(self.b).max()), float(self.a.max()) * self.quantity_scale]
        if self.preference is not None:
            prices.append(float(self.preference.max()))
        c = max(prices)
        return c if c > 0 else 1.0

    @property
    def alpha_scale(self) -> float:
        """C / Q (currency/unit²), the unit of the trade regulariser α.

        ``DEFAULT_ALPHA · alpha_scale`` keeps the regulariser's marginal effect 2αQ at about 2·10⁻⁶ of the
        prices whatever the units (kWh or GWh, cents or EUR).
        """
        return self.price_scale / self.quantity_scale

    @cached_property
    def edge_beta(self) -> np.ndarray:
        """float[E]: preference β of each directed edge."""
        e = self.edges
        return np.zeros(e.n_edges) if self.preference is None else self.preference[e.src, e.dst]

    @cached_property
    def edge_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) float[E]: per-trade bounds −T_mn ≤ p_nm ≤ T_nm."""
        e = self.edges
        if self.trade_max is None:
            return np.full(e.n_edges, -np.inf), np.full(e.n_edges, np.inf)
        return -self.trade_max[e.dst, e.src], self.trade_max[e.src, e.dst].copy()

    @cached_property
    def line_matrix(self) -> np.ndarray | None:
        """float[L, N]: flow on each line per unit injection of each agent (PTDF columns of its bus)."""
        if self.ptdf is None or self.bus is None:
            return None
        return np.ascontiguousarray(self.ptdf[:, self.bus])

    # ------------------------------------------------------------------ evaluation
    def energy_cost(self, power: np.ndarray) -> float:
        """Σ_n f_n(p_n) (currency), without preferences and without the offset."""
        p = np.asarray(power, dtype=np.float64)
        return float(np.sum(0.5 * self.a * p * p + self.b * p))

    def objective(self, trades: np.ndarray) -> float:
        """Σ_n f_n(Σ_m p_nm) + Σ β_nm |p_nm| + cost_offset for a trade matrix float[N, N]."""
        t = np.asarray(trades, dtype=np.float64)
        pref = 0.0 if self.preference is None else float(np.sum(self.preference * np.abs(t)))
        return self.energy_cost(t.sum(axis=1)) + pref + float(self.cost_offset)

    def check_feasible_components(self) -> None:
        """Necessary feasibility test: every connected component of the peer graph can balance.

        Raises:
            InfeasibleError: if a component has Σ p_min > 0 or Σ p_max < 0 (it cannot net to zero), or an
                isolated agent cannot be at zero.
        """
        n = self.n_agents
        label = np.arange(n)
        e = self.edges
        # label propagation (min label over neighbours) — O(diameter · E), vectorised
        for _ in range(n):
            new = label.copy()
            np.minimum.at(new, e.src, label[e.dst])
            if np.array_equal(new, label):
                break
            label = new
        tol = 1e-9 * max(1.0, float(np.abs(self.p_min).max()), float(np.abs(self.p_max).max()))
        lo = np.bincount(label, self.p_min, minlength=n)
        hi = np.bincount(label, self.p_max, minlength=n)
        bad = np.flatnonzero((lo > tol) | (hi < -tol))
        if bad.size:
            members = np.flatnonzero(label == bad[0])
            raise InfeasibleError(
                f"infeasible: agents {members.tolist()} form a component whose bounds cannot net to zero "
                f"(Σ p_min = {lo[bad[0]]:g}, Σ p_max = {hi[bad[0]]:g}; need Σ p_min ≤ 0 ≤ Σ p_max)"
            )


@dataclass(frozen=True)
class P2PSolution:
    """Solution of a :class:`P2PProblem`.

    Attributes:
        trades: float[N, N], p_nm (n sells to m if > 0); antisymmetric at convergence, 0 off the graph.
        power: float[N], net injection p_n = Σ_m p_nm.
        cost: objective Σ f_n(p_n) + Σ β|p_nm| + cost_offset (without the α regulariser).
        welfare: −cost.
        prices: float[N, N], bilateral price of each trade (currency/unit, NaN where no edge): the negated
            dual of reciprocity, π_nm = −λ_nm. It equals the buyer's and seller's marginal cost at the optimum
            (up to β); with full connectivity and no preferences, every entry equals the pool price.
        status: "optimal" (cvxpy) / "converged" / "max_iter" (ADMM) / "settled" (per-trade stopping).
        solver: name of the solver.
        iterations: ADMM iterations (0 for cvxpy).
        messages: number of peer-to-peer messages sent (one per peer per iteration; ADMM only).
        primal_residuals: float[K], √(Σ_n r_n) per iteration (ADMM only).
        dual_residuals: float[K], √(Σ_n s_n) per iteration (ADMM only).
        solve_time: wall time of the solve in seconds.
        line_flows: float[L] | None, DC line flows of the solution.
        line_prices: float[L] | None, shadow price of each line limit (≥ 0 when the flow is at +F,
            ≤ 0 at −F).
        sim_time: simulated market time (asynchronous ADMM: arbitrary time units; NaN otherwise).
        state: solver state for warm starts (ADMM: λ per edge, ν per agent, line duals).
    """

    trades: np.ndarray
    power: np.ndarray
    cost: float
    welfare: float
    prices: np.ndarray
    status: str
    solver: str
    iterations: int = 0
    messages: int = 0
    primal_residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dual_residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    solve_time: float = 0.0
    line_flows: np.ndarray | None = None
    line_prices: np.ndarray | None = None
    sim_time: float = float("nan")
    state: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def reciprocity_residual(self) -> float:
        """max |p_nm + p_mn| over all pairs."""
        return float(np.max(np.abs(self.trades + self.trades.T), initial=0.0))

    @property
    def volume(self) -> float:
        """Total traded volume Σ_{p_nm > 0} p_nm."""
        return float(np.clip(self.trades, 0, None).sum())


def solution_from_edges(
    problem: P2PProblem,
    p_edge: np.ndarray,
    lam_edge: np.ndarray,
    *,
    status: str,
    solver: str,
    **extra: Any,
) -> P2PSolution:
    """Assemble a :class:`P2PSolution` from per-edge trades and reciprocity duals λ."""
    n = problem.n_agents
    e = problem.edges
    trades = np.zeros((n, n))
    trades[e.src, e.dst] = p_edge
    prices = np.full((n, n), np.nan)
    prices[e.src, e.dst] = -lam_edge
    power = np.bincount(e.src, p_edge, minlength=n)
    cost = problem.objective(trades)
    flows = None if problem.line_matrix is None else problem.line_matrix @ power
    return P2PSolution(
        trades=trades,
        power=power,
        cost=cost,
        welfare=-cost,
        prices=prices,
        status=status,
        solver=solver,
        line_flows=flows,
        **extra,
    )
