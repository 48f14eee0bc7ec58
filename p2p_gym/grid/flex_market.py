"""The DSO's local flexibility market (LFM): least-cost up/down activation that removes line congestion.

After the P2P market has fixed the agents' net injections ``p`` (kW, positive = export), the distribution system
operator buys flexibility from the agents so that no line is overloaded — the sequential P2P-then-LFM design of
the EUniversal project's deliverable D5.3 (2022), §5.2.1. Each agent i offers to raise its net injection by up to
``U_i`` kW at ``c⁺_i`` currency/kWh (more export or less import: discharge a battery, shed load) and to lower it
by up to ``D_i`` kW at ``c⁻_i`` (curtail PV, charge a battery); the upstream grid (slack) balances. The DSO solves
the linear programme

    min_{u, d}  Σ_i (c⁺_i u_i + c⁻_i d_i)
    s.t.        −H_l ≤ F⁰_l + Σ_i S_{l,i} (u_i − d_i) ≤ H_l      for every rated line l,
                0 ≤ u_i ≤ U_i,   0 ≤ d_i ≤ D_i,

with HiGHS (Huangfu & Hall 2018, Math. Prog. Comp. 10:119–142) through ``scipy.optimize.linprog(method="highs")``.
The step's cost is ``Δt · Σ_i (c⁺_i u_i + c⁻_i d_i)`` (currency; Δt in hours). Prices are ≥ 0, so an optimum never
activates both directions of one agent with positive prices (lowering both by the smaller keeps ``u − d`` and
costs less); among equally cheap activations (e.g. zero prices) the solver picks one.

**Grid model.** The flows are those of :class:`~p2p_gym.grid.GridModel`'s linear mode: ``S`` float[L, N] are the
signed line-current sensitivities (kA per kW, ``sensitivities["line_current_ka_per_kw"]``), ``A0`` float[L] the
signed active current at zero agent injection (``a0_ka``: ``sensitivities["line_active_current_ka"]``, plus
``S_bg · b`` for the background injections ``b`` of the step; None = 0), ``F⁰ = A0 + S p`` the signed active
line currents after the P2P market, and the environment's linear check computes the loading ``|I_l| / I^max_l``
with ``|I_l| = √(I0_l² + (A0_l + S_l·p)²)``, where ``I0`` is the rest of the current at zero injection, in
quadrature (reactive: cable charging, reactive loads; ``sensitivities["line_current_ka"]``). A line is within a
loading target ``τ`` (%) exactly when

    √(I0_l² + (A0_l + S_l·p)²) ≤ τ/100 · I^max_l   ⇔   −H_l − A0_l ≤ S_l·p ≤ H_l − A0_l,
    H_l := √((τ/100 · I^max_l)² − I0_l²),

the same headroom as the line rows of the episode optimum (:mod:`p2p_gym.optim.episode`); a line that ``I0`` alone
puts above ``τ`` can never be relieved. With ``A0 = 0`` (``a0_ka=None``) this is the symmetric ``|S_l·p| ≤ H_l``
of the earlier model, whose check ignored the active flows of the net's non-agent elements. Lines without a
rating (``I^max ≤ 0``) are never counted as overloaded by the check and are left out here too.

**Which lines.** Every rated line is constrained — a congested line must come down to its target, and a line that
was within limits must not be pushed over it, which is the same inequality. Lines that cannot leave
``[−H_l, H_l]`` whatever is activated (the interval of ``F⁰_l + S_l (u − d)`` over the offered box) are screened
out before the solve, so the LP only carries the congested and at-risk lines.

**Targets and numerical slack.** The market runs when the linear check finds a line above 100 % (then
``status="cleared"`` or ``"infeasible"``; otherwise ``"not_needed"`` and nothing is bought). It then brings every
rated line to at most ``τ = 100 − margin_pct`` % — ``margin_pct=1`` makes the DSO target 99 %, keeping a margin
against the linearisation error of the linear model versus the AC power flow. The LP is solved first against
``H_l (1 − 10⁻⁹)``, so that the returned point is strictly inside the limit and the environment's strict
``loading > 100 %`` count finds nothing even with ``margin_pct=0``; only if that is infeasible is it solved
against ``H_l`` itself, so feasibility is decided on the exact limits. In that second case the offers meet the
limit with no slack and the point lands on ``τ`` up to round-off (``congested_after`` may then count a line at
100 % + 10⁻¹² when ``margin_pct=0``; any margin avoids it).

**Infeasible.** When no ``(u, d)`` within the offers meets the limits, ``status="infeasible"``: nothing is
activated, the cost is 0 and the loadings after equal those before (the DSO would have to fall back on other
means, e.g. the blocking rule of :func:`~p2p_gym.grid.blocked_trades`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from p2p_gym.errors import GridError, OptimError
from p2p_gym.grid.model import line_headroom_ka

__all__ = [
    "FlexMarketBatch",
    "FlexMarketResult",
    "FlexOffer",
    "clear_flex_market",
    "clear_flex_market_batch",
    "line_headroom_ka",
]

FLEX_STATUSES: tuple[str, ...] = ("not_needed", "cleared", "infeasible")
_SHRINK = 1e-9  # relative tightening of the limits in the first solve (see the module docstring)
_HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


@dataclass(frozen=True)
class FlexOffer:
    """The flexibility agents still offer after the P2P market.

    Arrays are float[N] for one step or float[B, N] for a batch of steps (agent axis last). Prices may be given
    as scalars or any array broadcastable to the capacities' shape; they are stored at that shape.
    """

    up_kw: np.ndarray
    """float[N] or [B, N], kW ≥ 0: how much each agent can raise its net injection (more export / less import)."""
    down_kw: np.ndarray
    """float[N] or [B, N], kW ≥ 0: how much each agent can lower its net injection (curtail, charge, consume)."""
    up_price: np.ndarray
    """float[N] or [B, N], currency/kWh ≥ 0: bid price of upward activation."""
    down_price: np.ndarray
    """float[N] or [B, N], currency/kWh ≥ 0: bid price of downward activation."""

    def __post_init__(self) -> None:
        up = _nonneg_array("offer.up_kw", self.up_kw)
        if up.ndim not in (1, 2):
            raise GridError(f"offer.up_kw: expected shape (N,) or (B, N), got {up.shape}")
        down = _nonneg_array("offer.down_kw", self.down_kw)
        if down.shape != up.shape:
            raise GridError(f"offer.down_kw: expected the shape of offer.up_kw {up.shape}, got {down.shape}")
        object.__setattr__(self, "up_kw", up)
        object.__setattr__(self, "down_kw", down)
        for name in ("up_price", "down_price"):
            price = _nonneg_array(f"offer.{name}", getattr(self, name))
            try:
                price = np.broadcast_to(price, up.shape).copy()
            except ValueError as exc:
                raise GridError(
                    f"offer.{name}: expected a scalar or shape broadcastable to {up.shape}, got {price.shape}"
                ) from exc
            object.__setattr__(self, name, price)


@dataclass(frozen=True, eq=False)
class FlexMarketResult:
    """Outcome of the local flexibility market for one step (loadings in the linear grid model)."""

    status: str
    """``"not_needed"`` (no line above 100 % before), ``"cleared"`` or ``"infeasible"``."""
    up_kw: np.ndarray
    """float[N], kW: upward flexibility activated per agent (added to its net injection)."""
    down_kw: np.ndarray
    """float[N], kW: downward flexibility activated per agent (subtracted from its net injection)."""
    cost: float
    """Currency paid by the DSO for the step: ``Δt · Σ_i (c⁺_i u_i + c⁻_i d_i)``."""
    loading_before_pct: np.ndarray
    """float[L], %: line loadings under the P2P market's injections (0 for unrated lines)."""
    loading_after_pct: np.ndarray
    """float[L], %: line loadings after the activation."""
    congested_before: int
    """Number of lines above 100 % before (as ``GridReport.n_overloaded_lines`` of the linear check)."""
    congested_after: int
    """Number of lines above 100 % after."""

    @property
    def injection_delta_kw(self) -> np.ndarray:
        """float[N], kW: change of each agent's net injection, ``up_kw − down_kw``."""
        return self.up_kw - self.down_kw


