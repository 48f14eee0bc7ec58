"""Self-contained HTML report of ``p2p-gym eval`` (images inlined as base64 PNG, no external resources).

:func:`write_report` takes the metrics dict of :func:`eval.matrix.evaluate` and draws: efficiency vs the optimum
per mechanism, price and volume profiles by hour, the savings distribution per agent with the fairness table,
the trade network over the feeder, the line-loading heatmap, markups, exploitability and the market-power signal.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Figures of the report: (key, title, caption).
FIGURES: tuple[tuple[str, str, str], ...] = (
    (
        "efficiency",
        "Efficiency vs the optimum",
        "Gains from trade / optimal gains per mechanism (mean ± sd over seeds).",
    ),
    (
        "profiles",
        "Price and volume profiles",
        "Volume-weighted P2P price and P2P volume per step by hour of day.",
    ),
    (
        "savings",
        "Savings per agent",
        "Grid-only bill − bill of each agent (mean over seeds); fairness in the table.",
    ),
    (
        "network",
        "Trade network",
        "Energy sold seller → buyer over the feeder (recorded episode, first policy).",
    ),
    (
        "heatmap",
        "Line loading",
        "Loading (%) of every line per step of the recorded episode (first policy); colour scale up to the "
        "highest loading seen (100 % = thermal limit).",
    ),
    ("markups", "Markups", "(quoted − true value) / true value of sell and buy orders (recorded episode)."),
    (
        "strategic",
        "Exploitability and market power",
        "Largest gain of one deviating agent (currency) and the mean P2P price minus the competitive price "
        "(truthful re-clearing).",
    ),
)


def _png(draw: Callable[[Any], None], figsize: tuple[float, float] = (9, 4)) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize)
    try:
        draw(fig)
        if not getattr(fig, "_no_tight_layout", False):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _labels(summary: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    pols = list(dict.fromkeys(r["policy"] for r in summary))
    mechs = list(dict.fromkeys(r["mechanism"] for r in summary))
    return pols, mechs


def _short(p: str) -> str:
    return Path(p).name if "/" in p else p


def draw_efficiency(result: dict[str, Any]) -> Callable[[Any], None]:
    """Grouped bars: efficiency per mechanism and policy."""
    s = result["summary"]
    pols, mechs = _labels(s)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(111)
        w = 0.8 / max(1, len(pols))
        x = np.arange(len(mechs))
        for i, p in enumerate(pols):
            rows = {r["mechanism"]: r for r in s if r["policy"] == p}
            y = [rows[m]["efficiency"] if m in rows else math.nan for m in mechs]
            e = [rows[m]["efficiency_std"] if m in rows else 0 for m in mechs]
            ax.bar(x + (i - (len(pols) - 1) / 2) * w, y, w, yerr=e, label=_short(p), capsize=2)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(x, mechs)
        ax.set_ylabel("efficiency (1 = optimum)")
        ax.legend(fontsize=8)

    return draw


def draw_profiles(result: dict[str, Any], hourly: list[dict[str, Any]]) -> Callable[[Any], None]:
    """Price (top) and volume (bottom) by hour, one panel per policy, one line per mechanism."""
    pols, mechs = _labels(result["summary"])

    def draw(fig: Any) -> None:
        axes = fig.subplots(2, len(pols), squeeze=False, sharex=True)
        for j, p in enumerate(pols):
            for m in mechs:
                rows = [h for h in hourly if h["policy"] == p and h["mechanism"] == m]
                hrs = [h["hour"] for h in rows]
                axes[0, j].plot(hrs, [h["price"] for h in rows], ".-", label=m)
                axes[1, j].plot(hrs, [h["volume_kwh"] for h in rows], ".-", label=m)
            axes[0, j].set_title(_short(p), fontsize=9)
            axes[1, j].set_xlabel("hour of day")
        axes[0, 0].set_ylabel("P2P price (/kWh)")
        axes[1, 0].set_ylabel("P2P volume per step (kWh)")
        axes[0, 0].legend(fontsize=7)

    return draw


def draw_savings(result: dict[str, Any]) -> Callable[[Any], None]:
    """Box plots of per-agent savings (mean over seeds) per policy × mechanism."""
    s = result["summary"]
    cells = result["cells"]

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(111)
        data, labels = [], []
        for r in s:
            cs = [c for c in cells if (c["policy"], c["mechanism"]) == (r["policy"], r["mechanism"])]
            data.append(np.mean([c["savings"] for c in cs], axis=0))
            labels.append(f"{_short(r['policy'])}\n{r['mechanism']}")
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(np.arange(1, len(labels) + 1), labels, fontsize=7, rotation=45)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel("savings per agent (currency)")

    return draw


def draw_network(result: dict[str, Any]) -> Callable[[Any], None]:
    """Feeder with agents and trade arrows, one panel per mechanism (first policy's recorded episode)."""
    from p2p_gym.envs.render import feeder_layout
    from p2p_gym.scenarios import load_scenario

    market = result["config"]["market"]
    net = load_scenario(market["scenario"], **market.get("scenario_overrides", {})).net
    pos = feeder_layout(net)
    strat = result["strategic"]
    first = strat[0]["policy"] if strat else None
    panels = [s for s in strat if s["policy"] == first]

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
        for ax, s in zip(axes, panels):
            for a, b in zip(net.line.from_bus, net.line.to_bus):
                (x0, y0), (x1, y1) = pos[int(a)], pos[int(b)]
                ax.plot([x0, x1], [y0, y1], color="0.75", lw=1, zorder=1)
            for a, b in zip(net.trafo.hv_bus, net.trafo.lv_bus):
                (x0, y0), (x1, y1) = pos[int(a)], pos[int(b)]
                ax.plot([x0, x1], [y0, y1], color="0.5", lw=2, zorder=1)
            bus = s["bus"]
            tr = np.asarray(s["trade_kwh"])
            sold, bought = tr.sum(axis=1), tr.sum(axis=0)
            xy = np.array([pos[int(b)] for b in bus])
            ax.scatter(
                xy[:, 0], xy[:, 1], c=sold - bought, cmap="coolwarm", s=30, zorder=3, edgecolors="k", lw=0.4
            )
            top = tr.max() if tr.size else 0.0
            if top > 0:
                for i, j in zip(*np.nonzero(tr > 0.02 * top)):
                    ax.annotate(
                        "",
                        xy=xy[j],
                        xytext=xy[i],
                        arrowprops={
                            "arrowstyle": "->",
                            "color": "tab:green",
                            "lw": 0.3 + 2.5 * tr[i, j] / top,
                            "alpha": 0.6,
                        },
                        zorder=2,
                    )
            ax.set_title(f"{s['mechanism']} ({tr.sum():.1f} kWh)", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])

    return draw


