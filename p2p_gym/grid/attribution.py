"""Flows attributed to trades, the DSO's blocking rule and the allocation of a grid-violation penalty.

All functions work on the linear grid model's sensitivities (:attr:`p2p_gym.grid.GridModel.sensitivities`):
``S_i`` float[L, N] (signed line current in kA per kW injected by each agent) and ``S_v`` float[V, N] (bus voltage
in p.u. per kW). The penalty allocation broadcasts over a leading batch axis.

*Path accounting* (the distribution-grid view of P2P trades in the EUniversal project's deliverable D5.3, 2022,
§5, and of Le Goff Latimier & Ben Ahmed 2023, §5): a trade of q kW from seller s to buyer b is attributed the
signed line currents ``(S_i[:, s] − S_i[:, b]) · q``, the flow that would change if s injected q more and b
withdrew q more, everything else fixed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FlowAttribution", "allocate_penalty", "blocked_trades"]


class FlowAttribution:
    """Attributed line loadings of bilateral trades (path accounting, see the module docstring)."""

    def __init__(self, line_current_ka_per_kw: np.ndarray, max_i_ka: np.ndarray) -> None:
        self.s = np.asarray(line_current_ka_per_kw, dtype=float)
        with np.errstate(divide="ignore"):
            self.pct_per_ka = np.where(max_i_ka > 0, 100.0 / np.where(max_i_ka > 0, max_i_ka, 1.0), 0.0)

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
) -> np.ndarray:
    """The DSO's blocking rule: bool[M], trades whose attributed flow raises the loading of a line that is already
    at ≥ ``threshold_pct`` under the physical injections ``injection_kw`` float[N] (EUniversal D5.3 §5, the
    scenario where the DSO vetoes trades on congested lines).

    Args:
        attribution: the sensitivities.
        injection_kw: float[N] physical net injections (kW).
        seller, buyer: int[M] agents of each trade; kw: float[M] its power (kWh per step / step hours).
        threshold_pct: loading from which a line counts as stressed.
    """
    blocked = np.zeros(len(kw), dtype=bool)
    if not len(kw):
        return blocked
    flow = attribution.s @ injection_kw  # signed line currents (kA) of the physical injections
    stressed = np.abs(flow) * attribution.pct_per_ka >= threshold_pct
    if not stressed.any():
        return blocked
    att = attribution.trade_loading_pct(seller, buyer, kw)
    return ((att[stressed] * np.sign(flow[stressed])[:, None]) > 1e-12).any(axis=0)


def allocate_penalty(
    rate: float,
    injection_kw: np.ndarray,
    line_loading_pct: np.ndarray,
    vm_pu: np.ndarray,
    converged: np.ndarray,
    sens_i: np.ndarray,
    sens_v: np.ndarray,
) -> np.ndarray:
    """Grid-violation penalty per agent, float[B, N] (currency).

    The total is ``rate · (Σ overflow in % points + 100 · Σ voltage excess in p.u.)`` over lines above 100 % and
    buses outside 0.95–1.05 p.u. It is shared among agents in proportion to their positive contribution to the
    violations: on overloaded lines, the part of the line flow an agent's injection drives in the flow's direction
    (``S_i[l, n] · p_n · sign(flow_l)``); at violated buses, its voltage change in the direction of the excess;
    the two shares weighted by the line and voltage parts of the total. Equal shares when nobody contributes.
    Rows whose power flow failed pay nothing.

    Args:
        rate: currency per % point (and per 0.01 p.u.).
        injection_kw: float[B, N]; line_loading_pct: float[B, L]; vm_pu: float[B, V]; converged: bool[B].
        sens_i: float[L, N] current sensitivities (kA/kW); sens_v: float[V, N] voltage sensitivities (p.u./kW).
    """
    inj = injection_kw
    b, n = inj.shape
    if rate <= 0:
        return np.zeros((b, n))
    line = np.where(converged[:, None], line_loading_pct, 0.0)
    vm = np.where(converged[:, None], vm_pu, 1.0)
    flow = inj @ sens_i.T  # [B, L]
    over_v = np.clip(vm - 1.05, 0.0, None) + np.clip(0.95 - vm, 0.0, None)  # [B, V]
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
