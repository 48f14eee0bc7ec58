"""Strategic behaviour of *trained* agents: learned exploitability per mechanism, and a population of learners.

``python -m eval.learned_strategy`` measures with reinforcement learners what :mod:`eval.strategic` measures by
search. The market is the benchmark's market with market power (``strategic-pab-v1`` / ``strategic-uniform-v1``
of :mod:`eval.bench`): 8 households of ``default``, 2 with PV and no battery (two sellers facing six buyers), fixed
positions, 96-step episodes. Learners train on the ``train`` days; every policy is scored on the same held-out
``test`` days (episode ``e`` reset with seed ``EVAL_SEED + e``, the benchmark's evaluation seeds). The benchmark
task checks the grid with ``grid="linear"`` and only reports (``grid_policy="report"``, no penalty), which moves no
money; the study drops the check (``grid="none"``) for speed, with the same rewards.

**Learned exploitability** (``--part exploit``). One PPO learner (stable-baselines3, ``single`` setting, the other
seven agents truthful) trains in the *seller* slot (the PV owner with the larger array) and, separately, in the
*buyer* slot (the household without PV with the largest mean load), under each of :data:`MECHANISMS`. Its learned
exploitability is the slot's mean profit per held-out day with the learned policy minus the same slot playing
truthful on the same days and seeds (EUR/day; with fixed positions the grid-only bill does not depend on the
bids, so a difference of profits (reward ``money``) equals the difference of savings). This is the
learned-best-response estimate of exploitability of Lanctot et al. (2017, "A unified game-theoretic approach to
multiagent reinforcement learning", NeurIPS, §3: NashConv with oracle best responses approximated by deep RL): a
lower bound of the true gain, tight as far as the learner converges. Next to it, the search-based value of
:mod:`eval.strategic` restricted to the same slot: the best of the deviations :data:`eval.strategic.DEVIATIONS`
(the ``best-response`` rule and fixed markups) on the same days. Truthful bidding is a dominant strategy in
McAfee's trade-reduction double auction (McAfee 1992, "A dominant strategy double auction", J. Econ. Theory
56(2):434–450, §3) and in the VCG double auction (Vickrey 1961, J. Finance 16(1):8–37; Clarke 1971, Public Choice
11:17–33; Groves 1973, Econometrica 41(4):617–631) for one order per agent, so there a learner should find no
profit over truthful; under pay-as-bid and uniform pricing a seller facing six buyers can raise the price.

**A population of learners** (``--part population``). One PPO policy shared by all eight agents (``shared``
setting) trains under pay-as-bid and under uniform pricing; at :data:`POINTS` checkpoints along training the
population plays the held-out days. Reported: the price of anarchy ``W_opt / W`` on the gains from trade (each
day's welfare minus its welfare without trade; the optimum is the welfare-maximising dispatch of every step, which
with fixed positions is the episode's optimum; Koutsoupias & Papadimitriou 1999, "Worst-case equilibria", STACS,
LNCS 1563:404–413; Roughgarden 2005, "Selfish routing and the price of anarchy", MIT Press) and the seller and
buyer markups ``(quoted − true value) / true value`` of all orders (:func:`eval.strategic.markup_summary`). A
truthful population realises the optimum (price of anarchy 1, markups 0). A learned population's loss mixes
strategic quoting with what PPO has not yet learned (e.g. offering only part of its position), so the curve is an
upper bound of the equilibrium's price of anarchy at the budget, not the equilibrium's.

Reading the exploitability: a learned gain below 0 means the learner did not even recover truthful bidding within
its budget (a buyer that bids below retail falls behind five truthful buyers and loses its share: a cliff the
Gaussian policy climbs slowly); as a learned best response it bounds the true exploitability from below only.

PPO settings (:data:`SLOT_HYPERPARAMS`, :data:`POPULATION_HYPERPARAMS`) follow :mod:`eval.flex_learning` and the
benchmark: normalised observations, one 96-step episode per rollout and environment copy, and a narrow initial
exploration noise (σ = e⁻¹ ≈ 0.37; with σ = 1 the noise alone loses more than strategic bidding gains).

Example::

    python -m eval.learned_strategy --part exploit --seeds 3
    python -m eval.learned_strategy --part population --timesteps 20000 --out docs/figures
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval._cli import OneLineParser, json_safe

#: Mechanisms of the exploitability part: two manipulable call markets and two truthful double auctions.
MECHANISMS: tuple[str, ...] = ("pay_as_bid", "uniform", "mcafee", "vcg")
#: Mechanisms of the population part.
POPULATION_MECHANISMS: tuple[str, ...] = ("pay_as_bid", "uniform")
SIDES: tuple[str, ...] = ("seller", "buyer")
PARTS: tuple[str, ...] = ("exploit", "population", "all")
#: Seed of the first held-out evaluation day (the benchmark's ``BenchTask.eval_seed``).
EVAL_SEED = 7_000_000
#: Held-out days per evaluation.
EVAL_DAYS = 6
#: Checkpoints along the population's training.
POINTS = 8
#: Default training budgets in *market steps* (one step of the whole market; the shared policy learns from all
#: 8 agents' steps, 8 samples per market step): one learner slot, and the population.
SLOT_STEPS = 9_600
POPULATION_STEPS = 49_152
#: Environment copies: of the single learner's env (stepped one after another), and of the batched env of the
#: shared population (the benchmark's ``SB3_ENVS``).
SLOT_ENVS = 4
POPULATION_ENVS = 8
#: PPO settings of the learner slot: a rollout is one 96-step day per copy (384 samples), minibatches of 96. No
#: action moves what the slot earns later (fixed positions, no battery, memoryless truthful others), so the problem
#: is a contextual bandit: no discount (``gamma = 0``, ``gae_lambda = 0``: the advantage is the reward minus its
#: predicted value), which removes the variance of the later steps' rewards, and a larger learning rate.
SLOT_HYPERPARAMS: dict[str, Any] = {
    "n_steps": 96, "batch_size": 96, "n_epochs": 10, "learning_rate": 3e-3, "gamma": 0.0, "gae_lambda": 0.0,
    "log_std_init": -1.0,
}  # fmt: skip
#: PPO settings of the shared population: the benchmark's (``BENCH_HYPERPARAMS["sb3:ppo"]``): a rollout is one day
#: of 8 copies × 8 agents (6,144 samples), minibatches of 1,024.
POPULATION_HYPERPARAMS: dict[str, Any] = {
    "n_steps": 96, "batch_size": 1024, "n_epochs": 10, "log_std_init": -1.0, "gamma": 0.99,
}  # fmt: skip
#: Reward the learners train on: ``savings`` (grid-only bill − bill). With fixed positions the grid-only bill does not
#: depend on any action, so it has the same best responses as the profit (``money``) without the bill's large,
#: action-independent swings with the load, which drown the policy gradient of a buyer.
REWARD = "savings"
RESULTS_FILE = "learned_strategy_results.json"
FIGURE_FILE = "learned_strategy_population.png"


class StudyError(ValueError):
    """An invalid option of the study (the message names the option, the value and what is allowed)."""


# ------------------------------------------------------------------------------------------------ the market
def market(mechanism: str, split: str = "test", reward: str = "money") -> Any:
    """The benchmark's market with market power (two PV sellers, six buyers) under ``mechanism`` on the ``split``
    days, without the grid check (it only reports; the money is the same)."""
    from eval.bench import TASKS
    from p2p_gym.sim import MarketConfig

    return MarketConfig.from_dict(
        {**TASKS["strategic-pab-v1"].market, "mechanism": mechanism, "grid": "none", "day_split": split,
         "reward": reward}
    )  # fmt: skip


def agent_ids() -> list[str]:
    """The agents of the market, in ``possible_agents`` order."""
    return list(_scenario().agent_ids)


def slots() -> dict[str, str]:
    """The learner slots: ``seller`` = the PV owner with the larger array (the seller with the most market power),
    ``buyer`` = the household without PV with the largest mean load."""
    sc = _scenario()
    pv = np.asarray(sc.pv_kwp, dtype=float)
    load = np.where(pv > 0, -np.inf, np.asarray(sc.load_kw, dtype=float).mean(axis=0))
    return {"seller": sc.agent_ids[int(np.argmax(pv))], "buyer": sc.agent_ids[int(np.argmax(load))]}


def _scenario() -> Any:
    from p2p_gym.scenarios import load_scenario

    cfg = market("uniform")
    return load_scenario(cfg.scenario, **cfg.scenario_overrides)


# ------------------------------------------------------------------------------------------------ playing
def day_rollouts(
    mechanism: str, policies: Mapping[str, Any], days: int, seed: int = EVAL_SEED, optimum: bool = False
) -> list[Any]:
    """One :class:`eval.strategic.Rollout` per held-out day ``e`` (seed ``seed + e``); ``policies``: agent id →
    policy object or rule name (agents not named play truthful)."""
    from eval.strategic import rollout

    cfg = market(mechanism, "test")
    return [rollout(cfg, dict(policies), days=1, seed=seed + e, optimum=optimum) for e in range(days)]


def slot_savings(
    mechanism: str, policies: Mapping[str, Any], slot: str, days: int, seed: int = EVAL_SEED
) -> np.ndarray:
    """float[days]: the savings (grid-only bill − bill, EUR) of ``slot`` on each held-out day."""
    i = agent_ids().index(slot)
    return np.array([r.savings[i] for r in day_rollouts(mechanism, policies, days, seed)])


def slot_gain(
    mechanism: str,
    policy: Any,
    slot: str,
    days: int,
    seed: int = EVAL_SEED,
    truthful: np.ndarray | None = None,
) -> float:
    """Mean profit per day (EUR) of ``slot`` playing ``policy`` minus the slot playing truthful, the others
    truthful, on the same held-out days (``truthful``: the slot's truthful savings per day, if already known)."""
    base = slot_savings(mechanism, {}, slot, days, seed) if truthful is None else truthful
    return float(np.mean(slot_savings(mechanism, {slot: policy}, slot, days, seed) - base))


def search_exploitability(
    mechanism: str,
    slot: str,
    days: int,
    seed: int = EVAL_SEED,
    deviations: Sequence[str] | None = None,
    truthful: np.ndarray | None = None,
) -> dict[str, Any]:
    """:func:`eval.strategic.exploitability` restricted to one slot: the gain per day (EUR) of every deviation of
    ``slot`` from the truthful population (default :data:`eval.strategic.DEVIATIONS`) on the held-out days.

    ``exploitability.exploitability`` picks its deviators spread over the agent list and plays one multi-day
    episode; here the deviator is the learner's slot and the days are the learners' evaluation days.

    Returns:
        ``{"exploitability": max(0, best gain), "best": deviation, "gains": {deviation: gain}}``.
    """
    from eval.strategic import DEVIATIONS

    base = slot_savings(mechanism, {}, slot, days, seed) if truthful is None else truthful
    gains = {
        dev: slot_gain(mechanism, dev, slot, days, seed, base)
        for dev in (DEVIATIONS if deviations is None else deviations)
    }
    best = max(gains, key=lambda d: gains[d])
    return {"exploitability": max(0.0, gains[best]), "best": best, "gains": gains}


def population_point(mechanism: str, policy: Any, days: int, seed: int = EVAL_SEED) -> dict[str, float]:
    """Every agent plays ``policy`` on the held-out days: gains from trade and the optimum's per day (EUR), the
    price of anarchy ``Σ W_opt / Σ W`` over the days (inf when the gains are ≤ 1e-9 EUR: rounding residue of no
    trade), the efficiency ``Σ W / Σ W_opt``
    and :func:`eval.strategic.markup_summary` of all orders of all days."""
    from eval.strategic import markup_summary
    from p2p_gym import metrics

    rs = day_rollouts(mechanism, dict.fromkeys(agent_ids(), policy), days, seed, optimum=True)
    gains = float(sum(r.gains for r in rs))
    gains = 0.0 if abs(gains) <= 1e-9 else gains
    best = float(sum(r.optimal_gains for r in rs))
    pooled = dataclasses.replace(
        rs[0],
        seller_markup=np.concatenate([r.seller_markup for r in rs]),
        buyer_markup=np.concatenate([r.buyer_markup for r in rs]),
    )
    return {
        "gains": gains / days,
        "optimal_gains": best / days,
        "poa": metrics.price_of_anarchy(best, gains),
        "efficiency": gains / best if best > 0 else math.nan,
        **markup_summary(pooled),
    }


# ------------------------------------------------------------------------------------------------ training
def train_slot(mechanism: str, slot: str, seed: int, steps: int, out: Path) -> Path:
    """PPO in ``slot`` among truthful others on the train days, ``steps`` learner steps; returns the run dir."""
    from training.config import TrainArgs
    from training.sb3 import train

    args = TrainArgs(
        algo="ppo", setting="single", agent=slot, others="truthful", market=market(mechanism, "train", REWARD),
        timesteps=steps, seed=seed, n_envs=SLOT_ENVS, normalize_obs=True, hyperparams=dict(SLOT_HYPERPARAMS),
        eval_freq=0, eval_episodes=1, eval_baselines=[], checkpoint_freq=0, progress=False,
        out=str(out / f"slot-{mechanism}-{slot}-s{seed}"),
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # train() prints its summary lines
        return train(args)


def slot_policy(run: Path, slot: str) -> Any:
    """The learned policy of ``slot`` of a ``single`` run."""
    from training.evaluate import load_run

    return load_run(run)[1][slot]


def population_schedule(steps: int, points: int) -> tuple[int, int]:
    """``(timesteps, checkpoint_freq)`` of the shared run, in agent steps: ``steps`` market steps × 8 agents,
    rounded up to whole PPO rollouts and to a multiple of ``points`` rollouts, with a checkpoint every
    ``1/points`` of it."""
    n = len(agent_ids())
    rollout = int(POPULATION_HYPERPARAMS["n_steps"]) * POPULATION_ENVS * n
    per_point = max(1, -(-steps * n // (rollout * points)))
    return per_point * points * rollout, per_point * rollout


def train_population(mechanism: str, seed: int, steps: int, points: int, out: Path) -> Path:
    """One PPO policy shared by every agent on the train days for ``steps`` market steps (rounded as in
    :func:`population_schedule`), checkpointed ``points`` times; returns the run dir."""
    from training.config import TrainArgs
    from training.sb3 import train

    timesteps, every = population_schedule(steps, points)
    args = TrainArgs(
        algo="ppo", setting="shared", market=market(mechanism, "train", REWARD), timesteps=timesteps, seed=seed,
        n_envs=POPULATION_ENVS, normalize_obs=True, hyperparams=dict(POPULATION_HYPERPARAMS), eval_freq=0,
        eval_episodes=1, eval_baselines=[], checkpoint_freq=every, progress=False,
        out=str(out / f"population-{mechanism}-s{seed}"),
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        return train(args)


def checkpoints(run: Path) -> list[tuple[int, Any]]:
    """``(market steps, policy)`` of every checkpoint of a shared SB3 run, in training order (the files
    ``checkpoints/model_<agent steps>_steps.zip`` and ``model_vecnormalize_<agent steps>_steps.pkl`` of SB3's
    ``CheckpointCallback``)."""
    from stable_baselines3 import PPO

    from training.policies import ModelPolicy
    from training.sb3 import load_normalizer

    found = []
    for path in (run / "checkpoints").glob("model_*_steps.zip"):
        m = re.fullmatch(r"model_(\d+)_steps\.zip", path.name)
        if m:
            found.append((int(m.group(1)), path))
    n = len(agent_ids())
    out = []
    for steps, path in sorted(found):
        norm = load_normalizer(path.parent / f"model_vecnormalize_{steps}_steps.pkl")
        out.append((steps // n, ModelPolicy(PPO.load(path, device="cpu"), norm)))
    return out


# ------------------------------------------------------------------------------------------------ the studies
def exploit_study(
    mechanisms: Sequence[str], seeds: Sequence[int], steps: int, days: int, runs: Path, bar: Any = None
) -> list[dict[str, Any]]:
    """Per mechanism and side: the learned gain of every seed, its mean and sd, and the search-based value."""
    where = slots()
    rows = []
    for mech in mechanisms:
        for side in SIDES:
            slot = where[side]
            truthful = slot_savings(mech, {}, slot, days)
            search = search_exploitability(mech, slot, days, truthful=truthful)
            _tick(bar, f"search {mech} {side}")
            learned = []
            for seed in seeds:
                policy = slot_policy(train_slot(mech, slot, seed, steps, runs), slot)
                learned.append(slot_gain(mech, policy, slot, days, truthful=truthful))
                _tick(bar, f"PPO {mech} {side} s{seed}")
            rows.append({
                "mechanism": mech, "side": side, "slot": slot, "truthful_profit": float(truthful.mean()),
                "learned": learned, "learned_mean": float(np.mean(learned)), "learned_sd": float(np.std(learned)),
                "search": search["exploitability"], "search_best": search["best"], "search_gains": search["gains"],
            })  # fmt: skip
    return rows


def population_study(
    seeds: Sequence[int], steps: int, points: int, days: int, runs: Path, bar: Any = None
) -> dict[str, Any]:
    """Per mechanism of :data:`POPULATION_MECHANISMS`: the truthful reference and, per seed, the curve of
    :func:`population_point` over the checkpoints."""
    out: dict[str, Any] = {}
    for mech in POPULATION_MECHANISMS:
        truthful = population_point(mech, "truthful", days)
        curves = []
        for seed in seeds:
            run = train_population(mech, seed, steps, points, runs)
            _tick(bar, f"PPO population {mech} s{seed}")
            curve = []
            for market_steps, policy in checkpoints(run):
                curve.append({"steps": market_steps, **population_point(mech, policy, days)})
                _tick(bar, f"checkpoint {mech} s{seed} {market_steps}")
            curves.append(curve)
        out[mech] = {"truthful": truthful, "curves": curves}
    return out


def _tick(bar: Any, text: str) -> None:
    if bar is not None:
        bar.set_postfix_str(text)
        bar.update(1)


def summary(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation; inf if any value is inf, nan for no value."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    if np.isinf(x).any():
        return math.inf, math.nan
    return float(x.mean()), float(x.std())


def final_rows(population: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per mechanism, the truthful reference and the last checkpoint of every seed, summarised over seeds."""
    keys = ("poa", "efficiency", "gains", "optimal_gains", "seller_markup_mean", "buyer_markup_mean")
    rows = []
    for mech, res in population.items():
        rows.append({"mechanism": mech, "policy": "truthful", **{k: (res["truthful"][k], 0.0) for k in keys}})
        last = [c[-1] for c in res["curves"] if c]
        if last:
            rows.append({
                "mechanism": mech, "policy": f"PPO shared ({len(last)} seeds, {last[0]['steps']} steps)",
                **{k: summary([p[k] for p in last]) for k in keys},
            })  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------ output
def _pm(mean: float, sd: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return str(mean)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def exploit_table(rows: Sequence[Mapping[str, Any]], seeds: int) -> str:
    """Markdown table of :func:`exploit_study`."""
    lines = [
        f"| mechanism | slot | truthful profit (EUR/day) | learned exploitability (EUR/day, mean ± sd, {seeds} seeds) "
        "| search exploitability (EUR/day) | best searched deviation |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mechanism']} | {r['side']} ({r['slot']}) | {r['truthful_profit']:.3f} "
            f"| {_pm(r['learned_mean'], r['learned_sd'])} | {r['search']:.3f} | {r['search_best']} "
            f"({r['search_gains'][r['search_best']]:+.3f}) |"
        )
    return "\n".join(lines)


def population_table(population: Mapping[str, Any]) -> str:
    """Markdown table of the end of training (:func:`final_rows`) and the price-of-anarchy curve."""
    lines = [
        "| mechanism | population | price of anarchy W_opt/W | efficiency W/W_opt | gains (EUR/day) "
        "| optimum (EUR/day) | seller markup | buyer markup |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in final_rows(population):
        lines.append(
            f"| {r['mechanism']} | {r['policy']} | {_pm(*r['poa'])} | {_pm(*r['efficiency'])} | {_pm(*r['gains'])} "
            f"| {_pm(*r['optimal_gains'])} | {_pm(*r['seller_markup_mean'])} | {_pm(*r['buyer_markup_mean'])} |"
        )
    curve = ["", "Price of anarchy along training (mean ± sd over seeds):", ""]
    for mech, res in population.items():
        curves = [c for c in res["curves"] if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        steps = [curves[0][k]["steps"] for k in range(n)]
        if mech == next(iter(population)):
            curve += ["| mechanism | " + " | ".join(str(s) for s in steps) + " |", "|---" * (n + 1) + "|"]
        cells = [_pm(*summary([c[k]["poa"] for c in curves]), digits=2) for k in range(n)]
        curve.append(f"| {mech} | " + " | ".join(cells) + " |")
    return "\n".join(lines + curve)


def plot_population(population: Mapping[str, Any], path: Path) -> Path:
    """Price of anarchy and mean seller / buyer markups against training market steps, mean ± sd over seeds, with
    the truthful population as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (("poa", "price of anarchy W_opt / W"), ("seller_markup_mean", "mean seller markup"),
            ("buyer_markup_mean", "mean buyer markup"))  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for mech, res in population.items():
        curves = [c for c in res["curves"] if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        x = np.array([curves[0][k]["steps"] for k in range(n)])
        for ax, (key, label) in zip(axes, keys, strict=True):
            y = np.array([[c[k][key] for k in range(n)] for c in curves], dtype=float)
            y = np.where(np.isfinite(y), y, np.nan)
            mean, sd = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
            (line,) = ax.plot(x, mean, marker="o", ms=3, label=f"{mech} ({len(curves)} seeds)")
            ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
            ax.axhline(res["truthful"][key], color=line.get_color(), ls=":", lw=1)
            ax.set_xlabel("training market steps")
            ax.set_ylabel(label)
    axes[0].legend(fontsize=8, title="dotted: truthful", title_fontsize=7)
    fig.suptitle(
        "Shared PPO population, 2 sellers / 6 buyers, held-out days (mean ± sd over seeds)", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of ``python -m eval.learned_strategy`` (validated; bad ones exit 2 with one line)."""
    p = OneLineParser(prog="python -m eval.learned_strategy", description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=PARTS, default="all", help="which study (default: all)")
    p.add_argument(
        "--seeds", type=int, default=3, help="training seeds 0..N-1 per configuration (default: 3)"
    )
    p.add_argument(
        "--timesteps", type=int, default=None,
        help=f"PPO budget per run in market steps (default {SLOT_STEPS} per learner slot, {POPULATION_STEPS} per "
        "population; the population's is rounded up to whole rollouts)",
    )  # fmt: skip
    p.add_argument("--days", type=int, default=EVAL_DAYS, help=f"held-out days per evaluation ({EVAL_DAYS})")
    p.add_argument("--points", type=int, default=POINTS, help=f"population checkpoints (default {POINTS})")
    p.add_argument(
        "--mechanisms", default=",".join(MECHANISMS),
        help="mechanisms of the exploit part, comma-separated (default: all four)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("docs/figures"), help="where the JSON and figure go")
    p.add_argument(
        "--runs", type=Path, default=None, help="keep the training runs here (default: a temp dir)"
    )
    a = p.parse_args(argv)
    for name in ("seeds", "days", "points", "timesteps"):
        value = getattr(a, name)
        if value is not None and value < 1:
            p.error(f"--{name}: must be ≥ 1, got {value}")
    a.mechanisms = [m.strip() for m in a.mechanisms.split(",") if m.strip()]
    bad = [m for m in a.mechanisms if m not in MECHANISMS]
    if bad or not a.mechanisms:
        p.error(f"--mechanisms: unknown or empty {bad or a.mechanisms}; choose from {list(MECHANISMS)}")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval.learned_strategy``: print the markdown tables, write the JSON and the figure."""
    from tqdm.auto import tqdm

    a = parse_args(argv)
    seeds = list(range(a.seeds))
    exploit, population = a.part in ("exploit", "all"), a.part in ("population", "all")
    slot_steps = a.timesteps or SLOT_STEPS
    pop_steps = a.timesteps or POPULATION_STEPS
    total = (len(a.mechanisms) * len(SIDES) * (1 + len(seeds)) if exploit else 0) + (
        len(POPULATION_MECHANISMS) * len(seeds) * (1 + a.points) if population else 0
    )
    result: dict[str, Any] = {
        "market": "strategic-pab-v1 / strategic-uniform-v1 market (8 households, 2 PV sellers), grid check off",
        "seeds": seeds, "days": a.days, "eval_seed": EVAL_SEED, "slots": slots(),
    }  # fmt: skip
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        runs = a.runs or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="learned_strategy-")))
        bar = stack.enter_context(tqdm(total=total, desc="learned strategy", unit="task", file=sys.stderr))
        if exploit:
            result["exploit"] = {
                "timesteps": slot_steps, "hyperparams": SLOT_HYPERPARAMS, "n_envs": SLOT_ENVS,
                "rows": exploit_study(a.mechanisms, seeds, slot_steps, a.days, runs, bar),
            }  # fmt: skip
            result["exploit"]["seconds"] = time.perf_counter() - t0
        if population:
            t1 = time.perf_counter()
            timesteps, _ = population_schedule(pop_steps, a.points)
            result["population"] = {
                "timesteps": timesteps // len(agent_ids()), "points": a.points, "n_envs": POPULATION_ENVS,
                "hyperparams": POPULATION_HYPERPARAMS,
                "results": population_study(seeds, pop_steps, a.points, a.days, runs, bar),
            }  # fmt: skip
            result["population"]["seconds"] = time.perf_counter() - t1
    result["wall_seconds"] = time.perf_counter() - t0
    where = ", ".join(f"{k} {v}" for k, v in result["slots"].items())
    print(f"\nLearned strategic behaviour: {a.days} held-out days (seeds {EVAL_SEED}…), slots: {where}; "
          f"{result['wall_seconds']:.0f} s\n")  # fmt: skip
    if exploit:
        print(f"Learned exploitability: PPO ({slot_steps} steps) in one slot among truthful others\n")
        print(exploit_table(result["exploit"]["rows"], len(seeds)) + "\n")
    a.out.mkdir(parents=True, exist_ok=True)
    if population:
        pop = result["population"]
        print(f"Population: one shared PPO policy, {pop['timesteps']} market steps, {a.points} checkpoints\n")
        print(population_table(pop["results"]) + "\n")
        print(f"figure: {plot_population(pop['results'], a.out / FIGURE_FILE)}")
    path = a.out / RESULTS_FILE
    path.write_text(json.dumps(json_safe(result), indent=1) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
