"""The physical congestion study: EUniversal D5.3 (2022), §5 Table 8, reproduced in kind with committed dispatch.

``python -m eval.flex_congestion --out docs/figures`` runs the congested feeder ``default_congested`` (32 households
on the SimBench semi-urban LV grid, PV on half the roofs, a home battery in every other household; see
:func:`p2p_gym.scenarios.builders.build_default_congested`) over the sunny days 144–146 of 2016 with bilateral
trading and committed dispatch (orders are physical commitments, :mod:`p2p_gym.sim.assets`). Agents play the
``flex`` rule (:class:`agents.committed.OfferFlexibility`: truthful prices; in the solar window 10–16 h battery
households buy their neighbours' PV surplus to charge, outside it they supply themselves from storage; devices
move only for what clears). Settings, after EUniversal D5.3 (2022) §5:

* **0 — flexibility market only**: no P2P trading (every agent rejects every peer); the DSO's local
  flexibility market (LFM) removes the congestion from what the devices offer.
* **1 — unchecked P2P, then the LFM**.
* **1′ — extreme loading**: PV doubled and not curtailable; the LFM cannot resolve the congestion (infeasible).
* **1″ — P2P resolves the congestion alone**: a lighter PV build-out (8 kWp per MWh) that overloads a cable without
  trading (row 0″) but not once the trades to the neighbours' batteries store the midday surplus, so the LFM is not
  needed.
* **2 — pre-emptive blocking**: the DSO forbids the seller→buyer pairs that would load a line at ≥ 80 % in the
  no-P2P state; then the LFM.
* **3 — redirection** (W = 0.2, multiplicative, on a distance base preference of 0.02 currency/kWh per km), at-risk
  line sets ≥ 100 % and ≥ 80 %; then the LFM.
* **1, 2, 3 with large storage** (:data:`LARGE`: 40 kWh / 20 kW batteries instead of 10 kWh / 5 kW): the same
  rules on a feeder whose storage fills during the late morning, so the rules' reallocation of sellers to buyers
  changes when each battery charges, and with it the flows.

KPIs (EUniversal D5.3 (2022), Tables 7–8), summed over the steps, in the linear grid model *before* the LFM (what
the market left): congested lines (distinct lines > 100 % at least once), congested line-steps, overflow sum
(Σ loading − 100 % over congested line-steps, % points), the overflow average weighted by line capacity, max
loading; then the LFM's cost (currency), the activated flexibility (kWh), the steps it was infeasible, the lines
still congested after it, and the P2P volume (kWh).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The large-storage variant: 40 kWh / 20 kW batteries in the households without PV (instead of 10 kWh / 5 kW), so the
#: feeder's storage can take most of the midday surplus and *which* battery buys *when* decides the flows.
LARGE: dict[str, Any] = {"buyer_battery_kwh": 40.0, "buyer_battery_kw": 20.0}
#: (key, label, scenario overrides, market options)
SETTINGS: tuple[tuple[str, str, dict[str, Any], dict[str, Any]], ...] = (
    ("s0", "0: LFM only (no P2P)", {}, {"grid_policy": "report"}),
    ("s1", "1: unchecked P2P + LFM", {}, {"grid_policy": "report"}),
    ("s1p", "1′: extreme loading + LFM", {"pv_kwp_per_mwh": 20.0, "pv_curtailable": False}, {"grid_policy": "report"}),
    ("s0pp", "0″: no P2P (8 kWp/MWh)", {"pv_kwp_per_mwh": 8.0}, {"grid_policy": "report"}),
    ("s1pp", "1″: P2P resolves it (8 kWp/MWh)", {"pv_kwp_per_mwh": 8.0}, {"grid_policy": "report"}),
    ("s2", "2: pre-emptive blocking + LFM", {}, {"grid_policy": "preblock", "block_threshold_pct": 80.0}),
    ("s3_100", "3: redirection ≥ 100 % + LFM", {},
     {"grid_policy": "redirect", "block_threshold_pct": 100.0, "preference": "distance"}),
    ("s3_80", "3: redirection ≥ 80 % + LFM", {},
     {"grid_policy": "redirect", "block_threshold_pct": 80.0, "preference": "distance"}),
    ("L1", "1 (large storage)", LARGE, {"grid_policy": "report"}),
    ("L2", "2 (large storage)", LARGE, {"grid_policy": "preblock", "block_threshold_pct": 80.0}),
    ("L3_100", "3 ≥ 100 % (large storage)", LARGE,
     {"grid_policy": "redirect", "block_threshold_pct": 100.0, "preference": "distance"}),
    ("L3_80", "3 ≥ 80 % (large storage)", LARGE,
     {"grid_policy": "redirect", "block_threshold_pct": 80.0, "preference": "distance"}),
)  # fmt: skip


class NoPeers:
    """The ``flex`` rule accepting no peer: no P2P trade clears (setting 0)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = np.array(self.policy.act(observation, rng), dtype=np.float32)
        a[3:] = -1.0
        return a


