"""Batched stepping: B independent episodes of one scenario stepped together on [B, N, ...] numpy arrays.

:class:`BatchedMarketEnv` reproduces :class:`~p2p_gym.env.market_env.P2PMarketEnv` step for step (sub-episode
``b`` of ``reset(seed)`` is the plain env's episode of ``reset(seed + b)``: same start day, same arithmetic),
but decodes actions, dispatches batteries, clears the B books, checks the linear grid model and settles with
one set of numpy calls for the whole batch instead of ~60 small calls per episode. The action decoding,
battery, order and observation stages are the plain env's own functions (they broadcast over the batch axis);
the uniform call market and the community rules are re-implemented on padded [B, N] books with the exact rules
of :func:`p2p_gym.market.clear` and :mod:`p2p_gym.market.pricing` (whose pricing functions are reused).

Supported: mechanisms ``uniform``, ``mmr``, ``sdr``, ``bill_sharing``; ``grid="none"`` or ``"linear"`` with
``grid_policy="report"``; batteries and dispatchable generators; rewards ``"money"`` and ``"savings"``;
``grid_penalty``; ``compute_optimum`` on scenarios without dispatchable generators; forecasts and book
statistics in observations; a fixed ``start_day``. Anything else raises :class:`~p2p_gym.errors.EnvConfigError`
naming the field.

:func:`batched_vec_env` wraps it as a stable-baselines3 ``VecEnv`` with parameter sharing (one sub-env per agent
per episode), a drop-in replacement for :func:`p2p_gym.wrappers.shared_policy_vec_env`.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from p2p_gym.env.market_env import (
    COMMUNITY_RULES,
    OBS_BOUND,
    OBS_FEATURES,
    REWARDS,
    _choice,
    _int_in,
    _num_in,
    battery_dispatch,
    decode_action_array,
    observation_array,
    order_book,
)
from p2p_gym.errors import EnvConfigError
from p2p_gym.grid import GridModel
from p2p_gym.market.pricing import PRICING_RULES
from p2p_gym.scenarios import Scenario, load_scenario

__all__ = [
    "BATCHED_GRIDS",
    "BATCHED_MECHANISMS",
    "BatchedMarketEnv",
    "batched_vec_env",
    "clear_uniform_batch",
]

#: Mechanisms of the batched path (the call market and the community rules).
BATCHED_MECHANISMS: tuple[str, ...] = ("uniform", *COMMUNITY_RULES)
#: Grid modes of the batched path (the AC power flow has no batch form).
BATCHED_GRIDS: tuple[str, ...] = ("none", "linear")
#: Grid KPIs reported per sub-episode with ``grid="linear"`` (as in the plain env's ``infos["market"]["grid"]``).
GRID_KPIS: tuple[str, ...] = (
    "max_line_loading_pct",
    "max_trafo_loading_pct",
    "n_overloaded_lines",
    "n_voltage_violations",
    "overflow_sum_pct",
    "vm_min_pu",
    "vm_max_pu",
)


def _unsupported(name: str, value: Any, allowed: Any) -> None:
    raise EnvConfigError(f"{name}: the batched path supports only {allowed}, got {value!r}")


# --------------------------------------------------------------------------------------------------- clearing


def _level_fill_batch(
    price: np.ndarray, qty: np.ndarray, live: np.ndarray, volume: np.ndarray, descending: bool
) -> np.ndarray:
    """Row-wise :func:`p2p_gym.market.clearing._level_fill` on sorted, padded books float[B, K] (padding has
    ``live`` False and quantity 0 at the end of each row): kWh filled per order for ``volume`` float[B] kWh."""
    cum = np.cumsum(qty, axis=1)
    n_live = live.sum(axis=1)
    # searchsorted(cum, volume, side="left") on each row = number of cumulative values below the volume
    m = np.minimum((cum < volume[:, None]).sum(axis=1), np.maximum(n_live - 1, 0))
    marginal = np.take_along_axis(price, m[:, None], axis=1)
    above = live & ((price > marginal) if descending else (price < marginal))
    at = live & (price == marginal)
    rest = volume - np.where(above, qty, 0.0).sum(axis=1)
    level = np.where(at, qty, 0.0).sum(axis=1)
    ratio = np.divide(
        np.minimum(np.maximum(rest, 0.0), level), level, out=np.zeros_like(level), where=level > 0
    )
    return np.where(above, qty, np.where(at, qty * ratio[:, None], 0.0))


def clear_uniform_batch(
    is_buy: np.ndarray, price: np.ndarray, qty: np.ndarray, k: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uniform-price call market on B books at once, with the rules of ``market.clear(..., "uniform")``.

    Book ``b`` holds at most one order per agent: agent ``n`` bids (``is_buy[b, n]``) or asks ``qty[b, n]`` kWh
    (≤ 0 = no order) at limit price ``price[b, n]`` (currency/kWh). The volume is the largest volume one price
    supports (crossing of the step curves); orders strictly better than the marginal level are filled, the
    marginal level of the long side pro rata; the price is ``k · b* + (1 − k) · a*`` with b*/a* the marginal
    accepted bid/ask (fills ≤ 1e-12 · volume do not count, as in the reference).

    Returns:
        bought float[B, N] (kWh), sold float[B, N] (kWh), clearing price float[B] (currency/kWh, nan without
        trades) and volume float[B] (kWh).
    """
    nb_rows, n = qty.shape
    live = qty > 0
    bid, ask = is_buy & live, ~is_buy & live
    # Bids by price descending, asks ascending; non-orders go last (ties inside a level do not change fills).
    ob = np.argsort(np.where(bid, -price, np.inf), axis=1, kind="stable")
    oa = np.argsort(np.where(ask, price, np.inf), axis=1, kind="stable")
    lb, la = np.take_along_axis(bid, ob, axis=1), np.take_along_axis(ask, oa, axis=1)
    pb = np.where(lb, np.take_along_axis(price, ob, axis=1), -np.inf)
    pa = np.where(la, np.take_along_axis(price, oa, axis=1), np.inf)
    qb = np.where(lb, np.take_along_axis(qty, ob, axis=1), 0.0)
    qa = np.where(la, np.take_along_axis(qty, oa, axis=1), 0.0)
    cum_b, cum_a = np.cumsum(qb, axis=1), np.cumsum(qa, axis=1)
    # D(p) = kWh bid at >= p and S(p) = kWh asked at <= p at every order price (padding candidates masked).
    cand = np.concatenate([pb, pa], axis=1)
    valid = np.concatenate([lb, la], axis=1)
    n_d = (pb[:, None, :] >= cand[:, :, None]).sum(axis=2)
    n_s = (pa[:, None, :] <= cand[:, :, None]).sum(axis=2)
    demand = np.where(n_d > 0, np.take_along_axis(cum_b, np.maximum(n_d - 1, 0), axis=1), 0.0)
    supply = np.where(n_s > 0, np.take_along_axis(cum_a, np.maximum(n_s - 1, 0), axis=1), 0.0)
    volume = np.where(valid, np.minimum(demand, supply), 0.0).max(axis=1, initial=0.0)
    tol = 1e-12 * np.maximum(1.0, volume)
    traded = volume > tol
    fb = _level_fill_batch(pb, qb, lb, volume, descending=True)
    fa = _level_fill_batch(pa, qa, la, volume, descending=False)
    fb[~traded] = 0.0
    fa[~traded] = 0.0
    real_b = fb > tol[:, None]
    real_a = fa > tol[:, None]
    use_b = np.where(real_b.any(axis=1)[:, None], real_b, fb > 0)
    use_a = np.where(real_a.any(axis=1)[:, None], real_a, fa > 0)
    b_star = np.where(use_b, pb, np.inf).min(axis=1)
    a_star = np.where(use_a, pa, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):
        clearing = np.where(traded, k * b_star + (1.0 - k) * a_star, np.nan)
    bought = np.zeros((nb_rows, n))
    sold = np.zeros((nb_rows, n))
    np.put_along_axis(bought, ob, fb, axis=1)
    np.put_along_axis(sold, oa, fa, axis=1)
    return bought, sold, clearing, np.minimum(fb.sum(axis=1), fa.sum(axis=1))


