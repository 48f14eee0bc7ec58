"""The main job ``p2p-gym run``: simulate a community of rule-based agents and report market and grid KPIs.

Example::

    p2p-gym run --scenario default --mechanism uniform --agents zi-c --days 1 --grid linear --seed 0 --out out/run

prints a table (welfare, efficiency vs the optimum of each step, P2P volume and average price, self-sufficiency,
each agent's bill vs grid-only, fairness, grid KPIs) and with ``--out`` writes ``summary.json``, ``steps.csv``,
``agents.csv`` and PNG plots. Every market option of :class:`~p2p_gym.sim.MarketConfig` is a flag
(``--grid-policy block``, ``--reward savings``, ...) or a key of a ``--config`` YAML file.

The agents are the rule-based policies of the :mod:`agents` package (imported when the run starts, so the core
does not depend on it) or any policy objects of :func:`p2p_gym.rollout.play`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2p_gym import metrics
from p2p_gym.errors import EnvConfigError
from p2p_gym.rollout import play
from p2p_gym.sim.config import MarketConfig, add_config_arguments, config_from_args


@dataclass
class RunConfig:
    """Arguments of ``p2p-gym run``: the market (every option of :class:`~p2p_gym.sim.MarketConfig`) and the run."""

    market: MarketConfig = field(default_factory=MarketConfig)
    """The simulated market; ``episode_steps`` is set from ``days``, and ``compute_optimum`` is ``"step"`` unless
    it is ``"episode"`` (the run always reports efficiency)."""
    agents: str | Mapping[str, Any] = "zi-c"
    """Agent policy name for all agents, a comma-separated list cycled over the agents, or a dict agent id →
    name or policy object (:func:`agents.make_policies`)."""
    days: int = 1
    """Number of simulated days."""
    seed: int = 0
    """Seed of the environment (start day) and of the agents' random draws."""
    out: str | None = None
    """Output folder for JSON, CSV and PNG files."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if isinstance(self.days, bool) or not isinstance(self.days, int) or self.days < 1:
            raise EnvConfigError(f"days: must be an integer ≥ 1, got {self.days!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise EnvConfigError(f"seed: must be an integer ≥ 0, got {self.seed!r}")

    def env_config(self) -> MarketConfig:
        """The market of the run: ``days`` whole days, the optimum of every step computed."""
        from p2p_gym.scenarios import load_scenario

        spd = load_scenario(self.market.scenario, **self.market.scenario_overrides).steps_per_day
        optimum = "episode" if self.market.compute_optimum == "episode" else "step"
        return self.market.replace(compute_optimum=optimum, episode_steps=self.days * spd)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the market as a nested mapping; policy objects by class name)."""
        agents = self.agents
        if isinstance(agents, Mapping):
            agents = {a: p if isinstance(p, str) else type(p).__name__ for a, p in agents.items()}
        return {"market": self.market.to_dict(), "agents": agents, "days": self.days, "seed": self.seed,
                "out": self.out}  # fmt: skip


@dataclass
class _Totals:
    """Per-agent sums over the run (filled step by step)."""

    n: int
    n_lines: int
    bills: np.ndarray = field(init=False)
    grid_only: np.ndarray = field(init=False)
    sold: np.ndarray = field(init=False)
    bought: np.ndarray = field(init=False)
    imports: np.ndarray = field(init=False)
    exports: np.ndarray = field(init=False)
    line_max: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        for name in ("bills", "grid_only", "sold", "bought", "imports", "exports"):
            setattr(self, name, np.zeros(self.n))
        self.line_max = np.zeros(self.n_lines)


