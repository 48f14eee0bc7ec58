"""Flexible assets as physical commitments (``dispatch="committed"``): each agent's flexibility range, the split
of its order into an inflexible, a self-dispatched and a market-contingent part, and the dispatch of its devices.

An agent's step has an **inflexible part** — household load, available PV, and the reference consumption of its
heat pump (its profile) and EV (uncontrolled charging) — and **flexible devices** that move its net injection
away from it:

====================  ==========================================  ==========================================
device                absorbs (less injection, kW)                injects (more injection, kW)
====================  ==========================================  ==========================================
EV charging           — (it charges at once by reference)         deferring down to what cannot wait
heat pump             pre-heating up to the rating and the band   deferring down to 0 and the band
battery               charging within power and state of charge   discharging within power and SoC
flexible demand       consumption up to ``flex_max_kw``           —
PV                    curtailment of the available power          —
generator             —                                           output up to ``gen_max_kw``
====================  ==========================================  ==========================================

Device models (Le Goff Latimier & Ben Ahmed 2023, §3 and eq. 3 for the cost and utility functions): the battery
``soc ← soc − (d/η − c·η)·Δt`` with one-way efficiency η and a degradation cost κ·(c + d)·Δt; an EV session
delivers its energy E between arrival and departure at ≤ the charger's power (a session cut by the episode's
start or end needs the share of E of its steps inside the episode); its reference is uncontrolled
charging (at ``min(P, E_left/Δt)`` from arrival until done), and it can defer down to the
``(E_left − P·(steps_left − 1)·Δt)/Δt`` that cannot wait (no V2G); a heat pump
follows its reference profile ``hp_kw`` up to a running deviation D ∈ [−band, +band] (kWh,
``D ← D + (h − reference)·Δt``: an energy-band model of the building's thermal inertia); flexible demand q
(kWh) has utility b·q − ½·a·q²; a generator costs ½·a·(gΔt)² + b·gΔt.

**Orders are commitments.** The action's target ``x`` (kW, in [X_min, X_max]) is the net injection the agent
plans. It splits into

* the **must** part: the share of ``|x|`` covered by the inflexible position on the same side (a seller's PV
  surplus, a buyer's load) — physical whatever the market does; if it is not matched it goes to the grid at the
  tariff, as before;
* the **self** part: moving from the inflexible position toward zero with own devices (storing one's own PV
  surplus, covering one's own load from the battery) — executed whatever the market does;
* the **market** part: beyond zero in the direction of ``x`` (buying to charge, selling from the battery) —
  executed only for the volume that clears, plus a chosen share φ of the unmatched rest against the grid (φ = 0:
  devices move only for P2P matches; φ = 1: the plan is executed whatever the market does; the generator's part
  never falls back: it produces only what it sells).

So the physical injection the grid sees follows the clearing and the DSO's rule. Devices share a flexible delta
in a fixed merit order: absorbing — heat-pump pre-heating (consumption needed anyway, no loss), battery (loses
1 − η² of it), flexible demand, PV curtailment (wastes energy); injecting — EV and heat-pump deferral (shifts
that lose no energy), battery, generator (costly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Devices that absorb (reduce the injection), in merit order.
ABSORB: tuple[str, ...] = ("hp_up", "bat_chg", "flex_up", "pv_down")
#: Devices that inject (raise the injection), in merit order.
INJECT: tuple[str, ...] = ("ev_down", "hp_down", "bat_dis", "gen_up")


@dataclass(frozen=True)
class EvTable:
    """The scenario's EV sessions indexed for the step: ``active[t, n]`` is the session plugged in at agent n at
    step t (−1 none); per session its departure step, energy (kWh) and charger power (kW)."""

    active: np.ndarray  # int32[T, N]
    arrival: np.ndarray  # int[S]
    departure: np.ndarray  # int[S]
    energy_kwh: np.ndarray  # float[S]
    max_kw: np.ndarray  # float[S]

    @classmethod
    def of(cls, scenario: Any) -> EvTable | None:
        s = scenario.ev_sessions
        if not len(s):
            return None
        active = np.full((scenario.n_steps, scenario.n_agents), -1, dtype=np.int32)
        for j, (agent, arrive, depart, _e, _p) in enumerate(s):
            active[int(arrive) : int(depart), int(agent)] = j
        return cls(active, s[:, 1].astype(np.int64), s[:, 2].astype(np.int64), s[:, 3].copy(), s[:, 4].copy())


@dataclass(frozen=True)
class Flex:
    """Each agent's inflexible position and device capacities in one step (kW, arrays [B, N])."""

    n0: np.ndarray  # inflexible net injection: pv − load − heat-pump reference − EV reference
    pv: np.ndarray  # available PV
    load: np.ndarray
    hp_ref: np.ndarray  # the heat pump's reference within this step's feasible range
    hp_profile: np.ndarray  # the scenario's reference profile (for the deviation)
    ev_ref: np.ndarray  # uncontrolled charging: min(charger, energy left / Δt)
    ev_session: np.ndarray  # int[B, N] active session (−1 none)
    ev_delivered: np.ndarray  # kWh delivered in the active session before this step
    caps: dict[str, np.ndarray]  # device name (ABSORB, INJECT) -> capacity ≥ 0

    @property
    def x_min(self) -> np.ndarray:
        return self.n0 - sum(self.caps[k] for k in ABSORB)

    @property
    def x_max(self) -> np.ndarray:
        return self.n0 + sum(self.caps[k] for k in INJECT)


