"""Reproduction of the congestion study of EUniversal D5.3 (2022), §5 (Scenarios 1–3, KPIs of Table 7) on our feeder.

``python -m eval.congestion --out docs/figures`` runs ``default_high_pv`` (32 households on the SimBench
semi-urban LV feeder) with its PV capacity concentrated on half of the households (:data:`OVERRIDES`; with PV on
every roof nobody buys at midday and no trade touches a loaded line) over the sunny days 144–146 of 2016 (the
linear model loads feeder cables up to 127 % there) with the bilateral market (EUniversal D5.3 (2022)
studies bilateral P2P) and
ZI-C traders, in five settings:

* **no P2P** (EUniversal D5.3 (2022), Scenario 0): nobody places an order; everybody trades with the grid at the tariff.
* **unchecked P2P** (Scenario 1): ``grid_policy="report"``.
* **blocking at 80 %** (Scenario 2): ``grid_policy="block"``, ``block_threshold_pct=80``: the DSO drops every trade
  whose attributed flow raises the loading of a line already at ≥ 80 %.
* **redirection W = 0.2, at-risk paths** (Scenario 3): a preference β_nm = W · (mean retail − feed-in spread),
  i.e. 20 % of the spread per kWh, on every pair whose line path crosses an *at-risk* line (a line loaded
  ≥ 80 % in some step of the no-P2P run, the criterion of Scenario 2); other pairs are unaffected. The bilateral
  matching maximises surplus net of β, so peers move to trades that avoid those lines.
* **redirection W = 0.2, distance**: the env's ``preference="distance"`` with ``preference_per_km`` chosen so the
  longest path between two agents costs W · spread (favours electrically close peers everywhere).

KPIs (EUniversal D5.3 (2022), Table 7, computed per step before any flexibility market and summed over
steps): congested lines
(distinct lines above 100 % at least once, and line-steps above 100 %), overflow sum (Σ of loading − 100 % over
congested line-steps, % points), overflow average weighted by line capacity, max loading, P2P volume, volume
blocked by the DSO, and the *P2P flow on at-risk lines*: Σ over steps and lines at ≥ 80 % of the loading that the
trades' attributed flows add in the direction of the physical flow (EUniversal D5.3 (2022)'s path accounting,
:class:`p2p_gym.grid.FlowAttribution`).

Note on the physics: in p2p_gym, trades settle money between fixed physical positions (PV − load, batteries
aside; ``default_high_pv`` has none), so the physical loading is the same in all settings and the DSO rules act on
the trades' *attributed* flows, as in EUniversal D5.3 (2022)'s path-based trade assessment. The physical
KPIs are reported to make
that visible; the trade-level KPIs show what blocking and redirection change.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Settings of the study: (key, label).
SETTINGS: tuple[tuple[str, str], ...] = (
    ("no_p2p", "no P2P"),
    ("unchecked", "unchecked P2P"),
    ("block80", "blocking at 80 %"),
    ("redirect_risk", "redirection W=0.2 (at-risk paths)"),
    ("redirect_distance", "redirection W=0.2 (distance)"),
)


#: Scenario overrides: the 474 kWp of ``default_high_pv`` on half of the households (10 kWp per MWh of their annual
#: consumption), so that households without PV buy at midday, when the feeder cables are loaded up to 127 %.
OVERRIDES: dict[str, Any] = {"pv_penetration": 0.5, "pv_kwp_per_mwh": 10.0}


class NoTrade:
    """A policy that places no order (quantity fraction 0) and leaves the battery idle."""

    def __init__(self, n_actions: int) -> None:
        self.action = np.zeros(n_actions, dtype=np.float32)
        self.action[1] = -1.0

    def act(self, observation: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The constant no-order action."""
        return self.action


