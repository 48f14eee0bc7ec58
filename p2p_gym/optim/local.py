"""Exact, vectorised local step of the P2P ADMM for quadratic costs (all agents at once).

Agent n solves, over its trades p_e (e ∈ edges of n),

    min  ½·a_n·s² + b_n·s + Σ_e [β_e·|p_e| + α·p_e² + ρ/2·(p_e − t_e)²]
    s.t. lo_e ≤ p_e ≤ hi_e,  p_min_n ≤ s ≤ p_max_n,  s = Σ_e p_e.

With ν_n the multiplier of s = Σ_e p_e (the agent's marginal cost), the problem separates:

* each trade is a clipped soft-threshold, p_e(ν) = clip(S_β(ρ·t_e − ν)/(ρ + 2α), lo_e, hi_e);
* the net position is s_own(ν) = argmin_s ½·a·s² + (b − ν)·s on [p_min, p_max] = clip((ν − b)/a, ...).

g(ν) = Σ_e p_e(ν) is non-increasing and piecewise linear, s_own non-decreasing, so ν solves the monotone
piecewise-linear equation g(ν) = s_own(ν). We find it for every agent simultaneously by a safeguarded Newton
iteration on the current linear piece (exact once the piece is right) inside a bisection bracket. Agents with
a = 0 have a step s_own at ν = b: if p_min ≤ g(b) ≤ p_max the answer is ν = b, otherwise s is at the bound
that g(b) violates and ν solves g(ν) = bound.
"""

from __future__ import annotations

import numpy as np

__all__ = ["local_step", "segment_reduce"]


def segment_reduce(values: np.ndarray, src: np.ndarray, n: int, ufunc: np.ufunc, fill: float) -> np.ndarray:
    """Reduce ``values`` over runs of equal, sorted ``src`` into an array of length ``n`` (``fill`` if none)."""
    out = np.full(n, fill)
    if values.size == 0:
        return out
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    out[src[starts]] = ufunc.reduceat(values, starts)
    return out


def _trades(x: np.ndarray, beta: np.ndarray, lo: np.ndarray, hi: np.ndarray, den: float) -> np.ndarray:
    return np.clip(np.sign(x) * np.maximum(np.abs(x) - beta, 0.0) / den, lo, hi)


def local_step(
    src: np.ndarray,
    t: np.ndarray,
    beta: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    p_min: np.ndarray,
    p_max: np.ndarray,
    nu0: np.ndarray,
    rho: float,
    alpha: float,
    max_newton: int = 80,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve every agent's local problem exactly (see the module docstring).

    Args:
        src: int[E'] (sorted) owner of each trade.
        t: float[E'] targets.
        beta, lo, hi: float[E'] preference and per-trade bounds (lo ≤ 0 ≤ hi).
        a, b, p_min, p_max: float[N] (effective) cost and bounds of each agent.
        nu0: float[N] initial guess of ν (previous iteration's value: usually exact after one step).
        rho, alpha: ADMM penalty and trade regulariser.
        max_newton: iteration cap of the safeguarded Newton search.

    Returns:
        (p float[E'], ν float[N]).
    """
    n = a.size
    den = rho + 2.0 * alpha
    if src.size == 0:
        return np.zeros(0), nu0.copy()
    rt = rho * t
    has = np.bincount(src, minlength=n) > 0
    # a = 0: either ν = b or s sits at the bound violated by g(b)
    lin = a <= 0.0
    target = np.zeros(n)
    fixed = np.zeros(n, dtype=bool)
    if np.any(lin):
        g_b = np.bincount(src, _trades(rt - b[src], beta, lo, hi, den), minlength=n)
        inside = (g_b >= p_min) & (g_b <= p_max)
        fixed = lin & inside
        target = np.where(g_b < p_min, p_min, p_max)
    safe_a = np.where(lin, 1.0, a)
    # bracket: r(L) ≥ 0 ≥ r(H) with r = g − s_own
    c = np.maximum(np.abs(p_min), np.abs(p_max))
    x_lo = segment_reduce(rt - beta, src, n, np.minimum, 0.0)
    x_hi = segment_reduce(rt + beta, src, n, np.maximum, 0.0)
    lo_nu = np.minimum(x_lo - den * c, a * p_min + b) - 1.0
    hi_nu = np.maximum(x_hi + den * c, a * p_max + b) + 1.0
    nu = np.where(fixed, b, np.clip(nu0, lo_nu, hi_nu))
    tol = 1e-12 * (1.0 + c)
    done = fixed | ~has
    p = np.zeros(src.size)
    for it in range(max_newton):
        x = rt - nu[src]
        mag = np.abs(x) - beta
        raw = np.sign(x) * np.maximum(mag, 0.0) / den
        p = np.clip(raw, lo, hi)
        free = (mag > 0) & (raw > lo) & (raw < hi)
        g = np.bincount(src, p, minlength=n)
        k = np.bincount(src, free, minlength=n)
        s_raw = (nu - b) / safe_a
        s_own = np.where(lin, target, np.clip(s_raw, p_min, p_max))
        own_slope = np.where(lin | (s_raw <= p_min) | (s_raw >= p_max), 0.0, 1.0 / safe_a)
        r = g - s_own
        done = done | (np.abs(r) <= tol)
        if done.all():
            break
        lo_nu = np.where(r > 0, nu, lo_nu)
        hi_nu = np.where(r < 0, nu, hi_nu)
        slope = -k / den - own_slope
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = nu - r / slope
        ok = (slope < 0) & (newton > lo_nu) & (newton < hi_nu) & (it % 4 != 3)
        step = np.where(ok, newton, 0.5 * (lo_nu + hi_nu))
        nu = np.where(done, nu, step)
        if np.all(done | (hi_nu - lo_nu <= 1e-15 * (1.0 + np.abs(nu)))):
            break
    x = rt - nu[src]
    p = _trades(x, beta, lo, hi, den)
    return p, nu
