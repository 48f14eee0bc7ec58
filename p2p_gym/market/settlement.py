"""Settlement: from P2P trades and each agent's physical net energy to each agent's bill.

Per agent n (sign convention: positive = export):

* P2P: ``p2p_sold_kwh − p2p_bought_kwh`` is its net P2P sale, paid at the trade prices.
* Residual ``r_n = net_kwh_n − (sold_n − bought_n)``: if r_n > 0 the agent exports r_n to the grid at the
  feed-in price, if r_n < 0 it imports −r_n at the retail price (the grid is the outside option and absorbs
  any deviation between trades and physics).
* Fees: ``fee_per_kwh`` per kWh traded P2P, **half paid by each side**: agent n pays
  ``½·fee_n·(bought_n + sold_n)`` (with a scalar fee, a trade of q kWh costs fee·q in total).

``bill = p2p_paid − p2p_received + grid_import_cost − grid_export_revenue + fees`` (positive = pays).
Money balance: ``Σ bill = grid_balance + fee_total`` since P2P payments cancel (the buyer's payment is the
seller's receipt); energy balance: ``Σ import − Σ export = −Σ net_kwh`` since P2P sales cancel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from p2p_gym.errors import MarketError
from p2p_gym.market.types import ClearingResult, FloatArray, Trades

__all__ = ["Settlement", "grid_only_bill", "imbalance_cost", "settle", "settle_positions", "terminal_cost"]


@dataclass(frozen=True)
class Settlement:
    """Money and energy of one market interval, per agent (float64[N] each unless stated).

    Attributes:
        p2p_bought_kwh: kWh bought from peers.
        p2p_sold_kwh: kWh sold to peers.
        p2p_paid: money paid to peers.
        p2p_received: money received from peers.
        grid_import_kwh: residual kWh imported from the grid (≥ 0).
        grid_export_kwh: residual kWh exported to the grid (≥ 0).
        grid_import_cost: money paid to the grid supplier at the retail price.
        grid_export_revenue: money received from the grid supplier at the feed-in price.
        fees: P2P fees paid to the fee collector.
        bill: net money paid (positive = pays).
    """

    p2p_bought_kwh: FloatArray
    p2p_sold_kwh: FloatArray
    p2p_paid: FloatArray
    p2p_received: FloatArray
    grid_import_kwh: FloatArray
    grid_export_kwh: FloatArray
    grid_import_cost: FloatArray
    grid_export_revenue: FloatArray
    fees: FloatArray
    bill: FloatArray

    @property
    def n_agents(self) -> int:
        """Number of agents N."""
        return len(self.bill)

    @property
    def grid_balance(self) -> float:
        """Money to the grid supplier: Σ import cost − Σ export revenue."""
        return float(self.grid_import_cost.sum() - self.grid_export_revenue.sum())

    @property
    def fee_total(self) -> float:
        """Money to the fee collector: Σ fees."""
        return float(self.fees.sum())

    @property
    def money_imbalance(self) -> float:
        """Σ bill − grid_balance − fee_total; zero up to rounding for a consistent settlement."""
        return float(self.bill.sum() - self.grid_balance - self.fee_total)

    def is_balanced(self, tol: float = 1e-9) -> bool:
        """True if money balances: ``|Σ bill − grid_balance − fee_total| ≤ tol``."""
        return abs(self.money_imbalance) <= tol


def _per_agent(name: str, value: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    elif arr.shape != (n,):
        raise MarketError(f"{name}: must be a scalar or have shape ({n},) (one per agent), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise MarketError(f"{name}: must be finite, got {arr[~np.isfinite(arr)][0]!r}")
    return arr


def _net(net_kwh: ArrayLike, n_agents: int | None) -> np.ndarray:
    net = np.asarray(net_kwh, dtype=np.float64)
    if net.ndim != 1:
        raise MarketError(f"net_kwh: must be one-dimensional (one value per agent), got shape {net.shape}")
    if n_agents is not None and len(net) != n_agents:
        raise MarketError(f"net_kwh: length must equal n_agents={n_agents}, got {len(net)}")
    if not np.all(np.isfinite(net)):
        raise MarketError(f"net_kwh: must be finite, got {net[~np.isfinite(net)][0]!r}")
    return net


def settle(
    result_or_trades: ClearingResult | Trades,
    net_kwh: ArrayLike,
    retail_price: ArrayLike,
    feed_in_price: ArrayLike,
    *,
    fee_per_kwh: ArrayLike = 0.0,
    n_agents: int | None = None,
) -> Settlement:
    """Settle one interval: P2P payments, residual grid imports/exports, fees and bills.

    Args:
        result_or_trades: the clearing result (or just its trades).
        net_kwh: float[N], each agent's physical net energy this interval (positive = export).
        retail_price: per kWh for imports, scalar or float[N].
        feed_in_price: per kWh for exports, scalar or float[N].
        fee_per_kwh: P2P fee per kWh traded, scalar or float[N] ≥ 0; each side pays half of its own rate.
        n_agents: N (default ``len(net_kwh)``); must match ``net_kwh`` when given.

    Returns:
        The per-agent :class:`Settlement`.

    Raises:
        MarketError: shapes do not match N, non-finite values, negative fee, or a trade names an agent ≥ N.
    """
    trades = result_or_trades.trades if isinstance(result_or_trades, ClearingResult) else result_or_trades
    if not isinstance(trades, Trades):
        raise MarketError(
            f"result_or_trades: must be a ClearingResult or Trades, got {type(result_or_trades).__name__}"
        )
    net = _net(net_kwh, n_agents)
    n = len(net)
    retail = _per_agent("retail_price", retail_price, n)
    feed_in = _per_agent("feed_in_price", feed_in_price, n)
    fee = _per_agent("fee_per_kwh", fee_per_kwh, n)
    if np.any(fee < 0):
        raise MarketError(f"fee_per_kwh: must be >= 0, got {fee[fee < 0][0]!r}")
    if len(trades) and int(max(trades.buyer.max(), trades.seller.max())) >= n:
        top = int(max(trades.buyer.max(), trades.seller.max()))
        raise MarketError(f"result_or_trades: trade agent index {top} outside [0, {n}) (len(net_kwh) = {n})")
    bought, sold = trades.bought(n), trades.sold(n)
    fees = 0.5 * fee * (bought + sold)
    return settle_positions(bought, sold, trades.paid(n), trades.received(n), net, retail, feed_in, fees)


def settle_positions(
    bought: np.ndarray,
    sold: np.ndarray,
    paid: np.ndarray,
    received: np.ndarray,
    net_kwh: np.ndarray,
    retail_price: ArrayLike,
    feed_in_price: ArrayLike,
    fees: ArrayLike = 0.0,
) -> Settlement:
    """The settlement arithmetic of :func:`settle` on per-agent positions, broadcasting over leading batch axes.

    Args:
        bought, sold: float[..., N] kWh bought and sold P2P; paid, received: float[..., N] money for them.
        net_kwh: float[..., N] physical net energy (positive = export).
        retail_price, feed_in_price: currency/kWh, broadcast against [..., N] (e.g. float[B, 1]).
        fees: float[..., N] network or platform fees each agent pays on top (currency).

    Returns:
        A :class:`Settlement` whose arrays have the shape of ``net_kwh`` (no validation: callers pass checked
        arrays; :func:`settle` validates user input).
    """
    residual = net_kwh - (sold - bought)
    grid_import = np.maximum(-residual, 0.0)
    grid_export = np.maximum(residual, 0.0)
    import_cost = grid_import * retail_price
    export_revenue = grid_export * feed_in_price
    fees_arr = (
        fees
        if isinstance(fees, np.ndarray) and fees.shape == np.shape(net_kwh)
        else np.broadcast_to(np.asarray(fees, dtype=np.float64), np.shape(net_kwh))
    )
    bill = paid - received + import_cost - export_revenue + fees_arr
    return Settlement(
        p2p_bought_kwh=bought,
        p2p_sold_kwh=sold,
        p2p_paid=paid,
        p2p_received=received,
        grid_import_kwh=grid_import,
        grid_export_kwh=grid_export,
        grid_import_cost=import_cost,
        grid_export_revenue=export_revenue,
        fees=fees_arr,
        bill=bill,
    )


def grid_only_bill(net_kwh: ArrayLike, retail: ArrayLike, feed_in: ArrayLike) -> FloatArray:
    """float[N] bill of each agent without any market: imports at retail, exports at feed-in.

    Args:
        net_kwh: float[N] physical net energy (positive = export).
        retail: per kWh, scalar or float[N].
        feed_in: per kWh, scalar or float[N].
    """
    net = _net(net_kwh, None)
    n = len(net)
    r = _per_agent("retail", retail, n)
    f = _per_agent("feed_in", feed_in, n)
    return np.maximum(-net, 0.0) * r - np.maximum(net, 0.0) * f


def imbalance_cost(
    deviation_kwh: ArrayLike, retail_price: ArrayLike, feed_in_price: ArrayLike, penalty: ArrayLike = 0.0
) -> FloatArray:
    """Money an agent pays for deviating from its committed position (positive = pays), under a dual-price rule.

    ``deviation_kwh`` = realised − committed net energy (positive = long: it injected more or consumed less than it
    committed). A short agent buys its shortfall at the retail price plus ``penalty``; a long agent sells its
    excess at the feed-in price minus ``penalty`` (never below 0). So short pays at least retail and long receives
    at most feed-in: deviating never beats committing, the defining property of dual (two-price) imbalance
    settlement as used in European balancing markets (the Electricity Balancing Guideline, Commission Regulation
    (EU) 2017/2195, harmonises imbalance settlement and allows dual pricing). In the simulation an agent's devices
    always deliver its commitment, so deviations arise only with forecast errors (not modelled yet).

    Broadcasts over leading axes; prices per kWh.
    """
    arrays = {}
    for name, value in (("deviation_kwh", deviation_kwh), ("retail_price", retail_price),
                        ("feed_in_price", feed_in_price), ("penalty", penalty)):  # fmt: skip
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise MarketError(f"{name}: must be numeric, got {value!r:.80}") from None
        if not np.all(np.isfinite(arr)):
            raise MarketError(f"{name}: must be finite, got {value!r:.80}")
        arrays[name] = arr
    dev, retail, feed_in, pen = arrays.values()
    if np.any(pen < 0):
        raise MarketError(f"penalty: must be ≥ 0 (currency/kWh), got {penalty!r}")
    short = np.maximum(-dev, 0.0)
    long = np.maximum(dev, 0.0)
    return short * (retail + pen) - long * np.maximum(feed_in - pen, 0.0)


def terminal_cost(
    soc_start_kwh: ArrayLike,
    soc_end_kwh: ArrayLike,
    efficiency: float,
    hp_deviation_kwh: ArrayLike,
    retail_price: ArrayLike,
    feed_in_price: ArrayLike,
) -> FloatArray:
    """The value an agent's stored energy lost over an episode, as a cost (positive = the agent ends poorer).

    An episode that ends with a battery emptier than it started, or a heat pump behind its reference profile
    (deferred heating that is still owed), has consumed energy that someone must buy back; one that ends fuller has
    energy to spare. Both are settled like an imbalance (:func:`imbalance_cost`, no penalty) at the grid's prices of
    the episode's last step: the deficit at the battery's terminals, (soc_start − soc_end)/η, is bought at retail;
    a surplus, (soc_end − soc_start)·η, is worth the feed-in price. A heat pump's running deviation D (kWh, > 0 =
    pre-heated) is energy at the grid connection: −D is bought at retail when D < 0, D earns feed-in when D > 0.

    The valuation is concave and piecewise linear, so an optimisation can carry it exactly (two non-negative
    variables per store); with it, emptying the stores at the end of the episode no longer pays — the usual
    end-of-horizon correction of finite-horizon storage scheduling (e.g. the terminal value of stored energy in
    Bertsekas 2017, *Dynamic Programming and Optimal Control* I, §1.1, where a finite horizon is closed by a terminal
    cost g_N(x_N)). Broadcasts over leading axes.
    """
    eta = float(efficiency)
    if not 0.0 < eta <= 1.0:
        raise MarketError(f"efficiency: must be in (0, 1], got {efficiency!r}")
    for name, value in (("soc_start_kwh", soc_start_kwh), ("soc_end_kwh", soc_end_kwh),
                        ("hp_deviation_kwh", hp_deviation_kwh)):  # fmt: skip
        try:
            ok = bool(np.all(np.isfinite(np.asarray(value, dtype=np.float64))))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MarketError(f"{name}: must be finite numbers (kWh), got {value!r:.80}")
    d_soc = np.asarray(soc_end_kwh, dtype=np.float64) - np.asarray(soc_start_kwh, dtype=np.float64)
    at_terminals = np.where(d_soc < 0, d_soc / eta, d_soc * eta)
    return imbalance_cost(at_terminals, retail_price, feed_in_price) + imbalance_cost(
        hp_deviation_kwh, retail_price, feed_in_price
    )
