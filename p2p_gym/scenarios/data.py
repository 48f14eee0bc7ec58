"""Access to the SimBench extract shipped with the package, and the tariffs.

SimBench data (https://simbench.de) is licensed under the Open Database License (ODbL) v1.0. The extract in
``p2p_gym/scenarios/data`` holds the low-voltage grid ``1-LV-semiurb4--0-sw`` and one year (2016) of 15-minute
normalised household (``H0-*``), commercial (``G*``) and photovoltaic (``PV1``–``PV8``) profiles; it is rebuilt by
``scripts/build_simbench_extract.py``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
SIMBENCH_CODE = "1-LV-semiurb4--0-sw"

#: Time-of-use retail tariff (currency/kWh) by hour of day, illustrative of German household prices in 2024
#: (BDEW Strompreisanalyse 2024: average ≈ 0.41 EUR/kWh). Night 22–06 h: 0.30; day 06–17 h: 0.38;
#: evening peak 17–22 h: 0.46.
TOU_BANDS: tuple[tuple[float, float, float], ...] = (
    (0.0, 6.0, 0.30),
    (6.0, 17.0, 0.38),
    (17.0, 22.0, 0.46),
    (22.0, 24.0, 0.30),
)
#: Feed-in price (currency/kWh): the German EEG rate for PV ≤ 10 kWp with partial feed-in, 8.1 ct/kWh (2024).
FEED_IN_PRICE = 0.081


@functools.lru_cache(maxsize=4)
def _profiles(code: str) -> dict[str, Any]:
    path = DATA_DIR / f"{code}_profiles.npz"
    with np.load(path, allow_pickle=False) as z:
        load = z["load_values"].astype(np.float64) / 65535.0 * z["load_scale"]
        pv = z["pv_values"].astype(np.float64) / 65535.0 * z["pv_scale"]
        out: dict[str, Any] = {
            "load": {str(n): load[:, i] for i, n in enumerate(z["load_names"])},
            "pv": {str(n): pv[:, i] for i, n in enumerate(z["pv_names"])},
            "first_time": str(z["first_time"]),
            "step_minutes": int(z["step_minutes"]),
        }
    for group in ("load", "pv"):
        for arr in out[group].values():
            arr.flags.writeable = False
    return out


def load_profile(name: str, code: str = SIMBENCH_CODE) -> np.ndarray:
    """Normalised SimBench active-load profile ``name`` (e.g. ``"H0-A"``), float[T], peak 1."""
    return _profiles(code)["load"][name]


def pv_profile(name: str, code: str = SIMBENCH_CODE) -> np.ndarray:
    """SimBench PV profile ``name`` (``"PV1"``..``"PV8"``), float[T], kW per kWp installed."""
    return _profiles(code)["pv"][name]


def load_profile_names(code: str = SIMBENCH_CODE) -> list[str]:
    return sorted(_profiles(code)["load"])


def pv_profile_names(code: str = SIMBENCH_CODE) -> list[str]:
    return sorted(_profiles(code)["pv"])


def profile_step_minutes(code: str = SIMBENCH_CODE) -> int:
    return int(_profiles(code)["step_minutes"])


@functools.lru_cache(maxsize=4)
def _net(code: str) -> Any:
    import pandapower as pp

    net = pp.from_json(str(DATA_DIR / f"{code}_net.json"))
    set_tap_changer_type(net)
    return net


def set_tap_changer_type(net: Any) -> None:
    """Make SimBench transformer taps act in pandapower ≥ 3.

    SimBench nets leave ``tap_changer_type`` empty; pandapower 3 then ignores ``tap_pos`` without a warning
    (reported as simbench issue 69 on GitHub), so a transformer at tap +1 computes as if at neutral. SimBench
    taps are in-phase ratio taps (``tap_step_degree`` 0), pandapower's ``"Ratio"`` type.
    """
    trafo = net.trafo
    if "tap_changer_type" not in trafo or not len(trafo):
        return
    unset = trafo.tap_changer_type.isna() & trafo.tap_step_percent.notna()
    if "tap_step_degree" in trafo:
        unset &= trafo.tap_step_degree.fillna(0.0).eq(0.0)
    trafo.loc[unset, "tap_changer_type"] = "Ratio"


def simbench_net(code: str = SIMBENCH_CODE) -> Any:
    """A fresh deep copy of the shipped SimBench pandapower network (without its profile tables)."""
    return copy.deepcopy(_net(code))


def tou_retail_price(hours: np.ndarray) -> np.ndarray:
    """Time-of-use retail price (currency/kWh) for each hour of day in ``hours`` (0 ≤ h < 24)."""
    hours = np.asarray(hours, dtype=np.float64)
    price = np.empty_like(hours)
    for lo, hi, p in TOU_BANDS:
        price[(hours >= lo) & (hours < hi)] = p
    return price
