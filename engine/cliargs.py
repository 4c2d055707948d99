"""Options that several commands share, added the same way everywhere.

The ``nbo`` subcommands (engine.replay and engine.journal's, simulators', benchmarks') and the
benchmark scripts each declare a command with :func:`add_command` and take their shared options
from here, so a flag's name, type, default and metavar are written once; the help stays the
caller's, since it says what the seed seeds or which journal is read in that command. It imports
nothing of nbo, so every layer may use it.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser(prog="nbo")
>>> sub = add_command(parser.add_subparsers(), "go", print, help="run", description="Run.")
>>> add_seed(sub, "seed of the run [%(default)s]")
>>> add_journal_url(sub, "journal to read [none]")
>>> args = parser.parse_args(["go", "--journal", "sqlite:///j.sqlite"])
>>> args.seed, args.journal, args.func is print
(0, 'sqlite:///j.sqlite', True)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any


def add_command(
    subparsers: Any, name: str, func: Callable[..., Any], *, help: str, description: str | None
) -> argparse.ArgumentParser:
    """The subparser of command ``name``, which runs ``func(args)``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=description
    )
    parser.set_defaults(func=func)
    return parser


def parse_command(register: Callable[[Any], None], argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` as ``nbo`` parses it with the commands ``register`` adds (a command module's
    ``register``): how a command's examples and tests, or a command running another one, read a
    command line without the other commands.

    Examples
    --------
    >>> def register(subparsers):
    ...     add_seed(add_command(subparsers, "go", print, help="run", description=None))
    >>> args = parse_command(register, ["go", "--seed", "3"])
    >>> args.command, args.seed
    ('go', 3)
    """
    parser = argparse.ArgumentParser(prog="nbo")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def add_seed(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--seed``: an int, 0 by default."""
    parser.add_argument("--seed", type=int, default=0, help=help)


def add_quick(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--quick``: a benchmark at smoke size."""
    parser.add_argument("--quick", action="store_true", help=help)


def script_parser(module: str, description: str, quick: str) -> argparse.ArgumentParser:
    """The parser of the script ``python -m <module>``, with ``--quick`` (``quick`` says what
    it shrinks); the script adds its own options.

    Examples
    --------
    >>> parser = script_parser("benchmarks.x", "Measure x.", "small sizes")
    >>> parser.prog, parser.parse_args(["--quick"]).quick
    ('python -m benchmarks.x', True)
    """
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    add_quick(parser, quick)
    return parser


def add_journal_url(parser: argparse.ArgumentParser, help: str) -> None:
    """``--journal URL``: a journal path or URL (engine.journal.backends.open_journal), None by
    default."""
    parser.add_argument("--journal", metavar="URL", default=None, help=help)


def add_ray_workers(parser: argparse.ArgumentParser, workers: str, address: str) -> None:
    """``--workers N`` (0 in-process, N local Ray CPUs; None by default: the command decides)
    and ``--ray-address`` (an existing Ray cluster, None by default), with their help texts."""
    parser.add_argument("--workers", type=int, default=None, help=workers)
    parser.add_argument("--ray-address", default=None, help=address)
