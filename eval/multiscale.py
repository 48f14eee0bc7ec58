"""The value of coordinating many P2P platforms (Morstyn, Savelli & Hepburn 2021, One Earth 4(5):629–638).

``p2p-gym`` does not wrap this study; run ``python -m eval.multiscale --out docs/figures``. It plays the ``mvlv``
scenario (SimBench ``1-MVLV-semiurb-all-2-sw``: 991 prosumers with PV, batteries, EVs, heat pumps and flexible
demand on 15 LV platforms spread over the 9 MV feeders; the other LV grids and the MV loads are background
injections) with committed dispatch, a uniform-price market per platform (one market of all 991 for ``single``),
the exact AC power flow (lightsim2grid), and the ``flex`` rule for every prosumer (truthful prices, its whole
flexibility offered; :class:`agents.committed.OfferFlexibility`). Settings (``coordination``):

* **single**: one market of all prosumers, platforms ignored (the reference a single large platform reaches);
* **isolated**: each platform clears alone; what it does not match goes to the supplier at the tariff;
* **(A) negotiation**: then the platform operators trade their platforms' residual orders by ADMM over the MV grid
  (network fee 0.002 EUR/kWh per km each side);
* **(B) pricing**: the DSO publishes day-ahead locational import/export prices per platform (substation price of the
  expected dispatch × (1 − marginal loss factor) ± the network charge for the MV path from the substation);
  platforms clear against them and the DSO settles the system's net with the supplier;
* **(C) predictive**: each operator clears against its own prediction of the upstream price, here persistence (the
  last realised price), and settles ex post at the realised one. With the ``expected`` predictor (C) prices
  exactly as (B) and only who bears the forecast error differs (tested).

KPIs, summed over the episodes: welfare (EUR: −the supplier bill − private costs, + flexible demand's utility);
the efficiency against the centralised optimum of the whole system (every prosumer in one market with perfect
foresight, batteries, EVs, heat pumps and flexible demand dispatched optimally: :func:`p2p_gym.optim.episode_optimum`,
without line limits), relative to no trade with idle devices; P2P volume inside platforms, inter-platform contracts
(A, and the trades across platforms of one market) and the physical exchange between platforms (Σ_t min(Σ exports,
Σ imports) of the platforms' net positions); the platforms' transformers (peak and mean of the hourly-average
loading, %); the MV/LV network's losses (kWh, AC) and their difference to isolated platforms; the DSO's and
operators' margins; the speed (steps/s). The figure shows the efficiency, the exchange between platforms, the mean
transformer loading and the losses relative to isolated platforms.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

#: (key, label, market options)
SETTINGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("single", "one market", {"coordination": "single"}),
    ("isolated", "isolated platforms", {"coordination": "isolated"}),
    ("negotiation", "(A) negotiation", {"coordination": "negotiation"}),
    ("pricing", "(B) DSO pricing", {"coordination": "pricing"}),
    (
        "predictive",
        "(C) predictive (persistence)",
        {"coordination": "predictive", "predictor": "persistence"},
    ),
)
#: Default episodes: three summer and three winter days of 2016 (start days).
DAYS: tuple[int, ...] = (172, 14)


def run_setting(
    sc: Any, options: dict[str, Any], start_day: int, days: int, grid: str = "ac", seed: int = 0
) -> dict[str, Any]:
    """Play one setting from ``start_day`` for ``days`` days; KPIs summed over the episode (module docstring)."""
    from agents import make_policies
    from p2p_gym.envs import parallel_env
    from p2p_gym.rollout import play
    from p2p_gym.sim import MarketConfig

    market = MarketConfig(
        scenario=sc.name, mechanism="uniform", grid=grid, dispatch="committed", start_day=start_day,
        episode_steps=days * sc.steps_per_day, **options,
    )  # fmt: skip
    env = parallel_env(sc, config=market)
    policies = make_policies("flex", env)
    dt = sc.dt_hours

    def record(e: Any, _infos: Any, _r: Any) -> dict[str, Any]:
        o = e.last_step
        net = o.platform_net_kwh[0]
        grid_kpis = o.grid.kpis() if o.grid is not None else {}
        return {
            "welfare": float(o.welfare[0]),
            "no_trade": float(o.welfare_no_trade[0]),
            "local": float(np.nansum(o.platform_volume_kwh[0])),
            "contracts": float(o.inter_platform_kwh[0]) if np.isfinite(o.inter_platform_kwh[0]) else 0.0,
            "exchange": float(min(np.maximum(net, 0).sum(), np.maximum(-net, 0).sum())),
            "trafo": np.asarray(o.platform_trafo_loading_pct[0], dtype=float),
            "losses": float(grid_kpis.get("losses_kw", [np.nan])[0]) * dt,
            "dso": float(o.dso_balance[0]),
            "operators": float(o.operator_balance[0].sum()) if o.operator_balance.shape[1] else 0.0,
        }

    t0 = time.perf_counter()
    eps = play(env, policies, np.random.default_rng(seed), seed=seed, on_step=record)
    wall = time.perf_counter() - t0
    recs = eps[0].records
    trafo = np.stack([r["trafo"] for r in recs])  # [T, P]
    per_hour = max(1, round(1.0 / dt))
    hours = trafo[: len(trafo) // per_hour * per_hour].reshape(-1, per_hour, trafo.shape[1]).mean(axis=1)
    return {
        "welfare": sum(r["welfare"] for r in recs),
        "no_trade": sum(r["no_trade"] for r in recs),
        "local_kwh": sum(r["local"] for r in recs),
        "contracts_kwh": sum(r["contracts"] for r in recs),
        "exchange_kwh": sum(r["exchange"] for r in recs),
        "trafo_peak_pct": float(np.nanmax(hours)) if np.isfinite(hours).any() else math.nan,
        "trafo_mean_pct": float(np.nanmean(hours)) if np.isfinite(hours).any() else math.nan,
        "losses_kwh": sum(r["losses"] for r in recs),
        "dso_eur": sum(r["dso"] for r in recs),
        "operators_eur": sum(r["operators"] for r in recs),
        "steps_per_s": len(recs) / wall,
    }


def optimum(sc: Any, start_day: int, days: int, initial_soc: float = 0.5) -> tuple[float, float]:
    """The centralised optimum's welfare and the no-trade idle-devices reference of one episode."""
    from p2p_gym.optim.episode import episode_optimum

    soc = initial_soc * np.asarray(sc.battery_kwh)
    o = episode_optimum(sc, start_day * sc.steps_per_day, days * sc.steps_per_day, soc)
    return float(o.welfare), float(o.reference_welfare)