def simulate(cfg: RunConfig) -> dict[str, Any]:
    """Run the simulation of ``cfg``; returns the summary, per-step rows and per-agent rows."""
    from agents import make_policies
    from p2p_gym.envs import parallel_env

    env = parallel_env(config=cfg.env_config())
    sc = env.scenario
    n_steps = env.episode_steps
    policies = make_policies(cfg.agents, env)
    n = env.n
    tot = _Totals(n, len(sc.net.line))
    steps: list[dict[str, Any]] = []

    infos_last: list[dict[str, Any]] = [{}]

    def record(env: Any, infos: Mapping[str, Any], _rewards: Any) -> None:
        m = {k: (math.nan if v is None else v) for k, v in infos[env.possible_agents[0]]["market"].items()}
        infos_last[0] = m
        ag = [infos[a] for a in env.possible_agents]
        tot.bills += [i["bill"] for i in ag]
        tot.grid_only += [i["grid_only_bill"] for i in ag]
        tot.sold += [i["p2p_sold_kwh"] for i in ag]
        tot.bought += [i["p2p_bought_kwh"] for i in ag]
        tot.imports += [i["grid_import_kwh"] for i in ag]
        tot.exports += [i["grid_export_kwh"] for i in ag]
        out = env.last_outcome
        if out is not None and out.report is not None and out.report.converged:
            tot.line_max = np.maximum(tot.line_max, out.report.line_loading_pct)
        g = {
            k: (math.nan if v is None else v)
            for k, v in (m["grid"] if isinstance(m["grid"], dict) else {}).items()
        }
        t = m["t"]
        steps.append(
            {
                "step": len(steps),
                "t": t,
                "hour": float(sc.hour_of_day(t)),
                "retail_price": float(sc.retail_price[t]),
                "feed_in_price": float(sc.feed_in_price[t]),
                "clearing_price": m["clearing_price"],
                "p2p_volume_kwh": m["p2p_volume_kwh"],
                "n_trades": m["n_trades"],
                "welfare": m["welfare"],
                "welfare_no_trade": m["welfare_no_trade"],
                "welfare_optimum": m["welfare_optimum"],
                "efficiency": m["efficiency"],
                "blocked_kwh": m["blocked_kwh"],
                "fees_total": m["fees_total"],
                "max_line_loading_pct": g.get("max_line_loading_pct", math.nan),
                "n_overloaded_lines": g.get("n_overloaded_lines", 0),
                "n_voltage_violations": g.get("n_voltage_violations", 0),
                "vm_max_pu": g.get("vm_max_pu", math.nan),
                "grid_converged": g.get("converged", True),
                # forecast errors and reserve (0 with perfect forecasts)
                "imbalance_kwh": m.get("imbalance_short_kwh", 0.0) + m.get("imbalance_long_kwh", 0.0),
                "imbalance_cost": m.get("imbalance_cost_total", 0.0),
                "residual_imbalance_kwh": abs(m.get("residual_imbalance_kwh", 0.0)),
                "reserve_cost": m.get("reserve_cost_total") or 0.0,
                "reserve_activated_kwh": abs(m.get("reserve_activated_kwh") or 0.0),
                "market_operator_balance": m.get("market_operator_balance") or 0.0,
            }
        )

    label = cfg.agents if isinstance(cfg.agents, str) else "custom"
    t_start = time.perf_counter()
    bar = _progress(n_steps, cfg.progress, f"{sc.name}/{env.mechanism}/{label}")
    play(env, policies, np.random.default_rng(cfg.seed), seed=cfg.seed, on_step=record, progress=bar)
    bar.close()
    wall = time.perf_counter() - t_start
    dt = sc.dt_hours
    t0 = steps[0]["t"]
    load_kwh = float(sc.load_kw[t0 : t0 + n_steps].sum() * dt)
    pv_kwh = float(sc.pv_kw[t0 : t0 + n_steps].sum() * dt)
    optimum = env.config.compute_optimum
    if optimum == "episode":  # gains against the episode's reference: no trade, idle batteries
        last = infos_last[0]
        reference = float(last["episode_reference_welfare"])
        gains = sum(s["welfare"] for s in steps) - reference
        best = float(last["episode_welfare_optimum"]) - reference
    else:  # gains from trade of each step against its own no-trade welfare
        reference = float(sum(s["welfare_no_trade"] for s in steps))
        gains = sum(s["welfare"] - s["welfare_no_trade"] for s in steps)
        best = sum(s["welfare_optimum"] - s["welfare_no_trade"] for s in steps)
    volume = float(sum(s["p2p_volume_kwh"] for s in steps))
    price_weighted = sum(s["clearing_price"] * s["p2p_volume_kwh"] for s in steps if s["p2p_volume_kwh"] > 0)
    savings = tot.grid_only - tot.bills
    imports, exports = float(tot.imports.sum()), float(tot.exports.sum())
    summary = {
        "config": cfg.to_dict(),
        "agents": n,
        "steps": n_steps,
        "step_minutes": sc.step_minutes,
        "first_time_step": t0,
        "wall_seconds": wall,
        "welfare": float(sum(s["welfare"] for s in steps)),
        "welfare_no_trade": float(sum(s["welfare_no_trade"] for s in steps)),
        "welfare_optimum": float(sum(s["welfare_optimum"] for s in steps)),
        "optimum": optimum,
        "welfare_reference": reference,
        "gains_from_trade": float(gains),
        "optimal_gains_from_trade": float(best),
        "efficiency": float(gains / best) if best > 1e-12 else math.nan,
        "p2p_volume_kwh": volume,
        "average_p2p_price": float(price_weighted / volume) if volume > 0 else math.nan,
        "load_kwh": load_kwh,
        "pv_kwh": pv_kwh,
        "grid_import_kwh": imports,
        "grid_export_kwh": exports,
        "self_sufficiency": metrics.self_sufficiency(imports, load_kwh),
        "self_consumption": metrics.self_consumption(exports, pv_kwh),
        "total_bill": float(tot.bills.sum()),
        "total_grid_only_bill": float(tot.grid_only.sum()),
        **{f"savings_{k}": v for k, v in metrics.fairness(savings).items()},
        "steps_with_overload": int(sum(s["n_overloaded_lines"] > 0 for s in steps)),
        "steps_with_voltage_violation": int(sum(s["n_voltage_violations"] > 0 for s in steps)),
        "max_line_loading_pct": float(np.nanmax([s["max_line_loading_pct"] for s in steps]))
        if env.grid != "none"
        else math.nan,
        "curtailed_kwh": float(sum(s["blocked_kwh"] for s in steps)),
        "fees_total": float(sum(s["fees_total"] for s in steps)),
        "nonconverged_power_flows": int(sum(not s["grid_converged"] for s in steps)),
        # forecast errors (forecast other than "perfect") and reserve (reserve=True)
        "imbalance_kwh": float(sum(s["imbalance_kwh"] for s in steps)),
        "imbalance_cost_total": float(sum(s["imbalance_cost"] for s in steps)),
        "residual_imbalance_kwh": float(sum(s["residual_imbalance_kwh"] for s in steps)),
        "reserve_cost_total": float(sum(s["reserve_cost"] for s in steps)),
        "reserve_activated_kwh": float(sum(s["reserve_activated_kwh"] for s in steps)),
        # what the market operator kept of the trades (negative = the deficit it covered, e.g. VCG)
        "market_operator_balance": float(sum(s["market_operator_balance"] for s in steps)),
    }
    agents_rows = [
        {
            "agent": a,
            "bus": int(sc.bus[i]),
            "pv_kwp": float(sc.pv_kwp[i]),
            "battery_kwh": float(sc.battery_kwh[i]),
            "policy": type(policies[a]).__name__,
            "bill": float(tot.bills[i]),
            "grid_only_bill": float(tot.grid_only[i]),
            "savings": float(savings[i]),
            "p2p_sold_kwh": float(tot.sold[i]),
            "p2p_bought_kwh": float(tot.bought[i]),
            "grid_import_kwh": float(tot.imports[i]),
            "grid_export_kwh": float(tot.exports[i]),
        }
        for i, a in enumerate(env.possible_agents)
    ]
    env.close()
    return {
        "summary": summary,
        "steps": steps,
        "agents": agents_rows,
        "line_max_loading_pct": tot.line_max.tolist(),
    }


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)


