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

# Modules that provide subcommands, in the order `nbo --help` lists them. A module missing from
# an installation (for example simulators/ outside a source checkout) is skipped.
COMMAND_MODULES = (
    "engine.serving.cli",
    "engine.demo",
    "simulators.cli",
    "engine.replay.cli",
    "engine.journal.cli",
    "engine.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbo",
        description="nbo: a next-best-offer engine (contextual bandits, gRPC serving, "
        "off-policy evaluation).",
    )
    parser.add_argument("--version", action="version", version=f"nbo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