def study(
    start_days: tuple[int, ...] = DAYS, days: int = 3, grid: str = "ac", seed: int = 0, progress: bool = True
) -> list[dict[str, Any]]:
    """Every setting of :data:`SETTINGS` over the episodes starting on ``start_days``; one row per setting."""
    from p2p_gym.scenarios import load_scenario

    sc = load_scenario("mvlv")
    opt = ref = 0.0
    for d in start_days:
        w, r = optimum(sc, d, days)
        opt, ref = opt + w, ref + r
    rows = []
    for key, label, options in SETTINGS:
        total: dict[str, float] = {}
        for d in start_days:
            res = run_setting(sc, options, d, days, grid, seed)
            for k, v in res.items():
                if k == "trafo_peak_pct":
                    total[k] = max(total.get(k, -math.inf), v)
                elif k in ("trafo_mean_pct", "steps_per_s"):
                    total[k] = total.get(k, 0.0) + v / len(start_days)
                else:
                    total[k] = total.get(k, 0.0) + v
        eff = (total["welfare"] - ref) / (opt - ref) if opt != ref else math.nan
        rows.append(
            {"key": key, "setting": label, **total, "optimum": opt, "reference": ref, "efficiency": eff}
        )
        if progress:
            print(f"  {label}: welfare {total['welfare']:.1f} EUR, efficiency {eff:.3f}", flush=True)
    base = next((r["losses_kwh"] for r in rows if r["key"] == "isolated"), math.nan)
    for r in rows:
        r["extra_losses_kwh"] = r["losses_kwh"] - base
    return rows


COLUMNS = (
    ("setting", "coordination", ""),
    ("welfare", "welfare (EUR)", ".0f"),
    ("efficiency", "efficiency vs optimum", ".3f"),
    ("local_kwh", "P2P inside platforms (kWh)", ".0f"),
    ("contracts_kwh", "inter-platform contracts (kWh)", ".0f"),
    ("exchange_kwh", "exchange between platforms (kWh)", ".0f"),
    ("trafo_peak_pct", "platform trafo peak (%)", ".1f"),
    ("trafo_mean_pct", "platform trafo mean (%)", ".1f"),
    ("losses_kwh", "losses (kWh)", ".0f"),
    ("extra_losses_kwh", "losses vs isolated (kWh)", "+.0f"),
    ("dso_eur", "DSO margin (EUR)", ".1f"),
    ("operators_eur", "operators' margin (EUR)", ".1f"),
    ("steps_per_s", "steps/s", ".1f"),
)


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bar charts of the main KPIs per setting."""
    from eval.congestion import bar_panels

    keys = [
        ("efficiency", "efficiency against the centralised optimum"),
        ("exchange_kwh", "energy exchanged between platforms (kWh)"),
        ("trafo_mean_pct", "mean platform transformer loading (%, hourly)"),
        ("extra_losses_kwh", "network losses above isolated platforms (kWh, AC)"),
    ]
    title = ("Coordinating 15 P2P platforms (991 prosumers, SimBench MV/LV, committed dispatch, flex agents): "
             "Morstyn et al. (2021) architectures")  # fmt: skip
    colors = ["0.6", "tab:red", "tab:blue", "tab:green", "tab:orange"]
    return bar_panels(rows, keys, title, path, colors)


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.multiscale --out DIR``: print the table and write ``DIR/eval_multiscale.png``."""
    from eval.congestion import markdown_table

    p = argparse.ArgumentParser(prog="python -m eval.multiscale", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--start-days", type=int, nargs="+", default=list(DAYS))
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--grid", choices=("ac", "linear", "none"), default="ac")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = study(tuple(a.start_days), a.days, a.grid, a.seed)
    print(markdown_table(rows, COLUMNS))
    png = plot(rows, Path(a.out) / "eval_multiscale.png")
    print(f"\nwrote {png} ({time.perf_counter() - t0:.0f} s)")
    return 0 if all(math.isfinite(r["welfare"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