def run_setting(
    key: str,
    overrides: dict[str, Any],
    options: dict[str, Any],
    *,
    start_day: int = 144,
    days: int = 3,
    seed: int = 0,
    flex_market: bool = True,
) -> dict[str, Any]:
    """Play one setting; KPIs summed over the episode (module docstring)."""
    from agents import make_policies
    from p2p_gym.envs import parallel_env
    from p2p_gym.rollout import play
    from p2p_gym.scenarios import load_scenario
    from p2p_gym.sim import MarketConfig

    scenario_kw = {k: v for k, v in overrides.items() if k != "pv_curtailable"}
    sc = load_scenario("default_congested", **scenario_kw)
    if "pv_curtailable" in overrides:
        sc = sc.replace(pv_curtailable=overrides["pv_curtailable"])
    market = MarketConfig(
        scenario="default_congested", mechanism="bilateral", grid="linear", dispatch="committed",
        peer_selection=True, flex_market=flex_market, start_day=start_day, episode_steps=days * sc.steps_per_day,
        **options,
    )  # fmt: skip
    env = parallel_env(sc, config=market)
    policies = make_policies("flex", env)
    if key.startswith("s0"):
        policies = {a: NoPeers(p) for a, p in policies.items()}
    cap = env.static.grid_model.max_i_ka

    def record(e: Any, infos: Any, _r: Any) -> dict[str, Any]:
        o = e.last_step
        lfm = o.flex_market
        before = lfm.loading_before_pct[0] if lfm is not None else o.grid.line_loading_pct[0]
        m = infos[e.possible_agents[0]]["market"]
        return {
            "before": np.asarray(before, dtype=float),
            "after_congested": int(m["grid"]["n_overloaded_lines"] or 0),
            "status": None if lfm is None else lfm.status[0],
            "cost": float(o.flex_payment[0].sum()),
            "activated": float(o.flex_activated_kwh[0]),
            "volume": float(o.p2p_volume_kwh[0]),
        }

    eps = play(env, policies, np.random.default_rng(seed), seed=seed, on_step=record)
    recs = eps[0].records
    loading = np.stack([r["before"] for r in recs])  # [T, L]
    over = loading > 100.0
    excess = np.where(over, loading - 100.0, 0.0)
    weights = np.where(over, cap[None, :], 0.0)
    return {
        "congested_lines": int(over.any(axis=0).sum()),
        "congested_line_steps": int(over.sum()),
        "overflow_sum_pct": float(excess.sum()),
        "overflow_weighted_avg_pct": float((excess * cap[None, :]).sum() / weights.sum())
        if weights.sum()
        else 0.0,
        "max_loading_pct": float(loading.max()),
        "lfm_cost": float(sum(r["cost"] for r in recs)),
        "lfm_activated_kwh": float(sum(r["activated"] for r in recs)),
        "lfm_infeasible_steps": int(sum(r["status"] == "infeasible" for r in recs)),
        "congested_after_lfm": int(sum(r["after_congested"] for r in recs)),
        "p2p_volume_kwh": float(sum(r["volume"] for r in recs)),
    }


def study(start_day: int = 144, days: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """Every setting of :data:`SETTINGS`; one row each."""
    rows = []
    for key, label, overrides, options in SETTINGS:
        res = run_setting(key, overrides, options, start_day=start_day, days=days, seed=seed)
        rows.append({"key": key, "setting": label, **res})
    return rows


COLUMNS = (
    ("setting", "setting", ""),
    ("congested_lines", "congested lines", ".0f"),
    ("congested_line_steps", "congested line-steps", ".0f"),
    ("overflow_sum_pct", "overflow sum (% pts)", ".1f"),
    ("overflow_weighted_avg_pct", "overflow wtd avg (%)", ".2f"),
    ("max_loading_pct", "max loading (%)", ".1f"),
    ("lfm_cost", "LFM cost (EUR)", ".2f"),
    ("lfm_activated_kwh", "LFM activated (kWh)", ".1f"),
    ("lfm_infeasible_steps", "LFM infeasible steps", ".0f"),
    ("congested_after_lfm", "congested line-steps after LFM", ".0f"),
    ("p2p_volume_kwh", "P2P volume (kWh)", ".1f"),
)


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bar charts of the main KPIs per setting."""
    from eval.congestion import bar_panels

    keys = [
        ("overflow_sum_pct", "overflow sum before the LFM (% pts)"),
        ("lfm_cost", "LFM cost (EUR)"),
        ("p2p_volume_kwh", "P2P volume (kWh)"),
        ("congested_after_lfm", "congested line-steps after the LFM"),
    ]
    title = ("Physical congestion study (EUniversal D5.3 (2022), §5 Table 8 in kind): default_congested, days "
             "144–146, bilateral, committed dispatch, flex agents")  # fmt: skip
    colors = ["0.6", "tab:red", "tab:purple", "0.75", "tab:green", "tab:orange", "tab:olive", "tab:cyan",
              "tab:brown", "tab:pink", "tab:gray", "tab:blue"]  # fmt: skip
    return bar_panels(rows, keys, title, path, colors, log_keys=("overflow_sum_pct",))


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.flex_congestion --out DIR``: print the table and write ``DIR/eval_flex_congestion.png``."""
    from eval.congestion import markdown_table

    p = argparse.ArgumentParser(prog="python -m eval.flex_congestion", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--start-day", type=int, default=144)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = study(a.start_day, a.days, a.seed)
    print(markdown_table(rows, COLUMNS))
    png = plot(rows, Path(a.out) / "eval_flex_congestion.png")
    print(f"\nwrote {png} ({time.perf_counter() - t0:.0f} s)")
    return 0 if all(math.isfinite(r["p2p_volume_kwh"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
