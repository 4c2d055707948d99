"""``nbo bench``: run the core benchmark (benchmarks/core.py) of a source checkout.

benchmarks/ is not part of the installed package: it sits beside engine/ in the repository, and
this command runs its script in-process with the options given here.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser(prog="nbo")
>>> register(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["bench", "--quick", "--out", "core.json"])
>>> core_argv(args)
['--out', 'core.json', '--seed', '0', '--blas-threads', '1', '--quick']
>>> run_core([], benchmarks_dir="no-such-folder")
Traceback (most recent call last):
...
FileNotFoundError: benchmark script no-such-folder/core.py not found: `nbo bench` needs a source ...
"""

from __future__ import annotations

import argparse
import runpy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# benchmarks/ lives next to engine/ in the repository.
BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark nbo's policies against MABWiser, Vowpal Wabbit and numpy",
        description="Run benchmarks/core.py: batch choose throughput, online choose+update, "
        "reward on one seeded stream, single-row latency and first-call (compile) time, against "
        "MABWiser, Vowpal Wabbit (vowpalwabbit and vowpal-wabbit-next) and plain numpy. Prints "
        "tables with pass/fail against the targets and writes JSON. Takes several minutes; "
        "--quick takes well under a minute.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes, no cold-compile runs")
    p.add_argument(
        "--out",
        type=Path,
        default=BENCHMARKS_DIR / "results" / "core.json",
        help="JSON result file [benchmarks/results/core.json]",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the stream and policies [0]")
    p.add_argument("--repeats", type=int, help="repeats per throughput figure [5; --quick 3]")
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads for every library, 0 = library default [1]",
    )
    p.set_defaults(func=_handle)


def core_argv(args: argparse.Namespace) -> list[str]:
    """The command line for benchmarks/core.py equivalent to ``nbo bench``'s ``args``."""
    argv = ["--out", str(args.out), "--seed", str(args.seed)]
    argv += ["--blas-threads", str(args.blas_threads)]
    if args.repeats is not None:
        argv += ["--repeats", str(args.repeats)]
    if args.quick:
        argv.append("--quick")
    return argv


def run_core(argv: Sequence[str], benchmarks_dir: str | Path | None = None) -> int:
    """Run benchmarks/core.py's ``main(argv)`` in this process and return its exit code.

    Raises
    ------
    FileNotFoundError
        When the script is missing (nbo installed without its source checkout).
    """
    directory = BENCHMARKS_DIR if benchmarks_dir is None else Path(benchmarks_dir)
    script = directory / "core.py"
    if not script.is_file():
        raise FileNotFoundError(
            f"benchmark script {script} not found: `nbo bench` needs a source checkout of nbo "
            "(benchmarks/ is not installed)"
        )
    namespace = runpy.run_path(str(script), run_name="nbo_bench_core")
    return int(namespace["main"](list(argv)))


def _handle(args: argparse.Namespace) -> int:
    return run_core(core_argv(args))
