"""The PettingZoo environment: market clearing + grid check + settlement, one step per market interval."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from p2p_gym import market
from p2p_gym.env.network import FlowAttribution, path_length_km
from p2p_gym.errors import EnvConfigError
from p2p_gym.grid import GridModel, GridReport
from p2p_gym.scenarios import Scenario, load_scenario

AUCTIONS = ("uniform", "pay_as_bid", "cda", "bilateral")
COMMUNITY_RULES = ("mmr", "sdr", "bill_sharing")
MECHANISMS = AUCTIONS + COMMUNITY_RULES
GRIDS = ("none", "linear", "ac")
GRID_POLICIES = ("report", "block", "fee")
REWARDS = ("money", "savings")
#: Observations are clipped to [-OBS_BOUND, OBS_BOUND] (powers are normalised, prices are per kWh).
OBS_BOUND = 10.0

#: Names of the observation features, in order (before forecasts and book statistics).
OBS_FEATURES = (
    "load",  # own load, in units of the agent's power scale
    "pv",  # own PV generation, power scale units
    "soc",  # battery state of charge as a fraction of capacity (0 without battery)
    "net",  # pv - load, power scale units
    "hour_sin",
    "hour_cos",
    "retail_price",  # currency/kWh
    "feed_in_price",  # currency/kWh
    "last_clearing_price",  # currency/kWh (the mean of feed-in and retail when there was none)
    "last_traded",  # own P2P sold minus bought in the last step, kWh per power-scale kWh
    "has_battery",  # 1 if the agent owns a battery
)


@dataclass(frozen=True)
class StepOutcome:
    """Everything one market interval produced (kept as ``env.last_outcome`` for inspection and rendering)."""

    t: int
    orders: market.Orders
    result: market.ClearingResult
    blocked_trades: int  # trades removed by the DSO (grid_policy="block")
    blocked_kwh: float  # their volume
    settlement: market.Settlement | None
    bills: np.ndarray  # float[N] money paid this step (positive = pays), fees included
    grid_only_bills: np.ndarray  # float[N]
    production_cost: np.ndarray  # float[N] cost of dispatchable generation
    penalty: np.ndarray  # float[N] grid-violation penalty
    injection_kw: np.ndarray  # float[N] physical net injection (positive = export)
    report: GridReport | None
    welfare: float
    welfare_no_trade: float
    welfare_optimum: float


class P2PMarketEnv(ParallelEnv):
    """Prosumers bidding in a peer-to-peer electricity market on a real distribution grid.

    **Step** (one market interval of ``scenario.step_minutes``): decode every agent's action into a battery
    set-point and an order (and accepted peers) → clear the market → check the grid → settle against the retail
    and feed-in tariff → rewards and observations.

    **Action space** (per agent, identical for all agents): ``Box(-1, 1, (3 [+ N-1],))``

    ====== ==============================================================================================
    index  meaning
    ====== ==============================================================================================
    0      limit price: ``feed_in + (a + 1) / 2 · (retail − feed_in)`` (−1 = feed-in price, +1 = retail price)
    1      quantity: ``(a + 1) / 2`` of the agent's position after the battery (its surplus when positive,
           it sells; its need when negative, it buys); the rest goes to/from the grid at the tariff
    2      battery set-point ``a · battery_kw`` (positive = discharge), limited by the state of charge; ignored
           for agents without a battery
    3..    with ``peer_selection=True``: one score per other agent in ``possible_agents`` order (self
           skipped); the agent accepts peers with score > 0, or its ``peer_k`` highest when ``peer_k`` is set
    ====== ==============================================================================================

    Dispatchable generators (``ieee39``) offer ``(a1 + 1) / 2 · gen_max_kw · dt`` and produce what they sell.
    Non-finite entries are replaced by 0 and out-of-range entries clipped; both are counted in ``infos``.
    Under the community rules (``mmr``, ``sdr``, ``bill_sharing``) prices come from the rule and only the
    quantity and battery entries matter.

    **Observation space** (per agent): ``Box(-10, 10, (11 + 2·forecast_steps [+ 3],))``, float32: the features
    of :data:`OBS_FEATURES` (powers in units of the agent's power scale = its largest load, PV, battery or
    generation power), then forecasts of own load and PV for the next ``forecast_steps`` steps, then (with
    ``book_stats=True``) last step's total offered supply and demand (kWh, per agent mean) and P2P volume.
    ``state()`` concatenates all agents' observations.

    **Reward**: ``"money"``: the agent's money for the step (receipts − payments − fees − production cost −
    penalty, currency); ``"savings"``: its grid-only bill minus its bill (same terms). With ``grid_penalty > 0``
    the penalty (``grid_penalty`` × (overflow sum in % points + 100 × voltage excess in p.u.)) is shared among
    agents in proportion to their positive contribution to the violations (linear sensitivities).

    **Infos**: per agent: ``bill``, ``grid_only_bill``, ``p2p_sold_kwh``, ``p2p_bought_kwh``, ``grid_import_kwh``,
    ``grid_export_kwh``, ``fees``, ``penalty``, ``production_cost``, ``clipped_actions``,
    ``nonfinite_actions``, ``soc``; and ``"market"`` (the same dict object for every agent): clearing price,
    volume, number of trades, blocked volume, welfare, welfare without trading, optimum (with
    ``compute_optimum=True``), efficiency, money and energy balance residuals, grid KPIs. Values that are
    undefined in a step (no clearing price, no possible gain, a failed power flow) are ``None``.

    Args:
        scenario: a scenario name or :class:`~p2p_gym.scenarios.Scenario`.
        mechanism: ``uniform``, ``pay_as_bid``, ``cda``, ``bilateral`` or a community rule ``mmr``, ``sdr``,
            ``bill_sharing``.
        grid: ``"none"``, ``"linear"`` (sensitivities) or ``"ac"`` (pandapower AC power flow).
        peer_selection: add per-peer scores to the action (used by ``bilateral``; other mechanisms ignore them
            except that the DSO/fee rules still apply).
        peer_k: accept the top-k scored peers instead of those with a positive score.
        episode_steps: steps per episode (96 = one day of 15-minute steps).
        grid_policy: ``"report"`` violations only, ``"block"`` trades whose attributed flow raises the loading
            of a line already at ≥ ``block_threshold_pct`` (003 Scenario 2), or ``"fee"``: a distance-based
            network fee of ``fee_per_kwh_km`` per kWh and km of line path between the peers (001, eq. 12).
        block_threshold_pct: loading threshold of the blocking rule.
        fee_per_kwh_km: network fee rate of ``grid_policy="fee"`` (paid half by each side).
        grid_penalty: currency per % point of overflow (and per 0.01 p.u. of voltage excess), 0 = none.
        reward: ``"money"`` or ``"savings"``.
        k: k-pricing parameter of the auctions (price = k · bid + (1 − k) · ask).
        preference: ``None``, ``"distance"`` (β = ``preference_per_km`` · path length, in currency/kWh) or an
            array float[N, N] of β_nm ≥ 0 used by the bilateral matching.
        preference_per_km: scale of the ``"distance"`` preference.
        compute_optimum: compute the welfare optimum of each step (fixed physical positions; with dispatchable
            generators, the centralised QP of :mod:`p2p_gym.optim`) and report efficiency.
        forecast_steps: number of future steps of own load/PV forecasts (perfect foresight) in observations.
        book_stats: add last step's public book statistics to observations.
        start_day: fix the first day of every episode (default: a seeded random day of the year).
        initial_soc: initial battery state of charge (fraction).
        render_mode: ``None``, ``"human"`` or ``"rgb_array"``.
        scenario_overrides: passed to :func:`~p2p_gym.scenarios.load_scenario` when ``scenario`` is a name.

    **Version history**: v0 — first release.
    """

    metadata = {"name": "p2p_market_v0", "render_modes": ["human", "rgb_array"], "is_parallelizable": True}

    def __init__(
        self,
        scenario: str | Scenario = "default",
        mechanism: str = "uniform",
        grid: str = "linear",
        peer_selection: bool = False,
        episode_steps: int = 96,
        render_mode: str | None = None,
        *,
        peer_k: int | None = None,
        grid_policy: str = "report",
        block_threshold_pct: float = 80.0,
        fee_per_kwh_km: float = 0.05,
        grid_penalty: float = 0.0,
        reward: str = "money",
        k: float = 0.5,
        preference: str | np.ndarray | None = None,
        preference_per_km: float = 0.02,
        compute_optimum: bool = False,
        forecast_steps: int = 0,
        book_stats: bool = False,
        start_day: int | None = None,
        initial_soc: float = 0.5,
        scenario_overrides: dict[str, Any] | None = None,
    ) -> None:
        sc = load_scenario(scenario, **(scenario_overrides or {})) if isinstance(scenario, str) else scenario
        if not isinstance(sc, Scenario):
            raise EnvConfigError(f"scenario: expected a name or Scenario, got {type(scenario).__name__}")
        _choice("mechanism", mechanism, MECHANISMS)
        _choice("grid", grid, GRIDS)
        _choice("grid_policy", grid_policy, GRID_POLICIES)
        _choice("reward", reward, REWARDS)
        if render_mode is not None:
            _choice("render_mode", render_mode, ("human", "rgb_array"))
        if grid_policy == "block" and grid == "none":  # the fee only needs the network's path lengths
            raise EnvConfigError("grid_policy: 'block' needs grid='linear' or 'ac', got grid='none'")
        self.scenario = sc
        self.mechanism = mechanism
        self.grid = grid
        self.grid_policy = grid_policy
        self.peer_selection = bool(peer_selection)
        self.episode_steps = _int_in("episode_steps", episode_steps, 1, sc.n_steps)
        self.peer_k = None if peer_k is None else _int_in("peer_k", peer_k, 1, max(1, sc.n_agents - 1))
        self.block_threshold_pct = _num_in("block_threshold_pct", block_threshold_pct, 0.0, 1e6)
        self.fee_per_kwh_km = _num_in("fee_per_kwh_km", fee_per_kwh_km, 0.0, 1e6)
        self.grid_penalty = _num_in("grid_penalty", grid_penalty, 0.0, 1e9)
        self.reward_kind = reward
        self.k = _num_in("k", k, 0.0, 1.0)
        self.compute_optimum = bool(compute_optimum)
        self.forecast_steps = _int_in("forecast_steps", forecast_steps, 0, 96 * 7)
        self.book_stats = bool(book_stats)
        self.initial_soc = _num_in("initial_soc", initial_soc, 0.0, 1.0)
        n_days = max(1, (sc.n_steps - self.episode_steps) // sc.steps_per_day + 1)
        self.start_day = None if start_day is None else _int_in("start_day", start_day, 0, n_days - 1)
        self._n_start_days = n_days
        self.render_mode = render_mode

        n = sc.n_agents
        self.possible_agents = list(sc.agent_ids)
        self.agents: list[str] = []
        self.agent_name_mapping = {a: i for i, a in enumerate(self.possible_agents)}
        self.n = n
        self.dt = sc.dt_hours
        self._has_bat = sc.battery_kwh > 0
        self._is_gen = sc.gen_max_kw > 0
        self.power_scale = np.maximum.reduce(
            [sc.load_kw.max(axis=0), sc.pv_kw.max(axis=0), sc.battery_kw, sc.gen_max_kw, np.full(n, 1e-6)]
        )
        self._others = np.array([[m for m in range(n) if m != i] for i in range(n)], dtype=int).reshape(
            n, n - 1
        )

        self._grid_model = GridModel(sc, grid) if grid != "none" else None
        self._attribution: FlowAttribution | None = None
        self._sens_i: np.ndarray | None = None
        self._sens_v: np.ndarray | None = None
        if grid != "none" and (grid_policy == "block" or self.grid_penalty > 0):
            lin = self._grid_model if grid == "linear" else GridModel(sc, "linear")
            assert lin is not None
            sens = lin.sensitivities
            self._attribution = FlowAttribution(sens["line_current_ka_per_kw"], lin.max_i_ka)
            self._sens_i = sens["line_current_ka_per_kw"]
            self._sens_v = sens["vm_pu_per_kw"]
        self._distance_km: np.ndarray | None = None
        if grid_policy == "fee" or (isinstance(preference, str) and preference == "distance"):
            self._distance_km = path_length_km(sc.net, sc.bus)
        self.preference = self._make_preference(
            preference, _num_in("preference_per_km", preference_per_km, 0, 1e6)
        )
        self._fee_matrix = (
            self.fee_per_kwh_km * self._distance_km
            if grid_policy == "fee" and self._distance_km is not None
            else None
        )

        self._n_act = 3 + (n - 1 if self.peer_selection else 0)
        self._n_obs = len(OBS_FEATURES) + 2 * self.forecast_steps + (3 if self.book_stats else 0)
        self._act_space = gymnasium.spaces.Box(-1.0, 1.0, (self._n_act,), np.float32)
        self._obs_space = gymnasium.spaces.Box(-OBS_BOUND, OBS_BOUND, (self._n_obs,), np.float32)
        self._state_space = gymnasium.spaces.Box(-OBS_BOUND, OBS_BOUND, (n * self._n_obs,), np.float32)
        self.rng = np.random.default_rng()
        self._t0 = 0
        self._step = 0
        self._soc = np.zeros(n)
        self._last_price = 0.0
        self._last_traded = np.zeros(n)
        self._last_book = np.zeros(3)
        self.last_outcome: StepOutcome | None = None
        self._last_blocked_kwh = 0.0
        self._fig: Any = None

    # ------------------------------------------------------------------------------------------- spaces
    @functools.cache  # noqa: B019 - spaces must be the same object on every call
    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._obs_space

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._act_space

    @property
    def state_space(self) -> gymnasium.spaces.Box:
        return self._state_space

    # ------------------------------------------------------------------------------------------- API
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None or not hasattr(self, "_seeded"):
            self.rng = np.random.default_rng(seed)
            self._seeded = True
        options = options or {}
        day = options.get("start_day", self.start_day)
        if day is None:
            day = int(self.rng.integers(self._n_start_days))
        self._t0 = _int_in("start_day", day, 0, self._n_start_days - 1) * self.scenario.steps_per_day
        self._step = 0
        self._soc = np.where(self._has_bat, self.initial_soc * self.scenario.battery_kwh, 0.0)
        t = self._t0
        self._last_price = float(0.5 * (self.scenario.retail_price[t] + self.scenario.feed_in_price[t]))
        self._last_traded = np.zeros(self.n)
        self._last_book = np.zeros(3)
        self.last_outcome = None
        self.agents = list(self.possible_agents)
        obs = self._observations()
        infos: dict[str, dict] = {a: {} for a in self.agents}
        return obs, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise EnvConfigError("step: the episode is over; call reset() first")
        t = self._t0 + self._step
        act, n_clipped, n_nonfinite = self._decode_actions(actions)
        battery_kw = self._battery(act[:, 2])
        orders, partners = self._orders(t, act, battery_kw)
        result = self._clear(orders, partners, t)
        injection_kw = self._injection(t, battery_kw, result)
        report = self._grid_model.check(injection_kw) if self._grid_model is not None else None
        result, blocked = self._apply_grid_policy(result, injection_kw, report)
        outcome = self._settle(t, orders, result, blocked, injection_kw, report)
        rewards_arr = self._rewards(outcome)
        self.last_outcome = outcome
        self._advance(outcome)
        return self._finish(outcome, rewards_arr, n_clipped, n_nonfinite, battery_kw)

    def state(self) -> np.ndarray:
        return np.concatenate([self._obs_matrix()[i] for i in range(self.n)]).astype(np.float32)

    def close(self) -> None:
        if self._fig is not None:
            import matplotlib.pyplot as plt

            plt.close(self._fig)
            self._fig = None

    def render(self) -> Any:
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called without render_mode; pass render_mode='human' or 'rgb_array'"
            )
            return None
        from p2p_gym.env.render import render_feeder

        return render_feeder(self)

    # ------------------------------------------------------------------------------------------- stages
    def _decode_actions(self, actions: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stack actions into float[N, A]; zero non-finite entries and clip to [-1, 1], counting both."""
        try:  # fast path: every agent present with a flat action of the right length
            act = np.array([actions[a] for a in self.possible_agents], dtype=np.float64)
        except (KeyError, ValueError, TypeError):
            act = None
        if act is None or act.shape != (self.n, self._n_act):
            act = np.zeros((self.n, self._n_act))
            for a, i in self.agent_name_mapping.items():
                if a not in actions:
                    raise EnvConfigError(f"actions: missing an action for agent {a!r}")
                row = np.asarray(actions[a], dtype=np.float64).reshape(-1)
                if row.size != self._n_act:
                    raise EnvConfigError(f"actions[{a!r}]: expected {self._n_act} entries, got {row.size}")
                act[i] = row
        return decode_action_array(act)

    def _battery(self, setpoint: np.ndarray) -> np.ndarray:
        """Battery power (kW, positive = discharge) feasible for the state of charge; updates the SoC."""
        sc = self.scenario
        kw, self._soc = battery_dispatch(
            setpoint, self._soc, sc.battery_kw, sc.battery_kwh, sc.battery_efficiency, self.dt, self._has_bat
        )
        return kw

    def _orders(self, t: int, act: np.ndarray, battery_kw: np.ndarray) -> tuple[Any, np.ndarray | None]:
        sc = self.scenario
        price, qty, is_buy = order_book(
            act,
            sc.pv_kw[t] - sc.load_kw[t] + battery_kw,
            sc.retail_price[t],
            sc.feed_in_price[t],
            self._is_gen,
            sc.gen_max_kw,
            self.dt,
        )
        keep = qty > 1e-9
        idx = np.flatnonzero(keep)
        orders = market.Orders(agent=idx, is_buy=is_buy[keep], price=price[keep], quantity=qty[keep])
        partners = None
        if self.peer_selection:
            partners = self._partners(act[:, 3:])
        return orders, partners

    def _partners(self, scores: np.ndarray) -> np.ndarray:
        """bool[N, N] accepted peers from per-peer scores float[N, N-1]."""
        n = self.n
        accept = np.zeros((n, n), dtype=bool)
        if self.peer_k is None:
            chosen = scores > 0
        else:
            top = np.argsort(-scores, axis=1, kind="stable")[:, : self.peer_k]
            chosen = np.zeros_like(scores, dtype=bool)
            np.put_along_axis(chosen, top, True, axis=1)
        rows = np.repeat(np.arange(n), n - 1).reshape(n, n - 1)
        accept[rows[chosen], self._others[chosen]] = True
        return accept

    def _clear(self, orders: Any, partners: np.ndarray | None, t: int) -> Any:
        if self.mechanism in COMMUNITY_RULES:
            sc = self.scenario
            return _community_clear(self.mechanism, orders, self.n, sc.retail_price[t], sc.feed_in_price[t])
        if self.mechanism == "bilateral":
            return market.clear(
                orders,
                "bilateral",
                k=self.k,
                partners=partners if partners is not None else np.ones((self.n, self.n), dtype=bool),
                preference=self.preference,
                n_agents=self.n,
            )
        return market.clear(orders, self.mechanism, k=self.k, n_agents=self.n)

    def _injection(self, t: int, battery_kw: np.ndarray, result: Any) -> np.ndarray:
        sc = self.scenario
        inj = sc.pv_kw[t] - sc.load_kw[t] + battery_kw
        if self._is_gen.any():
            inj = inj + np.where(self._is_gen, result.sold(self.n) / self.dt, 0.0)
        return inj

    def _apply_grid_policy(
        self, result: Any, injection_kw: np.ndarray, report: GridReport | None
    ) -> tuple[Any, np.ndarray]:
        """DSO rule ``block`` (003 Scenario 2): drop trades whose attributed flow raises the loading of a line
        already at ≥ ``block_threshold_pct`` under the physical injections; their energy goes to the grid."""
        trades = result.trades
        blocked = np.zeros(len(trades.quantity), dtype=bool)
        if self.grid_policy != "block" or self._attribution is None or not len(blocked):
            return result, blocked
        assert self._sens_i is not None
        flow = self._sens_i @ injection_kw  # signed line currents (kA) of the physical injections
        loading = np.abs(flow) * self._attribution.pct_per_ka
        stressed = loading >= self.block_threshold_pct
        if not stressed.any():
            return result, blocked
        att = self._attribution.trade_loading_pct(trades.seller, trades.buyer, trades.quantity / self.dt)
        raises = (att[stressed] * np.sign(flow[stressed])[:, None]) > 1e-12
        blocked = raises.any(axis=0)
        self._last_blocked_kwh = float(trades.quantity[blocked].sum())
        return (_drop_trades(result, blocked), blocked) if blocked.any() else (result, blocked)

    def _settle(
        self,
        t: int,
        orders: Any,
        result: Any,
        blocked: np.ndarray,
        injection_kw: np.ndarray,
        report: GridReport | None,
    ) -> StepOutcome:
        sc = self.scenario
        retail, feed_in = float(sc.retail_price[t]), float(sc.feed_in_price[t])
        net_kwh = injection_kw * self.dt
        blocked_volume = float(self._last_blocked_kwh) if blocked.any() else 0.0
        settlement = market.settle(result, net_kwh, retail, feed_in, n_agents=self.n)
        fees: np.ndarray = np.zeros(self.n)
        if self._fee_matrix is not None and len(result.trades.quantity):
            tr = result.trades
            per_trade = self._fee_matrix[tr.seller, tr.buyer] * tr.quantity
            fees = 0.5 * (
                np.bincount(tr.seller, per_trade, self.n) + np.bincount(tr.buyer, per_trade, self.n)
            )
        bills = settlement.bill + fees
        grid_only = market.grid_only_bill(net_kwh, retail, feed_in)
        gen_kwh = np.where(self._is_gen, np.maximum(net_kwh + sc.load_kw[t] * self.dt, 0.0), 0.0)
        production = 0.5 * sc.gen_cost_a * gen_kwh**2 + sc.gen_cost_b * gen_kwh
        penalty = self._penalty(injection_kw, report)
        # Welfare: what the community pays the grid (net) plus production costs, with the sign flipped.
        # Fees are transfers between agents and the fee collector and are excluded.
        welfare = -float(settlement.grid_balance) - float(production.sum())
        welfare_no_trade = -float(grid_only.sum()) - float(production.sum())
        optimum = self._optimum(t, net_kwh) if self.compute_optimum else math.nan
        return StepOutcome(
            t=t,
            orders=orders,
            result=result,
            blocked_trades=int(blocked.sum()),
            blocked_kwh=float(blocked_volume),
            settlement=settlement,
            bills=bills,
            grid_only_bills=grid_only,
            production_cost=production,
            penalty=penalty,
            injection_kw=injection_kw,
            report=report,
            welfare=welfare,
            welfare_no_trade=welfare_no_trade,
            welfare_optimum=optimum,
        )

    def _penalty(self, injection_kw: np.ndarray, report: GridReport | None) -> np.ndarray:
        if self.grid_penalty <= 0 or report is None or not report.converged or self._sens_i is None:
            return np.zeros(self.n)
        assert self._attribution is not None and self._sens_v is not None
        over_v = np.clip(report.vm_pu - 1.05, 0.0, None) + np.clip(0.95 - report.vm_pu, 0.0, None)
        excess = np.clip(report.line_loading_pct - 100.0, 0.0, None)
        total = self.grid_penalty * (excess.sum() + 100.0 * over_v.sum())
        if total <= 0:
            return np.zeros(self.n)
        flow = self._sens_i @ injection_kw
        # contribution of each agent to overloaded lines' flow (same direction) and to voltage excess
        contrib_l = (self._sens_i * injection_kw[None, :]) * np.sign(flow)[:, None]
        share = np.clip(contrib_l[excess > 0], 0, None).sum(axis=0)
        dv = self._sens_v * injection_kw[None, :]
        share = share / max(share.sum(), 1e-12) if share.sum() > 0 else share
        vshare = np.clip(np.sign(report.vm_pu - 1.0)[:, None] * dv, 0, None)[over_v > 0].sum(axis=0)
        vshare = vshare / max(vshare.sum(), 1e-12) if vshare.sum() > 0 else vshare
        w_line = excess.sum() / max(excess.sum() + 100.0 * over_v.sum(), 1e-12)
        weights = w_line * share + (1.0 - w_line) * vshare
        if weights.sum() <= 0:
            weights = np.full(self.n, 1.0 / self.n)
        return total * weights / weights.sum()

    def _optimum(self, t: int, net_kwh: np.ndarray) -> float:
        """Optimal welfare of the step with the same physical positions (see :func:`step_optimum`)."""
        return step_optimum(self, t, net_kwh)

    def _rewards(self, out: StepOutcome) -> np.ndarray:
        money = -out.bills - out.production_cost - out.penalty
        if self.reward_kind == "savings":
            return out.grid_only_bills + money
        return money

    def _advance(self, out: StepOutcome) -> None:
        result, orders, st = out.result, out.orders, out.settlement
        assert st is not None
        price = result.clearing_price
        if np.isfinite(price):
            self._last_price = float(price)
        self._last_traded = st.p2p_sold_kwh - st.p2p_bought_kwh  # settled trades, after the DSO rules
        q = orders.quantity
        supply = float(q[~orders.is_buy].sum())
        demand = float(q[orders.is_buy].sum())
        self._last_book = np.array([supply, demand, float(result.volume)]) / self.n
        self._step += 1

    def _finish(
        self,
        out: StepOutcome,
        rewards_arr: np.ndarray,
        n_clipped: np.ndarray,
        n_nonfinite: np.ndarray,
        battery_kw: np.ndarray,
    ) -> tuple[dict, dict, dict, dict, dict]:
        done = self._step >= self.episode_steps
        st = out.settlement
        assert st is not None
        report = out.report
        gains = out.welfare - out.welfare_no_trade
        max_gains = out.welfare_optimum - out.welfare_no_trade
        fees = out.bills - st.bill  # float[N] network fees (bills include them, the settlement does not)
        fee_total = float(fees.sum())
        market_info = {
            "t": out.t,
            "clearing_price": float(out.result.clearing_price),
            "p2p_volume_kwh": float(out.result.volume),
            "n_trades": len(out.result.trades.quantity),
            "blocked_trades": out.blocked_trades,
            "blocked_kwh": out.blocked_kwh,
            "fees_total": fee_total,
            "welfare": out.welfare,
            "welfare_no_trade": out.welfare_no_trade,
            "welfare_optimum": out.welfare_optimum,
            "gains_from_trade": gains,
            "efficiency": (gains / max_gains)
            if max_gains > 1e-12
            else (1.0 if abs(gains) <= 1e-12 else math.nan),
            "money_balance": float(out.bills.sum() - st.grid_balance - fee_total),
            "energy_balance_kwh": float(
                out.injection_kw.sum() * self.dt - (st.grid_export_kwh.sum() - st.grid_import_kwh.sum())
            ),
            "grid": _nan_to_none(report.as_dict()) if report is not None else None,
            "penalty_total": float(out.penalty.sum()),
        }
        market_info = _nan_to_none(market_info)
        obs = self._observations()
        # One conversion per array (``tolist`` gives Python floats), then plain per-agent dicts.
        soc = np.divide(self._soc, self.scenario.battery_kwh, out=np.zeros(self.n), where=self._has_bat)
        columns = {
            "bill": out.bills,
            "grid_only_bill": out.grid_only_bills,
            "p2p_sold_kwh": st.p2p_sold_kwh,
            "p2p_bought_kwh": st.p2p_bought_kwh,
            "grid_import_kwh": st.grid_import_kwh,
            "grid_export_kwh": st.grid_export_kwh,
            "fees": fees,
            "penalty": out.penalty,
            "production_cost": out.production_cost,
            "battery_kw": battery_kw,
            "soc": soc,
            "clipped_actions": n_clipped,
            "nonfinite_actions": n_nonfinite,
        }
        keys = (*columns, "market")
        rows = zip(*(np.asarray(v).tolist() for v in columns.values()))
        rewards = dict(zip(self.possible_agents, rewards_arr.tolist()))
        infos = {a: dict(zip(keys, (*row, market_info))) for a, row in zip(self.possible_agents, rows)}
        terminations = dict.fromkeys(self.possible_agents, False)
        truncations = dict.fromkeys(self.possible_agents, done)
        if done:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terminations, truncations, infos

    # ------------------------------------------------------------------------------------------- observations
    def _obs_matrix(self) -> np.ndarray:
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

    def _observations(self) -> dict[str, np.ndarray]:
        m = self._obs_matrix()
        return {a: m[i] for i, a in enumerate(self.possible_agents)}

    # ------------------------------------------------------------------------------------------- helpers
    def _make_preference(self, preference: Any, per_km: float) -> np.ndarray | None:
        if preference is None:
            return None
        if isinstance(preference, str):
            if preference != "distance":
                raise EnvConfigError(
                    f"preference: must be None, 'distance' or float[N, N], got {preference!r}"
                )
            assert self._distance_km is not None
            return per_km * self._distance_km
        arr = np.asarray(preference, dtype=float)
        if arr.shape != (self.n, self.n) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise EnvConfigError(
                f"preference: expected finite float[{self.n}, {self.n}] ≥ 0, got shape {arr.shape}"
            )
        return arr

    @property
    def t(self) -> int:
        """Index into the scenario of the current (next) step."""
        return self._t0 + self._step


