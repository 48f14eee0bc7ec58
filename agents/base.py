"""The policy protocol shared by every rule-based agent, and helpers to read observations and write actions.

An environment action (see :class:`p2p_gym.envs.P2PMarketEnv`) is ``float32[3 (+ N-1)]`` in ``[-1, 1]``:

* ``a[0]`` limit price, ``feed_in + (a0 + 1) / 2 · (retail − feed_in)``;
* ``a[1]`` quantity fraction ``(a1 + 1) / 2`` of the agent's position after the battery;
* ``a[2]`` battery set-point ``a2 · battery_kw`` (positive = discharge);
* ``a[3:]`` (``peer_selection=True``) one score per other agent, accepted when ``> 0``.

Bidding rules in this package work in the *normalised price* ``x = (p − feed_in) / (retail − feed_in)`` in
``[0, 1]``: a seller's limit (its cost, the feed-in price) is ``x = 0``, a buyer's limit (its value, the retail
price) is ``x = 1``; ``a0 = 2x − 1``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from p2p_gym.envs import OBS_FEATURES
from p2p_gym.errors import P2PGymError

__all__ = [
    "AgentConfigError",
    "BiddingRule",
    "Policy",
    "action_from_price",
    "feature",
    "n_actions_of",
    "price_from_action",
]

_IDX = {name: i for i, name in enumerate(OBS_FEATURES)}


class AgentConfigError(P2PGymError, ValueError):
    """An agent was built with an invalid parameter or an unknown name (the message names the field)."""


@runtime_checkable
class Policy(Protocol):
    """What every agent implements: ``act(observation, rng) -> action``.

    Optional methods (called when present): ``reset()`` at the start of an episode and
    ``observe_result(info)`` after every step with the env's per-agent info dict (``info["market"]`` holds the
    public clearing price, volume, ...). All randomness comes from the ``rng`` argument.
    """

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The action float32[n_actions] in ``[-1, 1]`` for one observation."""
        ...


def feature(obs: np.ndarray, name: str) -> float:
    """The observation feature ``name`` of :data:`p2p_gym.sim.OBS_FEATURES` as a Python float."""
    return float(obs[_IDX[name]])


def n_actions_of(env: Any) -> int:
    """Length of the env's action vector (3, plus N − 1 peer scores with ``peer_selection=True``)."""
    return int(env.action_space(env.possible_agents[0]).shape[0])


def action_from_price(x: float) -> float:
    """Action ``a0`` of a normalised price ``x`` (0 = feed-in, 1 = retail), clipped to ``[-1, 1]``."""
    return float(np.clip(2.0 * x - 1.0, -1.0, 1.0))


def price_from_action(a0: float, feed_in: float, retail: float) -> float:
    """The env's price decoding: ``feed_in + (a0 + 1) / 2 · (retail − feed_in)`` (currency/kWh)."""
    return float(feed_in + (np.clip(a0, -1.0, 1.0) + 1.0) * 0.5 * (retail - feed_in))


def fee_adjusted(x: float, is_buy: bool, fee_per_kwh: float, feed_in: float, retail: float) -> float:
    """Normalised price ``x`` (0 = feed-in, 1 = retail) with the expected network fee passed on: a trade pays
    ``fee_per_kwh``, half by each side (:func:`p2p_gym.sim.stages.fees`), so a seller that nets its cost asks
    ½·fee more and a buyer that nets its value bids ½·fee less — in normalised units ½·fee / (retail − feed-in).
    With a fee above the spread a truthful pair no longer crosses, as trading would leave both worse off than the
    grid. Clipped to [0, 1]."""
    spread = retail - feed_in
    if fee_per_kwh <= 0 or spread <= 1e-12:
        return x
    shift = 0.5 * fee_per_kwh / spread
    return float(np.clip(x - shift if is_buy else x + shift, 0.0, 1.0))


