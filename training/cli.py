"""``p2p-gym train``: train bidding / peer-selection policies with stable-baselines3 or Ray RLlib.

Examples::

    p2p-gym train --algo ppo --scenario tiny --setting single --others zi-c --timesteps 50000 --seed 0
    p2p-gym train --algo sac --scenario default --mechanism uniform --setting shared --normalize-obs
    p2p-gym train --scenario tiny --mechanism bilateral --peer-selection --peer-k 1 --setting independent
    p2p-gym train --lib rllib --scenario tiny --setting shared --timesteps 20000
    p2p-gym train --config runs/ppo-single-tiny-uniform-s0/config.yaml   # repeat a run exactly

Flags override the values of ``--config``, which override the defaults of :class:`~training.config.TrainArgs`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import yaml

from training.config import ALGOS, LIBS, SETTINGS, TrainArgs, TrainConfigError


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``p2p-gym train`` (every flag is optional; absent flags keep the config's value)."""
    s = argparse.SUPPRESS
    bool_flag = argparse.BooleanOptionalAction
    parser.add_argument(
        "--config", default=s, help="YAML file of TrainArgs fields (e.g. a run's config.yaml)"
    )
    parser.add_argument("--algo", choices=ALGOS, default=s, help="algorithm (default: ppo)")
    parser.add_argument("--lib", choices=LIBS, default=s, help="library (default: sb3)")
    parser.add_argument("--setting", choices=SETTINGS, default=s, help="training setting (default: shared)")
    parser.add_argument("--scenario", default=s, help="scenario name (default: default)")
    parser.add_argument("--mechanism", default=s, help="market mechanism (default: uniform)")
    parser.add_argument("--grid", default=s, help="grid check: none, linear, ac (default: linear)")
    parser.add_argument("--peer-selection", action=bool_flag, default=s, help="per-peer scores in the action")
    parser.add_argument("--peer-k", type=int, default=s, help="accept the top-k scored peers")
    parser.add_argument("--episode-steps", type=int, default=s, help="steps per episode (default: 96)")
    parser.add_argument(
        "--env-kw", type=_key_value, action="append", default=s, metavar="KEY=VALUE",
        help="extra environment keyword argument (repeatable), e.g. grid_policy=fee",
    )  # fmt: skip
    parser.add_argument("--timesteps", type=int, default=s, help="training budget in env steps")
    parser.add_argument("--seed", type=int, default=s, help="seed (default: 0)")
    parser.add_argument("--out", default=s, help="run directory (default: runs/<algo>-<setting>-...-s<seed>)")
    parser.add_argument("--agent", default=s, help="single: the learner's agent id (default: first agent)")
    parser.add_argument("--others", default=s, help="single: rule-based policy of the others (default: zi-c)")
    parser.add_argument("--n-envs", type=int, default=s, help="environment copies (default: 1)")
    parser.add_argument("--rounds", type=int, default=s, help="independent: round-robin rounds (default: 4)")
    parser.add_argument("--normalize-obs", action=bool_flag, default=s, help="normalise observations")
    parser.add_argument("--normalize-reward", action=bool_flag, default=s, help="normalise rewards")
    parser.add_argument(
        "--hp", type=_key_value, action="append", default=s, metavar="KEY=VALUE",
        help="hyperparameter override (repeatable), e.g. learning_rate=1e-3",
    )  # fmt: skip
    parser.add_argument("--eval-freq", type=int, default=s, help="evaluate every N steps (default: 10000)")
    parser.add_argument("--eval-episodes", type=int, default=s, help="episodes per evaluation (default: 3)")
    parser.add_argument("--checkpoint-freq", type=int, default=s, help="checkpoint every N steps (0: none)")
    parser.add_argument("--progress", action=bool_flag, default=s, help="progress bar (default: on)")
    parser.add_argument("--device", default=s, help="torch device (default: cpu)")
    parser.add_argument("--ray-address", default=s, help="rllib: address of an existing Ray cluster")
    parser.add_argument("--ray-num-cpus", type=int, default=s, help="rllib: CPUs of the local cluster")


def args_from_namespace(ns: argparse.Namespace) -> TrainArgs:
    """Merge defaults < ``--config`` YAML < flags into :class:`TrainArgs`."""
    given = {k: v for k, v in vars(ns).items() if k not in ("command", "config")}
    data: dict[str, Any] = {}
    if getattr(ns, "config", None):
        data = TrainArgs.from_yaml(ns.config).to_dict()
        if any(k in given and given[k] != data.get(k) for k in ("algo", "lib")):
            data["hyperparams"] = {}  # the saved hyperparameters belong to the other algorithm
        if "out" not in given and any(
            k in given for k in ("seed", "algo", "setting", "scenario", "mechanism")
        ):
            data.pop("out", None)  # a changed run gets its own default name
    if "hp" in given:
        data["hyperparams"] = {**data.get("hyperparams", {}), **dict(given.pop("hp"))}
    if "env_kw" in given:
        data["env_kwargs"] = {**data.get("env_kwargs", {}), **dict(given.pop("env_kw"))}
    data.update(given)
    return TrainArgs.from_dict(data)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``p2p-gym train``."""
    try:
        targs = args_from_namespace(args)
    except TrainConfigError as err:
        print(f"p2p-gym train: error: {err}")
        return 2
    print(
        "p2p-gym train: "
        + ", ".join(f"{f.name}={getattr(targs, f.name)!r}" for f in dataclasses.fields(targs))
    )
    if targs.lib == "rllib":
        from training.rllib import train as train_rllib

        train_rllib(targs)
    else:
        from training.sb3 import train

        train(targs)
    return 0
