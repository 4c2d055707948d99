"""Core benchmark: nbo's bandit policies against MABWiser, Vowpal Wabbit and plain numpy.

One run draws one seeded linear contextual environment (known expected rewards) and measures, on
the same stream for every library:

- batch ``choose`` throughput at K=10, d=32 and K=100, d=64 after the same warm-up data;
- online choose + update, one event at a time from Python, at K=10, d=32, and the reward each
  policy collects on that stream (mean expected reward per event, regret against the oracle);
- warm single-row ``choose`` latency (p50/p99) of every contextual policy (LinUCB and LinearTS
  also through ``choose`` on a one-row array; EpsilonGreedy, Softmax, SharedLinear with four
  attributes per offer, RandomFourierUCB and LandingLift at class defaults) against VWPolicy and
  MABWiser,
  and first-call (compile) time, cold in a fresh process with an empty numba cache and warm
  from the cache.

Throughputs are medians of repeats; each nbo figure is also given as a ratio to its peer measured
in the same run, and the issue's targets are checked. Run ``python -m benchmarks.core``
(or ``nbo bench``); ``--quick`` is a small, fast version. Results go to
benchmarks/results/core.json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from benchmarks import common as bc
from benchmarks.peers import ALPHA, EPSILON, L2, LARGE, NOISE, SMALL, TS_SCALE, VW_ARGS
from benchmarks.scenarios import (
    FULL,
    QUICK,
    Run,
    batch_section,
    compile_section,
    latency_section,
    online_section,
)
from benchmarks.tables import render, targets
from engine.cliargs import add_quick, add_seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The script's options (``nbo bench`` offers the same)."""
    add_quick(parser, "small sizes and no cold-compile runs (smoke test, demo)")
    bc.add_out(parser, "core")
    add_seed(parser, "seed of the stream and policies [%(default)s]")
    parser.add_argument(
        "--repeats",
        type=_at_least_one,
        default=None,
        help="repeats per throughput figure [5; --quick 3]",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads for every library; 0 = the library's default [%(default)s]",
    )


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` as the script's options and :func:`run` the benchmark."""
    return bc.script_main(argv, "benchmarks.core", __doc__, add_arguments, run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with :func:`add_arguments`' options, print the tables, write the JSON
    file; returns the exit code."""
    from tqdm import tqdm

    sizes = QUICK if args.quick else FULL
    sizes = replace(sizes, repeats=args.repeats or sizes.repeats)
    settings = {
        "quick": args.quick,
        "seed": args.seed,
        "blas_threads": args.blas_threads,
        **asdict(sizes),
        "alpha": ALPHA,
        "ts_scale": TS_SCALE,
        "epsilon": EPSILON,
        "l2": L2,
        "vw_args": VW_ARGS,
        "noise_sd": NOISE,
    }
    results: dict[str, Any] = {"meta": bc.run_info(settings)}
    n_steps = 10 + 9 + 4 + (4 if args.quick else 8)
    progress = tqdm(total=n_steps, file=sys.stderr, leave=False, disable=None)
    with progress, bc.blas_threads(args.blas_threads):
        run = Run(sizes, args.seed, progress, cold=not args.quick)
        small = bc.linear_stream(
            sizes.warmup + sizes.batch_small + sizes.online, *SMALL, seed=args.seed, noise=NOISE
        )
        large = bc.linear_stream(
            sizes.warmup + sizes.batch_large, *LARGE, seed=args.seed + 1, noise=NOISE
        )
        small_batch, models = batch_section(run, small, sizes.batch_small)
        large_batch, _ = batch_section(run, large, sizes.batch_large)
        results["batch"] = [small_batch, large_batch]
        start = sizes.warmup + sizes.batch_small
        results["online"] = online_section(run, small.rows(start, start + sizes.online))
        results["latency"] = latency_section(run, small, models)
        results["compile"] = compile_section(run)
        progress.update(1)
    results["targets"] = targets(results)
    results["notes"] = [
        "throughputs are medians of repeats; the garbage collector is paused while timing",
        f"MABWiser online runs are capped at {results['online']['mabwiser_events']} events",
        "VW routes: pyvw = vowpalwabbit with text lines; next (TextFormatParser) = "
        "vowpal-wabbit-next parsing text; next (nbo VWPolicy) = examples built from arrays, reused",
        "first calls run in fresh interpreters (cold: empty NUMBA_CACHE_DIR)",
    ]
    results["table"] = render(results)
    return bc.publish(args.out, results)


if __name__ == "__main__":
    sys.exit(main())