def flex_range(static: Any, state: Any) -> Flex:
    """The flexibility of every agent at the state's next step (see the module docstring).

    A state is immutable, so the range is computed once per state and kept on it: the observation of a state and
    the next step from it read the same one.
    """
    cached = state.__dict__.get("_flex")
    if cached is not None and cached[0] is static:
        return cached[1]
    flex = _flex_range(static, state)
    object.__setattr__(state, "_flex", (static, flex))
    return flex


def _flex_range(static: Any, state: Any) -> Flex:
    sc, dt = static.scenario, static.dt
    t = np.minimum(state.t, sc.n_steps - 1)  # after an episode's last step (observation only)
    b, n = state.soc_kwh.shape
    from p2p_gym.sim.uncertainty import forecast_kw

    load, pv = forecast_kw(
        static, state
    )  # devices are planned on the forecast (the realisation when perfect)
    eta = sc.battery_efficiency
    soc = state.soc_kwh
    has_b = static.has_battery
    bat_dis = np.where(has_b, np.minimum(sc.battery_kw, soc * eta / dt), 0.0)
    bat_chg = np.where(has_b, np.minimum(sc.battery_kw, (sc.battery_kwh - soc) / (eta * dt)), 0.0)
    # heat pump: stay within the rating and the band
    ref = sc.hp_kw[t]
    dev, band = state.hp_dev_kwh, sc.hp_band_kwh
    h_min = np.clip(ref - (dev + band) / dt, 0.0, sc.hp_max_kw)
    h_max = np.clip(ref + (band - dev) / dt, h_min, sc.hp_max_kw)
    hp_ref = np.clip(ref, h_min, h_max)
    # EV: the active session's remaining energy
    ev_min = ev_max = np.zeros((b, n))
    session = np.full((b, n), -1, dtype=np.int32)
    delivered = np.zeros((b, n))
    ev = static.ev
    if ev is not None:
        from p2p_gym.sim.uncertainty import ev_sessions

        session = ev_sessions(static, state)  # the sessions the owners expect (the real ones when known)
        on = session >= 0
        j = np.where(on, session, 0)
        delivered = np.where(on & (state.ev_session == session), state.ev_kwh, 0.0)
        # a session cut by the episode's start or end counts pro rata to its steps inside the episode, as in the
        # episode optimum (p2p_gym.optim.episode_optimum)
        t0 = state.t0[:, None]
        t_end = t0 + static.config.episode_steps
        arrive, depart = ev.arrival[j], ev.departure[j]
        a_in, d_in = np.maximum(arrive, t0), np.minimum(depart, t_end)
        energy = ev.energy_kwh[j] * (d_in - a_in) / np.maximum(depart - arrive, 1)
        left_kwh = np.where(on, np.maximum(energy - delivered, 0.0), 0.0)
        p = np.where(on, ev.max_kw[j], 0.0)
        steps_left = np.where(on, d_in - t[:, None], 1)
        ev_max = np.minimum(p, left_kwh / dt)
        ev_min = np.clip((left_kwh - p * (steps_left - 1) * dt) / dt, 0.0, ev_max)
    caps = {
        "ev_down": ev_max - ev_min,
        "hp_up": h_max - hp_ref,
        "bat_chg": bat_chg,
        "flex_up": np.broadcast_to(sc.flex_max_kw, (b, n)),
        "pv_down": pv if sc.pv_curtailable else np.zeros((b, n)),
        "bat_dis": bat_dis,
        "hp_down": hp_ref - h_min,
        "gen_up": np.broadcast_to(sc.gen_max_kw, (b, n)),
    }
    n0 = pv - load - hp_ref - ev_max
    return Flex(n0, pv, load, hp_ref, ref, ev_max, session, delivered, caps)


def target(flex: Flex, a: np.ndarray) -> np.ndarray:
    """The planned net injection x (kW) of action entries ``a`` in [-1, 1]: X_min at −1, X_max at +1."""
    lo, hi = flex.x_min, flex.x_max
    return lo + (a + 1.0) * 0.5 * (hi - lo)


def reference_action(flex: Flex) -> np.ndarray:
    """The action entry in [-1, 1] whose target is the inflexible position n0 (no device moves on its own)."""
    lo, hi = flex.x_min, flex.x_max
    span = hi - lo
    return np.where(span > 1e-12, 2.0 * (flex.n0 - lo) / np.where(span > 1e-12, span, 1.0) - 1.0, 0.0)


