"""Learning check: PPO in the ``single`` setting on ``tiny`` beats a ZI-C agent in its place.

One PPO learner plays one agent slot of the ``tiny`` scenario (uniform-price auction, linear grid check) among
ZI-C agents, for a fixed budget of environment steps, over several seeds. Every ``--eval-freq`` steps the learner
(deterministic) and the same slot played by ZI-C and by the truthful rule are evaluated on the same held-out days
(:class:`training.sb3.Evaluator`). The check passes when the learner's final mean profit is higher than ZI-C's
for every seed. Prints the budget, the wall time and the profits; saves the curve to
``docs/figures/learning_check.png``.

Usage::

    python -m eval.learning_check                       # documented budget (5 seeds x 50000 steps)
    python -m eval.learning_check --seeds 0 1 2 3 4 --timesteps 50000
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from p2p_gym.sim import MarketConfig
from training.config import TrainArgs
from training.sb3 import EVAL_FILE, train

ROOT = Path(__file__).resolve().parents[1]


def run(seeds: list[int], timesteps: int, agent: str, eval_freq: int, eval_episodes: int, out: Path) -> dict:
    """Train one PPO learner per seed; returns the evaluation rows per seed and the wall time."""
    rows: dict[int, list[dict[str, float]]] = {}
    t0 = time.perf_counter()
    for seed in seeds:
        args = TrainArgs(
            algo="ppo",
            setting="single",
            market=MarketConfig(scenario="tiny", mechanism="uniform", episode_steps=96),
            agent=agent,
            others="zi-c",
            timesteps=timesteps,
            seed=seed,
            normalize_obs=True,
            eval_freq=eval_freq,
            eval_episodes=eval_episodes,
            checkpoint_freq=0,
            progress=False,
            out=str(out / f"ppo-single-tiny-uniform-s{seed}"),
        )
        run_dir = train(args)
        with (run_dir / EVAL_FILE).open() as f:
            rows[seed] = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    return {"rows": rows, "wall_s": time.perf_counter() - t0}


def plot(rows: dict[int, list[dict[str, float]]], path: Path, title: str) -> None:
    """Learner's evaluation profit per seed and the mean, with the ZI-C and truthful baselines (mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    n = min(len(r) for r in rows.values())
    steps = np.array([r["timesteps"] for r in next(iter(rows.values()))[:n]])
    learner = np.array([[r["learner"] for r in rs[:n]] for rs in rows.values()])
    for s, curve in zip(rows, learner):
        ax.plot(
            steps,
            curve,
            color="tab:blue",
            alpha=0.3,
            lw=1,
            label="PPO (per seed)" if s == next(iter(rows)) else None,
        )
    ax.plot(steps, learner.mean(axis=0), color="tab:blue", lw=2.2, label="PPO (mean over seeds)")
    for name, color in (("zi-c", "tab:red"), ("truthful", "tab:gray")):
        level = np.mean([rs[0][name] for rs in rows.values()])
        ax.axhline(
            level,
            color=color,
            ls="--",
            lw=1.5,
            label=f"{name.upper() if name == 'zi-c' else name} in its place",
        )
    ax.set_xlabel("training steps")
    ax.set_ylabel("profit per day (EUR)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--timesteps", type=int, default=50_000, help="PPO budget per seed (env steps)")
    parser.add_argument(
        "--agent", default="prosumer_0", help="the learner's slot (default: %(default)s, PV seller)"
    )
    parser.add_argument("--eval-freq", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/learning_check"))
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "learning_check.png")
    a = parser.parse_args(argv)

    res = run(a.seeds, a.timesteps, a.agent, a.eval_freq, a.eval_episodes, a.out)
    rows = res["rows"]
    print(f"\nlearning check: PPO single on tiny/uniform, learner {a.agent} among ZI-C agents")
    print(
        f"budget: {a.timesteps} env steps per seed x {len(a.seeds)} seeds; wall time {res['wall_s']:.0f} s (1 thread)"
    )
    print(
        f"{'seed':>4} {'PPO':>9} {'ZI-C':>9} {'truthful':>9}  (profit per day, mean of {a.eval_episodes} held-out days)"
    )
    wins = 0
    for s, rs in rows.items():
        last = rs[-1]
        wins += last["learner"] > last["zi-c"]
        print(f"{s:>4} {last['learner']:>9.4f} {last['zi-c']:>9.4f} {last['truthful']:>9.4f}")
    mean = {k: float(np.mean([rs[-1][k] for rs in rows.values()])) for k in ("learner", "zi-c", "truthful")}
    print(f"mean {mean['learner']:>9.4f} {mean['zi-c']:>9.4f} {mean['truthful']:>9.4f}")
    title = (
        f"PPO (single, {a.agent}) vs ZI-C on tiny/uniform — {len(a.seeds)} seeds, "
        f"{a.timesteps // 1000}k steps, {res['wall_s'] / 60:.1f} min"
    )
    plot(rows, a.figure, title)
    print(f"figure: {a.figure}")
    ok = wins == len(rows)
    print(f"{'PASS' if ok else 'FAIL'}: PPO beats ZI-C in {wins}/{len(rows)} seeds")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