@dataclass(frozen=True, eq=False)
class FlexMarketBatch:
    """Outcome of the local flexibility market for B steps (fields of :class:`FlexMarketResult` with a batch axis)."""

    status: tuple[str, ...]
    """B statuses (``"not_needed"``, ``"cleared"``, ``"infeasible"``)."""
    up_kw: np.ndarray
    """float[B, N], kW."""
    down_kw: np.ndarray
    """float[B, N], kW."""
    cost: np.ndarray
    """float[B], currency."""
    loading_before_pct: np.ndarray
    """float[B, L], %."""
    loading_after_pct: np.ndarray
    """float[B, L], %."""
    congested_before: np.ndarray
    """int[B]."""
    congested_after: np.ndarray
    """int[B]."""

    def result(self, b: int) -> FlexMarketResult:
        """Row ``b`` as a :class:`FlexMarketResult`."""
        return FlexMarketResult(
            status=self.status[b],
            up_kw=self.up_kw[b],
            down_kw=self.down_kw[b],
            cost=float(self.cost[b]),
            loading_before_pct=self.loading_before_pct[b],
            loading_after_pct=self.loading_after_pct[b],
            congested_before=int(self.congested_before[b]),
            congested_after=int(self.congested_after[b]),
        )


def clear_flex_market(
    sens_i: Any,
    max_i_ka: Any,
    i0_ka: Any,
    injection_kw: Any,
    offer: FlexOffer,
    dt_hours: float,
    margin_pct: float = 0.0,
    *,
    a0_ka: Any = None,
) -> FlexMarketResult:
    """Clear the DSO's local flexibility market for one step (see the module docstring for the formulation).

    Args:
        sens_i: float[L, N], kA/kW: signed line-current sensitivities ``S`` (the linear
            :class:`~p2p_gym.grid.GridModel`'s ``sensitivities["line_current_ka_per_kw"]``).
        max_i_ka: float[L], kA ≥ 0: line ratings (``GridModel.max_i_ka``; lines with 0 are not limited).
        i0_ka: float[L], kA ≥ 0: the reactive (quadrature) line currents at zero injection
            (``sensitivities["line_current_ka"]``).
        injection_kw: float[N], kW: net injections after the P2P market (positive = export).
        offer: a :class:`FlexOffer` with float[N] arrays.
        dt_hours: step length in hours (> 0), for the cost.
        margin_pct: in [0, 100): the DSO brings every line to at most ``100 − margin_pct`` % once it acts.
        a0_ka: float[L], kA, signed: the active line currents at zero agent injection ``A0``
            (``sensitivities["line_active_current_ka"]``, plus ``line_current_ka_per_kw_background @ b`` when the
            model has background injections ``b``); None = zeros (the earlier model without base flows).

    Returns:
        A :class:`FlexMarketResult`.

    Raises:
        GridError: an argument has the wrong shape or a value out of range (named in the message).
        OptimError: HiGHS failed for another reason than infeasibility (never expected on valid input).
    """
    s, imax, i0 = _validate_grid(sens_i, max_i_ka, i0_ka)
    n = s.shape[1]
    p = _validate_injection(injection_kw, n, batched=False)
    a0 = _validate_a0(a0_ka, len(imax), None)
    if not isinstance(offer, FlexOffer):
        raise GridError(f"offer: expected a FlexOffer, got {type(offer).__name__}")
    if offer.up_kw.shape != (n,):
        raise GridError(
            f"offer: expected float[{n}] arrays (one entry per agent), got shape {offer.up_kw.shape}"
        )
    dt, target = _validate_scalars(dt_hours, margin_pct)
    lines = _Lines(s, imax, i0, target)
    before = lines.loading_pct(p[None, :], a0)[0]
    return _clear_row(lines, p, a0, before, offer.up_kw, offer.down_kw, offer.up_price, offer.down_price, dt)


