"""Forecast errors at delivery, dual-price imbalance settlement and a reserve market (options ``forecast``,
``imbalance_penalty`` and ``reserve`` of :class:`~p2p_gym.sim.MarketConfig`).

**Forecasts.** Agents act on a forecast of their load and PV (:mod:`p2p_gym.scenarios.forecast`): their
observation, their orders and the plan of their devices use it; the physical step uses the realisation. The
*committed* position of an agent is the net injection its plan delivers under the forecast (what its trades and its
planned exchange with the grid settle); the realisation differs by the forecast error of its inflexible part:

    realised = committed + (PV_used,real − PV_used,plan) − (load_real − load_fc),

where the PV actually used is the realised PV less what the plan curtails (never below 0). With
``forecast="day_ahead"`` the owners of EVs also expect each session's arrival with an error
(``ev_arrival_sigma_h``; :func:`draw_ev_arrivals`): a car that has not arrived cannot charge as planned, one that
arrived early charges uncontrolled (:func:`realise_ev`), and the difference is part of the deviation.

**Imbalance settlement.** Each agent's deviation e_n = (realised − committed − activated reserve)·Δt is settled
under a dual-price rule (:func:`p2p_gym.market.imbalance_cost`): short pays retail + penalty per kWh, long receives
max(feed-in − penalty, 0). The payments go to the grid account (the supplier or balance responsible party), so they
count against welfare. With zero forecast error every deviation is 0 and every result equals the perfect-foresight
step. Dual (two-price) imbalance pricing is allowed by the Electricity Balancing Guideline (Commission Regulation
(EU) 2017/2195, art. 55) and used, e.g., in the Netherlands and (until 2015) Great Britain.

**Reserve** (``reserve=True``; sequential: the energy market clears first, then capacity, as in most European
markets where balancing capacity is procured separately from energy — Le Goff Latimier & Ben Ahmed 2023, §6.3,
note that a joint clearing is the optimum and a sequential one is sub-optimal; :mod:`p2p_gym.optim.reserve`
and the optimisation core's joint market give that optimum).

1. *Requirement.* The system needs up and down reserve R⁺ = R⁻ covering the sum of the agents' forecast errors with
   confidence δ (``reserve_confidence``): P(−R⁻ ≤ Σ_n ε_n ≤ R⁺) ≥ δ, sized for Gaussian errors with the forecast
   model's covariance (:func:`p2p_gym.optim.reserve.gaussian_reserve`; the error model of
   :func:`p2p_gym.scenarios.forecast.forecast`: per-agent σ of PV (in daylight) and load, PV errors correlated
   across agents with the calibrated correlation; persistence forecasts use the calibrated statistics with skill 1;
   the EV arrival errors are not part of it).
   This is the chance constraint of the pool market (Le Goff Latimier & Ben Ahmed 2023, eq. 13d).
2. *Offers.* Each agent offers shares of its devices' headroom after its energy plan — up: x_max − committed,
   down: committed − x_min less the PV curtailment (curtailing forecast PV is not firm: the PV may not come) —
   at one capacity price (currency per kW and hour) within [0, ``reserve_price_cap``]. An action entry ≤ 0
   offers nothing. An agent whose plan curtails PV offers no up reserve (more injection would first release
   that curtailment). With EV sessions known the headroom is firm: accepted reserve is always deliverable. With
   EV arrival errors, deferring (or resuming) the charge of a car that is not there delivers nothing; a provider
   is paid for what it delivers.
3. *Clearing.* A uniform-price (pay-as-clear) capacity auction per direction: offers in ascending price until the
   requirement is met; the price is the highest accepted offer's. A shortfall (not enough offers) is reported.
   The procurement cost is charged to the agents in proportion to their own error's standard deviation (the
   causer pays, as in the imbalance-driven cost allocation of balancing capacity, e.g. ENTSO-E's 2018
   balancing report); the capacity payments and charges sum to zero.
4. *Activation.* After the realisation, the system imbalance E = Σ_n (realised − committed) is offset by the
   accepted reserve in merit order of price: up reserve (more injection) when E < 0, down reserve when E > 0, at
   most |E|. The providers' devices move (their private costs count); activated up energy is paid at the short
   imbalance price (retail + penalty), activated down energy is bought at the long one (max(feed-in − penalty,
   0)): the balancing energy is worth what the imbalance it replaces costs.

Money balances (Σ bills = grid account + fees) and energy balances (Σ realised injection·Δt = grid exports −
imports + Σ deviations + Σ activated energy) every step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from p2p_gym.errors import EnvConfigError

#: Observation features appended with ``reserve=True`` (after the committed-dispatch features).
RESERVE_FEATURES = (
    "reserve_price_up",  # last step's up-reserve capacity price as a share of reserve_price_cap
    "reserve_price_down",  # the same for down reserve
    "last_imbalance",  # own deviation of the last step (kWh per power-scale kWh; + = long)
)

#: Action entries appended with ``reserve=True`` (the last three of the action).
RESERVE_ACTIONS = ("reserve_up", "reserve_down", "reserve_price")


# --------------------------------------------------------------------------------------------------- forecasts
def draw_forecasts(static: Any, t0: np.ndarray, rngs: Any) -> tuple[np.ndarray, np.ndarray]:
    """The load and PV forecasts float[B, S, N] of each episode (``forecast="day_ahead"``), drawn from each
    simulation's generator; S covers the episode and the observation's look-ahead (within the scenario).

    Raises:
        EnvConfigError: ``rngs`` is not one ``numpy.random.Generator`` per simulation.
    """
    from p2p_gym.scenarios.forecast import forecast

    sc, cfg = static.scenario, static.config
    b, n = len(t0), static.n
    if cfg.forecast != "day_ahead":
        return np.zeros((b, 0, n)), np.zeros((b, 0, n))
    if rngs is None or len(rngs) != b or not all(isinstance(r, np.random.Generator) for r in rngs):
        raise EnvConfigError(
            f"rngs: forecast='day_ahead' draws its errors from one numpy.random.Generator per simulation ({b}), "
            f"got {rngs!r:.80}"
        )
    s = cfg.episode_steps + cfg.forecast_steps
    load = np.empty((b, s, n))
    pv = np.empty((b, s, n))
    for row, (t, rng) in enumerate(zip(t0, rngs, strict=True)):
        steps = min(s, sc.n_steps - int(t))
        lf, pf = forecast(sc, int(t), steps, "day_ahead", rng, static.forecast_stats, cfg.forecast_skill)
        load[row, :steps], pv[row, :steps] = lf, pf
        load[row, steps:], pv[row, steps:] = lf[-1], pf[-1]  # beyond the scenario: the last step's
    return load, pv


def draw_ev_arrivals(static: Any, t0: np.ndarray, rngs: Any) -> np.ndarray:
    """int32[B, S, N]: the EV session each agent *expects* to be plugged in at each step of the episode and the
    look-ahead (−1 none) under ``forecast="day_ahead"``: every session's planned arrival is its actual arrival
    shifted by round(N(0, (σ·skill·steps per hour)²)) steps, kept before its departure (departures are known).
    int32[B, 0, N] when EV sessions are known (other forecasts, σ = 0, or no EVs)."""
    ev, cfg, n = static.ev, static.config, static.n
    b = len(t0)
    sigma = cfg.ev_arrival_sigma_h * cfg.forecast_skill * 60.0 / static.scenario.step_minutes
    if ev is None or cfg.forecast != "day_ahead" or sigma <= 0:
        return np.zeros((b, 0, n), dtype=np.int32)
    s = cfg.episode_steps + cfg.forecast_steps
    out = np.full((b, s, n), -1, dtype=np.int32)
    agent = static.scenario.ev_sessions[:, 0].astype(np.int64)
    for row, (t, rng) in enumerate(zip(t0, rngs, strict=True)):
        shift = np.rint(rng.normal(0.0, sigma, len(ev.arrival))).astype(np.int64)
        start = np.minimum(ev.arrival + shift, ev.departure - 1)
        lo, hi = np.maximum(start - t, 0), np.minimum(ev.departure - t, s)
        for j in np.flatnonzero(hi > lo):
            out[row, lo[j] : hi[j], agent[j]] = j
    return out


def ev_sessions(static: Any, state: Any) -> np.ndarray:
    """int[B, N]: the EV session each agent expects at the state's next step (−1 none): the scenario's own when
    EV sessions are known."""
    t = np.minimum(state.t, static.scenario.n_steps - 1)
    if state.ev_fc_active.shape[1] == 0:
        return static.ev.active[t]
    idx = np.minimum(state.step, state.ev_fc_active.shape[1] - 1)
    return state.ev_fc_active[np.arange(len(idx)), idx]


def realise_ev(static: Any, state: Any, flex: Any, d: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """The dispatch ``d`` with the EVs as they really are, and the next (ev_session, ev_kwh) state.

    A planned charge happens only if the car is really plugged in (the same session); a car that arrived before
    its owner expected charges uncontrolled, min(charger, energy left / Δt), as an unplanned load.
    """
    ev, dt = static.ev, static.dt
    t = np.minimum(state.t, static.scenario.n_steps - 1)
    real = ev.active[t]
    on = real >= 0
    same = on & (real == flex.ev_session)
    j = np.where(on, real, 0)
    delivered = np.where(on & (state.ev_session == real), state.ev_kwh, 0.0)
    t0 = state.t0[:, None]
    arrive, depart = ev.arrival[j], ev.departure[j]
    a_in, d_in = np.maximum(arrive, t0), np.minimum(depart, t0 + static.config.episode_steps)
    energy = ev.energy_kwh[j] * (d_in - a_in) / np.maximum(depart - arrive, 1)
    uncontrolled = np.where(on, np.minimum(ev.max_kw[j], np.maximum(energy - delivered, 0.0) / dt), 0.0)
    ev_kw = np.where(same, d.ev_kw, uncontrolled)
    injection = d.injection_kw - (ev_kw - d.ev_kw)
    session = np.where(on, real, flex.ev_session)
    kwh = np.where(same, flex.ev_delivered, delivered) + ev_kw * dt
    kwh = np.where(on, kwh, flex.ev_delivered)
    return replace(d, ev_kw=ev_kw, injection_kw=injection), session.astype(np.int32), kwh


def forecast_kw(static: Any, state: Any, offsets: Any = 0) -> tuple[np.ndarray, np.ndarray]:
    """(load, PV) the agents expect at ``state.t + offsets`` (kW): float[B, N] for a scalar offset, float[B, F, N]
    for offsets int[F]. The realisation with ``forecast="perfect"``."""
    sc, kind = static.scenario, static.config.forecast
    off = np.asarray(offsets)
    t = np.minimum(state.t.reshape((-1,) + (1,) * off.ndim) + off, sc.n_steps - 1)
    if kind == "perfect":
        return sc.load_kw[t], sc.pv_kw[t]
    if kind == "persistence":
        spd = sc.steps_per_day
        prev = np.where(t >= spd, t - spd, t)
        return sc.load_kw[prev], sc.pv_kw[prev]
    s = state.load_fc_kw.shape[1]
    idx = np.minimum(state.step.reshape(t.shape[:1] + (1,) * off.ndim) + off, s - 1)
    rows = np.arange(len(t)).reshape((-1,) + (1,) * off.ndim)
    return state.load_fc_kw[rows, idx], state.pv_fc_kw[rows, idx]


def error_sigma(static: Any, pv_fc: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The forecast model's standard deviations this step: PV float[B, N] (0 at night: where no PV is forecast),
    load float[B, N], and the PV errors' cross-agent correlation."""
    st, cfg = static.forecast_stats, static.config
    skill = cfg.forecast_skill if cfg.forecast == "day_ahead" else 1.0
    pv = np.where(pv_fc > 0, skill * st.pv_sigma_kw, 0.0)
    load = np.broadcast_to(skill * st.load_sigma_kw, pv.shape)
    return pv, load, float(np.clip(st.pv_corr, 0.0, 1.0))


