"""Off-policy evaluation benchmark: estimator, replay and end-to-end throughput.

    python -m benchmarks.ope [--rows 1000000] [--workers 0,1,2] [--out benchmarks/results/ope.json]

It prints a table and writes JSON:

* estimator throughput (events/s on one core) of IPS, SNIPS and DR with their moments, next to
  the plain numpy point estimate in the same run;
* replay of a learning LinUCB (K=10, d=32) through the log (events/s);
* end to end Parquet -> report (read, evaluate one static LinUCB plus the baselines with 200
  bootstrap resamples, write the report), in-process and on local Ray with 1 and 2 workers; Ray
  start-up and worker warm-up (imports, compiled kernels) are timed separately; one more
  in-process run uses normal intervals only (no bootstrap).

The Parquet file is written so that decoding is cheap: the context is one uncompressed
fixed-size list of float64 (a single contiguous buffer), the offer column is dictionary-encoded
and row groups are large. ``--quick`` is a small, fast version, in-process only (no Ray).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from benchmarks import common as bc
from engine.cliargs import add_quick

N_ACTIONS, N_FEATURES = 10, 32
# Rows of the estimator and replay runs, full and --quick.
ESTIMATOR_ROWS, REPLAY_ROWS = 10_000_000, 200_000
QUICK_ESTIMATOR_ROWS, QUICK_REPLAY_ROWS, QUICK_ROWS = 100_000, 5_000, 20_000


def write_log(path: Path, n_rounds: int, seed: int = 0, row_group: int = 1 << 20) -> None:
    """A uniformly logged linear-reward log in docs/architecture.md's logged-data schema, in row
    groups of ``row_group`` rows (a divisor of 2**20)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(N_ACTIONS, N_FEATURES)) / np.sqrt(N_FEATURES)
    names = [f"offer{i}" for i in range(N_ACTIONS)]
    writer = None
    for start in range(0, n_rounds, 1 << 20):
        n = min(1 << 20, n_rounds - start)
        X = rng.normal(size=(n, N_FEATURES))
        a = rng.integers(0, N_ACTIONS, n)
        table = pa.table(
            {
                "decision_id": pa.array([f"d{i}" for i in range(start, start + n)]),
                "timestamp": pa.array(
                    (np.arange(start, start + n) * 1000), pa.timestamp("us", tz="UTC")
                ),
                "context": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), N_FEATURES),
                "action": pa.DictionaryArray.from_arrays(
                    pa.array(a.astype(np.int32)), pa.array(names)
                ),
                "propensity": np.full(n, 1.0 / N_ACTIONS),
                "reward": (X * theta[a]).sum(axis=1) + rng.normal(size=n),
            }
        ).replace_schema_metadata({"nbo.offer_ids": json.dumps(names)})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="none")
        writer.write_table(table, row_group_size=row_group)
    if writer is not None:
        writer.close()


def estimator_throughput(n_rounds: int) -> list[dict[str, Any]]:
    from engine.replay.estimators import DR, IPS, SNIPS, OffPolicyInputs

    rng = np.random.default_rng(1)
    r = rng.normal(size=n_rounds)
    p = np.full(n_rounds, 0.1)
    w = (rng.random(n_rounds) < 0.1) / p
    ql, qt = rng.normal(size=n_rounds), rng.normal(size=n_rounds)
    inputs = OffPolicyInputs(r, p, w, ql, qt)
    plain = {
        "ips": lambda: np.mean(w * r),
        "snips": lambda: np.sum(w * r) / np.sum(w),
        "dr": lambda: np.mean(qt + w * (r - ql)),
    }
    rows = []
    with threadpool_limits(limits=1):
        for estimator in (IPS(), SNIPS(), DR()):
            estimator.moments(inputs)  # warm the allocator
            ours = _best(lambda e=estimator: e.moments(inputs))
            ref = _best(plain[estimator.name])
            rows.append(
                {
                    "what": f"{estimator.name} estimate + moments (1 core)",
                    "events_per_s": n_rounds / ours,
                    "numpy_point_estimate_events_per_s": n_rounds / ref,
                }
            )
    return rows


