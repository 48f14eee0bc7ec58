"""Truthful, random and strategic bidding rules: fixed and adaptive markup, best response on the last book."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import AgentConfigError, BiddingRule, feature, last_fill

__all__ = ["SEARCHED", "AdaptiveMarkup", "BestResponse", "Markup", "RandomPolicy", "Truthful"]

#: Games whose clearing the best response re-runs per candidate price (the sharing game's equilibrium and the
#: sampled Shapley value are too slow to search per agent and step: there it bids its limit).
GAMES: tuple[str, ...] = ("nash_bargaining", "stackelberg")
#: Mechanisms in which :class:`BestResponse` searches its price (elsewhere prices do not matter, or the search is
#: too slow, and it bids its limit).
SEARCHED: tuple[str, ...] = ("uniform", "pay_as_bid", "cda", "bilateral", "mcafee", "vcg", *GAMES)


class Truthful(BiddingRule):
    """Bids its true marginal value: a buyer bids the retail price, a seller asks the feed-in price (its outside
    option), whole position, battery idle, every peer accepted (= :func:`p2p_gym.wrappers.truthful_action`).

    On the market library, :meth:`quote` returns the limit price itself.
    """

    def price_x(self, obs: np.ndarray, is_buy: bool, rng: np.random.Generator) -> float:
        return self.limit_x(obs, is_buy)

    def quote(
        self, limit_price: float, is_buy: bool, rng: np.random.Generator, low: float, high: float
    ) -> float:
        """The limit price (value or cost), clipped to ``[low, high]``."""
        return float(np.clip(limit_price, low, high))


class RandomPolicy:
    """Uniformly random actions in ``[-1, 1]`` (price, quantity, battery and peer scores): a sanity baseline.

    Args:
        n_actions: length of the env's action vector.
    """

    def __init__(self, n_actions: int = 3) -> None:
        self.n_actions = int(n_actions)

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniform draw in ``[-1, 1]^n_actions``."""
        return rng.uniform(-1.0, 1.0, self.n_actions).astype(np.float32)

    def __repr__(self) -> str:
        return "RandomPolicy()"


class Markup(BiddingRule):
    """Fixed shading: a seller asks ``cost + m · range``, a buyer bids ``value − m · range``.

    In the environment ``range = retail − feed_in``, cost = feed-in and value = retail, so the normalised price
    is ``m`` for a seller and ``1 − m`` for a buyer. The markup ``(quoted − true)/true`` of this
    agent is therefore ``m · range / feed_in`` (seller) and ``−m · range / retail`` (buyer).

    Knows: only its own observation (tariffs and its side). Whole position offered, battery idle.

    Args:
        markup: m in ``[0, 1]`` (0 = truthful, 1 = quote the other side's limit).
        n_actions: length of the env's action vector.
    """

    def __init__(self, markup: float = 0.1, n_actions: int = 3) -> None:
        super().__init__(n_actions)
        if not 0.0 <= markup <= 1.0:
            raise AgentConfigError(f"markup: must be in [0, 1], got {markup!r}")
        self.markup = float(markup)

    def current_markup(self, is_buy: bool) -> float:
        """The markup used on side ``is_buy`` (fixed here)."""
        return self.markup

    def price_x(self, obs: np.ndarray, is_buy: bool, rng: np.random.Generator) -> float:
        m, limit = self.current_markup(is_buy), self.limit_x(obs, is_buy)
        return limit - m if is_buy else limit + m

    def quote(
        self, limit_price: float, is_buy: bool, rng: np.random.Generator, low: float, high: float
    ) -> float:
        """``limit ∓ m · (high − low)`` clipped to ``[low, high]`` (market-library use)."""
        m = self.current_markup(is_buy) * (high - low)
        return float(np.clip(limit_price - m if is_buy else limit_price + m, low, high))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(markup={self.markup})"