def system_sigma(pv_sigma: np.ndarray, load_sigma: np.ndarray, rho: float) -> np.ndarray:
    """float[B]: the standard deviation of Σ_n ε_n, ε_n = PV error − load error, with PV errors of correlation ρ
    between agents (1ᵀΣ1 = ρ(Σσ_pv)² + (1 − ρ)Σσ_pv² + Σσ_load²; load errors independent)."""
    var = (
        rho * pv_sigma.sum(axis=-1) ** 2
        + (1.0 - rho) * (pv_sigma**2).sum(axis=-1)
        + (load_sigma**2).sum(axis=-1)
    )
    return np.sqrt(var)


# ------------------------------------------------------------------------------------------------- realisation
def realise_fixed(net_kw: np.ndarray, load_fc: np.ndarray, pv_fc: np.ndarray, load: np.ndarray, pv: np.ndarray) -> (
    np.ndarray
):  # fmt: skip
    """Realised injection of fixed positions (``dispatch="fixed"``: no curtailment): the committed injection
    plus the PV error minus the load error."""
    return net_kw + (pv - pv_fc) - (load - load_fc)


def realise_devices(d: Any, flex: Any, load: np.ndarray, pv: np.ndarray, static: Any = None, state: Any = None) -> (
    Any
):  # fmt: skip
    """The dispatch ``d`` (planned under the forecast ``flex``) with the realised load and PV: the plan's
    curtailment (forecast PV − PV used) is kept, the PV used is the realised PV less it (≥ 0). With EV sessions
    forecast (``static``, ``state`` given and the state carrying expected sessions) the EVs too
    (:func:`realise_ev`)."""
    if static is not None and state is not None and state.ev_fc_active.shape[1]:
        d = realise_ev(static, state, flex, d)[0]
    curtailed = flex.pv - d.pv_kw
    pv_used = np.maximum(pv - curtailed, 0.0)
    injection = d.injection_kw + (pv_used - d.pv_kw) - (load - flex.load)
    return replace(d, pv_kw=pv_used, injection_kw=injection)


