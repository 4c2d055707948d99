"""Commands, and the options that several commands share, declared once.

An ``nbo`` subcommand (engine.replay's, engine.journal's, simulators', benchmarks') is declared by
decorating the function that adds its arguments with :func:`command`: the decorator names the
command and what runs it, the function's docstring gives its one-line help (the first paragraph,
listed by ``nbo --help``) and its description (the rest, shown by ``nbo NAME --help``), as click
takes a command's help from its docstring. A command module's ``register(subparsers)``, what its
``nbo.commands`` entry point names, is :func:`commands` of its declared commands. The shared
options come from here too, so a flag's name, type, default and metavar are written once; the
help stays the caller's, since it says what the seed seeds or which journal is read in that
command. It imports nothing of nbo, so every layer may use it.

Examples
--------
>>> @command("go", print)
... def go(parser):
...     '''run
...
...     Run it.
...     '''
...     add_seed(parser, "seed of the run [%(default)s]")
...     add_journal_url(parser, "journal to read [none]")
>>> go.help, go.description
('run', 'Run it.')
>>> args = parse_command(commands(go), ["go", "--journal", "sqlite:///j.sqlite"])
>>> args.seed, args.journal, args.func is print
(0, 'sqlite:///j.sqlite', True)
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Arguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """A subcommand as :func:`command` declares it.

    Parameters
    ----------
    name : str
        What the command line says.
    func : callable or None
        What runs it, ``func(args)``, set as the parser's ``func`` default; None for a command
        whose actions set it (or that inherits its parent's).
    arguments : callable
        Adds the command's arguments to its parser (the decorated function).
    help : str
        The line ``nbo --help`` (or the parent's help) lists it with.
    description : str or None
        What ``nbo NAME --help`` says above the options.
    """

    name: str
    func: Callable[[argparse.Namespace], Any] | None
    arguments: Arguments
    help: str
    description: str | None

    def add_to(self, subparsers: Any) -> argparse.ArgumentParser:
        """Add the command's parser to ``subparsers`` (an ``add_subparsers()`` result)."""
        parser: argparse.ArgumentParser = subparsers.add_parser(
            self.name, help=self.help, description=self.description
        )
        if self.func is not None:
            parser.set_defaults(func=self.func)
        self.arguments(parser)
        return parser


def command(
    name: str,
    func: Callable[[argparse.Namespace], Any] | None = None,
    *,
    help: str | None = None,
    description: str | None = None,
) -> Callable[[Arguments], Command]:
    """Declare the decorated function as adding the arguments of command ``name``, run by
    ``func``; ``help`` and ``description`` default to its docstring's first paragraph and the
    rest (white space folded; no rest, no description), given here only when computed."""

    def declare(arguments: Arguments) -> Command:
        summary, _, rest = inspect.cleandoc(arguments.__doc__ or "").partition("\n\n")
        return Command(
            name,
            func,
            arguments,
            " ".join(summary.split()) if help is None else help,
            (" ".join(rest.split()) or None) if description is None else description,
        )

    return declare


def commands(*declared: Command) -> Callable[[Any], None]:
    """The ``register(subparsers)`` of a command module: adds the ``declared`` commands."""

    def register(subparsers: Any) -> None:
        for each in declared:
            each.add_to(subparsers)

    return register


def add_actions(parser: argparse.ArgumentParser, *declared: Command) -> None:
    """Give the command of ``parser`` the required ``ACTION`` commands ``declared`` (``nbo
    journal migrate``), the one chosen in ``args.action``."""
    commands(*declared)(parser.add_subparsers(dest="action", metavar="ACTION", required=True))


def parse_command(register: Callable[[Any], None], argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` as ``nbo`` parses it with the commands ``register`` adds (a command module's
    ``register``): how a command's examples and tests, or a command running another one, read a
    command line without the other commands.

    Examples
    --------
    >>> @command("go", print)
    ... def go(parser):
    ...     '''run'''
    ...     add_seed(parser)
    >>> args = parse_command(commands(go), ["go", "--seed", "3"])
    >>> args.command, args.seed, go.description
    ('go', 3, None)
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


@dataclass(frozen=True)
class Script:
    """A benchmark or simulator script as :func:`script` declares it.

    Parameters
    ----------
    module : str
        The script runs as ``python -m <module>``.
    quick : str
        What its ``--quick`` shrinks.
    arguments : callable
        Adds the script's own options to its parser (the decorated function).
    description : str
        What its ``--help`` says above the options.

    Examples
    --------
    >>> @script("benchmarks.x", quick="small sizes")
    ... def options(parser):
    ...     '''Measure x.'''
    ...     add_seed(parser, "seed [%(default)s]")
    >>> args = options.parse_args(["--quick", "--seed", "2"])
    >>> options.description, args.quick, args.seed
    ('Measure x.', True, 2)
    """

    module: str
    quick: str
    arguments: Arguments
    description: str

    def parse_args(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """``argv`` (the process's arguments when None) as the script reads it."""
        parser = script_parser(self.module, self.description, self.quick)
        self.arguments(parser)
        return parser.parse_args(argv)


def script(module: str, quick: str) -> Callable[[Arguments], Script]:
    """Declare the decorated function as adding the options of the script ``python -m
    <module>`` (after ``--quick``, whose help ``quick`` is); its docstring, white space folded, is
    the script's description."""

    def declare(arguments: Arguments) -> Script:
        return Script(module, quick, arguments, " ".join((arguments.__doc__ or "").split()))

    return declare


def add_journal_url(parser: argparse.ArgumentParser, help: str) -> None:
    """``--journal URL``: a journal path or URL (engine.journal.backends.open_journal), None by
    default."""
    parser.add_argument("--journal", metavar="URL", default=None, help=help)


def add_ray_workers(parser: argparse.ArgumentParser, workers: str, address: str) -> None:
    """``--workers N`` (0 in-process, N local Ray CPUs; None by default: the command decides)
    and ``--ray-address`` (an existing Ray cluster, None by default), with their help texts."""
    parser.add_argument("--workers", type=int, default=None, help=workers)
    parser.add_argument("--ray-address", default=None, help=address)
