"""Struct-of-arrays types of the market: orders in, trades and clearing results out.

All arrays are one-dimensional numpy arrays. Prices are per kWh (currency/kWh), quantities in kWh for the
market interval. Agents are integer indices ``0 .. N-1``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from p2p_gym.errors import MarketError

__all__ = ["ClearingResult", "Orders", "Trades"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def _vector(name: str, value: ArrayLike, dtype: type) -> np.ndarray:
    """Convert ``value`` to a 1-D array of ``dtype``; raise ``MarketError`` naming ``name`` otherwise."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise MarketError(f"{name}: must be one-dimensional, got shape {arr.shape}")
    if dtype is np.int64:
        if arr.size and arr.dtype.kind == "b":
            raise MarketError(f"{name}: must be integers, got booleans")
        if arr.size and arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                bad = arr[~np.isfinite(arr) | (arr != np.round(arr))][0]
                raise MarketError(f"{name}: must be integers, got {bad!r}")
        elif arr.size and arr.dtype.kind not in "iu":
            raise MarketError(f"{name}: must be integers, got dtype {arr.dtype}")
    if dtype is np.bool_ and arr.size and arr.dtype.kind not in "bi":
        raise MarketError(f"{name}: must be booleans, got dtype {arr.dtype}")
    if dtype is np.bool_ and arr.size and arr.dtype.kind == "i" and np.any((arr != 0) & (arr != 1)):
        raise MarketError(f"{name}: must be booleans (0/1), got values outside {{0, 1}}")
    if dtype is np.float64 and arr.size and arr.dtype.kind not in "biuf":
        raise MarketError(f"{name}: must be real numbers, got dtype {arr.dtype}")
    return np.array(arr, dtype=dtype)  # a copy: freezing must never touch the caller's array


def _finite(name: str, arr: np.ndarray) -> None:
    if arr.size and not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)][0]
        raise MarketError(f"{name}: must be finite, got {bad!r}")


def _nonneg(name: str, arr: np.ndarray) -> None:
    if arr.size and np.any(arr < 0):
        bad = arr[arr < 0][0]
        raise MarketError(f"{name}: must be >= 0, got {bad!r}")


def _freeze(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


@dataclass(frozen=True)
class Orders:
    """A book of K limit orders, one row per order (struct of arrays).

    Attributes:
        agent: int64[K], index of the agent placing the order (≥ 0).
        is_buy: bool[K], True for a bid (buy order), False for an ask (sell order).
        price: float64[K], limit price per kWh (a bid's maximum, an ask's minimum), finite.
        quantity: float64[K], kWh offered or wanted in this interval, finite and ≥ 0.

    Raises:
        MarketError: a field is not one-dimensional, has a length different from ``agent``, contains NaN or
            inf, a negative quantity or a negative agent index.
    """

    agent: IntArray
    is_buy: BoolArray
    price: FloatArray
    quantity: FloatArray

    def __post_init__(self) -> None:
        agent = _vector("agent", self.agent, np.int64)
        is_buy = _vector("is_buy", self.is_buy, np.bool_)
        price = _vector("price", self.price, np.float64)
        quantity = _vector("quantity", self.quantity, np.float64)
        k = len(agent)
        for name, arr in (("is_buy", is_buy), ("price", price), ("quantity", quantity)):
            if len(arr) != k:
                raise MarketError(f"{name}: length {len(arr)} differs from agent length {k}")
        _finite("price", price)
        _finite("quantity", quantity)
        _nonneg("quantity", quantity)
        _nonneg("agent", agent)
        _freeze(agent, is_buy, price, quantity)
        object.__setattr__(self, "agent", agent)
        object.__setattr__(self, "is_buy", is_buy)
        object.__setattr__(self, "price", price)
        object.__setattr__(self, "quantity", quantity)

    @classmethod
    def _trusted(cls, agent: IntArray, is_buy: BoolArray, price: FloatArray, quantity: FloatArray) -> Orders:
        """A book from fresh 1-D arrays of the right dtypes, equal lengths and valid values (the simulation's
        own books): no validation and no copy; the arrays are frozen."""
        obj = object.__new__(cls)
        _freeze(agent, is_buy, price, quantity)
        for name, arr in (("agent", agent), ("is_buy", is_buy), ("price", price), ("quantity", quantity)):
            object.__setattr__(obj, name, arr)
        return obj

    @classmethod
    def empty(cls) -> Orders:
        """A book without orders."""
        return cls(np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0), np.zeros(0))

    @classmethod
    def from_sides(
        cls,
        bid_agent: ArrayLike,
        bid_price: ArrayLike,
        bid_quantity: ArrayLike,
        ask_agent: ArrayLike,
        ask_price: ArrayLike,
        ask_quantity: ArrayLike,
    ) -> Orders:
        """Build a book from separate bid and ask arrays (bids first, then asks).

        Args:
            bid_agent: int[B] agents of the bids.
            bid_price: float[B] bid limit prices per kWh.
            bid_quantity: float[B] bid quantities in kWh.
            ask_agent: int[A] agents of the asks.
            ask_price: float[A] ask limit prices per kWh.
            ask_quantity: float[A] ask quantities in kWh.
        """
        ba = np.atleast_1d(np.asarray(bid_agent))
        aa = np.atleast_1d(np.asarray(ask_agent))
        return cls(
            agent=np.concatenate([ba, aa]),
            is_buy=np.concatenate([np.ones(len(ba), bool), np.zeros(len(aa), bool)]),
            price=np.concatenate([np.atleast_1d(bid_price), np.atleast_1d(ask_price)]),
            quantity=np.concatenate([np.atleast_1d(bid_quantity), np.atleast_1d(ask_quantity)]),
        )

    def __len__(self) -> int:
        return len(self.agent)

    @property
    def n_agents(self) -> int:
        """Smallest number of agents consistent with the book (max agent index + 1, 0 if empty)."""
        return int(self.agent.max()) + 1 if len(self.agent) else 0


