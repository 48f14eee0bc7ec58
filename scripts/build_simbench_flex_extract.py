"""Build the SimBench extract with flexible assets shipped in ``p2p_gym/scenarios/data``.

The extract holds one SimBench low-voltage grid of the "future" scenario 2 (``--2-sw``), whose loads include
heat pumps and electric-vehicle chargers and whose storage units are PV home-battery systems, with the 2016
15-minute profiles (35,136 steps) of exactly those elements. SimBench: Meinecke et al. (2020), "SimBench—A
Benchmark Dataset of Electric Power Systems to Compare Innovative Solutions Based on Power Flow Analysis",
Energies 13(12):3290; data https://simbench.de, licensed under the Open Database License (ODbL) v1.0.

Choice of the grid. The six LV ``--2-sw`` codes (simbench 1.6.3) are, with loads / PV sgens / storage units /
heat pumps / EV chargers, observed with ``simbench.get_simbench_net``:

    ====================  =====  ====  =======  ===  ===  ========
    code                  loads  sgen  storage  HP   EV   profiles
    ====================  =====  ====  =======  ===  ===  ========
    1-LV-rural1--2-sw        28     8        5    8    7        20
    1-LV-rural2--2-sw       118    11        8    8   11        34
    1-LV-rural3--2-sw       153    27       16   18   17        34
    1-LV-semiurb4--2-sw      58     6        4   10    7        26
    1-LV-semiurb5--2-sw     129    15       15   14   11        38
    1-LV-urban6--2-sw       135    12        7   14   10        32
    ====================  =====  ====  =======  ===  ===  ========

(``profiles``: distinct active-power profiles the elements use, each 35,136 values.)

``1-LV-rural3--2-sw`` has the most of every flexible kind (18 heat pumps of all four SimBench heat-pump types,
17 chargers: 14 home and 3 workplace, at 3.7, 11 and 22 kW; 16 PV-battery units; 27 PV plants) with 153 loads
on 129 buses, a mix no other LV code reaches, so it is the default.

What is written (``<code>_*``):

* ``_net.json``: the pandapower network (buses, lines, transformer, switches, loads, sgens, storage) without
  the bulky ``profiles`` tables.
* ``_profiles.npz``: only the active-power profiles that the grid's loads (``<name>_pload``), sgens and
  storage units use, each quantised to ``uint16`` on [0, max] (resolution max/65535, as the first extract,
  ``scripts/build_simbench_extract.py``), groups ``load_*``, ``pv_*`` and ``storage_*``.
* ``_meta.json``: per element type (``loads``, ``sgens``, ``storage``) the columns index, name, bus, profile and
  rated powers (loads: ``p_mw``, ``q_mvar``, ``sn_mva``; sgens: ``p_mw``, ``sn_mva``; storage: ``p_mw``,
  ``sn_mva``, ``max_e_mwh``, efficiency, self-discharge), a ``kind`` per element, the element counts, the
  annual full-load hours of every profile (a check value for the readers) and the provenance.

Kind of a load, from its SimBench profile name (the load table's ``type`` column is empty in these grids):
``H0-*`` household; ``G*`` commercial; ``Air_*``/``Soil_*`` heat pump (air- or ground-source; the suffix names the
bivalent operating mode); ``HLS_*`` (home charging station) and ``APLS_*`` (workplace charging station) EV
charging; anything else (e.g. the agricultural ``L*`` profiles) other. Sgens with a ``PV*`` profile are ``pv``;
storage units are ``pv_battery``: in SimBench a storage unit is a PV plant with a home battery run for maximum
self-consumption, its profile (``Storage_<PV profile>_<load profile>``) is the unit's injection as a fraction of
``|p_mw|`` (normalised like a PV profile, always ≥ 0), and its ``p_mw`` is negative (consumer sign), so
profile × p_mw is the unit's (negative) load.

MV/LV codes (``1-MVLV-*``, thousands of elements) are written as gzip-compressed ``_net.json.gz`` and
``_meta.json.gz``; ``1-MVLV-semiurb-all-2-sw`` is shipped for the multi-platform scenario ``mvlv``.

Usage (needs the optional extra: ``pip install -e '.[simbench]'``)::

    python scripts/build_simbench_flex_extract.py                     # rebuild the shipped extract
    python scripts/build_simbench_flex_extract.py --code 1-LV-semiurb5--2-sw --out /tmp/extract
    python scripts/build_simbench_flex_extract.py --code 1-MVLV-semiurb-all-2-sw   # the MV/LV extract
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CODE = "1-LV-rural3--2-sw"
DATA_DIR = Path(__file__).resolve().parents[1] / "p2p_gym" / "scenarios" / "data"
#: Profile-name prefixes → load kind (first match wins; no match → "other").
KIND_RULES: tuple[tuple[str, str], ...] = (
    (r"^H0-", "household"),
    (r"^G\d", "commercial"),
    (r"^(Air|Soil)_", "heat_pump"),
    (r"^(HLS|APLS)_", "ev"),
)


def load_kind(profile: str) -> str:
    """Kind of a SimBench load from its profile name (see the module docstring)."""
    for pattern, kind in KIND_RULES:
        if re.match(pattern, profile):
            return kind
    return "other"


def quantise(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Quantise each column to uint16 on [0, max]; returns arrays ``values`` (T, C), ``scale`` (C,), ``names``."""
    names = sorted(columns)
    raw = np.stack([np.clip(np.asarray(columns[c], dtype=np.float64), 0.0, None) for c in names], axis=1)
    scale = raw.max(axis=0)
    scale[scale == 0] = 1.0
    values = np.round(raw / scale * 65535.0).astype(np.uint16)
    return {"values": values, "scale": scale, "names": np.array(names)}


