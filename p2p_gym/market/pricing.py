"""Community pricing rules without bids (Zhou, Wu & Long 2018, "Evaluation of peer-to-peer energy sharing
mechanisms based on a multiagent simulation framework", Applied Energy 222:993–1022).

Every rule maps the community's total supply S (kWh offered by sellers), total demand D (kWh wanted by
buyers), the retail price π_r and the feed-in price π_f to an internal **buy price** (per kWh a buyer pays,
averaged over all its demand, including the part the community imports from the grid) and an internal
**sell price** (per kWh a seller receives, averaged over all its supply, including what is exported). So a
buyer's bill is ``buy_price · demand`` and a seller's revenue ``sell_price · supply``, and in every case
``buy_price · D − sell_price · S = π_r · (D − S)⁺ − π_f · (S − D)⁺``, the community's net grid bill: money
balances.

All functions accept scalars or arrays (broadcast together, e.g. vectorised over time) and return a pair of
float64 arrays (0-d for scalar inputs). Prices must satisfy ``0 ≤ π_f ≤ π_r``; supply and demand ≥ 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from p2p_gym.errors import MarketError

__all__ = ["PRICING_RULES", "bill_sharing", "mid_market_rate", "supply_demand_ratio"]

Prices = tuple[NDArray[np.float64], NDArray[np.float64]]


def _inputs(
    supply: ArrayLike, demand: ArrayLike, retail: ArrayLike, feed_in: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, value in (
        ("total_supply_kwh", supply),
        ("total_demand_kwh", demand),
        ("retail", retail),
        ("feed_in", feed_in),
    ):
        arr = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise MarketError(f"{name}: must be finite, got {arr[~np.isfinite(arr)].ravel()[0]!r}")
        if np.any(arr < 0):
            raise MarketError(f"{name}: must be >= 0, got {arr[arr < 0].ravel()[0]!r}")
        arrays.append(arr)
    s, d, r, f = np.broadcast_arrays(*arrays)
    if np.any(f > r):
        i = np.flatnonzero((f > r).ravel())[0]
        raise MarketError(
            f"feed_in: must be <= retail, got feed_in={f.ravel()[i]!r} > retail={r.ravel()[i]!r}"
        )
    return s, d, r, f


def _div(num: np.ndarray, den: np.ndarray, default: np.ndarray | float) -> np.ndarray:
    out = np.broadcast_to(np.asarray(default, dtype=np.float64), np.broadcast(num, den).shape).copy()
    np.divide(num, den, out=out, where=den > 0)
    return out


def supply_demand_ratio(
    total_supply_kwh: ArrayLike, total_demand_kwh: ArrayLike, retail: ArrayLike, feed_in: ArrayLike
) -> Prices:
    """Supply-demand-ratio (SDR) pricing (Liu et al. 2017; Zhou, Wu & Long 2018).

    With SDR = S / D:

    * SDR ≤ 1 (shortage): ``sell = π_r·π_f / ((π_r − π_f)·SDR + π_f)`` and
      ``buy = sell·SDR + π_r·(1 − SDR)``, so sellers get between π_f and π_r and buyers pay the mix of the
      internal price and retail for the imported share;
    * SDR > 1 (surplus): ``buy = sell = π_f``.

    Edge cases: D = 0 is SDR = ∞ (both π_f, also for S = D = 0); S = 0 < D is SDR = 0, giving
    ``sell = π_r`` (the limit of the formula; nobody sells) and ``buy = π_r``.

    Example: S = 5, D = 10, π_r = 0.30, π_f = 0.10: SDR = 0.5, sell = 0.03 / (0.2·0.5 + 0.1) = 0.15,
    buy = 0.15·0.5 + 0.30·0.5 = 0.225.

    Returns:
        ``(buy_price, sell_price)`` per kWh.
    """
    s, d, r, f = _inputs(total_supply_kwh, total_demand_kwh, retail, feed_in)
    surplus = s >= d  # includes D = 0 (SDR = ∞); S = D > 0 gives SDR = 1 where both formulas agree (π_f)
    sdr = _div(s, d, 1.0)
    den = (r - f) * sdr + f
    sell_short = np.where(s > 0, _div(r * f, den, 0.0), r)
    buy_short = sell_short * sdr + r * (1.0 - sdr)
    buy = np.where(surplus, f, buy_short)
    sell = np.where(surplus, f, sell_short)
    return buy.astype(np.float64), sell.astype(np.float64)


def mid_market_rate(
    total_supply_kwh: ArrayLike, total_demand_kwh: ArrayLike, retail: ArrayLike, feed_in: ArrayLike
) -> Prices:
    """Mid-market-rate (MMR) pricing (Long et al. 2017; Zhou, Wu & Long 2018).

    Internal energy trades at ``P_mid = (π_r + π_f) / 2``. The short side trades everything at P_mid; the
    long side trades min(S, D) at P_mid and its residual with the grid:

    * S ≤ D: ``sell = P_mid``, ``buy = (P_mid·S + π_r·(D − S)) / D``;
    * S > D: ``buy = P_mid``, ``sell = (P_mid·D + π_f·(S − D)) / S``.

    Edge cases: S = 0 < D gives ``buy = π_r`` (all imported), sell = P_mid (nominal); D = 0 < S gives
    ``sell = π_f`` (all exported), buy = P_mid (nominal); S = D = 0 gives both P_mid.

    Example: S = 5, D = 10, π_r = 0.30, π_f = 0.10: P_mid = 0.20, sell = 0.20,
    buy = (0.20·5 + 0.30·5) / 10 = 0.25.

    Returns:
        ``(buy_price, sell_price)`` per kWh.
    """
    s, d, r, f = _inputs(total_supply_kwh, total_demand_kwh, retail, feed_in)
    mid = 0.5 * (r + f)
    short = s <= d
    buy = np.where(short, _div(mid * s + r * (d - s), d, mid), mid)
    sell = np.where(short, mid, _div(mid * d + f * (s - d), s, mid))
    return buy.astype(np.float64), sell.astype(np.float64)


def bill_sharing(
    total_supply_kwh: ArrayLike, total_demand_kwh: ArrayLike, retail: ArrayLike, feed_in: ArrayLike
) -> Prices:
    """Bill-sharing (BS) pricing (Long et al. 2017; Zhou, Wu & Long 2018).

    The community settles with the grid as one meter: it pays ``C = π_r·(D − S)⁺`` for its net import and
    receives ``R = π_f·(S − D)⁺`` for its net export. The cost is shared among buyers in proportion to their
    demand and the revenue among sellers in proportion to their supply:

    * ``buy = C / D = π_r·(D − S)⁺ / D``;
    * ``sell = R / S = π_f·(S − D)⁺ / S``.

    Energy exchanged inside the community is therefore free: with a shortage sellers receive nothing for it
    (sell = 0) and with a surplus buyers pay nothing (buy = 0). This rule is budget-balanced but not
    individually rational for sellers relative to exporting at π_f; that is a property of the mechanism and
    one reason Zhou et al. compare it with MMR and SDR.

    Edge cases: D = 0 gives buy = 0 and S = 0 gives sell = 0 (the limits; the side is empty).

    Example: S = 5, D = 10, π_r = 0.30, π_f = 0.10: C = 1.5, R = 0, buy = 0.15, sell = 0.

    Returns:
        ``(buy_price, sell_price)`` per kWh.
    """
    s, d, r, f = _inputs(total_supply_kwh, total_demand_kwh, retail, feed_in)
    buy = _div(r * np.maximum(d - s, 0.0), d, 0.0)
    sell = _div(f * np.maximum(s - d, 0.0), s, 0.0)
    return buy.astype(np.float64), sell.astype(np.float64)


PRICING_RULES: dict[str, Callable[[ArrayLike, ArrayLike, ArrayLike, ArrayLike], Prices]] = {
    "mmr": mid_market_rate,
    "sdr": supply_demand_ratio,
    "bill_sharing": bill_sharing,
}
