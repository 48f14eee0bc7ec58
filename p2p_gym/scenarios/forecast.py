"""Forecasts of the agents' load and PV with errors, calibrated on the scenario's own profiles.

The simulation has so far given every agent its realised load and PV (perfect foresight). Here the forecast an
agent acts on can differ from the realisation:

* ``perfect``: the realisation itself.
* ``persistence``: the value of the same step one day earlier (the day-ahead persistence forecast); the first day
  of the data has no day before and is forecast perfectly.
* ``day_ahead``: the realisation plus a synthetic error whose statistics are those of the persistence error on
  the same profiles (:func:`calibrate`), scaled by ``skill`` (1 = as large as persistence's, 0 = perfect):
  per-agent standard deviations, the lag-one autocorrelation in time, and for PV a factor common to all agents
  (a cloud over the whole feeder) with the measured mean cross-agent correlation. The PV error is applied in
  daylight only (where either the realisation or the persistence forecast is positive) and the forecast is kept
  within [0, peak]. Load forecasts are clipped at 0 around a centre shifted so that the clipped forecast stays
  unbiased (its expectation is the realisation, :func:`_unbiased_centre`): household load's error is as large as
  its mean, and plain clipping would forecast too much load. Errors are drawn from the generator passed in (the
  env's).

Statistics of the persistence error on a scenario (:class:`ErrorStats`): the root-mean-square error per agent
normalised by its peak (PV) or mean (load), the lag-one autocorrelation, and the mean pairwise correlation of the
agents' errors. The SimBench profiles give whole groups of households the same shape (rotated by weeks), so their
PV errors are strongly correlated, as real PV errors under passing weather are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from p2p_gym.errors import ScenarioError

FORECASTS: tuple[str, ...] = ("perfect", "persistence", "day_ahead")


@dataclass(frozen=True)
class ErrorStats:
    """Statistics of the day-ahead persistence error of a scenario's profiles (module docstring)."""

    pv_sigma_kw: np.ndarray  # float[N] standard deviation of the PV error in daylight (kW)
    load_sigma_kw: np.ndarray  # float[N] standard deviation of the load error (kW)
    pv_ar: float  # lag-one autocorrelation of the PV errors (mean over agents with PV)
    load_ar: float  # the same for load
    pv_corr: float  # mean pairwise correlation of the PV errors across agents with PV (daylight steps)
    pv_nrmse: float  # RMSE / peak PV, mean over agents with PV
    load_nrmse: float  # RMSE / mean load, mean over agents with load


def _daylight(sc: Any, rows: np.ndarray) -> np.ndarray:
    prev = np.maximum(rows - sc.steps_per_day, 0)
    return (sc.pv_kw[rows] > 0) | (sc.pv_kw[prev] > 0)


def _ar1(e: np.ndarray) -> float:
    """Mean over columns of the lag-one autocorrelation of e float[T, K] (columns with variance)."""
    a, b = e[:-1], e[1:]
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    ok = den > 0
    return float(np.mean((a * b).sum(axis=0)[ok] / den[ok])) if ok.any() else 0.0


def calibrate(sc: Any) -> ErrorStats:
    """The persistence error's statistics on ``sc``'s profiles from its second day on (module docstring).

    Raises:
        ScenarioError: the scenario is shorter than two days.
    """
    spd = sc.steps_per_day
    if sc.n_steps < 2 * spd:
        raise ScenarioError(
            f"scenario {sc.name!r}: forecasts need at least two days of profiles, got {sc.n_steps}"
        )
    rows = np.arange(spd, sc.n_steps)
    e_pv = sc.pv_kw[rows] - sc.pv_kw[rows - spd]
    e_load = sc.load_kw[rows] - sc.load_kw[rows - spd]
    day = _daylight(sc, rows).any(axis=1)
    has_pv = sc.pv_kw.max(axis=0) > 0
    has_load = sc.load_kw.max(axis=0) > 0
    pv_sigma = np.sqrt(np.mean(e_pv[day] ** 2, axis=0)) if day.any() else np.zeros(sc.n_agents)
    load_sigma = np.sqrt(np.mean(e_load**2, axis=0))
    corr = 0.0
    if has_pv.sum() >= 2 and day.any():
        c = np.corrcoef(e_pv[day][:, has_pv].T)
        iu = np.triu_indices(int(has_pv.sum()), 1)
        corr = float(np.nanmean(c[iu]))
    peak = sc.pv_kw.max(axis=0)
    mean_load = sc.load_kw.mean(axis=0)
    return ErrorStats(
        pv_sigma_kw=np.where(has_pv, pv_sigma, 0.0),
        load_sigma_kw=np.where(has_load, load_sigma, 0.0),
        pv_ar=_ar1(e_pv[day][:, has_pv]) if has_pv.any() and day.any() else 0.0,
        load_ar=_ar1(e_load[:, has_load]) if has_load.any() else 0.0,
        pv_corr=corr,
        pv_nrmse=float(np.mean(pv_sigma[has_pv] / peak[has_pv])) if has_pv.any() else 0.0,
        load_nrmse=float(np.mean(load_sigma[has_load] / mean_load[has_load])) if has_load.any() else 0.0,
    )


