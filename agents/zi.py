"""Zero-intelligence traders: ZI-C and ZI-U (Gode & Sunder 1993) and ZIP (Cliff 1997).

Each class works in two settings:

* **on the market library** (arbitrary private values, e.g. in a
  :class:`p2p_gym.market.ContinuousDoubleAuction`): ``quote(limit_price, is_buy, rng, low, high) -> price``;
* **in the environment**, where a buyer's value is the retail price and a seller's cost the feed-in price, so the
  individually rational price range of both sides is ``[feed_in, retail]``, which is exactly the range of the
  price action: ``act(obs, rng) -> action``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import AgentConfigError, BiddingRule, fee_adjusted, last_fill, normalised_clearing_price

__all__ = ["ZIP", "ZeroIntelligence"]


class ZeroIntelligence(BiddingRule):
    """ZI-C (``constrained=True``) or ZI-U (``constrained=False``) trader of Gode & Sunder (1993).

    **Market library** (:meth:`quote`): ZI-C draws a buyer's bid uniformly in ``[low, limit]`` and a seller's ask
    uniformly in ``[limit, high]``, so it never quotes at a loss; ZI-U draws uniformly in ``[low, high]``
    whatever its limit (it may buy above its value or sell below its cost).

    **Environment** (:meth:`act`): ZI-C quotes a normalised price ``x`` uniform in ``[0, 1]`` on both sides (the
    buyer's ``[feed_in, retail]`` = ``[low, value]``, the seller's ``[cost, high]``). ZI-U draws ``x`` uniformly in
    the wider band ``[−band, 1 + band]`` (``band = 0.5`` by default: half the price range beyond each tariff) and
    the quote is **clipped** to ``[0, 1]``, the limits of the action space. So in the environment ZI-U can never
    trade at a loss against its outside option (the action space itself is the budget constraint); it differs
    from ZI-C only in the distribution of its quotes: a point mass of ``band / (1 + 2·band)`` (25% by default) at
    each tariff and uniform in between. The full position is always offered.

    Args:
        constrained: ZI-C (True) or ZI-U (False).
        band: ZI-U's extra band beyond each tariff in the environment, as a fraction of the price range (≥ 0).
        n_actions: length of the env's action vector.
    """

    def __init__(self, constrained: bool = True, band: float = 0.5, n_actions: int = 3) -> None:
        super().__init__(n_actions)
        if not np.isfinite(band) or band < 0:
            raise AgentConfigError(f"band: must be a finite number ≥ 0, got {band!r}")
        self.constrained = bool(constrained)
        self.band = float(band)

    def quote(
        self, limit_price: float, is_buy: bool, rng: np.random.Generator, low: float, high: float
    ) -> float:
        """A random quote for one unit with private value (buyer) or cost (seller) ``limit_price``.

        Args:
            limit_price: the trader's value (buyer) or cost (seller).
            is_buy: True for a bid, False for an ask.
            rng: the random generator.
            low: lowest admissible price of the market.
            high: highest admissible price of the market.

        Returns:
            ZI-C: a bid uniform in ``[low, limit]`` or an ask uniform in ``[limit, high]`` (the limit is first
            clipped to ``[low, high]``); ZI-U: uniform in ``[low, high]``.
        """
        if not low <= high:
            raise AgentConfigError(f"low: must be ≤ high, got low={low!r}, high={high!r}")
        if not self.constrained:
            return float(rng.uniform(low, high))
        limit = float(np.clip(limit_price, low, high))
        return float(rng.uniform(low, limit) if is_buy else rng.uniform(limit, high))

    def price_x(self, obs: np.ndarray, is_buy: bool, rng: np.random.Generator) -> float:
        if self.constrained:  # uniform between the own limit and the far tariff
            return self.quote(self.limit_x(obs, is_buy), is_buy, rng, 0.0, 1.0)
        return float(np.clip(rng.uniform(-self.band, 1.0 + self.band), 0.0, 1.0))

    def __repr__(self) -> str:
        return f"ZeroIntelligence(constrained={self.constrained})"


class ZIP(BiddingRule):
    """Zero-intelligence-plus trader (Cliff 1997): a profit margin adapted toward the prices of the last shouts.

    The quote is ``p = λ + s · μ · scale`` with λ the limit price, ``s = +1`` for a seller and ``−1`` for a buyer
    and the margin ``μ ≥ 0``. With ``scale = λ`` (the default of :meth:`quote`) this is Cliff's
    ``p = λ (1 + μ)`` (his buyer margin is ``−μ``). In the environment ``scale`` is the price range
    ``retail − feed_in`` (a margin is a fraction of the range; well defined at a zero feed-in tariff).

    **Learning** (Widrow-Hoff with momentum, per side): on a shout at price ``q`` the trader picks a target
    ``τ = R · q + A · scale`` (to raise its price ``R ~ U[1, 1 + c_R]``, ``A ~ U[0, c_A]``; to lower it
    ``R ~ U[1 − c_R, 1]``, ``A ~ U[−c_A, 0]``), ``Δ = β (τ − p)``, ``Γ ← γ Γ + (1 − γ) Δ``, ``p ← p + Γ`` and the
    new margin is ``μ = max(0, s (p − λ) / scale)``. Cliff's rules decide the direction:

    * seller: after a trade at ``q``: raise if ``p ≤ q``; else lower if the shout was a bid and ``p ≥ q``;
      after a rejected offer at ``q``: lower if ``p ≥ q``;
    * buyer: after a trade at ``q``: lower its price if ``p ≥ q``; else raise if the shout was an offer and
      ``p ≤ q``; after a rejected bid at ``q``: raise if ``p ≤ q``.

    **Environment** (:meth:`observe_result`): every step is one call-market shout at the public clearing
    price. If the agent traded, it moves its margin up (a seller raises its price toward ``q``, a buyer
    lowers it); if it offered but did not trade while the market cleared at ``q``, a seller with ``p ≥ q``
    lowers its price and a buyer with ``p ≤ q`` raises it. If nothing cleared at all, its own unfilled order is
    the rejected shout (``q = p``): the margin shrinks toward the perturbed target ``R · p + A``, so a market
    of ZIP traders whose quotes stopped crossing recovers.
    Seller and buyer margins are separate (a prosumer switches side during the day).

    Args:
        beta: learning rate β in (0, 1].
        gamma: momentum γ in [0, 1).
        margin: initial margin of both sides (fraction of ``scale``).
        c_r: relative target perturbation c_R.
        c_a: absolute target perturbation c_A (in units of ``scale``).
        n_actions: length of the env's action vector.
    """

    def __init__(
        self,
        beta: float = 0.3,
        gamma: float = 0.05,
        margin: float = 0.2,
        c_r: float = 0.05,
        c_a: float = 0.05,
        n_actions: int = 3,
    ) -> None:
        super().__init__(n_actions)
        if not 0.0 < beta <= 1.0:
            raise AgentConfigError(f"beta: must be in (0, 1], got {beta!r}")
        if not 0.0 <= gamma < 1.0:
            raise AgentConfigError(f"gamma: must be in [0, 1), got {gamma!r}")
        if not margin >= 0.0:
            raise AgentConfigError(f"margin: must be ≥ 0, got {margin!r}")
        if not (c_r >= 0.0 and c_a >= 0.0):
            raise AgentConfigError(f"c_r, c_a: must be ≥ 0, got c_r={c_r!r}, c_a={c_a!r}")
        self.beta, self.gamma, self.c_r, self.c_a = float(beta), float(gamma), float(c_r), float(c_a)
        self.initial_margin = float(margin)
        self.margin = {True: self.initial_margin, False: self.initial_margin}  # is_buy -> μ
        self.momentum = {True: 0.0, False: 0.0}  # is_buy -> Γ (price units)

    @classmethod
    def random(cls, rng: np.random.Generator, n_actions: int = 3) -> ZIP:
        """A ZIP trader with Cliff's random parameters: β ~ U[0.1, 0.5], γ ~ U[0, 0.1], μ ~ U[0.05, 0.35]."""
        return cls(
            beta=float(rng.uniform(0.1, 0.5)),
            gamma=float(rng.uniform(0.0, 0.1)),
            margin=float(rng.uniform(0.05, 0.35)),
            n_actions=n_actions,
        )

    def reset(self) -> None:
        super().reset()
        self.margin = {True: self.initial_margin, False: self.initial_margin}
        self.momentum = {True: 0.0, False: 0.0}

    # ------------------------------------------------------------------------------------ market library
    @staticmethod
    def _scale(limit_price: float, scale: float | None) -> float:
        s = abs(float(limit_price)) if scale is None else float(scale)
        return s if s > 0 else 1.0

    def quote(
        self,
        limit_price: float,
        is_buy: bool,
        rng: np.random.Generator | None = None,
        low: float = -np.inf,
        high: float = np.inf,
        scale: float | None = None,
    ) -> float:
        """The current quote ``λ ∓ μ · scale`` clipped to ``[low, high]`` (deterministic; ``rng`` unused).

        Args:
            limit_price: value (buyer) or cost (seller) λ.
            is_buy: side.
            rng: unused (ZIP's quote is deterministic given its margin).
            low: lowest admissible price.
            high: highest admissible price.
            scale: unit of the margin (default ``|λ|``: Cliff's relative margin).
        """
        sign = -1.0 if is_buy else 1.0
        p = limit_price + sign * self.margin[bool(is_buy)] * self._scale(limit_price, scale)
        return float(np.clip(p, low, high))

    def learn(
        self,
        limit_price: float,
        is_buy: bool,
        shout_price: float,
        traded: bool,
        shout_is_bid: bool,
        rng: np.random.Generator,
        active: bool = True,
        scale: float | None = None,
    ) -> None:
        """Cliff's update after a shout at ``shout_price`` (see the class docstring for the rules).

        Args:
            limit_price: value (buyer) or cost (seller) λ.
            is_buy: the learner's side.
            shout_price: price q of the last shout (the trade price if it was accepted).
            traded: whether the shout was accepted (a trade happened at ``q``).
            shout_is_bid: whether the last shout was a bid.
            rng: the random generator of the target perturbations.
            active: whether the learner still has units to trade (lowering needs it, as in Cliff).
            scale: unit of the margin (default ``|λ|``).
        """
        if not np.isfinite(shout_price):
            return
        is_buy = bool(is_buy)
        p = self.quote(limit_price, is_buy, scale=scale)
        q = float(shout_price)
        raise_price: bool | None = None  # True: move the price up, False: down, None: no change
        if not is_buy:
            if traded and p <= q:
                raise_price = True
            elif traded and shout_is_bid and p >= q and active:
                raise_price = False
            elif not traded and not shout_is_bid and p >= q and active:
                raise_price = False
        else:
            if traded and p >= q:
                raise_price = False
            elif traded and not shout_is_bid and p <= q and active:
                raise_price = True
            elif not traded and shout_is_bid and p <= q and active:
                raise_price = True
        if raise_price is not None:
            self._move(limit_price, is_buy, p, q, raise_price, rng, scale)

    def _move(
        self,
        limit_price: float,
        is_buy: bool,
        p: float,
        q: float,
        up: bool,
        rng: np.random.Generator,
        scale: float | None,
    ) -> None:
        unit = self._scale(limit_price, scale)
        if up:
            r, a = rng.uniform(1.0, 1.0 + self.c_r), rng.uniform(0.0, self.c_a)
        else:
            r, a = rng.uniform(1.0 - self.c_r, 1.0), rng.uniform(-self.c_a, 0.0)
        target = r * q + a * unit
        delta = self.beta * (target - p)
        self.momentum[is_buy] = self.gamma * self.momentum[is_buy] + (1.0 - self.gamma) * delta
        new_p = p + self.momentum[is_buy]
        sign = -1.0 if is_buy else 1.0
        self.margin[is_buy] = max(0.0, sign * (new_p - limit_price) / unit)

    # ------------------------------------------------------------------------------------ environment
    def price_x(self, obs: np.ndarray, is_buy: bool, rng: np.random.Generator) -> float:
        # normalised prices: limit 0 (seller) or 1 (buyer), net of the expected fee; scale 1
        return self.quote(self.limit_x(obs, is_buy), is_buy, scale=1.0, low=0.0, high=1.0)

    def observe_result(self, info: dict[str, Any], rng: np.random.Generator | None = None) -> None:
        """Learn from the last call-market clearing (see the class docstring).

        The target perturbations use ``rng`` when given, else a generator seeded from the step index ``t`` of
        ``info["market"]`` (the protocol's ``observe_result(info)`` carries no generator), so runs stay
        reproducible and the global ``np.random`` is never used.
        """
        if self._last is None:
            return
        is_buy, x, feed_in, retail, placed = self._last
        traded = last_fill(info, is_buy) > 1e-12
        if not (traded or placed):
            return  # no order: nothing was rejected
        q = normalised_clearing_price(info, feed_in, retail)
        if not np.isfinite(q):
            if traded:
                return
            q = x  # nothing cleared: its own order is the rejected shout (Cliff: lower toward it)
        if rng is None:
            rng = np.random.default_rng(int((info.get("market") or {}).get("t") or 0))
        # In a call market a non-trading order is "rejected" on its own side of the book.
        limit = fee_adjusted(1.0 if is_buy else 0.0, is_buy, self.fee_per_kwh, feed_in, retail)
        self.learn(limit, is_buy, q, traded, shout_is_bid=is_buy, rng=rng, scale=1.0)

    def __repr__(self) -> str:
        return f"ZIP(beta={self.beta}, gamma={self.gamma})"