# ------------------------------------------------------------------------------------------------------ reserve
@dataclass(frozen=True)
class ReserveClearing:
    """The reserve capacity market of one step (kW, currency; arrays [B, N] unless stated)."""

    requirement_kw: np.ndarray  # float[B] R⁺ = R⁻
    offer_up_kw: np.ndarray
    offer_down_kw: np.ndarray
    offer_price: np.ndarray  # currency per kW and hour
    up_kw: np.ndarray  # accepted capacity
    down_kw: np.ndarray
    price: np.ndarray  # float[B, 2] clearing price up, down (0 when nothing was needed)
    shortfall_kw: np.ndarray  # float[B, 2] requirement not covered by offers
    payment: np.ndarray  # capacity payment received
    charge: np.ndarray  # share of the procurement cost paid


def decode_offers(act: np.ndarray, flex: Any, committed_kw: np.ndarray, cap: float) -> tuple[
    np.ndarray, np.ndarray, np.ndarray
]:  # fmt: skip
    """Reserve offers from the last three (decoded, clipped) action entries: up and down capacity as a share
    max(a, 0) of the headroom after the plan, and the price (a + 1)/2 · cap."""
    # Curtailing forecast PV is not firm (the PV may not come): it is the last absorber in merit order, so down
    # reserve stops before it; and more injection would first release the plan's own curtailment, which may not
    # be there, so an agent whose plan curtails PV offers no up reserve.
    firm_absorb = flex.caps["hp_up"] + flex.caps["bat_chg"] + flex.caps["flex_up"]
    curtails = flex.n0 - committed_kw - firm_absorb > 1e-12
    up_room = np.where(curtails, 0.0, np.maximum(flex.x_max - committed_kw, 0.0))
    down_room = np.maximum(committed_kw - flex.x_min - flex.caps["pv_down"], 0.0)
    up = np.clip(act[..., -3], 0.0, 1.0) * up_room
    down = np.clip(act[..., -2], 0.0, 1.0) * down_room
    price = (act[..., -1] + 1.0) * 0.5 * cap
    return up, down, price