def run_setting(
    options: dict[str, Any],
    policy: str,
    *,
    scenario: str,
    start_day: int,
    days: int,
    seed: int,
    at_risk_pct: float = 80.0,
) -> dict[str, Any]:
    """Play one setting (``options``: the market options of the setting) and return its KPIs (sums over the
    episode) and the per-line max loading."""
    from agents import make_policies
    from p2p_gym.envs import parallel_env
    from p2p_gym.grid import FlowAttribution, GridModel
    from p2p_gym.rollout import play
    from p2p_gym.sim import MarketConfig

    market = MarketConfig(
        scenario=scenario,
        mechanism="bilateral",
        grid="linear",
        start_day=start_day,
        episode_steps=days * 96,
        scenario_overrides=dict(OVERRIDES),
    ).replace(**options)
    env = parallel_env(config=market)
    sc = env.scenario
    lin = GridModel(sc, "linear")
    sl = lin.sensitivities
    sens = sl["line_current_ka_per_kw"]
    att = FlowAttribution(sens, lin.max_i_ka, i0_ka=sl["line_current_ka"], a0_ka=sl["line_active_current_ka"])
    cap = lin.max_i_ka
    if policy == "none":
        pols = {a: NoTrade(env.action_space(a).shape[0]) for a in env.possible_agents}
    else:
        pols = make_policies(policy, env)
    kpi = dict.fromkeys(("congested_steps", "overflow_sum", "weighted_num", "weighted_den", "volume",
                         "blocked", "harmful"), 0.0)  # fmt: skip
    ever = np.zeros(len(cap), dtype=bool)
    line_max = np.zeros(len(cap))

    def record(env: Any, _infos: Any, _rewards: Any) -> None:
        nonlocal ever, line_max
        out = env.last_outcome
        loading = np.asarray(out.report.line_loading_pct, dtype=float)
        line_max = np.maximum(line_max, loading)
        over = loading > 100.0
        ever |= over
        kpi["congested_steps"] += int(over.sum())
        kpi["overflow_sum"] += float((loading[over] - 100.0).sum())
        kpi["weighted_num"] += float(((loading[over] - 100.0) * cap[over]).sum())
        kpi["weighted_den"] += float(cap[over].sum())
        tr = out.result.trades
        kpi["volume"] += float(tr.quantity.sum())
        kpi["blocked"] += out.blocked_kwh
        if len(tr.quantity):
            flow = sens @ out.injection_kw
            risk = loading >= at_risk_pct
            if risk.any():
                a_pct = att.trade_loading_pct(tr.seller, tr.buyer, tr.quantity / env.dt)
                aligned = a_pct[risk] * np.sign(flow[risk])[:, None]
                kpi["harmful"] += float(np.clip(aligned.sum(axis=1), 0, None).sum())

    play(env, pols, np.random.default_rng(seed), seed=seed, on_step=record)
    env.close()
    congested_steps, overflow_sum = int(kpi["congested_steps"]), kpi["overflow_sum"]
    weighted_num, weighted_den = kpi["weighted_num"], kpi["weighted_den"]
    volume, blocked, harmful = kpi["volume"], kpi["blocked"], kpi["harmful"]
    return {
        "congested_lines": int(ever.sum()),
        "congested_line_steps": congested_steps,
        "overflow_sum_pct": overflow_sum,
        "overflow_weighted_avg_pct": weighted_num / weighted_den if weighted_den > 0 else 0.0,
        "max_loading_pct": float(line_max.max()),
        "p2p_volume_kwh": volume,
        "blocked_kwh": blocked,
        "p2p_flow_on_at_risk_lines_pct": harmful,
        "line_max_loading_pct": line_max.tolist(),
    }


def at_risk_preference(
    scenario: str, line_max_pct: np.ndarray, w: float, threshold: float = 80.0
) -> np.ndarray:
    """β float[N, N]: ``w`` · mean spread on pairs whose line path crosses a line loaded ≥ ``threshold`` %."""
    from p2p_gym.grid import GridModel
    from p2p_gym.scenarios import load_scenario

    sc = load_scenario(scenario, **OVERRIDES)
    s = GridModel(sc, "linear").sensitivities["line_current_ka_per_kw"]
    risk = np.asarray(line_max_pct) >= threshold
    diff = np.abs(s[risk][:, :, None] - s[risk][:, None, :])  # [R, N, N]
    crosses = (diff > 1e-3 * max(np.abs(s).max(), 1e-12)).any(axis=0)
    spread = float(np.mean(sc.retail_price - sc.feed_in_price))
    beta = np.where(crosses, w * spread, 0.0)
    np.fill_diagonal(beta, 0.0)
    return beta


def distance_per_km(scenario: str, w: float) -> float:
    """``preference_per_km`` so that the longest agent-to-agent path costs ``w`` · mean spread per kWh."""
    from p2p_gym.grid import path_length_km
    from p2p_gym.scenarios import load_scenario

    sc = load_scenario(scenario, **OVERRIDES)
    d = path_length_km(sc.net, sc.bus)
    return float(w * np.mean(sc.retail_price - sc.feed_in_price) / max(float(d.max()), 1e-9))