def clear_flex_market_batch(
    sens_i: Any,
    max_i_ka: Any,
    i0_ka: Any,
    injection_kw: Any,
    offer: FlexOffer,
    dt_hours: float,
    margin_pct: float = 0.0,
    *,
    a0_ka: Any = None,
) -> FlexMarketBatch:
    """Clear the local flexibility market for B steps: ``injection_kw`` float[B, N] and an ``offer`` with float[B, N]
    arrays (float[N] arrays are the same offer in every row). The loadings before are one matrix product; one LP is
    solved per congested row. ``a0_ka`` may be float[L] (every row) or float[B, L] (per row, e.g. with the step's
    background flows ``sensitivities["line_active_current_ka"] + background_kw[t] @ S_bg.T``). Other arguments and
    errors as :func:`clear_flex_market`."""
    s, imax, i0 = _validate_grid(sens_i, max_i_ka, i0_ka)
    n = s.shape[1]
    inj = _validate_injection(injection_kw, n, batched=True)
    b = inj.shape[0]
    if not isinstance(offer, FlexOffer):
        raise GridError(f"offer: expected a FlexOffer, got {type(offer).__name__}")
    if offer.up_kw.shape not in ((n,), (b, n)):
        raise GridError(
            f"offer: expected float[{b}, {n}] or float[{n}] arrays, got shape {offer.up_kw.shape}"
        )
    dt, target = _validate_scalars(dt_hours, margin_pct)
    a0 = np.broadcast_to(_validate_a0(a0_ka, len(imax), b), (b, len(imax)))
    up, down = np.broadcast_to(offer.up_kw, (b, n)), np.broadcast_to(offer.down_kw, (b, n))
    up_price, down_price = np.broadcast_to(offer.up_price, (b, n)), np.broadcast_to(offer.down_price, (b, n))
    lines = _Lines(s, imax, i0, target)
    before = lines.loading_pct(inj, a0)
    rows = [
        _clear_row(lines, inj[k], a0[k], before[k], up[k], down[k], up_price[k], down_price[k], dt)
        for k in range(b)
    ]
    return FlexMarketBatch(
        status=tuple(r.status for r in rows),
        up_kw=np.array([r.up_kw for r in rows]).reshape(b, n),
        down_kw=np.array([r.down_kw for r in rows]).reshape(b, n),
        cost=np.array([r.cost for r in rows], dtype=float),
        loading_before_pct=before,
        loading_after_pct=np.array([r.loading_after_pct for r in rows]).reshape(b, len(imax)),
        congested_before=np.array([r.congested_before for r in rows], dtype=int),
        congested_after=np.array([r.congested_after for r in rows], dtype=int),
    )


