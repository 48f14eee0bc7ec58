"""Does planning flexibility pay? Learned prosumers against the rule-based ones, under committed dispatch.

``python -m eval.flex_learning`` runs one of two tasks, both with committed dispatch, a uniform-price P2P market,
the stores' terminal state valued (``terminal_value="valued"``: emptying a battery or deferring heat on the last
steps is bought back at retail, so it does not pay) and a train/test split of the days (``day_split``: PPO trains
on four days in five, every policy is evaluated on the same held-out fifth days):

* ``--task battery-owner``: PPO (stable-baselines3, ``single`` setting) learns to play one battery owner of
  ``default`` (20 households, 6 home batteries; time-of-use retail 0.30 / 0.38 / 0.46 EUR/kWh, feed-in 0.081), the
  others playing the myopic truthful rule; the learner's slot is then played by the learned policy and by each rule.
* ``--task reserve``: the battery-owner task with forecast errors and a reserve market: every agent acts on
  day-ahead forecasts (``forecast="day_ahead"``), deviations are settled at dual imbalance prices (0.05 EUR/kWh
  penalty) and a sequential reserve market covers the system's forecast error at 95 % (``reserve=True``,
  :mod:`p2p_gym.sim.uncertainty`); the others play the myopic truthful rule, which offers all its headroom as
  reserve at price 0. Reported besides the profit: the slot's imbalance cost and its reserve income (capacity
  payments + activated energy − its share of the capacity cost).
* ``--task community``: one PPO policy shared by every prosumer of ``flex`` (118 households of the SimBench
  ``1-LV-rural3--2-sw`` grid: 15 with EV sessions, 18 heat pumps, 16 PV-battery systems), against the community
  playing each rule. The rules: ``truthful`` (myopic: no device moves), ``zi-c``, ``battery`` (charge on surplus,
  discharge on deficit) and ``flex`` (store neighbours' midday PV, self-supply otherwise).

Reported: the profit of the slot (battery-owner) or the mean profit per prosumer (community) per day, and the
community's efficiency against the optimum of each episode (``compute_optimum="episode"``: perfect foresight, every
device dispatched optimally, the same terminal valuation). With fixed positions the best a bidder could do was to
offer its whole position truthfully; here a device's value depends on *when* it moves, which no myopic rule plans.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Rules played for comparison (in the learner's slot, or by the whole community).
RULES: tuple[str, ...] = ("truthful", "zi-c", "battery", "flex")
TASKS: tuple[str, ...] = ("battery-owner", "community", "reserve")
#: Tasks in which one learner slot plays against truthful others.
SLOT_TASKS: tuple[str, ...] = ("battery-owner", "reserve")
#: PPO settings of the community task: one 96-step episode per rollout and sub-env (118 agents × 4 copies), so a
#: rollout is 45,312 samples; minibatches of 1/16 of it; a discount whose horizon reaches the day's end; a small
#: initial action noise (σ = e⁻² ≈ 0.14: with σ = 1 the exploration noise alone loses more than the rules gain) and
#: a lower learning rate; rewards are normalised (``normalize_reward``).
COMMUNITY_HYPERPARAMS: dict[str, Any] = {
    "n_steps": 96, "batch_size": 2832, "n_epochs": 10, "gamma": 0.995, "learning_rate": 1e-4, "log_std_init": -2.0,
}  # fmt: skip


def task(name: str = "battery-owner", episode_optimum: bool = False, split: str = "train") -> Any:
    """The market of task ``name`` (one of :data:`TASKS`) on the ``split`` days."""
    if name not in TASKS:
        raise ValueError(f"task: must be one of {list(TASKS)}, got {name!r}")
    from p2p_gym.sim import MarketConfig

    uncertain = (
        {"forecast": "day_ahead", "reserve": True, "imbalance_penalty": 0.05} if name == "reserve" else {}
    )
    return MarketConfig(
        scenario="flex" if name == "community" else "default", mechanism="uniform", grid="none",
        dispatch="committed", episode_steps=96, compute_optimum="episode" if episode_optimum else "none",
        terminal_value="valued", day_split=split, **uncertain,
    )  # fmt: skip


def learner_slot() -> str:
    """The first agent of ``default`` that owns a battery (the battery-owner task's learner)."""
    from p2p_gym.scenarios import load_scenario

    sc = load_scenario("default")
    return sc.agent_ids[int(np.flatnonzero(sc.battery_kwh > 0)[0])]


def train_seed(name: str, seed: int, timesteps: int, out: Path) -> Path:
    """Train PPO for task ``name`` on the train days; returns the run directory."""
    from training.config import TrainArgs
    from training.sb3 import train

    common = {"algo": "ppo", "market": task(name), "timesteps": timesteps, "seed": seed, "normalize_obs": True,
              "eval_freq": 0, "eval_episodes": 1, "eval_baselines": ["truthful"], "checkpoint_freq": 0,
              "progress": False, "out": str(out / f"ppo-{name}-s{seed}")}  # fmt: skip
    if name in SLOT_TASKS:
        args = TrainArgs(setting="single", agent=learner_slot(), others="truthful", **common)
    else:
        args = TrainArgs(
            setting="shared",
            n_envs=4,
            hyperparams=dict(COMMUNITY_HYPERPARAMS),
            normalize_reward=True,
            **common,
        )
    return train(args)


def evaluate(name: str, policy: Any, episodes: int, seed: int) -> dict[str, float]:
    """Play ``episodes`` held-out days. ``policy`` is a rule name or a policy object: in the battery-owner task it
    plays the learner's slot (the others truthful), in the community task every agent (a dict of per-agent policies
    is used as given). Returns the mean and sd over days of the profit (the slot's, or the mean per prosumer) and
    the community's mean episode efficiency; in the reserve task also the slot's imbalance cost and reserve income
    per day."""
    from agents import make_policies
    from p2p_gym.envs import parallel_env
    from p2p_gym.rollout import play

    env = parallel_env(config=task(name, episode_optimum=True, split="test"))
    if name in SLOT_TASKS:
        slot = learner_slot()
        cols = [env.possible_agents.index(slot)]
        policies = make_policies({slot: policy}, env)  # the others truthful
    else:
        cols = list(range(len(env.possible_agents)))
        policies = make_policies(policy, env) if isinstance(policy, str) else policy
    ids = env.possible_agents

    def record(e: Any, inf: Any, r: Any) -> tuple[Any, float, float]:
        eff = inf[ids[0]]["market"]["episode_efficiency"]
        if name != "reserve":
            return eff, 0.0, 0.0
        mine = [inf[ids[c]] for c in cols]
        income = sum(i["reserve_payment"] + i["activation_payment"] - i["reserve_charge"] for i in mine)
        return eff, sum(i["imbalance_cost"] for i in mine), income

    eps = play(env, policies, np.random.default_rng(seed), episodes=episodes, seed=seed, on_step=record)
    profit = [float(ep.rewards[:, cols].sum(axis=0).mean()) for ep in eps]
    eff = [float(ep.records[-1][0]) for ep in eps if ep.records[-1][0] is not None]
    per_day = len(cols) * len(eps)
    return {
        "profit": float(np.mean(profit)),
        "profit_sd": float(np.std(profit)),
        "efficiency": float(np.mean(eff)) if eff else math.nan,
        "imbalance_cost": sum(rec[1] for ep in eps for rec in ep.records) / per_day,
        "reserve_income": sum(rec[2] for ep in eps for rec in ep.records) / per_day,
    }


def study(
    seeds: list[int], timesteps: int, episodes: int, out: Path, name: str = "battery-owner"
) -> dict[str, Any]:
    """Train, then evaluate every rule and every learned seed on the same held-out days."""
    from training.evaluate import load_run

    eval_seed = 3_000_000
    t0 = time.perf_counter()
    rows = {rule: evaluate(name, rule, episodes, eval_seed) for rule in RULES}
    learned = {}
    for seed in seeds:
        run = train_seed(name, seed, timesteps, out)
        _, policies = load_run(run)
        learned[seed] = evaluate(
            name, policies[learner_slot()] if name in SLOT_TASKS else policies, episodes, eval_seed
        )
    return {"rules": rows, "learned": learned, "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.flex_learning``: print the table."""
    p = argparse.ArgumentParser(prog="python -m eval.flex_learning", description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=TASKS, default="battery-owner")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--timesteps", type=int, default=None,
        help="PPO budget per seed in agent-steps (default 50,000 battery-owner and reserve, 6,000,000 community)",
    )  # fmt: skip
    p.add_argument("--episodes", type=int, default=10, help="held-out days per evaluation")
    p.add_argument("--out", type=Path, default=Path("runs/flex_learning"))
    a = p.parse_args(argv)
    steps = a.timesteps or (50_000 if a.task in SLOT_TASKS else 6_000_000)
    res = study(a.seeds, steps, a.episodes, a.out, a.task)
    who = (
        f"learner slot {learner_slot()} of default, others truthful"
        if a.task in SLOT_TASKS
        else "one shared policy for the 118 prosumers of flex"
    )
    if a.task == "reserve":
        who += "; day-ahead forecast errors, dual imbalance prices (penalty 0.05), reserve market at 95 %"
    print(
        f"\n{a.task}: {who}; committed dispatch, uniform price, terminal state valued; {a.episodes} held-out test "
        f"days; PPO {steps} steps × {len(a.seeds)} seeds; {res['wall_s']:.0f} s"
    )
    label = "profit/day (EUR)" if a.task in SLOT_TASKS else "profit/prosumer/day"
    extra = a.task == "reserve"
    head = f"{'imbalance cost/day':>20}{'reserve income/day':>20}" if extra else ""
    print(f"{'policy':<22}{label:>22}{'sd':>8}{'community efficiency':>22}{head}")
    rows = [(rule, r) for rule, r in res["rules"].items()]
    rows += [("PPO seed " + str(seed), r) for seed, r in res["learned"].items()]
    for who_, r in rows:
        tail = f"{r['imbalance_cost']:>20.4f}{r['reserve_income']:>20.4f}" if extra else ""
        print(f"{who_:<22}{r['profit']:>22.4f}{r['profit_sd']:>8.4f}{r['efficiency']:>22.3f}{tail}")
    best_rule = max(r["profit"] for r in res["rules"].values())
    wins = sum(r["profit"] > best_rule for r in res["learned"].values())
    print(f"PPO beats the best rule's profit in {wins}/{len(res['learned'])} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
