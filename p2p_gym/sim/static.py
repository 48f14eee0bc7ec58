"""``SimStatic``: everything a market simulation derives once from its config and scenario (never changes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from p2p_gym.errors import EnvConfigError, P2PGymError
from p2p_gym.sim.config import HOLDOUT_EVERY, PRICED_COORDINATIONS, MarketConfig
from p2p_gym.sim.stages import COMMITTED_FEATURES, OBS_FEATURES
from p2p_gym.sim.uncertainty import RESERVE_ACTIONS, RESERVE_FEATURES

__all__ = ["SimStatic", "build"]


@dataclass(frozen=True, eq=False)
class SimStatic:
    """Constants of one simulation: the config, the scenario and what is derived from them once.

    Build it with :func:`build`, which also runs the checks that need the scenario.
    """

    config: MarketConfig
    scenario: Any  # p2p_gym.scenarios.Scenario
    n: int
    """Number of agents N."""
    dt: float
    """Step length in hours."""
    has_battery: np.ndarray
    """bool[N]."""
    is_gen: np.ndarray
    """bool[N]: dispatchable generators (they produce what they sell)."""
    power_scale: np.ndarray
    """float[N] kW: each agent's largest load, PV, battery or generation power (observation units)."""
    others: np.ndarray
    """int[N, N − 1]: the other agents of each agent, in index order (the peer-score columns)."""
    grid_model: Any
    """:class:`~p2p_gym.grid.GridModel` of ``config.grid`` (None for ``"none"``)."""
    attribution: Any
    """:class:`~p2p_gym.grid.FlowAttribution` when the block rule or the penalty needs it, else None."""
    sens_i: np.ndarray | None
    """float[L, N] line current sensitivities (kA/kW) of the linear model, when needed."""
    sens_v: np.ndarray | None
    """float[V, N] voltage sensitivities (p.u./kW), when needed."""
    i0_ka: np.ndarray | None
    """float[L] no-load line currents of the linear model (kA), when a DSO rule needs them."""
    max_i_ka: np.ndarray | None
    """float[L] line ratings (kA), when a DSO rule needs them."""
    redirect_base: np.ndarray | None
    """float[N, N] directional base cost (currency/kWh, ``[seller, buyer]``) that ``grid_policy="redirect"``
    updates: P + Pᵀ of the preference P (the distance preference when none is set)."""
    fee_matrix: np.ndarray | None
    """float[N, N] network fee per kWh between two agents (``grid_policy="fee"``; ``fee_type`` decides it)."""
    preference: np.ndarray | None
    """float[N, N] β of the bilateral matching."""
    n_actions: int
    n_obs: int
    n_start_days: int
    """Number of days an episode can start on."""
    start_days: np.ndarray
    """int[D]: the days a random episode starts on (``config.day_split`` of ``range(n_start_days)``)."""
    ev: Any = None
    """:class:`~p2p_gym.sim.assets.EvTable` of the scenario's EV sessions (``dispatch="committed"``), else None."""
    platform_members: tuple[np.ndarray, ...] = ()
    """The agents (int indices, ascending) of each local market: one group of all agents unless
    ``config.coordination`` clears a multi-platform scenario's platforms separately."""
    platform_fee: np.ndarray | None = None
    """float[P, P] fee per kWh (each side) of an inter-platform trade (``coordination="negotiation"``)."""
    linear_model: Any = None
    """The linear :class:`~p2p_gym.grid.GridModel` of the DSO's rules, when one needs it (its active base currents
    per step: :func:`p2p_gym.sim.stages.base_current`)."""
    operator_ids: tuple[str, ...] = ()
    """Agent ids of the platform operators when they are agents (``predictor="agents"``), else empty."""
    mv_lines: np.ndarray | None = None
    """bool[L]: the network's lines above 1 kV (the MV level of a multi-platform scenario), when it has a net."""
    pricing: Any = None
    """The DSO's locational prices per platform (:class:`p2p_gym.sim.multiscale.PlatformPricing`;
    ``coordination`` pricing or predictive)."""
    premium: np.ndarray | None = None
    """float[N, N] product differentiation: what buyer i pays per kWh on top of its bid for seller j's labels
    (``green_premium``, ``local_premium``; bilateral), else None."""
    peer_features: np.ndarray | None = None
    """float[N, 2·(N − 1)] (``peer_obs``): per other agent in peer-score order, the line-path distance ÷ the largest
    such distance, then the PV peak ÷ the largest PV peak; static, appended to every observation."""
    forecast_stats: Any = None
    """:class:`~p2p_gym.scenarios.forecast.ErrorStats` of the scenario's persistence errors (``forecast="day_ahead"``
    or ``reserve=True``), else None."""

    @property
    def agent_ids(self) -> tuple[str, ...]:
        return tuple(self.scenario.agent_ids)

    @property
    def n_operators(self) -> int:
        """Platform operator agents (``predictor="agents"``), else 0."""
        return len(self.operator_ids)

    @property
    def initial_soc_kwh(self) -> np.ndarray:
        """float[N]: each battery's state of charge at the start of an episode (kWh; 0 without battery)."""
        return np.where(self.has_battery, self.config.initial_soc * self.scenario.battery_kwh, 0.0)

    @property
    def clearing_preference(self) -> np.ndarray | None:
        """β the bilateral matching subtracts from each pair's surplus: the preference plus, with
        ``grid_policy="fee"``, the pair's network fee (so the fee enters the clearing objective, Le Goff Latimier
        & Ben Ahmed 2023, eq. 12, not only the bill)."""
        if self.fee_matrix is None or self.config.mechanism != "bilateral":
            return self.preference
        return self.fee_matrix if self.preference is None else self.preference + self.fee_matrix

    @property
    def obs_index(self) -> dict[str, int]:
        """Position of each named observation feature (base features, book statistics, committed-dispatch
        features; forecasts are the 2·forecast_steps entries after the base features)."""
        cfg = self.config
        out = {name: i for i, name in enumerate(OBS_FEATURES)}
        at = len(OBS_FEATURES) + 2 * cfg.forecast_steps
        if cfg.book_stats:
            out.update({"book_supply": at, "book_demand": at + 1, "book_volume": at + 2})
            at += 3
        if cfg.dispatch == "committed":
            out.update({name: at + i for i, name in enumerate(COMMITTED_FEATURES)})
            at += len(COMMITTED_FEATURES)
        if cfg.reserve:
            out.update({name: at + i for i, name in enumerate(RESERVE_FEATURES)})
            at += len(RESERVE_FEATURES)
        if cfg.peer_obs:  # first entry of each block of N − 1
            out.update({"peer_distance": at, "peer_pv": at + self.n - 1})
        return out

    @property
    def action_index(self) -> dict[str, Any]:
        """Position of each action entry: ``price``, ``quantity``, ``battery`` (0, 1, 2), ``peers`` (a slice, with
        ``peer_selection``) and the reserve offer's ``reserve_up``, ``reserve_down``, ``reserve_price`` (the last
        three, with ``reserve``)."""
        out: dict[str, Any] = {"price": 0, "quantity": 1, "battery": 2}
        if self.config.peer_selection:
            out["peers"] = slice(3, 3 + self.n - 1)
        if self.config.reserve:
            out.update({name: self.n_actions - 3 + i for i, name in enumerate(RESERVE_ACTIONS)})
        return out