@dataclass(frozen=True)
class Plan:
    """An agent's order split (kW, [B, N]): must, self-dispatched and market-contingent parts of ``|x|``."""

    x: np.ndarray
    must: np.ndarray
    self_kw: np.ndarray
    market: np.ndarray
    fallback_share: np.ndarray  # φ in [0, 1]


def plan(flex: Flex, x: np.ndarray, fallback_share: np.ndarray) -> Plan:
    """Split the target ``x`` into its parts (module docstring)."""
    n0 = flex.n0
    same = np.sign(x) * np.sign(n0) > 0
    must = np.where(same, np.minimum(np.abs(x), np.abs(n0)), 0.0)
    self_kw = np.clip(x, np.minimum(n0, 0.0), np.maximum(n0, 0.0)) - n0
    market = np.abs(x) - must
    return Plan(x, must, self_kw, np.maximum(market, 0.0), fallback_share)


def realised_delta(flex: Flex, p: Plan, traded_kwh: np.ndarray, dt: float) -> np.ndarray:
    """The flexible delta (kW, + = more injection) executed after clearing, given each agent's cleared P2P volume
    ``traded_kwh`` (≥ 0, on its order's side)."""
    executed = np.clip(traded_kwh / dt - p.must, 0.0, p.market)
    unmatched = p.market - executed
    selling = p.x > 0
    # the fallback never uses the generator (it produces only what it sells)
    room = (
        flex.caps["ev_down"]
        + flex.caps["hp_down"]
        + flex.caps["bat_dis"]
        - np.maximum(p.self_kw, 0.0)
        - executed
    )
    cap = np.where(selling, np.maximum(room, 0.0), unmatched)
    fallback = p.fallback_share * np.minimum(unmatched, cap)
    return p.self_kw + np.sign(p.x) * (executed + fallback)


@dataclass(frozen=True)
class Dispatch:
    """Device set-points (kW, [B, N]) and the private costs and utility of the step (currency, [B, N])."""

    battery_kw: np.ndarray  # + = discharge
    hp_kw: np.ndarray
    ev_kw: np.ndarray
    flex_kw: np.ndarray
    pv_kw: np.ndarray  # PV used
    gen_kw: np.ndarray
    injection_kw: np.ndarray
    battery_cost: np.ndarray
    production_cost: np.ndarray
    utility: np.ndarray


def dispatch(static: Any, flex: Flex, delta: np.ndarray) -> Dispatch:
    """Share the flexible ``delta`` (kW) among the devices in merit order; costs and utility of the step."""
    sc, dt = static.scenario, static.dt
    use = {k: np.zeros_like(delta) for k in (*ABSORB, *INJECT)}
    for names, amount in ((INJECT, np.maximum(delta, 0.0)), (ABSORB, np.maximum(-delta, 0.0))):
        left = amount
        for k in names:
            take = np.minimum(left, flex.caps[k])
            use[k] = take
            left = left - take
    battery_kw = use["bat_dis"] - use["bat_chg"]
    hp = flex.hp_ref + use["hp_up"] - use["hp_down"]
    ev = flex.ev_ref - use["ev_down"]
    fl = use["flex_up"]
    pv = flex.pv - use["pv_down"]
    gen = use["gen_up"]
    injection = pv - flex.load - hp - ev - fl + battery_kw + gen
    q = fl * dt
    g = gen * dt
    return Dispatch(
        battery_kw=battery_kw,
        hp_kw=hp,
        ev_kw=ev,
        flex_kw=fl,
        pv_kw=pv,
        gen_kw=gen,
        injection_kw=injection,
        battery_cost=sc.battery_cost * (use["bat_dis"] + use["bat_chg"]) * dt,
        production_cost=0.5 * sc.gen_cost_a * g**2 + sc.gen_cost_b * g,
        utility=sc.flex_util_b * q - 0.5 * sc.flex_util_a * q**2,
    )


def advance(static: Any, flex: Flex, d: Dispatch, soc_kwh: np.ndarray, hp_dev_kwh: np.ndarray) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:  # fmt: skip
    """The devices' next state: (soc_kwh, hp_dev_kwh, ev_session, ev_kwh), each [B, N]."""
    sc, dt = static.scenario, static.dt
    eta = sc.battery_efficiency
    dis, chg = np.maximum(d.battery_kw, 0.0), np.maximum(-d.battery_kw, 0.0)
    soc = np.clip(soc_kwh - (dis / eta - chg * eta) * dt, 0.0, sc.battery_kwh)
    dev = np.clip(hp_dev_kwh + (d.hp_kw - flex.hp_profile) * dt, -sc.hp_band_kwh, sc.hp_band_kwh)
    return soc, dev, flex.ev_session, flex.ev_delivered + d.ev_kw * dt
