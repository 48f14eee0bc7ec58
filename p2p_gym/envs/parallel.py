"""The PettingZoo parallel environment: :func:`p2p_gym.sim.step` with B = 1, dicts and infos."""

from __future__ import annotations

import functools
import math
from typing import Any

import gymnasium
import numpy as np
from pettingzoo import ParallelEnv

from p2p_gym.envs._build import SimEnvBase, make_static, stack_actions
from p2p_gym.errors import EnvConfigError
from p2p_gym.sim import OBS_BOUND, MarketConfig, Outcome, SimState, StepOutcome, initial_state, observations
from p2p_gym.sim import step as sim_step
from p2p_gym.sim.multiscale import OPERATOR_FEATURES, joint_observations, operator_observations


class P2PMarketEnv(SimEnvBase, ParallelEnv):
    """Prosumers bidding in a peer-to-peer electricity market on a real distribution grid.

    **Step** (one market interval of ``scenario.step_minutes``): decode every agent's action into a battery
    set-point and an order (and accepted peers) → clear the market → check the grid → apply the DSO's rule →
    settle against the retail and feed-in tariff → rewards and observations. The step is
    :func:`p2p_gym.sim.step` with a batch of one; :class:`~p2p_gym.envs.BatchedMarketEnv` runs the same step
    on B episodes.

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

    Dispatchable generators (``ieee39``) offer ``(a1 + 1) / 2 · gen_max_kw · dt`` and produce what they sell
    (after the DSO's rule). Non-finite entries are replaced by 0 and out-of-range entries clipped; both are
    counted in ``infos``. Under the community rules (``mmr``, ``sdr``, ``bill_sharing``) prices come from the rule
    and only the quantity and battery entries matter.

    **Observation space** (per agent): ``Box(-10, 10, (11 + 2·forecast_steps [+ 3],))``, float32: the features
    of :data:`~p2p_gym.sim.OBS_FEATURES` (powers in units of the agent's power scale = its largest load, PV,
    battery or generation power), then forecasts of own load and PV for the next ``forecast_steps`` steps, then
    (with ``book_stats=True``) last step's total offered supply and demand (kWh, per agent mean) and P2P volume;
    the committed-dispatch and reserve features follow, then (with ``peer_obs=True``) each other agent's line-path
    distance and PV peak, scaled to [0, 1], in peer-score order (``static.obs_index`` names every position).
    ``state()`` concatenates all agents' observations.

    **Reward**: ``"money"``: the agent's money for the step (receipts − payments − fees − production cost −
    penalty, currency); ``"savings"``: its grid-only bill minus its bill (same terms). With ``grid_penalty > 0``
    the penalty (``grid_penalty`` × (overflow sum in % points + 100 × voltage excess in p.u.)) is shared among
    agents in proportion to their positive contribution to the violations (linear sensitivities).

    **Infos**: per agent: ``bill``, ``grid_only_bill``, ``p2p_sold_kwh``, ``p2p_bought_kwh``, ``grid_import_kwh``,
    ``grid_export_kwh``, ``fees``, ``penalty``, ``production_cost``, ``battery_kw``, ``soc``, ``clipped_actions``,
    ``nonfinite_actions``; and ``"market"`` (the same dict object for every agent): clearing price, volume, number
    of trades, blocked trades and volume, fees, welfare, welfare without trading, the optimum and efficiency, and
    ``optimum`` naming which one: ``"step"`` (``compute_optimum="step"`` or ``True``: each interval's optimum
    given the positions played, per-step efficiency) or ``"episode"`` (the optimum of the whole episode with
    perfect foresight, solved at reset: ``welfare_optimum`` is its schedule's welfare in this step,
    ``episode_welfare_optimum`` / ``episode_reference_welfare`` its total and the policy-independent reference,
    and ``episode_efficiency`` is set at the last step); ``episode_welfare`` (welfare so far); money and energy
    balance residuals, grid KPIs; with several platforms or priced coordination, ``"platforms"``
    (:func:`platform_infos`). Values that are undefined in a step (no clearing price, no optimum computed, no
    possible gain, a failed power flow) are ``None``.

    **Platform operators as agents** (``coordination="predictive", predictor="agents"``): one more agent per
    platform, ``operator_<platform name>``, after the prosumers in ``possible_agents``. Its action ``Box(-1, 1,
    (1,))`` is its prediction of the next step's upstream energy price, ``feed_in + (a + 1) / 2 · (retail −
    feed_in)``, which (with its platform's loss factor and network charge) becomes the import/export price its
    members face in the next step; it observes :data:`~p2p_gym.sim.multiscale.OPERATOR_FEATURES`
    (``Box(-10, 10, (8,))``) and is rewarded with its platform's welfare per member (members' money plus its own
    balance: what members paid it at its prices minus what it owed at the realised price). Its infos:
    ``operator_balance``, ``prediction``, ``clipped_actions``, ``nonfinite_actions``, ``market``. The two kinds of
    agents have different spaces; with ``pad_spaces=True`` every agent gets the prosumers' action space (an
    operator uses entry 0) and one observation space, zero-padded to the larger dimension plus a last column that
    is 1 for operators, as MARL libraries that share one space across agents need.

    Args:
        scenario: a scenario name or :class:`~p2p_gym.scenarios.Scenario`.
        *args: ``mechanism``, ``grid``, ``peer_selection``, ``episode_steps`` by position (PettingZoo style).
        render_mode: ``None``, ``"human"`` or ``"rgb_array"``.
        config: a :class:`~p2p_gym.sim.MarketConfig`; keyword options override its fields.
        **options: any field of :class:`~p2p_gym.sim.MarketConfig` (mechanism, grid, peer_selection, peer_k,
            episode_steps, grid_policy, block_threshold_pct, fee_per_kwh_km, grid_penalty, reward, k, preference,
            preference_per_km, compute_optimum, forecast_steps, book_stats, peer_obs, start_day, initial_soc,
            scenario_overrides; documented there).

    Raises:
        EnvConfigError: an invalid option (the message names the field, the value and the allowed range).

    **Version history**: v0 — first release (fixed positions: load, PV and the battery set-point are fixed before
    clearing, trades move money). v1 (:mod:`p2p_gym.envs.p2p_market_v1`, ``dispatch="committed"``) — orders are
    physical commitments of flexible assets (battery, EV charging, heat pump, flexible demand, PV curtailment,
    generators), the grid sees the injection after clearing and the DSO's rule; action entries 1 and 2 become
    the planned net injection within the flexibility range and the grid-fallback share; six observation
    features are appended (:data:`~p2p_gym.sim.stages.COMMITTED_FEATURES`); rewards include battery
    degradation and the utility of flexible demand.
    """

    metadata = {"name": "p2p_market_v0", "render_modes": ["human", "rgb_array"], "is_parallelizable": True}

    def __init__(
        self,
        scenario: Any = None,
        *args: Any,
        render_mode: str | None = None,
        config: MarketConfig | None = None,
        **options: Any,
    ) -> None:
        if len(args) == 5:  # the old positional render_mode (6th argument)
            *args, render_mode = args  # type: ignore[assignment]
        if render_mode is not None and render_mode not in ("human", "rgb_array"):
            raise EnvConfigError(
                f"render_mode: must be one of {[None, 'human', 'rgb_array']}, got {render_mode!r}"
            )
        self.static = make_static(scenario, args, options, config)
        self.config = self.static.config
        self.render_mode = render_mode
        self.operator_agents = list(self.static.operator_ids)
        self.possible_agents = list(self.static.agent_ids) + self.operator_agents
        self.agents: list[str] = []
        self.agent_name_mapping = {a: i for i, a in enumerate(self.possible_agents)}
        n, n_obs = self.static.n, self.static.n_obs
        self._pad = bool(self.operator_agents) and self.config.pad_spaces
        n_op_obs = len(OPERATOR_FEATURES)
        if self._pad:  # one space for all: zero-padded observations plus the operator flag column
            n_obs = max(n_obs, n_op_obs) + 1
        self._act_space = gymnasium.spaces.Box(-1.0, 1.0, (self.static.n_actions,), np.float32)
        self._obs_space = gymnasium.spaces.Box(-OBS_BOUND, OBS_BOUND, (n_obs,), np.float32)
        self._op_act_space = (
            self._act_space if self._pad else gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        )
        self._op_obs_space = (
            self._obs_space
            if self._pad
            else gymnasium.spaces.Box(-OBS_BOUND, OBS_BOUND, (n_op_obs,), np.float32)
        )
        dim = n * n_obs + len(self.operator_agents) * int(self._op_obs_space.shape[0])
        self._state_space = gymnasium.spaces.Box(-OBS_BOUND, OBS_BOUND, (dim,), np.float32)
        self.rng = np.random.default_rng()
        self._seeded = False
        # a placeholder state for the spaces (a fixed generator for forecast errors: no global RNG is touched)
        self.sim_state: SimState = initial_state(self.static, [0], [np.random.default_rng(0)])
        self.last_step: Outcome | None = None
        self._fig: Any = None

    # ------------------------------------------------------------------------------------------- properties
    @property
    def n(self) -> int:
        return self.static.n

    @property
    def dt(self) -> float:
        return self.static.dt

    @property
    def power_scale(self) -> np.ndarray:
        return self.static.power_scale

    @property
    def preference(self) -> np.ndarray | None:
        """float[N, N] β of the bilateral matching (None without preferences)."""
        return self.static.preference

    @property
    def grid(self) -> str:
        return self.config.grid

    @property
    def k(self) -> float:
        return self.config.k

    @property
    def last_outcome(self) -> StepOutcome | None:
        """What the last step produced (the book, its clearing, settlement, grid report), or None after reset."""
        return None if self.last_step is None else self.last_step.record(0)

    @property
    def t(self) -> int:
        """Index into the scenario of the current (next) step."""
        return int(self.sim_state.t[0])

    @property
    def steps_taken(self) -> int:
        """Steps taken in the current episode."""
        return int(self.sim_state.step[0])

    # ------------------------------------------------------------------------------------------- spaces
    @functools.cache  # noqa: B019 - spaces must be the same object on every call
    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._op_obs_space if agent in self.operator_agents else self._obs_space

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._op_act_space if agent in self.operator_agents else self._act_space

    @property
    def state_space(self) -> gymnasium.spaces.Box:
        return self._state_space

    # ------------------------------------------------------------------------------------------- API
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None or not self._seeded:
            self.rng = np.random.default_rng(seed)
            self._seeded = True
        day = (options or {}).get("start_day", self.config.start_day)
        self.sim_state = initial_state(self.static, [start_day(self.static, day, self.rng)], [self.rng])
        self.last_step = None
        self.agents = list(self.possible_agents)
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise EnvConfigError("step: the episode is over; call reset() first")
        ids, ops = self.static.agent_ids, self.operator_agents
        op_act = None
        if self._pad:
            joint = stack_actions(actions, self.possible_agents, self.static.n_actions)
            act, op_act = joint[: self.n], joint[self.n :, 0]
        else:
            act = stack_actions(actions, ids, self.static.n_actions)
            if ops:
                op_act = stack_actions(actions, ops, 1)[:, 0]
        self.sim_state, out = sim_step(
            self.static, self.sim_state, act[None], vectorised=False,
            operator_actions=None if op_act is None else op_act[None],
        )  # fmt: skip
        self.last_step = out
        done = self.steps_taken >= self.episode_steps
        rewards = dict(zip(ids, out.rewards[0].tolist()))
        infos = self._infos(out)
        if ops:
            assert (
                op_act is not None and out.operator_rewards is not None and out.operator_balance is not None
            )
            rewards.update(zip(ops, out.operator_rewards[0].tolist()))
            clipped = (~np.isfinite(op_act)) | (np.abs(np.nan_to_num(op_act)) > 1.0)
            market = infos[ids[0]]["market"]
            for k, a in enumerate(ops):
                infos[a] = {
                    "operator_balance": float(out.operator_balance[0, k]),
                    "prediction": float(self.sim_state.upstream_price[0, k]),
                    "clipped_actions": int(clipped[k]),
                    "nonfinite_actions": int(not np.isfinite(op_act[k])),
                    "market": market,
                }
        terminations = dict.fromkeys(self.possible_agents, False)
        truncations = dict.fromkeys(self.possible_agents, done)
        if done:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return self._observations(), rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        return np.concatenate([o.reshape(-1) for o in self._observations().values()])

    def render(self) -> Any:
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called without render_mode; pass render_mode='human' or 'rgb_array'"
            )
            return None
        from p2p_gym.envs.render import render_feeder

        return render_feeder(self)

    # ------------------------------------------------------------------------------------------- helpers
    def _observations(self) -> dict[str, np.ndarray]:
        m = observations(self.static, self.sim_state)
        if self._pad:
            m = joint_observations(self.static, self.sim_state, m)
        elif self.operator_agents:
            op = operator_observations(self.static, self.sim_state)[0]
            out = {a: m[0, i] for i, a in enumerate(self.static.agent_ids)}
            out.update({a: op[k] for k, a in enumerate(self.operator_agents)})
            return out
        return {a: m[0, i] for i, a in enumerate(self.possible_agents)}

    def _infos(self, out: Outcome) -> dict[str, dict[str, Any]]:
        market_info = market_infos(out, 0, self.config.compute_optimum, self.config.forecast != "perfect")
        sc = self.scenario
        soc = np.divide(
            self.sim_state.soc_kwh[0], sc.battery_kwh, out=np.zeros(self.n), where=self.static.has_battery
        )
        st = out.settlement
        columns = {
            "bill": out.bills[0],
            "grid_only_bill": out.grid_only_bills[0],
            "p2p_sold_kwh": st.p2p_sold_kwh[0],
            "p2p_bought_kwh": st.p2p_bought_kwh[0],
            "grid_import_kwh": st.grid_import_kwh[0],
            "grid_export_kwh": st.grid_export_kwh[0],
            "fees": out.fees[0],
            "penalty": out.penalty[0],
            "production_cost": out.production_cost[0],
            "battery_kw": out.battery_kw[0],
            "soc": soc,
            "clipped_actions": out.clipped_actions[0],
            "nonfinite_actions": out.nonfinite_actions[0],
            "flex_payment": out.flex_payment[0],
            "terminal_cost": out.terminal_cost[0],
            **{k: v[0] for k, v in out.device_infos().items()},
            **(
                {k: v[0] for k, v in out.uncertainty_infos().items()}
                if self.config.forecast != "perfect"
                else {}
            ),
        }
        keys = (*columns, "market")
        rows = zip(*(np.asarray(v).tolist() for v in columns.values()))
        return {a: dict(zip(keys, (*row, market_info))) for a, row in zip(self.static.agent_ids, rows)}