def clear_community_batch(
    rule: str, is_buy: np.ndarray, qty: np.ndarray, retail: np.ndarray, feed_in: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Community pricing rule (``mmr``, ``sdr``, ``bill_sharing``) on B books, as the plain env's
    ``_community_clear``: offered supply S meets demand D pro rata (seller j sells ``s_j · min(S, D) / S`` kWh,
    buyer i buys ``d_i · min(S, D) / D``) at the rule's sell price when S ≤ D, else its buy price.

    Args:
        rule: a key of :data:`p2p_gym.market.pricing.PRICING_RULES`.
        is_buy: bool[B, N] side of each agent's order; qty: float[B, N] kWh (≤ 0 = no order).
        retail, feed_in: float[B] tariffs (currency/kWh).

    Returns:
        bought float[B, N] (kWh), sold float[B, N] (kWh), price float[B] (currency/kWh) and volume float[B].
    """
    live = qty > 0
    sell = ~is_buy & live
    buy = is_buy & live
    s = np.where(sell, qty, 0.0).sum(axis=1)
    d = np.where(buy, qty, 0.0).sum(axis=1)
    buy_price, sell_price = PRICING_RULES[rule](s, d, retail, feed_in)
    price = np.where(s <= d, sell_price, buy_price)
    trade = (s > 0) & (d > 0)
    vol = np.where(trade, np.minimum(s, d), 0.0)
    s_safe, d_safe = np.where(trade, s, 1.0), np.where(trade, d, 1.0)
    sold = np.where(sell, qty / s_safe[:, None], 0.0) * vol[:, None]
    bought = np.where(buy, qty / d_safe[:, None], 0.0) * vol[:, None]
    return bought, sold, price, vol


# -------------------------------------------------------------------------------------------------- the env


class BatchedMarketEnv:
    """B independent episodes of :class:`~p2p_gym.env.market_env.P2PMarketEnv` stepped together.

    Arrays are [B, N, ...] with B = ``n_envs`` sub-episodes and N agents in ``possible_agents`` order.

    * ``reset(seed)`` → observations float32[B, N, obs_dim]. Sub-episode ``b`` owns a
      ``numpy.random.Generator`` seeded with ``seed + b`` and picks its start day exactly as the plain env does
      with ``reset(seed=seed + b)``; ``reset()`` without a seed continues every sub-episode's generator, like
      the plain env's ``reset()``.
    * ``step(actions float[B, N, act_dim])`` → ``(obs float32[B, N, obs_dim], rewards float[B, N] (currency),
      dones bool[B], infos)``. All sub-episodes have ``episode_steps`` steps, so they end together.
    * **Auto-reset** (``auto_reset=True``): at the end of an episode every sub-episode is reset at once with
      its own generator (as the plain env's ``reset()``); the returned observations start the new episodes and
      the last ones are in ``infos["final_obs"]``. Without it (default) ``step`` after the end raises.

    ``infos`` is a dict of arrays: ``t`` int[B] (scenario step), ``clearing_price`` float[B] (currency/kWh,
    nan without trades), ``p2p_volume_kwh`` float[B], ``welfare``, ``welfare_no_trade``, ``welfare_optimum``
    (nan unless ``compute_optimum``), ``gains_from_trade`` float[B] (currency), ``money_balance`` float[B]
    (currency) and ``energy_balance_kwh`` float[B] (residuals, 0 up to rounding), ``penalty_total`` float[B],
    per agent float[B, N]: ``bill``, ``grid_only_bill`` (currency), ``p2p_sold_kwh``, ``p2p_bought_kwh``,
    ``grid_import_kwh``, ``grid_export_kwh``, ``battery_kw``, int[B, N] ``clipped_actions`` and
    ``nonfinite_actions``; with ``grid="linear"`` also ``grid``: a dict of the :data:`GRID_KPIS` arrays [B].

    Args:
        scenario: a scenario name or :class:`~p2p_gym.scenarios.Scenario`.
        n_envs: B ≥ 1, number of sub-episodes.
        mechanism: one of :data:`BATCHED_MECHANISMS`.
        grid: one of :data:`BATCHED_GRIDS`.
        episode_steps: steps per episode (96 = one day of 15-minute steps).
        auto_reset: reset all sub-episodes automatically when they end (see above).
        **kwargs: the keyword arguments of :class:`~p2p_gym.env.market_env.P2PMarketEnv` (``grid_penalty``,
            ``reward``, ``k``, ``compute_optimum``, ``forecast_steps``, ``book_stats``, ``start_day``,
            ``initial_soc``, ``scenario_overrides``); ``peer_selection``, ``peer_k``, ``preference``,
            ``render_mode`` and ``grid_policy`` other than ``"report"`` are not supported.

    Raises:
        EnvConfigError: an unsupported or invalid option (the message names the field and the allowed values).
    """

    def __init__(
        self,
        scenario: str | Scenario = "default",
        n_envs: int = 8,
        mechanism: str = "uniform",
        grid: str = "none",
        episode_steps: int = 96,
        *,
        auto_reset: bool = False,
        peer_selection: bool = False,
        peer_k: int | None = None,
        grid_policy: str = "report",
        grid_penalty: float = 0.0,
        reward: str = "money",
        k: float = 0.5,
        preference: Any = None,
        compute_optimum: bool = False,
        forecast_steps: int = 0,
        book_stats: bool = False,
        start_day: int | None = None,
        initial_soc: float = 0.5,
        render_mode: str | None = None,
        scenario_overrides: dict[str, Any] | None = None,
        **unsupported: Any,
    ) -> None:
        sc = load_scenario(scenario, **(scenario_overrides or {})) if isinstance(scenario, str) else scenario
        if not isinstance(sc, Scenario):
            raise EnvConfigError(f"scenario: expected a name or Scenario, got {type(scenario).__name__}")
        for name in unsupported:
            if name in ("block_threshold_pct", "fee_per_kwh_km", "preference_per_km"):
                _unsupported(name, unsupported[name], "the default (grid_policy='report', no preference)")
            raise EnvConfigError(f"{name}: unknown argument of BatchedMarketEnv")
        if mechanism not in BATCHED_MECHANISMS:
            _unsupported("mechanism", mechanism, list(BATCHED_MECHANISMS))
        if grid not in BATCHED_GRIDS:
            _unsupported("grid", grid, list(BATCHED_GRIDS))
        if grid_policy != "report":
            _unsupported("grid_policy", grid_policy, ["report"])
        if peer_selection:
            _unsupported("peer_selection", peer_selection, [False])
        if peer_k is not None:
            _unsupported("peer_k", peer_k, [None])
        if preference is not None:
            _unsupported("preference", preference, [None])
        if render_mode is not None:
            _unsupported("render_mode", render_mode, [None])
        _choice("reward", reward, REWARDS)
        self.scenario = sc
        self.n_envs = _int_in("n_envs", n_envs, 1, 1_000_000)
        self.mechanism = mechanism
        self.grid = grid
        self.episode_steps = _int_in("episode_steps", episode_steps, 1, sc.n_steps)
        self.auto_reset = bool(auto_reset)
        self.grid_penalty = _num_in("grid_penalty", grid_penalty, 0.0, 1e9)
        self.reward_kind = reward
        self.k = _num_in("k", k, 0.0, 1.0)
        self.compute_optimum = bool(compute_optimum)
        self._is_gen = sc.gen_max_kw > 0
        if self.compute_optimum and self._is_gen.any():
            _unsupported(
                "compute_optimum", compute_optimum, "False on scenarios with dispatchable generators"
            )
        if self.grid_penalty > 0 and grid == "none":
            _unsupported("grid_penalty", grid_penalty, "0 with grid='none'")
        self.forecast_steps = _int_in("forecast_steps", forecast_steps, 0, 96 * 7)
        self.book_stats = bool(book_stats)
        self.initial_soc = _num_in("initial_soc", initial_soc, 0.0, 1.0)
        n_days = max(1, (sc.n_steps - self.episode_steps) // sc.steps_per_day + 1)
        self.start_day = None if start_day is None else _int_in("start_day", start_day, 0, n_days - 1)
        self._n_start_days = n_days

        n = sc.n_agents
        self.n = n
        self.possible_agents = list(sc.agent_ids)
        self.dt = sc.dt_hours
        self._has_bat = sc.battery_kwh > 0
        self.power_scale = np.maximum.reduce(
            [sc.load_kw.max(axis=0), sc.pv_kw.max(axis=0), sc.battery_kw, sc.gen_max_kw, np.full(n, 1e-6)]
        )
        self.n_actions = 3
        self.n_obs = len(OBS_FEATURES) + 2 * self.forecast_steps + (3 if self.book_stats else 0)
        #: Per-agent spaces, identical to the plain env's.
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (self.n_actions,), np.float32)
        self.observation_space = gymnasium.spaces.Box(-OBS_BOUND, OBS_BOUND, (self.n_obs,), np.float32)
        self._grid_model = GridModel(sc, "linear") if grid == "linear" else None
        if self._grid_model is not None:
            g = self._grid_model
            sens = g.sensitivities
            self._si = np.ascontiguousarray(sens["line_current_ka_per_kw"].T)  # [N, L]
            self._st = np.ascontiguousarray(sens["trafo_loading_pct_per_kw"].T)
            self._sv = np.ascontiguousarray(sens["vm_pu_per_kw"].T)
            self._i0sq = sens["line_current_ka"] ** 2
            self._t0sq = sens["trafo_loading_pct"] ** 2
            self._v0 = sens["vm_pu"]
            self._pct_per_ka = np.where(
                g.max_i_ka > 0, 100.0 / np.where(g.max_i_ka > 0, g.max_i_ka, 1.0), 0.0
            )
        b = self.n_envs
        self.rngs: list[np.random.Generator] = []
        self._t0 = np.zeros(b, dtype=np.int64)
        self._step = 0
        self._done = True
        self._soc = np.zeros((b, n))
        self._last_price = np.zeros(b)
        self._last_traded = np.zeros((b, n))
        self._last_book = np.zeros((b, 3))

    # ------------------------------------------------------------------------------------------- API
    @property
    def t(self) -> np.ndarray:
        """int[B] index into the scenario of each sub-episode's current (next) step."""
        return self._t0 + self._step

    @property
    def done(self) -> bool:
        """True when the current episodes are over (before the first reset too): call :meth:`reset`."""
        return self._done

    def reset(self, seed: int | None = None, options: dict | None = None) -> np.ndarray:
        """Start B new episodes; returns observations float32[B, N, obs_dim].

        Args:
            seed: sub-episode ``b`` gets ``numpy.random.default_rng(seed + b)`` (as ``P2PMarketEnv.reset(seed=
                seed + b)``); ``None`` continues the existing generators (fresh unseeded ones the first time).
            options: ``{"start_day": d}`` fixes the start day of every sub-episode (an int) or of each (int[B]).
        """
        b = self.n_envs
        if seed is not None:
            seed = _int_in("seed", seed, 0, 2**63 - 1 - b)
            self.rngs = [np.random.default_rng(seed + i) for i in range(b)]
        elif not self.rngs:
            self.rngs = [np.random.default_rng() for _ in range(b)]
        day = (options or {}).get("start_day", self.start_day)
        if day is None:
            days = [int(r.integers(self._n_start_days)) for r in self.rngs]
        else:
            days = [int(d) for d in np.broadcast_to(np.asarray(day), (b,))]
        days = [_int_in("start_day", d, 0, self._n_start_days - 1) for d in days]
        sc = self.scenario
        self._t0 = np.asarray(days, dtype=np.int64) * sc.steps_per_day
        self._step = 0
        self._done = False
        self._soc = np.broadcast_to(
            np.where(self._has_bat, self.initial_soc * sc.battery_kwh, 0.0), (b, self.n)
        ).copy()
        self._last_price = 0.5 * (sc.retail_price[self._t0] + sc.feed_in_price[self._t0])
        self._last_traded = np.zeros((b, self.n))
        self._last_book = np.zeros((b, 3))
        return self._observe()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One market interval of every sub-episode (see the class docstring for the returned arrays).

        Args:
            actions: float[B, N, 3] in [-1, 1] (limit price, quantity fraction, battery set-point, as the plain
                env); non-finite entries become 0 and out-of-range ones are clipped, both counted in infos.

        Raises:
            EnvConfigError: wrong shape, or the episodes are over (without ``auto_reset``).
        """
        if self._done:
            raise EnvConfigError("step: the episode is over; call reset() first")
        b, n = self.n_envs, self.n
        raw = np.asarray(actions, dtype=np.float64)
        if raw.shape != (b, n, self.n_actions):
            raise EnvConfigError(f"actions: expected shape ({b}, {n}, {self.n_actions}), got {raw.shape}")
        sc = self.scenario
        t = self._t0 + self._step
        act, n_clipped, n_nonfinite = decode_action_array(raw)
        battery_kw, self._soc = battery_dispatch(
            act[..., 2],
            self._soc,
            sc.battery_kw,
            sc.battery_kwh,
            sc.battery_efficiency,
            self.dt,
            self._has_bat,
        )
        retail, feed_in = sc.retail_price[t], sc.feed_in_price[t]
        net_kw = sc.pv_kw[t] - sc.load_kw[t] + battery_kw
        price, qty, is_buy = order_book(
            act, net_kw, retail[:, None], feed_in[:, None], self._is_gen, sc.gen_max_kw, self.dt
        )
        qty = np.where(qty > 1e-9, qty, 0.0)
        if self.mechanism == "uniform":
            bought, sold, clearing, volume = clear_uniform_batch(is_buy, price, qty, self.k)
            paid, received = bought * clearing[:, None], sold * clearing[:, None]
            paid[~np.isfinite(clearing)] = 0.0
            received[~np.isfinite(clearing)] = 0.0
        else:
            bought, sold, clearing, volume = clear_community_batch(
                self.mechanism, is_buy, qty, retail, feed_in
            )
            paid, received = bought * clearing[:, None], sold * clearing[:, None]
        injection_kw = net_kw
        if self._is_gen.any():
            injection_kw = injection_kw + np.where(self._is_gen, sold / self.dt, 0.0)
        grid_kpis, penalty = self._grid(injection_kw)
        # Settlement (market.settle, per agent): residual to/from the grid at the tariffs.
        net_kwh = injection_kw * self.dt
        residual = net_kwh - (sold - bought)
        grid_import = np.maximum(-residual, 0.0)
        grid_export = np.maximum(residual, 0.0)
        import_cost = grid_import * retail[:, None]
        export_revenue = grid_export * feed_in[:, None]
        bills = paid - received + import_cost - export_revenue
        grid_only = np.maximum(-net_kwh, 0.0) * retail[:, None] - np.maximum(net_kwh, 0.0) * feed_in[:, None]
        gen_kwh = np.where(self._is_gen, np.maximum(net_kwh + sc.load_kw[t] * self.dt, 0.0), 0.0)
        production = 0.5 * sc.gen_cost_a * gen_kwh**2 + sc.gen_cost_b * gen_kwh
        grid_balance = import_cost.sum(axis=1) - export_revenue.sum(axis=1)
        welfare = -grid_balance - production.sum(axis=1)
        welfare_no_trade = -grid_only.sum(axis=1) - production.sum(axis=1)
        money = -bills - production - penalty
        rewards = grid_only + money if self.reward_kind == "savings" else money
        if self.compute_optimum:
            surplus = np.clip(net_kwh, 0, None).sum(axis=1)
            need = np.clip(-net_kwh, 0, None).sum(axis=1)
            optimum = -retail * np.maximum(need - surplus, 0.0) + feed_in * np.maximum(surplus - need, 0.0)
        else:
            optimum = np.full(b, np.nan)
        infos: dict[str, Any] = {
            "t": t,
            "clearing_price": clearing,
            "p2p_volume_kwh": volume,
            "welfare": welfare,
            "welfare_no_trade": welfare_no_trade,
            "welfare_optimum": optimum,
            "gains_from_trade": welfare - welfare_no_trade,
            "money_balance": bills.sum(axis=1) - grid_balance,
            "energy_balance_kwh": injection_kw.sum(axis=1) * self.dt
            - (grid_export.sum(axis=1) - grid_import.sum(axis=1)),
            "penalty_total": penalty.sum(axis=1),
            "bill": bills,
            "grid_only_bill": grid_only,
            "p2p_sold_kwh": sold,
            "p2p_bought_kwh": bought,
            "grid_import_kwh": grid_import,
            "grid_export_kwh": grid_export,
            "battery_kw": battery_kw,
            "clipped_actions": n_clipped,
            "nonfinite_actions": n_nonfinite,
        }
        if grid_kpis is not None:
            infos["grid"] = grid_kpis
        # Advance (the plain env's _advance).
        self._last_price = np.where(np.isfinite(clearing), clearing, self._last_price)
        self._last_traded = sold - bought
        supply = np.where(is_buy, 0.0, qty).sum(axis=1)
        demand = np.where(is_buy, qty, 0.0).sum(axis=1)
        self._last_book = np.stack([supply, demand, volume], axis=1) / n
        self._step += 1
        done = self._step >= self.episode_steps
        obs = self._observe()
        if done:
            self._done = True
            if self.auto_reset:
                infos["final_obs"] = obs
                obs = self.reset()
        return obs, rewards, np.full(b, done), infos

    # ------------------------------------------------------------------------------------------- stages
    def _observe(self) -> np.ndarray:
        return observation_array(
            self.scenario,
            self.power_scale,
            self._has_bat,
            self.forecast_steps,
            self.book_stats,
            self._t0 + self._step,
            self._soc,
            self._last_price,
            self._last_traded,
            self._last_book,
        )

    def _grid(self, injection_kw: np.ndarray) -> tuple[dict[str, np.ndarray] | None, np.ndarray]:
        """Linear grid check of the B injections float[B, N] (kW): KPIs (arrays [B]) and penalty float[B, N]."""
        b, n = injection_kw.shape
        if self._grid_model is None:
            return None, np.zeros((b, n))
        g = self._grid_model
        flow = injection_kw @ self._si  # [B, L] signed line currents, kA
        line = np.sqrt(self._i0sq + flow**2) * self._pct_per_ka
        trafo = np.sqrt(self._t0sq + (injection_kw @ self._st) ** 2)
        vm = self._v0 + injection_kw @ self._sv
        over = line - g.loading_limit_pct
        excess = np.clip(over, 0.0, None)
        kpis = {
            "max_line_loading_pct": line.max(axis=1, initial=0.0),
            "max_trafo_loading_pct": trafo.max(axis=1, initial=0.0),
            "n_overloaded_lines": np.count_nonzero(over > 0, axis=1),
            "n_voltage_violations": np.count_nonzero((vm < g.v_min_pu) | (vm > g.v_max_pu), axis=1),
            "overflow_sum_pct": excess.sum(axis=1),
            "vm_min_pu": vm.min(axis=1, initial=np.inf) if vm.shape[1] else np.ones(b),
            "vm_max_pu": vm.max(axis=1, initial=-np.inf) if vm.shape[1] else np.ones(b),
        }
        if self.grid_penalty <= 0:
            return kpis, np.zeros((b, n))
        return kpis, self._penalty(injection_kw, flow, line, vm)

    def _penalty(self, inj: np.ndarray, flow: np.ndarray, line: np.ndarray, vm: np.ndarray) -> np.ndarray:
        """The plain env's ``_penalty`` for B injections: float[B, N] currency."""
        n = inj.shape[1]
        si, sv = self._si.T, self._sv.T  # [L, N], [V, N]
        over_v = np.clip(vm - 1.05, 0.0, None) + np.clip(0.95 - vm, 0.0, None)  # [B, V]
        excess = np.clip(line - 100.0, 0.0, None)  # [B, L]
        total = self.grid_penalty * (excess.sum(axis=1) + 100.0 * over_v.sum(axis=1))
        contrib_l = si[None] * inj[:, None, :] * np.sign(flow)[:, :, None]  # [B, L, N]
        share = np.where((excess > 0)[:, :, None], np.clip(contrib_l, 0, None), 0.0).sum(axis=1)
        ssum = share.sum(axis=1, keepdims=True)
        share = np.where(ssum > 0, share / np.maximum(ssum, 1e-12), share)
        dv = sv[None] * inj[:, None, :]  # [B, V, N]
        vpos = np.clip(np.sign(vm - 1.0)[:, :, None] * dv, 0, None)
        vshare = np.where((over_v > 0)[:, :, None], vpos, 0.0).sum(axis=1)
        vsum = vshare.sum(axis=1, keepdims=True)
        vshare = np.where(vsum > 0, vshare / np.maximum(vsum, 1e-12), vshare)
        ex, ov = excess.sum(axis=1), over_v.sum(axis=1)
        w_line = (ex / np.maximum(ex + 100.0 * ov, 1e-12))[:, None]
        weights = w_line * share + (1.0 - w_line) * vshare
        wsum = weights.sum(axis=1, keepdims=True)
        weights = np.where(wsum > 0, weights, 1.0 / n)
        out = total[:, None] * weights / weights.sum(axis=1, keepdims=True)
        return np.where((total > 0)[:, None], out, 0.0)


# ------------------------------------------------------------------------------------------ SB3 vector env


def batched_vec_env(n_envs: int = 1, seed: int = 0, **env_kwargs: Any) -> Any:
    """A stable-baselines3 ``VecEnv`` with parameter sharing over a :class:`BatchedMarketEnv`.

    Sub-env ``b · N + i`` is agent ``i`` of episode ``b``; the B = ``n_envs`` episodes end together (fixed
    length) and are reset automatically with seeds ``seed + b + 10 000 · episode`` (the convention of
    :func:`p2p_gym.wrappers.shared_policy_vec_env`, which it reproduces step for step); the final observation is
    in ``infos[j]["terminal_observation"]``. Per-agent infos hold ``bill`` (currency), ``clipped_actions`` and
    the step's ``clearing_price`` (currency/kWh). Needs stable-baselines3 (imported here, not by the core).

    Args:
        n_envs: number of episodes B stepped together.
        seed: base seed.
        **env_kwargs: arguments of :class:`BatchedMarketEnv` (``auto_reset`` is managed here).
    """
    from stable_baselines3.common.vec_env import VecEnv

    env_kwargs.pop("auto_reset", None)
    benv = BatchedMarketEnv(n_envs=n_envs, **env_kwargs)

    class BatchedSharedPolicyVecEnv(VecEnv):
        def __init__(self) -> None:
            self.env = benv
            self.n_agents = benv.n
            super().__init__(n_envs * benv.n, benv.observation_space, benv.action_space)
            self._seed = seed
            self._actions: np.ndarray | None = None
            self._episode = 0

        def _flat(self, obs: np.ndarray) -> np.ndarray:
            return obs.reshape(-1, obs.shape[-1])

        def reset(self) -> np.ndarray:
            obs = benv.reset(seed=self._seed + 10_000 * self._episode)
            self._episode += 1
            return self._flat(obs)

        def step_async(self, actions: np.ndarray) -> None:
            self._actions = np.asarray(actions)

        def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
            assert self._actions is not None
            acts = self._actions.reshape(n_envs, benv.n, benv.n_actions)
            obs, rew, done, info = benv.step(acts)
            dones = np.repeat(done, benv.n)
            flat_obs = self._flat(obs)
            bill, clipped = info["bill"].ravel(), info["clipped_actions"].ravel()
            price = np.repeat(info["clearing_price"], benv.n)
            infos: list[dict] = [
                {
                    "bill": float(bill[j]),
                    "clipped_actions": int(clipped[j]),
                    "clearing_price": float(price[j]),
                }
                for j in range(self.num_envs)
            ]
            if done.any():
                for j, d in enumerate(infos):
                    d["terminal_observation"] = flat_obs[j]
                    d["TimeLimit.truncated"] = True
                flat_obs = self.reset()
            return flat_obs, rew.ravel().astype(np.float32), dones, infos

        def close(self) -> None:
            return None

        def seed(self, seed: int | None = None) -> list[int | None]:
            self._seed = 0 if seed is None else int(seed)
            self._episode = 0
            return [seed] * self.num_envs

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [getattr(benv, attr_name, None) for _ in self._get_indices(indices)]

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            setattr(benv, attr_name, value)

        def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
            out = getattr(benv, method_name)(*args, **kwargs)
            return [out for _ in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False for _ in self._get_indices(indices)]

    return BatchedSharedPolicyVecEnv()
