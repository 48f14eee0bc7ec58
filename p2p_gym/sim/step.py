"""One market interval of B simulations: ``step(static, state, actions[B, N, A]) -> (state, Outcome)``.

The step chains the stages of :mod:`p2p_gym.sim.stages`:

1. **decode** the actions (non-finite → 0, clip to [-1, 1], both counted);
2. **assets**: battery dispatch within state of charge and power limits;
3. **orders**: each agent's limit price and quantity (and accepted peers);
4. **clear** the B books (vectorised over the batch where the mechanism allows);
5. **injections**: physical net power (generators produce what they sold);
6. **grid check** of the injections (linear model or AC power flow);
7. **grid policy**: the DSO's block rule (the blocked generation is not produced; the grid is checked again),
   network fees, and the grid-violation penalty;
8. **delivery** (``forecast`` other than ``perfect``): the realisation differs from the committed position by
   the forecast errors; the reserve market (``reserve=True``) clears and is activated against the system's
   imbalance; the grid is checked on the realisation (:mod:`p2p_gym.sim.uncertainty`);
9. **settle** the committed positions' residuals with the grid at retail / feed-in, the deviations at the
   dual imbalance prices, reserve capacity and activated energy;
10. **rewards**, welfare, the optimum and efficiency (per step against the step optimum, or per episode against
   the optimum of the whole episode solved at its start);
11. the next state and its **observations**.

Money balances (Σ bills = grid balance + fees + imbalance and activation payments + the market operator's
margin) and energy balances (Σ injections = exports − imports + deviations + activated reserve) every step; both
residuals are in the :class:`Outcome`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from p2p_gym import market
from p2p_gym.errors import EnvConfigError
from p2p_gym.sim import assets, stages, uncertainty
from p2p_gym.sim.state import SimState

__all__ = ["Outcome", "StepOutcome", "initial_state", "step"]


@dataclass(frozen=True)
class StepOutcome:
    """One book of an :class:`Outcome` (what one market interval of one simulation produced)."""

    t: int
    orders: market.Orders | None  # the book (None on the vectorised path)
    result: market.ClearingResult | None  # clearing after the DSO rules (None on the vectorised path)
    blocked_trades: int  # trades removed by the DSO (grid_policy="block")
    blocked_kwh: float  # their volume
    settlement: market.Settlement
    bills: np.ndarray  # float[N] money paid this step (positive = pays), fees included
    grid_only_bills: np.ndarray  # float[N]
    production_cost: np.ndarray  # float[N] cost of dispatchable generation
    penalty: np.ndarray  # float[N] grid-violation penalty
    injection_kw: np.ndarray  # float[N] physical net injection (positive = export)
    report: Any  # GridReport | None
    welfare: float
    welfare_no_trade: float
    welfare_optimum: float  # nan unless computed


@dataclass(frozen=True)
class Outcome:
    """Everything one market interval of B simulations produced (batch axis first; currency, kWh, kW)."""

    t: np.ndarray  # int[B] scenario step
    battery_kw: np.ndarray  # float[B, N] battery power (positive = discharge)
    clipped_actions: np.ndarray  # int[B, N] action entries clipped or non-finite
    nonfinite_actions: np.ndarray  # int[B, N]
    is_buy: np.ndarray  # bool[B, N] side of each agent's order
    order_price: np.ndarray  # float[B, N] currency/kWh
    order_kwh: np.ndarray  # float[B, N] (0 = no order)
    clearing_price: np.ndarray  # float[B] (nan without a price)
    p2p_volume_kwh: np.ndarray  # float[B]
    n_trades: np.ndarray | None  # int[B] (None on the vectorised path, which has no individual trades)
    blocked_trades: np.ndarray  # int[B]
    blocked_kwh: np.ndarray  # float[B]
    settlement: market.Settlement  # arrays float[B, N]
    fees: np.ndarray  # float[B, N] network fees (included in bills)
    bills: np.ndarray  # float[B, N]
    grid_only_bills: np.ndarray  # float[B, N]
    production_cost: np.ndarray  # float[B, N]
    private_cost: (
        np.ndarray
    )  # float[B, N] battery degradation − flexible-demand utility (dispatch="committed") + terminal_cost
    terminal_cost: (
        np.ndarray
    )  # float[B, N] value of the stores' change at the episode's end (terminal_value="valued")
    devices: Any  # p2p_gym.sim.assets.Dispatch of the devices (dispatch="committed"), else None
    at_risk_lines: (
        np.ndarray
    )  # int[B] lines at risk in the forecast no-P2P state (grid_policy preblock/redirect)
    forbidden_pairs: np.ndarray  # int[B] seller→buyer pairs the DSO forbade before the market (preblock)
    flex_market: (
        Any  # p2p_gym.grid.FlexMarketBatch of the local flexibility market (flex_market=True), else None
    )
    flex_payment: np.ndarray  # float[B, N] what the DSO paid each agent for activated flexibility (currency)
    flex_activated_kwh: np.ndarray  # float[B] up + down flexibility activated by the DSO (kWh)
    penalty: np.ndarray  # float[B, N]
    injection_kw: np.ndarray  # float[B, N]
    grid: Any  # GridBatch | None
    welfare: np.ndarray  # float[B]
    welfare_no_trade: np.ndarray  # float[B]
    welfare_optimum: np.ndarray  # float[B]: the step optimum, or the episode optimum's welfare in this step
    efficiency: np.ndarray  # float[B] per-step efficiency (compute_optimum="step"; nan when undefined)
    episode_welfare: np.ndarray  # float[B] welfare summed over the episode so far
    episode_welfare_optimum: np.ndarray  # float[B] the episode optimum (nan unless compute_optimum="episode")
    episode_reference_welfare: np.ndarray  # float[B] no trade, idle batteries (nan unless "episode")
    episode_efficiency: np.ndarray  # float[B] at the episode's last step with "episode", else nan
    rewards: np.ndarray  # float[B, N]
    money_balance: np.ndarray  # float[B] residual Σ bills − grid balance − fees (0 up to rounding)
    energy_balance_kwh: np.ndarray  # float[B] residual Σ injection · dt − (exports − imports)
    books: tuple[market.Orders, ...] | None
    results: tuple[market.ClearingResult, ...] | None
    # multi-platform scenarios and coordination (p2p_gym.sim.multiscale)
    #: float[B, P] kWh traded between agents of the same platform
    platform_volume_kwh: np.ndarray | None = None
    #: float[B] kWh traded between agents of different platforms
    inter_platform_kwh: np.ndarray | None = None
    #: float[B, P] Σ members' injection · dt (+ = the platform exports)
    platform_net_kwh: np.ndarray | None = None
    #: float[B, P] loading of each platform's transformer (%, nan without one or without a grid check)
    platform_trafo_loading_pct: np.ndarray | None = None
    #: float[B] highest loading of the lines above 1 kV (%)
    mv_line_loading_max_pct: np.ndarray | None = None
    #: float[B, P, 2] import, export price per platform (pricing, predictive)
    upstream_prices: np.ndarray | None = None
    #: float[B] realised substation price (predictive; else nan)
    realised_upstream_price: np.ndarray | None = None
    #: float[B, P] the operators' margin (predictive; float[B, 0] otherwise)
    operator_balance: np.ndarray | None = None
    #: float[B] the DSO's margin as intermediary (pricing, predictive; else 0)
    dso_balance: np.ndarray | None = None
    #: float[B] what the system pays the supplier, net of its exports
    supplier_payment: np.ndarray | None = None
    #: bool[B] the operators' ADMM hit its iteration cap and the centralised LP's solution was used (negotiation)
    negotiation_fallback: np.ndarray | None = None
    #: float[B, P] each platform's welfare per member: the operators' rewards (pricing, predictive)
    operator_rewards: np.ndarray | None = None
    # forecast errors and reserve (p2p_gym.sim.uncertainty)
    #: float[B, N] the net injection the agents committed to (planned under their forecast; kW)
    committed_kw: np.ndarray | None = None
    #: float[B, N] each agent's own deviation (realised − committed − activated reserve)·Δt (kWh, + = long)
    imbalance_kwh: np.ndarray | None = None
    #: float[B, N] its dual-price settlement (currency, + = the agent pays; included in bills)
    imbalance_cost: np.ndarray | None = None
    #: float[B, N] reserve activated (kW, + = more injection)
    activated_kw: np.ndarray | None = None
    #: float[B] Σ activated reserve · Δt (kWh, + = up)
    activated_kwh: np.ndarray | None = None
    #: float[B, N] what the activated reserve earned (currency, + = received; included in bills)
    activation_payment: np.ndarray | None = None
    #: the reserve capacity market (p2p_gym.sim.uncertainty.ReserveClearing; reserve=True), else None
    reserve: Any = None
    #: float[B] what the market operator keeps of the trades, Σ paid − Σ received (0 when buyers pay their
    #: sellers; negative = a deficit it covers, e.g. VCG)
    market_operator_balance: np.ndarray | None = None

    def uncertainty_infos(self) -> dict[str, np.ndarray]:
        """Per-agent deviation, imbalance and reserve terms [B, N] (currency, kWh, kW; forecast other than
        ``perfect``): ``imbalance_kwh`` (+ = long), ``imbalance_cost`` (+ = pays), ``activated_kw``,
        ``activation_payment`` (+ = received) and, with ``reserve=True``, ``reserve_up_kw``/``reserve_down_kw``
        (accepted capacity), ``reserve_payment`` (capacity income) and ``reserve_charge`` (share of the cost)."""
        assert self.imbalance_kwh is not None and self.imbalance_cost is not None
        assert self.activated_kw is not None and self.activation_payment is not None
        out = {"imbalance_kwh": self.imbalance_kwh, "imbalance_cost": self.imbalance_cost,
               "activated_kw": self.activated_kw, "activation_payment": self.activation_payment}  # fmt: skip
        rc = self.reserve
        if rc is not None:
            out.update(reserve_up_kw=rc.up_kw, reserve_down_kw=rc.down_kw, reserve_payment=rc.payment,
                       reserve_charge=rc.charge)  # fmt: skip
        return out

    def uncertainty_kpis(self) -> dict[str, np.ndarray]:
        """System imbalance and reserve KPIs float[B]: ``imbalance_short_kwh`` and ``imbalance_long_kwh`` (Σ of
        the agents' own deviations each way), ``imbalance_cost_total``, ``system_imbalance_kwh`` (Σ realised −
        committed, before activation), ``residual_imbalance_kwh`` (after activation: what the grid balances) and,
        with reserve, ``reserve_requirement_kw``, ``reserve_price_up``/``_down``, ``reserve_shortfall_up_kw``/
        ``_down_kw``, ``reserve_cost_total`` and ``reserve_activated_kwh``."""
        assert self.imbalance_kwh is not None and self.imbalance_cost is not None
        dev = self.imbalance_kwh
        out = {
            "imbalance_short_kwh": np.maximum(-dev, 0.0).sum(axis=1),
            "imbalance_long_kwh": np.maximum(dev, 0.0).sum(axis=1),
            "imbalance_cost_total": self.imbalance_cost.sum(axis=1),
            "system_imbalance_kwh": dev.sum(axis=1),
            "residual_imbalance_kwh": dev.sum(axis=1) + self.activated_kwh,
        }
        rc = self.reserve
        if rc is not None:
            out.update(
                reserve_requirement_kw=rc.requirement_kw,
                reserve_price_up=rc.price[:, 0],
                reserve_price_down=rc.price[:, 1],
                reserve_shortfall_up_kw=rc.shortfall_kw[:, 0],
                reserve_shortfall_down_kw=rc.shortfall_kw[:, 1],
                reserve_cost_total=rc.payment.sum(axis=1),
                reserve_activated_kwh=self.activated_kwh,
            )
        return out

    def device_infos(self) -> dict[str, np.ndarray]:
        """Per-agent device set-points and private terms [B, N] (``dispatch="committed"``; empty otherwise):
        ``ev_kw``, ``hp_kw``, ``flex_kw`` (flexible demand), ``pv_used_kw`` (after curtailment), ``utility`` and
        ``battery_cost`` (currency)."""
        d = self.devices
        if d is None:
            return {}
        return {"ev_kw": d.ev_kw, "hp_kw": d.hp_kw, "flex_kw": d.flex_kw, "pv_used_kw": d.pv_kw,
                "utility": d.utility, "battery_cost": d.battery_cost}  # fmt: skip

    @property
    def gains_from_trade(self) -> np.ndarray:
        """float[B]: welfare − welfare without trading."""
        return self.welfare - self.welfare_no_trade

    def record(self, b: int = 0) -> StepOutcome:
        """Book ``b`` as a :class:`StepOutcome`."""
        st = self.settlement
        row = market.Settlement(*(np.asarray(getattr(st, f))[b] for f in st.__dataclass_fields__))
        return StepOutcome(
            t=int(self.t[b]),
            orders=None if self.books is None else self.books[b],
            result=None if self.results is None else self.results[b],
            blocked_trades=int(self.blocked_trades[b]),
            blocked_kwh=float(self.blocked_kwh[b]),
            settlement=row,
            bills=self.bills[b],
            grid_only_bills=self.grid_only_bills[b],
            production_cost=self.production_cost[b],
            penalty=self.penalty[b],
            injection_kw=self.injection_kw[b],
            report=None if self.grid is None else self.grid.report(b),
            welfare=float(self.welfare[b]),
            welfare_no_trade=float(self.welfare_no_trade[b]),
            welfare_optimum=float(self.welfare_optimum[b]),
        )


def initial_state(static: Any, days: Any, rngs: Any = None) -> SimState:
    """The state at the start of episodes beginning on ``days`` (int[B], days of the scenario).

    With ``compute_optimum="episode"`` the optimum of each episode (perfect foresight over its
    ``episode_steps`` steps from the same initial state of charge, :func:`p2p_gym.optim.episode_optimum`) is solved
    here, once per episode. With ``forecast="day_ahead"`` each episode's forecast errors are drawn here from
    ``rngs`` (one ``numpy.random.Generator`` per simulation, required then; the envs pass their own)."""
    sc, cfg = static.scenario, static.config
    t0 = np.asarray(days, dtype=np.int64).reshape(-1) * sc.steps_per_day
    b = len(t0)
    soc = static.initial_soc_kwh
    per_step = np.zeros((b, 0))
    total = reference = np.full(b, np.nan)
    if cfg.compute_optimum == "episode":
        from p2p_gym.optim.episode import episode_optimum

        opts = [
            episode_optimum(sc, int(t), cfg.episode_steps, soc, terminal_value=cfg.terminal_value) for t in t0
        ]
        per_step = np.stack([o.welfare_per_step for o in opts])
        total = np.array([o.welfare for o in opts])
        reference = np.array([o.reference_welfare for o in opts])
    load_fc, pv_fc = uncertainty.draw_forecasts(static, t0, rngs)
    ev_fc = uncertainty.draw_ev_arrivals(static, t0, rngs)
    upstream = np.zeros((b, 0))
    if cfg.coordination == "predictive":  # every predictor starts from the expected dispatch's price
        upstream = np.repeat(static.pricing.expected(t0)[0][:, None], sc.n_platforms, axis=1)
    return SimState(
        t0=t0,
        step=np.zeros(b, dtype=np.int64),
        soc_kwh=np.broadcast_to(soc, (b, static.n)).copy(),
        last_price=0.5 * (sc.retail_price[t0] + sc.feed_in_price[t0]),
        last_traded=np.zeros((b, static.n)),
        last_book=np.zeros((b, 3)),
        hp_dev_kwh=np.zeros((b, static.n)),
        ev_session=np.full((b, static.n), -1, dtype=np.int32),
        ev_kwh=np.zeros((b, static.n)),
        welfare_sum=np.zeros(b),
        optimum_per_step=per_step,
        optimum_welfare=total,
        reference_welfare=reference,
        upstream_price=upstream,
        last_upstream_price=np.full(b, np.nan),
        load_fc_kw=load_fc,
        pv_fc_kw=pv_fc,
        last_reserve_price=np.zeros((b, 2)),
        last_imbalance_kwh=np.zeros((b, static.n)),
        ev_fc_active=ev_fc,
    )


def step(
    static: Any,
    state: SimState,
    actions: np.ndarray,
    vectorised: bool | None = None,
    operator_actions: np.ndarray | None = None,
) -> tuple[SimState, Outcome]:
    """Advance B simulations by one market interval.

    Args:
        static: the constants (:func:`p2p_gym.sim.build`).
        state: the current state (B simulations).
        actions: float[B, N, A] raw actions (any values; decoded and counted here).
        vectorised: clear with the batch form of the mechanism (no individual trades). Default: when B > 1, the
            mechanism has one (uniform, community rules) and no later stage needs the trades.
        operator_actions: float[B, P] the platform operators' actions (``coordination="predictive"`` with
            ``predictor="agents"``; their upstream price prediction for the next step, in [−1, 1]).

    Returns:
        The next state and the :class:`Outcome`.
    """
    cfg, sc, n, dt = static.config, static.scenario, static.n, static.dt
    b = state.batch_size
    if vectorised is None:
        vectorised = b > 1 and cfg.mechanism in stages.VECTORISED_MECHANISMS and not stages.needs_trades(cfg)
    t = state.t
    retail, feed_in = sc.retail_price[t], sc.feed_in_price[t]
    priced = static.pricing is not None
    upstream_prices = loss_factor = None
    if (
        priced
    ):  # each platform's import/export price (pricing, predictive) replaces the tariff for its members
        from p2p_gym.sim import multiscale

        if cfg.predictor == "agents" and cfg.coordination == "predictive":
            if operator_actions is None or np.shape(operator_actions) != (b, sc.n_platforms):
                raise EnvConfigError(
                    f"operator_actions: predictor='agents' needs float[{b}, {sc.n_platforms}] (one action per "
                    f"platform operator), got {None if operator_actions is None else np.shape(operator_actions)}"
                )
        r_agent, f_agent, upstream_prices, loss_factor = multiscale.tariffs(static, state)
    else:
        r_agent, f_agent = retail[:, None], feed_in[:, None]
    # decode → assets → orders, on what the agents expect (the realisation with forecast="perfect")
    act, n_clipped, n_nonfinite = stages.decode(actions)
    load_fc, pv_fc = (
        uncertainty.forecast_kw(static, state) if cfg.forecast != "perfect" else (sc.load_kw[t], sc.pv_kw[t])
    )
    committed = cfg.dispatch == "committed"
    flex = plan = None
    if committed:  # orders are physical commitments of the flexible assets (p2p_gym.sim.assets)
        flex = assets.flex_range(static, state)
        x = assets.target(flex, act[..., 1])
        plan = assets.plan(flex, x, (act[..., 2] + 1.0) * 0.5)
        price = f_agent + (act[..., 0] + 1.0) * 0.5 * (r_agent - f_agent)
        qty = np.abs(x) * dt
        qty = np.where(qty > stages.MIN_ORDER_KWH, qty, 0.0)
        is_buy = x < 0
        soc = state.soc_kwh  # advanced after dispatch
        battery_kw = np.zeros((b, n))
        net_kw = flex.n0
    else:
        battery_kw, soc = stages.battery_dispatch(
            act[..., 2],
            state.soc_kwh,
            sc.battery_kw,
            sc.battery_kwh,
            sc.battery_efficiency,
            dt,
            static.has_battery,
        )
        net_kw = pv_fc - load_fc + battery_kw
        price, qty, is_buy = stages.order_book(
            act, net_kw, r_agent, f_agent, static.is_gen, sc.gen_max_kw, dt
        )
    accept = stages.partners(act[..., 3:], static.others, cfg.peer_k) if cfg.peer_selection else None
    # the DSO's pre-market rules on the forecast no-P2P state (inflexible positions)
    preference = static.clearing_preference
    at_risk, forbidden = np.zeros(b, dtype=np.int64), np.zeros(b, dtype=np.int64)
    if cfg.grid_policy in ("preblock", "redirect"):
        forecast_kw = flex.n0 if flex is not None else pv_fc - load_fc  # the no-P2P state
        accept, preference, at_risk, forbidden = stages.pre_market(static, forecast_kw, is_buy, accept, t)
    # clear → injections → grid check
    r_clear, f_clear = (r_agent, f_agent) if priced else (retail, feed_in)  # [B, N] tariffs: per platform
    cleared = stages.clear(cfg, n, price, qty, is_buy, accept, preference, r_clear, f_clear, vectorised,
                           static.platform_members, t, static.premium)  # fmt: skip
    upstream = None
    if static.platform_fee is not None:  # the platform operators trade what their platforms left unmatched
        from p2p_gym.sim import multiscale

        cleared, upstream = multiscale.negotiate(static, cleared, price, qty, is_buy, t)

    def physical(cleared: stages.Cleared, ordered_kw: Any = 0.0) -> tuple[np.ndarray, Any]:
        """The injection after clearing (and the DSO's flexibility orders ``ordered_kw``) and the devices'
        dispatch (committed dispatch), else the fixed positions plus what generators sold."""
        if committed:
            assert flex is not None and plan is not None
            delta = assets.realised_delta(flex, plan, cleared.sold + cleared.bought, dt) + ordered_kw
            d = assets.dispatch(static, flex, delta)
            return d.injection_kw, d
        return stages.injections(net_kw, cleared.sold, static.is_gen, dt), None

    injection_kw, disp = physical(cleared)
    background = sc.background_kw[t] if sc.background_kw.shape[1] else None  # float[B, K] non-agent elements
    grid = static.grid_model.check_batch(injection_kw, background) if static.grid_model is not None else None
    # grid policy
    n_blocked, blocked_kwh = np.zeros(b, dtype=np.int64), np.zeros(b)
    if cfg.grid_policy == "block":
        cleared, n_blocked, blocked_kwh = stages.block(static, cleared, injection_kw, t)
        if n_blocked.any() and (committed or static.is_gen.any()):
            # what a blocked trade would have moved is not produced or consumed: check the grid again
            injection_kw, disp = physical(cleared)
            grid = static.grid_model.check_batch(injection_kw, background)
    # the DSO's local flexibility market on what the devices still offer
    flex_payment = np.zeros((b, n))
    lfm = None
    moved: Any = 0.0
    if cfg.flex_market:
        assert flex is not None and plan is not None and disp is not None and grid is not None
        lfm, flex_payment = stages.flex_market(static, flex, injection_kw, t)
        moved = lfm.up_kw - lfm.down_kw
        if np.any(moved != 0):
            injection_kw, disp = physical(cleared, moved)
            grid = static.grid_model.check_batch(injection_kw, background)
    # delivery: the realisation differs from the committed position by the forecast error; reserve is activated
    # against the system's imbalance (p2p_gym.sim.uncertainty)
    committed_kw = injection_kw
    activated_kw = np.zeros((b, n))
    reserve = None
    if cfg.forecast != "perfect":
        load_real, pv_real = sc.load_kw[t], sc.pv_kw[t]
        if committed:
            assert flex is not None and disp is not None
            if cfg.reserve:
                reserve = uncertainty.clear_reserve(static, act, flex, committed_kw, pv_fc)
            real = uncertainty.realise_devices(disp, flex, load_real, pv_real, static, state)
            if reserve is not None:
                called = uncertainty.activation(reserve, (real.injection_kw - committed_kw).sum(axis=1))
                if np.any(called != 0):
                    planned = physical(cleared, moved + called)[1]
                    activated = uncertainty.realise_devices(planned, flex, load_real, pv_real, static, state)
                    activated_kw = activated.injection_kw - real.injection_kw
                    real = activated
            disp, injection_kw = real, real.injection_kw
        else:
            injection_kw = uncertainty.realise_fixed(committed_kw, load_fc, pv_fc, load_real, pv_real)
        if static.grid_model is not None:
            grid = static.grid_model.check_batch(injection_kw, background)
    inflexible_kw = flex.n0 if flex is not None else pv_fc - load_fc
    fees = stages.fees(static, cleared, qty, committed_kw - inflexible_kw)
    if upstream is not None:
        fees = fees + upstream.fees
    penalty = np.zeros((b, n))
    if grid is not None and static.sens_i is not None and cfg.grid_penalty > 0:
        from p2p_gym.grid import allocate_penalty

        penalty = allocate_penalty(
            cfg.grid_penalty, injection_kw, grid.line_loading_pct, grid.vm_pu, grid.converged, static.sens_i,
            static.sens_v, a0_ka=stages.base_current(static, t), v_band=sc.voltage_band,
        )  # fmt: skip
    # settle: the committed positions as before, the deviations at imbalance prices, activated reserve at them too
    net_kwh = injection_kw * dt
    r, f = r_agent, f_agent
    st = market.settle_positions(
        cleared.bought, cleared.sold, cleared.paid, cleared.received, committed_kw * dt, r, f, fees
    )
    uncertain = cfg.forecast != "perfect"
    deviation_kwh = np.zeros((b, n))
    imbalance = np.zeros((b, n))
    activation_payment = np.zeros((b, n))
    to_grid: Any = 0.0  # the grid account's receipts beyond the committed positions
    beyond_kwh: Any = 0.0  # the energy delivered beyond them: deviations and activated reserve
    if uncertain:
        deviation_kwh = (injection_kw - committed_kw - activated_kw) * dt
        pen = cfg.imbalance_penalty
        imbalance = market.imbalance_cost(deviation_kwh, r, f, pen)
        act_kwh = activated_kw * dt
        activation_payment = np.maximum(act_kwh, 0.0) * (r + pen) - np.maximum(-act_kwh, 0.0) * np.maximum(
            f - pen, 0.0
        )
        to_grid = imbalance.sum(axis=1) - activation_payment.sum(axis=1)
        beyond_kwh = deviation_kwh.sum(axis=1) + activated_kw.sum(axis=1) * dt
    grid_only = np.maximum(-net_kwh, 0.0) * r - np.maximum(net_kwh, 0.0) * f
    private = np.zeros((b, n))  # battery degradation − utility of flexible demand (currency)
    hp_dev, ev_session, ev_kwh = state.hp_dev_kwh, state.ev_session, state.ev_kwh
    production = np.zeros((b, n))
    if disp is not None:
        assert flex is not None
        production = disp.production_cost
        private = disp.battery_cost - disp.utility
        battery_kw = disp.battery_kw
        soc, hp_dev, ev_session, ev_kwh = assets.advance(static, flex, disp, state.soc_kwh, state.hp_dev_kwh)
        if state.ev_fc_active.shape[1]:  # EV sessions were forecast: the cars as they really were
            _, ev_session, ev_kwh = uncertainty.realise_ev(static, state, flex, disp)
    elif static.is_gen.any():
        gen_kwh = np.where(static.is_gen, np.maximum(net_kwh + sc.load_kw[t] * dt, 0.0), 0.0)
        production = 0.5 * sc.gen_cost_a * gen_kwh**2 + sc.gen_cost_b * gen_kwh
    ended = state.step + 1 >= cfg.episode_steps
    terminal = np.zeros((b, n))
    # terminal_value="valued": the stores' change over the episode, at the last step's prices
    if cfg.terminal_value == "valued" and ended.any():
        terminal = np.where(
            ended[:, None],
            market.terminal_cost(static.initial_soc_kwh, soc, sc.battery_efficiency, hp_dev, r, f),
            0.0,
        )
        private = private + terminal
    # welfare, optimum, rewards. Welfare = −(net payment to the grid) − production cost; fees are transfers.
    grid_balance = st.grid_import_cost.sum(axis=1) - st.grid_export_revenue.sum(axis=1)
    supplier = grid_balance + to_grid  # what the system pays the supplier
    no_trade_bill = grid_only
    operator_balance = np.zeros((b, sc.n_platforms if priced else 0))
    dso_balance = np.zeros(b)
    realised = np.full(b, np.nan)
    if priced:  # the DSO settles the platforms' net at the substation; operators (predictive) settle ex post
        system_kwh = net_kwh.sum(axis=1)
        supplier = np.maximum(-system_kwh, 0.0) * retail - np.maximum(system_kwh, 0.0) * feed_in
        no_trade_bill = (
            np.maximum(-net_kwh, 0.0) * retail[:, None] - np.maximum(net_kwh, 0.0) * feed_in[:, None]
        )
        to_upstream = grid_balance + to_grid
        if cfg.coordination == "predictive":
            realised = multiscale.realised_price(sc, t, injection_kw)
            imp_r, exp_r = static.pricing.prices(realised, loss_factor)
            members = st.grid_import_cost - st.grid_export_revenue
            operator_balance = np.zeros((b, sc.n_platforms))
            to_upstream = np.zeros(b)
            for k, idx in enumerate(static.platform_members or (np.arange(n),)):
                owed = (
                    st.grid_import_kwh[:, idx].sum(axis=1) * imp_r[:, k]
                    - st.grid_export_kwh[:, idx].sum(axis=1) * exp_r[:, k]
                )
                operator_balance[:, k] = members[:, idx].sum(axis=1) - owed
                to_upstream = to_upstream + owed
            to_upstream = to_upstream + to_grid
        dso_balance = to_upstream - supplier
    welfare = -supplier - production.sum(axis=1) - private.sum(axis=1)
    welfare_no_trade = -no_trade_bill.sum(axis=1) - production.sum(axis=1) - private.sum(axis=1)
    if cfg.compute_optimum == "step":
        from p2p_gym.optim.step_optimum import step_optimum

        # positions as played; the devices' private costs and utility as dispatched
        optimum = np.asarray(step_optimum(sc, t, net_kwh), dtype=np.float64) - private.sum(axis=1)
        efficiency = np.asarray(
            market.efficiency(welfare, welfare_no_trade, optimum), dtype=np.float64
        ).reshape(b)
    elif cfg.compute_optimum == "episode":
        # the optimal schedule's welfare in this step; efficiency is defined per episode
        optimum = state.optimum_per_step[np.arange(b), state.step]
        efficiency = np.full(b, np.nan)
    else:
        optimum = efficiency = np.full(b, np.nan)
    welfare_sum = state.welfare_sum + welfare
    episode_efficiency = np.full(b, np.nan)
    if (
        cfg.compute_optimum == "episode" and ended.any()
    ):  # the same definition, against the episode's reference
        eff = market.efficiency(welfare_sum, state.reference_welfare, state.optimum_welfare)
        episode_efficiency = np.where(ended, np.asarray(eff, dtype=np.float64).reshape(b), np.nan)
    # what the market operator keeps of the trades (mechanisms whose buyers pay more than their sellers receive)
    market_operator = cleared.paid.sum(axis=1) - cleared.received.sum(axis=1)
    bills = st.bill - flex_payment + imbalance - activation_payment  # the DSO pays the activated flexibility
    if reserve is not None:
        bills = bills + reserve.charge - reserve.payment
    money = -bills - production - private - penalty
    rewards = grid_only + money if cfg.reward == "savings" else money
    # next state
    sold_kwh, bought_kwh = cleared.sold, cleared.bought
    supply = np.where(is_buy, 0.0, qty).sum(axis=1)
    demand = np.where(is_buy, qty, 0.0).sum(axis=1)
    new_state = SimState(
        t0=state.t0,
        step=state.step + 1,
        soc_kwh=soc,
        last_price=np.where(np.isfinite(cleared.price), cleared.price, state.last_price),
        last_traded=sold_kwh - bought_kwh,
        last_book=np.stack([supply, demand, cleared.volume], axis=1) / n,
        hp_dev_kwh=hp_dev,
        ev_session=ev_session,
        ev_kwh=ev_kwh,
        welfare_sum=welfare_sum,
        optimum_per_step=state.optimum_per_step,
        optimum_welfare=state.optimum_welfare,
        reference_welfare=state.reference_welfare,
        upstream_price=(
            multiscale.next_prediction(static, t + 1, realised, operator_actions)
            if cfg.coordination == "predictive"
            else state.upstream_price
        ),
        last_upstream_price=realised,
        load_fc_kw=state.load_fc_kw,
        pv_fc_kw=state.pv_fc_kw,
        last_reserve_price=reserve.price if reserve is not None else state.last_reserve_price,
        last_imbalance_kwh=deviation_kwh,
        ev_fc_active=state.ev_fc_active,
    )
    operator_rewards = None
    if (
        priced
    ):  # an operator's reward: its members' money plus its balance (the platform's welfare), per member
        operator_rewards = (
            operator_balance.copy() if operator_balance.shape[1] else np.zeros((b, sc.n_platforms))
        )
        for k, idx in enumerate(static.platform_members or (np.arange(n),)):
            operator_rewards[:, k] = (operator_rewards[:, k] + money[:, idx].sum(axis=1)) / len(idx)
    outcome = Outcome(
        t=t,
        battery_kw=battery_kw,
        clipped_actions=n_clipped,
        nonfinite_actions=n_nonfinite,
        is_buy=is_buy,
        order_price=price,
        order_kwh=qty,
        clearing_price=cleared.price,
        p2p_volume_kwh=cleared.volume,
        n_trades=None if cleared.results is None else np.array([r.n_trades for r in cleared.results]),
        blocked_trades=n_blocked,
        blocked_kwh=blocked_kwh,
        settlement=st,
        fees=fees,
        bills=bills,
        grid_only_bills=grid_only,
        production_cost=production,
        private_cost=private,
        terminal_cost=terminal,
        devices=disp,
        at_risk_lines=at_risk,
        forbidden_pairs=forbidden,
        flex_market=lfm,
        flex_payment=flex_payment,
        flex_activated_kwh=np.zeros(b) if lfm is None else (lfm.up_kw + lfm.down_kw).sum(axis=1) * dt,
        penalty=penalty,
        injection_kw=injection_kw,
        grid=grid,
        welfare=welfare,
        welfare_no_trade=welfare_no_trade,
        welfare_optimum=optimum,
        efficiency=efficiency,
        episode_welfare=welfare_sum,
        episode_welfare_optimum=state.optimum_welfare,
        episode_reference_welfare=state.reference_welfare,
        episode_efficiency=episode_efficiency,
        rewards=rewards,
        money_balance=bills.sum(axis=1)
        - grid_balance
        - fees.sum(axis=1)
        + flex_payment.sum(axis=1)
        - to_grid
        - market_operator,
        energy_balance_kwh=injection_kw.sum(axis=1) * dt
        - (st.grid_export_kwh.sum(axis=1) - st.grid_import_kwh.sum(axis=1))
        - beyond_kwh,
        committed_kw=committed_kw,
        imbalance_kwh=deviation_kwh,
        imbalance_cost=imbalance,
        activated_kw=activated_kw,
        activated_kwh=activated_kw.sum(axis=1) * dt if uncertain else np.zeros(b),
        activation_payment=activation_payment,
        reserve=reserve,
        market_operator_balance=market_operator,
        books=cleared.books,
        results=cleared.results,
        upstream_prices=upstream_prices if priced else None,
        realised_upstream_price=realised,
        operator_balance=operator_balance,
        dso_balance=dso_balance,
        supplier_payment=supplier,
        operator_rewards=operator_rewards,
        negotiation_fallback=None if upstream is None else upstream.fallback,
        **_platform_kpis(static, cleared, injection_kw * dt, upstream, grid),
    )
    return new_state, outcome


def _platform_kpis(
    static: Any, cleared: stages.Cleared, net_kwh: np.ndarray, upstream: Any = None, grid: Any = None
) -> dict[str, np.ndarray]:
    """Volume within and between platforms and each platform's net exchange (multi-platform scenarios).

    Between platforms is known only from the individual trades: with one market of all agents on the
    vectorised path (no trades) both volumes are nan."""
    sc = static.scenario
    p = sc.n_platforms
    b = len(net_kwh)
    platform_net = np.zeros((b, p))
    for k in range(p):
        platform_net[:, k] = net_kwh[:, sc.platform == k].sum(axis=1)
    trafo = np.full((b, p), np.nan)
    if grid is not None and len(sc.platform_trafo):
        has = sc.platform_trafo >= 0
        trafo[:, has] = grid.trafo_loading_pct[:, sc.platform_trafo[has]]
    mv = np.full(b, np.nan)
    if grid is not None and static.mv_lines is not None and static.mv_lines.any():
        mv = grid.line_loading_pct[:, static.mv_lines].max(axis=1)
    kpis = _volumes(sc, cleared, b, upstream)
    kpis.update(platform_net_kwh=platform_net, platform_trafo_loading_pct=trafo, mv_line_loading_max_pct=mv)
    return kpis


def _volumes(sc: Any, cleared: stages.Cleared, b: int, upstream: Any) -> dict[str, np.ndarray]:
    """kWh traded within each platform float[B, P] and between platforms float[B]."""
    p = sc.n_platforms
    if cleared.platform_volume is not None:  # platforms cleared separately; operators may trade between them
        inter = np.zeros(b) if upstream is None else upstream.volume
        return {"platform_volume_kwh": cleared.platform_volume, "inter_platform_kwh": inter}
    if p == 1:
        return {"platform_volume_kwh": cleared.volume[:, None], "inter_platform_kwh": np.zeros(b)}
    if cleared.results is None:
        return {"platform_volume_kwh": np.full((b, p), np.nan), "inter_platform_kwh": np.full(b, np.nan)}
    intra = np.zeros((b, p))
    inter = np.zeros(b)
    for row, res in enumerate(cleared.results):
        tr = res.trades
        pb, ps = sc.platform[tr.buyer], sc.platform[tr.seller]
        same = pb == ps
        intra[row] = np.bincount(pb[same], tr.quantity[same], p)
        inter[row] = tr.quantity[~same].sum()
    return {"platform_volume_kwh": intra, "inter_platform_kwh": inter}
