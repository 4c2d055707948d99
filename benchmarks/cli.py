"""``nbo bench``: the core benchmark (:mod:`benchmarks.core`) as a subcommand of ``nbo``.

benchmarks declares this module as the ``bench`` entry point of the ``nbo.commands`` group, so the
command exists wherever the benchmarks package is installed and engine never names it.

Examples
--------
>>> from engine.cliargs import parse_command
>>> args = parse_command(register, ["bench", "--quick", "--out", "core.json"])
>>> args.quick, str(args.out), args.seed, args.repeats, args.blas_threads
(True, 'core.json', 0, None, 1)
"""

from __future__ import annotations

import argparse

from benchmarks import core
from engine.cliargs import command, commands


@command("bench", core.run)
def _bench_command(parser: argparse.ArgumentParser) -> None:
    """benchmark nbo's policies against MABWiser, Vowpal Wabbit and numpy

    Run the core benchmark (python -m benchmarks.core): batch choose throughput, online
    choose+update, reward on one seeded stream, single-row latency and first-call (compile) time,
    against MABWiser, Vowpal Wabbit (vowpalwabbit and vowpal-wabbit-next) and plain numpy. Prints
    tables with pass/fail against the targets and writes JSON. Takes several minutes; --quick
    takes well under a minute.
    """
    core.add_arguments(parser)


register = commands(_bench_command)
