"""Command-line interface ``p2p-gym``.

Subcommands are registered lazily so that ``p2p-gym scenarios`` does not import torch or the environment.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from p2p_gym.errors import P2PGymError

#: subcommand -> (module, function adding its arguments, help). Each module has ``add_arguments(parser)``
#: and ``main(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "scenarios": ("p2p_gym.cli", "List the built-in scenarios and summarise one."),
    "run": ("p2p_gym.run", "Simulate a community of rule-based agents and print the market/grid KPIs."),
    "train": ("training.cli", "Train bidding / peer-selection policies (stable-baselines3, RLlib or BenchMARL)."),
    "evaluate-policy": ("training.evaluate", "Play a trained policy in the environment."),
    "eval": ("eval.matrix", "Evaluate policies x mechanisms and write a report."),
    "bench": (
        "eval.bench",
        "Benchmark MARL libraries and algorithms on the named tasks (speed benchmarks: benchmarks/).",
    ),
}


def _scenarios_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show", default="default", help="scenario to summarise (default: %(default)s)")


def _scenarios_main(args: argparse.Namespace) -> int:
    from p2p_gym.scenarios import list_scenarios, load_scenario

    print("Built-in scenarios:")
    for name in list_scenarios():
        print(f"  {name}")
    sc = load_scenario(args.show)
    print(f"\nScenario {sc.name!r}: {sc.description}")
    summary = sc.summary()
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")
    print("  agents at buses: " + ", ".join(f"{a}@{b}" for a, b in zip(sc.agent_ids, sc.bus)))
    return 0


def _load(name: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    if name == "scenarios":
        return _scenarios_arguments, _scenarios_main
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return module.add_arguments, module.main


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``p2p-gym`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="p2p-gym", description="p2p_gym: peer-to-peer electricity market gym"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            add_arguments, _ = _load(name)
            add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    _, run = _load(args.command)
    try:
        return int(run(args) or 0)
    except Exception as exc:
        # Bad input (a P2PGymError or ValueError naming the field, a missing file, a YAML file that is not
        # plain data) is reported as one line, like argparse's own errors; anything else is a bug and keeps
        # its traceback.
        yaml = sys.modules.get("yaml")  # a YAMLError can only come from a yaml already imported
        user_errors = (P2PGymError, ValueError, FileNotFoundError) + ((yaml.YAMLError,) if yaml else ())
        if not isinstance(exc, user_errors):
            raise
        print(f"p2p-gym {args.command}: error: {_one_line(exc, args)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException, args: argparse.Namespace) -> str:
    """The message of a user error on one line."""
    yaml = sys.modules.get("yaml")
    if yaml is not None and isinstance(exc, yaml.MarkedYAMLError):
        # PyYAML's message spans several lines and quotes the source; keep the problem and where it is.
        where = exc.problem_mark or exc.context_mark
        text = " ".join(part for part in (exc.context, exc.problem) if part)
        if where is not None:
            text += f" (line {where.line + 1}, column {where.column + 1})"
        config = getattr(args, "config", None)
        return f"{config}: {text}" if config else text
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename}"
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
