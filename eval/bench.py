"""``p2p-gym bench``: the multi-agent RL benchmark — named tasks, references, seeds, IQM and bootstrap intervals.

**Tasks** (:data:`TASKS`; ids end in the version). Each trains on four days in five and is scored on the same
held-out fifth days (``day_split``), with every agent playing the trained policy (parameter sharing):

* ``community-flex-v1``: ``default`` (20 households, 12 with PV, 6 home batteries), committed dispatch (devices move
  for what clears), uniform price, stores' terminal state valued at retail. The value is in *when* a battery moves,
  which no myopic rule plans.
* ``strategic-pab-v1`` / ``strategic-uniform-v1``: 8 households of ``default``, 2 with PV and no battery: two sellers
  face six buyers, so sellers have market power; pay-as-bid and uniform pricing. Positions are fixed, so truthful
  bids realise the optimum and the score measures what self-interested learners lose by strategic bidding.
* ``peer-selection-v1``: ``default`` without batteries, bilateral matching with peer selection (each agent accepts its
  3 best-scored peers, a pair trades only if both accept) and a distance-based network fee of 0.10 EUR/kWh/km:
  whom one accepts decides what clears and what it pays.
* ``multi-platform-v1``: three LV grids (13 prosumers each: PV, batteries, heat pumps, EV sessions) of the SimBench
  MV/LV system, committed dispatch, a market per platform and the operators trading their residuals by ADMM over
  the MV grid (``coordination="negotiation"``, distance fees).
* ``reserve-v1``: ``community-flex-v1`` with day-ahead forecast errors, dual-price imbalance settlement (0.05
  EUR/kWh) and a reserve market sized at 95 % confidence.

**Score.** ``R`` = the community's gains from trade per episode (EUR): Σ_t welfare − the welfare of the same day
without trading and with idle devices (:attr:`training.policies.PlayResult.gains`), averaged over the task's
evaluation episodes (fixed seeds, so every policy plays the same days). The normalised score is
``(R − R_random) / (R_optimum − R_random)`` (:func:`p2p_gym.metrics.normalised_score`): 0 = uniformly random
actions, 1 = the episode optimum (perfect foresight, every device dispatched optimally, the same terminal
valuation; :func:`p2p_gym.optim.episode.episode_optimum`). References per task: ``random``, ``zi-c``,
``truthful``, the task's rule heuristics (``battery``, ``flex``, peer selectors) and ``optimum``; the *best rule*
is the best of the rules on the evaluation days.

**Runs.** Every ``lib:algo`` trains at the same budget in *market steps* (one step of the whole community: the
env-step budget of RLlib and BenchMARL; stable-baselines3's shared policy counts one step per agent, so it gets
``steps × agents``), with :data:`BENCH_HYPERPARAMS`, evaluated :data:`CURVE_POINTS` times on the evaluation days
(the learning curve; the last point is the final score). Runs are subprocesses of ``p2p-gym train`` (``--jobs``
at a time), each in ``<out>/runs/<task>/<lib>-<algo>-s<seed>``; finished runs are reused, so an interrupted
benchmark resumes. Aggregates follow Agarwal et al. (2021, NeurIPS, "Deep RL at the edge of the statistical
precipice"): the interquartile mean (IQM) over seeds with a 95 % stratified percentile bootstrap interval
(:func:`p2p_gym.metrics.iqm`, :func:`p2p_gym.metrics.bootstrap_ci`).

Example::

    p2p-gym bench --list
    p2p-gym bench --references-only --out reports/bench
    p2p-gym bench --tasks community-flex-v1 --algos sb3:ppo,benchmarl:mappo --seeds 5 --steps 50000 \\
        --jobs 2 --out reports/bench
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval._cli import json_safe
from p2p_gym import metrics
from p2p_gym.errors import P2PGymError


class BenchError(P2PGymError, ValueError):
    """Invalid benchmark arguments (names the option and what is allowed)."""


@dataclass(frozen=True)
class BenchTask:
    """A named benchmark task.

    Attributes:
        name: task id (``<name>-v<version>``).
        summary: one line for ``--list``.
        market: :class:`~p2p_gym.sim.MarketConfig` options of the task (training: the ``train`` days).
        rules: rule-based policies scored as references (names of :func:`agents.policy_from_name`), besides
            ``random``, ``zi-c`` and ``truthful``.
        eval_episodes: evaluation episodes (held-out days).
        eval_seed: seed of the first evaluation episode (episode ``e`` plays ``eval_seed + e``).
    """

    name: str
    summary: str
    market: Mapping[str, Any]
    rules: tuple[str, ...] = ()
    eval_episodes: int = 8
    eval_seed: int = 7_000_000

    def config(self, evaluation: bool = False) -> Any:
        """The task's :class:`~p2p_gym.sim.MarketConfig`: training days, or the held-out days with the episode
        optimum (``evaluation``)."""
        from p2p_gym.sim import MarketConfig

        split = {**EVAL_MARKET, "compute_optimum": "episode"} if evaluation else {"day_split": "train"}
        return MarketConfig.from_dict({**self.market, **split})

    @property
    def references(self) -> tuple[str, ...]:
        """Every reference rule (``random``, ``zi-c``, ``truthful`` and the task's own)."""
        return tuple(dict.fromkeys(("random", "zi-c", "truthful", *self.rules)))


#: Market options of the evaluation episodes: the held-out days. The references are scored once with the episode
#: optimum (``compute_optimum="episode"``), which also gives each day's no-trade, idle-device welfare; a trained
#: policy's gains are its Σ_t welfare minus that reference, so its periodic evaluations need no optimisation.
EVAL_MARKET: dict[str, Any] = {"day_split": "test"}

_FEW_SELLERS = {"n_agents": 8, "pv_penetration": 0.25, "battery_share": 0.0}
_FLEX = {"scenario": "default", "mechanism": "uniform", "grid": "linear", "dispatch": "committed",
         "terminal_value": "valued", "episode_steps": 96}  # fmt: skip

_PEERS = {"scenario": "default", "mechanism": "bilateral", "grid": "linear", "episode_steps": 96,
          "peer_selection": True, "peer_k": 3, "grid_policy": "fee", "fee_per_kwh_km": 0.1,
          "scenario_overrides": {"battery_share": 0.0}}  # fmt: skip
_PEER_RULES = ("truthful+nearest", "truthful+greenest", "truthful+random-k")

#: The benchmark tasks.
TASKS: dict[str, BenchTask] = {
    t.name: t
    for t in (
        BenchTask(
            "community-flex-v1",
            "default, 20 households / 6 batteries, committed dispatch, uniform price",
            _FLEX,
            rules=("battery", "flex"),
        ),
        BenchTask(
            "strategic-pab-v1",
            "8 households, 2 sellers with PV, pay-as-bid (market power), fixed positions",
            {
                "scenario": "default",
                "mechanism": "pay_as_bid",
                "grid": "linear",
                "episode_steps": 96,
                "scenario_overrides": _FEW_SELLERS,
            },
            rules=("markup", "zip"),
        ),
        BenchTask(
            "strategic-uniform-v1",
            "8 households, 2 sellers with PV, uniform price (market power), fixed positions",
            {
                "scenario": "default",
                "mechanism": "uniform",
                "grid": "linear",
                "episode_steps": 96,
                "scenario_overrides": _FEW_SELLERS,
            },
            rules=("markup", "zip"),
        ),
        BenchTask(
            "peer-selection-v1",
            "default without batteries, bilateral, accept 3 peers, distance fee 0.10 EUR/kWh/km",
            _PEERS,
            rules=_PEER_RULES,
        ),
        BenchTask(
            "peer-selection-v2",
            "peer-selection-v1 with each peer's distance and PV peak in the observation (peer_obs)",
            {**_PEERS, "peer_obs": True},
            rules=_PEER_RULES,
        ),
        BenchTask(
            "multi-platform-v1",
            "3 LV platforms x 13 prosumers of the SimBench MV/LV system, ADMM negotiation between operators",
            {
                **_FLEX,
                "scenario": "mvlv",
                "coordination": "negotiation",
                "grid_policy": "fee",
                "scenario_overrides": {"platforms": "LV1.201,LV1.202,LV1.203"},
            },
            rules=("battery", "flex"),
            eval_episodes=4,
        ),
        BenchTask(
            "reserve-v1",
            "community-flex-v1 with day-ahead forecast errors, imbalance prices and a reserve market",
            {**_FLEX, "forecast": "day_ahead", "reserve": True, "imbalance_penalty": 0.05},
            rules=("battery", "flex"),
        ),
    )
}

#: ``lib:algo`` pairs of the benchmark (:data:`training.config.LIB_ALGOS`).
ALGOS: tuple[str, ...] = (
    "sb3:ppo", "sb3:a2c", "sb3:sac", "sb3:td3", "rllib:ppo", "rllib:mappo",
    "benchmarl:mappo", "benchmarl:ippo", "benchmarl:maddpg", "benchmarl:masac",
)  # fmt: skip

#: Hyperparameters of the benchmark runs (over each library's defaults), the same for every task. On-policy
#: rollouts hold one 96-step episode per environment copy; exploration starts narrow (σ ≈ 0.37: with σ = 1 the
#: exploration noise alone loses more than any rule gains). Off-policy learners update once per step of the
#: market with as many gradient steps as the batched copies give samples / 256.
BENCH_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "sb3:ppo": {"n_steps": 96, "batch_size": 1024, "n_epochs": 10, "log_std_init": -1.0, "gamma": 0.99},
    "sb3:a2c": {"n_steps": 16, "log_std_init": -1.0, "gamma": 0.99},
    "sb3:sac": {"train_freq": 1, "gradient_steps": 1, "learning_starts": 2000, "batch_size": 256},
    "sb3:td3": {"train_freq": 1, "gradient_steps": 1, "learning_starts": 2000, "batch_size": 256},
    "rllib:ppo": {"train_batch_size_per_learner": 1536, "minibatch_size": 256, "num_epochs": 10},
    "rllib:mappo": {"train_batch_size_per_learner": 1536, "minibatch_size": 256, "num_epochs": 10},
    "benchmarl:mappo": {"frames_per_batch": 1536, "minibatch_size": 256, "n_minibatch_iters": 10},
    "benchmarl:ippo": {"frames_per_batch": 1536, "minibatch_size": 256, "n_minibatch_iters": 10},
    "benchmarl:maddpg": {"frames_per_batch": 384, "n_optimizer_steps": 24, "train_batch_size": 256},
    "benchmarl:masac": {"frames_per_batch": 384, "n_optimizer_steps": 24, "train_batch_size": 256},
}
#: Environment copies stepped together by stable-baselines3's shared policy (the batched env).
SB3_ENVS = 8
#: Evaluations per run (the points of the learning curve; the last one scores the trained policy).
CURVE_POINTS = 8
DONE_FILE = "bench_done.json"
REFERENCES_FILE = "references.json"


