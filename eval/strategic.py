"""Strategic behaviour: markups, exploitability, price of anarchy and a market-power signal.

* **Markup** of an order: ``(quoted − true marginal value) / true value`` (:func:`p2p_gym.metrics.markup`), where the
  true value of a buyer is the retail price (what the kWh is worth to it: the grid alternative) and of a seller
  the feed-in price. Truthful buyers have markup 0, shading buyers a negative one; sellers asking more than
  feed-in a positive one.
* **Exploitability** of a population under a mechanism: the largest gain (currency over the episode) that one
  agent gets by switching alone to a best-responding strategy while all others keep their policy. The
  deviations searched are the ``best-response`` rule (a myopic re-clearing search, :class:`agents.BestResponse`)
  and fixed markups ``markup:m`` for a grid of ``m``; the agents searched are a spread sample of the community.
* **Price of anarchy**: ``W_opt / W_played`` on gains from trade (:func:`p2p_gym.metrics.price_of_anarchy`).
* **Market-power signal**: each step's book is re-cleared with the same quantities but truthful prices (buyers
  at retail, sellers at feed-in) by :func:`p2p_gym.market.clear`; the signal is the volume-weighted clearing price
  minus this competitive price (positive: sellers extract rent, negative: buyers do), and the share of steps
  where it exceeds 1 % of the price spread.

Example::

    from eval.strategic import exploitability
    from p2p_gym.sim import MarketConfig
    res = exploitability(MarketConfig(scenario="tiny", mechanism="pay_as_bid", grid="none"), "truthful", days=1)
    print(res.exploitability, res.best)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2p_gym import metrics
from p2p_gym.errors import EnvConfigError
from p2p_gym.sim import COMMUNITY_RULES, MarketConfig
from p2p_gym.sim.config import GAMES

#: Deviations tried by :func:`exploitability` (names of :func:`agents.policy_from_name`).
DEVIATIONS: tuple[str, ...] = ("best-response", "markup:0.1", "markup:0.3", "markup:0.5")


@dataclass
class Rollout:
    """What one episode of a population produced (all sums over the episode).

    Attributes:
        agents: agent ids, in ``env.possible_agents`` order.
        savings: float[N] grid-only bill − bill per agent (currency).
        gains: realised gains from trade of the community (welfare − welfare without trade, currency).
        optimal_gains: gains of the optimum of every step (currency).
        volume_kwh: P2P volume.
        price: float[T] volume-weighted P2P price per step (nan without trades).
        competitive_price: float[T] price of the same book re-cleared with truthful prices (nan without trades).
        step_volume_kwh: float[T] P2P volume per step.
        hour: float[T] hour of day of each step.
        seller_markup: markups of all sell orders (fractions).
        buyer_markup: markups of all buy orders (fractions).
        trade_kwh: float[N, N] energy sold by row agent to column agent.
        line_loading_pct: float[L, T] line loading per step (empty without a grid check).
        bus: int[N] bus of each agent.
    """

    agents: list[str]
    savings: np.ndarray
    gains: float
    optimal_gains: float
    volume_kwh: float
    price: np.ndarray
    competitive_price: np.ndarray
    step_volume_kwh: np.ndarray
    hour: np.ndarray
    seller_markup: np.ndarray
    buyer_markup: np.ndarray
    trade_kwh: np.ndarray
    line_loading_pct: np.ndarray
    bus: np.ndarray

    @property
    def market_power(self) -> dict[str, float]:
        """Mean price − competitive price over steps with trades, and the share (%) of steps above it."""
        ok = np.isfinite(self.price) & np.isfinite(self.competitive_price) & (self.step_volume_kwh > 1e-9)
        if not ok.any():
            return {"price_above_competitive": math.nan, "steps_above_competitive_pct": math.nan}
        diff = self.price[ok] - self.competitive_price[ok]
        return {
            "price_above_competitive": float(np.mean(diff)),
            "steps_above_competitive_pct": float(100.0 * np.mean(diff > self._tol)),
        }

    _tol: float = field(default=0.0, repr=False)


def build_policies(spec: str | Mapping[str, Any], env: Any) -> dict[str, Any]:
    """Policies for every agent of ``env``: a rule name (``zi-c``, ``truthful,markup``) or a trained run dir.

    A run directory (``runs/NAME`` holding ``config.yaml``, written by ``p2p-gym train``) plays its learned
    policy in the learned agent slots and its ``others`` rule in the remaining ones.
    """
    from agents import make_policies

    if isinstance(spec, str) and is_run_dir(spec):
        from training.evaluate import load_run

        args, learned = load_run(Path(spec))
        return make_policies({a: learned.get(a, args.others) for a in env.possible_agents}, env)
    return make_policies(spec, env)


def is_run_dir(spec: str) -> bool:
    """True if ``spec`` names a training run directory (has ``config.yaml``)."""
    return (Path(spec) / "config.yaml").is_file()


def rollout(
    config: MarketConfig,
    policies: str | Mapping[str, Any],
    *,
    days: int = 1,
    seed: int = 0,
    optimum: bool = True,
) -> Rollout:
    """Play one episode of ``days`` days of the market ``config`` and record prices, markups, trades and loading.

    Args:
        config: the market (scenario, mechanism, grid, DSO rule, ...); ``episode_steps`` is set from ``days``.
        policies: a policy spec of :func:`build_policies`, or a dict agent id → name or policy object.
        days: episode length in days.
        seed: seed of the env (start day, unless ``config.start_day`` fixes it) and of the agents' draws.
        optimum: compute the optimum of every step (``optimal_gains``; nan without it).
    """
    from agents import make_policies
    from p2p_gym import market
    from p2p_gym.envs import parallel_env
    from p2p_gym.rollout import play
    from p2p_gym.scenarios import load_scenario

    spd = load_scenario(config.scenario, **config.scenario_overrides).steps_per_day
    env = parallel_env(config=config.replace(compute_optimum=optimum, episode_steps=days * spd))
    pols = build_policies(policies, env) if isinstance(policies, str) else make_policies(policies, env)
    sc, n, mechanism = env.scenario, env.n, env.mechanism
    savings = np.zeros(n)
    trade = np.zeros((n, n))
    sums = {"gains": 0.0, "best": 0.0 if optimum else math.nan, "vol": 0.0}
    price: list[float] = []
    comp: list[float] = []
    svol: list[float] = []
    hour: list[float] = []
    loading: list[np.ndarray] = []
    s_mk: list[np.ndarray] = []
    b_mk: list[np.ndarray] = []

    def record(env: Any, _infos: Any, _rewards: Any) -> None:
        nonlocal savings
        out = env.last_outcome
        t = out.t
        retail, feed_in = float(sc.retail_price[t]), float(sc.feed_in_price[t])
        savings += out.grid_only_bills - out.bills
        sums["gains"] += out.welfare - out.welfare_no_trade
        if math.isfinite(out.welfare_optimum):
            sums["best"] += out.welfare_optimum - out.welfare_no_trade
        tr = out.result.trades
        q = float(tr.quantity.sum())
        sums["vol"] += q
        np.add.at(trade, (tr.seller, tr.buyer), tr.quantity)
        price.append(float((tr.quantity * tr.price).sum() / q) if q > 1e-12 else math.nan)
        svol.append(q)
        hour.append(float(sc.hour_of_day(t)))
        o = out.orders
        if len(o.quantity):
            s_mk.append(metrics.markup(o.price[~o.is_buy], np.full((~o.is_buy).sum(), feed_in)))
            b_mk.append(metrics.markup(o.price[o.is_buy], np.full(o.is_buy.sum(), retail)))
        comp.append(_competitive_price(market, o, mechanism, env, retail, feed_in, price[-1]))
        if out.report is not None and out.report.converged:
            loading.append(np.asarray(out.report.line_loading_pct, dtype=float))
        elif out.report is not None:
            loading.append(np.full(len(sc.net.line), math.nan))

    play(env, pols, np.random.default_rng(seed), seed=seed, on_step=record)
    agents = list(env.possible_agents)
    env.close()
    spread = float(np.mean(sc.retail_price - sc.feed_in_price))
    return Rollout(
        agents=agents,
        savings=savings,
        gains=float(sums["gains"]),
        optimal_gains=float(sums["best"]),
        volume_kwh=float(sums["vol"]),
        price=np.asarray(price),
        competitive_price=np.asarray(comp),
        step_volume_kwh=np.asarray(svol),
        hour=np.asarray(hour),
        seller_markup=np.concatenate(s_mk) if s_mk else np.zeros(0),
        buyer_markup=np.concatenate(b_mk) if b_mk else np.zeros(0),
        trade_kwh=trade,
        line_loading_pct=np.asarray(loading).T if loading else np.zeros((0, 0)),
        bus=np.asarray(sc.bus, dtype=int),
        _tol=0.01 * spread,
    )


def _competitive_price(
    market: Any, orders: Any, mechanism: str, env: Any, retail: float, feed_in: float, played: float
) -> float:
    """Volume-weighted price of ``orders`` re-cleared with truthful prices (same quantities)."""
    if mechanism in COMMUNITY_RULES or not len(orders.quantity):
        return played
    truthful = market.Orders(
        orders.agent, orders.is_buy, np.where(orders.is_buy, retail, feed_in), orders.quantity
    )
    kw: dict[str, Any] = {"k": env.k, "n_agents": env.n}
    if mechanism == "bilateral":
        kw["partners"] = np.ones((env.n, env.n), dtype=bool)
        kw["preference"] = env.preference
    if mechanism in GAMES:  # the games take the tariffs (p2p_gym.sim.stages.clear_book)
        from p2p_gym.sim.stages import clear_book

        kw.update(retail_price=retail, feed_in_price=feed_in, leader_objective=env.config.leader_objective)
        res = clear_book(truthful, mechanism, kw)
    else:
        res = market.clear(truthful, mechanism, **kw)
    q = float(res.trades.quantity.sum())
    return float((res.trades.quantity * res.trades.price).sum() / q) if q > 1e-12 else math.nan


@dataclass(frozen=True)
class Exploitability:
    """Result of :func:`exploitability`.

    Attributes:
        exploitability: the largest gain (currency over the episode) of one deviating agent (≥ 0 means the
            population is not a best response to itself; 0 if no deviation helps).
        best: ``(agent id, deviation name)`` achieving it.
        gains: ``{(agent, deviation): gain}`` of every deviation tried.
        base_savings: float[N] savings of every agent in the undeviated population.
    """

    exploitability: float
    best: tuple[str, str]
    gains: dict[tuple[str, str], float]
    base_savings: np.ndarray


def exploitability(
    config: MarketConfig,
    population: str,
    *,
    deviations: Sequence[str] = DEVIATIONS,
    n_deviators: int = 3,
    days: int = 1,
    seed: int = 0,
    agents: Sequence[str] | None = None,
) -> Exploitability:
    """Gain of the best unilateral deviation from ``population`` in the market ``config``.

    Every run uses the same seed and start day, so the deviator's gain is measured on the same days and the
    others draw the same random numbers up to the point where the deviation changes the market. The market's
    own rules (grid check, DSO policy, fees) apply to every run, so a deviation is judged under them.

    Args:
        config: the market (scenario, mechanism, grid, ...).
        population: policy name of everybody (or a comma-separated list cycled over the agents).
        deviations: policy names the deviator tries.
        n_deviators: how many agents (evenly spread over the agent list) try each deviation.
        days: episode length.
        seed: seed of every run.
        agents: the deviators' ids (instead of ``n_deviators`` spread over the agent list), e.g. the sellers.
    """
    from p2p_gym.scenarios import load_scenario

    sc = load_scenario(config.scenario, **config.scenario_overrides)
    ids = list(sc.agent_ids)
    names = [s.strip() for s in population.split(",") if s.strip()]
    spec = {a: names[i % len(names)] for i, a in enumerate(ids)}
    if agents is not None:
        agents = [agents] if isinstance(agents, str) else list(agents)
        unknown = [a for a in agents if a not in spec]
        if unknown or not agents:
            raise EnvConfigError(
                f"agents: unknown agent id(s) {unknown} in scenario {config.scenario!r}; choose from {ids}"
                if unknown
                else "agents: give at least one deviator"
            )
        pick = np.array(sorted({ids.index(a) for a in agents}))
    else:
        pick = np.unique(np.linspace(0, len(ids) - 1, max(1, min(n_deviators, len(ids)))).round().astype(int))
    base = rollout(config, spec, days=days, seed=seed, optimum=False)
    gains: dict[tuple[str, str], float] = {}
    for i in pick:
        a = ids[int(i)]
        for dev in deviations:
            if dev == spec[a]:
                continue
            r = rollout(config, {**spec, a: dev}, days=days, seed=seed, optimum=False)
            gains[(a, dev)] = float(r.savings[i] - base.savings[i])
    best = max(gains, key=lambda key: gains[key]) if gains else ("", "")
    return Exploitability(
        exploitability=max(0.0, gains[best]) if gains else 0.0,
        best=best,
        gains=gains,
        base_savings=base.savings,
    )


def price_of_anarchy(r: Rollout) -> float:
    """``W_opt / W_played`` on the gains from trade of a rollout."""
    return metrics.price_of_anarchy(r.optimal_gains, r.gains)


def markup_summary(r: Rollout) -> dict[str, float]:
    """Mean and quartiles of the seller and buyer markups of a rollout."""
    out: dict[str, float] = {}
    for side, x in (("seller", r.seller_markup), ("buyer", r.buyer_markup)):
        x = x[np.isfinite(x)]
        q = np.quantile(x, [0.25, 0.5, 0.75]) if x.size else [math.nan] * 3
        out[f"{side}_markup_mean"] = float(x.mean()) if x.size else math.nan
        out[f"{side}_markup_q25"], out[f"{side}_markup_median"], out[f"{side}_markup_q75"] = map(float, q)
    return out