class AdaptiveMarkup(Markup):
    """Markup adapted after every step, separately for the buy and the sell side.

    After a step in which the agent placed an order: if it traded any P2P volume on that side
    (``p2p_sold_kwh``/``p2p_bought_kwh`` of its info > 0) its markup rises by ``step`` (up to ``max_markup``);
    if it traded nothing, the markup falls by ``step`` (down to 0). Steps without an order change nothing.

    Knows: its own observation and its own fills (the info dict); nothing about the others.

    Args:
        markup: initial markup of both sides in ``[0, max_markup]``.
        step: additive change per step (> 0).
        max_markup: upper bound of the markup (≤ 1).
        n_actions: length of the env's action vector.
    """

    def __init__(
        self, markup: float = 0.1, step: float = 0.02, max_markup: float = 0.9, n_actions: int = 3
    ) -> None:
        super().__init__(markup, n_actions)
        if not 0.0 < step <= 1.0:
            raise AgentConfigError(f"step: must be in (0, 1], got {step!r}")
        if not markup <= max_markup <= 1.0:
            raise AgentConfigError(f"max_markup: must be in [markup, 1], got {max_markup!r}")
        self.step, self.max_markup = float(step), float(max_markup)
        self.side_markup = {True: self.markup, False: self.markup}

    def current_markup(self, is_buy: bool) -> float:
        return self.side_markup[bool(is_buy)]

    def reset(self) -> None:
        super().reset()
        self.side_markup = {True: self.markup, False: self.markup}

    def observe_result(self, info: dict[str, Any]) -> None:
        """Raise the markup of the last side after a fill, lower it after an unfilled order."""
        if self._last is None:
            return
        is_buy, placed = self._last[0], self._last[4]
        traded = last_fill(info, is_buy) > 1e-12
        if not placed and not traded:
            return
        m = self.side_markup[is_buy] + (self.step if traded else -self.step)
        self.side_markup[is_buy] = float(np.clip(m, 0.0, self.max_markup))


