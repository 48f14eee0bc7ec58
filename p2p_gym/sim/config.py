"""``MarketConfig``: every option of the market simulation, declared once.

Both environments, ``p2p-gym run``, ``p2p-gym eval`` and ``p2p-gym train`` take a :class:`MarketConfig`; their
command-line flags are derived from its fields (:func:`add_config_arguments`), so an option exists in exactly one
place. A config is frozen, validated once in ``__post_init__`` (errors name the field, the value and the allowed
range) and round-trips through plain dicts and YAML (:meth:`MarketConfig.to_dict`, :meth:`MarketConfig.from_dict`).

Checks that need the scenario (``episode_steps`` ≤ the scenario's length, ``start_day``, ``peer_k`` ≤ N − 1, the
shape of a ``preference`` matrix) run when the simulation is built (:func:`p2p_gym.sim.build`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from p2p_gym.errors import EnvConfigError

#: Call-market and matching mechanisms (bids and asks) of :func:`p2p_gym.market.clear`.
AUCTIONS: tuple[str, ...] = ("uniform", "pay_as_bid", "cda", "bilateral", "mcafee", "vcg")
#: Community pricing rules (no bids; prices from the rule).
COMMUNITY_RULES: tuple[str, ...] = ("mmr", "sdr", "bill_sharing")
#: Game-theoretic mechanisms (:mod:`p2p_gym.games`; Suthar, Cherukuri & Pindoriya 2023, §4.1): they take the
#: tariffs as the agents' outside option.
GAMES: tuple[str, ...] = ("nash_bargaining", "shapley", "sharing_game", "stackelberg")
#: Every mechanism the simulation clears (:data:`p2p_gym.market.MECHANISMS` and :data:`GAMES`).
MECHANISMS: tuple[str, ...] = AUCTIONS + COMMUNITY_RULES + GAMES
#: What the Stackelberg leader maximises (``leader_objective``).
LEADER_OBJECTIVES: tuple[str, ...] = ("margin", "welfare")
GRIDS: tuple[str, ...] = ("none", "linear", "ac")
GRID_POLICIES: tuple[str, ...] = ("report", "block", "fee", "preblock", "redirect")
#: Grid policies that act before the market on the forecast no-P2P state (bilateral matching only).
PRE_MARKET_POLICIES: tuple[str, ...] = ("preblock", "redirect")
#: Network fee structures of ``grid_policy="fee"`` (Le Goff Latimier & Ben Ahmed 2023, §3.3, eq. 12).
FEE_TYPES: tuple[str, ...] = ("distance", "uniform", "zonal")
#: What happens to the collected network fees.
FEE_REDISTRIBUTIONS: tuple[str, ...] = ("none", "equal", "flexibility")
REWARDS: tuple[str, ...] = ("money", "savings")
#: How physical dispatch relates to the market (``dispatch``).
DISPATCHES: tuple[str, ...] = ("fixed", "committed")
#: Welfare optima the simulation can report efficiency against (``compute_optimum``).
OPTIMA: tuple[str, ...] = ("none", "step", "episode")
#: Which days episodes start on when no ``start_day`` is set (``day_split``).
DAY_SPLITS: tuple[str, ...] = ("all", "train", "test")
#: ``day_split``: every HOLDOUT_EVERY-th start day (days HOLDOUT_EVERY − 1, 2·HOLDOUT_EVERY − 1, …) is a test day.
HOLDOUT_EVERY = 5
#: How the local markets (platforms) of a multi-platform scenario relate (``coordination``; Morstyn, Savelli &
#: Hepburn 2021, One Earth 4(5):629–638): one market of all agents, or each platform its own market.
COORDINATIONS: tuple[str, ...] = ("single", "isolated", "negotiation", "pricing", "predictive")
#: Architectures in which each platform settles what it does not match locally at a per-platform upstream price.
PRICED_COORDINATIONS: tuple[str, ...] = ("pricing", "predictive")
#: How the platform operators predict the upstream energy price (``coordination="predictive"``).
PREDICTORS: tuple[str, ...] = ("expected", "persistence", "agents")
#: How the platform operators' market is solved (``negotiation``).
NEGOTIATIONS: tuple[str, ...] = ("admm", "admm_async", "centralized")
#: How the stored energy left at the end of an episode counts (``terminal_value``).
TERMINAL_VALUES: tuple[str, ...] = ("free", "valued")
#: What the agents know of their load and PV when they act (``forecast``; :mod:`p2p_gym.scenarios.forecast`).
FORECAST_KINDS: tuple[str, ...] = ("perfect", "persistence", "day_ahead")


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None, lo: float | None = None,
         hi: float | None = None) -> Any:  # fmt: skip
    """A dataclass field with its help text and allowed values (read by the CLI and the validation)."""
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class MarketConfig:
    """Options of one market simulation (one field per option; the docstrings are the CLI's help texts)."""

    scenario: str = _opt("default", "scenario name (`p2p-gym scenarios` lists them)")
    mechanism: str = _opt("uniform", "market mechanism", MECHANISMS)
    grid: str = _opt(
        "linear", "grid check: none, linear (sensitivities) or ac (pandapower AC power flow)", GRIDS
    )
    peer_selection: bool = _opt(False, "add one score per other agent to the action (partner choice)")
    episode_steps: int = _opt(96, "steps per episode (96 = one day of 15-minute steps)", lo=1)
    peer_k: int | None = _opt(None, "accept the k highest-scored peers instead of those scored > 0", lo=1)
    grid_policy: str = _opt(
        "report",
        "DSO rule: report violations; block cleared trades that load stressed lines; a network fee; preblock "
        "(forbid, before the market, the seller→buyer pairs that would load an at-risk line); redirect (make those "
        "pairs costlier and relieving pairs cheaper in the bilateral matching)",
        GRID_POLICIES,
    )
    block_threshold_pct: float = _opt(
        80.0,
        "line loading (%) from which a line is at risk (grid_policy block, preblock, redirect)",
        lo=0.0,
        hi=1e6,
    )
    redirect_w: float = _opt(
        0.2, "grid_policy=redirect: the multiplier W of the preference update", lo=0.0, hi=1.0
    )
    redirect_mode: str = _opt(
        "multiplicative",
        "grid_policy=redirect: β·(1+W)^k·(1−W)^m (multiplicative, EUniversal D5.3 §5.3) or β + W·spread·(k − m)",
        ("multiplicative", "additive"),
    )
    flex_market: bool = _opt(
        False,
        "after the P2P market and the DSO's rule, the DSO buys up/down flexibility from what the agents' devices "
        "still offer to remove congestion (local flexibility market; needs dispatch=committed and a grid)",
    )
    flex_offer_price: float = _opt(
        0.05, "flex_market: price of every flexibility offer, currency per kWh activated", lo=0.0, hi=1e6
    )
    flex_margin_pct: float = _opt(
        0.0, "flex_market: the DSO targets line loading ≤ 100 − margin %", lo=0.0, hi=99.0
    )
    fee_per_kwh_km: float = _opt(
        0.05, "network fee of grid_policy=fee, currency per kWh and km", lo=0.0, hi=1e6
    )
    fee_type: str = _opt(
        "distance",
        "fee structure: distance (fee_per_kwh_km × path length), uniform (fee_per_kwh on every trade) or zonal "
        "(fee_per_kwh on trades between different feeders)",
        FEE_TYPES,
    )
    fee_per_kwh: float = _opt(0.02, "rate of the uniform and zonal fees, currency per kWh", lo=0.0, hi=1e6)
    fee_fixed: float = _opt(
        0.0, "trade-independent fee, currency per agent and step in which it places an order", lo=0.0, hi=1e6
    )
    fee_redistribution: str = _opt(
        "none",
        "collected fees: none (kept by the DSO), equal (shared equally) or flexibility (pro rata to each agent's "
        "flexibility service, |injection − inflexible net|)",
        FEE_REDISTRIBUTIONS,
    )
    grid_penalty: float = _opt(0.0, "currency per % point of line overflow (0 = no penalty)", lo=0.0, hi=1e9)
    reward: str = _opt("money", "reward: money (profit) or savings (vs the grid-only bill)", REWARDS)
    k: float = _opt(0.5, "k-pricing weight: price = k·bid + (1 − k)·ask", lo=0.0, hi=1.0)
    preference: Any = _opt(None, "bilateral preference: none, 'distance' or an N×N matrix of β ≥ 0")  # noqa: RUF009
    green_premium: float = _opt(
        0.0,
        "mechanism=bilateral, product differentiation: what every buyer pays on top of its bid for energy from a "
        "green seller (PV owners without a dispatchable generator), currency/kWh",
        lo=0.0,
        hi=1e6,
    )
    local_premium: float = _opt(
        0.0,
        "mechanism=bilateral, product differentiation: what every buyer pays on top of its bid for energy from a "
        "local seller (the same platform of a multi-platform scenario, else the same feeder), currency/kWh",
        lo=0.0,
        hi=1e6,
    )
    bilateral_candidates: int | None = _opt(
        None,
        "bilateral: match over sparse candidate pairs (each order's k most profitable counterparts and its k "
        "merit-order neighbours each side) instead of every pair: O(N·k) LP columns instead of O(N²); exact without "
        "preferences and partner choices, an approximation with them (None = exact)",
        lo=1,
    )
    preference_per_km: float = _opt(
        0.02, "scale of the 'distance' preference, currency/kWh per km", lo=0.0, hi=1e6
    )
    compute_optimum: str = _opt(
        "none",
        "welfare optimum for efficiency: none; step (each interval, positions as played); episode (the whole "
        "episode with perfect foresight, batteries dispatched optimally; solved at reset). true = step",
        OPTIMA,
    )
    forecast_steps: int = _opt(0, "steps of own load/PV forecasts in the observation", lo=0, hi=96 * 7)
    book_stats: bool = _opt(False, "add last step's public book statistics to the observation")
    peer_obs: bool = _opt(
        False,
        "with peer_selection: add, per other agent in peer-score order, its line-path distance (÷ the largest) and "
        "PV peak (÷ the largest) to the observation, so a shared policy can tell its peers apart",
    )
    start_day: int | None = _opt(None, "first day of every episode (default: a seeded random day)", lo=0)
    day_split: str = _opt(
        "all",
        "days random episodes start on: all; test (every fifth day: 4, 9, 14, …, held out for evaluation); train "
        "(the other days). An explicit start_day overrides it",
        DAY_SPLITS,
    )
    initial_soc: float = _opt(0.5, "initial battery state of charge (fraction)", lo=0.0, hi=1.0)
    terminal_value: str = _opt(
        "free",
        "stored energy at the episode's end: free (not valued: emptying batteries and deferring heat at the end "
        "pays); valued (the change of each battery's charge and heat-pump deviation since the start is settled at "
        "the last step's retail (deficit) / feed-in (surplus) price, in the last reward and in the episode optimum)",
        TERMINAL_VALUES,
    )
    dispatch: str = _opt(
        "fixed",
        "fixed: positions and battery set-points are fixed before clearing (trades move money); committed: orders "
        "are physical commitments that flexible assets (battery, EV, heat pump, flexible demand, PV curtailment, "
        "generators) deliver after clearing and the DSO's rule",
        DISPATCHES,
    )
    coordination: str = _opt(
        "single",
        "multi-platform scenarios (e.g. mvlv): single (one market of all agents, platforms ignored); isolated (each "
        "platform clears its own market; what it does not match goes to the supplier at the tariff); negotiation "
        "(each platform clears its own market, then the platform operators trade the residual orders with each "
        "other by ADMM, paying upstream_fee_per_kwh_km for the MV path); pricing (the DSO publishes day-ahead "
        "locational import/export prices per platform from the expected dispatch; each platform clears against "
        "them and settles its residual with the DSO at them); predictive (each platform operator clears against its "
        "own prediction of the upstream price, see predictor, and settles its residual ex post at the realised "
        "locational price)",
        COORDINATIONS,
    )
    predictor: str = _opt(
        "expected",
        "coordination=predictive: the operators' upstream price prediction: expected (from the expected dispatch, "
        "as the DSO would price it), persistence (the last realised price) or agents (learned or scripted operator "
        "agents set it, one step ahead)",
        PREDICTORS,
    )
    pad_spaces: bool = _opt(
        False,
        "give every agent the same observation and action space (platform operators and prosumers zero-padded to "
        "the larger, with a last observation column = 1 for operators), as MARL libraries with one shared space "
        "need; the batched env requires it when operators are agents",
    )
    negotiation: str = _opt(
        "admm",
        "coordination=negotiation: decentralised ADMM; admm_async (each operator awake with probability 0.5 per "
        "round, Wei & Ozdaglar 2013; the wake-ups are seeded by the scenario step); or the centralised LP (HiGHS)",
        NEGOTIATIONS,
    )
    upstream_fee_per_kwh_km: float = _opt(
        0.002,
        "network fee of the system level, currency per kWh and km of MV line: coordination=negotiation: of an "
        "inter-platform trade over the path between the platforms' transformers, paid by each side; pricing and "
        "predictive: the spread of a platform's import (+) and export (−) price over the path from the substation "
        "to its transformer",
        lo=0.0,
        hi=1e6,
    )
    leader_objective: str = _opt(
        "margin",
        "mechanism=stackelberg: the community manager, as leader, sets the internal buy and sell prices to maximise "
        "its own margin or the community's welfare",
        LEADER_OBJECTIVES,
    )
    forecast: str = _opt(
        "perfect",
        "what the agents know of this step's load and PV when they act (observation, orders, device plans): perfect "
        "(the realisation); persistence (the same step one day earlier); day_ahead (the realisation plus a synthetic "
        "error with the statistics of the persistence error, drawn at reset from the env's generator). The physical "
        "step uses the realisation; the deviation from the committed position is settled at imbalance prices",
        FORECAST_KINDS,
    )
    forecast_skill: float = _opt(
        1.0,
        "forecast=day_ahead: the error as a multiple of the persistence error's (0 = perfect)",
        lo=0.0,
        hi=10.0,
    )
    ev_arrival_sigma_h: float = _opt(
        1.0,
        "forecast=day_ahead: standard deviation (hours, times forecast_skill) of an EV's actual arrival around the "
        "arrival its owner planned for (the scenario's sessions are the realisation; 0 = EV sessions known)",
        lo=0.0,
        hi=24.0,
    )
    imbalance_penalty: float = _opt(
        0.0,
        "dual-price imbalance settlement: a short agent pays retail + penalty per kWh missing, a long one receives "
        "max(feed-in − penalty, 0) per kWh in excess (currency/kWh)",
        lo=0.0,
        hi=1e6,
    )
    reserve: bool = _opt(
        False,
        "a reserve market after the energy market: three more action entries offer up/down reserve capacity (shares "
        "of the devices' headroom after the energy plan) and its price; the system's reserve requirement is sized "
        "from the forecast error model at reserve_confidence; accepted reserve is activated against the realised "
        "system imbalance (needs dispatch=committed and a forecast other than perfect)",
    )
    reserve_confidence: float = _opt(
        0.95,
        "reserve: the confidence δ that the reserve covers the system's forecast error",
        lo=0.5,
        hi=0.9999,
    )
    reserve_price_cap: float = _opt(
        0.05, "reserve: the highest capacity price an offer can ask, currency per kW and hour", lo=0.0, hi=1e6
    )
    scenario_overrides: dict[str, Any] = _opt({}, "keyword overrides of the scenario builder")  # noqa: RUF009

    def __post_init__(self) -> None:
        if isinstance(self.compute_optimum, (bool, np.bool_)):  # the boolean form of earlier versions
            object.__setattr__(self, "compute_optimum", "step" if self.compute_optimum else "none")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise EnvConfigError(
                    f"{f.name}: must be one of {list(choices)}, got {getattr(self, f.name)!r}"
                )
        if not isinstance(self.scenario, str) or not self.scenario:
            raise EnvConfigError(f"scenario: must be a scenario name, got {self.scenario!r}")
        for name in ("peer_selection", "book_stats", "flex_market", "pad_spaces", "reserve", "peer_obs"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise EnvConfigError(f"{name}: must be true or false, got {value!r}")
            object.__setattr__(self, name, bool(value))
        if self.peer_obs and not self.peer_selection:
            raise EnvConfigError(
                "peer_obs: describes the peers whose scores the agents choose; needs peer_selection=true"
            )
        _int(self, "episode_steps", 1, 10**9)
        _int(self, "forecast_steps", 0, 96 * 7)
        if self.peer_k is not None:
            _int(self, "peer_k", 1, 10**9)
        if self.bilateral_candidates is not None:
            _int(self, "bilateral_candidates", 1, 10**9)
        if self.start_day is not None:
            _int(self, "start_day", 0, 10**9)
        for name in ("block_threshold_pct", "fee_per_kwh_km", "grid_penalty", "k", "preference_per_km",
                     "initial_soc", "fee_per_kwh", "fee_fixed", "redirect_w", "flex_offer_price",
                     "flex_margin_pct", "upstream_fee_per_kwh_km", "forecast_skill", "imbalance_penalty",
                     "ev_arrival_sigma_h", "green_premium", "local_premium",
                     "reserve_confidence", "reserve_price_cap"):  # fmt: skip
            meta = _meta(name)
            _num(self, name, meta["lo"], meta["hi"])
        if self.grid_policy in PRE_MARKET_POLICIES and (self.grid == "none" or self.mechanism != "bilateral"):
            raise EnvConfigError(
                f"grid_policy: {self.grid_policy!r} forbids or reprices seller→buyer pairs, so it needs "
                f"mechanism='bilateral' and grid='linear' or 'ac', got mechanism={self.mechanism!r}, grid={self.grid!r}"
            )
        if self.coordination in ("negotiation", *PRICED_COORDINATIONS) and self.grid_policy not in (
            "report",
            "fee",
        ):
            raise EnvConfigError(
                f"coordination: {self.coordination!r} works with grid_policy 'report' or 'fee' (the DSO's trade "
                f"rules act on the local trades only), got grid_policy={self.grid_policy!r}"
            )
        if (self.green_premium > 0 or self.local_premium > 0) and self.mechanism != "bilateral":
            raise EnvConfigError(
                "green_premium, local_premium: product differentiation prices each seller–buyer pair, so it needs "
                f"mechanism='bilateral', got mechanism={self.mechanism!r}"
            )
        if self.flex_market and (self.grid == "none" or self.dispatch != "committed"):
            raise EnvConfigError(
                "flex_market: needs dispatch='committed' (devices that can move) and grid='linear' or 'ac', got "
                f"dispatch={self.dispatch!r}, grid={self.grid!r}"
            )
        if self.reserve and (self.dispatch != "committed" or self.forecast == "perfect"):
            raise EnvConfigError(
                "reserve: needs dispatch='committed' (devices that hold and deliver reserve) and forecast "
                f"'persistence' or 'day_ahead' (errors to cover), got dispatch={self.dispatch!r}, "
                f"forecast={self.forecast!r}"
            )
        if self.predictor == "agents" and self.coordination != "predictive":
            raise EnvConfigError(
                f"predictor: 'agents' (operator agents) needs coordination='predictive', got {self.coordination!r}"
            )
        if self.grid_policy == "block" and self.grid == "none":  # the fee needs only the path lengths
            raise EnvConfigError("grid_policy: 'block' needs grid='linear' or 'ac', got grid='none'")
        if self.grid_penalty > 0 and self.grid == "none":
            raise EnvConfigError(f"grid_penalty: needs grid='linear' or 'ac' (got grid='none'), or 0, "
                                 f"got {self.grid_penalty!r}")  # fmt: skip
        pref = self.preference
        if pref is not None and not isinstance(pref, str):
            try:
                arr = np.asarray(pref, dtype=float)
            except (TypeError, ValueError):
                raise EnvConfigError(
                    f"preference: must be None, 'distance' or float[N, N], got {pref!r}"
                ) from None
            if (
                arr.ndim != 2
                or arr.shape[0] != arr.shape[1]
                or not np.all(np.isfinite(arr))
                or np.any(arr < 0)
            ):
                raise EnvConfigError(
                    f"preference: expected a finite square float[N, N] ≥ 0, got shape {arr.shape}"
                )
            object.__setattr__(self, "preference", tuple(tuple(float(x) for x in row) for row in arr))
        elif isinstance(pref, str) and pref != "distance":
            raise EnvConfigError(f"preference: must be None, 'distance' or float[N, N], got {pref!r}")
        if not isinstance(self.scenario_overrides, Mapping):
            raise EnvConfigError(f"scenario_overrides: must be a mapping, got {self.scenario_overrides!r}")
        object.__setattr__(self, "scenario_overrides", dict(self.scenario_overrides))

    # ------------------------------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        """Plain data (str, int, float, bool, None, lists, dicts): YAML/JSON-safe, and ``from_dict`` of it is equal."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if isinstance(out["preference"], tuple):
            out["preference"] = [list(row) for row in out["preference"]]
        out["scenario_overrides"] = _plain(out["scenario_overrides"])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MarketConfig:
        """A config from a mapping of field names (unknown keys raise, naming them)."""
        if not isinstance(data, Mapping):
            raise EnvConfigError(f"config: expected a mapping of options, got {type(data).__name__}")
        unknown = sorted(set(data) - set(field_names()))
        if unknown:
            raise EnvConfigError(f"{unknown[0]}: unknown option; options are {list(field_names())}")
        return cls(**dict(data))

    def to_yaml(self) -> str:
        """The config as a YAML document (``from_yaml`` of it is equal)."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> MarketConfig:
        """A config from a YAML document of plain data (tags that build Python objects are refused)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise EnvConfigError(f"config: not plain YAML data ({str(exc).splitlines()[0]})") from None
        return cls.from_dict(data or {})

    def replace(self, **changes: Any) -> MarketConfig:
        """A copy with some options changed (validated again)."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise EnvConfigError(f"{unknown[0]}: unknown option; options are {list(field_names())}")
        return dataclasses.replace(self, **changes)

    @property
    def preference_matrix(self) -> np.ndarray | None:
        """float[N, N] of an explicit preference, else None."""
        return np.asarray(self.preference, dtype=float) if isinstance(self.preference, tuple) else None


#: Positional order of :class:`~p2p_gym.envs.P2PMarketEnv` / :func:`p2p_gym.parallel_env` arguments after the
#: scenario (kept for the PettingZoo-style ``parallel_env(scenario, mechanism, grid, ...)`` call).
POSITIONAL: tuple[str, ...] = ("mechanism", "grid", "peer_selection", "episode_steps")


def field_names() -> tuple[str, ...]:
    """Names of every option of :class:`MarketConfig`, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(MarketConfig))


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a mapping into (MarketConfig options, the rest)."""
    names = set(field_names())
    return {k: v for k, v in options.items() if k in names}, {
        k: v for k, v in options.items() if k not in names
    }


# -------------------------------------------------------------------------------------------------- CLI
def add_config_arguments(
    parser: argparse.ArgumentParser,
    defaults: MarketConfig | None = None,
    exclude: tuple[str, ...] = (),
    group_title: str = "market options",
) -> None:
    """Add one ``--flag`` per :class:`MarketConfig` field (help and choices from the field) to ``parser``.

    Flags default to ``None`` (= not given), so :func:`config_from_args` can layer them over a YAML file and the
    dataclass defaults. Booleans take ``--flag`` / ``--no-flag``; ``scenario_overrides`` and ``preference``
    take ``KEY=VALUE`` (repeatable) and a name, respectively.
    """
    base = defaults or MarketConfig()
    group = parser.add_argument_group(group_title)
    for f in dataclasses.fields(MarketConfig):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(base, f.name)
        shown = "" if default is None or "default" in f.metadata["help"] else f" (default: {default!r})"
        text = f"{f.metadata['help']}{shown}".replace("%", "%%")  # argparse %-formats help texts
        if f.name == "scenario_overrides":
            group.add_argument(flag, action="append", metavar="KEY=VALUE", default=None, help=text)
        elif isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.metadata.get("choices"):
            group.add_argument(flag, choices=f.metadata["choices"], default=None, help=text)
        elif f.name == "preference":
            group.add_argument(flag, choices=["distance"], default=None, help=text)
        else:
            kind = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
            metavar = {int: "N", float: "X"}.get(kind, "NAME")
            group.add_argument(flag, type=kind, default=None, metavar=metavar, help=text)


def config_from_args(
    args: argparse.Namespace, base: MarketConfig | Mapping[str, Any] | None = None
) -> MarketConfig:
    """The :class:`MarketConfig` of parsed flags layered over ``base`` (a config, a dict, e.g. from YAML)."""
    data = base.to_dict() if isinstance(base, MarketConfig) else dict(base or {})
    for name in field_names():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name == "scenario_overrides":
            value = {**data.get(name, {}), **_parse_overrides(value)}
        data[name] = value
    return MarketConfig.from_dict(data)


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise EnvConfigError(f"scenario_overrides: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key] = raw
    return out


# -------------------------------------------------------------------------------------------- validation
def _meta(name: str) -> Mapping[str, Any]:
    return next(f.metadata for f in dataclasses.fields(MarketConfig) if f.name == name)


def _int(cfg: MarketConfig, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or not lo <= value <= hi
    ):
        raise EnvConfigError(f"{name}: must be an integer in [{lo}, {hi}], got {value!r}")
    object.__setattr__(cfg, name, int(value))


def _num(cfg: MarketConfig, name: str, lo: float, hi: float) -> None:
    value = getattr(cfg, name)
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not math.isfinite(float(value)) or not lo <= float(value) <= hi:
        raise EnvConfigError(f"{name}: must be a number in [{lo}, {hi}], got {value!r}")
    object.__setattr__(cfg, name, float(value))


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays and tuples as plain Python data (for YAML)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
