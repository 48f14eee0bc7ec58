"""Peer selection: a learned partner choice against random-k, nearest, greenest and the best fixed partner set.

Task: bilateral matching with peer selection (mutual acceptance: a pair trades only if both accept each other;
Sorin, Bobo & Pinson 2019, "Consensus-based approach to peer-to-peer electricity markets with product
differentiation", IEEE Trans. Power Syst. 34(2):994–1004, bilateral preferences), each agent accepts its ``k``
highest-scored peers (``peer_k``), and a distance-based network fee (``grid_policy="fee"``, ``fee_per_kwh_km``)
paid on every P2P kWh, so that *whom* one trades with changes the profit (partner choice as in the game-theoretic
P2P designs surveyed by Tushar, Saha, Yuen, Smith & Poor 2018, "Transforming energy networks via peer-to-peer
energy trading: the potential of game-theoretic approaches", IEEE Signal Process. Mag. 35(4):90–111). The other
agents bid ZI-C and pick ``k`` random peers every step (``zi-c+random-k:k``). One slot, the *learner*, also bids
ZI-C; only its peer scores change between the policies compared, so the comparison isolates partner choice:

* **learned**: PPO (stable-baselines3) on the peer scores only (:class:`PeerOnlyEnv`), trained on the ``train``
  days, one run per seed;
* the selectors of :mod:`agents.peers` in the slot: ``random-k``, ``nearest`` (line path length), ``greenest``
  (largest PV), ``cheapest`` (best past prices);
* every **fixed set** of ``k`` peers (:class:`FixedPeers`: score +1 for the set, −1 for the rest), searched
  exhaustively (:func:`exhaustive_search`); the best and the worst set are reported with the distribution.

Every policy is scored on the same held-out days (``day_split="test"``; for seed ``s`` episode ``e`` is reset with
seed ``1_000_000 + 1000·s + e``) as the learner's mean profit per day (reward ``money``, EUR). With the same reset
seeds, the other agents draw the same random numbers whatever the learner's slot plays: the learner's ZI-C bidder
draws the same numbers under every selector, and the ``random-k`` slot draws its peers from a generator of its own
(:class:`IndependentRandomPeers`), so the differences between slot policies are paired (common random numbers).
The best fixed set is chosen on the days it is scored on: an in-hindsight upper bound among fixed sets, not a
policy one could deploy; a learned choice can still beat it, since it may change partners with the time of day.
The learned policy's *share of the gap* is ``(learned − random-k) / (best set − random-k)``.

Cases (``--scenario-case``):

* ``small`` (default): ``default`` with 8 households and no batteries (5 with PV: agents 0, 3, 4, 6, 7), ``k = 3``
  (35 fixed sets), learner ``prosumer_0``, the largest PV owner, a seller by day that chooses among three
  households without PV (1, 2, 5 at 0.08, 0.01 and 0.16 km) and four other PV owners (sellers at the same hours);
  ``nearest`` picks 2, 3, 1 and ``greenest`` the other PV owners, which compete with it rather than buy from it.
  On ``small`` at the default budget (3 seeds × 20,000 PPO steps, 10 held-out days per seed, about 11 minutes
  on one core) the learned scores accept the three households without PV when the learner sells, which is the
  best of the 35 fixed sets on every seed's days, and close about 90 % of the gap from random-k to that set;
  ``nearest`` lies between, ``greenest`` (the other PV owners) is the worst set
  (``docs/figures/peer_selection_results.md``).
* ``tiny``: the 4-agent ``tiny`` feeder (4 buses in a line, 0.1 km apart), ``k = 2``, learner ``prosumer_0``.

Usage::

    python -m eval.peer_selection                       # small, k = 3, 3 seeds x 20000 steps, 10 days per seed
    python -m eval.peer_selection --scenario-case tiny --k 1 --seeds 0 1 --out docs/figures
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from agents.base import feature
from agents.peers import PeerSelector, RandomPeers, WithPeerSelection
from agents.registry import selector_from_name
from eval._cli import OneLineParser, json_safe
from p2p_gym.envs import parallel_env
from p2p_gym.errors import P2PGymError
from p2p_gym.grid import path_length_km
from p2p_gym.wrappers import SingleAgentEnv
from training.policies import play, rule_policy

BIDDER = "zi-c"
#: Selectors of :mod:`agents.peers` compared in the learner's slot.
SELECTORS: tuple[str, ...] = ("random-k", "nearest", "greenest", "cheapest")
#: Reset seed of seed ``s``'s first held-out episode: ``EVAL_SEED + EVAL_STRIDE · s``.
EVAL_SEED, EVAL_STRIDE = 1_000_000, 1_000
#: PPO settings: a step's partners change only that step's reward (no battery, stateless others), so the task is
#: a contextual bandit and ``gamma = 0``; σ = 1 at the start explores the sets about as random-k does.
PPO_KWARGS: dict[str, Any] = {
    "n_steps": 384, "batch_size": 96, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.0, "gae_lambda": 1.0,
}  # fmt: skip
NET_ARCH = [64, 64]
RESULTS_FILE, TABLE_FILE, FIGURE_FILE = (
    "peer_selection_results.json",
    "peer_selection_results.md",
    ("peer_selection_sets.png"),
)


@dataclass(frozen=True)
class Case:
    """A market for the study: a scenario with overrides, the learner's slot and the default ``k``."""

    scenario: str
    overrides: dict[str, Any] = field(default_factory=dict)
    agent: str = "prosumer_0"
    k: int = 2
    summary: str = ""