# ----------------------------------------------------------------------------------------------- shared stages
# Pure functions of one step's arrays; every one broadcasts over leading batch axes ([..., N]) so that the
# batched path (:mod:`p2p_gym.env.batched`) runs the very same arithmetic on [B, N] arrays.


def decode_action_array(act: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sanitise raw actions float[..., A] (any units, Box[-1, 1] expected).

    Returns a float64 copy with non-finite entries replaced by 0 and the rest clipped to [-1, 1], the number of
    altered entries per row (int[...], non-finite or out of range) and the number of non-finite ones (int[...]).
    """
    act = np.array(act, dtype=np.float64)
    nonfinite = ~np.isfinite(act)
    act[nonfinite] = 0.0
    outside = (act < -1.0) | (act > 1.0)
    np.clip(act, -1.0, 1.0, out=act)
    return act, (outside | nonfinite).sum(axis=-1), nonfinite.sum(axis=-1)


def battery_dispatch(
    setpoint: np.ndarray,
    soc_kwh: np.ndarray,
    battery_kw: np.ndarray,
    battery_kwh: np.ndarray,
    efficiency: float,
    dt: float,
    has_battery: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Battery power (kW, positive = discharge) and new state of charge (kWh), both float[..., N].

    ``setpoint`` in [-1, 1] (fraction of ``battery_kw``, kW) is limited by the state of charge ``soc_kwh``
    (kWh), the capacity ``battery_kwh`` (kWh) and the one-way ``efficiency`` over a step of ``dt`` hours; agents
    without a battery (``has_battery`` False) get 0 kW.
    """
    want = setpoint * battery_kw
    max_dis = soc_kwh * efficiency / dt
    max_chg = (battery_kwh - soc_kwh) / efficiency / dt
    kw = np.where(has_battery, np.clip(want, -max_chg, max_dis), 0.0)
    soc = np.clip(soc_kwh - np.where(kw > 0, kw / efficiency, kw * efficiency) * dt, 0.0, battery_kwh)
    return kw, soc


def order_book(
    act: np.ndarray,
    net_kw: Any,
    retail: Any,
    feed_in: Any,
    is_gen: np.ndarray,
    gen_max_kw: np.ndarray,
    dt: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each agent's order from its decoded action float[..., N, A] and its net power after the battery
    ``net_kw`` float[..., N] (kW, positive = surplus): limit price (currency/kWh) float[..., N], quantity
    (kWh) float[..., N] and side bool[..., N] (True = buy). ``retail``/``feed_in`` (currency/kWh) broadcast
    against [..., N]; dispatchable generators (``is_gen``) offer ``gen_max_kw · dt`` plus any surplus."""
    position = net_kw * dt  # kWh, before dispatchable generation
    price = feed_in + (act[..., 0] + 1.0) * 0.5 * (retail - feed_in)
    frac = (act[..., 1] + 1.0) * 0.5
    offer = np.where(is_gen, gen_max_kw * dt + np.maximum(position, 0.0), np.abs(position))
    is_buy = (position < 0) & ~is_gen
    return price, frac * offer, is_buy


def _time_of_day_table() -> np.ndarray:
    """float[1440, 2]: (sin, cos) of the hour angle of every minute of the day; the plain and the batched paths
    index this one table, so they see bit-identical time features."""
    hour = np.arange(1440) / 60.0
    ang = 2.0 * np.pi * hour / 24.0
    table = np.stack([np.sin(ang), np.cos(ang)], axis=1)
    table.flags.writeable = False
    return table


_TIME_OF_DAY = _time_of_day_table()


def observation_array(
    sc: Scenario,
    power_scale: np.ndarray,
    has_battery: np.ndarray,
    forecast_steps: int,
    book_stats: bool,
    t: Any,
    soc_kwh: np.ndarray,
    last_price: Any,
    last_traded_kwh: np.ndarray,
    last_book: np.ndarray,
) -> np.ndarray:
    """Observations float32[..., N, obs_dim] (layout in :class:`P2PMarketEnv`) at scenario step(s) ``t``
    (int or int[...]; clamped to the last step) given the state of charge ``soc_kwh`` (kWh, float[..., N]), the
    last clearing price (currency/kWh, float or float[...]), each agent's last net P2P sale ``last_traded_kwh``
    (kWh, float[..., N]) and the book statistics ``last_book`` (kWh per agent, float[..., 3])."""
    t = np.minimum(np.asarray(t), sc.n_steps - 1)
    scale = power_scale
    load, pv = sc.load_kw[t], sc.pv_kw[t]
    shape = load.shape
    tod = _TIME_OF_DAY[t * sc.step_minutes % 1440]
    cap = np.where(has_battery, sc.battery_kwh, 1.0)
    cols = [
        load / scale,
        pv / scale,
        soc_kwh / cap,
        (pv - load) / scale,
        np.broadcast_to(tod[..., 0, None], shape),
        np.broadcast_to(tod[..., 1, None], shape),
        np.broadcast_to(np.asarray(sc.retail_price[t])[..., None], shape),
        np.broadcast_to(np.asarray(sc.feed_in_price[t])[..., None], shape),
        np.broadcast_to(np.asarray(last_price, dtype=np.float64)[..., None], shape),
        last_traded_kwh / (scale * sc.dt_hours),
        np.broadcast_to(has_battery.astype(float), shape),
    ]
    obs = np.stack(cols, axis=-1)
    parts = [obs]
    if forecast_steps:
        idx = np.minimum(t[..., None] + 1 + np.arange(forecast_steps), sc.n_steps - 1)  # [..., F]
        parts += [np.swapaxes(sc.load_kw[idx] / scale, -1, -2), np.swapaxes(sc.pv_kw[idx] / scale, -1, -2)]
    if book_stats:
        parts.append(np.broadcast_to(np.asarray(last_book)[..., None, :], (*shape, 3)))
    out = np.concatenate(parts, axis=-1) if len(parts) > 1 else obs
    return np.clip(out, -OBS_BOUND, OBS_BOUND).astype(np.float32)


def step_optimum(env: P2PMarketEnv, t: int, net_kwh: np.ndarray) -> float:
    """Welfare optimum of step ``t`` (currency) given the physical positions ``net_kwh``.

    With fixed positions (households), the optimum matches all internal surplus with internal need and trades
    only the rest with the grid: welfare = −retail · max(D − S, 0) + feed_in · max(S − D, 0), where S and D are
    the community's total surplus and need. With dispatchable generators (``ieee39``) their output is free in
    [0, gen_max · dt] at cost ½ a p² + b p, and the centralised P2P QP of :mod:`p2p_gym.optim` is solved with the
    grid supplier as two extra peers (a seller at the retail price, a buyer at the feed-in price); generators
    sell only to peers, as in the env (they produce what they sell), so the grid buys only prosumers' surplus.
    """
    sc = env.scenario
    retail, feed_in = float(sc.retail_price[t]), float(sc.feed_in_price[t])
    gen = env._is_gen
    if not gen.any():
        surplus = float(np.clip(net_kwh, 0, None).sum())
        need = float(np.clip(-net_kwh, 0, None).sum())
        return -retail * max(need - surplus, 0.0) + feed_in * max(surplus - need, 0.0)
    from p2p_gym import optim

    base = net_kwh - np.where(
        gen, np.clip(net_kwh + sc.load_kw[t] * env.dt, 0, None), 0.0
    )  # without generation
    cap = sc.gen_max_kw * env.dt
    big = float(np.abs(base).sum() + cap.sum()) + 1.0
    n = env.n
    # In the env a generator produces only what peers buy, so the grid can take no more than the prosumers' own
    # surplus (trades are financial: without this bound generation could be exported through any prosumer).
    export_max = float(np.clip(base[~gen], 0, None).sum())
    problem = optim.P2PProblem(
        a=np.concatenate([np.where(gen, sc.gen_cost_a, 0.0), [0.0, 0.0]]),
        b=np.concatenate([np.where(gen, sc.gen_cost_b, 0.0), [retail, feed_in]]),
        p_min=np.concatenate([base, [0.0, -export_max]]),
        p_max=np.concatenate([base + np.where(gen, cap, 0.0), [big, 0.0]]),
        n_prosumers=n,
    )
    return float(optim.solve_centralized(problem).welfare)


def _community_clear(rule: str, orders: Any, n_agents: int, retail: float, feed_in: float) -> Any:
    """Clear by a community pricing rule (no bids): offered supply S meets offered demand D pro rata.

    Every sell order j and buy order i trade ``q_ij = (s_j / S) (d_i / D) min(S, D)``. The rule returns the
    per-kWh internal buy and sell prices (:mod:`p2p_gym.market.pricing`), which already blend in the grid for
    the long side. Internal trades are priced so that the usual settlement (residuals at retail/feed-in)
    reproduces them: at the sell price when S ≤ D (sellers sell everything internally; buyers pay
    ``(P_sell · S + retail · (D − S)) / D`` per kWh, which *is* the rule's buy price for SDR and MMR), at the
    buy price when S > D.
    """
    sell = ~orders.is_buy
    s_q, d_q = orders.quantity[sell], orders.quantity[orders.is_buy]
    supply, demand = float(s_q.sum()), float(d_q.sum())
    buy_price, sell_price = market.pricing.PRICING_RULES[rule](supply, demand, retail, feed_in)
    s_idx, b_idx = np.flatnonzero(sell), np.flatnonzero(orders.is_buy)
    if supply <= 0 or demand <= 0:
        price = float(sell_price if supply <= demand else buy_price)
        return _result(orders, np.zeros(0, int), np.zeros(0, int), np.zeros(0), price)
    volume = min(supply, demand)
    q = np.outer(s_q / supply, d_q / demand).ravel() * volume
    so, bo = np.repeat(s_idx, len(b_idx)), np.tile(b_idx, len(s_idx))
    price = float(sell_price if supply <= demand else buy_price)
    return _result(orders, bo, so, q, price)


def _result(orders: Any, buy_order: np.ndarray, sell_order: np.ndarray, qty: np.ndarray, price: float) -> Any:
    trades = market.Trades(
        buy_order=buy_order.astype(np.int64),
        sell_order=sell_order.astype(np.int64),
        buyer=orders.agent[buy_order].astype(np.int64),
        seller=orders.agent[sell_order].astype(np.int64),
        quantity=qty.astype(np.float64),
        price=np.full(len(qty), price),
    )
    k = len(orders.quantity)
    filled = np.bincount(buy_order, qty, k) + np.bincount(sell_order, qty, k)
    return market.ClearingResult(trades=trades, filled=filled, clearing_price=price)


def _drop_trades(result: Any, drop: np.ndarray) -> Any:
    """The clearing result without the trades flagged in ``drop`` (order fills reduced accordingly)."""
    tr = result.trades
    keep = ~drop
    kept = dataclasses.replace(tr, **{f.name: getattr(tr, f.name)[keep] for f in dataclasses.fields(tr)})
    k = len(result.filled)
    filled = np.bincount(kept.buy_order, kept.quantity, k) + np.bincount(kept.sell_order, kept.quantity, k)
    return dataclasses.replace(result, trades=kept, filled=filled)


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    """Undefined values (no clearing price, no possible gain, failed power flow) are ``None`` in infos, so that
    infos compare equal between identical runs (NaN != NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise EnvConfigError(f"{name}: must be one of {list(allowed)}, got {value!r}")


def _int_in(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise EnvConfigError(f"{name}: must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def _num_in(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise EnvConfigError(f"{name}: must be a number in [{lo}, {hi}], got {value!r}")
    if not (np.isfinite(value) and lo <= float(value) <= hi):
        raise EnvConfigError(f"{name}: must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)
