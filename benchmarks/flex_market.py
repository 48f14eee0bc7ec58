"""Solve time of the DSO's local flexibility market (:func:`p2p_gym.grid.clear_flex_market`) per congested step.

On the ``default_high_pv`` scenario (32 PV households on the SimBench LV grid ``1-LV-semiurb4--0-sw``), takes the
no-trade injections (PV − load) of the steps of one day that the linear check finds congested, offers every
agent's PV output as downward flexibility (curtailment, 0.08–0.20 currency/kWh by agent) plus its battery power
both ways (if any) and 5 kW upward flexibility at 0.15 currency/kWh, and times one LP clearing per step (the best
of ``--repeat`` runs per step). Prints per-step times, activated kW, cost and the loadings before/after, then the
median and the time of :func:`p2p_gym.grid.clear_flex_market_batch` on the same rows.

Usage: ``python benchmarks/flex_market.py [--scenario default_high_pv] [--days 144 145 146] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from p2p_gym.grid import FlexOffer, GridModel, clear_flex_market, clear_flex_market_batch
from p2p_gym.scenarios import load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="default_high_pv")
    parser.add_argument("--days", type=int, nargs="+", default=[144, 145, 146], help="days of the year")
    parser.add_argument("--repeat", type=int, default=5, help="timing runs per step; the best is reported")
    parser.add_argument("--margin-pct", type=float, default=0.0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    sc = load_scenario(args.scenario)
    model = GridModel(sc, "linear")
    sens = model.sensitivities
    s, i0, imax = sens["line_current_ka_per_kw"], sens["line_current_ka"], model.max_i_ka
    n, spd = sc.n_agents, sc.steps_per_day
    price = np.linspace(0.08, 0.20, n)
    print(
        f"scenario={args.scenario} agents={n} lines={model.n_lines} dt={sc.dt_hours} h "
        f"margin={args.margin_pct} %"
    )
    print(
        f"{'day':>4s} {'time':>6s} {'status':>10s} {'ms':>7s} {'down kW':>8s} {'up kW':>6s} {'cost':>7s} "
        f"{'max % before':>12s} {'after':>7s} {'lines>100':>9s}"
    )
    times, all_inj, all_offer = [], [], []
    for day in args.days:
        rows = np.arange(day * spd, (day + 1) * spd)
        inj_day = (sc.pv_kw - sc.load_kw)[rows]
        congested = np.flatnonzero(model.check_batch(inj_day).kpis()["n_overloaded_lines"] > 0)
        for k in congested:
            t = rows[k]
            inj = inj_day[k]
            offer = FlexOffer(
                up_kw=5.0 + sc.battery_kw,
                down_kw=sc.pv_kw[t] + sc.battery_kw,
                up_price=np.full(n, 0.15),
                down_price=price,
            )
            best = np.inf
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                res = clear_flex_market(s, imax, i0, inj, offer, sc.dt_hours, args.margin_pct)
                best = min(best, time.perf_counter() - t0)
            times.append(best)
            all_inj.append(inj)
            all_offer.append(offer)
            minutes = int(k * round(60 * sc.dt_hours))
            hhmm = f"{minutes // 60:02d}:{minutes % 60:02d}"
            print(
                f"{day:4d} {hhmm:>6s} {res.status:>10s} {1000 * best:7.2f} {res.down_kw.sum():8.1f} "
                f"{res.up_kw.sum():6.1f} {res.cost:7.3f} {res.loading_before_pct.max():12.1f} "
                f"{res.loading_after_pct.max():7.2f} {res.congested_before:4d}→{res.congested_after:<3d}"
            )
    if not times:
        print("no congested step on these days")
        return
    ms = 1000 * np.array(times)
    print(
        f"\n{len(ms)} congested steps: median {np.median(ms):.2f} ms, p90 {np.percentile(ms, 90):.2f} ms, "
        f"max {ms.max():.2f} ms per step"
    )
    inj_b = np.array(all_inj)
    offer_b = FlexOffer(
        np.array([o.up_kw for o in all_offer]),
        np.array([o.down_kw for o in all_offer]),
        np.array([o.up_price for o in all_offer]),
        np.array([o.down_price for o in all_offer]),
    )
    best = np.inf
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        clear_flex_market_batch(s, imax, i0, inj_b, offer_b, sc.dt_hours, args.margin_pct)
        best = min(best, time.perf_counter() - t0)
    print(
        f"clear_flex_market_batch on the {len(ms)} rows: {1000 * best:.1f} ms ({1000 * best / len(ms):.2f} ms/row)"
    )


if __name__ == "__main__":
    main()
