"""``p2p-gym evaluate-policy runs/NAME``: play a trained policy in the environment it was trained in.

Prints, per learned agent slot, the mean episode reward of the trained policy and of the same slot played by
the rule-based baselines (zi-c, truthful; the other slots keep their policies), then the mean market KPIs
(``infos["market"]``) with the trained policy.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.config import TrainArgs
from training.policies import PlayResult, mixed_factory, play


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``p2p-gym evaluate-policy``."""
    parser.add_argument("run", help="run directory written by p2p-gym train (holds config.yaml)")
    parser.add_argument("--episodes", type=int, default=5, help="episodes (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the episodes (default: the run's seed)"
    )
    parser.add_argument(
        "--baselines",
        default="zi-c,truthful",
        help="comma-separated rules for the learned slots (default: %(default)s)",
    )
    parser.add_argument(
        "--day-split",
        choices=("all", "train", "test"),
        default=None,
        help="days the episodes start on (default: the run's; test = the held-out days, every fifth)",
    )


def lib_module(lib: str) -> Any:
    """The training module of ``lib`` (``training.sb3``, ``training.rllib`` or ``training.benchmarl``): each has
    ``train(args) -> run directory`` and ``load_policies(run, args) -> {agent: obs -> action}``."""
    import importlib

    return importlib.import_module(f"training.{lib}")


def load_run(run: Path) -> tuple[TrainArgs, dict[str, Any]]:
    """The arguments of a run and its trained policy per learned agent slot."""
    args = TrainArgs.from_yaml(run / "config.yaml")
    return args, lib_module(args.lib).load_policies(run, args)


def evaluate(
    run: Path,
    episodes: int = 5,
    seed: int | None = None,
    baselines: tuple[str, ...] = ("zi-c", "truthful"),
    day_split: str | None = None,
) -> dict[str, PlayResult]:
    """Play the trained policy and each baseline; returns ``{"policy": ..., "<baseline>": ...}``. ``day_split``
    overrides the run's (e.g. ``"test"``: held-out days)."""
    args, learned = load_run(run)
    if day_split is not None:
        args.market = args.market.replace(day_split=day_split)
    seed = args.seed + 2_000_000 if seed is None else seed
    results = {"policy": play(args.market, mixed_factory(learned, args.others), episodes, seed)}
    for name in baselines:
        results[name] = play(
            args.market, mixed_factory(learned, args.others, fill_learned_slots=name), episodes, seed
        )
    return results


def main(ns: argparse.Namespace) -> int:
    """Entry point of ``p2p-gym evaluate-policy``."""
    run = Path(ns.run)
    if not (run / "config.yaml").exists():
        print(f"p2p-gym evaluate-policy: error: run: no config.yaml in {run}")
        return 2
    baselines = tuple(b for b in ns.baselines.split(",") if b)
    args, learned = load_run(run)
    results = evaluate(run, ns.episodes, ns.seed, baselines, ns.day_split)
    slots = list(learned)
    print(f"run {run} ({args.lib}/{args.algo}, setting {args.setting}, {args.scenario}/{args.mechanism}), "
          f"{ns.episodes} episodes of {args.market.episode_steps} steps, "
          f"days {ns.day_split or args.market.day_split}")  # fmt: skip
    names = list(results)
    print("\nmean episode reward (currency) of the learned slots:")
    print(f"  {'agent':<14}" + "".join(f"{n:>14}" for n in names))
    for a in slots:
        print(f"  {a:<14}" + "".join(f"{results[n].episode_reward[a]:>14.4f}" for n in names))
    print(f"  {'mean':<14}" + "".join(f"{results[n].mean_over(slots):>14.4f}" for n in names))
    print("\nmarket KPIs (mean per step) with the trained policy:")
    for key, value in results["policy"].market.items():
        print(f"  {key:<28}{value:>14.4f}")
    return 0