# ------------------------------------------------------------------------------------------------ references
def score_policy(task: BenchTask, policies: Any) -> dict[str, float]:
    """Gains from trade of ``policies`` (a rule name, a factory ``(env, agent) -> policy`` or a dict) on the
    task's evaluation episodes: the mean ``R``, its standard deviation over days, the optimum's mean gains and the
    mean episode return per agent."""
    from training.policies import play, rule_policy

    if isinstance(policies, str):
        name = policies
        policies = lambda env, a: rule_policy(name, env, a)  # noqa: E731
    res = play(task.config(evaluation=True), policies, task.eval_episodes, task.eval_seed)
    return {
        "gains": float(np.mean(res.gains)),
        "gains_sd": float(np.std(res.gains)),
        "optimum": float(np.mean(res.optimum_gains)),
        "reference_welfare": float(np.mean(res.reference_welfare)),
        "return": float(np.mean(list(res.episode_reward.values()))),
    }


def reference_scores(task: BenchTask) -> dict[str, Any]:
    """``{"rules": {rule: score_policy}, "optimum": R_opt, "random": R_random, "best_rule": name,
    "reference_welfare": mean welfare of the evaluation days without trade}``."""
    rules = {name: score_policy(task, name) for name in task.references}
    best = max((n for n in rules if n != "random"), key=lambda n: rules[n]["gains"])
    return {
        "rules": rules,
        "optimum": rules["truthful"]["optimum"],
        "random": rules["random"]["gains"],
        "best_rule": best,
        "reference_welfare": rules["truthful"]["reference_welfare"],
    }