def _uncertainty_lines(s: dict[str, Any], cur: str) -> list[str]:
    """The imbalance and reserve lines of the text summary (only when the agents acted on forecasts)."""
    if s["config"]["market"].get("forecast", "perfect") == "perfect":
        return []
    lines = [
        "imbalance (realised − committed)",
        f"  deviations (short + long)         {s['imbalance_kwh']:10.2f} kWh",
        f"  imbalance paid                    {s['imbalance_cost_total']:10.2f} {cur}",
        f"  left to the grid after reserve    {s['residual_imbalance_kwh']:10.2f} kWh",
    ]
    if s["config"]["market"].get("reserve"):
        lines += [
            f"  reserve capacity cost             {s['reserve_cost_total']:10.2f} {cur}",
            f"  reserve activated                 {s['reserve_activated_kwh']:10.2f} kWh",
        ]
    return lines


def _efficiency_lines(s: dict[str, Any], cur: str) -> list[str]:
    if s["optimum"] == "episode":
        return [
            f"  gains over reference              {s['gains_from_trade']:10.2f} {cur}   of "
            f"{s['optimal_gains_from_trade']:.2f} possible (reference: no trade, idle batteries "
            f"{s['welfare_reference']:.2f})",
            f"  efficiency vs episode optimum     {s['efficiency']:10.3f}",
        ]
    return [
        f"  gains from trade                  {s['gains_from_trade']:10.2f} {cur}   "
        f"of {s['optimal_gains_from_trade']:.2f} possible",
        f"  efficiency vs optimum             {s['efficiency']:10.3f}",
    ]