@dataclass(frozen=True)
class Trades:
    """M executed trades (struct of arrays); trade m moves ``quantity[m]`` kWh from seller to buyer.

    Only array fields, so that ``dataclasses.replace(t, **{f: getattr(t, f)[mask] ...})`` filters trades.

    Attributes:
        buy_order: int64[M], index of the bid in the book (arrival index for the CDA).
        sell_order: int64[M], index of the ask in the book.
        buyer: int64[M], agent that buys.
        seller: int64[M], agent that sells (never equal to ``buyer``).
        quantity: float64[M], kWh traded (> 0).
        price: float64[M], price per kWh paid by the buyer.
        seller_price: float64[M], price per kWh the seller receives: ``price`` (the default) in every mechanism
            whose buyers pay their sellers; lower (the market operator keeps the difference) or higher (the
            operator covers it) in mechanisms that are not budget balanced trade by trade (McAfee's trade
            reduction, VCG).
    """

    buy_order: IntArray
    sell_order: IntArray
    buyer: IntArray
    seller: IntArray
    quantity: FloatArray
    price: FloatArray
    seller_price: FloatArray = None  # type: ignore[assignment]  # None: = price (set in __post_init__)

    def __post_init__(self) -> None:
        if self.seller_price is None:
            object.__setattr__(self, "seller_price", self.price)
        ints = {
            n: _vector(n, getattr(self, n), np.int64) for n in ("buy_order", "sell_order", "buyer", "seller")
        }
        floats = {n: _vector(n, getattr(self, n), np.float64) for n in ("quantity", "price", "seller_price")}
        m = len(ints["buy_order"])
        for name, arr in [*ints.items(), *floats.items()]:
            if len(arr) != m:
                raise MarketError(f"{name}: length {len(arr)} differs from buy_order length {m}")
        _finite("quantity", floats["quantity"])
        _finite("price", floats["price"])
        _finite("seller_price", floats["seller_price"])
        for name, arr in [*ints.items(), *floats.items()]:
            object.__setattr__(self, name, arr)

    @classmethod
    def _trusted(
        cls, buy_order: IntArray, sell_order: IntArray, buyer: IntArray, seller: IntArray, quantity: FloatArray,
        price: FloatArray, seller_price: FloatArray | None = None,
    ) -> Trades:  # fmt: skip
        """Trades from 1-D int64/float64 arrays of equal length with finite values (the clearing's own): no
        validation and no copy."""
        obj = object.__new__(cls)
        for name, arr in (("buy_order", buy_order), ("sell_order", sell_order), ("buyer", buyer),
                          ("seller", seller), ("quantity", quantity), ("price", price),
                          ("seller_price", price if seller_price is None else seller_price)):  # fmt: skip
            object.__setattr__(obj, name, arr)
        return obj

    @classmethod
    def empty(cls) -> Trades:
        """No trades."""
        z = np.zeros(0, np.int64)
        return cls(z, z, z, z, np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.buy_order)

    @property
    def volume(self) -> float:
        """Total kWh traded."""
        return float(self.quantity.sum())

    @property
    def value(self) -> float:
        """Total money exchanged (Σ price·quantity)."""
        return float(self.price @ self.quantity)

    def _n(self, n_agents: int | None) -> int:
        top = int(max(self.buyer.max(), self.seller.max())) + 1 if len(self.buyer) else 0
        if n_agents is None:
            return top
        if n_agents < top:
            raise MarketError(
                f"n_agents: must be > every agent index in the trades (>= {top}), got {n_agents}"
            )
        return int(n_agents)

    def bought(self, n_agents: int | None = None) -> FloatArray:
        """float[N] kWh bought by each agent."""
        return np.bincount(self.buyer, self.quantity, self._n(n_agents)).astype(np.float64)

    def sold(self, n_agents: int | None = None) -> FloatArray:
        """float[N] kWh sold by each agent."""
        return np.bincount(self.seller, self.quantity, self._n(n_agents)).astype(np.float64)

    def paid(self, n_agents: int | None = None) -> FloatArray:
        """float[N] money paid by each agent for its purchases."""
        return np.bincount(self.buyer, self.quantity * self.price, self._n(n_agents)).astype(np.float64)

    def received(self, n_agents: int | None = None) -> FloatArray:
        """float[N] money received by each agent for its sales (at ``seller_price``)."""
        return np.bincount(self.seller, self.quantity * self.seller_price, self._n(n_agents)).astype(
            np.float64
        )

    @property
    def operator_margin(self) -> float:
        """What the market operator keeps: Σ quantity·(price − seller_price) (0 when buyers pay their sellers;
        negative = a deficit the operator covers)."""
        return float(self.quantity @ (self.price - self.seller_price))