def _ar_noise(rng: np.random.Generator, steps: int, cols: int, phi: float) -> np.ndarray:
    """float[steps, cols] of unit-variance AR(1) noise with coefficient ``phi`` (stationary from the first step)."""
    phi = float(np.clip(phi, -0.999, 0.999))
    z = rng.standard_normal((steps, cols))
    out = np.empty_like(z)
    out[0] = z[0]
    scale = np.sqrt(1.0 - phi**2)
    for k in range(1, steps):
        out[k] = phi * out[k - 1] + scale * z[k]
    return out


def forecast(
    sc: Any,
    t0: int,
    steps: int,
    kind: str,
    rng: np.random.Generator | None = None,
    stats: ErrorStats | None = None,
    skill: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Load and PV forecasts float[steps, N] (kW) of scenario steps ``t0 … t0 + steps − 1`` (module docstring).

    Args:
        sc: the scenario.
        t0, steps: the first step and the number of steps.
        kind: one of :data:`FORECASTS`.
        rng: the generator of the errors (``day_ahead`` only; required there).
        stats: the error statistics (default: :func:`calibrate` of ``sc``).
        skill: ``day_ahead`` errors as a multiple of the persistence error (≥ 0).

    Raises:
        ScenarioError: a bad argument (named).
    """
    if kind not in FORECASTS:
        raise ScenarioError(f"kind: must be one of {list(FORECASTS)}, got {kind!r}")
    if (
        not (isinstance(t0, (int, np.integer)) and isinstance(steps, (int, np.integer)))
        or t0 < 0
        or steps < 1
    ):
        raise ScenarioError(f"t0, steps: need integers t0 ≥ 0 and steps ≥ 1, got {t0!r}, {steps!r}")
    if t0 + steps > sc.n_steps:
        raise ScenarioError(f"t0 + steps: must be ≤ the scenario's {sc.n_steps} steps, got {t0 + steps}")
    rows = np.arange(t0, t0 + steps)
    load, pv = sc.load_kw[rows].copy(), sc.pv_kw[rows].copy()
    if kind == "perfect":
        return load, pv
    spd = sc.steps_per_day
    if kind == "persistence":
        prev = np.where(rows >= spd, rows - spd, rows)
        return sc.load_kw[prev].copy(), sc.pv_kw[prev].copy()
    if not isinstance(rng, np.random.Generator):
        raise ScenarioError(f"rng: kind='day_ahead' needs a numpy.random.Generator, got {rng!r}")
    if not (np.isfinite(skill) and skill >= 0):
        raise ScenarioError(f"skill: must be ≥ 0, got {skill!r}")
    st = stats if stats is not None else calibrate(sc)
    n = sc.n_agents
    rho = float(np.clip(st.pv_corr, 0.0, 1.0))
    common = _ar_noise(rng, steps, 1, st.pv_ar)
    own = _ar_noise(rng, steps, n, st.pv_ar)
    pv_err = skill * st.pv_sigma_kw * (np.sqrt(rho) * common + np.sqrt(1.0 - rho) * own)
    day = _daylight(sc, rows)
    peak = sc.pv_kw.max(axis=0)
    pv_fc = np.clip(pv + np.where(day, pv_err, 0.0), 0.0, peak)
    sigma = np.broadcast_to(skill * st.load_sigma_kw, load.shape)
    z = _ar_noise(rng, steps, n, st.load_ar)
    return np.maximum(_unbiased_centre(load, sigma) + sigma * z, 0.0), pv_fc


def _unbiased_centre(mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """m with E[max(m + σ·Z, 0)] = ``mean`` for Z ~ N(0, 1), elementwise (``mean`` ≥ 0): the centre of a Gaussian
    forecast error that, clipped at 0, keeps the forecast unbiased. E[max(m + σZ, 0)] = m·Φ(m/σ) + σ·φ(m/σ) rises
    with m (slope Φ(m/σ)), so Newton's method from m = mean converges monotonically; m = mean where σ = 0, and
    −∞ (the forecast is 0) where the mean is 0."""
    from scipy.stats import norm

    m = np.array(mean, dtype=np.float64)
    live = (sigma > 0) & (mean > 0)
    mu, sd = mean[live], sigma[live]
    x = mu.copy()
    for _ in range(60):
        u = x / sd
        g = x * norm.cdf(u) + sd * norm.pdf(u) - mu
        step = g / np.maximum(norm.cdf(u), 1e-300)
        x = x - step
        if np.all(np.abs(g) <= 1e-12 * np.maximum(mu, 1e-12)):
            break
    m[live] = x
    m[(sigma > 0) & (mean <= 0)] = -np.inf
    return m
