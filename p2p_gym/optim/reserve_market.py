"""Joint energy–reserve market, pool and peer-to-peer (Le Goff Latimier & Ben Ahmed 2023, §6.3, eq. 13–14).

**Instance.** :class:`ReserveMarket`: N agents over T hours with quadratic energy costs f_n(p) = ½·a_n·p² + b_n·p
(p > 0 injects/sells, p < 0 consumes; a consumer's utility is −f_n as in :class:`~p2p_gym.optim.P2PProblem`),
bounds p_min ≤ p ≤ p_max per hour, reserve capacity prices c⁺, c⁻ (currency per unit of capacity held for the
hour) and a Gaussian model of the forecast errors.

**Sign of the error.** ε_n = p_n − p*_n: the forecast position minus the realised one, i.e. the *shortfall* of
injection (a wind farm producing less than forecast has ε > 0, a load consuming more than forecast too). Upward
reserve r⁺ (more production or less consumption) covers ε > 0, downward reserve r⁻ covers ε < 0. In these terms
eq. (13d) reads P(−Σ r⁻ ≤ Σ ε ≤ Σ r⁺) ≥ δ, the convention of :mod:`p2p_gym.optim.reserve`.

**Pool market (eq. 13)**, :func:`solve_joint_centralized`:

    min  Σ_n f_n(p_n) + c⁺_n·r⁺_n + c⁻_n·r⁻_n
    s.t. Σ_n p_n = 0                                  (dual: the system energy price)
         p_min + r⁻ ≤ p ≤ p_max − r⁺,  0 ≤ r± ≤ r±_max
         Σ r⁺ ≥ R⁺,  Σ r⁻ ≥ R⁻                        (duals: the reserve prices)

where (R⁺, R⁻) is the chance constraint (13d) reformulated: for Gaussian errors R± = ±μ_Σ + σ_Σ·Φ⁻¹((1 + δ)/2)
(:func:`~p2p_gym.optim.reserve.gaussian_reserve`, equal tail split, σ_Σ = √(1ᵀΣ1) with the covariance), or the
empirical quantiles of sampled errors (:func:`~p2p_gym.optim.reserve.empirical_reserve`).

**P2P market (eq. 14)**, :func:`solve_p2p_reserve_centralized` (cvxpy reference) and
:func:`solve_p2p_reserve_admm` (decentralised): energy trades p_nm = −p_mn (n sells to m if > 0) and reserve
trades r±_nm = −r±_mn (n *buys* reserve from m if > 0) on a communication graph; agent n holds the physical
reserve ρ±_n and must cover its own error at a local confidence δ_n:

    ρ⁺_n + Σ_m r⁺_nm ≥ q⁺_n = μ_n + σ_n·Φ⁻¹((1 + δ_n)/2),   ρ⁻_n + Σ_m r⁻_nm ≥ q⁻_n = −μ_n + σ_n·Φ⁻¹((1 + δ_n)/2)

(the two-sided local constraint (14) with its violation probability split equally between the tails). Agents
without uncertainty have q± = ±μ_n (0 for unbiased ones), so they may sell up to their physical reserve. The
objective is the pool's plus α·Σ (p_nm² + r⁺_nm² + r⁻_nm²), a small regulariser making the trades unique (as in
:func:`~p2p_gym.optim.solve_centralized`); the reported cost excludes it. Summing the local constraints, the
physical reserve covers Σ_n q±_n: how the global δ is shared into local δ_n (:data:`DELTA_POLICIES`) decides
whether the system reaches its global confidence.

**ADMM.** The consensus ADMM of :func:`~p2p_gym.optim.solve_admm` (Boyd et al. 2011, §7; Le Goff Latimier &
Ben Ahmed 2023, eq. 5) with the reserve trades as two more reciprocal trade vectors: targets t = z − λ/ρ_admm,
the dual step λ += ρ_admm/2·(x_nm + x_mn) and z_nm = (x_nm − x_mn)/2 for x ∈ {p, r⁺, r⁻}, stopping when the
summed squared primal residual (reciprocity gaps) and dual residual (changes of the trades) are below ε² (eq. 6–7).
Agent n's local step (M_n peers, k = ρ_admm + 2α, w_n = k/M_n) is solved exactly for all agents and hours at
once: for fixed aggregates (s, U, D) = (Σ p_nm, Σ r⁺_nm, Σ r⁻_nm) the trades are the projections
x_nm = ρ_admm·t_nm/k + (X − S_X)/M_n with S_X = ρ_admm·Σ_m t_nm/k, whose cost is w_n/2·(X − S_X)². Given s, the
reserve side is explicit (ρ⁺ = clip(q⁺ − S_U − c⁺/w, 0, min(r⁺_max, p_max − s)), U = max(S_U, q⁺ − ρ⁺)), and s
minimises a convex piecewise-quadratic function of one variable whose derivative is piecewise linear with at most
four breakpoints, found exactly by evaluating it at the sorted breakpoints (:func:`_local_step`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from p2p_gym.errors import OptimError
from p2p_gym.optim.centralized import DEFAULT_ALPHA
from p2p_gym.optim.problem import Edges, InfeasibleError, P2PProblem
from p2p_gym.optim.reserve import _delta, empirical_reserve, gaussian_reserve

__all__ = [
    "DELTA_POLICIES",
    "JointSolution",
    "P2PReserveSolution",
    "ReserveMarket",
    "allocate_delta",
    "case14_reserve_market",
    "global_confidence",
    "local_requirements",
    "solve_joint_centralized",
    "solve_p2p_reserve_admm",
    "solve_p2p_reserve_centralized",
]


# ---------------------------------------------------------------------------------------------- validation
def _array(name: str, value: Any, shape: tuple[int, ...], *, allow_inf: bool = False) -> np.ndarray:
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.ndim == 0:
        arr = np.full(shape, float(arr))
    if arr.shape != shape:
        raise OptimError(f"{name}: expected float{list(shape)}, got shape {arr.shape}")
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if np.any(bad):
        raise OptimError(f"{name}: all entries must be {'non-NaN' if allow_inf else 'finite'}")
    arr.setflags(write=False)
    return arr


def _z(delta: np.ndarray | float) -> np.ndarray:
    """Φ⁻¹((1 + δ)/2): the two-sided standard normal quantile with the tails split equally."""
    from scipy.stats import norm

    return np.asarray(norm.ppf(0.5 * (1.0 + np.asarray(delta, dtype=np.float64))), dtype=np.float64)


# ---------------------------------------------------------------------------------------------- instance
@dataclass(frozen=True)
class ReserveMarket:
    """A joint energy–reserve market instance (validated, immutable): N agents over T hours.

    Attributes:
        a: float[N] ≥ 0, quadratic energy cost coefficient (currency/unit²).
        b: float[N], linear energy cost coefficient (currency/unit); a consumer's willingness to pay.
        p_min: float[T, N], lower bound of the position (negative = consumption).
        p_max: float[T, N] ≥ p_min, upper bound of the position (finite).
        c_up: float[N] ≥ 0, price of upward reserve capacity r⁺ (currency/unit per hour).
        c_down: float[N] ≥ 0, price of downward reserve capacity r⁻.
        mu: float[T, N], mean of the forecast errors ε = forecast − realised position (module docstring).
        cov: float[T, N, N], covariance of the errors (symmetric positive semidefinite; zero rows and columns
            for the agents without uncertainty).
        r_up_max: float[N] ≥ 0 (inf allowed), the most upward reserve an agent can hold (0: it offers none);
            None = unlimited (only p_max bounds it).
        r_down_max: float[N] ≥ 0 (inf allowed), same for downward reserve.
        forecast: float[T, N] ≥ 0 | None, forecast size of each uncertain agent's uncertain quantity (e.g. its
            expected renewable output), used by the mean-relative δ allocation; None = max(|p_min|, |p_max|)
            where the agent is uncertain, else 0.
        names: one label per agent, or None.
    """

    a: np.ndarray
    b: np.ndarray
    p_min: np.ndarray
    p_max: np.ndarray
    c_up: np.ndarray
    c_down: np.ndarray
    mu: np.ndarray
    cov: np.ndarray
    r_up_max: np.ndarray | None = None
    r_down_max: np.ndarray | None = None
    forecast: np.ndarray | None = None
    names: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        a = np.array(self.a, dtype=np.float64, copy=True).reshape(-1)
        n = a.size
        if n < 2:
            raise OptimError(f"a: at least two agents are required, got {n}")
        p_min = np.array(self.p_min, dtype=np.float64)
        if p_min.ndim != 2 or p_min.shape[1] != n or p_min.shape[0] < 1:
            raise OptimError(f"p_min: expected float[T, {n}] with T ≥ 1, got shape {p_min.shape}")
        t = p_min.shape[0]
        set_(self, "a", _array("a", a, (n,)))
        if np.any(self.a < 0):
            raise OptimError(f"a: must be ≥ 0 (convex costs), got min {self.a.min():g}")
        set_(self, "b", _array("b", self.b, (n,)))
        set_(self, "p_min", _array("p_min", p_min, (t, n)))
        set_(self, "p_max", _array("p_max", self.p_max, (t, n)))
        bad = np.argwhere(self.p_min > self.p_max)
        if bad.size:
            h, i = (int(x) for x in bad[0])
            raise OptimError(
                f"p_min: must be ≤ p_max, got p_min[{h}, {i}]={self.p_min[h, i]:g} > p_max={self.p_max[h, i]:g}"
            )
        for name in ("c_up", "c_down"):
            arr = _array(name, getattr(self, name), (n,))
            if np.any(arr < 0):
                raise OptimError(f"{name}: reserve prices must be ≥ 0, got min {arr.min():g}")
            set_(self, name, arr)
        for name in ("r_up_max", "r_down_max"):
            value = getattr(self, name)
            arr = _array(name, np.inf if value is None else value, (n,), allow_inf=True)
            if np.any(arr < 0):
                raise OptimError(f"{name}: must be ≥ 0 (inf allowed), got min {arr.min():g}")
            set_(self, name, arr)
        set_(self, "mu", _array("mu", self.mu, (t, n)))
        cov = _array("cov", self.cov, (t, n, n))
        if not np.allclose(cov, np.swapaxes(cov, 1, 2), rtol=1e-9, atol=1e-12):
            raise OptimError("cov: every hour's covariance must be symmetric")
        scale = max(1.0, float(np.abs(cov).max()))
        low = np.linalg.eigvalsh(cov).min(axis=1)
        if np.any(low < -1e-9 * scale):
            h = int(np.argmin(low))
            raise OptimError(f"cov: must be positive semidefinite, hour {h} has eigenvalue {low[h]:g} < 0")
        set_(self, "cov", cov)
        if self.forecast is None:
            size = np.maximum(np.abs(self.p_min), np.abs(self.p_max))
            fc = np.where(self.sigma > 0, size, 0.0)
            fc.setflags(write=False)
            set_(self, "forecast", fc)
        else:
            fc = _array("forecast", self.forecast, (t, n))
            if np.any(fc < 0):
                raise OptimError(f"forecast: must be ≥ 0, got min {fc.min():g}")
            set_(self, "forecast", fc)
        if self.names is not None:
            names = tuple(str(x) for x in self.names)
            if len(names) != n:
                raise OptimError(f"names: expected {n} labels, got {len(names)}")
            set_(self, "names", names)

    # ------------------------------------------------------------------ derived
    @property
    def n_agents(self) -> int:
        """N."""
        return int(self.a.size)

    @property
    def n_hours(self) -> int:
        """T."""
        return int(self.p_min.shape[0])

    @property
    def sigma(self) -> np.ndarray:
        """float[T, N]: standard deviation σ_n of each agent's error."""
        return np.sqrt(np.clip(np.diagonal(self.cov, axis1=1, axis2=2), 0.0, None))

    @property
    def uncertain(self) -> np.ndarray:
        """bool[T, N]: agents with a positive error variance at each hour."""
        return self.sigma > 0

    @property
    def sigma_total(self) -> np.ndarray:
        """float[T]: σ_Σ = √(1ᵀΣ1), the standard deviation of the system's total error."""
        return np.sqrt(np.clip(self.cov.sum(axis=(1, 2)), 0.0, None))

    @property
    def quantity_scale(self) -> float:
        """Q: the largest |p_min|, |p_max| (1 if all are zero)."""
        q = float(np.max(np.abs(np.concatenate([self.p_min, self.p_max]))))
        return q if q > 0 else 1.0

    @property
    def price_scale(self) -> float:
        """C: the largest of |b|, a·Q, c⁺, c⁻ (1 if all are zero)."""
        c = max(
            float(np.abs(self.b).max()),
            float(self.a.max()) * self.quantity_scale,
            float(self.c_up.max()),
            float(self.c_down.max()),
        )
        return c if c > 0 else 1.0

    def reserve_requirement(
        self, delta: float, *, samples: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(R⁺, R⁻) float[T]: the system reserve meeting the chance constraint (13d) at confidence ``delta``,
        Gaussian from (μ, Σ) or, with ``samples`` float[S, T, N], empirical."""
        d = _delta(delta)
        t, n = self.n_hours, self.n_agents
        up, down = np.empty(t), np.empty(t)
        if samples is not None:
            x = np.asarray(samples, dtype=np.float64)
            if x.ndim != 3 or x.shape[1:] != (t, n):
                raise OptimError(f"samples: expected float[S, {t}, {n}], got shape {x.shape}")
        for h in range(t):
            if samples is None:
                up[h], down[h] = gaussian_reserve(self.mu[h], self.cov[h], d)
            else:
                up[h], down[h] = empirical_reserve(x[:, h, :], d)
        return up, down

    def sample_errors(self, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        """float[S, T, N]: S independent draws of the errors ε ~ N(μ_t, Σ_t), hour by hour, from ``rng``."""
        if not isinstance(rng, np.random.Generator):
            raise OptimError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        s = int(n_samples)
        if s < 1:
            raise OptimError(f"n_samples: must be ≥ 1, got {n_samples}")
        w, v = np.linalg.eigh(self.cov)  # PSD square root, robust to the zero rows of certain agents
        root = v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]  # [T, N, N]: Σ = root·rootᵀ
        z = rng.standard_normal((s, self.n_hours, self.n_agents))
        return self.mu[None] + np.einsum("thk,stk->sth", root, z)

    def costs(self, power: np.ndarray, r_up: np.ndarray, r_down: np.ndarray) -> np.ndarray:
        """float[T]: Σ_n f_n(p_n) + c⁺·r⁺ + c⁻·r⁻ per hour for positions and reserves float[T, N]."""
        p = np.asarray(power, dtype=np.float64)
        energy = np.sum(0.5 * self.a * p * p + self.b * p, axis=1)
        return energy + np.asarray(r_up) @ self.c_up + np.asarray(r_down) @ self.c_down

    def energy_problem(self, hour: int, adjacency: Any = None) -> P2PProblem:
        """The energy-only P2P market of one hour (no reserve), e.g. for :func:`~p2p_gym.optim.solve_pool`."""
        if not 0 <= int(hour) < self.n_hours:
            raise OptimError(f"hour: expected an integer in [0, {self.n_hours}), got {hour}")
        h = int(hour)
        return P2PProblem(self.a, self.b, self.p_min[h], self.p_max[h], adjacency=adjacency)


# ---------------------------------------------------------------------------------------------- δ allocation
def _relative(market: ReserveMarket, delta: float, size: np.ndarray) -> np.ndarray:
    unc = market.uncertain
    size = np.where(unc, size, 0.0)
    total = size.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, size / total, 0.0)
    violation = np.clip(market.n_agents * (1.0 - delta) * share, 1e-12, 1.0)
    return np.where(unc & (total > 0), 1.0 - violation, delta)


def _uniform(market: ReserveMarket, delta: float) -> np.ndarray:
    """Rel. α^1: δ_n = δ for every agent."""
    return np.full((market.n_hours, market.n_agents), delta)


def _sigma_relative(market: ReserveMarket, delta: float) -> np.ndarray:
    """Rel. α^σ: the market's violation budget N·(1 − δ) (what :func:`_uniform` gives its N agents in total)
    shared among the uncertain agents in proportion to σ_n: 1 − δ_n = N·(1 − δ)·σ_n/Σ_m σ_m, clipped into
    [10⁻¹², 1]."""
    return _relative(market, delta, market.sigma)


def _mean_relative(market: ReserveMarket, delta: float) -> np.ndarray:
    """Rel. α^μ: as :func:`_sigma_relative` in proportion to the forecast size μ̂_n (``market.forecast``, the
    expected renewable output): 1 − δ_n = N·(1 − δ)·μ̂_n/Σ_m μ̂_m."""
    return _relative(market, delta, np.asarray(market.forecast))


def _absolute_sigma(market: ReserveMarket, delta: float) -> np.ndarray:
    """Abs. α^σ: the system's Gaussian reserve σ_Σ·z(δ) split in proportion to σ_n: every uncertain agent uses
    z_n = σ_Σ·z(δ)/Σ_m σ_m, i.e. δ_n = 2Φ(z_n) − 1, so that Σ_n σ_n·z_n = σ_Σ·z(δ) exactly."""
    from scipy.stats import norm

    sig = market.sigma
    total = sig.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_n = np.where(total > 0, market.sigma_total * _z(delta) / total, 0.0)
    d_n = 2.0 * norm.cdf(z_n) - 1.0
    return np.where(market.uncertain, d_n[:, None], delta)


#: The δ-allocation policies: name → (label of Le Goff Latimier & Ben Ahmed 2023, Fig. 13–14, function
#: (market, δ) → local δ_n float[T, N]). The paper names the policies without their formulas; the formulas are
#: ours (in each function's docstring). Agents without uncertainty get δ_n = δ (their requirement ±μ_n does not
#: depend on it). N is the number of agents of the market, uncertain or not, so the relative policies hand the
#: uncertain agents the violation budget that the uniform policy leaves unused with the certain ones; normalised by
#: the number of uncertain agents instead, they would keep the uniform budget on average (and, on the 14-bus
#: instance of ``eval.reserve``, reach the global confidence).
DELTA_POLICIES: dict[str, tuple[str, Callable[[ReserveMarket, float], np.ndarray]]] = {
    "uniform": ("Rel. α^1", _uniform),
    "sigma": ("Rel. α^σ", _sigma_relative),
    "mean": ("Rel. α^μ", _mean_relative),
    "absolute_sigma": ("Abs. α^σ", _absolute_sigma),
}


def allocate_delta(market: ReserveMarket, delta: float, policy: str) -> np.ndarray:
    """Local confidences δ_n float[T, N] from the global ``delta`` by one of :data:`DELTA_POLICIES`.

    Raises:
        OptimError: unknown policy or delta outside (0, 1).
    """
    d = _delta(delta)
    if policy not in DELTA_POLICIES:
        raise OptimError(f"policy: expected one of {sorted(DELTA_POLICIES)}, got {policy!r}")
    return DELTA_POLICIES[policy][1](market, d)


def local_requirements(market: ReserveMarket, local_delta: Any) -> tuple[np.ndarray, np.ndarray]:
    """(q⁺, q⁻) float[T, N]: each agent's reserve requirement at its local confidence δ_n (eq. 14 with the
    violation probability split equally between the tails): q± = ±μ_n + σ_n·Φ⁻¹((1 + δ_n)/2); ±μ_n for agents
    without uncertainty.

    Args:
        market: the instance.
        local_delta: float[T, N] or scalar, δ_n ∈ [0, 1) for uncertain agents (any value in [0, 1] otherwise).
    """
    t, n = market.n_hours, market.n_agents
    d = _array("local_delta", local_delta, (t, n))
    unc = market.uncertain
    if np.any((d < 0) | (d > 1)) or np.any(unc & (d >= 1)):
        raise OptimError("local_delta: must lie in [0, 1), and below 1 where the agent is uncertain")
    z = np.where(unc, _z(np.where(unc, d, 0.0)), 0.0)
    spread = market.sigma * z
    return market.mu + spread, -market.mu + spread


def global_confidence(r_up: Any, r_down: Any, samples: Any) -> np.ndarray:
    """float[T]: share of the sampled errors float[S, T, N] whose hourly total lies in [−R⁻_t, R⁺_t] (the
    empirical left-hand side of eq. 13d) for system reserves ``r_up``, ``r_down`` float[T]."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 3 or not len(x):
        raise OptimError(f"samples: expected float[S, T, N] with S ≥ 1, got shape {x.shape}")
    t = x.shape[1]
    up = _array("r_up", r_up, (t,))
    down = _array("r_down", r_down, (t,))
    total = x.sum(axis=2)
    return np.mean((total >= -down) & (total <= up), axis=0)