def _table(df: Any, columns: tuple[str, ...]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"index": [int(i) for i in df.index]}
    for c in columns:
        vals = df[c].tolist()
        out[c] = [v if isinstance(v, str) else (int(v) if c == "bus" else float(v)) for v in vals]
    return out


def build(code: str, out: Path) -> dict[str, Any]:
    import pandapower as pp
    import simbench as sb

    net = sb.get_simbench_net(code)
    load_prof, ren_prof, stor_prof = (net.profiles[k] for k in ("load", "renewables", "storage"))
    groups = {
        "load": {p: load_prof[f"{p}_pload"].to_numpy() for p in sorted(set(net.load.profile))},
        "pv": {p: ren_prof[p].to_numpy() for p in sorted(set(net.sgen.profile))},
        "storage": {p: stor_prof[p].to_numpy() for p in sorted(set(net.storage.profile))},
    }
    time = load_prof["time"].to_numpy()
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"first_time": np.array(str(time[0])), "step_minutes": np.array(15)}
    for group, cols in groups.items():
        q = quantise(cols)
        arrays.update(
            {f"{group}_values": q["values"], f"{group}_scale": q["scale"], f"{group}_names": q["names"]}
        )
    np.savez_compressed(out / f"{code}_profiles.npz", **arrays)  # type: ignore[arg-type]

    loads = _table(net.load, ("name", "bus", "profile", "p_mw", "q_mvar", "sn_mva"))
    loads["kind"] = [load_kind(p) for p in loads["profile"]]
    sgens = _table(net.sgen, ("name", "bus", "profile", "p_mw", "sn_mva"))
    sgens["kind"] = ["pv" if p.startswith("PV") else "other" for p in sgens["profile"]]
    storage = _table(
        net.storage,
        (
            "name",
            "bus",
            "profile",
            "p_mw",
            "sn_mva",
            "max_e_mwh",
            "efficiency_percent",
            "self-discharge_percent_per_day",
        ),
    )
    storage["kind"] = ["pv_battery"] * len(net.storage)
    kinds = [*loads["kind"], *sgens["kind"], *storage["kind"]]
    full_load_hours = {
        name: float(np.clip(col, 0.0, None).sum() * 0.25)
        for cols in groups.values()
        for name, col in cols.items()
    }
    meta = {
        "code": code,
        "source": (
            "SimBench (https://simbench.de; Meinecke et al. 2020, Energies 13(12):3290), ODbL v1.0; "
            "profiles quantised to 16 bits"
        ),
        "n_steps": len(time),
        "step_minutes": 15,
        "first_time": str(time[0]),
        "last_time": str(time[-1]),
        "counts": {
            "bus": len(net.bus),
            "line": len(net.line),
            "trafo": len(net.trafo),
            "load": len(net.load),
            "sgen": len(net.sgen),
            "storage": len(net.storage),
            **{k: kinds.count(k) for k in sorted(set(kinds))},
        },
        "kind_rule": {pattern: kind for pattern, kind in KIND_RULES} | {"otherwise": "other"},
        "profiles": {g: sorted(cols) for g, cols in groups.items()},
        "full_load_hours": full_load_hours,
        "loads": loads,
        "sgens": sgens,
        "storage": storage,
    }
    net.profiles = {}
    if code.startswith("1-MVLV"):  # thousands of elements: compact gzip-compressed JSON
        with gzip.open(out / f"{code}_net.json.gz", "wt", encoding="utf-8") as f:
            f.write(pp.to_json(net))
        with gzip.open(out / f"{code}_meta.json.gz", "wt", encoding="utf-8") as f:
            json.dump(meta, f, separators=(",", ":"))
    else:
        pp.to_json(net, str(out / f"{code}_net.json"))
        (out / f"{code}_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    sizes = {p.name: p.stat().st_size for p in sorted(out.glob(f"{code}_*"))}
    print(
        json.dumps({"counts": meta["counts"], "bytes": sizes, "total_bytes": sum(sizes.values())}, indent=2)
    )
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--code", default=DEFAULT_CODE, help="SimBench grid code (default: %(default)s)")
    parser.add_argument(
        "--out", type=Path, default=DATA_DIR, help="output folder (default: the package data)"
    )
    args = parser.parse_args()
    build(args.code, args.out)


if __name__ == "__main__":
    main()
