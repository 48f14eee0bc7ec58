"""The shipped SimBench extract with flexible assets: heat pumps, EV charging, PV batteries and PV.

SimBench (Meinecke et al. 2020, "SimBench—A Benchmark Dataset of Electric Power Systems to Compare Innovative
Solutions Based on Power Flow Analysis", Energies 13(12):3290; data https://simbench.de, ODbL v1.0). The extract
in ``p2p_gym/scenarios/data`` holds the scenario-2 ("future") low-voltage grid ``1-LV-rural3--2-sw`` and the
2016 15-minute active-power profiles (35,136 steps) its elements use; it is rebuilt by
``scripts/build_simbench_flex_extract.py``, whose docstring gives the choice of the grid and the kind rule.

Elements (``flex_elements``): 153 loads (113 household ``H0-*``, 5 commercial ``G*``, 18 heat pumps
``Air_*``/``Soil_*``, 17 EV chargers: 14 home ``HLS_*`` and 3 workplace ``APLS_*``), 27 PV sgens and 16 storage
units. A SimBench storage unit is a PV plant with a home battery run for maximum self-consumption; its profile
is the unit's net injection, and its battery holds ``e_kwh``.

Scale convention (as ``p2p_gym.scenarios.data``): ``flex_profile(name)`` is normalised, and an element's power
in kW is ``flex_profile(profile) × p_kw``: consumption for a load, injection for an sgen or a storage unit.
Load and heat-pump profiles peak at 1, EV profiles at ≈ 0.99 of the charger rating, PV and storage profiles
are kW per kW of ``p_kw`` (peak ≈ 0.6). Reactive power of a load follows its ``q_mvar``/``p_mw`` ratio.

Derived flexibility (rules below, constants at module level):

* ``ev_sessions``: charging sessions of each EV charger from its SimBench charging-power profile. A session is a
  contiguous run of non-zero charging power, runs separated by fewer than ``EV_MERGE_GAP_STEPS`` idle steps being
  merged. Arrival = the run's first step; energy = the integral of the profile over the session; ``max_kw`` =
  the largest 15-minute power in the session (what the vehicle drew, ≤ the charger rating). Departure (the
  first step the vehicle is gone) is an assumption, since SimBench gives charging power, not plug-in time:
  a home charger (``HLS_*``) that starts in the evening or night (``HOME_EVENING_HOUR`` ≤ h or h <
  ``HOME_NIGHT_END_HOUR``) is unplugged at the next ``HOME_DEPARTURE_HOUR`` (07:00); one that starts in the day
  stays ``HOME_DAY_DWELL_HOURS`` (4 h) after arrival; a workplace charger (``APLS_*``) stays
  ``WORK_DWELL_HOURS`` (8 h). The departure is then cut at the next session's arrival and the year's end, and
  never falls before the run's end, so every session is deliverable at ``max_kw`` within [arrival, departure).
  On the shipped grid: 2,996 sessions, 0.48 per charger per day, 4.1 kWh each on average, mean dwell 6.5 h
  and mean flexibility (dwell − energy/max_kw) 5.6 h.
* ``heat_pump_band``: each heat pump's SimBench electric profile (kW) and a virtual-storage band. With a 1R1C
  building, T' = (T_out − T)/(R·C) + COP·p/C, letting the indoor temperature deviate by ±ΔT from the
  trajectory the SimBench profile keeps stores ±C·ΔT of heat, ±C·ΔT/COP of electricity. A heat pump sized for
  the design heat load has COP·P_rated = (T_in − T_design)/R, so C/COP = P_rated·τ_b/ΔT_design with the
  building time constant τ_b = R·C. The band is therefore ``band_kwh = P_rated · τ_b · ΔT / ΔT_design``:
  with the assumed τ_b = 40 h (a medium-weight house), ΔT = 1 K and ΔT_design = 32 K (20 °C inside, −12 °C
  design outside) it is ``HP_BAND_HOURS`` = 1.25 h of rated power. A dispatch p_t ∈ [0, P_rated] is
  admissible while the cumulative deviation Σ_{s≤t} (p_s − base_s)·Δt stays in [−band_kwh, +band_kwh]
  (pre-heating above, deferral below). The SimBench heat-pump profiles are zero every day from 08:00 to 09:15,
  11:30 to 12:45 and 17:00 to 18:45 (blocking periods, as German grid operators may impose on heat-pump
  tariffs); the band does not model them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from p2p_gym.errors import ScenarioError
from p2p_gym.scenarios.data import set_tap_changer_type

DATA_DIR = Path(__file__).resolve().parent / "data"
FLEX_CODE = "1-LV-rural3--2-sw"
STEP_HOURS = 0.25

#: EV sessions: runs separated by fewer idle steps than this (1 h) are one session.
EV_MERGE_GAP_STEPS = 4
#: A home charging session starting at or after this hour, or before HOME_NIGHT_END_HOUR, stays overnight.
HOME_EVENING_HOUR = 17.0
HOME_NIGHT_END_HOUR = 5.0
#: An overnight home session ends at this hour of the next morning (or of the same morning after midnight).
HOME_DEPARTURE_HOUR = 7.0
#: A daytime home session stays this long after arrival.
HOME_DAY_DWELL_HOURS = 4.0
#: A workplace session stays this long after arrival (a working day).
WORK_DWELL_HOURS = 8.0
#: Heat-pump band in hours of rated electric power: τ_b·ΔT/ΔT_design = 40 h · 1 K / 32 K.
HP_BAND_HOURS = 40.0 * 1.0 / 32.0


@dataclasses.dataclass(frozen=True)
class FlexElements:
    """Every load, sgen and storage unit of an extract (N of them: loads, then sgens, then storage units)."""

    element: np.ndarray  # str[N]: "load" | "sgen" | "storage", the pandapower table
    index: np.ndarray  # int[N]: row index in that table
    name: np.ndarray  # str[N]: SimBench element name
    bus: np.ndarray  # int[N]: pandapower bus index
    kind: np.ndarray  # str[N]: household | commercial | heat_pump | ev | other | pv | pv_battery
    profile: np.ndarray  # str[N]: SimBench profile name, for flex_profile
    p_kw: np.ndarray  # float[N]: rated active power ≥ 0 (load / sgen p_mw, storage |p_mw|), kW
    sn_kva: np.ndarray  # float[N]: rated apparent power (sR), kVA
    e_kwh: np.ndarray  # float[N]: battery capacity (storage max_e_mwh), 0 for loads and sgens

    def __len__(self) -> int:
        return len(self.element)

    @property
    def injects(self) -> np.ndarray:
        """bool[N]: the element's profile × p_kw is an injection (sgen, storage), not a consumption (load)."""
        return self.element != "load"

    def of_kind(self, kind: str) -> np.ndarray:
        """int[K]: positions of the elements of one kind."""
        return np.flatnonzero(self.kind == kind)