def replay_throughput(n_rounds: int) -> dict[str, Any]:
    from engine.replay.candidates import Candidate, EvalConfig, Shard, learning_replay

    rng = np.random.default_rng(2)
    X = rng.normal(size=(n_rounds, N_FEATURES))
    a = rng.integers(0, N_ACTIONS, n_rounds)
    r = X[:, 0] * (a == 3) + rng.normal(size=n_rounds)
    shard = Shard(0, X, a, np.full(n_rounds, 1.0 / N_ACTIONS), r, None)
    candidate = Candidate("linucb", {"name": "linucb", "alpha": 0.5}, "learning")
    config = EvalConfig(estimators=("replay", "ips", "snips"), n_bootstrap=0)
    learning_replay(candidate, [shard], None, N_ACTIONS, 0.1, config)  # compile kernels
    seconds = _best(lambda: learning_replay(candidate, [shard], None, N_ACTIONS, 0.1, config))
    return {"what": "replay LinUCB K=10 d=32 (1 core)", "events_per_s": n_rounds / seconds}


def end_to_end(
    path: Path, n_rounds: int, workers: int, n_bootstrap: int = 200, repeats: int = 3
) -> dict[str, Any]:
    from engine.replay import read_logs
    from engine.replay.candidates import EvalConfig, make_candidates
    from engine.replay.evaluate import evaluate
    from engine.replay.fanout import Runner
    from engine.replay.report import write_report

    runner = Runner(workers=workers, progress=False)
    ray_start = 0.0
    if workers:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        t = time.perf_counter()
        runner.warm_up()
        ray_start = time.perf_counter() - t
    best: dict[str, float] = {}
    try:
        for _ in range(repeats):  # best of a few: the machine is shared
            t0 = time.perf_counter()
            data = read_logs(path)
            t1 = time.perf_counter()
            result = evaluate(
                data,
                make_candidates([{"name": "linucb", "alpha": 0.5}], ("static",)),
                config=EvalConfig(n_bootstrap=n_bootstrap),
                interval="bootstrap" if n_bootstrap else "normal",
                runner=runner,
            )
            t2 = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                write_report(result, out)
            t3 = time.perf_counter()
            if not best or t3 - t0 < best["total"]:
                best = {"total": t3 - t0, "read": t1 - t0, "evaluate": t2 - t1, "report": t3 - t2}
    finally:
        runner.close()
    t0, t1, t2, t3 = 0.0, best["read"], best["read"] + best["evaluate"], best["total"]
    return {
        "what": f"end to end, {runner.mode}"
        + (f", {workers} workers" if workers else "")
        + ("" if n_bootstrap else ", normal intervals only"),
        "events_per_s": n_rounds / (t3 - t0),
        "read_s": t1 - t0,
        "evaluate_s": t2 - t1,
        "report_s": t3 - t2,
        "ray_start_s": ray_start,
        "complete": result.complete,
    }


SHARDED_ROW_GROUP = 1 << 18