def format_table(result: dict[str, Any]) -> str:
    """The printed report: KPIs then one line per agent."""
    s = result["summary"]
    m = s["config"]["market"]
    agents = s["config"]["agents"] if isinstance(s["config"]["agents"], str) else "custom"
    cur = "EUR"
    lines = [
        f"p2p-gym run · {m['scenario']} · {m['mechanism']} · agents {agents} · {s['steps']} steps · "
        f"grid {m['grid']} ({m['grid_policy']}) · seed {s['config']['seed']} · {s['wall_seconds']:.1f} s",
        "",
        "market",
        f"  welfare (−net grid cost)          {s['welfare']:10.2f} {cur}   (no trade {s['welfare_no_trade']:.2f}, "
        f"optimum {s['welfare_optimum']:.2f})",
        *_efficiency_lines(s, cur),
        f"  P2P volume                        {s['p2p_volume_kwh']:10.2f} kWh",
        f"  average P2P price                 {s['average_p2p_price']:10.4f} {cur}/kWh",
        f"  self-sufficiency                  {s['self_sufficiency']:10.3f}",
        f"  self-consumption                  {s['self_consumption']:10.3f}",
        "fairness of savings (grid-only bill − bill)",
        f"  Gini {s['savings_gini']:.3f}   Jain {s['savings_jain']:.3f}   losers {s['savings_losers_pct']:.1f} %   "
        f"CR20 {s['savings_cr20']:.3f}",
        "grid",
        f"  max line loading                  {s['max_line_loading_pct']:10.1f} %",
        f"  steps with overloaded lines       {s['steps_with_overload']:10d}",
        f"  steps with voltage violations     {s['steps_with_voltage_violation']:10d}",
        f"  curtailed (blocked) P2P volume    {s['curtailed_kwh']:10.2f} kWh",
        f"  non-converged power flows         {s['nonconverged_power_flows']:10d}",
        *_uncertainty_lines(s, cur),
        "",
        f"  {'agent':14s} {'policy':18s} {'bill':>9s} {'grid-only':>10s} {'savings':>9s} "
        f"{'sold kWh':>9s} {'bought kWh':>10s}",
    ]
    for r in result["agents"]:
        lines.append(
            f"  {r['agent']:14s} {r['policy'][:18]:18s} {r['bill']:9.3f} {r['grid_only_bill']:10.3f} "
            f"{r['savings']:9.3f} {r['p2p_sold_kwh']:9.2f} {r['p2p_bought_kwh']:10.2f}"
        )
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """Write summary.json, steps.csv, agents.csv and the PNG plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "summary.json", out / "steps.csv", out / "agents.csv"]
    files[0].write_text(json.dumps(result["summary"], indent=2, default=_json_default))
    for path, rows in ((files[1], result["steps"]), (files[2], result["agents"])):
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    files += _plots(result, out)
    return files


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


def _plots(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, agents = result["steps"], result["agents"]
    x = np.arange(len(steps)) * result["summary"]["step_minutes"] / 60.0
    files = []
    fig, ax1 = plt.subplots(figsize=(9, 4))
    ax1.step(x, [s["retail_price"] for s in steps], where="post", label="retail", color="tab:red")
    ax1.step(x, [s["feed_in_price"] for s in steps], where="post", label="feed-in", color="tab:green")
    ax1.plot(x, [s["clearing_price"] for s in steps], ".", label="P2P clearing price", color="k")
    ax1.set_xlabel("hours from start")
    ax1.set_ylabel("EUR/kWh")
    ax2 = ax1.twinx()
    ax2.bar(
        x, [s["p2p_volume_kwh"] for s in steps], width=0.25, alpha=0.3, label="P2P volume", color="tab:blue"
    )
    ax2.set_ylabel("P2P volume per step (kWh)")
    ax1.legend(loc="upper left")
    ax1.set_title("Prices and P2P volume")
    fig.tight_layout()
    files.append(out / "prices_volume.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    idx = np.arange(len(agents))
    ax.bar(idx - 0.2, [a["grid_only_bill"] for a in agents], 0.4, label="grid only")
    ax.bar(idx + 0.2, [a["bill"] for a in agents], 0.4, label="with P2P market")
    ax.set_xticks(idx, [a["agent"].split("_")[-1] for a in agents])
    ax.set_xlabel("agent")
    ax.set_ylabel("bill (EUR, negative = earns)")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend()
    ax.set_title("Bills per agent")
    fig.tight_layout()
    files.append(out / "bills.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(x, [s["max_line_loading_pct"] for s in steps], label="max line loading")
    ax.axhline(100, color="tab:red", ls="--", lw=1, label="limit")
    ax.axhline(80, color="tab:orange", ls=":", lw=1, label="80 % (blocking threshold)")
    ax.set_xlabel("hours from start")
    ax.set_ylabel("%")
    ax.legend()
    ax.set_title("Line loading")
    fig.tight_layout()
    files.append(out / "line_loading.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``p2p-gym run``: the run's own flags, then one flag per market option (from
    :class:`~p2p_gym.sim.MarketConfig`)."""
    d = RunConfig()
    parser.add_argument(
        "--agents", default=d.agents, help="agent policy name(s), comma-separated (default: %(default)s)"
    )
    parser.add_argument("--days", type=int, default=d.days, help="simulated days (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed (default: %(default)s)")
    parser.add_argument(
        "--config", default=None, help="YAML file of market options (flags override its values)"
    )
    parser.add_argument(
        "--out", default=None, help="write summary.json, steps.csv, agents.csv and PNG plots here"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    # episode_steps comes from --days; the optimum is always computed (the run reports efficiency)
    add_config_arguments(parser, exclude=("episode_steps",))


def config_from_namespace(args: argparse.Namespace) -> RunConfig:
    """The :class:`RunConfig` of parsed arguments: market defaults < ``--config`` YAML < flags."""
    base = MarketConfig.from_yaml(Path(args.config).read_text()) if args.config else None
    return RunConfig(
        market=config_from_args(args, base),
        agents=args.agents,
        days=args.days,
        seed=args.seed,
        out=args.out,
        progress=not args.no_progress,
    )


def main(args: argparse.Namespace) -> int:
    """Entry point of ``p2p-gym run`` (errors are reported in one line by :func:`p2p_gym.cli.main`)."""
    cfg = config_from_namespace(args)
    result = simulate(cfg)
    print(format_table(result))
    if cfg.out:
        files = write_outputs(result, Path(cfg.out))
        print(f"\nwrote {', '.join(str(f) for f in files)}")
    return 0
