"""The :class:`Scenario` data type and its validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from p2p_gym.errors import ScenarioError

#: Per-agent array fields (shape ``(N,)``) that must be finite and non-negative.
_NONNEG_AGENT_FIELDS = ("battery_kwh", "battery_kw", "pv_kwp", "gen_max_kw", "gen_cost_a")
#: Per-agent flexible-asset fields (shape ``(N,)``, finite, ≥ 0; zeros when the scenario has none).
_FLEX_AGENT_FIELDS = ("hp_max_kw", "hp_band_kwh", "flex_max_kw", "flex_util_a", "flex_util_b", "battery_cost")
#: Columns of :attr:`Scenario.ev_sessions`.
EV_COLUMNS = ("agent", "arrival", "departure", "energy_kwh", "max_kw")
#: Time-by-agent fields (shape ``(T, N)``) that must be finite and non-negative.
_NONNEG_SERIES_FIELDS = ("load_kw", "pv_kw")
#: Time fields (shape ``(T,)``) that must be finite and non-negative.
_PRICE_FIELDS = ("retail_price", "feed_in_price")


@dataclass(frozen=True, eq=False)
class Scenario:
    """One P2P community: who trades, where they sit on the grid, what they consume and produce, at what tariff.

    All arrays are read-only. ``N`` is the number of agents, ``T`` the number of time steps (a full year of
    15-minute steps for the SimBench scenarios: 35,136 steps of 2016, a leap year). Sign convention of the whole
    package: positive power is injected into the grid (the agent sells), negative power is consumed.
    """

    name: str
    """Scenario name as passed to :func:`~p2p_gym.scenarios.load_scenario`."""
    agent_ids: tuple[str, ...]
    """Identifier of each agent, ``N`` entries (used as the PettingZoo agent names)."""
    bus: np.ndarray
    """int[N]: pandapower bus index (``net.bus.index``) at which each agent is connected."""
    load_kw: np.ndarray
    """float[T, N], kW ≥ 0: mean active household/commercial load of each agent during each step."""
    pv_kw: np.ndarray
    """float[T, N], kW ≥ 0: mean photovoltaic generation of each agent during each step (0 at night)."""
    pv_kwp: np.ndarray
    """float[N], kWp ≥ 0: installed PV peak power of each agent (0 = no PV)."""
    battery_kwh: np.ndarray
    """float[N], kWh ≥ 0: usable battery energy capacity of each agent (0 = no battery)."""
    battery_kw: np.ndarray
    """float[N], kW ≥ 0: battery charge/discharge power limit of each agent."""
    retail_price: np.ndarray
    """float[T], currency/kWh: price at which any agent can buy from the grid supplier (outside option)."""
    feed_in_price: np.ndarray
    """float[T], currency/kWh: price at which any agent can sell to the grid supplier (≤ retail price)."""
    step_minutes: int
    """Length of one time step in minutes (energy per step in kWh = kW · step_minutes / 60)."""
    net: Any = field(repr=False)
    """The pandapower network. Each agent is one ``sgen`` named after its agent id at its bus, with ``p_mw``
    its net injection (0 in this pristine copy); other loads and generators of the source grid are removed."""
    gen_max_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], kW ≥ 0: dispatchable generation capacity (conventional units of ``ieee39``; 0 for households)."""
    gen_cost_a: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], currency/kWh² per step ≥ 0: quadratic coefficient of the dispatchable generation cost."""
    gen_cost_b: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], currency/kWh: linear coefficient (marginal cost of the first kWh) of dispatchable generation."""
    battery_efficiency: float = 0.95
    """One-way charge and discharge efficiency of the batteries (round trip = its square)."""
    battery_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], currency/kWh ≥ 0: battery degradation cost per kWh charged or discharged (κ of the linear
    throughput model; 0 = free cycling)."""
    ev_sessions: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    """float[S, 5]: EV charging sessions, columns :data:`EV_COLUMNS` — agent index, arrival step (plugged in from
    its start), departure step (gone from its start; arrival < departure ≤ T), energy needed by departure (kWh)
    and the charger's power limit (kW). Sessions of one agent do not overlap, and each is deliverable
    (energy ≤ max_kw · (departure − arrival) · dt)."""
    hp_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[T, N], kW ≥ 0: heat-pump electric consumption of the reference (profile) operation; 0 without one.
    The heat pump may deviate from it within ``hp_max_kw`` and the energy band ``hp_band_kwh``."""
    hp_max_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], kW ≥ 0: rated electric power of each agent's heat pump (0 = none)."""
    hp_band_kwh: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], kWh ≥ 0: thermal flexibility of the heat pump as an electric-energy band: the running sum of
    (consumption − reference) stays in [−band, +band] (pre-heating above, deferral below)."""
    flex_max_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], kW ≥ 0: flexible demand (price-responsive consumption beyond the inflexible load; 0 = none)."""
    flex_util_a: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], currency/kWh² per step ≥ 0: flexible demand utility u(q) = b·q − ½·a·q² of q kWh in a step
    (the consumers of Le Goff Latimier & Ben Ahmed 2023, eq. 3)."""
    flex_util_b: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float[N], currency/kWh ≥ 0: marginal utility of the first kWh of flexible demand."""
    background_ids: tuple[str, ...] = ()
    """Names of ``K`` non-trading elements of :attr:`net` whose power varies in time (each one ``sgen`` named
    after its id): the loads and generators of the grid that are not agents, e.g. the LV feeders of an MV/LV
    system that are not platforms, aggregated at their transformer. The grid check sets them every step."""
    background_kw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """float[T, K], kW: net injection of each background element per step (positive = export; may be < 0)."""
    platform: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """int[N] in [0, P): the local market (platform) of each agent; all zeros for a single community."""
    platform_names: tuple[str, ...] = ()
    """``P`` platform names (default ``("platform_0",)`` for a single community)."""
    platform_trafo: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """int[P]: index in ``net.trafo`` of each platform's MV/LV transformer (−1 = none, e.g. one LV feeder
    with its own substation as the only platform)."""
    voltage_band: tuple[float, float] = (0.95, 1.05)
    """Bus voltages (p.u.) outside ``(low, high)`` count as violations in the grid check: a planning band of
    ±5 % by default; ``mvlv`` uses EN 50160's ±10 % supply band, since its MV/LV transformers' taps lift the LV
    side above 1.05 p.u. at light load by design."""
    pv_curtailable: bool = True
    """PV may be curtailed below its available power (at no cost) when that pays or is ordered."""
    start_time: str = "2016-01-01 00:00"
    """Time stamp of step 0 (ISO format)."""
    currency: str = "EUR"
    """Currency of all prices."""
    description: str = ""
    """Human-readable description, with the data sources."""

    def __post_init__(self) -> None:
        n = len(self.agent_ids)
        object.__setattr__(self, "agent_ids", tuple(str(a) for a in self.agent_ids))
        if n == 0:
            raise ScenarioError("agent_ids: a scenario needs at least one agent, got 0")
        if len(set(self.agent_ids)) != n:
            raise ScenarioError(f"agent_ids: identifiers must be unique, got {self.agent_ids}")
        for name in ("gen_max_kw", "gen_cost_a", "gen_cost_b", *_FLEX_AGENT_FIELDS):
            if np.asarray(getattr(self, name)).size == 0:
                object.__setattr__(self, name, np.zeros(n))
        if not isinstance(self.step_minutes, (int, np.integer)) or not 1 <= int(self.step_minutes) <= 1440:
            raise ScenarioError(f"step_minutes: must be an integer in [1, 1440], got {self.step_minutes!r}")
        band = self.voltage_band
        try:
            lo, hi = (float(v) for v in band)
        except (TypeError, ValueError):
            raise ScenarioError(f"voltage_band: expected (low, high) in p.u., got {band!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 < lo < hi):
            raise ScenarioError(f"voltage_band: need 0 < low < high (p.u.), got {band!r}")
        object.__setattr__(self, "voltage_band", (lo, hi))
        eff = self.battery_efficiency
        if not isinstance(eff, (float, int)) or not np.isfinite(eff) or not 0.0 < eff <= 1.0:
            raise ScenarioError(f"battery_efficiency: must be a number in (0, 1], got {eff!r}")
        bus = _as_array("bus", self.bus, (n,), dtype=np.int64)
        object.__setattr__(self, "bus", bus)
        load = _as_array("load_kw", self.load_kw, (None, n))
        t = load.shape[0]
        if t == 0:
            raise ScenarioError("load_kw: needs at least one time step, got shape (0, N)")
        for name in _NONNEG_SERIES_FIELDS:
            object.__setattr__(self, name, _nonneg(name, _as_array(name, getattr(self, name), (t, n))))
        for name in (*_NONNEG_AGENT_FIELDS, *_FLEX_AGENT_FIELDS):
            object.__setattr__(self, name, _nonneg(name, _as_array(name, getattr(self, name), (n,))))
        hp = self.hp_kw if np.asarray(self.hp_kw).size else np.zeros((t, n))
        object.__setattr__(self, "hp_kw", _nonneg("hp_kw", _as_array("hp_kw", hp, (t, n))))
        if np.any(self.hp_kw > self.hp_max_kw[None, :] + 1e-9):
            i = int(np.argmax((self.hp_kw > self.hp_max_kw[None, :] + 1e-9).any(axis=0)))
            raise ScenarioError(
                f"hp_kw: agent {self.agent_ids[i]}'s reference exceeds its hp_max_kw {self.hp_max_kw[i]}"
            )
        object.__setattr__(
            self, "ev_sessions", _ev_sessions(self.ev_sessions, n, t, self.step_minutes / 60.0)
        )
        self._validate_background(t)
        self._validate_platforms(n)
        if not isinstance(self.pv_curtailable, (bool, np.bool_)):
            raise ScenarioError(f"pv_curtailable: must be True or False, got {self.pv_curtailable!r}")
        object.__setattr__(self, "gen_cost_b", _as_array("gen_cost_b", self.gen_cost_b, (n,)))
        for name in _PRICE_FIELDS:
            value = getattr(self, name)
            arr = np.full(t, float(value)) if np.ndim(value) == 0 else value
            object.__setattr__(self, name, _nonneg(name, _as_array(name, arr, (t,))))
        if np.any(self.feed_in_price > self.retail_price):
            i = int(np.argmax(self.feed_in_price > self.retail_price))
            raise ScenarioError(
                f"feed_in_price: must not exceed retail_price at any step; at step {i} feed-in "
                f"{self.feed_in_price[i]} > retail {self.retail_price[i]}"
            )
        if self.net is not None:
            buses = set(np.asarray(self.net.bus.index))
            missing = sorted(set(bus.tolist()) - buses)
            if missing:
                raise ScenarioError(f"bus: indices {missing[:5]} are not buses of the network")
        for name in (*_NONNEG_SERIES_FIELDS, *_NONNEG_AGENT_FIELDS, *_FLEX_AGENT_FIELDS, *_PRICE_FIELDS, "bus",
                     "gen_cost_b", "hp_kw", "ev_sessions", "background_kw", "platform",
                     "platform_trafo"):  # fmt: skip
            getattr(self, name).flags.writeable = False

    def _validate_background(self, t: int) -> None:
        ids = tuple(str(b) for b in self.background_ids)
        object.__setattr__(self, "background_ids", ids)
        k = len(ids)
        if len(set(ids)) != k or set(ids) & set(self.agent_ids):
            raise ScenarioError("background_ids: must be unique and distinct from the agent ids")
        raw = self.background_kw if np.asarray(self.background_kw).size else np.zeros((t, k))
        object.__setattr__(self, "background_kw", _as_array("background_kw", raw, (t, k)))
        if k and self.net is not None:
            missing = sorted(set(ids) - set(self.net.sgen.name.astype(str)))
            if missing:
                raise ScenarioError(f"background_ids: no sgen named {missing[:5]} in the network")

    def _validate_platforms(self, n: int) -> None:
        raw = self.platform if np.asarray(self.platform).size else np.zeros(n, dtype=np.int64)
        platform = _as_array("platform", raw, (n,), dtype=np.int64)
        default = tuple(f"platform_{p}" for p in range(int(platform.max()) + 1 if n else 1))
        names = tuple(str(x) for x in self.platform_names)
        if not names or (len(names) < len(default) and names == default[: len(names)]):
            names = default  # none given, or the defaults of fewer platforms carried over by a replace
        p = len(names)
        if len(set(names)) != p:
            raise ScenarioError(f"platform_names: must be unique, got {names[:5]}")
        if platform.min() < 0 or platform.max() >= p:
            raise ScenarioError(f"platform: every entry must be in [0, {p}) (one per platform name)")
        empty = sorted(set(range(p)) - set(platform.tolist()))
        if empty:
            raise ScenarioError(f"platform: platform {names[empty[0]]!r} has no agent")
        trafo_raw = np.asarray(self.platform_trafo)
        if not trafo_raw.size or (trafo_raw.shape != (p,) and np.all(trafo_raw == -1)):
            trafo_raw = np.full(p, -1)  # none given (or the single platform's default after a replace)
        trafo = _as_array("platform_trafo", trafo_raw, (p,), dtype=np.int64)
        if self.net is not None and np.any(trafo >= 0):
            known = set(np.asarray(self.net.trafo.index).tolist())
            bad = sorted(set(trafo[trafo >= 0].tolist()) - known)
            if bad:
                raise ScenarioError(f"platform_trafo: {bad[:5]} are not transformers of the network")
        object.__setattr__(self, "platform", platform)
        object.__setattr__(self, "platform_names", names)
        object.__setattr__(self, "platform_trafo", trafo)

    # ----------------------------------------------------------------------------------------------- derived
    @property
    def n_platforms(self) -> int:
        """Number of platforms (local markets) ``P``; 1 for a single community."""
        return len(self.platform_names)

    @property
    def n_agents(self) -> int:
        """Number of agents ``N``."""
        return len(self.agent_ids)

    @property
    def n_steps(self) -> int:
        """Number of time steps ``T``."""
        return int(self.load_kw.shape[0])

    @property
    def dt_hours(self) -> float:
        """Step length in hours."""
        return self.step_minutes / 60.0

    @property
    def steps_per_day(self) -> int:
        """Number of steps in one day."""
        return 1440 // self.step_minutes

    @property
    def n_days(self) -> int:
        """Number of whole days covered."""
        return self.n_steps // self.steps_per_day

    @property
    def has_flexible_assets(self) -> bool:
        """True when any agent has an EV, a heat pump or flexible demand (beyond batteries and PV)."""
        return bool(len(self.ev_sessions) or self.hp_max_kw.any() or self.flex_max_kw.any())

    @property
    def net_kw(self) -> np.ndarray:
        """float[T, N], kW: PV generation minus load (positive = surplus), before batteries and trading."""
        return self.pv_kw - self.load_kw

    def hour_of_day(self, t: int | np.ndarray) -> np.ndarray:
        """Hour of day (float, 0 ≤ h < 24) at the start of step(s) ``t``."""
        minutes = (np.asarray(t) * self.step_minutes) % 1440
        return minutes / 60.0

    def summary(self) -> dict[str, Any]:
        """Headline figures of the scenario (energies in kWh over the whole horizon)."""
        dt = self.dt_hours
        load = float(self.load_kw.sum() * dt)
        pv = float(self.pv_kw.sum() * dt)
        return {
            "name": self.name,
            "agents": self.n_agents,
            "buses": len(self.net.bus) if self.net is not None else 0,
            "lines": len(self.net.line) if self.net is not None else 0,
            "steps": self.n_steps,
            "step_minutes": self.step_minutes,
            "days": self.n_days,
            "load_kwh": load,
            "pv_kwh": pv,
            "pv_agents": int(np.count_nonzero(self.pv_kwp)),
            "battery_agents": int(np.count_nonzero(self.battery_kwh)),
            "pv_kwp_total": float(self.pv_kwp.sum()),
            "battery_kwh_total": float(self.battery_kwh.sum()),
            "heat_pump_agents": int(np.count_nonzero(self.hp_max_kw)),
            "ev_agents": len(np.unique(self.ev_sessions[:, 0])),
            "ev_sessions": len(self.ev_sessions),
            "flexible_demand_agents": int(np.count_nonzero(self.flex_max_kw)),
            "platforms": self.n_platforms,
            "background_elements": len(self.background_ids),
            "retail_price_mean": float(self.retail_price.mean()),
            "feed_in_price_mean": float(self.feed_in_price.mean()),
            "currency": self.currency,
        }

    def replace(self, **changes: Any) -> Scenario:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)