class BiddingRule:
    """Base of the bidding rules: subclasses choose a normalised price (and quantity) for one order.

    ``act`` reads the side from the observation (``net < 0`` buys, otherwise sells: the battery is idle) and
    returns ``[a0, a1, 0, +1 …]`` (battery idle, every peer accepted). Compose with
    :class:`~agents.battery.BatteryHeuristic` for a battery and :class:`~agents.peers.WithPeerSelection` for
    partner choice; both call :meth:`quote_action` with the side they computed.

    Args:
        n_actions: length of the env's action vector (3 + number of peer scores).
    """

    def __init__(self, n_actions: int = 3) -> None:
        if n_actions < 3:
            raise AgentConfigError(f"n_actions: must be at least 3, got {n_actions}")
        self.n_actions = int(n_actions)
        # last quote: is_buy, x quoted, feed_in, retail, whether an order was placed (non-zero position)
        self._last: tuple[bool, float, float, float, bool] | None = None
        self.position = 0.0  # position (power-scale units, after the battery) of the order being quoted
        #: expected network fee of a P2P trade (currency/kWh, both sides together; set by
        #: :func:`agents.policy_from_name` from the env's fees when the clearing does not net them itself)
        self.fee_per_kwh = 0.0

    def limit_x(self, obs: np.ndarray, is_buy: bool) -> float:
        """The agent's own limit in normalised price: its value as a buyer (1, the retail price it avoids) or its
        cost as a seller (0, the feed-in price it forgoes), net of half the expected network fee
        (:func:`fee_adjusted` with :attr:`fee_per_kwh`). Every rule quotes relative to it."""
        return fee_adjusted(
            1.0 if is_buy else 0.0, is_buy, self.fee_per_kwh, feature(obs, "feed_in_price"),
            feature(obs, "retail_price"),
        )  # fmt: skip

    def price_x(self, obs: np.ndarray, is_buy: bool, rng: np.random.Generator) -> float:
        """Normalised limit price in ``[0, 1]`` (0 = feed-in, 1 = retail). Subclasses override."""
        raise NotImplementedError

    def quantity_fraction(self, obs: np.ndarray, is_buy: bool) -> float:
        """Fraction of the position offered (default: all of it)."""
        return 1.0

    def quote_action(
        self, obs: np.ndarray, is_buy: bool, rng: np.random.Generator, position: float | None = None
    ) -> tuple[float, float]:
        """``(a0, a1)`` of one order on side ``is_buy``; remembers the quote for :meth:`observe_result`.

        Args:
            obs: the agent's observation.
            is_buy: side of the order.
            rng: the random generator.
            position: the agent's position after the battery in power-scale units (default: ``net``); an
                order is considered placed when it is non-zero.
        """
        pos = feature(obs, "net") if position is None else float(position)
        self.position = pos  # read by rules that need the size of the order (BestResponse)
        x = float(np.clip(self.price_x(obs, is_buy, rng), 0.0, 1.0))
        q = float(np.clip(self.quantity_fraction(obs, is_buy), 0.0, 1.0))
        placed = abs(pos) > 1e-6 and q > 0
        self._last = (bool(is_buy), x, feature(obs, "feed_in_price"), feature(obs, "retail_price"), placed)
        return action_from_price(x), 2.0 * q - 1.0

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Battery idle, every peer accepted, the order of :meth:`quote_action` on the observed side."""
        a = np.ones(self.n_actions, dtype=np.float32)
        a[2] = 0.0
        a[0], a[1] = self.quote_action(observation, feature(observation, "net") < 0, rng)
        return a

    def reset(self) -> None:
        """Forget the last quote (adaptive rules also reset their state)."""
        self._last = None

    def observe_result(self, info: dict[str, Any]) -> None:
        """Learn from the env's per-agent info dict (stateless rules ignore it)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def last_fill(info: dict[str, Any], is_buy: bool) -> float:
    """kWh this agent traded P2P last step on side ``is_buy`` (from the env's info dict)."""
    return float(info.get("p2p_bought_kwh" if is_buy else "p2p_sold_kwh", 0.0))


def normalised_clearing_price(info: dict[str, Any], feed_in: float, retail: float) -> float:
    """The last public clearing price of ``info["market"]`` as a normalised price (NaN if none)."""
    value = (info.get("market") or {}).get("clearing_price")
    price = float(value) if value is not None else float("nan")
    if not np.isfinite(price) or retail <= feed_in:
        return float("nan")
    return (price - feed_in) / (retail - feed_in)
