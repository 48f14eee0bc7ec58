"""The DSO's rules that shape a P2P market *before* it clears (EUniversal D5.3, 2022, §5.3), as pure functions.

All functions take the linear grid model's current sensitivities ``S = sensitivities["line_current_ka_per_kw"]``
float[L, N] (:attr:`p2p_gym.grid.GridModel.sensitivities`): ``S[l, n]`` is the signed active current (kA) on line
``l`` per kW injected by agent ``n``, so the signed active flow of injections ``p`` float[N] is ``F = A0 + S p``
and the line's loading is the linear model's ``100 · sqrt(I0_l² + F_l²) / max_i_ka_l``. ``A0`` (``a0_ka``,
``sensitivities["line_active_current_ka"]``, plus ``S_bg · b`` for background injections ``b``) is the signed
active current at zero agent injection, the flows of the net's other elements; ``I0``
(``sensitivities["line_current_ka"]``) the rest of the current at zero injection, in quadrature (reactive).
``a0_ka=None`` takes ``A0 = 0``, the earlier model. Every array may carry a leading batch axis B (one row per
simulated episode).

**Forecast no-P2P state and at-risk lines** (:func:`at_risk_lines`). Before the market the DSO evaluates the
state without P2P trading: every agent's inflexible net injection, its PV minus its load as forecast (here the
step's actual profiles, ``Scenario.net_kw[t]``, since forecasts are perfect in this version). Lines whose loading
is ≥ ``threshold_pct`` (80 % by default; the report also uses 100 %) are *at risk*.

**Effect of a pair on a line** (:func:`pair_effects`). One kW traded from seller ``s`` to buyer ``b`` (s injects
1 kW more, b withdraws 1 kW more) changes the signed flow of line ``l`` by ``ΔS_l(s, b) = S[l, s] − S[l, b]``
(the path accounting of :mod:`p2p_gym.grid.attribution`). On an at-risk line the pair

* *loads* the line if ``ΔS_l(s, b)`` has the sign of ``F_l`` (the loading rises; on a line whose active flow
  is exactly 0 but which is at risk through its reactive current ``I0``, any non-zero ``ΔS`` loads it),
* *relieves* it if ``ΔS_l(s, b)`` has the opposite sign,
* is *neutral* if ``|ΔS_l(s, b)| ≤ tol · max |S|`` (agents on the same side of the line: their sensitivities
  differ only by the finite-difference noise of the linear model, ~1e-4 of the largest entry).

Since ``ΔS_l(b, s) = −ΔS_l(s, b)``, a pair that loads a line in one direction relieves it in the other.

**Scenario 2, pre-emptive blocking** (:func:`forbidden_pairs`). The DSO publishes the seller→buyer pairs that
load at least one at-risk line; the market matches without them. ``forbidden[s, b]`` is directional.

**Scenario 3, redirection** (:func:`redirect_preference`). The cost-preference matrix β of the bilateral
matching (currency/kWh per pair; the matching maximises the surplus net of β) is updated direction-aware with a
multiplier ``W`` (0.2 in the report): for every at-risk line, a pair that loads it gets ``β ← β·(1 + W)``, one
that relieves it ``β ← β·(1 − W)``; a pair loading ``k`` and relieving ``m`` at-risk lines ends at
``β·(1 + W)^k·(1 − W)^m``; neutral pairs are untouched. This multiplicative update is the report's, and it does
nothing to a zero base: it needs a non-zero base cost such as the env's ``preference="distance"``
(``preference_per_km ×`` the agents' path length in km, so the directional base cost of a trade s→b is
``β[s, b] + β[b, s] = 2 · preference_per_km · d_sb``) or a uniform cost ``c·(1 − I)``. Pairs of agents at the
same bus keep a zero distance cost. The additive variant ``β ← max(0, β + W·spread·(k − m))`` (``spread``
default: the largest off-diagonal β) also moves zero-cost pairs; it is not the report's rule.

**Feeding the bilateral clearing** (``p2p_gym.market.clear(orders, "bilateral", partners=..., preference=...)``).
The clearing lets bid of agent b meet ask of agent s only if ``partners[b, s] and partners[s, b]`` and charges
the pair ``β[b, s] + β[s, b]``: both are symmetric in (s, b), so the clearing cannot tell the direction of a
trade. Writing a directional update into the two entries of a pair cancels to first order (with a symmetric
base ``β0``: ``β0(1 + W) + β0(1 − W) = 2β0``). :func:`partners_from_forbidden` and :func:`clearing_preference`
therefore project the directional rules onto the clearing's symmetric inputs using the agents' sides
(``is_buy``): a pair can then trade only from its seller to its buyer, and the projection is exact when every
agent has a single order side, as in the simulation (one order per agent). Without sides (or with agents that
both bid and ask) the projection is conservative: a pair is blocked if either direction is forbidden, and it
pays the larger of its two directional costs. Exact directional rules for agents on both sides would need the
clearing to accept a directional mask and cost on (seller, buyer) pairs.

The call markets (``"uniform"``, ``"pay_as_bid"``), the CDA and the community rules have no pairs before clearing,
so a forbidden-pair rule cannot shape them; the nearest equivalents are zonal splitting (separate books per zone
of the feeder, so that no forbidden pair shares a book — this also blocks the pairs' allowed direction) or the
post-clearing block rule :func:`p2p_gym.grid.blocked_trades`.

Transformers work the same way with the model's ``trafo_loading_pct_per_kw`` as ``sens_i``, a limit of 100, the
reactive loading ``trafo_loading_pct`` as ``i0_ka`` and the active loading at zero injection
``trafo_active_loading_pct`` as ``a0_ka`` (the model's transformer loading has the same formula).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2p_gym.errors import GridError

__all__ = [
    "PREFERENCE_MODES",
    "at_risk_lines",
    "clearing_preference",
    "forbidden_pairs",
    "pair_effects",
    "partners_from_forbidden",
    "redirect_preference",
]

#: Update rules of :func:`redirect_preference`.
PREFERENCE_MODES: tuple[str, ...] = ("multiplicative", "additive")


# ----------------------------------------------------------------------------------------------- validation
def _array(name: str, value: Any, dtype: Any = np.float64) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise GridError(f"{name}: expected a numeric array, got {value!r:.60}") from exc
    if dtype is np.float64 and not np.all(np.isfinite(arr)):
        raise GridError(f"{name}: contains NaN or infinite values; all entries must be finite")
    return arr


def _sens(sens_i: Any) -> np.ndarray:
    s = _array("sens_i", sens_i)
    if s.ndim != 2:
        raise GridError(f"sens_i: expected float[L, N] (kA per kW), got shape {s.shape}")
    return s


def _lines(name: str, value: Any, n_lines: int, dtype: Any = np.float64) -> np.ndarray:
    """float/bool[L] or [B, L]."""
    if dtype is bool:
        arr = np.asarray(value)
        if arr.dtype != bool and not (np.issubdtype(arr.dtype, np.integer) and np.isin(arr, (0, 1)).all()):
            raise GridError(
                f"{name}: expected bool[L] or bool[B, L] with L = {n_lines}, got dtype {arr.dtype}"
            )
        arr = arr.astype(bool)
    else:
        arr = _array(name, value)
    if arr.ndim not in (1, 2) or arr.shape[-1] != n_lines:
        raise GridError(f"{name}: expected shape ({n_lines},) or (B, {n_lines}), got {arr.shape}")
    return arr


def _tol(tol: Any) -> float:
    if not isinstance(tol, (int, float, np.floating, np.integer)) or not (np.isfinite(tol) and 0 <= tol < 1):
        raise GridError(f"tol: must be a number in [0, 1) (relative to max |sens_i|), got {tol!r}")
    return float(tol)


def _square(name: str, value: Any, n: int, dtype: Any = np.float64) -> np.ndarray:
    """float/bool[N, N] or [B, N, N]."""
    if dtype is bool:
        arr = np.asarray(value)
        if arr.dtype != bool:
            raise GridError(f"{name}: expected bool[N, N] or bool[B, N, N], got dtype {arr.dtype}")
    else:
        arr = _array(name, value)
    if arr.ndim not in (2, 3) or arr.shape[-2:] != (n, n):
        raise GridError(f"{name}: expected shape ({n}, {n}) or (B, {n}, {n}), got {arr.shape}")
    return arr


def _is_buy(is_buy: Any, n: int) -> np.ndarray:
    arr = np.asarray(is_buy)
    if arr.dtype != bool:
        raise GridError(
            f"is_buy: expected bool[N] or bool[B, N] (each agent's order side), got dtype {arr.dtype}"
        )
    if arr.ndim not in (1, 2) or arr.shape[-1] != n:
        raise GridError(f"is_buy: expected shape ({n},) or (B, {n}), got {arr.shape}")
    return arr


# ----------------------------------------------------------------------------------------------- the rules
def at_risk_lines(
    sens_i: Any,
    max_i_ka: Any,
    i0_ka: Any,
    injection_kw: Any,
    threshold_pct: float = 80.0,
    *,
    a0_ka: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """At-risk lines of the forecast no-P2P state: loading ≥ ``threshold_pct`` under ``injection_kw``.

    Args:
        sens_i: float[L, N], signed line current (kA) per kW injected by each agent.
        max_i_ka: float[L] ≥ 0, thermal limits (kA); lines with a limit of 0 have loading 0 (as in the model).
        i0_ka: float[L] ≥ 0, the reactive current at zero injection (kA), ``sensitivities["line_current_ka"]``.
        injection_kw: float[N] or float[B, N], net injections (kW, positive = export), e.g.
            ``scenario.net_kw[t]``.
        threshold_pct: loading (%) from which a line is at risk (≥).
        a0_ka: float[L] or float[B, L], signed active current at zero agent injection (kA),
            ``sensitivities["line_active_current_ka"]`` (plus ``S_bg @ b`` for background injections ``b``,
            per row when they vary); None = zeros.

    Returns:
        ``(at_risk, flow_ka)``: bool[L] (or [B, L]) and the signed active flow ``A0 + S p`` float[L] (or [B, L])
        in kA, whose sign :func:`pair_effects` uses.

    Raises:
        GridError: a shape, a non-finite value, a negative limit/current or threshold (names the argument).
    """
    s = _sens(sens_i)
    n_lines, n = s.shape
    lim = _lines("max_i_ka", max_i_ka, n_lines)
    i0 = _lines("i0_ka", i0_ka, n_lines)
    for name, arr in (("max_i_ka", lim), ("i0_ka", i0)):
        if arr.ndim != 1 or np.any(arr < 0):
            raise GridError(
                f"{name}: expected float[{n_lines}] ≥ 0 (kA), got shape {arr.shape}, min {arr.min(initial=0.0)}"
            )
    inj = _array("injection_kw", injection_kw)
    if inj.ndim not in (1, 2) or inj.shape[-1] != n:
        raise GridError(f"injection_kw: expected shape ({n},) or (B, {n}), got {inj.shape}")
    thr = threshold_pct
    if not isinstance(thr, (int, float, np.integer, np.floating)) or not (np.isfinite(thr) and thr >= 0):
        raise GridError(f"threshold_pct: must be a finite number ≥ 0 (%), got {thr!r}")
    flow = inj @ s.T
    if a0_ka is not None:
        a0 = _lines("a0_ka", a0_ka, n_lines)
        if a0.ndim == 2 and (inj.ndim != 2 or len(a0) != len(inj)):
            raise GridError(
                f"a0_ka: a batch float[B, {n_lines}] needs injection_kw float[B, {n}] with the same B, got "
                f"{a0.shape} and {inj.shape}"
            )
        flow = a0 + flow
    pct_per_ka = np.divide(100.0, lim, out=np.zeros(n_lines), where=lim > 0)
    loading = np.sqrt(i0**2 + flow**2) * pct_per_ka
    return loading >= float(thr), flow


def pair_effects(sens_i: Any, at_risk: Any, flow: Any, tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """How many at-risk lines each seller→buyer pair loads and relieves (rules in the module docstring).

    Args:
        sens_i: float[L, N] (kA per kW).
        at_risk: bool[L] or bool[B, L], from :func:`at_risk_lines`.
        flow: float[L] or float[B, L], the signed active flow ``A0 + S p`` of the no-P2P state (or just its
            sign), as :func:`at_risk_lines` returns it.
        tol: a pair is neutral on line l if ``|S[l, s] − S[l, b]| ≤ tol · max |S|``.

    Returns:
        ``(n_load, n_relieve)``: int[N, N] (or [B, N, N]) indexed ``[seller, buyer]``; the diagonal is 0.
    """
    s = _sens(sens_i)
    n_lines, n = s.shape
    risk = _lines("at_risk", at_risk, n_lines, dtype=bool)
    f = _lines("flow", flow, n_lines)
    tol = _tol(tol)
    if risk.ndim == 2 and f.ndim == 2 and risk.shape != f.shape:
        raise GridError(f"at_risk, flow: batch shapes differ, got {risk.shape} and {f.shape}")
    batched = risk.ndim == 2 or f.ndim == 2
    risk2, f2 = np.broadcast_arrays(np.atleast_2d(risk), np.atleast_2d(f))
    rows = len(risk2)
    n_load = np.zeros((rows, n, n), dtype=np.int64)
    n_relieve = np.zeros((rows, n, n), dtype=np.int64)
    lines = np.flatnonzero(risk2.any(axis=0))  # only lines at risk in some row
    if len(lines):
        d = s[lines, :, None] - s[lines, None, :]  # [L', N, N]: ΔS_l(s, b)
        eps = tol * float(np.abs(s).max(initial=0.0))
        pos = (d > eps).reshape(len(lines), n * n).astype(np.int64)
        neg = (d < -eps).reshape(len(lines), n * n).astype(np.int64)
        r, sign = risk2[:, lines], np.sign(f2[:, lines])
        up, down, zero = r & (sign > 0), r & (sign < 0), r & (sign == 0)
        load = (up | zero).astype(np.int64) @ pos + (down | zero).astype(np.int64) @ neg
        relieve = up.astype(np.int64) @ neg + down.astype(np.int64) @ pos
        n_load, n_relieve = load.reshape(rows, n, n), relieve.reshape(rows, n, n)
    if not batched:
        return n_load[0], n_relieve[0]
    return n_load, n_relieve


def forbidden_pairs(sens_i: Any, at_risk: Any, flow: Any, tol: float = 1e-3) -> np.ndarray:
    """Scenario 2: bool[N, N] (or [B, N, N]), ``[seller, buyer]`` True where a trade from the seller to the buyer
    loads at least one at-risk line (arguments as :func:`pair_effects`). Directional; the diagonal is False."""
    return pair_effects(sens_i, at_risk, flow, tol)[0] > 0


def redirect_preference(
    beta: Any,
    sens_i: Any,
    at_risk: Any,
    flow: Any,
    w: float = 0.2,
    mode: str = "multiplicative",
    tol: float = 1e-3,
    spread: float | None = None,
) -> np.ndarray:
    """Scenario 3: the directional cost-preference matrix after the DSO's direction-aware update.

    Args:
        beta: float[N, N] or [B, N, N] ≥ 0, ``beta[s, b]`` the base cost (currency/kWh) of a trade from s to b.
            From a preference matrix P of the bilateral clearing (``P[i, j]``: cost i attaches to j), the
            directional base cost is ``P + P.T`` (what the clearing charges a pair).
        sens_i, at_risk, flow, tol: as :func:`pair_effects`.
        w: the multiplier W in [0, 1] (0.2 in the report).
        mode: ``"multiplicative"`` (the report's: ``β·(1 + W)^k·(1 − W)^m`` for a pair loading k and relieving m
            at-risk lines) or ``"additive"`` (``max(0, β + W·spread·(k − m))``).
        spread: the additive step's scale (currency/kWh); default the largest off-diagonal ``beta``.

    Returns:
        float[N, N] ≥ 0 (or [B, N, N] if ``beta`` or the line arrays are batched), indexed ``[seller, buyer]``.
        Feed it to the bilateral clearing through :func:`clearing_preference`.
    """
    s = _sens(sens_i)
    n = s.shape[1]
    b = _square("beta", beta, n)
    if np.any(b < 0):
        raise GridError(f"beta: must be ≥ 0 (a cost per kWh), got min {b.min()!r}")
    if not isinstance(w, (int, float, np.integer, np.floating)) or not (np.isfinite(w) and 0 <= w <= 1):
        raise GridError(f"w: must be a number in [0, 1], got {w!r}")
    if mode not in PREFERENCE_MODES:
        raise GridError(f"mode: must be one of {list(PREFERENCE_MODES)}, got {mode!r}")
    load, relieve = pair_effects(s, at_risk, flow, tol)
    if b.ndim == 3 and load.ndim == 3 and len(b) != len(load):
        raise GridError(f"beta: batch of {len(b)} rows, but at_risk/flow have {len(load)}")
    if mode == "multiplicative":
        return b * (1.0 + w) ** load * (1.0 - w) ** relieve
    if spread is None:
        off = ~np.eye(n, dtype=bool)
        spread = float(b[..., off].max(initial=0.0))
    elif not isinstance(spread, (int, float, np.integer, np.floating)) or not (
        np.isfinite(spread) and spread >= 0
    ):
        raise GridError(f"spread: must be a finite number ≥ 0 (currency/kWh) or None, got {spread!r}")
    return np.maximum(0.0, b + w * float(spread) * (load - relieve))


# ----------------------------------------------------------------------------------------------- clearing inputs
def partners_from_forbidden(forbidden: Any, is_buy: Any = None) -> np.ndarray:
    """The tightest ``partners`` matrix of the bilateral clearing that excludes every forbidden pair.

    The clearing needs mutual acceptance (``partners[b, s] and partners[s, b]``), so it cannot block one
    direction of a pair only. With the agents' order sides ``is_buy`` (one order per agent, as in the
    simulation) only the seller→buyer direction of a pair can trade, and the pair is blocked exactly when that
    direction is forbidden. Without sides a pair is blocked if either direction is forbidden, which also blocks
    the allowed direction of a pair forbidden one way only (an over-restriction).

    Args:
        forbidden: bool[N, N] or [B, N, N], ``[seller, buyer]`` (:func:`forbidden_pairs`).
        is_buy: None, or bool[N] / bool[B, N], True for agents that bid (buy), False for those that ask.

    Returns:
        bool[N, N] (or [B, N, N]), symmetric, ``partners[i, j]``: agent i accepts agent j.
    """
    fb = np.asarray(forbidden)
    if fb.ndim not in (2, 3) or fb.shape[-1] != fb.shape[-2]:
        raise GridError(f"forbidden: expected bool[N, N] or bool[B, N, N], got shape {fb.shape}")
    fb = _square("forbidden", fb, fb.shape[-1], dtype=bool)
    swap = np.swapaxes(fb, -1, -2)
    if is_buy is None:
        return ~(fb | swap)
    buy = _is_buy(is_buy, fb.shape[-1])
    sell = ~buy
    blocked = fb & sell[..., :, None] & buy[..., None, :]  # [seller i, buyer j], forbidden i→j
    return ~(blocked | np.swapaxes(blocked, -1, -2))


def clearing_preference(cost: Any, is_buy: Any = None) -> np.ndarray:
    """A symmetric preference matrix P for the bilateral clearing that charges each pair its directional cost.

    The clearing charges bid of b against ask of s ``P[b, s] + P[s, b]``. With the order sides ``is_buy``,
    ``P[s, b] = P[b, s] = cost[s, b] / 2`` for every seller s and buyer b, so a trade s→b pays exactly
    ``cost[s, b]``. Pairs whose direction is not known from ``is_buy`` (no sides given, or two agents on the
    same side) pay the larger directional cost, ``max(cost[i, j], cost[j, i]) / 2`` each.

    Args:
        cost: float[N, N] or [B, N, N] ≥ 0, ``[seller, buyer]`` (:func:`redirect_preference`).
        is_buy: None, or bool[N] / bool[B, N], as :func:`partners_from_forbidden`.

    Returns:
        float[N, N] (or [B, N, N]) ≥ 0, symmetric, for ``market.clear(..., preference=P)``.
    """
    c = np.asarray(cost)
    if c.ndim not in (2, 3) or c.shape[-1] != c.shape[-2]:
        raise GridError(f"cost: expected float[N, N] or float[B, N, N], got shape {c.shape}")
    c = _square("cost", c, c.shape[-1])
    if np.any(c < 0):
        raise GridError(f"cost: must be ≥ 0 (currency/kWh), got min {c.min()!r}")
    ct = np.swapaxes(c, -1, -2)
    out = 0.5 * np.maximum(c, ct)
    if is_buy is None:
        return out
    buy = _is_buy(is_buy, c.shape[-1])
    sb = ~buy[..., :, None] & buy[..., None, :]  # [i, j]: i sells, j buys → direction i→j
    bs = np.swapaxes(sb, -1, -2)  # j sells, i buys → direction j→i
    return np.where(sb, 0.5 * c, np.where(bs, 0.5 * ct, out))