@dataclasses.dataclass(frozen=True)
class EVSessions:
    """Charging sessions of all EV chargers, struct-of-arrays over S sessions (sorted by load, then arrival)."""

    load: np.ndarray  # int[S]: net.load index of the charger (= its position in flex_elements)
    arrival: np.ndarray  # int[S]: first step of the session (vehicle plugged in)
    charge_end: np.ndarray  # int[S]: step after the session's last non-zero SimBench charging step
    departure: np.ndarray  # int[S]: first step the vehicle is gone (exclusive end), ≥ charge_end
    energy_kwh: np.ndarray  # float[S]: energy the session charges (the SimBench profile's integral)
    max_kw: np.ndarray  # float[S]: largest 15-minute charging power in the session, ≤ the charger rating

    def __len__(self) -> int:
        return len(self.load)

    @property
    def dwell_hours(self) -> np.ndarray:
        """float[S]: plug-in time (departure − arrival), h."""
        return (self.departure - self.arrival) * STEP_HOURS

    @property
    def flexibility_hours(self) -> np.ndarray:
        """float[S]: dwell minus the time to charge the energy at max_kw, h (≥ 0)."""
        return self.dwell_hours - self.energy_kwh / self.max_kw


@dataclasses.dataclass(frozen=True)
class HeatPumpBands:
    """Electric profiles and virtual-storage bands of the H heat pumps."""

    load: np.ndarray  # int[H]: net.load index of the heat pump
    rated_kw: np.ndarray  # float[H]: rated electric power (load p_mw), kW
    profile_kw: np.ndarray  # float[T, H]: SimBench electric consumption, kW
    band_kwh: np.ndarray  # float[H]: admissible |cumulative deviation| from profile_kw, kWh (electric)


