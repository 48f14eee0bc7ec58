"""The vector environment: :func:`p2p_gym.sim.step` with B > 1, shaped like Gymnasium's vector API."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector.utils import batch_space

from p2p_gym.envs._build import SimEnvBase, make_static
from p2p_gym.envs.parallel import start_day
from p2p_gym.errors import EnvConfigError
from p2p_gym.sim import OBS_BOUND, MarketConfig, Outcome, SimState, initial_state, observations
from p2p_gym.sim import step as sim_step
from p2p_gym.sim.multiscale import OPERATOR_FEATURES, joint_observations

try:  # Gymnasium ≥ 1.1 names its autoreset modes
    from gymnasium.vector import AutoresetMode

    _SAME_STEP: Any = AutoresetMode.SAME_STEP
except ImportError:  # pragma: no cover - Gymnasium 1.0
    _SAME_STEP = "same-step"

#: Per-agent info arrays float[B, N] (or int[B, N]) of :meth:`BatchedMarketEnv.step`.
AGENT_INFOS: tuple[str, ...] = (
    "bill",
    "grid_only_bill",
    "p2p_sold_kwh",
    "p2p_bought_kwh",
    "grid_import_kwh",
    "grid_export_kwh",
    "fees",
    "penalty",
    "production_cost",
    "battery_kw",
    "soc",
    "clipped_actions",
    "nonfinite_actions",
)


class BatchedMarketEnv(SimEnvBase):
    """B independent episodes of :class:`~p2p_gym.envs.P2PMarketEnv` stepped together on [B, N, ...] arrays.

    The step is :func:`p2p_gym.sim.step` with a batch of B (the plain env runs it with B = 1): every option of
    :class:`~p2p_gym.sim.MarketConfig` works. The uniform auction and the community rules clear all B books with
    one set of numpy calls when no rule needs the individual trades (``grid_policy="report"``), the linear grid
    check and the penalty are one matrix product for the batch; other mechanisms, the AC power flow and the
    trade-level DSO rules loop over the books. Sub-episode ``b`` of ``reset(seed)`` is the plain env's episode of
    ``reset(seed=seed + b)``: same start day, same arithmetic.

    The API follows Gymnasium's ``VectorEnv`` for a multi-agent sub-environment (agents in ``possible_agents``
    order):

    * ``num_envs`` = B; ``single_observation_space`` = ``Box(-10, 10, (N, obs_dim))`` and ``single_action_space``
      = ``Box(-1, 1, (N, act_dim))`` (one episode's joint observation and action); ``observation_space`` /
      ``action_space`` are their batched forms [B, N, ...]; ``agent_observation_space`` /
      ``agent_action_space`` are the per-agent spaces of the plain env.
    * ``reset(seed=None, options=None)`` → ``(obs float32[B, N, obs_dim], infos)``; ``options={"start_day": d}``
      (an int or int[B]) fixes the start days. Without a seed, every sub-episode continues its own generator.
    * ``step(actions float[B, N, act_dim])`` → ``(obs, rewards float[B, N], terminations bool[B],
      truncations bool[B], infos)``. Episodes have ``episode_steps`` steps, so they end together (truncation).
    * **Autoreset** (``auto_reset=True``, Gymnasium's same-step mode): when the episodes end, every sub-episode is
      reset with its own generator; the returned observations start the new episodes and ``infos["final_obs"]``
      / ``infos["final_info"]`` hold the last ones. Without it, ``step`` after the end raises.

    ``infos`` is a dict of arrays: per sub-episode [B]: ``t``, ``clearing_price`` (nan without a price),
    ``p2p_volume_kwh``, ``n_trades`` (only when the books were cleared one by one), ``blocked_trades``,
    ``blocked_kwh``, ``fees_total``, ``welfare``, ``welfare_no_trade``, ``welfare_optimum`` and ``efficiency`` (nan
    unless computed), ``episode_welfare``, ``episode_welfare_optimum``, ``episode_reference_welfare`` and
    ``episode_efficiency`` (with ``compute_optimum="episode"``, as in the plain env), ``gains_from_trade``,
    ``money_balance``, ``energy_balance_kwh``, ``penalty_total``, ``market_operator_balance`` (what the market
    operator kept of the trades; negative = a deficit, e.g. VCG); with ``forecast`` other than ``perfect`` the
    imbalance and reserve KPIs of :meth:`p2p_gym.sim.Outcome.uncertainty_kpis` and, per agent, those of
    :meth:`~p2p_gym.sim.Outcome.uncertainty_infos`; per agent
    [B, N]: :data:`AGENT_INFOS`; with a grid model ``grid``, a dict of KPI arrays [B]
    (:meth:`p2p_gym.grid.GridBatch.kpis`); with several platforms or priced coordination ``platforms``, a dict of
    the two-level KPIs (arrays [B] or [B, P], as :func:`p2p_gym.envs.parallel.platform_infos` describes).

    **Platform operators as agents** (``coordination="predictive", predictor="agents"``, needs
    ``pad_spaces=True``): the P operators follow the N prosumers in ``possible_agents`` and along the agent axis of
    every array (N + P rows); observations are zero-padded to the larger of the prosumers' and operators'
    dimensions plus a last column that is 1 for operators; an operator's action is entry 0 of its row (the others
    are ignored); its reward is its platform's welfare per member. ``infos["operator_clipped_actions"]`` bool[B, P]
    and ``infos["operator_prediction"]`` float[B, P] (the next step's price); the per-agent infos stay [B, N].

    Args:
        scenario: a scenario name or :class:`~p2p_gym.scenarios.Scenario`.
        n_envs: B ≥ 1.
        auto_reset: reset all sub-episodes when they end (see above).
        render_mode: ``None``, ``"rgb_array"`` (``render()`` returns one frame per sub-episode) or ``"human"``.
        config: a :class:`~p2p_gym.sim.MarketConfig`; keyword options override its fields.
        **options: any field of :class:`~p2p_gym.sim.MarketConfig`.

    Raises:
        EnvConfigError: an invalid option (names the field, the value and the allowed range).
    """

    metadata = {"autoreset_mode": _SAME_STEP, "render_modes": ["human", "rgb_array"]}

    def __init__(
        self,
        scenario: Any = None,
        n_envs: int = 8,
        *,
        auto_reset: bool = False,
        render_mode: str | None = None,
        config: MarketConfig | None = None,
        **options: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise EnvConfigError(
                f"render_mode: must be one of {[None, *self.metadata['render_modes']]}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self._fig: Any = None
        if (
            isinstance(n_envs, (bool, np.bool_))
            or not isinstance(n_envs, (int, np.integer))
            or not 1 <= n_envs
        ):
            raise EnvConfigError(f"n_envs: must be an integer ≥ 1, got {n_envs!r}")
        self.static = make_static(scenario, (), options, config)
        self.config = self.static.config
        self.num_envs = self.n_envs = int(n_envs)
        self.auto_reset = bool(auto_reset)
        self.operator_agents = list(self.static.operator_ids)
        if self.operator_agents and not self.config.pad_spaces:
            raise EnvConfigError(
                "pad_spaces: the batched env holds all agents in one array, so with platform operators as agents "
                "(predictor='agents') it needs pad_spaces=True"
            )
        self.possible_agents = list(self.static.agent_ids) + self.operator_agents
        self.n = self.static.n + len(self.operator_agents)
        self.n_actions = self.static.n_actions
        self.n_obs = self.static.n_obs
        if self.operator_agents:
            self.n_obs = max(self.n_obs, len(OPERATOR_FEATURES)) + 1
        self.agent_action_space = gymnasium.spaces.Box(-1.0, 1.0, (self.n_actions,), np.float32)
        self.agent_observation_space = gymnasium.spaces.Box(-OBS_BOUND, OBS_BOUND, (self.n_obs,), np.float32)
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (self.n, self.n_actions), np.float32)
        self.single_observation_space = gymnasium.spaces.Box(
            -OBS_BOUND, OBS_BOUND, (self.n, self.n_obs), np.float32
        )
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.rngs: list[np.random.Generator] = []
        self.sim_state: SimState = (
            initial_state(  # a placeholder for the spaces (fixed generators, no global RNG)
                self.static,
                np.zeros(self.num_envs, dtype=np.int64),
                [np.random.default_rng(0)] * self.num_envs,
            )
        )
        self.last_step: Outcome | None = None
        self._done = True

    @property
    def t(self) -> np.ndarray:
        """int[B] index into the scenario of each sub-episode's current (next) step."""
        return self.sim_state.t

    @property
    def done(self) -> bool:
        """True when the current episodes are over (before the first reset too): call :meth:`reset`."""
        return self._done

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start B new episodes; returns (observations float32[B, N, obs_dim], {}).

        Args:
            seed: sub-episode ``b`` gets ``numpy.random.default_rng(seed + b)`` (as ``P2PMarketEnv.reset(seed=
                seed + b)``); ``None`` continues the existing generators (fresh unseeded ones the first time).
            options: ``{"start_day": d}`` fixes the start day of every sub-episode (an int) or of each (int[B]).
        """
        b = self.num_envs
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise EnvConfigError(f"seed: must be an integer ≥ 0, got {seed!r}")
            self.rngs = [np.random.default_rng(int(seed) + i) for i in range(b)]
        elif not self.rngs:
            self.rngs = [np.random.default_rng() for _ in range(b)]
        day = (options or {}).get("start_day", self.config.start_day)
        if day is None:
            days = [start_day(self.static, None, r) for r in self.rngs]
        else:
            arr = np.asarray(day)
            if arr.ndim > 1 or (arr.ndim == 1 and len(arr) != b):
                raise EnvConfigError(f"start_day: expected an int or int[{b}], got shape {arr.shape}")
            days = [
                start_day(self.static, d.item(), r) for d, r in zip(np.broadcast_to(arr, (b,)), self.rngs)
            ]
        self.sim_state = initial_state(self.static, days, self.rngs)
        self.last_step = None
        self._done = False
        return self._observations(), {}

    def _observations(self) -> np.ndarray:
        obs = observations(self.static, self.sim_state)
        return joint_observations(self.static, self.sim_state, obs) if self.operator_agents else obs

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One market interval of every sub-episode (see the class docstring for the returned arrays).

        Args:
            actions: float[B, N, act_dim] (as the plain env's actions); non-finite entries become 0 and
                out-of-range ones are clipped, both counted in infos.

        Raises:
            EnvConfigError: wrong shape or non-numeric actions, or the episodes are over (without ``auto_reset``).
        """
        if self._done:
            raise EnvConfigError("step: the episode is over; call reset() first")
        b, n = self.num_envs, self.n
        try:
            raw = np.asarray(actions, dtype=np.float64)
        except (TypeError, ValueError):
            raise EnvConfigError(
                f"actions: expected float[{b}, {n}, {self.n_actions}], got {actions!r:.80}"
            ) from None
        if raw.shape != (b, n, self.n_actions):
            raise EnvConfigError(f"actions: expected shape ({b}, {n}, {self.n_actions}), got {raw.shape}")
        op_act = None
        if self.operator_agents:
            raw, op_act = raw[:, : self.static.n], raw[:, self.static.n :, 0]
        self.sim_state, out = sim_step(self.static, self.sim_state, raw, operator_actions=op_act)
        self.last_step = out
        infos = self._infos(out)
        obs = self._observations()
        rewards = out.rewards
        if op_act is not None:
            assert out.operator_rewards is not None
            rewards = np.concatenate([rewards, out.operator_rewards], axis=1)
            infos["operator_clipped_actions"] = (~np.isfinite(op_act)) | (np.abs(np.nan_to_num(op_act)) > 1.0)
            infos["operator_prediction"] = self.sim_state.upstream_price
        done = bool(self.sim_state.step[0] >= self.episode_steps)
        truncations = np.full(b, done)
        if done:
            self._done = True
            if self.auto_reset:
                infos["final_obs"] = obs
                infos["final_info"] = dict(infos)
                obs, _ = self.reset()
        return obs, rewards, np.zeros(b, dtype=bool), truncations, infos

    def render(self) -> Any:
        """``rgb_array``: a tuple of one RGB frame (uint8[H, W, 3]) per sub-episode, as Gymnasium's vector envs
        return; ``human``: draws sub-episode 0 in a window. The feeder, line loading, net injections and the
        last step's trades (:func:`p2p_gym.envs.render.draw_feeder`)."""
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called without render_mode; pass render_mode='human' or 'rgb_array'"
            )
            return None
        from p2p_gym.envs.render import render_batch

        return render_batch(self)

    def _infos(self, out: Outcome) -> dict[str, Any]:
        st = out.settlement
        sc = self.scenario
        soc = np.divide(
            self.sim_state.soc_kwh,
            sc.battery_kwh,
            out=np.zeros_like(self.sim_state.soc_kwh),
            where=self.static.has_battery,
        )
        infos: dict[str, Any] = {
            "t": out.t,
            "clearing_price": out.clearing_price,
            "p2p_volume_kwh": out.p2p_volume_kwh,
            "blocked_trades": out.blocked_trades,
            "blocked_kwh": out.blocked_kwh,
            "fees_total": out.fees.sum(axis=1),
            "welfare": out.welfare,
            "welfare_no_trade": out.welfare_no_trade,
            "welfare_optimum": out.welfare_optimum,
            "efficiency": out.efficiency,
            "episode_welfare": out.episode_welfare,
            "episode_welfare_optimum": out.episode_welfare_optimum,
            "episode_reference_welfare": out.episode_reference_welfare,
            "episode_efficiency": out.episode_efficiency,
            "gains_from_trade": out.gains_from_trade,
            "money_balance": out.money_balance,
            "energy_balance_kwh": out.energy_balance_kwh,
            "penalty_total": out.penalty.sum(axis=1),
            "bill": out.bills,
            "grid_only_bill": out.grid_only_bills,
            "p2p_sold_kwh": st.p2p_sold_kwh,
            "p2p_bought_kwh": st.p2p_bought_kwh,
            "grid_import_kwh": st.grid_import_kwh,
            "grid_export_kwh": st.grid_export_kwh,
            "fees": out.fees,
            "penalty": out.penalty,
            "production_cost": out.production_cost,
            "battery_kw": out.battery_kw,
            "soc": soc,
            "clipped_actions": out.clipped_actions,
            "nonfinite_actions": out.nonfinite_actions,
        }
        infos["market_operator_balance"] = out.market_operator_balance
        infos.update(out.device_infos())
        if self.config.forecast != "perfect":
            infos.update(out.uncertainty_infos())
            infos.update(out.uncertainty_kpis())
        infos.update(at_risk_lines=out.at_risk_lines, forbidden_pairs=out.forbidden_pairs,
                     flex_market_cost=out.flex_payment.sum(axis=1), flex_activated_kwh=out.flex_activated_kwh,
                     flex_payment=out.flex_payment, terminal_cost=out.terminal_cost)  # fmt: skip
        if out.n_trades is not None:
            infos["n_trades"] = out.n_trades
        if out.grid is not None:
            infos["grid"] = out.grid.kpis()
        if out.platform_net_kwh is not None and (
            out.platform_net_kwh.shape[1] > 1 or out.upstream_prices is not None
        ):
            infos["platforms"] = {
                "volume_kwh": out.platform_volume_kwh,
                "net_kwh": out.platform_net_kwh,
                "trafo_loading_pct": out.platform_trafo_loading_pct,
                "inter_platform_kwh": out.inter_platform_kwh,
                "negotiation_fallback": out.negotiation_fallback,
                "max_mv_line_loading_pct": out.mv_line_loading_max_pct,
                "upstream_prices": out.upstream_prices,
                "operator_balance": out.operator_balance,
                "dso_balance": out.dso_balance,
                "supplier_payment": out.supplier_payment,
                "realised_upstream_price": out.realised_upstream_price,
            }
        return infos
