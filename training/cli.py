"""``p2p-gym train``: train bidding / peer-selection policies with stable-baselines3, Ray RLlib or BenchMARL.

Examples::

    p2p-gym train --algo ppo --scenario tiny --setting single --others zi-c --timesteps 50000 --seed 0
    p2p-gym train --algo sac --scenario default --mechanism uniform --setting shared --normalize-obs
    p2p-gym train --scenario tiny --mechanism bilateral --peer-selection --peer-k 1 --setting independent
    p2p-gym train --scenario tiny --grid-policy fee --fee-per-kwh-km 0.1     # any market option
    p2p-gym train --lib rllib --scenario tiny --setting shared --timesteps 20000
    p2p-gym train --lib rllib --algo mappo --scenario tiny --timesteps 20000    # shared centralised critic
    p2p-gym train --lib benchmarl --algo mappo --scenario tiny --timesteps 20000
    p2p-gym train --config runs/ppo-single-tiny-uniform-s0/config.yaml   # repeat a run exactly

The market options (``--scenario``, ``--mechanism``, ``--grid``, ``--peer-selection``, ``--episode-steps``,
``--grid-policy``, ...) are derived from the fields of :class:`p2p_gym.sim.MarketConfig` and fill
``TrainArgs.market``; ``--env-kw KEY=VALUE`` sets any of them by its field name. Flags override the values of
``--config``, which override the defaults of :class:`~training.config.TrainArgs`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import yaml

from p2p_gym.errors import P2PGymError
from p2p_gym.sim import add_config_arguments, config_from_args, field_names
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
    parser.add_argument(
        "--env-kw", type=_key_value, action="append", default=s, metavar="KEY=VALUE",
        help="set a market option by its field name (repeatable), e.g. grid_policy=fee; an alias of the "
        "market options below",
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
    parser.add_argument("--eval-seed", type=int, default=s, help="seed of the evaluation episodes")
    parser.add_argument(
        "--eval-market", type=_key_value, action="append", default=s, metavar="KEY=VALUE",
        help="market option for the evaluation only (repeatable), e.g. day_split=test",
    )  # fmt: skip
    parser.add_argument("--checkpoint-freq", type=int, default=s, help="checkpoint every N steps (0: none)")
    parser.add_argument("--progress", action=bool_flag, default=s, help="progress bar (default: on)")
    parser.add_argument("--device", default=s, help="torch device (default: cpu)")
    parser.add_argument("--ray-address", default=s, help="rllib: address of an existing Ray cluster")
    parser.add_argument("--ray-num-cpus", type=int, default=s, help="rllib: CPUs of the local cluster")
    add_config_arguments(parser, group_title="market options")


def args_from_namespace(ns: argparse.Namespace) -> TrainArgs:
    """Merge defaults < ``--config`` YAML < flags into :class:`TrainArgs`.

    Market flags (``None`` = not given) and ``--env-kw`` entries are layered over the config's ``market``.
    Without ``--out``, a run whose name changes (``--seed``, ``--algo``, ``--scenario``, ...) gets its own
    default directory instead of the config's.
    """
    market_names = set(field_names())
    raw = vars(ns)
    given = {k: v for k, v in raw.items() if k not in ("command", "config") and k not in market_names}
    data: dict[str, Any] = {}
    if getattr(ns, "config", None):
        data = TrainArgs.from_yaml(ns.config).to_dict()
        if any(k in given and given[k] != data.get(k) for k in ("algo", "lib")):
            data["hyperparams"] = {}  # the saved hyperparameters belong to the other algorithm
    saved = dict(data)
    if "hp" in given:
        data["hyperparams"] = {**data.get("hyperparams", {}), **dict(given.pop("hp"))}
    if "eval_market" in given:
        data["eval_market"] = {**data.get("eval_market", {}), **dict(given.pop("eval_market"))}
    market: dict[str, Any] = dict(data.get("market") or {})
    if "env_kw" in given:
        market.update(_env_kw(given.pop("env_kw"), raw))
    data["market"] = config_from_args(ns, base=market)
    data.update(given)
    args = TrainArgs.from_dict(data)
    if saved and "out" not in given and TrainArgs.from_dict(saved).run_name != args.run_name:
        data.pop("out", None)  # a changed run gets its own default name
        args = TrainArgs.from_dict(data)
    return args


def _env_kw(items: list[tuple[str, Any]], flags: dict[str, Any]) -> dict[str, Any]:
    """``--env-kw`` entries as market options (unknown keys and clashes with a market flag raise)."""
    out: dict[str, Any] = {}
    names = field_names()
    for key, value in items:
        if key not in names:
            raise TrainConfigError(f"--env-kw {key}: unknown market option; options are {list(names)}")
        flag = flags.get(key)
        if flag is not None and key != "scenario_overrides" and flag != value:
            raise TrainConfigError(
                f"--env-kw {key}={value!r} contradicts --{key.replace('_', '-')} {flag!r}; give one"
            )
        out[key] = value
    return out


def main(args: argparse.Namespace) -> int:
    """Entry point of ``p2p-gym train``."""
    try:
        targs = args_from_namespace(args)
    except P2PGymError as err:  # TrainConfigError, or EnvConfigError of a market option (both name the field)
        print(f"p2p-gym train: error: {err}")
        return 2
    print(
        "p2p-gym train: "
        + ", ".join(f"{f.name}={getattr(targs, f.name)!r}" for f in dataclasses.fields(targs))
    )
    from training.evaluate import lib_module

    lib_module(targs.lib).train(targs)
    return 0
