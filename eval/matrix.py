"""``p2p-gym eval``: run policies × mechanisms × seeds in parallel and write metrics and a report.

Example::

    p2p-gym eval --policies zi-c,truthful,markup --mechanisms uniform,pay_as_bid,bilateral,sdr \\
        --scenario default --days 7 --seeds 5 --out reports/NAME --workers 2

Every cell (policy, mechanism, seed) is one :func:`p2p_gym.run.simulate` run (all agents play the policy; a trained
run directory ``runs/NAME`` plays its learned slots, see :func:`eval.strategic.build_policies`). Seed ``s``
fixes the start day and the agents' draws, so all policies and mechanisms of one seed see the same days.
Per (policy, mechanism) one extra recorded episode (``--strategic-days``, seed 0) gives the markups, the
market-power signal, the trade network and the line-loading heatmap, and an exploitability search
(:func:`eval.strategic.exploitability`, ``--exploit-agents`` deviators, 0 = off).

Outputs in ``--out``: ``metrics.json`` (everything), ``runs.csv`` (one row per cell), ``summary.csv`` (mean and
standard deviation over seeds per policy × mechanism), ``agents.csv`` (savings per agent, mean over seeds),
``hourly.csv`` (price and volume profile by hour of day), ``strategic.csv`` and the self-contained
``report.html`` (:mod:`eval.report`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from eval.strategic import build_policies, is_run_dir
from p2p_gym import metrics
from p2p_gym.errors import P2PGymError
from p2p_gym.sim import MECHANISMS, MarketConfig, add_config_arguments, config_from_args

#: Summary keys of :func:`p2p_gym.run.simulate` kept per cell (and averaged over seeds).
KPIS: tuple[str, ...] = (
    "efficiency",
    "gains_from_trade",
    "optimal_gains_from_trade",
    "welfare",
    "welfare_optimum",
    "p2p_volume_kwh",
    "average_p2p_price",
    "self_sufficiency",
    "self_consumption",
    "savings_gini",
    "savings_jain",
    "savings_losers_pct",
    "savings_cr20",
    "max_line_loading_pct",
    "steps_with_overload",
    "curtailed_kwh",
    "fees_total",
    "imbalance_kwh",
    "imbalance_cost_total",
    "residual_imbalance_kwh",
    "reserve_cost_total",
    "reserve_activated_kwh",
    "market_operator_balance",
    "wall_seconds",
)


@dataclass
class EvalConfig:
    """Arguments of ``p2p-gym eval`` (validated on construction: mechanisms, counts and policy names)."""

    policies: list[str] = field(default_factory=lambda: ["zi-c", "truthful", "markup"])
    """Policy names (``agents`` registry) or trained run directories."""
    mechanisms: list[str] = field(default_factory=lambda: ["uniform", "pay_as_bid", "bilateral", "sdr"])
    """Market mechanisms (each replaces ``market.mechanism``)."""
    market: MarketConfig = field(default_factory=MarketConfig)
    """Every other market option (scenario, grid, DSO rule, ...); ``episode_steps`` is set from ``days``."""
    days: int = 7
    """Days per run."""
    seeds: int = 5
    """Seeds 0..seeds-1 per (policy, mechanism)."""
    strategic_days: int = 1
    """Days of the recorded episode per (policy, mechanism) (markups, market power, network, heatmap)."""
    exploit_agents: int = 2
    """Deviating agents tried by the exploitability search (0 = skip it)."""
    workers: int = 2
    """Worker processes (at most 2 on a shared machine)."""
    ray: bool = False
    """Use Ray tasks instead of a process pool (when ray is installed)."""
    out: str = "reports/eval"
    """Output directory."""
    progress: bool = True
    """Print one line per finished task."""

    def __post_init__(self) -> None:
        if not self.policies:
            raise EvalConfigError("policies: at least one policy name or run directory")
        if not self.mechanisms:
            raise EvalConfigError(f"mechanisms: at least one of {list(MECHANISMS)}")
        bad = [m for m in self.mechanisms if m not in MECHANISMS]
        if bad:
            raise EvalConfigError(f"mechanisms: {bad[0]!r} is not one of {list(MECHANISMS)}")
        for name, lo in (
            ("days", 1),
            ("seeds", 1),
            ("strategic_days", 1),
            ("exploit_agents", 0),
            ("workers", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise EvalConfigError(f"{name}: must be an integer ≥ {lo}, got {value!r}")
        check_policies(self.policies, self.market)

    def cell_market(self, mechanism: str) -> MarketConfig:
        """The market of every run of ``mechanism``."""
        return self.market.replace(mechanism=mechanism)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the market as a nested mapping), as written to ``metrics.json``."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["market"] = self.market.to_dict()
        return d


class EvalConfigError(P2PGymError, ValueError):
    """Invalid ``p2p-gym eval`` arguments (names the field, the value and what is allowed)."""


def check_policies(policies: Iterable[str], market: MarketConfig) -> None:
    """Raise :class:`EvalConfigError` naming the first policy that is neither a rule name nor a run directory.

    Rule names are resolved for every agent of the scenario (the same resolution as the runs), so an unknown
    rule, modifier or parameter fails here, before any simulation starts.
    """
    from agents import make_policies
    from p2p_gym.envs import parallel_env

    rules = [p for p in policies if not is_run_dir(p)]
    if not rules:
        return
    env = parallel_env(config=market.replace(grid="none", grid_policy="report", grid_penalty=0.0))
    try:
        for p in rules:
            try:
                make_policies(p, env)
            except P2PGymError as exc:
                raise EvalConfigError(
                    f"policies: {p!r} is neither a policy name nor a run directory ({exc})"
                ) from None
    finally:
        env.close()


# --------------------------------------------------------------------------------------------- tasks
def run_cell(market: MarketConfig, policy: str, seed: int, days: int) -> dict[str, Any]:
    """One matrix cell: :func:`p2p_gym.run.simulate` reduced to KPIs, per-agent savings and hourly profiles."""
    from p2p_gym.run import RunConfig, simulate

    agents: Any = policy
    if is_run_dir(policy):
        from p2p_gym.envs import parallel_env

        probe = parallel_env(config=market.replace(grid="none", grid_policy="report", grid_penalty=0.0))
        agents = build_policies(policy, probe)
        probe.close()
    res = simulate(RunConfig(market=market, agents=agents, days=days, seed=seed, progress=False))
    s = res["summary"]
    hours = np.array([r["hour"] for r in res["steps"]])
    price = np.array([r["clearing_price"] for r in res["steps"]], dtype=float)
    vol = np.array([r["p2p_volume_kwh"] for r in res["steps"]], dtype=float)
    hourly = []
    for h in range(24):
        m = np.floor(hours) == h
        p = price[m & np.isfinite(price) & (vol > 1e-9)]
        hourly.append(
            {
                "hour": h,
                "price": float(p.mean()) if p.size else math.nan,
                "volume_kwh": float(vol[m].mean()) if m.any() else math.nan,
            }
        )
    return {
        "kind": "cell",
        "policy": policy,
        "mechanism": market.mechanism,
        "seed": seed,
        "kpis": {k: float(s[k]) for k in KPIS},
        "price_of_anarchy": metrics.price_of_anarchy(s["optimal_gains_from_trade"], s["gains_from_trade"]),
        "savings": [a["savings"] for a in res["agents"]],
        "agents": [a["agent"] for a in res["agents"]],
        "line_max_loading_pct": res["line_max_loading_pct"],
        "hourly": hourly,
    }


def run_strategic(market: MarketConfig, policy: str, days: int, exploit_agents: int) -> dict[str, Any]:
    """The recorded episode of (policy, mechanism) and its exploitability search."""
    from eval import strategic

    r = strategic.rollout(market, policy, days=days, seed=0)
    out: dict[str, Any] = {
        "kind": "strategic",
        "policy": policy,
        "mechanism": market.mechanism,
        **strategic.markup_summary(r),
        **r.market_power,
        "price_of_anarchy": strategic.price_of_anarchy(r),
        "exploitability": math.nan,
        "exploit_best": "",
        "seller_markup": np.round(r.seller_markup, 4).tolist(),
        "buyer_markup": np.round(r.buyer_markup, 4).tolist(),
        "trade_kwh": np.round(r.trade_kwh, 5).tolist(),
        "bus": r.bus.tolist(),
        "line_loading_pct": np.round(r.line_loading_pct, 2).tolist(),
        "hour": r.hour.tolist(),
    }
    if exploit_agents > 0 and not is_run_dir(policy):
        e = strategic.exploitability(market, policy, n_deviators=exploit_agents, days=days, seed=0)
        out["exploitability"] = e.exploitability
        out["exploit_best"] = f"{e.best[0]}:{e.best[1]}"
    return out


# --------------------------------------------------------------------------------------------- runner
def run_tasks(
    tasks: list[tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]],
    workers: int = 2,
    use_ray: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run ``(function, args)`` tasks in ``workers`` processes (or Ray tasks); results in completion order."""
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def report(r: dict[str, Any]) -> None:
        results.append(r)
        if progress:
            what = f"{r['kind']:9s} {r['policy']} / {r['mechanism']}" + (
                f" / seed {r['seed']}" if "seed" in r else ""
            )
            print(
                f"[{len(results):3d}/{len(tasks)}] {time.perf_counter() - t0:7.1f} s  {what}", file=sys.stderr
            )

    if use_ray:
        try:
            import ray
        except ImportError:
            print("ray is not installed; using a process pool", file=sys.stderr)
            use_ray = False
    if use_ray:
        started = not ray.is_initialized()
        if started:
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        try:
            remote = {f: ray.remote(f) for f in {f for f, _ in tasks}}
            pending = [remote[f].remote(*a) for f, a in tasks]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                report(ray.get(done[0]))
        finally:
            if started:
                ray.shutdown()
        return results
    if workers <= 1:
        for f, a in tasks:
            report(f(*a))
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(f, *a) for f, a in tasks]
        for fut in as_completed(futures):
            report(fut.result())
    return results


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the matrix of ``cfg``; returns the metrics dict written to ``metrics.json``."""
    tasks: list[tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]] = []
    for pol in cfg.policies:
        for mech in cfg.mechanisms:
            market = cfg.cell_market(mech)
            tasks.append((run_strategic, (market, pol, cfg.strategic_days, cfg.exploit_agents)))
            for seed in range(cfg.seeds):
                tasks.append((run_cell, (market, pol, seed, cfg.days)))
    t0 = time.perf_counter()
    results = run_tasks(tasks, cfg.workers, cfg.ray, cfg.progress)
    order = {(p, m): i for i, (p, m) in enumerate((p, m) for p in cfg.policies for m in cfg.mechanisms)}
    cells = sorted(
        (r for r in results if r["kind"] == "cell"),
        key=lambda r: (order[(r["policy"], r["mechanism"])], r["seed"]),
    )
    strat = sorted(
        (r for r in results if r["kind"] == "strategic"), key=lambda r: order[(r["policy"], r["mechanism"])]
    )
    return {
        "config": cfg.to_dict(),
        "wall_seconds": time.perf_counter() - t0,
        "summary": aggregate(cells),
        "cells": cells,
        "strategic": strat,
    }


def aggregate(cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of every KPI per (policy, mechanism), plus pooled fairness.

    Pooled fairness (``fair_*``) is computed on each agent's savings averaged over the seeds; ``poa`` is the
    price of anarchy of the summed gains over all seeds (optimal / realised).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["policy"], c["mechanism"]), []).append(c)
    rows = []
    for (pol, mech), cs in groups.items():
        row: dict[str, Any] = {"policy": pol, "mechanism": mech, "seeds": len(cs)}
        for k in KPIS:
            x = np.array([c["kpis"][k] for c in cs], dtype=float)
            fin = x[np.isfinite(x)]
            row[k] = float(fin.mean()) if fin.size else math.nan
            row[f"{k}_std"] = float(fin.std()) if fin.size else math.nan
        sav = np.mean([c["savings"] for c in cs], axis=0)
        for k, v in metrics.fairness(sav).items():
            row[f"fair_{k}"] = v
        row["poa"] = metrics.price_of_anarchy(
            sum(c["kpis"]["optimal_gains_from_trade"] for c in cs),
            sum(c["kpis"]["gains_from_trade"] for c in cs),
        )
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- output
def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """Write metrics.json, the CSV tables and report.html into ``out``; returns the paths."""
    from eval.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    files = [out / "metrics.json"]
    files[0].write_text(json.dumps(result, indent=1, default=_json_default))
    runs = [
        {
            "policy": c["policy"],
            "mechanism": c["mechanism"],
            "seed": c["seed"],
            **c["kpis"],
            "price_of_anarchy": c["price_of_anarchy"],
        }
        for c in result["cells"]
    ]
    agents = []
    hourly = []
    for row in result["summary"]:
        cs = [
            c for c in result["cells"] if (c["policy"], c["mechanism"]) == (row["policy"], row["mechanism"])
        ]
        sav = np.mean([c["savings"] for c in cs], axis=0)
        agents += [
            {"policy": row["policy"], "mechanism": row["mechanism"], "agent": a, "savings": float(v)}
            for a, v in zip(cs[0]["agents"], sav)
        ]
        for h in range(24):
            pr = np.array([c["hourly"][h]["price"] for c in cs], dtype=float)
            vo = np.array([c["hourly"][h]["volume_kwh"] for c in cs], dtype=float)
            hourly.append(
                {
                    "policy": row["policy"],
                    "mechanism": row["mechanism"],
                    "hour": h,
                    "price": float(np.nanmean(pr)) if np.isfinite(pr).any() else math.nan,
                    "volume_kwh": float(np.nanmean(vo)) if np.isfinite(vo).any() else math.nan,
                }
            )
    strat = [
        {k: v for k, v in s.items() if not isinstance(v, list) and k != "kind"} for s in result["strategic"]
    ]
    for name, rows in (
        ("runs", runs),
        ("summary", result["summary"]),
        ("agents", agents),
        ("hourly", hourly),
        ("strategic", strat),
    ):
        if rows:
            files.append(out / f"{name}.csv")
            _write_csv(files[-1], rows)
    files.append(write_report(result, out / "report.html", hourly=hourly))
    return files


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def format_summary(result: dict[str, Any]) -> str:
    """The printed table: one line per policy × mechanism (means over seeds)."""
    strat = {(s["policy"], s["mechanism"]): s for s in result["strategic"]}
    lines = [
        f"{'policy':<18}{'mechanism':<13}{'eff':>7}{'PoA':>7}{'gains':>9}{'P2P kWh':>10}{'price':>8}"
        f"{'Gini':>7}{'Jain':>7}{'los%':>6}{'CR20':>6}{'exploit':>9}{'p-p*':>8}"
    ]
    for r in result["summary"]:
        s = strat.get((r["policy"], r["mechanism"]), {})
        lines.append(
            f"{Path(r['policy']).name[:17]:<18}{r['mechanism']:<13}{r['efficiency']:7.3f}{r['poa']:7.3g}"
            f"{r['gains_from_trade']:9.2f}{r['p2p_volume_kwh']:10.1f}{r['average_p2p_price']:8.3f}"
            f"{r['fair_gini']:7.3f}{r['fair_jain']:7.3f}{r['fair_losers_pct']:6.1f}{r['fair_cr20']:6.2f}"
            f"{s.get('exploitability', math.nan):9.3f}{s.get('price_above_competitive', math.nan):8.3f}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``p2p-gym eval``: the matrix's own flags, then one flag per market option."""
    d = EvalConfig.__dataclass_fields__
    parser.add_argument(
        "--policies", default="zi-c,truthful,markup", help="policy names or run dirs, comma-separated"
    )
    parser.add_argument(
        "--mechanisms", default="uniform,pay_as_bid,bilateral,sdr", help="mechanisms, comma-separated"
    )
    parser.add_argument(
        "--days", type=int, default=d["days"].default, help="days per run (default: %(default)s)"
    )
    parser.add_argument(
        "--seeds", type=int, default=d["seeds"].default, help="seeds per cell (default: %(default)s)"
    )
    parser.add_argument("--strategic-days", type=int, default=d["strategic_days"].default)
    parser.add_argument(
        "--exploit-agents", type=int, default=d["exploit_agents"].default, help="deviators tried (0 = off)"
    )
    parser.add_argument(
        "--workers", type=int, default=d["workers"].default, help="worker processes (default: %(default)s)"
    )
    parser.add_argument("--ray", action="store_true", help="run the cells as Ray tasks (if ray is installed)")
    parser.add_argument(
        "--config", default=None, help="YAML file of market options (flags override its values)"
    )
    parser.add_argument("--out", default=d["out"].default, help="output directory (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    # one run per mechanism of --mechanisms; episode_steps from --days; the optimum is always computed
    add_config_arguments(parser, exclude=("mechanism", "episode_steps", "compute_optimum"))


def main(args: argparse.Namespace) -> int:
    """Entry point of ``p2p-gym eval`` (errors are reported in one line by :func:`p2p_gym.cli.main`)."""
    base = MarketConfig.from_yaml(Path(args.config).read_text()) if args.config else None
    cfg = EvalConfig(
        policies=[p.strip() for p in args.policies.split(",") if p.strip()],
        mechanisms=[m.strip() for m in args.mechanisms.split(",") if m.strip()],
        market=config_from_args(args, base),
        days=args.days,
        seeds=args.seeds,
        strategic_days=args.strategic_days,
        exploit_agents=args.exploit_agents,
        workers=args.workers,
        ray=args.ray,
        out=args.out,
        progress=not args.quiet,
    )
    result = evaluate(cfg)
    print(format_summary(result))
    files = write_outputs(result, Path(cfg.out))
    print(f"\nwrote {', '.join(str(f) for f in files)} ({result['wall_seconds']:.1f} s)")
    return 0