CASES: dict[str, Case] = {
    "small": Case(
        "default", {"n_agents": 8, "battery_share": 0.0}, "prosumer_0", 3,
        "default, 8 households, no batteries; learner prosumer_0 (4.7 kWp PV)",
    ),
    "tiny": Case("tiny", {}, "prosumer_0", 2, "tiny (4 agents in a line, 0.1 km apart); learner prosumer_0"),
}  # fmt: skip


def market_config(case: Case, k: int, fee: float, split: str = "test") -> dict[str, Any]:
    """Keyword arguments of :func:`p2p_gym.parallel_env` for ``case`` with ``peer_k = k`` on the days ``split``."""
    return {
        "scenario": case.scenario,
        "scenario_overrides": dict(case.overrides),
        "mechanism": "bilateral",
        "grid": "linear",
        "peer_selection": True,
        "peer_k": k,
        "episode_steps": 96,
        "grid_policy": "fee",
        "fee_per_kwh_km": fee,
        "day_split": split,
    }


def eval_seed(seed: int) -> int:
    """The reset seed of training seed ``seed``'s first held-out episode."""
    return EVAL_SEED + EVAL_STRIDE * seed


# ------------------------------------------------------------------------------------------------ policies
class FixedPeers(PeerSelector):
    """Always the same peers: score +1 for ``peers``, −1 for the other agents.

    Args:
        n_agents: N.
        index: this agent's index.
        peers: agent indices (into ``possible_agents``) of the accepted peers (not ``index``).
    """

    def __init__(self, n_agents: int, index: int, peers: Iterable[int]) -> None:
        chosen = np.unique(np.asarray(list(peers), dtype=int))
        super().__init__(n_agents, index, max(len(chosen), 1))
        if not np.isin(chosen, self.others).all():
            raise ValueError(
                f"peers: must be other agents' indices in [0, {n_agents - 1}], got {chosen.tolist()}"
            )
        self.peers = chosen

    def choose(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.peers

    def __repr__(self) -> str:
        return f"FixedPeers({self.peers.tolist()})"


class IndependentRandomPeers(RandomPeers):
    """``random-k`` with a generator of its own (episode ``e`` of a run: ``default_rng([seed, e])``), so that the
    other agents' draws from the env's generator stay those they make when the slot plays any other selector."""

    def __init__(self, n_agents: int, index: int, k: int, seed: int) -> None:
        super().__init__(n_agents, index, k)
        self.seed, self.episode = int(seed), -1
        self.own = np.random.default_rng([self.seed, 0])

    def reset(self) -> None:
        self.episode += 1
        self.own = np.random.default_rng([self.seed, self.episode])

    def choose(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return super().choose(obs, self.own)


class PeerOnlyEnv(gymnasium.Env):
    """The learner's peer scores float[N-1] are the action; its price/quantity/battery come from a rule.

    Args:
        env_config: keyword arguments of :func:`p2p_gym.parallel_env` (with ``peer_selection=True``).
        agent: the learner's agent id.
        bidder: rule name of the learner's bidding (``zi-c``).
        others: rule name of the other agents (``zi-c+random-k:2``).
    """

    def __init__(self, env_config: dict[str, Any], agent: str, bidder: str, others: str) -> None:
        env = parallel_env(**env_config)
        pol = {a: rule_policy(others, env, a) for a in env.possible_agents if a != agent}
        self.inner = SingleAgentEnv(env, agent, pol)
        self.bidder = rule_policy(bidder, env, agent)
        self.observation_space = self.inner.observation_space
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (env.n - 1,), np.float32)
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if hasattr(self.bidder, "reset"):
            self.bidder.reset()
        self._obs, info = self.inner.reset(seed=seed, options=options)
        return self._obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self._obs is not None
        full = np.asarray(self.bidder.act(self._obs, self.inner.env.rng), dtype=np.float32).copy()
        full[3:] = action
        self._obs, reward, term, trunc, info = self.inner.step(full)
        if hasattr(self.bidder, "observe_result"):
            self.bidder.observe_result(info)
        return self._obs, reward, term, trunc, info


class LearnedPeers:
    """ZI-C bids with the trained model's peer scores (the :mod:`agents` protocol, for :func:`play`)."""

    def __init__(self, model: Any, env: Any, agent: str, bidder: str) -> None:
        self.model = model
        self.bidder = rule_policy(bidder, env, agent)

    def reset(self) -> None:
        if hasattr(self.bidder, "reset"):
            self.bidder.reset()

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        full = np.asarray(self.bidder.act(obs, rng), dtype=np.float32).copy()
        full[3:] = self.model.predict(obs, deterministic=True)[0]
        return full

    def observe_result(self, info: dict) -> None:
        if hasattr(self.bidder, "observe_result"):
            self.bidder.observe_result(info)


class AcceptanceLog:
    """Wraps the learner's policy and counts, per other agent, the steps it is accepted (the env's rule: the
    ``k`` highest scores, ties by agent index), the steps it is accepted while the learner sells (observation
    feature ``net`` > 0) and the P2P kWh traded with it (the last step's trades, ``env.last_outcome``).

    Args:
        policy: the learner's policy (``act``, optional ``reset``/``observe_result``).
        env: the environment it plays in.
        agent: the learner's agent id.
        k: ``peer_k``.
    """

    def __init__(self, policy: Any, env: Any, agent: str, k: int) -> None:
        self.policy, self.env, self.k = policy, env, int(k)
        n = len(env.possible_agents)
        self.index = env.possible_agents.index(agent)
        self.others = np.array([m for m in range(n) if m != self.index], dtype=int)
        self.steps, self.selling_steps = 0, 0
        self.accepted = np.zeros(n)  # steps each agent was accepted
        self.accepted_selling = np.zeros(n)
        self.kwh = np.zeros(n)  # P2P kWh traded with each agent (either side)

    def reset(self) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = np.asarray(self.policy.act(obs, rng), dtype=np.float32)
        chosen = self.others[np.argsort(-a[3:], kind="stable")[: self.k]]
        selling = feature(obs, "net") > 0
        self.steps += 1
        self.selling_steps += int(selling)
        self.accepted[chosen] += 1
        self.accepted_selling[chosen] += float(selling)
        return a

    def observe_result(self, info: dict) -> None:
        if hasattr(self.policy, "observe_result"):
            self.policy.observe_result(info)
        tr = self.env.last_outcome.result.trades
        me = self.index
        mine = (tr.buyer == me) | (tr.seller == me)
        peer = np.where(tr.buyer == me, tr.seller, tr.buyer)
        self.kwh += np.bincount(peer[mine], tr.quantity[mine], len(self.kwh))

    def summary(self) -> dict[str, Any]:
        """Per other agent (by index): acceptance share of all steps and of selling steps, kWh per day."""
        days = max(self.steps, 1) / self.env.config.episode_steps
        return {
            "steps": self.steps,
            "selling_steps": self.selling_steps,
            "accept_share": {int(m): self.accepted[m] / max(self.steps, 1) for m in self.others},
            "accept_share_selling": {
                int(m): self.accepted_selling[m] / max(self.selling_steps, 1) for m in self.others
            },
            "p2p_kwh_per_day": {int(m): self.kwh[m] / days for m in self.others},
        }  # fmt: skip


# ------------------------------------------------------------------------------------------------ evaluation
def slot_factory(agent: str, slot: Callable[[Any, str], Any], others: str) -> Callable[[Any, str], Any]:
    """A :func:`play` factory: ``slot(env, agent)`` in the learner's slot, the rule ``others`` elsewhere."""
    return lambda env, a: slot(env, a) if a == agent else rule_policy(others, env, a)


def fixed_set_policy(env: Any, agent: str, peers: Iterable[int], bidder: str = BIDDER) -> WithPeerSelection:
    """The learner's bidder with the fixed peer set ``peers`` (agent indices)."""
    i = env.possible_agents.index(agent)
    return WithPeerSelection(rule_policy(bidder, env, agent), FixedPeers(len(env.possible_agents), i, peers))


def selector_policy(env: Any, agent: str, selector: str, k: int, seed: int, bidder: str = BIDDER) -> Any:
    """The learner's bidder with a selector of :data:`SELECTORS` (``random-k`` on its own generator)."""
    if selector == "random-k":
        i = env.possible_agents.index(agent)
        return WithPeerSelection(
            rule_policy(bidder, env, agent), IndependentRandomPeers(len(env.possible_agents), i, k, seed)
        )
    return rule_policy(f"{bidder}+{selector}:{k}", env, agent)


def slot_profit(cfg: Mapping[str, Any], agent: str, slot: Callable[[Any, str], Any], others: str, episodes: int,
                seed: int) -> float:  # fmt: skip
    """The learner's mean profit per held-out day (EUR) with ``slot(env, agent)`` in its slot."""
    return play(cfg, slot_factory(agent, slot, others), episodes, seed).episode_reward[agent]


def fixed_sets(n_agents: int, index: int, k: int) -> list[tuple[int, ...]]:
    """Every k-subset of the other agents, in lexicographic order."""
    return list(itertools.combinations([m for m in range(n_agents) if m != index], k))


def exhaustive_search(
    cfg: Mapping[str, Any], agent: str, k: int, others: str, episodes: int, seed: int, progress: Any = None
) -> dict[tuple[int, ...], float]:
    """The learner's mean profit per day (EUR) with every fixed set of ``k`` peers, on the same days and seeds.

    Args:
        cfg: keyword arguments of :func:`p2p_gym.parallel_env` (``peer_k = k``).
        agent: the learner's agent id.
        k: set size.
        others: rule of the other agents.
        episodes: held-out days (episode ``e`` reset with ``seed + e``).
        seed: base reset seed.
        progress: optional bar with ``update(1)`` after each set.
    """
    env = parallel_env(**dict(cfg))
    n, i = len(env.possible_agents), env.possible_agents.index(agent)
    env.close()
    out = {}
    for peers in fixed_sets(n, i, k):
        out[peers] = slot_profit(
            cfg, agent, lambda e, a, s=peers: fixed_set_policy(e, a, s), others, episodes, seed
        )
        if progress is not None:
            progress.update(1)
    return out


def set_summary(profits: Mapping[tuple[int, ...], float]) -> dict[str, Any]:
    """Best and worst set (ties: the first in lexicographic order) and min/median/max over sets."""
    items = sorted(profits.items())
    values = np.array([v for _, v in items])
    best, worst = items[int(np.argmax(values))], items[int(np.argmin(values))]
    return {
        "best_set": list(best[0]), "best": best[1], "worst_set": list(worst[0]), "worst": worst[1],
        "min": float(values.min()), "median": float(np.median(values)), "max": float(values.max()),
        "n_sets": len(items),
    }  # fmt: skip


def rank_of(profits: Mapping[tuple[int, ...], float], peers: Iterable[int]) -> int | None:
    """1-based rank of the set ``peers`` among ``profits`` (1 = best), None if it is not one of them."""
    key = tuple(sorted(int(p) for p in peers))
    if key not in profits:
        return None
    return 1 + sum(v > profits[key] for v in profits.values())


# ------------------------------------------------------------------------------------------------ learning
def trained_steps(timesteps: int) -> int:
    """The steps PPO takes for a budget of ``timesteps``: whole rollouts of ``n_steps``."""
    n = PPO_KWARGS["n_steps"]
    return -(-int(timesteps) // n) * n


def train(case: Case, k: int, fee: float, timesteps: int, seed: int, agent: str, progress: Any = None) -> Any:
    """PPO on the learner's peer scores (train days); returns the model."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    class _Bar(BaseCallback):
        def _on_step(self) -> bool:
            if progress is not None:
                progress.update(self.training_env.num_envs)
            return True

    torch.set_num_threads(1)
    env = PeerOnlyEnv(market_config(case, k, fee, "train"), agent, BIDDER, f"{BIDDER}+random-k:{k}")
    model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": NET_ARCH}, seed=seed, **PPO_KWARGS)
    model.learn(timesteps, callback=_Bar())
    return model


# ------------------------------------------------------------------------------------------------ study
def study(case: Case, seeds: Sequence[int], timesteps: int, k: int, fee: float, episodes: int, agent: str,
          progress: Callable[..., Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Train, search and compare (the module docstring); returns the JSON-ready result."""
    cfg = market_config(case, k, fee)
    others = f"{BIDDER}+random-k:{k}"
    env = parallel_env(**cfg)
    sc, i, n = env.scenario, env.possible_agents.index(agent), len(env.possible_agents)
    dist = path_length_km(sc.net, sc.bus)[i]
    fee_row = env.static.fee_matrix[i]
    static_sets = {
        s: selector_from_name(s, env, agent, k).choose(None, None) for s in ("nearest", "greenest")
    }
    env.close()
    peers = {
        m: {"agent": env.possible_agents[m], "km": float(dist[m]), "fee_per_kwh": float(fee_row[m]),
            "pv_kwp": float(sc.pv_kwp[m])}
        for m in range(n) if m != i
    }  # fmt: skip
    bar = progress or (lambda **kw: _NoBar())
    rows = []
    for seed in seeds:
        s0 = eval_seed(seed)
        row: dict[str, Any] = {"seed": seed, "eval_seed": s0}
        with bar(total=trained_steps(timesteps), desc=f"PPO seed {seed}", unit="step") as b:
            model = train(case, k, fee, timesteps, seed, agent, b)
        logs: list[AcceptanceLog] = []

        def learned(env: Any, a: str, m: Any = model, log: list[AcceptanceLog] = logs) -> AcceptanceLog:
            log.append(AcceptanceLog(LearnedPeers(m, env, a, BIDDER), env, a, k))
            return log[-1]

        row["learned"] = slot_profit(cfg, agent, learned, others, episodes, s0)
        row["acceptance"] = logs[-1].summary()
        for sel in SELECTORS:
            row[sel] = slot_profit(
                cfg, agent, lambda e, a, s=sel, s0=s0: selector_policy(e, a, s, k, s0), others, episodes, s0
            )
        with bar(total=len(fixed_sets(n, i, k)), desc=f"fixed sets seed {seed}", unit="set") as b:
            profits = exhaustive_search(cfg, agent, k, others, episodes, s0, b)
        row["sets"] = {",".join(map(str, s)): v for s, v in profits.items()}
        row.update(set_summary(profits))
        gap = row["best"] - row["random-k"]
        row["gap_share"] = (row["learned"] - row["random-k"]) / gap if gap > 0 else math.nan
        for sel, chosen in static_sets.items():
            row[f"{sel}_rank"] = rank_of(profits, chosen)
        share = row["acceptance"]["accept_share_selling"]
        top = sorted(sorted(share, key=lambda m: -share[m])[:k])
        row["learned_top"] = top
        row["learned_top_matches_best"] = top == row["best_set"]
        row["learned_top_profit"], row["learned_top_rank"] = profits.get(tuple(top)), rank_of(profits, top)
        rows.append(row)
    return {
        "case": case.summary, "scenario": case.scenario, "scenario_overrides": case.overrides, "agent": agent,
        "k": k, "fee_per_kwh_km": fee, "bidder": BIDDER, "others": others, "episodes": episodes,
        "timesteps": timesteps, "trained_steps": trained_steps(timesteps), "seeds": list(seeds),
        "ppo": {**PPO_KWARGS, "net_arch": NET_ARCH}, "peers": peers,
        "nearest_set": sorted(int(m) for m in static_sets["nearest"]),
        "greenest_set": sorted(int(m) for m in static_sets["greenest"]), "rows": rows,
    }  # fmt: skip


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


# ------------------------------------------------------------------------------------------------ report
COLUMNS = ("learned", *SELECTORS, "best", "worst", "median")


def _set(s: Iterable[int]) -> str:
    return "{" + ", ".join(map(str, s)) + "}"


def _rank(rank: int | None) -> str:
    return "–" if rank is None else str(rank)  # None: the selector accepts fewer than k peers (no k-set)


def _profit(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(result: Mapping[str, Any]) -> str:
    """The comparison table (per seed and mean), the set distribution and the learned acceptance frequencies."""
    rows, k = result["rows"], result["k"]
    head = (
        "| seed | "
        + " | ".join(COLUMNS)
        + " | best set | worst set | share of gap | nearest rank | greenest rank |"
    )
    lines = [
        f"Peer selection: {result['case']}; bilateral, mutual acceptance, peer_k = {k}, fee "
        f"{result['fee_per_kwh_km']} EUR/kWh/km; others {result['others']}; learner {result['agent']} bids "
        f"{result['bidder']}. Profit of the learner's slot in EUR/day, mean of {result['episodes']} held-out days "
        f"per seed; PPO {result['timesteps']} steps per seed; {rows[0]['n_sets']} fixed sets.",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | " + " | ".join(f"{r[c]:.3f}" for c in COLUMNS)
            + f" | {_set(r['best_set'])} | {_set(r['worst_set'])} | {r['gap_share']:.2f} | "
            f"{_rank(r['nearest_rank'])} | {_rank(r['greenest_rank'])} |"
        )  # fmt: skip
    mean = {c: float(np.mean([r[c] for r in rows])) for c in COLUMNS}
    gap = mean["best"] - mean["random-k"]
    share = (mean["learned"] - mean["random-k"]) / gap if gap > 0 else math.nan
    lines.append("| mean | " + " | ".join(f"{mean[c]:.3f}" for c in COLUMNS) + f" | | | {share:.2f} | | |")
    lines += [
        "",
        f"nearest = {_set(result['nearest_set'])}, greenest = {_set(result['greenest_set'])} (rank among the "
        f"{rows[0]['n_sets']} fixed sets on each seed's days, 1 = best); best/worst/median: over the fixed sets.",
        "",
        "Learned acceptance on the held-out days (share of steps each peer is among the k accepted; all steps / "
        "steps where the learner sells; P2P kWh per day traded with the peer):",
        "",
    ]
    peers = result["peers"]
    head = "| peer | km | kWp | " + " | ".join(f"seed {r['seed']}" for r in rows) + " |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for m, p in peers.items():
        cells = []
        for r in rows:
            acc = r["acceptance"]
            cells.append(
                f"{acc['accept_share'][m]:.2f} / {acc['accept_share_selling'][m]:.2f} / "
                f"{acc['p2p_kwh_per_day'][m]:.2f}"
            )
        lines.append(f"| {m} | {p['km']:.3f} | {p['pv_kwp']:.1f} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in rows:
        lines.append(
            f"seed {r['seed']}: learned accepts most often (selling) {_set(r['learned_top'])}, as a fixed set "
            f"{_profit(r['learned_top_profit'])} EUR/day, rank {_rank(r['learned_top_rank'])}; best set "
            f"{_set(r['best_set'])}: {'match' if r['learned_top_matches_best'] else 'no match'}"
        )
    return "\n".join(lines) + "\n"


def plot(result: Mapping[str, Any], path: Path) -> Path:
    """Every fixed set's profit (sorted, per seed) with the slot policies as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 3.6), squeeze=False, sharey=True)
    for ax, r in zip(axes[0], rows):
        values = np.sort(list(r["sets"].values()))
        ax.bar(np.arange(len(values)), values - r["random-k"], color="0.7", label="fixed sets")
        for c, style in (("learned", "C3-"), ("nearest", "C0--"), ("greenest", "C2--"), ("cheapest", "C1:")):
            ax.axhline(r[c] - r["random-k"], color=style[:2], ls=style[2:], label=c)
        ax.axhline(0.0, color="k", lw=0.8, label="random-k")
        ax.set_title(f"seed {r['seed']}", fontsize=10)
        ax.set_xlabel("fixed sets, sorted")
    axes[0][0].set_ylabel("profit − random-k (EUR/day)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Peer selection, {result['scenario']}, k = {result['k']}: learner {result['agent']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of ``python -m eval.peer_selection`` (validated; bad ones exit 2 with one line)."""
    p = OneLineParser(prog="python -m eval.peer_selection", description=__doc__.split("\n")[0])
    p.add_argument(
        "--scenario-case", choices=sorted(CASES), default="small", help="the market (default: small)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--timesteps", type=int, default=20_000, help="PPO budget per seed (env steps)")
    p.add_argument("--agent", default=None, help="the learner's agent id (default: the case's)")
    p.add_argument("--k", type=int, default=None, help="peers accepted per agent (default: the case's)")
    p.add_argument("--fee", type=float, default=0.1, help="network fee per kWh and km (grid_policy=fee)")
    p.add_argument("--eval-episodes", type=int, default=10, help="held-out days per seed (default: 10)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON, markdown and figure here")
    a = p.parse_args(argv)
    for name in ("timesteps", "eval_episodes"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')}: must be ≥ 1, got {getattr(a, name)}")
    if min(a.seeds) < 0 or len(set(a.seeds)) < len(a.seeds):
        p.error(f"--seeds: must be distinct and ≥ 0, got {a.seeds}")
    if not (math.isfinite(a.fee) and a.fee >= 0):
        p.error(f"--fee: must be a finite number ≥ 0, got {a.fee}")
    case = CASES[a.scenario_case]
    a.case = case
    a.agent = a.agent or case.agent
    a.k = case.k if a.k is None else a.k
    try:
        env = parallel_env(**market_config(case, 1, a.fee))
    except P2PGymError as exc:
        p.error(str(exc))
    agents = list(env.possible_agents)
    env.close()
    if a.agent not in agents:
        p.error(f"--agent: {a.agent!r} is not one of {agents}")
    if not 1 <= a.k <= len(agents) - 1:
        p.error(f"--k: must be in [1, {len(agents) - 1}] for --scenario-case {a.scenario_case}, got {a.k}")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval.peer_selection``: print the tables; 0 if learned beats random-k on every seed, else 1."""
    from tqdm.auto import tqdm

    a = parse_args(argv)
    t0 = time.perf_counter()
    result = study(a.case, a.seeds, a.timesteps, a.k, a.fee, a.eval_episodes, a.agent,
                   lambda **kw: tqdm(file=sys.stderr, leave=False, **kw))  # fmt: skip
    result["wall_seconds"] = time.perf_counter() - t0
    text = markdown(result) + f"\nwall time {result['wall_seconds']:.0f} s (1 thread)\n"
    print(text)
    rows = result["rows"]
    wins = sum(r["learned"] > r["random-k"] for r in rows)
    ok = wins == len(rows)
    print(f"{'PASS' if ok else 'FAIL'}: learned peers beat random-k in {wins}/{len(rows)} seeds")
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / RESULTS_FILE).write_text(json.dumps(json_safe(result), indent=1) + "\n")
        (a.out / TABLE_FILE).write_text(text)
        print(f"results: {a.out / RESULTS_FILE}, {a.out / TABLE_FILE}, {plot(result, a.out / FIGURE_FILE)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