# --------------------------------------------------------------------------------------------- internals
class _Lines:
    """The rated lines' linear model and headroom at the target loading."""

    def __init__(self, s: np.ndarray, imax: np.ndarray, i0: np.ndarray, target_pct: float) -> None:
        self.s, self.imax, self.i0, self.target_pct = s, imax, i0, target_pct
        self.rated = imax > 0
        self.pct_per_ka = np.where(self.rated, 100.0 / np.where(self.rated, imax, 1.0), 0.0)
        self.head = line_headroom_ka(imax, i0, target_pct)  # NaN: I0 alone exceeds the target
        self.hopeless = self.rated & np.isnan(self.head)

    def loading_pct(self, inj: np.ndarray, a0: np.ndarray) -> np.ndarray:
        """float[B, L]: the environment's linear loading, √(I0² + (A0 + S p)²) / I^max (GridModel._check_linear),
        for injections float[B, N] and base active currents ``a0`` float[L] or [B, L]."""
        return np.sqrt(self.i0**2 + (a0 + inj @ self.s.T) ** 2) * self.pct_per_ka


def _clear_row(
    lines: _Lines,
    p: np.ndarray,
    a0: np.ndarray,
    before: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    up_price: np.ndarray,
    down_price: np.ndarray,
    dt: float,
) -> FlexMarketResult:
    n = len(p)
    congested = int(np.count_nonzero(before > 100.0))
    zero = np.zeros(n)

    def unchanged(status: str) -> FlexMarketResult:
        return FlexMarketResult(status, zero, zero.copy(), 0.0, before, before.copy(), congested, congested)

    if congested == 0:
        return unchanged("not_needed")
    if lines.hopeless.any():
        return unchanged("infeasible")
    s = lines.s[lines.rated]
    imax = lines.imax[lines.rated]
    head = lines.head[lines.rated]
    f0 = a0[lines.rated] + s @ p  # the signed active currents after the P2P market
    # Screening: the interval of F⁰ + S (u − d) over the offered box; lines that cannot leave [−H, H] are dropped.
    pos, neg = np.maximum(s, 0.0), np.minimum(s, 0.0)
    top = f0 + pos @ up - neg @ down
    bottom = f0 + neg @ up - pos @ down
    active = np.maximum(np.abs(top), np.abs(bottom)) > head * (1.0 - 2 * _SHRINK)
    s, imax, head, f0 = s[active], imax[active], head[active], f0[active]
    # Rows in fractions of each line's rating I^max (right-hand sides in [0, 2]): well scaled for HiGHS.
    rows = s / imax[:, None]
    a_ub = np.block([[rows, -rows], [-rows, rows]])
    cost = np.concatenate([up_price, down_price])
    bounds = np.column_stack([np.zeros(2 * n), np.concatenate([up, down])])
    x = None
    for shrink in (_SHRINK, 0.0):
        h = head * (1.0 - shrink)
        b_ub = np.concatenate([(h - f0) / imax, (h + f0) / imax])
        x = _solve(cost, a_ub, b_ub, bounds)
        if x is not None:
            break
    if x is None:
        return unchanged("infeasible")
    u = np.clip(x[:n], 0.0, up)
    d = np.clip(x[n:], 0.0, down)
    after = lines.loading_pct((p + u - d)[None, :], a0)[0]
    # The point HiGHS returns meets the rows it was given; anything more than round-off above is a solver fault.
    if np.any(after > lines.target_pct + 1e-6):
        worst = int(np.argmax(after))
        raise OptimError(
            f"flex market: HiGHS returned a point with line {worst} at {after[worst]:.6f} %, above the target "
            f"{lines.target_pct} %"
        )
    return FlexMarketResult(
        status="cleared",
        up_kw=u,
        down_kw=d,
        cost=float(dt * (up_price @ u + down_price @ d)),
        loading_before_pct=before,
        loading_after_pct=after,
        congested_before=congested,
        congested_after=int(np.count_nonzero(after > 100.0)),
    )