def build(config: MarketConfig, scenario: Any = None) -> SimStatic:
    """Load the scenario (unless given), check the options that depend on it and derive the constants.

    Raises:
        EnvConfigError: an option out of range for this scenario (names the field, value and range).
    """
    from p2p_gym.scenarios import Scenario, load_scenario

    if not isinstance(config, MarketConfig):
        raise EnvConfigError(f"config: expected a MarketConfig, got {type(config).__name__}")
    if scenario is None:
        sc = load_scenario(config.scenario, **config.scenario_overrides)
    elif isinstance(scenario, Scenario):
        sc = scenario
    else:
        raise EnvConfigError(f"scenario: expected a name or Scenario, got {type(scenario).__name__}")
    n = sc.n_agents
    if config.episode_steps > sc.n_steps:
        raise EnvConfigError(
            f"episode_steps: must be an integer in [1, {sc.n_steps}], got {config.episode_steps}"
        )
    n_days = max(1, (sc.n_steps - config.episode_steps) // sc.steps_per_day + 1)
    if config.start_day is not None and config.start_day > n_days - 1:
        raise EnvConfigError(f"start_day: must be an integer in [0, {n_days - 1}], got {config.start_day}")
    if config.peer_k is not None and config.peer_k > max(1, n - 1):
        raise EnvConfigError(f"peer_k: must be an integer in [1, {max(1, n - 1)}], got {config.peer_k}")
    distance = np.zeros((n, n))
    redirect_distance = config.grid_policy == "redirect" and config.preference is None
    if (
        (config.grid_policy == "fee" and config.fee_type == "distance")
        or config.preference == "distance"
        or redirect_distance
    ):
        from p2p_gym.grid import path_length_km

        distance = path_length_km(sc.net, sc.bus)
    preference: np.ndarray | None = None
    if config.preference == "distance":
        preference = config.preference_per_km * distance
    elif config.preference is not None:
        preference = config.preference_matrix
        assert preference is not None
        if preference.shape != (n, n):
            raise EnvConfigError(
                f"preference: expected finite float[{n}, {n}] ≥ 0, got shape {preference.shape}"
            )

    grid_model = attribution = sens_i = sens_v = i0 = max_i = lin = None
    if config.grid != "none":
        from p2p_gym.grid import FlowAttribution, GridModel

        v_lo, v_hi = sc.voltage_band
        grid_model = GridModel(sc, config.grid, v_min_pu=v_lo, v_max_pu=v_hi)
        if (
            config.grid_policy in ("block", "preblock", "redirect")
            or config.grid_penalty > 0
            or config.flex_market
        ):
            lin = (
                grid_model
                if config.grid == "linear"
                else GridModel(sc, "linear", v_min_pu=v_lo, v_max_pu=v_hi)
            )
            sens = lin.sensitivities
            sens_i, sens_v = sens["line_current_ka_per_kw"], sens["vm_pu_per_kw"]
            i0, max_i = sens["line_current_ka"], lin.max_i_ka
            attribution = FlowAttribution(
                sens_i, lin.max_i_ka, i0_ka=i0, a0_ka=sens["line_active_current_ka"]
            )
    redirect_base = None
    if config.grid_policy == "redirect":
        p = preference if preference is not None else config.preference_per_km * distance
        redirect_base = p + p.T
    committed = config.dispatch == "committed"
    ev_peak = np.zeros(n)
    if committed and len(sc.ev_sessions):
        np.maximum.at(ev_peak, sc.ev_sessions[:, 0].astype(int), sc.ev_sessions[:, 4])
    power_scale = np.maximum.reduce(
        [sc.load_kw.max(axis=0), sc.pv_kw.max(axis=0), sc.battery_kw, sc.gen_max_kw, np.full(n, 1e-6),
         *([sc.hp_max_kw, sc.flex_max_kw, ev_peak] if committed else [])]
    )  # fmt: skip
    others = np.array([[m for m in range(n) if m != i] for i in range(n)], dtype=int).reshape(n, n - 1)
    n_actions = 3 + (n - 1 if config.peer_selection else 0) + (len(RESERVE_ACTIONS) if config.reserve else 0)
    n_obs = len(OBS_FEATURES) + 2 * config.forecast_steps + (3 if config.book_stats else 0)
    n_obs += len(COMMITTED_FEATURES) if committed else 0
    n_obs += len(RESERVE_FEATURES) if config.reserve else 0
    peer_features = None
    if config.peer_obs:
        if sc.net is None:
            raise EnvConfigError(
                f"peer_obs: scenario {sc.name!r} has no network to measure the peers' distances"
            )
        from p2p_gym.grid import path_length_km

        km = distance if distance.any() else path_length_km(sc.net, sc.bus)
        pv_peak = sc.pv_kw.max(axis=0)
        d = km / max(float(km.max()), 1e-9)
        pv = pv_peak / max(float(pv_peak.max()), 1e-9)
        peer_features = np.concatenate([np.take_along_axis(d, others, axis=1), pv[others]], axis=1)
        n_obs += 2 * (n - 1)
    forecast_stats = None
    if config.forecast == "day_ahead" or config.reserve:
        from p2p_gym.scenarios.forecast import calibrate

        try:
            forecast_stats = calibrate(sc)
        except P2PGymError as exc:
            raise EnvConfigError(f"forecast: {exc}") from None
    return SimStatic(
        config=config,
        scenario=sc,
        n=n,
        dt=sc.dt_hours,
        has_battery=sc.battery_kwh > 0,
        is_gen=sc.gen_max_kw > 0,
        power_scale=power_scale,
        others=others,
        grid_model=grid_model,
        attribution=attribution,
        sens_i=sens_i,
        sens_v=sens_v,
        i0_ka=i0,
        linear_model=lin,
        max_i_ka=max_i,
        redirect_base=redirect_base,
        fee_matrix=_fee_matrix(config, sc, distance) if config.grid_policy == "fee" else None,
        preference=preference,
        n_actions=n_actions,
        n_obs=n_obs,
        peer_features=peer_features,
        n_start_days=n_days,
        start_days=_start_days(config, n_days),
        ev=None if not committed else _ev_table(sc),
        platform_members=_platform_members(config, sc),
        platform_fee=_platform_fee(config, sc),
        pricing=_pricing(config, sc, grid_model),
        mv_lines=_mv_lines(sc),
        operator_ids=_operator_ids(config, sc),
        forecast_stats=forecast_stats,
        premium=_premium(config, sc),
    )


def _premium(config: MarketConfig, sc: Any) -> np.ndarray | None:
    """float[N, N] ``premium[i, j]`` = green_premium·green(j) + local_premium·(i and j local), 0 on the diagonal.

    Labels: a seller is green when it has PV and no dispatchable generator; two agents are local to each other on
    the same platform of a multi-platform scenario, else on the same feeder (:func:`p2p_gym.grid.topology.
    feeder_zones`)."""
    if config.green_premium <= 0 and config.local_premium <= 0:
        return None
    n = sc.n_agents
    green = (sc.pv_kwp > 0) & (sc.gen_max_kw <= 0)
    out = np.broadcast_to(config.green_premium * green[None, :], (n, n)).astype(np.float64)
    if config.local_premium > 0:
        if sc.n_platforms > 1:
            zone = np.asarray(sc.platform)
        elif sc.net is not None:
            from p2p_gym.grid.topology import feeder_zones

            zone = feeder_zones(sc.net, sc.bus)
        else:
            raise EnvConfigError(
                f"local_premium: scenario {sc.name!r} has no network to tell local sellers by"
            )
        out = out + config.local_premium * (zone[:, None] == zone[None, :])
    np.fill_diagonal(out, 0.0)
    return out


def _platform_fee(config: MarketConfig, sc: Any) -> np.ndarray | None:
    if config.coordination != "negotiation" or sc.n_platforms == 1:
        return None
    from p2p_gym.sim.multiscale import platform_fee

    return platform_fee(config, sc)


def _operator_ids(config: MarketConfig, sc: Any) -> tuple[str, ...]:
    if config.coordination != "predictive" or config.predictor != "agents":
        return ()
    from p2p_gym.sim.multiscale import operator_ids

    ids = operator_ids(sc)
    clash = sorted(set(ids) & set(sc.agent_ids))
    if clash:
        raise EnvConfigError(f"scenario: agent id {clash[0]!r} is also a platform operator's id")
    return ids


def _mv_lines(sc: Any) -> np.ndarray | None:
    if sc.net is None:
        return None
    net = sc.net
    kv = net.bus.vn_kv.reindex(net.line.from_bus).to_numpy(dtype=float)
    return np.asarray(kv > 1.0)


def _pricing(config: MarketConfig, sc: Any, grid_model: Any) -> Any:
    if config.coordination not in PRICED_COORDINATIONS:
        return None
    from p2p_gym.sim.multiscale import PlatformPricing, substation_fee

    if sc.net is None:
        raise EnvConfigError(
            f"coordination: {config.coordination!r} prices platforms by their place in the grid, and scenario "
            f"{sc.name!r} has none"
        )
    return PlatformPricing(sc, substation_fee(config, sc), grid_model)


def _platform_members(config: MarketConfig, sc: Any) -> tuple[np.ndarray, ...]:
    """Agents of each local market: all agents in one for ``coordination="single"``, else one per platform."""
    if config.coordination == "single" or sc.n_platforms == 1:
        return (np.arange(sc.n_agents),)
    return tuple(np.flatnonzero(sc.platform == p) for p in range(sc.n_platforms))


def _start_days(config: MarketConfig, n_days: int) -> np.ndarray:
    """The days of ``config.day_split``: every HOLDOUT_EVERY-th day is a test day, the others train days."""
    days = np.arange(n_days, dtype=np.int64)
    test = days % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    if config.day_split == "all":
        return days
    chosen = days[test] if config.day_split == "test" else days[~test]
    if chosen.size == 0:
        raise EnvConfigError(
            f"day_split: {config.day_split!r} leaves no start day ({n_days} start days; the test split is every "
            f"{HOLDOUT_EVERY}th day, so it needs ≥ {HOLDOUT_EVERY}); use day_split='all' or a longer scenario"
        )
    return chosen


def _fee_matrix(config: MarketConfig, sc: Any, distance: np.ndarray) -> np.ndarray:
    """float[N, N] fee per kWh between two agents for ``config.fee_type`` (0 on the diagonal)."""
    n = sc.n_agents
    if config.fee_type == "distance":
        fee = config.fee_per_kwh_km * distance
    elif config.fee_type == "uniform":
        fee = np.full((n, n), config.fee_per_kwh)
    else:
        from p2p_gym.grid.topology import feeder_zones

        zone = feeder_zones(sc.net, sc.bus)
        fee = np.where(zone[:, None] != zone[None, :], config.fee_per_kwh, 0.0)
    fee = np.array(fee, dtype=np.float64)
    np.fill_diagonal(fee, 0.0)
    return fee


def _ev_table(sc: Any) -> Any:
    from p2p_gym.sim.assets import EvTable

    return EvTable.of(sc)
