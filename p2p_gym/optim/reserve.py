"""Reserve sizing under forecast uncertainty: the system-wide chance constraint of a joint energy–reserve market.

Le Goff Latimier & Ben Ahmed (2023, §6.3, eq. 13) couple the energy market with a reserve market through one
chance constraint on the sum of the agents' forecast errors ε_n (realised − forecast position):

    P(−R⁻ ≤ Σ_n ε_n ≤ R⁺) ≥ δ,   R⁺ = Σ_n r_n⁺,  R⁻ = Σ_n r_n⁻.

This module sizes (R⁺, R⁻) for a given error distribution, the building block of the centralised joint market:

* :func:`gaussian_reserve`: ε ~ N(μ, Σ). Σ_n ε_n ~ N(1ᵀμ, 1ᵀΣ1); the two-sided constraint is met by splitting the
  violation probability 1 − δ equally between the tails, R⁺ = μ_Σ + σ_Σ·Φ⁻¹(1 − (1 − δ)/2) and
  R⁻ = −μ_Σ + σ_Σ·Φ⁻¹(1 − (1 − δ)/2), with σ_Σ from the covariance (correlated errors do not add up as
  independent ones: σ_Σ ≠ √Σσ_n² and ≠ Σσ_n in general). The equal split is a choice, not the cheapest split
  (which depends on the reserve prices); it is the one the tests check by Monte Carlo.
* :func:`empirical_reserve`: the same from samples of the errors (empirical quantiles of Σ_n ε_n), for errors
  that are not Gaussian.
* :func:`joint_confidence`: the share of samples a reserve covers, to check a sizing (or an allocation of δ to
  the agents) against the global confidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2p_gym.errors import OptimError


def _delta(delta: Any) -> float:
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise OptimError(f"delta: must be a probability in (0, 1), got {delta!r}") from None
    if not 0.0 < d < 1.0:
        raise OptimError(f"delta: must be a probability in (0, 1), got {delta!r}")
    return d


def gaussian_reserve(mu: Any, cov: Any, delta: float) -> tuple[float, float]:
    """(R⁺, R⁻) such that P(−R⁻ ≤ Σ ε ≤ R⁺) = δ for ε ~ N(``mu``, ``cov``), the violation probability split equally
    between both tails (module docstring). Negative values mean the expected error alone covers that side.

    Args:
        mu: float[N], the errors' means (kWh or kW, any unit; the reserve has the same).
        cov: float[N, N], their covariance (symmetric positive semidefinite).
        delta: the confidence in (0, 1).

    Raises:
        OptimError: a bad argument (named).
    """
    from scipy.stats import norm

    d = _delta(delta)
    m = np.asarray(mu, dtype=np.float64).reshape(-1)
    c = np.asarray(cov, dtype=np.float64)
    n = m.size
    if c.shape != (n, n):
        raise OptimError(f"cov: expected float[{n}, {n}] (one row per error of mu), got shape {c.shape}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(c))):
        raise OptimError("mu, cov: must be finite")
    if not np.allclose(c, c.T, rtol=1e-9, atol=1e-12):
        raise OptimError("cov: must be symmetric")
    var = float(c.sum())
    if var < -1e-12 * max(1.0, float(np.abs(c).sum())):
        raise OptimError(f"cov: 1ᵀ·cov·1 = {var} < 0, not a covariance")
    sigma = np.sqrt(max(var, 0.0))
    z = float(norm.ppf(1.0 - 0.5 * (1.0 - d)))
    total = float(m.sum())
    return total + sigma * z, -total + sigma * z


def empirical_reserve(samples: Any, delta: float) -> tuple[float, float]:
    """(R⁺, R⁻) from samples float[S, N] of the errors: the empirical (1 + δ)/2 quantile of Σ_n ε_n and minus its
    (1 − δ)/2 quantile, so that at least a share δ of the samples is covered (ties aside).

    Raises:
        OptimError: a bad argument (named).
    """
    d = _delta(delta)
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise OptimError(f"samples: expected float[S, N] with S ≥ 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise OptimError("samples: must be finite")
    total = x.sum(axis=1)
    tail = 0.5 * (1.0 - d)
    up = float(np.quantile(total, 1.0 - tail, method="higher"))
    down = float(np.quantile(total, tail, method="lower"))
    return up, -down


def joint_confidence(samples: Any, r_up: float, r_down: float) -> float:
    """The share of samples float[S, N] whose total error lies in [−``r_down``, ``r_up``]."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or not len(x):
        raise OptimError(f"samples: expected float[S, N] with S ≥ 1, got shape {x.shape}")
    total = x.sum(axis=1)
    return float(np.mean((total >= -r_down) & (total <= r_up)))
