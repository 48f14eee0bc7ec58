"""Rebuild the SimBench extract shipped in ``p2p_gym/scenarios/data`` (or build other SimBench codes).

The extract holds, for one SimBench low-voltage grid code, the pandapower network (JSON, without the bulky
profile tables) and a compact set of normalised 15-minute profiles for one year (2016, 35,136 steps):

* every household (``H0-*``) and commercial (``G*``) active-load profile used by the chosen grid(s), and
* the eight SimBench photovoltaic profiles ``PV1`` ... ``PV8`` (collected from several grid codes, because
  one grid only uses some of them).

Profiles are stored as ``uint16`` quantised on [0, max] (resolution 1.5e-5 of the column maximum), with the
maximum stored beside them, in a compressed ``.npz``. SimBench data: https://simbench.de, licensed under the
Open Database License (ODbL) v1.0; see the README's data licence section.

Usage (needs the optional extra: ``pip install -e '.[simbench]'``)::

    python scripts/build_simbench_extract.py                      # rebuild the shipped extract
    python scripts/build_simbench_extract.py --code 1-LV-rural2--0-sw --out /tmp/extract
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DEFAULT_CODE = "1-LV-semiurb4--0-sw"
#: Grid codes whose renewable tables together contain PV1 ... PV8.
PV_SOURCE_CODES = ("1-LV-rural1--0-sw", "1-LV-rural2--0-sw", "1-LV-urban6--0-sw")
DATA_DIR = Path(__file__).resolve().parents[1] / "p2p_gym" / "scenarios" / "data"


def quantise(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Quantise each column to uint16 on [0, max]; returns arrays ``values`` (T, C), ``scale`` (C,), ``names``."""
    names = sorted(columns)
    raw = np.stack([np.clip(np.asarray(columns[c], dtype=np.float64), 0.0, None) for c in names], axis=1)
    scale = raw.max(axis=0)
    scale[scale == 0] = 1.0
    values = np.round(raw / scale * 65535.0).astype(np.uint16)
    return {"values": values, "scale": scale, "names": np.array(names)}


def build(code: str, out: Path) -> None:
    import pandapower as pp
    import simbench as sb

    net = sb.get_simbench_net(code)
    load_prof = net.profiles["load"]
    loads = {c[: -len("_pload")]: load_prof[c].to_numpy() for c in load_prof.columns if c.endswith("_pload")}
    pv: dict[str, np.ndarray] = {}
    for src in (code, *PV_SOURCE_CODES):
        ren = sb.get_simbench_net(src).profiles["renewables"] if src != code else net.profiles["renewables"]
        for c in ren.columns:
            if c.startswith("PV") and c not in pv:
                pv[c] = ren[c].to_numpy()
    time = load_prof["time"].to_numpy()
    out.mkdir(parents=True, exist_ok=True)
    lq, pq = quantise(loads), quantise(pv)
    np.savez_compressed(
        out / f"{code}_profiles.npz",
        load_values=lq["values"],
        load_scale=lq["scale"],
        load_names=lq["names"],
        pv_values=pq["values"],
        pv_scale=pq["scale"],
        pv_names=pq["names"],
        first_time=np.array(str(time[0])),
        step_minutes=np.array(15),
    )
    net.profiles = {}
    pp.to_json(net, str(out / f"{code}_net.json"))
    meta = {
        "code": code,
        "source": "SimBench (https://simbench.de), ODbL v1.0",
        "n_steps": len(time),
        "first_time": str(time[0]),
        "last_time": str(time[-1]),
        "load_profiles": list(lq["names"]),
        "pv_profiles": list(pq["names"]),
    }
    (out / f"{code}_meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))


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