def start_day(static: Any, day: Any, rng: np.random.Generator) -> int:
    """The start day of an episode: ``day`` if given (checked against the scenario), else a draw of ``rng`` among
    the days of ``config.day_split``."""
    n_days = static.n_start_days
    if day is None:
        days = static.start_days
        return int(days[rng.integers(len(days))])
    if isinstance(day, (bool, np.bool_)) or not isinstance(day, (int, np.integer)) or not 0 <= day < n_days:
        raise EnvConfigError(f"start_day: must be an integer in [0, {n_days - 1}], got {day!r}")
    return int(day)


def market_infos(out: Outcome, b: int, optimum: str = "none", forecast: bool = False) -> dict[str, Any]:
    """The ``infos[agent]["market"]`` dict of book ``b`` (undefined values are ``None``); ``optimum`` is the
    config's ``compute_optimum``, reported so that every efficiency says which optimum it uses; ``forecast``:
    the agents act on forecasts, so the imbalance (and reserve) KPIs are reported."""
    grid = out.grid.report(b).as_dict() if out.grid is not None else None
    info = {
        "t": int(out.t[b]),
        "clearing_price": float(out.clearing_price[b]),
        "p2p_volume_kwh": float(out.p2p_volume_kwh[b]),
        "n_trades": None if out.n_trades is None else int(out.n_trades[b]),
        "blocked_trades": int(out.blocked_trades[b]),
        "blocked_kwh": float(out.blocked_kwh[b]),
        "fees_total": float(out.fees[b].sum()),
        "welfare": float(out.welfare[b]),
        "welfare_no_trade": float(out.welfare_no_trade[b]),
        "welfare_optimum": float(out.welfare_optimum[b]),
        "gains_from_trade": float(out.welfare[b] - out.welfare_no_trade[b]),
        "efficiency": float(out.efficiency[b]),
        "optimum": None if optimum == "none" else optimum,
        "episode_welfare": float(out.episode_welfare[b]),
        "episode_welfare_optimum": float(out.episode_welfare_optimum[b]),
        "episode_reference_welfare": float(out.episode_reference_welfare[b]),
        "episode_efficiency": float(out.episode_efficiency[b]),
        "money_balance": float(out.money_balance[b]),
        "energy_balance_kwh": float(out.energy_balance_kwh[b]),
        "grid": _nan_to_none(grid) if grid is not None else None,
        "penalty_total": float(out.penalty[b].sum()),
        "at_risk_lines": int(out.at_risk_lines[b]),
        "forbidden_pairs": int(out.forbidden_pairs[b]),
        "flex_market_status": None if out.flex_market is None else out.flex_market.status[b],
        "flex_market_cost": float(out.flex_payment[b].sum()),
        "flex_activated_kwh": float(out.flex_activated_kwh[b]),
        "market_operator_balance": (
            0.0 if out.market_operator_balance is None else float(out.market_operator_balance[b])
        ),
    }
    if out.platform_net_kwh is not None and (
        out.platform_net_kwh.shape[1] > 1 or out.upstream_prices is not None
    ):
        info["platforms"] = platform_infos(out, b)
    if forecast:
        info.update({k: float(v[b]) for k, v in out.uncertainty_kpis().items()})
    return _nan_to_none(info)


