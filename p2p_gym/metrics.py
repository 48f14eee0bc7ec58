"""Metric functions of the evaluation (each defined, with its source, in its docstring), pure numpy.

All functions take plain arrays and return floats, so they can be checked against hand-computed values.
"""

from __future__ import annotations

import numpy as np


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
