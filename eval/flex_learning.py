"""Does planning flexibility pay? A learned battery owner against the rule-based ones, under committed dispatch.

``python -m eval.flex_learning`` trains PPO (stable-baselines3) for one battery owner of ``default`` (20 households,
6 home batteries; time-of-use retail 0.30 / 0.38 / 0.46 EUR/kWh, feed-in 0.081) with committed dispatch and a
uniform-price P2P market, the other agents playing the myopic truthful rule; then, on held-out days, it plays the
learner's slot with the learned policy and with each rule — ``truthful`` (myopic: no device moves), ``zi-c``,
``battery`` (the charge-on-surplus / discharge-on-deficit heuristic) and ``flex`` (store neighbours' midday PV,
self-supply otherwise) — and reports the slot's profit per day and the community's efficiency against the optimum
of each episode (``compute_optimum="episode"``: perfect foresight, every battery dispatched optimally).

With fixed positions the best a bidder could do was to offer its whole position truthfully (efficiency 1 against
the per-step optimum). Here a battery's value depends on *when* it charges and discharges, which no myopic rule
plans, so the question is whether a learned policy finds more of it.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Rules played in the learner's slot for comparison.
RULES: tuple[str, ...] = ("truthful", "zi-c", "battery", "flex")


def task(episode_optimum: bool = False) -> Any:
    """The market of the study."""
    from p2p_gym.sim import MarketConfig

    return MarketConfig(
        scenario="default", mechanism="uniform", grid="none", dispatch="committed", episode_steps=96,
        compute_optimum="episode" if episode_optimum else "none",
    )  # fmt: skip


def learner_slot() -> str:
    """The first agent of ``default`` that owns a battery."""
    from p2p_gym.scenarios import load_scenario

    sc = load_scenario("default")
    return sc.agent_ids[int(np.flatnonzero(sc.battery_kwh > 0)[0])]


def train_seed(seed: int, timesteps: int, out: Path) -> Path:
    """Train one PPO learner in the learner's slot; returns the run directory."""
    from training.config import TrainArgs
    from training.sb3 import train

    args = TrainArgs(
        algo="ppo", setting="single", market=task(), agent=learner_slot(), others="truthful", timesteps=timesteps,
        seed=seed, normalize_obs=True, eval_freq=0, eval_episodes=3, eval_baselines=["truthful"],
        checkpoint_freq=0, progress=False, out=str(out / f"ppo-flex-s{seed}"),
    )  # fmt: skip
    return train(args)


def evaluate_slot(slot_policy: Any, episodes: int, seed: int) -> dict[str, float]:
    """Play ``episodes`` held-out days with ``slot_policy`` (a rule name or a policy object) in the learner's slot,
    the others truthful; mean profit per day of the slot and mean episode efficiency of the community."""
    from agents import make_policies
    from p2p_gym.envs import parallel_env
    from p2p_gym.rollout import play

    env = parallel_env(config=task(episode_optimum=True))
    slot = learner_slot()
    policies = make_policies({slot: slot_policy} if isinstance(slot_policy, str) else "truthful", env)
    if not isinstance(slot_policy, str):
        policies[slot] = slot_policy
    i = env.possible_agents.index(slot)
    eps = play(env, policies, np.random.default_rng(seed), episodes=episodes, seed=seed,
               on_step=lambda e, inf, r: inf[e.possible_agents[0]]["market"]["episode_efficiency"])  # fmt: skip
    profit = [float(ep.rewards[:, i].sum()) for ep in eps]
    eff = [float(ep.records[-1]) for ep in eps if ep.records[-1] is not None]
    return {
        "profit": float(np.mean(profit)),
        "profit_sd": float(np.std(profit)),
        "efficiency": float(np.mean(eff)) if eff else math.nan,
    }


def study(seeds: list[int], timesteps: int, episodes: int, out: Path) -> dict[str, Any]:
    """Train, then evaluate every rule and every learned seed on the same held-out days."""
    from training.evaluate import load_run

    eval_seed = 3_000_000
    t0 = time.perf_counter()
    rows = {name: evaluate_slot(name, episodes, eval_seed) for name in RULES}
    learned = {}
    for seed in seeds:
        run = train_seed(seed, timesteps, out)
        _, policies = load_run(run)
        learned[seed] = evaluate_slot(policies[learner_slot()], episodes, eval_seed)
    return {"rules": rows, "learned": learned, "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    """``python -m eval.flex_learning``: print the table."""
    p = argparse.ArgumentParser(prog="python -m eval.flex_learning", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--timesteps", type=int, default=50_000, help="PPO budget per seed (env steps)")
    p.add_argument("--episodes", type=int, default=10, help="held-out days per evaluation")
    p.add_argument("--out", type=Path, default=Path("runs/flex_learning"))
    a = p.parse_args(argv)
    res = study(a.seeds, a.timesteps, a.episodes, a.out)
    print(
        f"\nlearner slot {learner_slot()} of default, committed dispatch, uniform price, others truthful; "
        f"{a.episodes} held-out days; PPO {a.timesteps} steps × {len(a.seeds)} seeds; {res['wall_s']:.0f} s"
    )
    print(f"{'policy in the slot':<22}{'profit/day (EUR)':>18}{'sd':>8}{'community efficiency':>22}")
    for name, r in res["rules"].items():
        print(f"{name:<22}{r['profit']:>18.4f}{r['profit_sd']:>8.4f}{r['efficiency']:>22.3f}")
    for seed, r in res["learned"].items():
        print(
            f"{'PPO seed ' + str(seed):<22}{r['profit']:>18.4f}{r['profit_sd']:>8.4f}{r['efficiency']:>22.3f}"
        )
    best_rule = max(r["profit"] for r in res["rules"].values())
    wins = sum(r["profit"] > best_rule for r in res["learned"].values())
    print(f"PPO beats the best rule's profit in {wins}/{len(res['learned'])} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
