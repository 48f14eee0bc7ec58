"""Exogenous network fees γ_nm (Le Goff Latimier & Ben Ahmed 2023, eq. 12, §6.2) as preference matrices.

Le Goff Latimier & Ben Ahmed 2023 write the fee as γ_nm·p_nm; with γ_nm = γ_mn that term cancels under
reciprocity (p_mn = −p_nm), so
the fee must be charged on the traded amount. We charge γ_nm per unit of |p_nm| per pair, split equally
between the two sides: each side carries β_nm = γ_nm/2 on |p_nm|, so a trade of q units pays γ_nm·q in total.
Add the returned matrix to any other preference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2p_gym.errors import OptimError

__all__ = ["distance_fees", "uniform_fees", "zonal_fees"]


def _out(gamma: np.ndarray) -> np.ndarray:
    g = 0.5 * (gamma + gamma.T) / 2.0
    np.fill_diagonal(g, 0.0)
    return g


def uniform_fees(n_agents: int, gamma: float) -> np.ndarray:
    """The same fee γ ≥ 0 (currency/unit) on every trade: float[N, N] preference (γ/2 per side)."""
    if n_agents < 1:
        raise OptimError(f"n_agents: must be ≥ 1, got {n_agents}")
    if not (np.isfinite(gamma) and gamma >= 0):
        raise OptimError(f"gamma: must be finite and ≥ 0, got {gamma}")
    return _out(np.full((n_agents, n_agents), float(gamma)))


def distance_fees(positions: Any, gamma_per_distance: float) -> np.ndarray:
    """Fee proportional to the distance between the peers: γ_nm = γ·‖x_n − x_m‖.

    Args:
        positions: float[N, d] coordinates (or float[N] on a line) of the agents.
        gamma_per_distance: ≥ 0, fee per unit traded and per unit of distance.
    """
    x = np.asarray(positions, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise OptimError(f"positions: expected a finite float[N, d] array, got shape {x.shape}")
    if not (np.isfinite(gamma_per_distance) and gamma_per_distance >= 0):
        raise OptimError(f"gamma_per_distance: must be finite and ≥ 0, got {gamma_per_distance}")
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return _out(gamma_per_distance * dist)


def zonal_fees(zone: Any, gamma_between: float, gamma_within: float = 0.0) -> np.ndarray:
    """Zonal fee (zones bounded by the most fragile lines): γ_between across zones, γ_within inside a zone.

    Args:
        zone: int[N], zone of each agent.
        gamma_between: ≥ 0, fee per unit traded between different zones.
        gamma_within: ≥ 0, fee per unit traded inside a zone.
    """
    z = np.asarray(zone).reshape(-1)
    for name, v in (("gamma_between", gamma_between), ("gamma_within", gamma_within)):
        if not (np.isfinite(v) and v >= 0):
            raise OptimError(f"{name}: must be finite and ≥ 0, got {v}")
    same = z[:, None] == z[None, :]
    return _out(np.where(same, float(gamma_within), float(gamma_between)))