@dataclass(frozen=True)
class ClearingResult:
    """The outcome of clearing one book.

    Attributes:
        trades: the executed trades.
        filled: float64[K], kWh filled per order of the book (0 ≤ filled ≤ quantity).
        clearing_price: per kWh; the uniform price for ``"uniform"``, the volume-weighted mean trade price for
            ``"pay_as_bid"`` and ``"bilateral"``, the last trade price for ``"cda"``; nan without trades.
    """

    trades: Trades
    filled: np.ndarray  # float64[K] after __post_init__ (any real array accepted)
    clearing_price: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "filled", _vector("filled", self.filled, np.float64))
        object.__setattr__(self, "clearing_price", float(self.clearing_price))

    @classmethod
    def empty(cls, n_orders: int = 0) -> ClearingResult:
        """No trades for a book of ``n_orders`` orders; clearing price nan."""
        return cls(Trades.empty(), np.zeros(n_orders), float("nan"))

    @property
    def volume(self) -> float:
        """Total kWh traded."""
        return self.trades.volume

    @property
    def n_trades(self) -> int:
        """Number of trades."""
        return len(self.trades)

    def bought(self, n_agents: int | None = None) -> FloatArray:
        """float[N] kWh bought by each agent (see :meth:`Trades.bought`)."""
        return self.trades.bought(n_agents)

    def sold(self, n_agents: int | None = None) -> FloatArray:
        """float[N] kWh sold by each agent."""
        return self.trades.sold(n_agents)

    def paid(self, n_agents: int | None = None) -> FloatArray:
        """float[N] money paid by each agent."""
        return self.trades.paid(n_agents)

    def received(self, n_agents: int | None = None) -> FloatArray:
        """float[N] money received by each agent."""
        return self.trades.received(n_agents)

    def replace(self, **changes: object) -> ClearingResult:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
