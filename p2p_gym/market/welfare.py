"""Allocative efficiency of a market outcome, defined once for the whole package.

Efficiency = realised gains from trade / optimal gains from trade (Gode & Sunder 1993; the welfare of a P2P
market against its centralised optimum as in Le Goff Latimier & Ben Ahmed 2023, §4):

    efficiency = (W − W₀) / (W* − W₀)

with W the realised welfare, W₀ the welfare without trading (every agent settles with the grid alone) and W*
the optimum of the same instance. 1 = the optimum, 0 = no better than not trading.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MIN_GAIN", "efficiency"]

#: Optimal gains (currency) at or below which efficiency is undefined (nothing to gain: 0 / 0).
MIN_GAIN = 1e-12


def efficiency(welfare: Any, welfare_no_trade: Any, welfare_optimum: Any) -> Any:
    """(W − W₀) / (W* − W₀), elementwise over arrays (a float for scalar input).

    nan where it is undefined: the optimum was not computed (``welfare_optimum`` is nan) or no gain was possible
    (W* − W₀ ≤ :data:`MIN_GAIN`). Never a default 1.0.
    """
    w, w0, opt = (np.asarray(x, dtype=np.float64) for x in (welfare, welfare_no_trade, welfare_optimum))
    best = opt - w0
    ok = np.isfinite(best) & (best > MIN_GAIN)
    out = np.divide(w - w0, best, out=np.full(np.broadcast(w, w0, best).shape, np.nan), where=ok)
    return float(out) if out.ndim == 0 else out