def study(
    scenario: str = "default_high_pv",
    policy: str = "zi-c",
    start_day: int = 144,
    days: int = 3,
    seeds: int = 2,
    w: float = 0.2,
) -> list[dict[str, Any]]:
    """Run every setting of :data:`SETTINGS` for ``seeds`` seeds; returns one row per setting (seed means)."""
    common = {"scenario": scenario, "start_day": start_day, "days": days}
    base = [run_setting({}, "none", seed=s, **common) for s in range(seeds)]
    line_max = np.max([b["line_max_loading_pct"] for b in base], axis=0)
    configs: dict[str, tuple[dict[str, Any], str]] = {
        "unchecked": ({}, policy),
        "block80": ({"grid_policy": "block", "block_threshold_pct": 80.0}, policy),
        "redirect_risk": ({"preference": at_risk_preference(scenario, line_max, w)}, policy),
        "redirect_distance": (
            {"preference": "distance", "preference_per_km": distance_per_km(scenario, w)},
            policy,
        ),
    }
    runs = {"no_p2p": base}
    for key, (kw, pol) in configs.items():
        runs[key] = [run_setting(kw, pol, seed=s, **common) for s in range(seeds)]
    rows = []
    for key, label in SETTINGS:
        rs = runs[key]
        row: dict[str, Any] = {"setting": label}
        for k in rs[0]:
            if k != "line_max_loading_pct":
                row[k] = float(np.mean([r[k] for r in rs]))
        rows.append(row)
    return rows


COLUMNS = (
    ("setting", "setting", ""),
    ("congested_lines", "congested lines", ".0f"),
    ("congested_line_steps", "congested line-steps", ".0f"),
    ("overflow_sum_pct", "overflow sum (% pts)", ".1f"),
    ("overflow_weighted_avg_pct", "overflow wtd avg (%)", ".2f"),
    ("max_loading_pct", "max loading (%)", ".1f"),
    ("p2p_volume_kwh", "P2P volume (kWh)", ".1f"),
    ("blocked_kwh", "blocked (kWh)", ".1f"),
    ("p2p_flow_on_at_risk_lines_pct", "P2P flow on at-risk lines (% pts)", ".1f"),
)


def markdown_table(rows: list[dict[str, Any]], columns: tuple[tuple[str, str, str], ...] = COLUMNS) -> str:
    """A Markdown table of ``rows``."""
    head = "| " + " | ".join(t for _, t, _ in columns) + " |"
    sep = "|" + "|".join("---" if not f else "---:" for _, _, f in columns) + "|"
    body = [
        "| " + " | ".join(format(r[k], f) if f else str(r[k]) for k, _, f in columns) + " |" for r in rows
    ]
    return "\n".join([head, sep, *body])


def bar_panels(
    rows: list[dict[str, Any]],
    keys: list[tuple[str, str]],
    title: str,
    path: Path,
    colors: list[str],
    log_keys: tuple[str, ...] = (),
) -> Path:
    """One bar chart per KPI of ``keys`` ((key, panel title)), one bar per row labelled by its ``setting``; KPIs in
    ``log_keys`` on a symmetric-log axis. Written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 4.3))
    labels = [r["setting"].replace(" + LFM", "").replace(" (", "\n(") for r in rows]
    for ax, (k, name) in zip(axes, keys):
        ax.bar(range(len(rows)), [r[k] for r in rows], color=colors[: len(rows)])
        ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(name, fontsize=10)
        if k in log_keys:
            ax.set_yscale("symlog", linthresh=1.0)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bar charts of the KPIs per setting."""
    keys = [
        ("congested_line_steps", "congested line-steps"),
        ("overflow_sum_pct", "overflow sum (% pts)"),
        ("p2p_volume_kwh", "P2P volume (kWh)"),
        ("p2p_flow_on_at_risk_lines_pct", "P2P flow on at-risk lines (% pts)"),
    ]
    title = ("Congestion study (EUniversal D5.3 (2022), §5): default_high_pv, PV on half the roofs, days 144–146, "
             "bilateral, ZI-C")  # fmt: skip
    return bar_panels(rows, keys, title, path, ["0.6", "tab:red", "tab:orange", "tab:green", "tab:olive"])


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.congestion --out DIR``: print the table and write ``DIR/eval_congestion.png``."""
    p = argparse.ArgumentParser(prog="python -m eval.congestion", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--scenario", default="default_high_pv")
    p.add_argument("--policy", default="zi-c")
    p.add_argument("--start-day", type=int, default=144)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--w", type=float, default=0.2, help="redirection factor W (default: %(default)s)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = study(a.scenario, a.policy, a.start_day, a.days, a.seeds, a.w)
    print(markdown_table(rows))
    png = plot(rows, Path(a.out) / "eval_congestion.png")
    print(f"\nwrote {png} ({time.perf_counter() - t0:.0f} s)")
    return 0 if all(math.isfinite(r["p2p_volume_kwh"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