def _as_array(name: str, value: Any, shape: tuple[int | None, ...], dtype: type = np.float64) -> np.ndarray:
    """Convert ``value`` to a fresh array of ``shape`` (``None`` = any length), finite, or raise ScenarioError.

    A read-only array of the right dtype (a field of another scenario, or a builder's array it has frozen) is
    taken as it is, without a copy: a year of 15-minute steps for 1,000 agents is 280 MB per field.
    """
    frozen = isinstance(value, np.ndarray) and value.dtype == dtype and not value.flags.writeable
    try:
        arr: np.ndarray = value if frozen else np.array(value, dtype=dtype, copy=True)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(
            f"{name}: expected a numeric array of shape {_fmt(shape)}, got {value!r:.80}"
        ) from exc
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        raise ScenarioError(f"{name}: expected shape {_fmt(shape)}, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ScenarioError(f"{name}: contains NaN or infinite values; all entries must be finite")
    if dtype is np.int64 and isinstance(value, np.ndarray) and value.dtype.kind == "f":
        if not np.array_equal(value, arr):
            raise ScenarioError(f"{name}: expected integers, got non-integral values")
    return arr


def _ev_sessions(value: Any, n: int, t: int, dt: float) -> np.ndarray:
    """Validated EV sessions float[S, 5] (see :attr:`Scenario.ev_sessions`), sorted by agent and arrival."""
    arr = _as_array("ev_sessions", value if np.asarray(value).size else np.zeros((0, 5)), (None, 5))
    if not len(arr):
        return arr
    agent, arrive, depart, energy, max_kw = arr.T
    for name, col in (("agent", agent), ("arrival", arrive), ("departure", depart)):
        if not np.array_equal(col, np.round(col)):
            raise ScenarioError(f"ev_sessions: column {name} must hold integers")
    bad = (
        (agent < 0)
        | (agent >= n)
        | (arrive < 0)
        | (depart <= arrive)
        | (depart > t)
        | (energy < 0)
        | (max_kw <= 0)
    )
    if bad.any():
        i = int(np.argmax(bad))
        raise ScenarioError(
            f"ev_sessions: row {i} {arr[i].tolist()} needs 0 ≤ agent < {n}, 0 ≤ arrival < departure ≤ {t}, "
            "energy_kwh ≥ 0 and max_kw > 0"
        )
    short = energy > max_kw * (depart - arrive) * dt * (1 + 1e-9) + 1e-9
    if short.any():
        i = int(np.argmax(short))
        raise ScenarioError(
            f"ev_sessions: row {i} needs {energy[i]:.6g} kWh, more than max_kw × its window delivers"
        )
    arr = arr[np.lexsort((arrive, agent))]
    same = arr[1:, 0] == arr[:-1, 0]
    overlap = same & (arr[1:, 1] < arr[:-1, 2])
    if overlap.any():
        i = int(np.argmax(overlap)) + 1
        raise ScenarioError(f"ev_sessions: sessions of agent {int(arr[i, 0])} overlap (merge them into one)")
    return arr


def _nonneg(name: str, arr: np.ndarray) -> np.ndarray:
    if np.any(arr < 0):
        raise ScenarioError(f"{name}: must be ≥ 0, got minimum {arr.min():.6g}")
    return arr


def _fmt(shape: tuple[int | None, ...]) -> str:
    return (
        "(" + ", ".join("T" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    )