def _solve(cost: np.ndarray, a_ub: np.ndarray, b_ub: np.ndarray, bounds: np.ndarray) -> np.ndarray | None:
    """The LP's solution, None when infeasible; OptimError on any other solver outcome."""
    from scipy.optimize import linprog  # imported on first use: keeps `import p2p_gym.grid` light

    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs", options=_HIGHS_OPTIONS)
    if res.status == 2:
        return None
    if res.status != 0 or res.x is None:
        raise OptimError(f"flex market: HiGHS failed with status {res.status}: {res.message}")
    return np.asarray(res.x, dtype=float)


def _float_array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GridError(f"{name}: expected an array of numbers, got {value!r:.60}") from exc
    if not np.all(np.isfinite(arr)):
        raise GridError(f"{name}: contains NaN or infinite values; all entries must be finite")
    return arr


def _nonneg_array(name: str, value: Any) -> np.ndarray:
    arr = _float_array(name, value)
    if np.any(arr < 0):
        raise GridError(f"{name}: must be ≥ 0, got minimum {arr.min()!r}")
    return arr


def _validate_grid(sens_i: Any, max_i_ka: Any, i0_ka: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = _float_array("sens_i", sens_i)
    if s.ndim != 2:
        raise GridError(f"sens_i: expected shape (L, N) (lines × agents, kA/kW), got {s.shape}")
    n_lines = s.shape[0]
    imax = _nonneg_array("max_i_ka", max_i_ka)
    if imax.shape != (n_lines,):
        raise GridError(
            f"max_i_ka: expected shape ({n_lines},) (one rating per line of sens_i), got {imax.shape}"
        )
    i0 = _nonneg_array("i0_ka", i0_ka)
    if i0.shape != (n_lines,):
        raise GridError(f"i0_ka: expected shape ({n_lines},) (one no-load current per line), got {i0.shape}")
    return s, imax, i0


def _validate_a0(a0_ka: Any, n_lines: int, rows: int | None) -> np.ndarray:
    """float[L] (or float[B, L] when ``rows`` is B) signed base active currents; zeros for None."""
    if a0_ka is None:
        return np.zeros(n_lines)
    a0 = _float_array("a0_ka", a0_ka)
    if a0.shape == (n_lines,) or (rows is not None and a0.shape == (rows, n_lines)):
        return a0
    want = f"({n_lines},)" if rows is None else f"({n_lines},) or ({rows}, {n_lines})"
    raise GridError(
        f"a0_ka: expected shape {want} (one signed active current per line of sens_i, kA), got {a0.shape}"
    )


def _validate_injection(injection_kw: Any, n: int, batched: bool) -> np.ndarray:
    inj = _float_array("injection_kw", injection_kw)
    want = (2, f"(B, {n})") if batched else (1, f"({n},)")
    if inj.ndim != want[0] or inj.shape[-1] != n:
        raise GridError(f"injection_kw: expected shape {want[1]}, got {inj.shape}")
    return inj


def _validate_scalars(dt_hours: Any, margin_pct: Any) -> tuple[float, float]:
    try:
        dt, margin = float(dt_hours), float(margin_pct)
    except (TypeError, ValueError) as exc:
        raise GridError(f"dt_hours, margin_pct: expected numbers, got {dt_hours!r}, {margin_pct!r}") from exc
    if not (np.isfinite(dt) and dt > 0):
        raise GridError(f"dt_hours: must be a finite number > 0, got {dt_hours!r}")
    if not (np.isfinite(margin) and 0.0 <= margin < 100.0):
        raise GridError(f"margin_pct: must be in [0, 100), got {margin_pct!r}")
    return dt, 100.0 - margin