def draw_heatmap(result: dict[str, Any]) -> Callable[[Any], None]:
    """Line × step loading heatmap of the first policy's recorded episode, one panel per mechanism."""
    strat = result["strategic"]
    first = strat[0]["policy"] if strat else None
    panels = [s for s in strat if s["policy"] == first and len(s["line_loading_pct"])]

    def draw(fig: Any) -> None:
        if not panels:
            fig.text(0.5, 0.5, "no grid check (grid = none)", ha="center")
            return
        axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
        vmax = max(1.0, max(float(np.nanmax(s["line_loading_pct"])) for s in panels))
        im = None
        for ax, s in zip(axes, panels):
            im = ax.imshow(
                np.asarray(s["line_loading_pct"], dtype=float),
                aspect="auto",
                cmap="magma",
                vmin=0,
                vmax=vmax,
                interpolation="nearest",
            )
            ax.set_title(s["mechanism"], fontsize=9)
            ax.set_xlabel("step")
        axes[0].set_ylabel("line")
        from matplotlib.ticker import MaxNLocator

        axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))  # line indices, not fractions
        fig.subplots_adjust(left=0.06, right=0.9, bottom=0.14, top=0.9, wspace=0.08)
        fig._no_tight_layout = True
        if im is not None:
            fig.colorbar(im, cax=fig.add_axes((0.92, 0.14, 0.015, 0.76)), label="loading (%)")

    return draw


def draw_markups(result: dict[str, Any]) -> Callable[[Any], None]:
    """Box plots of seller and buyer markups per policy × mechanism."""
    strat = result["strategic"]

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, 2, squeeze=False)[0]
        labels = [f"{_short(s['policy'])}\n{s['mechanism']}" for s in strat]
        for ax, side in zip(axes, ("seller", "buyer")):
            data = [np.asarray(s[f"{side}_markup"], dtype=float) for s in strat]
            data = [d[np.isfinite(d)] if d.size else np.zeros(1) for d in data]
            ax.boxplot(data, showfliers=False)
            ax.set_xticks(np.arange(1, len(labels) + 1), labels, fontsize=6, rotation=60)
            ax.axhline(0, color="k", lw=0.6)
            ax.set_title(f"{side} markup", fontsize=9)

    return draw


