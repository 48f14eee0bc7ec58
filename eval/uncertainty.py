"""What forecast errors and a reserve market do to a community of rule-based prosumers, in the environment.

``python -m eval.uncertainty`` plays ``default`` (20 households, 6 home batteries) under committed dispatch and a
uniform-price market on the held-out test days (``day_split="test"``), every agent playing ``--policy`` (the myopic
truthful rule by default), with

* ``perfect`` forecasts (the agents know the realisation: no imbalance),
* ``persistence`` forecasts (yesterday's load and PV at the same step),
* ``day_ahead`` forecasts (synthetic errors with the persistence error's statistics, seeded),
* ``day_ahead`` with the reserve market (``reserve=True``, δ = 0.95),

all with dual imbalance prices (penalty ``--penalty`` EUR/kWh), and reports per day: the community's welfare,
the deviation the agents caused (short and long kWh), what they paid for it, the reserve's capacity cost and the
imbalance left to the grid after activation.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from p2p_gym.errors import P2PGymError

#: Settings of the table: (label, options over the base config).
SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("perfect", {}),
    ("persistence", {"forecast": "persistence"}),
    ("day_ahead", {"forecast": "day_ahead"}),
    ("day_ahead + reserve", {"forecast": "day_ahead", "reserve": True}),
)


def run(
    policy: str = "truthful", episodes: int = 10, penalty: float = 0.05, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per setting of :data:`SETTINGS`: means per day over ``episodes`` test days."""
    from agents import make_policies
    from p2p_gym.envs import parallel_env
    from p2p_gym.rollout import play

    rows = []
    for label, extra in SETTINGS:
        env = parallel_env("default", mechanism="uniform", grid="none", dispatch="committed", day_split="test",
                           terminal_value="valued", imbalance_penalty=penalty, **extra)  # fmt: skip
        uncertain = "forecast" in extra

        def record(e: Any, inf: Any, r: Any, uncertain: bool = uncertain) -> tuple[float, ...]:
            m = inf[e.possible_agents[0]]["market"]
            if not uncertain:
                return m["welfare"], 0.0, 0.0, 0.0, 0.0, 0.0
            return (m["welfare"], m["imbalance_short_kwh"], m["imbalance_long_kwh"], m["imbalance_cost_total"],
                    m.get("reserve_cost_total", 0.0), abs(m["residual_imbalance_kwh"]))  # fmt: skip

        eps = play(env, make_policies(policy, env), np.random.default_rng(seed), episodes=episodes, seed=seed,
                   on_step=record)  # fmt: skip
        tot = np.array([np.sum(ep.records, axis=0) for ep in eps]).mean(axis=0)
        rows.append(dict(zip(("setting", "welfare", "short_kwh", "long_kwh", "imbalance_cost", "reserve_cost",
                              "residual_kwh"), (label, *map(float, tot)), strict=True)))  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| forecast | welfare (EUR/day) | short (kWh/day) | long (kWh/day) | imbalance paid (EUR/day) | "
            "reserve capacity (EUR/day) | imbalance left to the grid (kWh/day) |")  # fmt: skip
    lines = [head, "|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['welfare']:.2f} | {r['short_kwh']:.1f} | {r['long_kwh']:.1f} | "
                     f"{r['imbalance_cost']:.2f} | {r['reserve_cost']:.2f} | {r['residual_kwh']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.uncertainty", description=__doc__.split("\n")[0])
    p.add_argument("--policy", default="truthful", help="rule every prosumer plays (agents.RULES)")
    p.add_argument("--episodes", type=int, default=10, help="held-out test days")
    p.add_argument("--penalty", type=float, default=0.05, help="imbalance penalty, EUR/kWh")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.episodes < 1:
        print("error: --episodes: must be ≥ 1", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        rows = run(a.policy, a.episodes, a.penalty, a.seed)
    except P2PGymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"default, committed dispatch, uniform price, every prosumer {a.policy}, {a.episodes} test days, "
          f"penalty {a.penalty} EUR/kWh; {time.perf_counter() - t0:.0f} s")  # fmt: skip
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