def sharded_child(path: Path, n_rounds: int, mode: str) -> dict[str, Any]:
    """One end-to-end run (evaluate one static LinUCB plus the baselines, 200 bootstrap
    resamples, write the report) in this fresh process, with its peak RSS: ``memory`` reads
    the logs into the driver (read_logs + evaluate), ``0`` and ``2`` are evaluate_dataset
    in-process and on a local Ray with 2 workers (Ray start-up and warm-up timed apart)."""
    from engine.replay import read_logs
    from engine.replay.candidates import EvalConfig, make_candidates
    from engine.replay.evaluate import evaluate
    from engine.replay.fanout import Runner
    from engine.replay.report import write_report
    from engine.replay.sharded import evaluate_dataset

    candidates = make_candidates([{"name": "linucb", "alpha": 0.5}], ("static",))
    config = EvalConfig(n_bootstrap=200)
    workers = 0 if mode == "memory" else int(mode)
    runner = Runner(workers=workers, progress=False)
    ray_start = 0.0
    if workers:
        t = time.perf_counter()
        runner.warm_up()
        ray_start = time.perf_counter() - t
    try:
        t0 = time.perf_counter()
        if mode == "memory":
            result = evaluate(read_logs(path), candidates, config=config, runner=runner)
        else:
            result = evaluate_dataset(path, candidates, config=config, runner=runner)
        with tempfile.TemporaryDirectory() as out:
            write_report(result, out)
        seconds = time.perf_counter() - t0
    finally:
        runner.close()
    where = "in memory, in-process" if mode == "memory" else f"fragments, {runner.mode}"
    return {
        "what": f"end to end {n_rounds:,} rows, {where}"
        + (f", {workers} workers" if workers else ""),
        "events_per_s": n_rounds / seconds,
        "seconds": seconds,
        "ray_start_s": ray_start,
        "driver_peak_rss_mb": _peak_rss_mb(),
        "fragments": result.info.get("fragments"),
        "pass_seconds": result.info.get("pass_seconds"),
        "pass_driver_cpu_seconds": result.info.get("pass_driver_cpu_seconds"),
        "complete": result.complete,
        "dr_value": result.candidates[-1].value("dr"),
    }


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across exec from the
    parent that wrote the logs)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sharded(path: Path, n_rounds: int, modes: list[str]) -> list[dict[str, Any]]:
    """:func:`sharded_child` for each mode, each in its own process (so peak RSS is its own)."""
    import subprocess

    rows = []
    for mode in modes:
        command = [sys.executable, "-m", "benchmarks.ope", "--sharded-child", str(path)]
        command += ["--rows", str(n_rounds), "--workers", mode]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def _best(fn: Any, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ope", description=__doc__.splitlines()[0]
    )
    add_quick(parser, "small sizes, in-process only (a smoke run)")
    parser.add_argument(
        "--rows", type=int, help=f"logged events end to end [1,000,000; --quick {QUICK_ROWS:,}]"
    )
    parser.add_argument("--workers", help="end-to-end runs (0 = in-process) [0,1,2; --quick 0]")
    parser.add_argument(
        "--out",
        type=Path,
        default=bc.RESULTS_DIR / "ope.json",
        help="JSON result file [benchmarks/results/ope.json]",
    )
    parser.add_argument(
        "--sharded",
        action="store_true",
        help="only the fragment-reading evaluation (evaluate_dataset) end to end, in-process "
        "and on Ray with 2 workers, next to the in-memory evaluation, each in a fresh process "
        "with its driver's peak RSS [off]",
    )
    parser.add_argument("--sharded-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n_rows = args.rows or (QUICK_ROWS if args.quick else 1_000_000)
    if args.sharded_child is not None:
        print(json.dumps(sharded_child(args.sharded_child, n_rows, args.workers)))
        return 0
    if args.sharded:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "logs.parquet"
            write_log(path, n_rows, row_group=SHARDED_ROW_GROUP)
            pq.read_table(path)  # every run then reads from the page cache
            rows = sharded(path, n_rows, (args.workers or "0,2,memory").split(","))
        _print(rows)
        out = bc.write_json(args.out, {"rows": n_rows, "sharded": True, "results": rows})
        print(f"wrote {out}", file=sys.stderr)
        return 0
    workers = args.workers or ("0" if args.quick else "0,1,2")
    rows = estimator_throughput(QUICK_ESTIMATOR_ROWS if args.quick else ESTIMATOR_ROWS)
    rows.append(replay_throughput(QUICK_REPLAY_ROWS if args.quick else REPLAY_ROWS))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "logs.parquet"
        write_log(path, n_rows)
        pq.read_table(path)  # every run then reads from the page cache, not only the later ones
        for n_workers in (int(w) for w in workers.split(",")):
            rows.append(end_to_end(path, n_rows, n_workers))
        rows.append(end_to_end(path, n_rows, 0, n_bootstrap=0))
    _print(rows)
    out = bc.write_json(args.out, {"rows": n_rows, "quick": args.quick, "results": rows})
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _print(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        extra = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
        extra.pop("what")
        rate = extra.pop("events_per_s")
        print(f"{row['what']:<52} {rate / 1e6:8.2f}M events/s  {extra}")


if __name__ == "__main__":
    sys.exit(main())
