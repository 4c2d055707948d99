"""The ``nbo`` command.

Each subcommand lives beside the code it drives and registers itself through a module-level
``register(subparsers)`` function; this file only assembles them and turns nbo's errors into one
clear line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from engine import __version__
from engine.errors import NboError

# The command each module provides, in the order `nbo --help` lists them. Running one command
# imports only its module: `nbo export` does not pay for importing Ray or grpc, and a broken
# optional module cannot take the other commands down. A module missing from an installation
# (simulators/ outside a source checkout) is skipped.
COMMANDS: dict[str, str] = {
    "serve": "engine.serving.cli",
    "demo": "simulators.demo",
    "simulate": "simulators.cli",
    "evaluate": "engine.replay.cli",
    "train": "engine.replay.cli",
    "export": "engine.journal.cli",
    "lift": "engine.journal.cli",
    "bench": "engine.bench",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``nbo`` parser with every command, or with just the module providing ``only``."""
    parser = argparse.ArgumentParser(
        prog="nbo",
        description="nbo: a next-best-offer engine (contextual bandits, gRPC serving, "
        "off-policy evaluation).",
    )
    parser.add_argument("--version", action="version", version=f"nbo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = (COMMANDS[only],) if only in COMMANDS else COMMAND_MODULES
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NboError as exc:
        print(f"nbo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"nbo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nbo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