def _auction(
    offer: np.ndarray, price: np.ndarray, need: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform-price capacity auction per row: (accepted float[B, N], price float[B], shortfall float[B])."""
    order = np.argsort(price, axis=1, kind="stable")
    rows = np.arange(len(offer))[:, None]
    q = offer[rows, order]
    before = np.cumsum(q, axis=1) - q
    take = np.clip(need[:, None] - before, 0.0, q)
    accepted = np.zeros_like(offer)
    accepted[rows, order] = take
    used = accepted > 1e-12
    clearing = np.where(used.any(axis=1), np.where(used, price, -np.inf).max(axis=1), 0.0)
    return accepted, clearing, np.maximum(need - q.sum(axis=1), 0.0)


def clear_reserve(static: Any, act: np.ndarray, flex: Any, committed_kw: np.ndarray, pv_fc: np.ndarray) -> (
    ReserveClearing
):  # fmt: skip
    """Size the requirement, clear the capacity auctions and allocate their cost (module docstring, 1–3)."""
    from scipy.stats import norm

    cfg, dt = static.config, static.dt
    up, down, price = decode_offers(act, flex, committed_kw, cfg.reserve_price_cap)
    pv_s, load_s, rho = error_sigma(static, pv_fc)
    z = float(norm.ppf(0.5 * (1.0 + cfg.reserve_confidence)))
    need = system_sigma(pv_s, load_s, rho) * z  # zero-mean errors: R⁺ = R⁻ (gaussian_reserve)
    acc_up, p_up, short_up = _auction(up, price, need)
    acc_down, p_down, short_down = _auction(down, price, need)
    payment = (acc_up * p_up[:, None] + acc_down * p_down[:, None]) * dt
    own = np.sqrt(pv_s**2 + load_s**2)
    total = own.sum(axis=1, keepdims=True)
    share = np.where(total > 0, own / np.where(total > 0, total, 1.0), 1.0 / static.n)
    charge = share * payment.sum(axis=1, keepdims=True)
    return ReserveClearing(
        requirement_kw=need,
        offer_up_kw=up,
        offer_down_kw=down,
        offer_price=price,
        up_kw=acc_up,
        down_kw=acc_down,
        price=np.stack([p_up, p_down], axis=1),
        shortfall_kw=np.stack([short_up, short_down], axis=1),
        payment=payment,
        charge=charge,
    )


def activation(rc: ReserveClearing, system_imbalance_kw: np.ndarray) -> np.ndarray:
    """float[B, N] reserve called (kW, + = more injection): up reserve against a short system (E < 0), down
    reserve against a long one, in merit order of the offers' price, at most |E| (module docstring, 4)."""
    e = np.asarray(system_imbalance_kw, dtype=np.float64)
    up, _, _ = _auction(rc.up_kw, rc.offer_price, np.maximum(-e, 0.0))
    down, _, _ = _auction(rc.down_kw, rc.offer_price, np.maximum(e, 0.0))
    return up - down
