"""The ``nbo`` command.

Each subcommand lives beside the code it drives, provides a module-level ``register(subparsers)``
function (engine.cliargs' ``commands`` of the module's declared commands; any function that
adds subparsers will do) and is declared as an entry point of the ``nbo.commands`` group in
pyproject.toml (engine declares serve, evaluate, train, export, lift, journal, model, promote
and mode; simulators demo, simulate and tune; benchmarks bench). This file only discovers them
and turns nbo's errors into one clear line and a non-zero exit code; it names no package above
engine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points

from engine import __version__
from engine.errors import NboError

COMMAND_GROUP = "nbo.commands"


def commands() -> tuple[EntryPoint, ...]:
    """The installed ``nbo.commands`` entry points by name (the order ``nbo --help`` lists them)."""
    return tuple(sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name))


def build_parser(
    only: str | None = None, available: Iterable[EntryPoint] | None = None
) -> argparse.ArgumentParser:
    """The ``nbo`` parser with every command, or with just the module providing ``only``.

    Running one command imports only its module: `nbo export` does not pay for importing Ray or
    grpc, and a broken optional module cannot take the other commands down. A command whose
    module is missing from an installation (simulators/ or benchmarks/ left out) is skipped.
    ``available`` defaults to :func:`commands`.
    """
    parser = argparse.ArgumentParser(
        prog="nbo",
        description="nbo: a next-best-offer engine (contextual bandits, gRPC serving, "
        "off-policy evaluation).",
    )
    parser.add_argument("--version", action="version", version=f"nbo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    found = tuple(commands() if available is None else available)
    chosen = [ep for ep in found if ep.name == only] or found
    registered: set[str] = set()
    for ep in chosen:
        if ep.value in registered:  # one module may provide several commands (evaluate, train)
            continue
        try:
            register = ep.load()
        except ModuleNotFoundError as exc:
            if exc.name is not None and ep.module.startswith(exc.name):
                continue
            raise
        register(subparsers)
        registered.add(ep.value)
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