def normalised(r: float, refs: Mapping[str, Any]) -> float:
    """``(R − R_random) / (R_optimum − R_random)`` against ``refs`` of :func:`reference_scores`."""
    return metrics.normalised_score(r, refs["random"], refs["optimum"])


def load_references(task: BenchTask, out: Path | None, progress: bool = True) -> dict[str, Any]:
    """The task's references, cached in ``<out>/references.json`` (computed when missing)."""
    path = out / REFERENCES_FILE if out is not None else None
    cache: dict[str, Any] = json.loads(path.read_text()) if path is not None and path.exists() else {}
    key = f"{task.name}:{task.eval_seed}:{task.eval_episodes}"
    if key not in cache:
        t0 = time.perf_counter()
        cache[key] = reference_scores(task)
        if progress:
            print(f"[bench] references of {task.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cache, indent=1))
    return dict(cache[key])


# ------------------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class RunSpec:
    """One training run of the benchmark."""

    task: BenchTask
    lib: str
    algo: str
    seed: int
    steps: int  # market steps
    hyperparams: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.lib}-{self.algo}-s{self.seed}"

    def n_agents(self) -> int:
        from p2p_gym.envs import parallel_env

        env = parallel_env(config=self.task.config())
        n = len(env.possible_agents)
        env.close()
        return n

    def train_args(self, run_dir: Path, n_agents: int) -> dict[str, Any]:
        """The ``p2p-gym train`` config (a :class:`~training.config.TrainArgs` mapping) of this run."""
        per_step = n_agents if self.lib == "sb3" else 1  # sb3's shared policy counts agent steps
        timesteps = self.steps * per_step
        hp = {**BENCH_HYPERPARAMS.get(f"{self.lib}:{self.algo}", {}), **self.hyperparams}
        if self.lib == "sb3" and self.algo in ("ppo", "a2c"):
            hp["batch_size"] = min(int(hp.get("batch_size", 64)), hp["n_steps"] * SB3_ENVS * n_agents)
            if self.algo == "a2c":
                hp.pop("batch_size")
        if self.lib == "sb3" and self.algo in ("sac", "td3"):
            hp["gradient_steps"] = max(1, SB3_ENVS * n_agents // 256)
        eval_freq = max(1, timesteps // CURVE_POINTS)
        if (
            self.lib == "sb3"
        ):  # evaluate on whole vector steps (on-policy: whole rollouts), not twice per update
            chunk = SB3_ENVS * n_agents * (int(hp["n_steps"]) if self.algo in ("ppo", "a2c") else 1)
            eval_freq = max(chunk, eval_freq // chunk * chunk)
        return {
            "algo": self.algo,
            "lib": self.lib,
            "setting": "shared",
            "market": self.task.config().to_dict(),
            "timesteps": timesteps,
            "seed": self.seed,
            "out": str(run_dir),
            "n_envs": SB3_ENVS if self.lib == "sb3" else 1,
            "hyperparams": hp,
            "eval_freq": eval_freq,
            "eval_episodes": self.task.eval_episodes,
            "eval_baselines": [],
            "eval_seed": self.task.eval_seed,
            "eval_market": dict(EVAL_MARKET),
            "checkpoint_freq": 0,
            "progress": False,
            "ray_num_cpus": 1,
        }


def run_dir(out: Path, spec: RunSpec) -> Path:
    return out / "runs" / spec.task.name / spec.name


def execute(
    spec: RunSpec, out: Path, n_agents: int, reference_welfare: float, timeout: float | None = None
) -> dict[str, Any]:
    """Train ``spec`` in a subprocess (``p2p-gym train --config``), unless a finished run of the same config
    exists; returns the run's record (status, wall time, learning curve)."""
    import yaml

    path = run_dir(out, spec)
    done = path / DONE_FILE
    config = spec.train_args(path, n_agents)
    record = finished(spec, out, n_agents)
    if record is not None:
        return record
    path.mkdir(parents=True, exist_ok=True)
    (path / "bench_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "p2p_gym.cli", "train", "--config", str(path / "bench_config.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        status = "ok" if proc.returncode == 0 else _last_line(proc.stdout + proc.stderr)
        (path / "train.log").write_text(proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired:
        status = f"timeout after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    record = {
        "config": config,
        "status": status,
        "wall_seconds": wall,
        "curve": read_curve(path, spec, n_agents, reference_welfare),
    }
    if status == "ok" and not record["curve"]:
        record["status"] = "no evaluations.csv"
    if record["status"] == "ok":
        done.write_text(json.dumps(record, indent=1))
    return record


def finished(spec: RunSpec, out: Path, n_agents: int) -> dict[str, Any] | None:
    """The record of a finished run of ``spec`` under ``out`` with the same training config, else ``None``."""
    path = run_dir(out, spec)
    done = path / DONE_FILE
    if not done.exists():
        return None
    record = json.loads(done.read_text())
    return record if _same_config(record.get("config"), spec.train_args(path, n_agents)) else None


def _same_config(saved: Any, current: Mapping[str, Any]) -> bool:
    """Whether a finished run's saved train config is ``current``; the market options compare with their defaults
    filled in, so a market option added later (with a default) does not invalidate finished runs."""
    from p2p_gym.sim import MarketConfig

    if not isinstance(saved, Mapping) or saved.keys() != current.keys():
        return False
    try:
        market = MarketConfig.from_dict(saved["market"]).to_dict()
    except (P2PGymError, TypeError):
        return False
    return {**saved, "market": market} == current  # current["market"] is a MarketConfig.to_dict() already


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return ("failed: " + (lines[-1] if lines else "no output"))[:300]


def read_curve(path: Path, spec: RunSpec, n_agents: int, reference_welfare: float) -> list[dict[str, float]]:
    """The run's evaluations as ``[{steps, gains, return, eval_seconds}]``: steps in market steps, gains = the mean
    episode welfare − ``reference_welfare`` (the evaluation days' without trade), return = the mean episode return
    per agent."""
    file = path / "evaluations.csv"
    if not file.exists():
        return []
    per_step = n_agents if spec.lib == "sb3" else 1
    with file.open() as f:
        rows = list(csv.DictReader(f))
    return [
        {
            "steps": float(r["timesteps"]) / per_step,
            "gains": float(r["welfare"]) - reference_welfare,
            "return": float(r["learner"]),
            "eval_seconds": float(r.get("eval_seconds") or 0.0),
        }
        for r in rows
    ]


# ------------------------------------------------------------------------------------------- order books
def order_book(market: Any, policies: Any, episodes: int = 8, seed: int = 0) -> dict[str, float]:
    """What a population's orders look like: over ``episodes`` episodes of ``market`` (a
    :class:`~p2p_gym.sim.MarketConfig`) played by ``policies`` (a factory ``(env, agent) -> policy``, a rule name or
    a dict), per market step: the kWh offered to buy and to sell, the volume-weighted bid and ask prices, the share of
    steps with orders on both sides, of steps whose book crosses (highest bid ≥ lowest ask) and of steps with trade,
    and the kWh traded. A population that stops trading either withdraws quantity (``sell_kwh`` → 0) or prices
    itself out (both sides present, ``crossing`` → 0)."""
    from p2p_gym.envs import parallel_env
    from p2p_gym.rollout import play as rollout_play
    from training.policies import rule_policy

    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise BenchError(f"episodes: must be an integer ≥ 1, got {episodes!r}")
    env = parallel_env(config=market)
    if isinstance(policies, str):
        name = policies
        policies = {a: rule_policy(name, env, a) for a in env.possible_agents}
    elif callable(policies):
        policies = {a: policies(env, a) for a in env.possible_agents}

    def record(env: Any, infos: Any, rewards: Any) -> tuple[float, ...]:
        out = env.last_step
        q, buy, price = out.order_kwh[0], out.is_buy[0], out.order_price[0]
        bids, asks = (q > 0) & buy, (q > 0) & ~buy
        both = bool(bids.any() and asks.any())
        cross = both and float(price[bids].max()) >= float(price[asks].min())
        bid_kwh, ask_kwh = float(q[bids].sum()), float(q[asks].sum())
        bid_p = float(price[bids] @ q[bids]) / bid_kwh if bid_kwh > 0 else math.nan
        ask_p = float(price[asks] @ q[asks]) / ask_kwh if ask_kwh > 0 else math.nan
        traded = float(out.p2p_volume_kwh[0])
        return bid_kwh, ask_kwh, bid_p, ask_p, float(both), float(cross), float(traded > 1e-9), traded

    rng = np.random.default_rng(seed)
    eps = rollout_play(env, policies, rng, episodes=episodes, seed=seed, on_step=record)
    env.close()
    x = np.array([r for e in eps for r in e.records], dtype=np.float64)
    keys = (
        "buy_kwh",
        "sell_kwh",
        "bid_price",
        "ask_price",
        "both_sides",
        "crossing",
        "trading",
        "traded_kwh",
    )
    return {
        k: float(np.nanmean(x[:, i])) if np.isfinite(x[:, i]).any() else math.nan for i, k in enumerate(keys)
    }


def run_order_book(run: Path, task: BenchTask) -> dict[str, float]:
    """:func:`order_book` of a finished benchmark run's trained policy on the task's held-out days."""
    from p2p_gym.sim import MarketConfig
    from training.evaluate import load_run
    from training.policies import mixed_factory

    args, learned = load_run(run)
    market = MarketConfig.from_dict({**task.market, **EVAL_MARKET})
    return order_book(market, mixed_factory(learned, args.others), task.eval_episodes, task.eval_seed)


# ----------------------------------------------------------------------------------------------- aggregation
def iqm_curve(
    runs: Sequence[Mapping[str, Any]], ref: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The learning curve of finished runs of one task and algorithm: mean market steps, mean training wall seconds
    (evaluation excluded, spread in proportion to steps), the IQM over seeds of the normalised score, and the
    scores float[seeds, points], over the evaluation points all runs have."""
    n = min(len(r["curve"]) for r in runs)
    y = np.array([[normalised(p["gains"], ref) for p in r["curve"][:n]] for r in runs])
    steps = np.array([[p["steps"] for p in r["curve"][:n]] for r in runs]).mean(axis=0)
    wall = np.array([
        [(r["wall_seconds"] - r["curve"][-1]["eval_seconds"]) * p["steps"] / r["curve"][-1]["steps"]
         for p in r["curve"][:n]] for r in runs
    ]).mean(axis=0)  # fmt: skip
    return steps, wall, np.array([metrics.iqm(y[:, k]) for k in range(n)]), y


def _row_rng(seed: int, task: str, algo: str) -> np.random.Generator:
    """The bootstrap's generator of one table row: seeded by the row's names, so a row's interval does not depend
    on which other rows the report holds."""
    return np.random.default_rng([seed, zlib.crc32(f"{task}|{algo}".encode())])


def aggregate(
    records: Sequence[Mapping[str, Any]], refs: Mapping[str, Mapping[str, Any]], seed: int = 0
) -> list[dict[str, Any]]:
    """One row per (task, lib:algo): IQM of the final normalised score over seeds with a 95 % stratified bootstrap
    interval, whether it beats the best rule (interval above the rule's normalised score), mean wall time and
    market steps per second of training (evaluation time excluded), and ``seconds_to_zic``: the training wall time
    of the first evaluation at which the IQM learning curve reaches ZI-C's score (inf: never; nan: no ZI-C)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["task"], rec["algo"]), []).append(rec)
    rows = []
    for (task, algo), recs in groups.items():
        ok = [r for r in recs if r["status"] == "ok" and r["curve"]]
        row: dict[str, Any] = {"task": task, "algo": algo, "seeds": len(ok), "failed": len(recs) - len(ok)}
        ref = refs[task]
        best = ref["best_rule"]
        row["best_rule"] = best
        row["best_rule_norm"] = normalised(ref["rules"][best]["gains"], ref)
        scores = np.array([normalised(r["curve"][-1]["gains"], ref) for r in ok])
        if len(scores) >= 2:
            point, lo, hi = metrics.bootstrap_ci(scores, _row_rng(seed, task, algo))
        elif len(scores) == 1:
            point, lo, hi = float(scores[0]), math.nan, math.nan
        else:
            point = lo = hi = math.nan
        row.update(iqm=point, ci_low=lo, ci_high=hi, scores=scores.tolist())
        row["beats_best_rule"] = bool(math.isfinite(lo) and lo > row["best_rule_norm"])
        walls = [r["wall_seconds"] for r in ok]
        train_s = [max(r["wall_seconds"] - r["curve"][-1]["eval_seconds"], 1e-9) for r in ok]
        steps = [r["curve"][-1]["steps"] for r in ok]
        row["wall_seconds"] = float(np.mean(walls)) if walls else math.nan
        row["steps_per_second"] = float(np.mean(np.divide(steps, train_s))) if ok else math.nan
        # wall-clock speed of learning: the first evaluation at which the IQM curve reaches ZI-C's score
        row["seconds_to_zic"] = math.nan
        if ok and "zi-c" in ref["rules"]:
            _, wall, curve, _ = iqm_curve(ok, ref)
            reached = np.flatnonzero(curve >= normalised(ref["rules"]["zi-c"]["gains"], ref))
            row["seconds_to_zic"] = float(wall[reached[0]]) if reached.size else math.inf
        rows.append(row)
    return rows


def overall(rows: Sequence[Mapping[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Per ``lib:algo`` over the tasks it ran on every seed of: the IQM of all (seed, task) normalised scores with
    the stratified bootstrap interval (tasks are strata), and the total training wall time."""
    by_algo: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["seeds"] >= 2:
            by_algo.setdefault(r["algo"], []).append(r)
    out = []
    for algo, rs in by_algo.items():
        n = min(len(r["scores"]) for r in rs)
        x = np.array([r["scores"][:n] for r in rs]).T  # float[seeds, tasks]
        point, lo, hi = metrics.bootstrap_ci(x, _row_rng(seed, "overall", algo))
        out.append({"algo": algo, "tasks": len(rs), "seeds": n, "iqm": point, "ci_low": lo, "ci_high": hi,
                    "wall_seconds": float(sum(r["wall_seconds"] * r["seeds"] for r in rs))})  # fmt: skip
    return sorted(out, key=lambda r: -r["iqm"])


def load_included(path: str | Path, steps: int) -> dict[str, Any]:
    """A previous ``bench.json`` (another session's or machine's benchmark) to report together with this one; its
    runs must have the same training budget ``steps``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BenchError(f"--include: cannot read {path} as a bench.json ({err})") from None
    if not isinstance(data, dict) or not {"steps", "references", "runs"} <= data.keys():
        raise BenchError(f"--include: {path} is not a bench.json (needs 'steps', 'references' and 'runs')")
    keys = {"task", "algo", "seed", "status", "wall_seconds", "curve"}
    bad = next(
        (i for i, r in enumerate(data["runs"]) if not isinstance(r, dict) or not keys <= r.keys()), None
    )
    if bad is not None or not isinstance(data["references"], dict):
        where = f"run {bad}" if bad is not None else "'references'"
        raise BenchError(f"--include: {path}: {where} is not a bench run (needs {sorted(keys)})")
    if data["steps"] != steps:
        raise BenchError(
            f"--include: {path} trained {data['steps']} market steps per run, this bench --steps {steps}"
        )
    return data


def merge_references(refs: dict[str, Any], included: Mapping[str, Any], source: str) -> None:
    """Add an included ``bench.json``'s references to ``refs`` (in place). References of a task in both must agree
    (same optimum, random and rules' gains to 1e-6, relative or in currency, so solver round-off across machines
    passes), else the runs were scored on different instances and a :class:`BenchError` says so."""
    for task, ref in included["references"].items():
        if task not in refs:
            refs[task] = ref
            continue
        mine = refs[task]
        names = sorted(mine["rules"])
        a = [mine["optimum"], mine["random"], *(mine["rules"][n]["gains"] for n in names)]
        b = [ref["optimum"], ref["random"], *(ref["rules"].get(n, {}).get("gains", math.nan) for n in names)]
        if not np.allclose(a, b, rtol=1e-6, atol=1e-6):
            raise BenchError(
                f"--include: {source} scored {task} against other references (optimum {ref['optimum']:.6g} vs "
                f"{mine['optimum']:.6g}); rerun one of them"
            )


def merge_runs(records: list[dict[str, Any]], included: Mapping[str, Any]) -> None:
    """Add an included ``bench.json``'s runs to ``records`` (in place); a run of the same (task, lib:algo, seed) here
    wins."""
    have = {(r["task"], r["algo"], r["seed"]) for r in records}
    records.extend(dict(r) for r in included["runs"] if (r["task"], r["algo"], r["seed"]) not in have)


# ------------------------------------------------------------------------------------------------ reporting
def format_references(refs: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: R per reference and the optimum per task, with each rule's normalised score."""
    lines = ["| task | random | zi-c | truthful | best rule | optimum |", "|---|---:|---:|---:|---|---:|"]
    for task, ref in refs.items():
        r = ref["rules"]
        best = ref["best_rule"]

        def cell(name: str, r: Any = r, ref: Any = ref) -> str:
            return f"{r[name]['gains']:.2f} ({normalised(r[name]['gains'], ref):.2f})"

        lines.append(
            f"| {task} | {r['random']['gains']:.2f} | {cell('zi-c')} | {cell('truthful')} | {best}: {cell(best)} | "
            f"{ref['optimum']:.2f} |"
        )
    return "\n".join(lines)


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def _seconds(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "–"
    return "never" if math.isinf(x) else f"{x:.0f}"


def format_results(rows: Sequence[Mapping[str, Any]], over: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: per task and algorithm, then over tasks."""
    lines = [
        "| task | lib:algo | seeds | IQM normalised [95 % CI] | best rule (norm.) | beats it | wall s/run | "
        "steps/s | s to ZI-C |",
        "|---|---|---:|---|---|:-:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["task"], -(r["iqm"] if math.isfinite(r["iqm"]) else -1e9))):
        seeds = f"{r['seeds']}" + (f" (+{r['failed']} failed)" if r["failed"] else "")
        lines.append(
            f"| {r['task']} | {r['algo']} | {seeds} | {_fmt(r['iqm'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | "
            f"{r['best_rule']} ({_fmt(r['best_rule_norm'])}) | {'yes' if r['beats_best_rule'] else 'no'} | "
            f"{_fmt(r['wall_seconds'], 0)} | {_fmt(r['steps_per_second'], 0)} | {_seconds(r.get('seconds_to_zic'))} |"
        )
    if over:
        lines += ["", "| lib:algo | tasks | seeds | IQM normalised [95 % CI] | training wall s (all runs) |",
                  "|---|---:|---:|---|---:|"]  # fmt: skip
        for r in over:
            lines.append(
                f"| {r['algo']} | {r['tasks']} | {r['seeds']} | {_fmt(r['iqm'])} [{_fmt(r['ci_low'])}, "
                f"{_fmt(r['ci_high'])}] | {_fmt(r['wall_seconds'], 0)} |"
            )
    return "\n".join(lines)


def plot_curves(
    records: Sequence[Mapping[str, Any]], refs: Mapping[str, Mapping[str, Any]], out: Path
) -> list[Path]:
    """One figure per task: IQM over seeds of the normalised score against market steps (left) and training wall
    seconds (right), one line per algorithm, with the references as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for task in dict.fromkeys(r["task"] for r in records):
        ref = refs[task]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for algo in dict.fromkeys(r["algo"] for r in records if r["task"] == task):
            runs = [r for r in records if r["task"] == task and r["algo"] == algo and r["status"] == "ok"]
            if not runs:
                continue
            steps, wall, iqm, y = iqm_curve(runs, ref)
            for ax, x in zip(axes, (steps, wall), strict=True):
                (line,) = ax.plot(x, iqm, marker="o", ms=3, label=f"{algo} ({len(runs)} seeds)")
                ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=line.get_color(), alpha=0.12)
        for name, style in (("truthful", ":"), (ref["best_rule"], "--"), ("zi-c", "-.")):
            for ax in axes:
                ax.axhline(normalised(ref["rules"][name]["gains"], ref), color="grey", ls=style, lw=1)
            axes[1].annotate(name, (1.0, normalised(ref["rules"][name]["gains"], ref)), xycoords=("axes fraction",
                             "data"), fontsize=7, color="grey", ha="right", va="bottom")  # fmt: skip
        axes[0].set_xlabel("market steps")
        axes[1].set_xlabel("training wall time (s)")
        axes[0].set_ylabel("normalised score (0 random, 1 optimum)")
        axes[0].set_title(task)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = out / f"curves-{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``p2p-gym bench``."""
    parser.add_argument("--list", action="store_true", help="list the tasks and algorithms and exit")
    parser.add_argument("--tasks", default=",".join(TASKS), help="task ids, comma-separated (default: all)")
    parser.add_argument(
        "--algos", default="sb3:ppo", help=f"lib:algo pairs, comma-separated, or 'all' ({', '.join(ALGOS)})"
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds per task and algorithm (default: 5)")
    parser.add_argument("--steps", type=int, default=50_000, help="training budget in market steps")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at a time (default: 1)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run before it is stopped")
    parser.add_argument("--references-only", action="store_true", help="only compute the references")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="tables and figures of the finished runs only (no training)",
    )
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="BENCH_JSON",
        help="report the runs of a previous bench.json (same --steps) together with these (repeatable)",
    )
    parser.add_argument("--out", default="reports/bench", help="output directory (default: %(default)s)")


def _parse(args: argparse.Namespace) -> tuple[list[BenchTask], list[tuple[str, str]]]:
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise BenchError(f"--tasks: unknown task(s) {unknown}; choose from {list(TASKS)}")
    algos = (
        list(ALGOS)
        if args.algos.strip() == "all"
        else [a.strip() for a in args.algos.split(",") if a.strip()]
    )
    bad = [a for a in algos if a not in ALGOS]
    if bad:
        raise BenchError(f"--algos: unknown lib:algo {bad}; choose from {list(ALGOS)} or 'all'")
    for name in ("seeds", "steps", "jobs"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name}: must be ≥ 1, got {getattr(args, name)}")
    if args.timeout is not None and not args.timeout > 0:
        raise BenchError(f"--timeout: must be > 0 seconds, got {args.timeout}")
    return [TASKS[n] for n in names], [tuple(a.split(":")) for a in algos]  # type: ignore[misc]


def main(args: argparse.Namespace) -> int:
    """Entry point of ``p2p-gym bench``."""
    if args.list:
        for t in TASKS.values():
            print(f"{t.name:24s} {t.summary}; references {', '.join(t.references)}")
        print("algorithms: " + ", ".join(ALGOS))
        return 0
    try:
        tasks, algos = _parse(args)
        included = [(p, load_included(p, args.steps)) for p in getattr(args, "include", [])]
    except BenchError as err:
        print(f"p2p-gym bench: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    refs = {t.name: load_references(t, out) for t in tasks}
    try:  # the included references first: a mismatch stops before any training
        for path, data in included:
            merge_references(refs, data, source=str(path))
    except BenchError as err:
        print(f"p2p-gym bench: error: {err}", file=sys.stderr)
        return 2
    text = format_references(refs)
    if args.references_only:
        print(text)
        (out / "references.md").write_text(text + "\n")
        return 0
    from tqdm.auto import tqdm

    # seed-major order: an interrupted benchmark has the first seeds of every algorithm (it resumes from there)
    specs = [
        RunSpec(t, lib, algo, s, args.steps) for t in tasks for s in range(args.seeds) for lib, algo in algos
    ]
    agents = {t.name: RunSpec(t, "sb3", "ppo", 0, 1).n_agents() for t in tasks}
    records: list[dict[str, Any]] = []
    if args.report_only:  # the finished runs only
        for spec in specs:
            rec = finished(spec, out, agents[spec.task.name])
            if rec is not None:
                records.append(
                    {**rec, "task": spec.task.name, "algo": f"{spec.lib}:{spec.algo}", "seed": spec.seed}
                )
        print(f"[bench] {len(records)} of {len(specs)} runs finished", file=sys.stderr)
        specs = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool, tqdm(total=len(specs), desc="bench runs") as bar:
        futures = {
            pool.submit(
                execute, s, out, agents[s.task.name], refs[s.task.name]["reference_welfare"], args.timeout
            ): s
            for s in specs
        }
        for fut in futures:
            spec = futures[fut]
            rec = fut.result()
            rec = {**rec, "task": spec.task.name, "algo": f"{spec.lib}:{spec.algo}", "seed": spec.seed}
            records.append(rec)
            bar.update(1)
            if rec["status"] != "ok":
                tqdm.write(f"[bench] {spec.task.name} {spec.name}: {rec['status']}", file=sys.stderr)
    for _, data in included:
        merge_runs(records, data)
    rows = aggregate(records, refs)
    over = overall(rows)
    text += "\n\n" + format_results(rows, over)
    print(text)
    (out / "bench.md").write_text(text + "\n")
    (out / "bench.json").write_text(
        json.dumps(json_safe({"steps": args.steps, "references": refs, "rows": rows, "overall": over,
                    "runs": [{k: v for k, v in r.items() if k != "config"} for r in records]}), indent=1)
    )  # fmt: skip
    plot_curves(records, refs, out)
    return 0