# ---------------------------------------------------------------------------------------------- pool market
@dataclass(frozen=True)
class JointSolution:
    """Solution of the pool joint market (eq. 13) over T hours.

    Attributes:
        power: float[T, N], positions p_n (> 0 injection).
        reserve_up: float[T, N], upward reserve r⁺_n.
        reserve_down: float[T, N], downward reserve r⁻_n.
        requirement_up: float[T], the system requirement R⁺ (eq. 13d reformulated).
        requirement_down: float[T], R⁻.
        price: float[T], system energy price (currency/unit), the dual of the balance.
        reserve_price_up: float[T] ≥ 0, the dual of Σ r⁺ ≥ R⁺ (currency per unit of capacity).
        reserve_price_down: float[T] ≥ 0, the dual of Σ r⁻ ≥ R⁻.
        cost: float[T], Σ f_n + c⁺r⁺ + c⁻r⁻ per hour.
        welfare: −Σ cost over the hours.
        status, solver, solve_time: solver report (status "optimal").
    """

    power: np.ndarray
    reserve_up: np.ndarray
    reserve_down: np.ndarray
    requirement_up: np.ndarray
    requirement_down: np.ndarray
    price: np.ndarray
    reserve_price_up: np.ndarray
    reserve_price_down: np.ndarray
    cost: np.ndarray
    welfare: float
    status: str
    solver: str
    solve_time: float

    @property
    def total_reserve_up(self) -> np.ndarray:
        """float[T]: Σ_n r⁺_n."""
        return self.reserve_up.sum(axis=1)

    @property
    def total_reserve_down(self) -> np.ndarray:
        """float[T]: Σ_n r⁻_n."""
        return self.reserve_down.sum(axis=1)

    @property
    def injection(self) -> np.ndarray:
        """float[T]: Σ_n max(p_n, 0), the energy exchanged in each hour."""
        return np.clip(self.power, 0.0, None).sum(axis=1)