def _check_code(code: str) -> None:
    if _path(code, "meta") is None:
        shipped = sorted(p.name.split("_meta.json")[0] for p in DATA_DIR.glob("*-2-*_meta.json*"))
        raise ScenarioError(f"flex extract code={code!r} is not shipped; available: {shipped}")


def _path(code: str, part: str) -> Path | None:
    """The extract's ``<code>_<part>.json`` file, or its gzip-compressed ``.json.gz`` (MV/LV extracts)."""
    for suffix in (".json", ".json.gz"):
        path = DATA_DIR / f"{code}_{part}{suffix}"
        if path.exists():
            return path
    return None


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    return path.read_text()


@functools.lru_cache(maxsize=4)
def _meta(code: str) -> dict[str, Any]:
    _check_code(code)
    path = _path(code, "meta")
    assert path is not None
    meta: dict[str, Any] = json.loads(_read_text(path))
    return meta


@functools.lru_cache(maxsize=4)
def _profiles(code: str) -> dict[str, np.ndarray]:
    _check_code(code)
    out: dict[str, np.ndarray] = {}
    with np.load(DATA_DIR / f"{code}_profiles.npz", allow_pickle=False) as z:
        for group in ("load", "pv", "storage"):
            values = z[f"{group}_values"].astype(np.float64) / 65535.0 * z[f"{group}_scale"]
            for i, n in enumerate(z[f"{group}_names"]):
                col = np.ascontiguousarray(values[:, i])
                col.flags.writeable = False
                out[str(n)] = col
    return out


def flex_profile(name: str, code: str = FLEX_CODE) -> np.ndarray:
    """Normalised SimBench profile ``name`` (load, PV or storage), float[T], read-only; kW = profile × p_kw."""
    profiles = _profiles(code)
    if name not in profiles:
        raise ScenarioError(
            f"profile name={name!r} is not in the {code} extract; available: {sorted(profiles)}"
        )
    return profiles[name]


def flex_profile_names(code: str = FLEX_CODE) -> list[str]:
    return sorted(_profiles(code))


def flex_elements(code: str = FLEX_CODE) -> FlexElements:
    """The table of every load, sgen and storage unit of the extract (from its meta file, no pandapower)."""
    meta = _meta(code)
    tables = [("load", meta["loads"]), ("sgen", meta["sgens"]), ("storage", meta["storage"])]

    def cat(key: str, dtype: Any) -> np.ndarray:
        return np.concatenate([np.asarray(t[key], dtype=dtype) for _, t in tables])

    storage_e = np.asarray(meta["storage"]["max_e_mwh"], dtype=np.float64) * 1000.0
    return FlexElements(
        element=np.concatenate([np.full(len(t["index"]), e) for e, t in tables]),
        index=cat("index", np.int64),
        name=cat("name", str),
        bus=cat("bus", np.int64),
        kind=cat("kind", str),
        profile=cat("profile", str),
        p_kw=np.abs(cat("p_mw", np.float64)) * 1000.0,
        sn_kva=cat("sn_mva", np.float64) * 1000.0,
        e_kwh=np.concatenate(
            [np.zeros(len(meta["loads"]["index"]) + len(meta["sgens"]["index"])), storage_e]
        ),
    )


@functools.lru_cache(maxsize=4)
def _net(code: str) -> Any:
    import pandapower as pp

    _check_code(code)
    path = _path(code, "net")
    if path is None:
        raise ScenarioError(f"flex extract code={code!r} has no network file in {DATA_DIR}")
    net = pp.from_json_string(_read_text(path))
    set_tap_changer_type(net)
    return net


