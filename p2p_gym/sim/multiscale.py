"""The system level of a multi-platform simulation (``coordination``), after each platform cleared locally.

Coordination architectures of Morstyn, Savelli & Hepburn (2021, One Earth 4(5):629–638):

* ``isolated``: no system level; what a platform's members do not match goes to the supplier at the tariff.
* ``negotiation`` (their "bidirectional negotiation"): platform operators trade their platforms' residual orders
  with each other through the P2P ADMM (:mod:`p2p_gym.optim.platforms`), paying a network fee for the MV
  path between their transformers; the delivered trades are allocated to the members' residual orders.
* ``pricing`` (their "unidirectional pricing"): before the day, the DSO publishes for every platform ``p`` and
  interval ``t`` an import and an export price (:class:`PlatformPricing`), locational marginal prices of the
  expected dispatch:

  ``π_pt = λ_t · (1 − m_pt)``,  import ``π_pt + φ_p``, export ``π_pt − φ_p``

  with ``λ_t`` the marginal price at the substation under the expected dispatch (retail when the platforms are
  expected to import in total, feed-in when they are expected to export), ``m_pt = ∂L/∂P_p`` the marginal loss
  factor of an injection spread over the platform's members (``L`` the network's active losses in the linear grid
  model, its exact derivative at the expected dispatch), and ``φ_p`` the network charge,
  ``upstream_fee_per_kwh_km`` × the line length from the substation to the platform's transformer. This is the
  distribution locational marginal price (Papavasiliou 2018, "Analysis of distribution locational marginal
  prices", IEEE Trans. Smart Grid 9(5):4872–4882: its energy and loss components) without its congestion term
  (the expected dispatch is the no-trade one, known to the DSO; none of the shipped grids is congested there) plus
  a use-of-system charge. The expected dispatch is the inflexible one (load and PV as
  forecast, devices idle), forecast perfectly (as everything in the simulation). Each platform clears its own
  market with its members' limit prices inside [export, import] price, and the DSO buys what a member exports and
  sells what it imports at the published prices. The DSO settles the system's net with the supplier at the
  substation (retail for a deficit, feed-in for a surplus): its margin is :attr:`Outcome.dso_balance`.
* ``predictive`` (their "communication-less predictive coordination"): each platform operator clears its platform
  against its own prediction ``λ̂`` of the upstream energy price (``predictor``: ``expected`` as the DSO above,
  ``persistence`` the last realised one, or ``agents``: operator agents set it one step ahead), priced to members
  with the same loss factors and charges as above; the operator settles its platform's residual ex post at the
  realised locational price (``λ_t`` from the realised net of all platforms) and keeps the difference
  (:attr:`Outcome.operator_balance`).

The negotiation stage returns the local clearing plus the inter-platform positions, so the later stages (dispatch
of the committed devices, grid check, DSO rules, settlement) see both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from p2p_gym.sim.stages import Cleared


@dataclass(frozen=True)
class Upstream:
    """What the system level added to the local clearing ([B] / [B, N] arrays)."""

    volume: np.ndarray  # float[B] kWh traded between platforms
    fees: np.ndarray  # float[B, N] network fees on inter-platform volume
    fallback: np.ndarray  # bool[B] the ADMM hit its iteration cap and the LP's solution was used


def platform_fee(static_config: Any, sc: Any) -> np.ndarray:
    """float[P, P] fee per kWh (each side) between two platforms: ``upstream_fee_per_kwh_km`` × the line length
    between their connection buses (the MV bus of the platform's transformer, else its first agent's bus)."""
    from p2p_gym.grid import path_length_km

    p = sc.n_platforms
    bus = np.empty(p, dtype=np.int64)
    for k in range(p):
        trafo = int(sc.platform_trafo[k])
        bus[k] = int(sc.net.trafo.at[trafo, "hv_bus"]) if trafo >= 0 else int(sc.bus[sc.platform == k][0])
    km = path_length_km(sc.net, bus)
    fee = static_config.upstream_fee_per_kwh_km * np.where(np.isfinite(km), km, 0.0)
    np.fill_diagonal(fee, 0.0)
    return fee


def negotiate(
    static: Any,
    cleared: Cleared,
    price: np.ndarray,
    qty: np.ndarray,
    is_buy: np.ndarray,
    t: np.ndarray | None = None,
) -> tuple[Cleared, Upstream]:
    """Operators negotiate their platforms' residual orders (``coordination="negotiation"``); ``t`` int[B] the
    scenario steps (they seed the wake-ups of ``negotiation="admm_async"``)."""
    from p2p_gym.optim.platforms import allocate, negotiate_admm, negotiate_centralized, operator_book

    sc, cfg = static.scenario, static.config
    b, n = qty.shape
    fee = static.platform_fee
    residual = np.maximum(qty - cleared.bought - cleared.sold, 0.0)
    add = {k: np.zeros((b, n)) for k in ("bought", "sold", "paid", "received", "fees")}
    volume = np.zeros(b)
    fallback = np.zeros(b, dtype=bool)
    for row in range(b):
        book = operator_book(price[row], residual[row], is_buy[row], sc.platform, sc.n_platforms)
        if not book.tradeable:
            continue  # only sellers or only buyers left: nothing to negotiate
        if cfg.negotiation == "centralized":
            sol = negotiate_centralized(book, fee)
        elif cfg.negotiation == "admm_async":
            step_t = 0 if t is None else int(t[row])
            sol = negotiate_admm(
                book, fee, asynchronous=True, rng=np.random.default_rng(step_t), max_iter=200_000
            )
        else:
            sol = negotiate_admm(book, fee)
        if sol.status == "max_iter":  # not converged within the cap: the same market solved centrally instead
            sol = negotiate_centralized(book, fee)
            fallback[row] = True
        alloc = allocate(book, sol, fee, n)
        for key in add:
            add[key][row] = getattr(alloc, key)
        volume[row] = alloc.volume
    out = replace(
        cleared,
        bought=cleared.bought + add["bought"],
        sold=cleared.sold + add["sold"],
        paid=cleared.paid + add["paid"],
        received=cleared.received + add["received"],
        volume=cleared.volume + volume,
    )
    return out, Upstream(volume=volume, fees=add["fees"], fallback=fallback)


# ----------------------------------------------------------------------------------------- pricing / predictive
def substation_fee(static_config: Any, sc: Any) -> np.ndarray:
    """float[P], currency/kWh: the network charge ``φ_p`` of each platform, ``upstream_fee_per_kwh_km`` × the line
    length from the external grid's bus to the platform's transformer (its first agent's bus without one)."""
    from p2p_gym.grid import path_length_km

    p = sc.n_platforms
    bus = np.empty(p + 1, dtype=np.int64)
    bus[0] = int(sc.net.ext_grid.bus.iloc[0])
    for k in range(p):
        trafo = int(sc.platform_trafo[k]) if len(sc.platform_trafo) else -1
        bus[k + 1] = int(sc.net.trafo.at[trafo, "hv_bus"]) if trafo >= 0 else int(sc.bus[sc.platform == k][0])
    km = path_length_km(sc.net, bus)[0, 1:]
    return static_config.upstream_fee_per_kwh_km * np.where(np.isfinite(km), km, 0.0)


class PlatformPricing:
    """The DSO's day-ahead locational prices per platform (``coordination="pricing"``; loss factors and charges
    also for ``"predictive"``). Prices of a day are computed when a simulation first reaches it and cached.

    Args:
        sc: the scenario (with a pandapower net).
        fee: float[P], the network charge per platform (:func:`substation_fee`).
        model: a linear :class:`~p2p_gym.grid.GridModel` of the scenario (built when None).
    """

    def __init__(self, sc: Any, fee: np.ndarray, model: Any = None) -> None:
        from p2p_gym.grid import GridModel

        if sc.net is None:
            from p2p_gym.errors import EnvConfigError

            raise EnvConfigError(
                f"coordination: the DSO's locational prices need a grid, and scenario {sc.name!r} has none"
            )
        self.sc = sc
        self.fee = np.asarray(fee, dtype=np.float64)
        self.model = model if model is not None and model.mode == "linear" else GridModel(sc, "linear")
        self._members = [np.flatnonzero(sc.platform == k) for k in range(sc.n_platforms)]
        self._directions = np.zeros((len(sc.agent_ids), len(self._members)))
        for k, idx in enumerate(self._members):
            self._directions[idx, k] = 1.0 / len(idx)
        self._days: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def loss_factors(self, injection_kw: np.ndarray, background_kw: np.ndarray | None) -> np.ndarray:
        """float[T, P]: ``m = ∂L/∂P_p`` at T dispatches float[T, N]: the exact derivative of the linear model's
        losses along an injection spread equally over each platform's members
        (:meth:`~p2p_gym.grid.GridModel.marginal_losses`)."""
        return self.model.marginal_losses(injection_kw, self._directions, background_kw)

    def expected_day(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        """The expected dispatch's substation price ``λ`` float[S] and loss factors float[S, P] of a day's S steps."""
        if day not in self._days:
            sc = self.sc
            rows = np.arange(day * sc.steps_per_day, min((day + 1) * sc.steps_per_day, sc.n_steps))
            inj = sc.pv_kw[rows] - sc.load_kw[rows]
            bg = sc.background_kw[rows] if sc.background_kw.shape[1] else None
            lam = np.where(inj.sum(axis=1) < 0, sc.retail_price[rows], sc.feed_in_price[rows])
            self._days[day] = (lam, self.loss_factors(inj, bg))
        return self._days[day]

    def expected(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``λ`` float[B] and loss factors float[B, P] of the expected dispatch at scenario steps ``t`` int[B]."""
        spd = self.sc.steps_per_day
        t = np.asarray(t, dtype=np.int64)
        days = t // spd
        lam = np.empty(len(t))
        mlf = np.empty((len(t), len(self._members)))
        for day in np.unique(days):  # one cached day per distinct day, not per row
            sel = days == day
            day_lam, day_mlf = self.expected_day(int(day))
            lam[sel], mlf[sel] = day_lam[t[sel] % spd], day_mlf[t[sel] % spd]
        return lam, mlf

    def prices(self, lam: np.ndarray, mlf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Import and export prices float[B, P] from substation prices float[B] (or one per platform, float[B, P])
        and loss factors float[B, P]."""
        base = (lam[:, None] if lam.ndim == 1 else lam) * (1.0 - mlf)
        return base + self.fee, base - self.fee


def realised_price(sc: Any, t: np.ndarray, injection_kw: np.ndarray) -> np.ndarray:
    """float[B]: the substation's marginal price of the realised dispatch, retail when the agents import in total
    and feed-in when they export."""
    return np.where(injection_kw.sum(axis=1) < 0, sc.retail_price[t], sc.feed_in_price[t])


def tariffs(static: Any, state: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What each agent pays for imports and gets for exports at the state's next step (``pricing``: the DSO's
    published prices; ``predictive``: its operator's prices from its prediction ``state.upstream_price``).

    Returns:
        import and export prices per agent float[B, N], per platform float[B, P], and the loss factors
        float[B, P] (all currency/kWh but the factors).
    """
    sc = static.scenario
    t = np.minimum(state.t, sc.n_steps - 1)
    lam, mlf = static.pricing.expected(t)
    if static.config.coordination == "predictive":
        lam = state.upstream_price
    imp, exp = static.pricing.prices(lam, mlf)
    return imp[:, sc.platform], exp[:, sc.platform], np.stack([imp, exp], axis=-1), mlf


def operator_price(sc: Any, t: np.ndarray, action: np.ndarray) -> np.ndarray:
    """float[B, P]: the upstream price operator agents predict, from actions float[B, P] in [−1, 1] (clipped):
    ``feed_in + (a + 1) / 2 · (retail − feed_in)`` at scenario steps ``t`` int[B]."""
    a = np.clip(np.nan_to_num(np.asarray(action, dtype=np.float64)), -1.0, 1.0)
    t = np.minimum(t, sc.n_steps - 1)
    f, r = sc.feed_in_price[t][:, None], sc.retail_price[t][:, None]
    return f + (a + 1.0) * 0.5 * (r - f)


def next_prediction(
    static: Any, t_next: np.ndarray, realised: np.ndarray, operator_action: np.ndarray | None
) -> np.ndarray:
    """float[B, P]: the operators' prediction ``λ̂`` for the next step (``coordination="predictive"``)."""
    sc, cfg = static.scenario, static.config
    p = sc.n_platforms
    if cfg.predictor == "agents":
        assert operator_action is not None
        return operator_price(sc, t_next, operator_action)
    if cfg.predictor == "persistence":
        return np.repeat(realised[:, None], p, axis=1)
    lam, _ = static.pricing.expected(np.minimum(t_next, sc.n_steps - 1))
    return np.repeat(lam[:, None], p, axis=1)


# ----------------------------------------------------------------------------------------- operator agents
#: Observation of a platform operator agent (``predictor="agents"``); its action sets the next step's prediction,
#: so the features describe the next step.
OPERATOR_FEATURES: tuple[str, ...] = (
    "next_time_of_day_sin",
    "next_time_of_day_cos",
    "next_retail_price",  # currency/kWh
    "next_feed_in_price",  # currency/kWh
    "next_platform_net",  # Σ members' PV − load at the next step / Σ members' power scale
    "next_system_net",  # the same over all agents
    "current_prediction",  # the operator's price in force now (currency/kWh)
    "last_realised_price",  # the last realised substation price (the current prediction before the first step)
)


def operator_observations(static: Any, state: Any) -> np.ndarray:
    """float32[B, P, len(OPERATOR_FEATURES)]: each platform operator's observation (see :data:`OPERATOR_FEATURES`)."""
    from p2p_gym.sim.stages import _TIME_OF_DAY, OBS_BOUND

    sc = static.scenario
    t = np.minimum(state.t + 1, sc.n_steps - 1)
    b, p = len(t), sc.n_platforms
    net = sc.pv_kw[t] - sc.load_kw[t]  # [B, N]
    scale = static.power_scale
    members = static.platform_members or (np.arange(static.n),)
    plat = np.stack([net[:, idx].sum(axis=1) / scale[idx].sum() for idx in members], axis=1)
    system = net.sum(axis=1) / scale.sum()
    tod = _TIME_OF_DAY[t * sc.step_minutes % 1440]
    pred = state.upstream_price
    last = np.where(np.isfinite(state.last_upstream_price)[:, None], state.last_upstream_price[:, None], pred)
    cols = [
        np.broadcast_to(tod[:, None, 0], (b, p)),
        np.broadcast_to(tod[:, None, 1], (b, p)),
        np.broadcast_to(sc.retail_price[t][:, None], (b, p)),
        np.broadcast_to(sc.feed_in_price[t][:, None], (b, p)),
        plat,
        np.broadcast_to(system[:, None], (b, p)),
        pred,
        last,
    ]
    return np.clip(np.stack(cols, axis=-1), -OBS_BOUND, OBS_BOUND).astype(np.float32)


def operator_ids(sc: Any) -> tuple[str, ...]:
    """Agent ids of the platform operators: ``operator_<platform name>``."""
    names = sc.platform_names or tuple(f"platform{k}" for k in range(sc.n_platforms))
    return tuple(f"operator_{name}" for name in names)


def joint_observations(static: Any, state: Any, prosumer_obs: np.ndarray) -> np.ndarray:
    """float32[B, N + P, D]: prosumers' then operators' observations, zero-padded to the larger dimension, plus a
    last column that is 1 for operators (``pad_spaces=True``)."""
    op = operator_observations(static, state)
    b, n, d_p = prosumer_obs.shape
    p, d_o = op.shape[1], op.shape[2]
    d = max(d_p, d_o)
    out = np.zeros((b, n + p, d + 1), dtype=np.float32)
    out[:, :n, :d_p] = prosumer_obs
    out[:, n:, :d_o] = op
    out[:, n:, d] = 1.0
    return out