def _check_status(prob: cp.Problem, what: str) -> None:
    if prob.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InfeasibleError(f"{what}: the problem is infeasible (solver status {prob.status!r})")
    if prob.status != cp.OPTIMAL:
        raise OptimError(
            f"{what}: solver did not reach an optimum (status {prob.status!r}; expected 'optimal')"
        )


def _solve(prob: cp.Problem, solver: str | None, what: str) -> str:
    try:
        prob.solve(solver=solver or cp.CLARABEL)
    except cp.error.SolverError as exc:
        raise OptimError(f"{what}: solver {solver or 'CLARABEL'} failed: {exc}") from exc
    _check_status(prob, what)
    return f"cvxpy/{prob.solver_stats.solver_name}"


def _cap_constraints(x: cp.Expression, cap_: np.ndarray | None, q: float) -> list[cp.Constraint]:
    cap = np.asarray(cap_, dtype=np.float64)
    idx = np.flatnonzero(np.isfinite(cap))
    return [x[:, idx] <= np.broadcast_to(cap[idx] / q, (x.shape[0], idx.size))] if idx.size else []


def solve_joint_centralized(
    market: ReserveMarket,
    delta: float,
    *,
    reserve: Literal["gaussian", "samples"] = "gaussian",
    samples: np.ndarray | None = None,
    solver: str | None = None,
) -> JointSolution:
    """The pool joint energy–reserve market (eq. 13, module docstring) for all hours, with cvxpy.

    Args:
        market: the instance.
        delta: global confidence δ ∈ (0, 1) of the chance constraint (13d).
        reserve: "gaussian" (R± from μ, Σ) or "samples" (empirical quantiles of ``samples``).
        samples: float[S, T, N] error samples (required with ``reserve="samples"``), e.g.
            ``market.sample_errors(rng, S)``.
        solver: a cvxpy solver name (default Clarabel).

    Raises:
        InfeasibleError: no positions and reserves meet the balance, bounds and requirement.
        OptimError: bad arguments (named) or a solver failure.
    """
    if reserve not in ("gaussian", "samples"):
        raise OptimError(f"reserve: expected 'gaussian' or 'samples', got {reserve!r}")
    if reserve == "samples" and samples is None:
        raise OptimError("samples: required with reserve='samples' (float[S, T, N] error samples)")
    req_up, req_down = market.reserve_requirement(delta, samples=samples if reserve == "samples" else None)
    t0 = time.perf_counter()
    t, n = market.n_hours, market.n_agents
    q, c = market.quantity_scale, market.price_scale
    # scaled units: quantities / Q, money / (C·Q); duals scale back by C
    x = cp.Variable((t, n), name="p")
    ru = cp.Variable((t, n), nonneg=True, name="r_up")
    rd = cp.Variable((t, n), nonneg=True, name="r_down")
    a_s = np.broadcast_to(market.a * q / c, (t, n))
    b_s = np.broadcast_to(market.b / c, (t, n))
    obj = (
        0.5 * cp.sum(cp.multiply(a_s, cp.square(x)))
        + cp.sum(cp.multiply(b_s, x))
        + cp.sum(ru @ (market.c_up / c))
        + cp.sum(rd @ (market.c_down / c))
    )
    balance = cp.sum(x, axis=1) == 0
    cover_up = cp.sum(ru, axis=1) >= req_up / q
    cover_down = cp.sum(rd, axis=1) >= req_down / q
    cons = [
        balance,
        cover_up,
        cover_down,
        x >= market.p_min / q + rd,
        x <= market.p_max / q - ru,
        *_cap_constraints(ru, market.r_up_max, q),
        *_cap_constraints(rd, market.r_down_max, q),
    ]
    prob = cp.Problem(cp.Minimize(obj), cons)
    name = _solve(prob, solver, "solve_joint_centralized")
    power = np.asarray(x.value) * q
    r_up = np.clip(np.asarray(ru.value) * q, 0.0, None)
    r_down = np.clip(np.asarray(rd.value) * q, 0.0, None)
    cost = market.costs(power, r_up, r_down)
    return JointSolution(
        power=power,
        reserve_up=r_up,
        reserve_down=r_down,
        requirement_up=req_up,
        requirement_down=req_down,
        # cvxpy's equality dual y enters the Lagrangian as +y·Σp, so the marginal cost is −y
        price=-np.asarray(balance.dual_value, dtype=np.float64).reshape(t) * c,
        reserve_price_up=np.asarray(cover_up.dual_value, dtype=np.float64).reshape(t) * c,
        reserve_price_down=np.asarray(cover_down.dual_value, dtype=np.float64).reshape(t) * c,
        cost=cost,
        welfare=-float(cost.sum()),
        status="optimal",
        solver=name,
        solve_time=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------------------------- P2P market
@dataclass(frozen=True)
class P2PReserveSolution:
    """Solution of the P2P joint market (eq. 14) over T hours.

    Attributes:
        power: float[T, N], net positions p_n = Σ_m p_nm.
        trades: float[T, N, N], energy trades p_nm (n sells to m if > 0), 0 off the graph.
        reserve_trades_up: float[T, N, N], r⁺_nm (n buys upward reserve from m if > 0).
        reserve_trades_down: float[T, N, N], r⁻_nm.
        reserve_up: float[T, N], physical upward reserve ρ⁺_n held by each agent.
        reserve_down: float[T, N], physical downward reserve ρ⁻_n.
        requirement_up: float[T, N], the local requirement q⁺_n.
        requirement_down: float[T, N], q⁻_n.
        local_delta: float[T, N], the local confidences δ_n the requirements come from.
        prices: float[T, N, N], bilateral energy prices −λ_nm (NaN off the graph).
        reserve_prices_up: float[T, N, N], bilateral upward-reserve prices λ⁺_nm (the buyer's marginal value of
            covering its requirement; NaN off the graph).
        reserve_prices_down: float[T, N, N], same for downward reserve.
        cost: float[T], Σ f_n + c⁺ρ⁺ + c⁻ρ⁻ per hour (without the trade regulariser).
        welfare: −Σ cost.
        status: "optimal" (cvxpy), "converged" or "max_iter" (ADMM).
        solver: solver name.
        iterations: ADMM iterations (0 for cvxpy).
        primal_residuals: float[K], the largest hourly √(Σ gaps²) per iteration (ADMM only).
        dual_residuals: float[K], the largest hourly √(Σ changes²) per iteration (ADMM only).
        solve_time: wall time in seconds.
    """

    power: np.ndarray
    trades: np.ndarray
    reserve_trades_up: np.ndarray
    reserve_trades_down: np.ndarray
    reserve_up: np.ndarray
    reserve_down: np.ndarray
    requirement_up: np.ndarray
    requirement_down: np.ndarray
    local_delta: np.ndarray
    prices: np.ndarray
    reserve_prices_up: np.ndarray
    reserve_prices_down: np.ndarray
    cost: np.ndarray
    welfare: float
    status: str
    solver: str
    iterations: int = 0
    primal_residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dual_residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    solve_time: float = 0.0

    @property
    def total_reserve_up(self) -> np.ndarray:
        """float[T]: Σ_n ρ⁺_n, the physical upward reserve of the system."""
        return self.reserve_up.sum(axis=1)

    @property
    def total_reserve_down(self) -> np.ndarray:
        """float[T]: Σ_n ρ⁻_n."""
        return self.reserve_down.sum(axis=1)

    @property
    def coverage_up(self) -> np.ndarray:
        """float[T, N]: ρ⁺_n + Σ_m r⁺_nm, the upward reserve each agent can count on."""
        return self.reserve_up + self.reserve_trades_up.sum(axis=2)

    @property
    def coverage_down(self) -> np.ndarray:
        """float[T, N]: ρ⁻_n + Σ_m r⁻_nm."""
        return self.reserve_down + self.reserve_trades_down.sum(axis=2)

    @property
    def injection(self) -> np.ndarray:
        """float[T]: Σ_n max(p_n, 0), the energy exchanged in each hour."""
        return np.clip(self.power, 0.0, None).sum(axis=1)

    @property
    def reciprocity_residual(self) -> float:
        """The largest |x_nm + x_mn| over the energy and reserve trades and the hours."""
        return max(
            float(np.max(np.abs(x + np.swapaxes(x, 1, 2)), initial=0.0))
            for x in (self.trades, self.reserve_trades_up, self.reserve_trades_down)
        )


def _edges(market: ReserveMarket, adjacency: Any) -> Edges:
    pb = market.energy_problem(0, adjacency)  # validates the adjacency (symmetric, no self-loops)
    e = pb.edges
    lonely = np.flatnonzero(e.degree == 0)
    if lonely.size:
        raise OptimError(
            f"adjacency: every agent needs a peer to trade with, agents {lonely.tolist()} have none"
        )
    return e


def _resolve_alpha(market: ReserveMarket, alpha: float | None) -> float:
    if alpha is None:
        return DEFAULT_ALPHA * market.price_scale / market.quantity_scale
    a = float(alpha)
    if not (np.isfinite(a) and a >= 0):
        raise OptimError(f"alpha: must be finite and ≥ 0, got {alpha}")
    return a


def _edge_matrix(values: np.ndarray, e: Edges, n: int, fill: float = 0.0) -> np.ndarray:
    out = np.full((values.shape[0], n, n), fill)
    out[:, e.src, e.dst] = values
    return out


def _p2p_solution(
    market: ReserveMarket,
    e: Edges,
    x: tuple[np.ndarray, np.ndarray, np.ndarray],
    lam: tuple[np.ndarray, np.ndarray, np.ndarray],
    power: np.ndarray,
    rho_up: np.ndarray,
    rho_down: np.ndarray,
    req: tuple[np.ndarray, np.ndarray],
    local_delta: np.ndarray,
    **extra: Any,
) -> P2PReserveSolution:
    n = market.n_agents
    cost = market.costs(power, rho_up, rho_down)
    return P2PReserveSolution(
        power=power,
        trades=_edge_matrix(x[0], e, n),
        reserve_trades_up=_edge_matrix(x[1], e, n),
        reserve_trades_down=_edge_matrix(x[2], e, n),
        reserve_up=rho_up,
        reserve_down=rho_down,
        requirement_up=req[0],
        requirement_down=req[1],
        local_delta=local_delta,
        prices=_edge_matrix(-lam[0], e, n, np.nan),
        reserve_prices_up=_edge_matrix(lam[1], e, n, np.nan),
        reserve_prices_down=_edge_matrix(lam[2], e, n, np.nan),
        cost=cost,
        welfare=-float(cost.sum()),
        **extra,
    )


def solve_p2p_reserve_centralized(
    market: ReserveMarket,
    local_delta: Any,
    *,
    adjacency: Any = None,
    alpha: float | None = None,
    solver: str | None = None,
) -> P2PReserveSolution:
    """The P2P joint market with local chance constraints (eq. 14, module docstring), solved centrally with
    cvxpy: the reference of :func:`solve_p2p_reserve_admm`.

    Args:
        market: the instance.
        local_delta: float[T, N] or scalar, the agents' local confidences δ_n (e.g. :func:`allocate_delta`).
        adjacency: bool[N, N] | None, the communication graph (symmetric, no self-loops); None = all pairs.
        alpha: trade regulariser α (currency/unit²); None = ``DEFAULT_ALPHA``·C/Q as for the energy market.
        solver: a cvxpy solver name (default Clarabel).

    Raises:
        InfeasibleError, OptimError: as :func:`solve_joint_centralized`.
    """
    d = _array("local_delta", local_delta, (market.n_hours, market.n_agents))
    q_up, q_down = local_requirements(market, d)
    e = _edges(market, adjacency)
    alpha = _resolve_alpha(market, alpha)
    t0 = time.perf_counter()
    t, n, n_e = market.n_hours, market.n_agents, e.n_edges
    q, c = market.quantity_scale, market.price_scale
    inc = sp.csr_matrix((np.ones(n_e), (np.arange(n_e), e.src)), shape=(n_e, n))  # edge → owner
    fwd = e.fwd
    recip = sp.csr_matrix(
        (np.ones(2 * fwd.size), (np.r_[np.arange(fwd.size), np.arange(fwd.size)], np.r_[fwd, e.rev[fwd]])),
        shape=(fwd.size, n_e),
    )
    xs = [cp.Variable((t, n_e), name=nm) for nm in ("p", "r_up", "r_down")]
    ru = cp.Variable((t, n), nonneg=True, name="rho_up")
    rd = cp.Variable((t, n), nonneg=True, name="rho_down")
    s = xs[0] @ inc
    a_s = np.broadcast_to(market.a * q / c, (t, n))
    b_s = np.broadcast_to(market.b / c, (t, n))
    alpha_s = alpha * q / c
    obj = (
        0.5 * cp.sum(cp.multiply(a_s, cp.square(s)))
        + cp.sum(cp.multiply(b_s, s))
        + cp.sum(ru @ (market.c_up / c))
        + cp.sum(rd @ (market.c_down / c))
        + alpha_s * sum(cp.sum_squares(x) for x in xs)
    )
    recips = [x @ recip.T == 0 for x in xs]
    cons = [
        *recips,
        s >= market.p_min / q + rd,
        s <= market.p_max / q - ru,
        ru + xs[1] @ inc >= q_up / q,
        rd + xs[2] @ inc >= q_down / q,
        *_cap_constraints(ru, market.r_up_max, q),
        *_cap_constraints(rd, market.r_down_max, q),
    ]
    prob = cp.Problem(cp.Minimize(obj), cons)
    name = _solve(prob, solver, "solve_p2p_reserve_centralized")
    vals = tuple(np.asarray(x.value, dtype=np.float64) * q for x in xs)
    lam = tuple(np.asarray(r.dual_value, dtype=np.float64).reshape(t, -1)[:, e.pair] * c for r in recips)
    power = vals[0] @ inc.toarray()
    return _p2p_solution(
        market,
        e,
        (vals[0], vals[1], vals[2]),
        (lam[0], lam[1], lam[2]),
        power,
        np.clip(np.asarray(ru.value) * q, 0.0, None),
        np.clip(np.asarray(rd.value) * q, 0.0, None),
        (q_up, q_down),
        d,
        status="optimal",
        solver=name,
        solve_time=time.perf_counter() - t0,
    )


def _local_step(
    mk: ReserveMarket,
    w: np.ndarray,
    s_t: np.ndarray,
    u_t: np.ndarray,
    d_t: np.ndarray,
    q_up: np.ndarray,
    q_down: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every agent's local problem at every hour, exactly (module docstring):

        min  ½a·s² + b·s + w/2·(s − S)² + w/2·(U − S_U)² + w/2·(D − S_D)² + c⁺ρ⁺ + c⁻ρ⁻
        s.t. p_min + ρ⁻ ≤ s ≤ p_max − ρ⁺,  0 ≤ ρ± ≤ r±_max,  ρ⁺ + U ≥ q⁺,  ρ⁻ + D ≥ q⁻.

    For fixed s, with the capacity C⁺ = min(r⁺_max, p_max − s) and the gap g⁺ = q⁺ − S_U, the upward side costs
    V⁺(C⁺) = min over ρ⁺ ∈ [0, C⁺] of w/2·max(0, g⁺ − ρ⁺)² + c⁺ρ⁺ (ρ⁺ = clip(g⁺ − c⁺/w, 0, C⁺)), whose marginal
    value of capacity is m⁺ = max(0, w·(g⁺ − C⁺) − c⁺) while C⁺ < r⁺_max. The objective in s has the
    non-decreasing derivative h'(s) = (a + w)·s + b − w·S + m⁺(p_max − s) − m⁻(s − p_min), linear between the
    breakpoints p_max − g⁺ + c⁺/w, p_max − r⁺_max, p_min + g⁻ − c⁻/w, p_min + r⁻_max; the optimum is where its
    left and right limits bracket 0 (or a bound of [p_min, p_max]).

    Args:
        w: float[N] > 0, k/M_n. s_t, u_t, d_t: float[T, N], the targets S, S_U, S_D. q_up, q_down: float[T, N].

    Returns:
        (s, ρ⁺, ρ⁻, U, D), each float[T, N].
    """
    p_min, p_max = mk.p_min, mk.p_max
    a, b = mk.a, mk.b
    cu, cd = mk.c_up, mk.c_down
    cap_u, cap_d = np.asarray(mk.r_up_max), np.asarray(mk.r_down_max)
    g_u, g_d = q_up - u_t, q_down - d_t
    knots = np.stack(
        [
            p_min,
            p_max,
            p_max - g_u + cu / w,
            np.broadcast_to(p_max - cap_u, p_min.shape),
            p_min + g_d - cd / w,
            np.broadcast_to(p_min + cap_d, p_min.shape),
        ],
        axis=-1,
    )
    knots = np.sort(np.clip(knots, p_min[..., None], p_max[..., None]), axis=-1)
    ex = (..., None)

    def deriv(xk: np.ndarray, right: bool) -> np.ndarray:
        room_u = p_max[ex] - xk
        room_d = xk - p_min[ex]
        in_u = room_u <= cap_u[ex] if right else room_u < cap_u[ex]
        in_d = room_d < cap_d[ex] if right else room_d <= cap_d[ex]
        m_u = np.where(in_u, np.maximum(0.0, w[ex] * (g_u[ex] - room_u) - cu[ex]), 0.0)
        m_d = np.where(in_d, np.maximum(0.0, w[ex] * (g_d[ex] - room_d) - cd[ex]), 0.0)
        return (a[ex] + w[ex]) * xk + b[ex] - w[ex] * s_t[ex] + m_u - m_d

    right, left = deriv(knots, True), deriv(knots, False)
    k_n = knots.shape[-1]
    j = np.argmax(right >= 0.0, axis=-1)  # first knot whose right derivative is ≥ 0
    j = np.where(np.any(right >= 0.0, axis=-1), j, k_n)
    jp = np.clip(j - 1, 0, k_n - 1)[..., None]
    jc = np.clip(j, 0, k_n - 1)[..., None]
    x0 = np.take_along_axis(knots, jp, -1)[..., 0]
    r0 = np.take_along_axis(right, jp, -1)[..., 0]
    x1 = np.take_along_axis(knots, jc, -1)[..., 0]
    l1 = np.take_along_axis(left, jc, -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = x0 - r0 * (x1 - x0) / (l1 - r0)
    s = np.where(l1 >= 0.0, np.where(l1 > r0, inner, x1), x1)
    s = np.where(j == 0, p_min, np.where(j == k_n, p_max, s))
    s = np.clip(s, p_min, p_max)
    room_u = np.minimum(cap_u, p_max - s)
    room_d = np.minimum(cap_d, s - p_min)
    rho_u = np.clip(g_u - cu / w, 0.0, np.maximum(room_u, 0.0))
    rho_d = np.clip(g_d - cd / w, 0.0, np.maximum(room_d, 0.0))
    return s, rho_u, rho_d, np.maximum(u_t, q_up - rho_u), np.maximum(d_t, q_down - rho_d)


def auto_rho_reserve(market: ReserveMarket, e: Edges) -> float:
    """Heuristic ADMM penalty: mean peer count × median positive curvature a (as
    :func:`~p2p_gym.optim.admm.auto_rho`), or × C/Q without curvature."""
    deg = float(np.mean(e.degree))
    pos = market.a[market.a > 0]
    curv = float(np.median(pos)) if pos.size else market.price_scale / market.quantity_scale
    return deg * curv


def solve_p2p_reserve_admm(
    market: ReserveMarket,
    local_delta: Any,
    *,
    adjacency: Any = None,
    rho: float | Literal["auto"] = "auto",
    eps_primal: float | None = None,
    eps_dual: float | None = None,
    max_iter: int = 20_000,
    alpha: float | None = None,
) -> P2PReserveSolution:
    """The P2P joint market (eq. 14) by decentralised consensus ADMM, all hours at once (module docstring).

    Each agent only exchanges, with each peer, its proposed energy and reserve trades; its local step (a QP in
    its own trades and reserves) is solved exactly by :func:`_local_step`. The hours are independent problems
    iterated side by side; the run stops when every hour meets the stopping test.

    Args:
        market: the instance.
        local_delta: float[T, N] or scalar, the agents' local confidences δ_n.
        adjacency: bool[N, N] | None, the communication graph; None = all pairs.
        rho: ADMM penalty (currency/unit²), or "auto" (:func:`auto_rho_reserve`).
        eps_primal: tolerance on each hour's √(Σ reciprocity gaps²) (units of the positions); None =
            10⁻⁶·Q (Q: the largest |p_min|, |p_max|).
        eps_dual: tolerance on each hour's √(Σ changes of the trades²); None = 10⁻⁶·Q.
        max_iter: iteration cap (status "max_iter" when reached).
        alpha: trade regulariser α (None: the same default as :func:`solve_p2p_reserve_centralized`).

    Returns:
        :class:`P2PReserveSolution` built from each agent's own decisions (trades, reserves); its
        ``reciprocity_residual`` tells how far from exactly reciprocal the trades are.

    Raises:
        OptimError: bad arguments (named).
    """
    d = _array("local_delta", local_delta, (market.n_hours, market.n_agents))
    q_up, q_down = local_requirements(market, d)
    e = _edges(market, adjacency)
    alpha = _resolve_alpha(market, alpha)
    if isinstance(rho, str):
        if rho != "auto":
            raise OptimError(f"rho: expected a positive number or 'auto', got {rho!r}")
        rho = auto_rho_reserve(market, e)
    rho = float(rho)
    if not (np.isfinite(rho) and rho > 0):
        raise OptimError(f"rho: must be finite and > 0, got {rho}")
    default_eps = 1e-6 * market.quantity_scale
    eps_p = default_eps if eps_primal is None else float(eps_primal)
    eps_d = default_eps if eps_dual is None else float(eps_dual)
    for name, v in (("eps_primal", eps_p), ("eps_dual", eps_d)):
        if not (np.isfinite(v) and v > 0):
            raise OptimError(f"{name}: must be finite and > 0, got {v}")
    if int(max_iter) < 1:
        raise OptimError(f"max_iter: must be ≥ 1, got {max_iter}")
    t0 = time.perf_counter()
    t, n, n_e = market.n_hours, market.n_agents, e.n_edges
    src, rev = e.src, e.rev
    inc = np.zeros((n_e, n))
    inc[np.arange(n_e), src] = 1.0
    deg = e.degree.astype(np.float64)
    k = rho + 2.0 * alpha
    w = k / deg
    x = np.zeros((3, t, n_e))  # energy, upward and downward reserve trades
    lam = np.zeros((3, t, n_e))
    z = np.zeros((3, t, n_e))
    pri: list[float] = []
    dua: list[float] = []
    status = "max_iter"
    it = 0
    s = rho_u = rho_d = np.zeros((t, n))
    for it in range(1, int(max_iter) + 1):  # noqa: B007 - it is the iteration count after the loop
        target = z - lam / rho
        sums = rho * (target @ inc) / k  # [3, T, N]: S, S_U, S_D
        s, rho_u, rho_d, u_tot, d_tot = _local_step(market, w, sums[0], sums[1], sums[2], q_up, q_down)
        own = np.stack([s, u_tot, d_tot]) - sums
        x_new = rho * target / k + (own / deg)[:, :, src]
        gap = x_new + x_new[:, :, rev]
        r2 = np.einsum("ite,ite->t", gap, gap)
        dx = x_new - x
        d2 = np.einsum("ite,ite->t", dx, dx)
        x = x_new
        lam += 0.5 * rho * gap
        z = 0.5 * (x - x[:, :, rev])
        pri.append(math.sqrt(float(r2.max())))
        dua.append(math.sqrt(float(d2.max())))
        if pri[-1] <= eps_p and dua[-1] <= eps_d:
            status = "converged"
            break
    return _p2p_solution(
        market,
        e,
        (x[0], x[1], x[2]),
        (lam[0], lam[1], lam[2]),
        s,
        rho_u,
        rho_d,
        (q_up, q_down),
        d,
        status=status,
        solver="admm",
        iterations=it,
        primal_residuals=np.asarray(pri),
        dual_residuals=np.asarray(dua),
        solve_time=time.perf_counter() - t0,
    )


# ---------------------------------------------------------------------------------------------- 14-bus case
#: Hourly load shape (fraction of the case's nominal loads), hours 0–23: a winter working day.
LOAD_PROFILE = np.array(
    [0.66, 0.62, 0.60, 0.59, 0.60, 0.64, 0.73, 0.84, 0.91, 0.94, 0.95, 0.95,
     0.93, 0.91, 0.89, 0.88, 0.90, 0.96, 1.00, 0.99, 0.94, 0.86, 0.77, 0.70]
)  # fmt: skip
#: Hourly wind capacity factor, hours 0–23 (a breezy night calming at midday).
WIND_PROFILE = np.array(
    [0.55, 0.57, 0.58, 0.58, 0.56, 0.53, 0.49, 0.44, 0.40, 0.36, 0.33, 0.31,
     0.30, 0.31, 0.33, 0.36, 0.40, 0.44, 0.48, 0.51, 0.53, 0.54, 0.55, 0.55]
)  # fmt: skip


def _pv_profile(hours: np.ndarray) -> np.ndarray:
    """Clear-sky PV capacity factor: 0.8·sin(π(h + 0.5 − 6)/13) between 6:00 and 19:00, 0 otherwise."""
    x = (hours + 0.5 - 6.0) / 13.0
    return np.where((x > 0) & (x < 1), 0.8 * np.sin(np.pi * np.clip(x, 0.0, 1.0)), 0.0)


def case14_reserve_market(
    *,
    hours: int = 24,
    start_hour: int = 0,
    wind_buses: Sequence[int] = (3, 8, 13),
    pv_buses: Sequence[int] = (4, 9, 11),
    wind_mw: float = 40.0,
    pv_mw: float = 30.0,
    wind_sigma: float = 0.20,
    pv_sigma: float = 0.12,
    correlation: float = 0.6,
    load_flex: float = 0.1,
    value_of_load: float = 60.0,
    reference_price: float = 40.0,
    reserve_cost_fraction: float = 0.25,
    load_reserve_cost: float = 12.0,
    curtailment_reserve_cost: float = 1.0,
) -> ReserveMarket:
    """A joint energy–reserve market on the IEEE 14-bus case (pandapower ``case14``; MW, €, one-hour steps).

    Agents (22 with the defaults), in this order:

    * 5 generators: the ``ext_grid`` and the 4 ``gen`` with their ``poly_cost`` (a = 2·cp2, b = cp1; the constant
      is dropped), 0 ≤ p ≤ max_p_mw. Reserve prices c⁺ = c⁻ = ``reserve_cost_fraction``·cp1 €/MW (5 €/MW for the
      two 20 €/MWh units, 10 €/MW for the three 40 €/MWh units).
    * 11 loads: nominal L_j (the case's p_mw) × :data:`LOAD_PROFILE`; flexible within ±``load_flex`` of the hour's
      nominal value with the declining marginal utility b − a·q (q = consumption): b = ``value_of_load``,
      a = (value_of_load − reference_price)/L_j, so a load at its peak nominal consumption values the last MW at
      ``reference_price``. Loads offer reserve from their flexibility band at ``load_reserve_cost`` €/MW both ways.
    * 3 wind farms (``wind_mw`` each, :data:`WIND_PROFILE`) and 3 PV plants (``pv_mw`` each, clear-sky bell) at
      the given (0-based) buses: zero marginal cost, 0 ≤ p ≤ forecast (they may curtail). They cannot offer
      upward reserve (r⁺_max = 0); downward reserve (curtailment) costs ``curtailment_reserve_cost`` €/MW.

    Forecast errors: only the renewables are uncertain. ε_n ~ N(0, σ_n²) with σ_n = ``wind_sigma`` (resp.
    ``pv_sigma``) × the forecast output (so PV is certain at night), and correlation ``correlation`` between every
    pair of renewables (a common weather component). The buses only label the agents (no network limits).

    Args:
        hours: number of hours T ∈ [1, 24]; hour h of the market is hour (start_hour + h) mod 24 of the profiles.
        start_hour: first hour of the day.
        Others: as described above.
    """
    import pandapower.networks as pn

    if not 1 <= int(hours) <= 24:
        raise OptimError(f"hours: expected an integer in [1, 24], got {hours}")
    if not -1.0 < correlation < 1.0 or not np.isfinite(correlation):
        raise OptimError(f"correlation: expected a value in (-1, 1), got {correlation}")
    if not 0.0 <= load_flex < 1.0:
        raise OptimError(f"load_flex: expected a value in [0, 1), got {load_flex}")
    if not value_of_load > reference_price > 0:
        raise OptimError(
            f"value_of_load, reference_price: need value_of_load > reference_price > 0, "
            f"got {value_of_load}, {reference_price}"
        )
    for name, v in (
        ("wind_mw", wind_mw),
        ("pv_mw", pv_mw),
        ("wind_sigma", wind_sigma),
        ("pv_sigma", pv_sigma),
        ("reserve_cost_fraction", reserve_cost_fraction),
        ("load_reserve_cost", load_reserve_cost),
        ("curtailment_reserve_cost", curtailment_reserve_cost),
    ):
        if not (np.isfinite(v) and v >= 0):
            raise OptimError(f"{name}: must be finite and ≥ 0, got {v}")
    net = pn.case14()
    n_bus = len(net.bus)
    for name, buses in (("wind_buses", wind_buses), ("pv_buses", pv_buses)):
        if any(not 0 <= int(x) < n_bus for x in buses):
            raise OptimError(f"{name}: expected bus indices in [0, {n_bus}), got {list(buses)}")
    hour = (int(start_hour) + np.arange(int(hours))) % 24
    t = hour.size
    cost = net.poly_cost.set_index(["et", "element"])
    units = [("ext_grid", i) for i in net.ext_grid.index] + [("gen", i) for i in net.gen.index]
    g_a, g_b, g_max, names = [], [], [], []
    for et, idx in units:
        tab = getattr(net, et)
        g_a.append(2.0 * float(cost.at[(et, idx), "cp2_eur_per_mw2"]))
        g_b.append(float(cost.at[(et, idx), "cp1_eur_per_mw"]))
        g_max.append(float(tab.at[idx, "max_p_mw"]))
        names.append(f"gen@{int(tab.at[idx, 'bus'])}")
    loads = net.load
    nominal = loads.p_mw.to_numpy(dtype=np.float64)
    names += [f"load@{int(b_)}" for b_ in loads.bus]
    n_g, n_l = len(units), nominal.size
    names += [f"wind@{int(b_)}" for b_ in wind_buses] + [f"pv@{int(b_)}" for b_ in pv_buses]
    n_w, n_p = len(wind_buses), len(pv_buses)
    n_r = n_w + n_p
    ren = np.concatenate(
        [
            np.repeat((wind_mw * WIND_PROFILE[hour])[:, None], n_w, axis=1),
            np.repeat((pv_mw * _pv_profile(hour))[:, None], n_p, axis=1),
        ],
        axis=1,
    )  # [T, n_r] forecast MW
    demand = LOAD_PROFILE[hour][:, None] * nominal[None, :]  # [T, n_l]
    p_min = np.concatenate([np.zeros((t, n_g)), -(1.0 + load_flex) * demand, np.zeros((t, n_r))], axis=1)
    p_max = np.concatenate(
        [np.broadcast_to(np.asarray(g_max), (t, n_g)), -(1.0 - load_flex) * demand, ren], axis=1
    )
    a = np.r_[g_a, (value_of_load - reference_price) / nominal, np.zeros(n_r)]
    b = np.r_[g_b, np.full(n_l, value_of_load), np.zeros(n_r)]
    g_res = reserve_cost_fraction * np.asarray(g_b)
    c_up = np.r_[g_res, np.full(n_l, load_reserve_cost), np.zeros(n_r)]
    c_down = np.r_[g_res, np.full(n_l, load_reserve_cost), np.full(n_r, curtailment_reserve_cost)]
    r_up_max = np.r_[np.full(n_g + n_l, np.inf), np.zeros(n_r)]
    n = n_g + n_l + n_r
    sig_r = ren * np.r_[np.full(n_w, wind_sigma), np.full(n_p, pv_sigma)]
    corr = np.full((n_r, n_r), correlation)
    np.fill_diagonal(corr, 1.0)
    cov = np.zeros((t, n, n))
    cov[:, n - n_r :, n - n_r :] = corr[None] * sig_r[:, :, None] * sig_r[:, None, :]
    forecast = np.zeros((t, n))
    forecast[:, n - n_r :] = ren
    return ReserveMarket(
        a=a,
        b=b,
        p_min=p_min,
        p_max=p_max,
        c_up=c_up,
        c_down=c_down,
        mu=np.zeros((t, n)),
        cov=cov,
        r_up_max=r_up_max,
        forecast=forecast,
        names=tuple(names),
    )