def flex_net(code: str = FLEX_CODE, step: int | None = None) -> Any:
    """A fresh copy of the extract's pandapower network, optionally with every element's power at ``step``.

    With ``step``: load ``p_mw`` = profile × rated p_mw and ``q_mvar`` = profile × rated q_mvar (constant power
    factor), sgen ``p_mw`` = profile × rated p_mw, storage ``p_mw`` = profile × rated p_mw (≤ 0: injection).
    """
    net = copy.deepcopy(_net(code))
    if step is None:
        return net
    n_steps = int(_meta(code)["n_steps"])
    if not 0 <= step < n_steps:
        raise ScenarioError(f"step={step} is out of range [0, {n_steps})")
    for table in ("load", "sgen", "storage"):
        df = net[table]
        factor = np.array([flex_profile(p, code)[step] for p in df["profile"]])
        df["p_mw"] = df["p_mw"].to_numpy() * factor
        if table == "load":
            df["q_mvar"] = df["q_mvar"].to_numpy() * factor
    return net


def _runs(on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and exclusive ends of the runs of True in a bool[T]."""
    d = np.diff(on.astype(np.int8), prepend=0, append=0)
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _sessions_of_profile(kw: np.ndarray, home: bool) -> tuple[np.ndarray, ...]:
    """(arrival, charge_end, departure, energy_kwh, max_kw) of one charger's kW profile (rules in the module doc)."""
    n_steps = len(kw)
    starts, ends = _runs(kw > 0)
    if len(starts) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0), np.zeros(0)
    first = np.r_[True, starts[1:] - ends[:-1] >= EV_MERGE_GAP_STEPS]  # run opens a new session
    arrival = starts[first]
    charge_end = ends[np.r_[first[1:], True]]  # last run of each session
    # reduceat sums [arrival_i, arrival_{i+1}): the tail after charge_end_i is idle (zero power)
    energy = np.add.reduceat(kw, arrival) * STEP_HOURS
    max_kw = np.maximum.reduceat(kw, arrival)
    steps_per_day = round(24 / STEP_HOURS)
    hour = (arrival % steps_per_day) * STEP_HOURS
    if home:
        overnight = (hour >= HOME_EVENING_HOUR) | (hour < HOME_NIGHT_END_HOUR)
        morning = (arrival // steps_per_day) * steps_per_day + int(HOME_DEPARTURE_HOUR / STEP_HOURS)
        morning = np.where(morning <= arrival, morning + steps_per_day, morning)
        target = np.where(overnight, morning, arrival + int(HOME_DAY_DWELL_HOURS / STEP_HOURS))
    else:
        target = arrival + int(WORK_DWELL_HOURS / STEP_HOURS)
    next_arrival = np.r_[arrival[1:], n_steps]
    departure = np.maximum(charge_end, np.minimum(target, next_arrival))
    return arrival, charge_end, departure, energy, max_kw


def ev_sessions(code: str = FLEX_CODE) -> EVSessions:
    """Charging sessions of every EV charger (loads of kind ``ev``), by the rules of the module docstring."""
    el = flex_elements(code)
    parts: list[tuple[np.ndarray, ...]] = []
    for i in el.of_kind("ev"):
        kw = flex_profile(str(el.profile[i]), code) * el.p_kw[i]
        a, c, d, e, m = _sessions_of_profile(kw, home=not str(el.profile[i]).startswith("APLS"))
        parts.append((np.full(len(a), el.index[i]), a, c, d, e, m))
    cols = [np.concatenate(c) for c in zip(*parts)] if parts else [np.zeros(0)] * 6
    return EVSessions(
        load=cols[0].astype(np.int64),
        arrival=cols[1].astype(np.int64),
        charge_end=cols[2].astype(np.int64),
        departure=cols[3].astype(np.int64),
        energy_kwh=cols[4].astype(np.float64),
        max_kw=cols[5].astype(np.float64),
    )


def heat_pump_band(code: str = FLEX_CODE, hours: float = HP_BAND_HOURS) -> HeatPumpBands:
    """Electric profile (kW) and band (kWh) of every heat pump: ``band_kwh = hours × rated_kw`` (module docstring)."""
    if not (np.isfinite(hours) and hours >= 0):
        raise ScenarioError(f"hours={hours} must be finite and ≥ 0")
    el = flex_elements(code)
    hp = el.of_kind("heat_pump")
    rated = el.p_kw[hp]
    profile_kw = np.stack([flex_profile(str(el.profile[i]), code) for i in hp], axis=1) * rated
    return HeatPumpBands(load=el.index[hp], rated_kw=rated, profile_kw=profile_kw, band_kwh=hours * rated)