def platform_infos(out: Outcome, b: int) -> dict[str, Any]:
    """The two-level KPIs of book ``b`` (multi-platform scenarios or priced coordination): per platform (lists in
    platform order) the volume traded inside it, its net export, its transformer's loading, the import/export price
    its members faced and its operator's balance; system-wide the inter-platform volume, whether the operators'
    ADMM hit its iteration cap (the centralised LP's solution was used then), the MV lines' highest loading, the
    DSO's margin, the supplier bill and the realised substation price (undefined values None)."""

    def col(a: Any) -> list[Any] | None:
        return (
            None if a is None or a.shape[1] == 0 else [None if not np.isfinite(v) else float(v) for v in a[b]]
        )

    prices = out.upstream_prices
    return _nan_to_none(
        {
            "volume_kwh": col(out.platform_volume_kwh),
            "net_kwh": col(out.platform_net_kwh),
            "trafo_loading_pct": col(out.platform_trafo_loading_pct),
            "import_price": None if prices is None else col(prices[..., 0]),
            "export_price": None if prices is None else col(prices[..., 1]),
            "operator_balance": col(out.operator_balance),
            "inter_platform_kwh": float(out.inter_platform_kwh[b])
            if out.inter_platform_kwh is not None
            else None,
            "max_mv_line_loading_pct": (
                float(out.mv_line_loading_max_pct[b]) if out.mv_line_loading_max_pct is not None else None
            ),
            "negotiation_fallback": (
                bool(out.negotiation_fallback[b]) if out.negotiation_fallback is not None else None
            ),
            "dso_balance": float(out.dso_balance[b]) if out.dso_balance is not None else None,
            "supplier_payment": float(out.supplier_payment[b]) if out.supplier_payment is not None else None,
            "realised_upstream_price": (
                float(out.realised_upstream_price[b]) if out.realised_upstream_price is not None else None
            ),
        }
    )


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    """Undefined values are ``None`` in infos, so that infos compare equal between identical runs (NaN != NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