class BestResponse(BiddingRule):
    """Searches its price on a grid against the others' orders of the last step (a myopic best response).

    **What it knows** (with an ``env`` reference): the whole order book of the previous step
    (``env.last_outcome.orders``: every other agent's price and quantity, i.e. the book is published after
    clearing), the mechanism and ``k``, its own current position in kWh (``net`` × its power scale × step
    length) and the current tariffs. It assumes that the others repeat their last orders exactly, puts its own
    order (whole position) into that book at each of ``grid`` normalised prices ``x = 0, …, 1``, re-clears the
    book with :func:`p2p_gym.market.clear` (in agent-index order, as the env submits them, which is the
    arrival order of ``cda``; for ``bilateral`` everybody accepts everybody, without preferences) and keeps
    the price with the highest money for this step: trades at their prices plus the rest of its position at the
    grid tariff (a seller counts what it receives, ``seller_price``). Ties go to the price nearest its truthful
    limit. Under the community rules prices do not depend on bids, so it bids truthfully; so it does in the
    sharing game and the Shapley allocation, whose clearing is too slow to search (:data:`SEARCHED`). In the
    Nash-bargaining and Stackelberg games it re-runs the game (:func:`p2p_gym.sim.stages.clear_book`).

    **Fallback** (first step, no env reference, or no order on the other side of the last book): it quotes the
    last public clearing price of its observation (``last_clearing_price``), clipped to ``[feed_in, retail]``.

    Args:
        env: the :class:`~p2p_gym.envs.P2PMarketEnv` (for the last book, mechanism, ``k`` and units).
        agent_id: this agent's id in ``env.possible_agents``.
        grid: number of candidate prices (≥ 2).
        n_actions: length of the env's action vector (default: the env's).
    """

    def __init__(
        self, env: Any = None, agent_id: str | None = None, grid: int = 21, n_actions: int = 3
    ) -> None:
        super().__init__(n_actions)
        if grid < 2:
            raise AgentConfigError(f"grid: must be at least 2, got {grid!r}")
        if env is not None and agent_id not in env.possible_agents:
            raise AgentConfigError(f"agent_id: {agent_id!r} is not one of {env.possible_agents}")
        self.env = env
        self.index = env.possible_agents.index(agent_id) if env is not None else -1
        self.grid = np.linspace(0.0, 1.0, int(grid))

    def price_x(self, obs: np.ndarray, is_buy: bool, rng: np.random.Generator) -> float:
        feed_in, retail = feature(obs, "feed_in_price"), feature(obs, "retail_price")
        env = self.env
        if env is not None and env.mechanism not in SEARCHED:
            return self.limit_x(obs, is_buy)
        if env is not None:  # exact tariffs (the float32 observation rounds them)
            t = min(env.t, env.scenario.n_steps - 1)
            feed_in, retail = float(env.scenario.feed_in_price[t]), float(env.scenario.retail_price[t])
        others = self._others_book(is_buy)
        if others is None or retail <= feed_in:
            last = feature(obs, "last_clearing_price")
            return (
                float(np.clip((last - feed_in) / (retail - feed_in), 0.0, 1.0)) if retail > feed_in else 0.5
            )
        qty = abs(self.position) * float(env.power_scale[self.index]) * float(env.dt)
        if qty <= 1e-9:
            return self.limit_x(obs, is_buy)
        money = np.array(
            [
                self.payoff(others, is_buy, qty, feed_in + x * (retail - feed_in), feed_in, retail)
                for x in self.grid
            ]
        )
        order = self.grid[::-1] if is_buy else self.grid  # truthful end first: ties go to it
        values = money[::-1] if is_buy else money
        return float(order[int(np.argmax(values >= values.max() - 1e-12))])

    def _others_book(self, is_buy: bool) -> Any:
        """The other agents' orders of the last step, or None if there is no order on the opposite side."""
        env = self.env
        if env is None or env.last_outcome is None:
            return None
        from p2p_gym.market import Orders

        book = env.last_outcome.orders
        keep = book.agent != self.index
        if not np.any(keep & (book.is_buy != is_buy)):
            return None
        return Orders(book.agent[keep], book.is_buy[keep], book.price[keep], book.quantity[keep])

    def payoff(
        self, others: Any, is_buy: bool, qty: float, price: float, feed_in: float, retail: float
    ) -> float:
        """Money of this step if its order (``qty`` kWh at ``price``) meets ``others`` (the rest at the grid)."""
        from p2p_gym.market import Orders, clear

        env = self.env
        at = int(np.searchsorted(others.agent, self.index))  # the env lists orders by agent index
        book = Orders(
            np.insert(others.agent, at, self.index),
            np.insert(others.is_buy, at, is_buy),
            np.insert(others.price, at, price),
            np.insert(others.quantity, at, qty),
        )
        kw: dict[str, Any] = {"k": env.k, "n_agents": env.n}
        if env.mechanism == "bilateral":
            kw["partners"] = np.ones((env.n, env.n), dtype=bool)
        if env.mechanism in GAMES:
            from p2p_gym.sim.stages import clear_book

            kw.update(
                retail_price=retail, feed_in_price=feed_in, leader_objective=env.config.leader_objective
            )
            res = clear_book(book, env.mechanism, kw)
        else:
            res = clear(book, env.mechanism, **kw)
        tr = res.trades
        mine = tr.buyer == self.index if is_buy else tr.seller == self.index
        volume = float(tr.quantity[mine].sum())
        unit = tr.price if is_buy else tr.seller_price  # what a buyer pays, what a seller receives
        value = float((tr.quantity[mine] * unit[mine]).sum())
        rest = max(qty - volume, 0.0)
        fee = (
            0.5 * self.fee_per_kwh * volume
        )  # its half of the expected network fee (agents.registry.expected_fee)
        return -(value + rest * retail + fee) if is_buy else value + rest * feed_in - fee

    def __repr__(self) -> str:
        return f"BestResponse(grid={len(self.grid)})"
