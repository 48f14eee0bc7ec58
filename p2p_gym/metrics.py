"""Metric functions of the evaluation (each defined, with its source, in its docstring), pure numpy.

All functions take plain arrays and return floats, so they can be checked against hand-computed values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from p2p_gym.errors import MetricError


def gini(x: np.ndarray) -> float:
    """Gini coefficient of ``x`` (mean absolute difference over twice the mean; 0 = equal shares).

    Defined for any sign as Σ_i Σ_j |x_i − x_j| / (2 n² |mean|); nan when the mean is 0.
    """
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0:
        return float("nan")
    mean = x.mean()
    if abs(mean) < 1e-15:
        return float("nan")
    s = np.sort(x)
    n = s.size
    # Σ_i Σ_j |x_i − x_j| = 2 Σ_i (2i − n − 1) s_i for sorted s (1-based i)
    total = 2.0 * np.sum((2 * np.arange(1, n + 1) - n - 1) * s)
    return float(total / (2.0 * n * n * abs(mean)))


def jain(x: np.ndarray) -> float:
    """Jain's fairness index (Σx)² / (n Σx²) on the non-negative part of ``x`` (1 = equal, 1/n = one takes all)."""
    x = np.clip(np.asarray(x, dtype=float).ravel(), 0.0, None)
    denom = x.size * np.sum(x**2)
    return float(np.sum(x) ** 2 / denom) if denom > 0 else float("nan")


def losers_pct(savings: np.ndarray, tol: float = 1e-9) -> float:
    """Share (%) of agents whose savings are negative (worse off than grid-only)."""
    s = np.asarray(savings, dtype=float).ravel()
    return float(100.0 * np.mean(s < -tol)) if s.size else float("nan")


def cr20(savings: np.ndarray) -> float:
    """Concentration ratio: share of the total savings taken by the top 20 % of agents (at least one agent)."""
    s = np.sort(np.asarray(savings, dtype=float).ravel())[::-1]
    total = s.sum()
    if s.size == 0 or abs(total) < 1e-15:
        return float("nan")
    k = max(1, int(np.ceil(0.2 * s.size)))
    return float(s[:k].sum() / total)


def self_sufficiency(import_kwh: float, consumption_kwh: float) -> float:
    """1 − grid imports / consumption of the community."""
    return float(1.0 - import_kwh / consumption_kwh) if consumption_kwh > 0 else float("nan")


def self_consumption(export_kwh: float, generation_kwh: float) -> float:
    """Locally used generation / generation = 1 − grid exports / generation."""
    return float(1.0 - export_kwh / generation_kwh) if generation_kwh > 0 else float("nan")


def efficiency(welfare: float, welfare_no_trade: float, welfare_optimum: float) -> float:
    """Realised gains from trade / optimal gains from trade (1 = the optimum; nan when no gain is possible)."""
    best = welfare_optimum - welfare_no_trade
    if best <= 1e-12:
        return float("nan")
    return float((welfare - welfare_no_trade) / best)


def markup(quoted: np.ndarray, true_value: np.ndarray) -> np.ndarray:
    """(quoted − true marginal value) / true value, elementwise."""
    q, v = np.asarray(quoted, dtype=float), np.asarray(true_value, dtype=float)
    return (q - v) / v


def price_of_anarchy(welfare_optimum: float, welfare_played: float) -> float:
    """W_opt / W_played (both as gains from trade, > 0); 1 = no loss."""
    return float(welfare_optimum / welfare_played) if welfare_played > 0 else float("inf")


def normalised_score(r: float, r_random: float, r_optimum: float) -> float:
    """(R − R_random) / (R_optimum − R_random): 0 = random, 1 = optimum."""
    span = r_optimum - r_random
    return float((r - r_random) / span) if abs(span) > 1e-12 else float("nan")


def fairness(savings: np.ndarray) -> dict[str, float]:
    """All fairness metrics of a savings vector."""
    return {
        "gini": gini(savings),
        "jain": jain(savings),
        "losers_pct": losers_pct(savings),
        "cr20": cr20(savings),
    }


# ------------------------------------------------------------------------------------ aggregate RL scores
def iqm(scores: Any) -> float:
    """Interquartile mean of ``scores`` float[runs] or float[runs, tasks] (all values pooled): the mean of the
    middle 50 % (Agarwal et al. 2021, "Deep reinforcement learning at the edge of the statistical precipice",
    NeurIPS, §4.3). With n values, the lowest and highest n/4 are dropped, fractional boundary values counting
    with their fraction, so the IQM of n values equals scipy's ``trim_mean(x, 0.25)`` when n is a multiple of 4
    and interpolates otherwise.

    Raises:
        MetricError: no score, or a non-finite one.
    """
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = x.size
    if n == 0 or not np.all(np.isfinite(x)):
        raise MetricError(f"scores: need at least one finite value, got {scores!r:.80}")
    lo, hi = 0.25 * n, 0.75 * n
    # weight of each sorted value inside [lo, hi): the overlap of [i, i + 1) with it
    i = np.arange(n)
    w = np.clip(np.minimum(i + 1, hi) - np.maximum(i, lo), 0.0, 1.0)
    return float(np.dot(w, x) / w.sum())


def bootstrap_ci(
    scores: Any, rng: np.random.Generator, statistic: Any = None, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float, float]:
    """(point, low, high): ``statistic`` (default :func:`iqm`) of float[runs, tasks] scores and its percentile
    bootstrap confidence interval at ``level``, resampling runs with replacement *within each task* (the
    stratified bootstrap of Agarwal et al. 2021, §4.1). A 1-D array is one task. ``rng``: the caller's seeded
    generator.

    Raises:
        MetricError: bad shape, level or n_boot.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2 or not np.all(np.isfinite(x)):
        raise MetricError(f"scores: need finite float[runs ≥ 2, tasks], got shape {x.shape}")
    if not 0.0 < level < 1.0:
        raise MetricError(f"level: must be in (0, 1), got {level!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise MetricError(f"n_boot: must be an integer ≥ 100, got {n_boot!r}")
    stat = iqm if statistic is None else statistic
    runs, tasks = x.shape
    idx = rng.integers(0, runs, size=(n_boot, runs, tasks))
    boot = np.array([stat(np.take_along_axis(x, idx[k], axis=0)) for k in range(n_boot)])
    alpha = 0.5 * (1.0 - level)
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(stat(x)), float(low), float(high)
