"""Flows attributed to trades, the DSO's blocking rule and the allocation of a grid-violation penalty.

All functions work on the linear grid model's sensitivities (:attr:`p2p_gym.grid.GridModel.sensitivities`):
``S_i`` float[L, N] (signed active line current in kA per kW injected by each agent) and ``S_v`` float[V, N] (bus
voltage in p.u. per kW). The penalty allocation broadcasts over a leading batch axis.

The signed active current of a line under injections ``p`` is ``F = A0 + S_i p``, with ``A0`` (keyword ``a0_ka``,
``sensitivities["line_active_current_ka"]``, plus ``S_bg · b`` for background injections ``b``) its value at zero
agent injection, and the model's line current is ``√(I0² + F²)`` with ``I0`` (``i0_ka``,
``sensitivities["line_current_ka"]``) the reactive rest. The direction of a line's flow, which decides whether an
agent or a trade loads it, is the sign of ``F``. ``a0_ka=None`` and ``i0_ka=None`` take zeros (the earlier rules:
``F = S_i p`` and a line's loading ``|F| / I^max``).

*Path accounting* (the distribution-grid view of P2P trades in the EUniversal project's deliverable D5.3, 2022,
§5, and of Le Goff Latimier & Ben Ahmed 2023, §5): a trade of q kW from seller s to buyer b is attributed the
signed line currents ``(S_i[:, s] − S_i[:, b]) · q``, the flow that would change if s injected q more and b
withdrew q more, everything else fixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2p_gym.errors import GridError

__all__ = ["FlowAttribution", "allocate_penalty", "blocked_trades"]


class FlowAttribution:
    """Attributed line loadings of bilateral trades (path accounting, see the module docstring).

    Args:
        line_current_ka_per_kw: float[L, N], ``S_i`` (kA/kW).
        max_i_ka: float[L] ≥ 0, line ratings (kA; 0 = unrated, loading 0).
        i0_ka: float[L] ≥ 0, the reactive line currents at zero injection (kA); None = zeros.
        a0_ka: float[L], the signed active line currents at zero agent injection (kA); None = zeros.
            :func:`blocked_trades` can override it per call (e.g. with the step's background flows).

    Raises:
        GridError: a shape or value out of range (named).
    """

    def __init__(
        self,
        line_current_ka_per_kw: np.ndarray,
        max_i_ka: np.ndarray,
        *,
        i0_ka: np.ndarray | None = None,
        a0_ka: np.ndarray | None = None,
    ) -> None:
        self.s = np.asarray(line_current_ka_per_kw, dtype=float)
        if self.s.ndim != 2:
            raise GridError(
                f"line_current_ka_per_kw: expected float[L, N] (kA per kW), got shape {self.s.shape}"
            )
        n_lines = self.s.shape[0]
        max_i_ka = np.asarray(max_i_ka, dtype=float)
        if max_i_ka.shape != (n_lines,):
            raise GridError(
                f"max_i_ka: expected shape ({n_lines},) (one rating per line), got {max_i_ka.shape}"
            )
        with np.errstate(divide="ignore"):
            self.pct_per_ka = np.where(max_i_ka > 0, 100.0 / np.where(max_i_ka > 0, max_i_ka, 1.0), 0.0)
        self.i0_ka = np.zeros(n_lines) if i0_ka is None else _per_line("i0_ka", i0_ka, n_lines)
        if np.any(self.i0_ka < 0):
            raise GridError(f"i0_ka: must be ≥ 0 (kA), got minimum {self.i0_ka.min()!r}")
        self.a0_ka = np.zeros(n_lines) if a0_ka is None else _per_line("a0_ka", a0_ka, n_lines)

    def loading_pct(self, injection_kw: np.ndarray, a0_ka: np.ndarray | None = None) -> np.ndarray:
        """float[L] (or [B, L]): the linear model's loading ``100 · √(I0² + (A0 + S_i p)²) / I^max``."""
        a0 = self.a0_ka if a0_ka is None else a0_ka
        flow = a0 + np.asarray(injection_kw, dtype=float) @ self.s.T
        return np.sqrt(self.i0_ka**2 + flow**2) * self.pct_per_ka

    def trade_loading_pct(self, seller: np.ndarray, buyer: np.ndarray, kw: np.ndarray) -> np.ndarray:
        """float[L, M]: signed loading (% of limit) attributed to each of M trades."""
        return (self.s[:, seller] - self.s[:, buyer]) * kw[None, :] * self.pct_per_ka[:, None]


def blocked_trades(
    attribution: FlowAttribution,
    injection_kw: np.ndarray,
    seller: np.ndarray,
    buyer: np.ndarray,
    kw: np.ndarray,
    threshold_pct: float,
    *,
    a0_ka: np.ndarray | None = None,
) -> np.ndarray:
    """The DSO's blocking rule: bool[M], trades whose attributed flow raises the loading of a line that is already
    at ≥ ``threshold_pct`` under the physical injections ``injection_kw`` float[N] (EUniversal D5.3 §5, the
    scenario where the DSO vetoes trades on congested lines).

    A line is stressed when the linear model's loading ``100 · √(I0² + F²) / I^max`` with ``F = A0 + S_i p`` is
    ≥ ``threshold_pct``; a trade raises it when its attributed flow has the sign of ``F`` (any non-zero attributed
    flow when ``F = 0``, a line stressed by its reactive current alone).

    Args:
        attribution: the sensitivities (and ``I0``, ``A0``).
        injection_kw: float[N] physical net injections (kW).
        seller, buyer: int[M] agents of each trade; kw: float[M] its power (kWh per step / step hours).
        threshold_pct: loading from which a line counts as stressed.
        a0_ka: float[L], signed active line currents at zero agent injection for this call (kA, e.g.
            ``attribution.a0_ka + S_bg @ background_kw[t]``); None = ``attribution.a0_ka``.

    Raises:
        GridError: ``a0_ka`` of the wrong shape or not finite.
    """
    blocked = np.zeros(len(kw), dtype=bool)
    if not len(kw):
        return blocked
    a0 = attribution.a0_ka if a0_ka is None else _per_line("a0_ka", a0_ka, attribution.s.shape[0])
    flow = a0 + attribution.s @ injection_kw  # signed active line currents (kA) of the physical injections
    stressed = np.sqrt(attribution.i0_ka**2 + flow**2) * attribution.pct_per_ka >= threshold_pct
    if not stressed.any():
        return blocked
    att = attribution.trade_loading_pct(seller, buyer, kw)[stressed]
    sign = np.sign(flow[stressed])[:, None]
    raises = np.where(sign == 0, np.abs(att) > 1e-12, att * sign > 1e-12)
    return raises.any(axis=0)


def allocate_penalty(
    rate: float,
    injection_kw: np.ndarray,
    line_loading_pct: np.ndarray,
    vm_pu: np.ndarray,
    converged: np.ndarray,
    sens_i: np.ndarray,
    sens_v: np.ndarray,
    *,
    a0_ka: np.ndarray | None = None,
    v_band: tuple[float, float] = (0.95, 1.05),
) -> np.ndarray:
    """Grid-violation penalty per agent, float[B, N] (currency).

    The total is ``rate · (Σ overflow in % points + 100 · Σ voltage excess in p.u.)`` over lines above 100 % and
    buses outside ``v_band`` (p.u.; the scenario's ``voltage_band`` in the simulation). It is shared among agents
    in proportion to their positive contribution to the violations: on overloaded lines, the part of the line
    flow an agent's injection drives in the flow's direction (``S_i[l, n] · p_n · sign(F_l)``, ``F = A0 + S_i p``
    the signed active current; ``A0`` itself, the flows of the net's other elements, is nobody's share); at
    violated buses, its voltage change in the direction of the excess; the two shares weighted by the line and
    voltage parts of the total. Equal shares when nobody contributes.
    Rows whose power flow failed pay nothing.

    Args:
        rate: currency per % point (and per 0.01 p.u.).
        injection_kw: float[B, N]; line_loading_pct: float[B, L]; vm_pu: float[B, V]; converged: bool[B].
        sens_i: float[L, N] current sensitivities (kA/kW); sens_v: float[V, N] voltage sensitivities (p.u./kW).
        a0_ka: float[L] or float[B, L], signed active line currents at zero agent injection (kA,
            ``sensitivities["line_active_current_ka"]`` plus the background's ``S_bg @ b`` per row); None = zeros.

    Raises:
        GridError: ``a0_ka`` of the wrong shape or not finite.
    """
    inj = injection_kw
    b, n = inj.shape
    if rate <= 0:
        return np.zeros((b, n))
    line = np.where(converged[:, None], line_loading_pct, 0.0)
    vm = np.where(converged[:, None], vm_pu, 1.0)
    flow = inj @ sens_i.T  # [B, L]
    if a0_ka is not None:
        flow = flow + _per_line("a0_ka", a0_ka, sens_i.shape[0], rows=b)
    over_v = np.clip(vm - v_band[1], 0.0, None) + np.clip(v_band[0] - vm, 0.0, None)  # [B, V]
    excess = np.clip(line - 100.0, 0.0, None)  # [B, L]
    total = rate * (excess.sum(axis=1) + 100.0 * over_v.sum(axis=1))
    contrib_l = sens_i[None] * inj[:, None, :] * np.sign(flow)[:, :, None]  # [B, L, N]
    share = np.where((excess > 0)[:, :, None], np.clip(contrib_l, 0, None), 0.0).sum(axis=1)
    ssum = share.sum(axis=1, keepdims=True)
    share = np.where(ssum > 0, share / np.maximum(ssum, 1e-12), share)
    dv = sens_v[None] * inj[:, None, :]  # [B, V, N]
    vpos = np.clip(np.sign(vm - 1.0)[:, :, None] * dv, 0, None)
    vshare = np.where((over_v > 0)[:, :, None], vpos, 0.0).sum(axis=1)
    vsum = vshare.sum(axis=1, keepdims=True)
    vshare = np.where(vsum > 0, vshare / np.maximum(vsum, 1e-12), vshare)
    ex, ov = excess.sum(axis=1), over_v.sum(axis=1)
    w_line = (ex / np.maximum(ex + 100.0 * ov, 1e-12))[:, None]
    weights = w_line * share + (1.0 - w_line) * vshare
    wsum = weights.sum(axis=1, keepdims=True)
    weights = np.where(wsum > 0, weights, 1.0 / n)
    out = total[:, None] * weights / weights.sum(axis=1, keepdims=True)
    return np.where((total > 0)[:, None], out, 0.0)


def _per_line(name: str, value: Any, n_lines: int, rows: int | None = None) -> np.ndarray:
    """float[L] (or float[B, L] when ``rows`` is B) of finite numbers, or a GridError naming the argument."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GridError(f"{name}: expected an array of numbers, got {value!r:.60}") from exc
    if not (arr.shape == (n_lines,) or (rows is not None and arr.shape == (rows, n_lines))):
        want = f"({n_lines},)" if rows is None else f"({n_lines},) or ({rows}, {n_lines})"
        raise GridError(
            f"{name}: expected shape {want} (one value per line of the sensitivities), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise GridError(f"{name}: contains NaN or infinite values; all entries must be finite")
    return arr