def draw_strategic(result: dict[str, Any]) -> Callable[[Any], None]:
    """Exploitability (left) and market-power signal (right) per mechanism and policy."""
    strat = result["strategic"]
    pols = list(dict.fromkeys(s["policy"] for s in strat))
    mechs = list(dict.fromkeys(s["mechanism"] for s in strat))

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, 2, squeeze=False)[0]
        w = 0.8 / max(1, len(pols))
        x = np.arange(len(mechs))
        for ax, key, lab in (
            (axes[0], "exploitability", "exploitability (currency)"),
            (axes[1], "price_above_competitive", "price − competitive price (/kWh)"),
        ):
            for i, p in enumerate(pols):
                rows = {s["mechanism"]: s for s in strat if s["policy"] == p}
                y = [rows[m][key] if m in rows else math.nan for m in mechs]
                ax.bar(x + (i - (len(pols) - 1) / 2) * w, y, w, label=_short(p))
            ax.set_xticks(x, mechs, fontsize=8)
            ax.set_ylabel(lab)
            ax.axhline(0, color="k", lw=0.6)
        axes[0].legend(fontsize=7)

    return draw


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str, str]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in cols)
    body = []
    for r in rows:
        cells = []
        for k, _, fmt in cols:
            v = r.get(k, "")
            cells.append(
                f"<td>{html.escape(format(v, fmt) if isinstance(v, (int, float)) and fmt else str(v))}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


SUMMARY_COLUMNS = [
    ("policy", "policy", ""),
    ("mechanism", "mechanism", ""),
    ("efficiency", "efficiency", ".3f"),
    ("efficiency_std", "± sd", ".3f"),
    ("poa", "PoA", ".2f"),
    ("gains_from_trade", "gains", ".2f"),
    ("optimal_gains_from_trade", "optimal gains", ".2f"),
    ("p2p_volume_kwh", "P2P kWh", ".1f"),
    ("average_p2p_price", "price", ".4f"),
    ("self_sufficiency", "self-suff.", ".3f"),
    ("fair_gini", "Gini", ".3f"),
    ("fair_jain", "Jain", ".3f"),
    ("fair_losers_pct", "losers %", ".1f"),
    ("fair_cr20", "CR20", ".3f"),
    ("max_line_loading_pct", "max loading %", ".1f"),
]
#: Added to the summary table when the agents act on forecasts (``forecast`` other than ``perfect``).
UNCERTAINTY_COLUMNS = [
    ("imbalance_kwh", "deviation kWh", ".1f"),
    ("imbalance_cost_total", "imbalance paid", ".2f"),
    ("residual_imbalance_kwh", "left to grid kWh", ".1f"),
    ("reserve_cost_total", "reserve cost", ".2f"),
    ("reserve_activated_kwh", "reserve kWh", ".1f"),
]
STRATEGIC_COLUMNS = [
    ("policy", "policy", ""),
    ("mechanism", "mechanism", ""),
    ("seller_markup_median", "seller markup (median)", ".3f"),
    ("buyer_markup_median", "buyer markup (median)", ".3f"),
    ("exploitability", "exploitability", ".3f"),
    ("exploit_best", "best deviation", ""),
    ("price_of_anarchy", "PoA (episode)", ".2f"),
    ("price_above_competitive", "price − competitive", ".4f"),
    ("steps_above_competitive_pct", "steps above %", ".1f"),
]

_CSS = """body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#eee}img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}
figcaption{font-size:13px;color:#555}"""


def render_html(result: dict[str, Any], hourly: list[dict[str, Any]]) -> str:
    """The report as one HTML string (every plot an ``<img src="data:image/png;base64,...">``)."""
    c = result["config"]
    m = c["market"]
    draws = {
        "efficiency": draw_efficiency(result),
        "profiles": draw_profiles(result, hourly),
        "savings": draw_savings(result),
        "network": draw_network(result),
        "heatmap": draw_heatmap(result),
        "markups": draw_markups(result),
        "strategic": draw_strategic(result),
    }
    sizes = {
        "profiles": (10, 5),
        "network": (12, 4),
        "heatmap": (12, 4),
        "markups": (11, 4.5),
        "strategic": (11, 4),
    }
    figs = []
    for key, title, caption in FIGURES:
        png = _png(draws[key], sizes.get(key, (9, 4)))
        figs.append(
            f'<figure id="fig-{key}"><h3>{html.escape(title)}</h3>'
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    meta = (
        f"scenario <b>{html.escape(str(m['scenario']))}</b> · {c['days']} day(s) × {c['seeds']} seed(s) · "
        f"grid {html.escape(str(m['grid']))} ({html.escape(str(m['grid_policy']))}) · "
        f"{result.get('wall_seconds', math.nan):.1f} s"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>p2p-gym eval report</title>"
        f"<style>{_CSS}</style></head><body><h1>p2p-gym evaluation report</h1><p>{meta}</p>"
        "<h2>Market, fairness and grid (means over seeds)</h2>"
        + _table(
            result["summary"],
            SUMMARY_COLUMNS + (UNCERTAINTY_COLUMNS if m.get("forecast", "perfect") != "perfect" else []),
        )
        + "<h2>Strategic behaviour (recorded episode)</h2>"
        + _table(result["strategic"], STRATEGIC_COLUMNS)
        + "<h2>Figures</h2>"
        + "".join(figs)
        + "<p style='font-size:12px;color:#777'>Definitions: the README's evaluation section and the "
        "docstrings of p2p_gym.metrics.</p></body></html>"
    )


def write_report(result: dict[str, Any], path: Path, hourly: list[dict[str, Any]]) -> Path:
    """Write :func:`render_html` to ``path``; returns it."""
    path.write_text(render_html(result, hourly), encoding="utf-8")
    return path
