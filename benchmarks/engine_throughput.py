"""Engine benchmark: the decision engine end to end on examples/renewal.toml.

One run measures, on seeded renewal customers (simulators/renewal.py's population: realistic
attribute distributions, every rule and cost of the campaign in play):

- ``decide_batch`` and ``reward_batch`` throughput in batches of 256, with the journal durable
  on disk (SQLite, WAL, every batch committed before the call returns, the background thread
  publishing and checkpointing as in ``nbo serve``) and with the journal in memory, in the same
  run and interleaved repeat by repeat, so the journal's cost is a ratio taken under the same
  load. Rewards arrive in shuffled order (out of order, as late outcomes do) and each reward
  batch includes the learner's update; the same with rewards in decision order is reported too.
- single ``decide`` latency (p50/p99) with the durable journal.
- resident memory (RSS growth) and journal size for 1,000,000 pending decisions, measured in a
  fresh child process so nothing else this run allocated is counted.

The garbage collector runs as in a server: the engine keeps per-customer state, and collecting
around it is part of the engine's cost. Throughputs are medians of repeats (the machine is
shared: each repeat is also kept), the issue's targets are checked, and the results go to
benchmarks/results/engine.json. Run ``python -m benchmarks.engine_throughput``; ``--quick`` is a
small, fast version (smaller sizes, fewer pending decisions). ``--journal URL`` puts the durable
runs' journal there instead (``postgresql://user@host:port/db``: each run in a throwaway
campaign schema, dropped after it; results in benchmarks/results/engine-postgres.json); the
memory run stays on SQLite.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common as bc
from benchmarks.engine_tables import render, targets
from engine.campaign import load_campaign
from engine.cliargs import add_journal_url, add_seed, script_parser
from engine.core import Engine
from engine.journal.backends import journal_kind, redact_url
from simulators.renewal import RenewalEnvironment

CAMPAIGN = bc.REPO_ROOT / "examples" / "renewal.toml"
BATCH = 256
POOL = 65_536  # distinct contexts drawn for the pending-memory run (reused, ids stay unique)


@dataclass(frozen=True)
class Sizes:
    decisions: int  # decisions (then rewards) per throughput repeat
    latency_calls: int  # single decide calls timed per repeat
    pending: int  # pending decisions of the memory run
    repeats: int


FULL = Sizes(decisions=51_200, latency_calls=5_000, pending=1_000_000, repeats=5)
QUICK = Sizes(decisions=2_560, latency_calls=300, pending=20_000, repeats=3)


# ---------------------------------------------------------------------- workload
@dataclass
class Workload:
    """Customers, their raw attributes (one plain dict each, as a backend sends them) and the
    outcome value each will report."""

    customer_ids: list[str]
    contexts: list[dict[str, Any]]
    values: list[float]
    reward_order: np.ndarray  # a permutation: rewards arrive out of order


def workload(n: int, seed: int, tag: str) -> Workload:
    """``n`` renewal customers: attributes from the simulator's population, a renewal value of
    12 months of their price with probability 0.7 (else 0), and a shuffled reward order."""
    env = RenewalEnvironment.from_campaign(CAMPAIGN)
    rng = np.random.default_rng(seed)
    attributes = env.draw_attributes(n, rng)
    contexts = env.records(attributes)
    renewed = rng.random(n) < 0.7
    values = np.where(renewed, 12.0 * attributes["monthly_price"], 0.0).tolist()
    ids = [f"{tag}-{seed}-{i}" for i in range(n)]
    return Workload(ids, contexts, values, rng.permutation(n))


def open_engine(durable: bool, data_root: Path, journal_url: str | None = None) -> Engine:
    """A fresh engine on the campaign file: its own journal folder, or the journal in memory;
    durable with ``journal_url``: a fresh campaign in that journal (see :func:`close_engine`)."""
    data_dir = Path(tempfile.mkdtemp(dir=data_root)) if durable else None
    config = load_campaign(CAMPAIGN)
    # The workload's renewals do not depend on the offer, so the policy (which pays incentives)
    # loses to the control and the lift monitor would roll the campaign back midway: it keeps
    # computing its bound (its cost is measured) but only reports, so every batch is served by
    # the policy.
    config = replace(config, rollout=replace(config.rollout, monitor=False))
    if durable and journal_url:
        config = replace(config, name=f"bench_{uuid.uuid4().hex[:12]}")
    engine = Engine(config, data_dir, journal_url=journal_url if durable else None)
    engine.prepare()
    return engine


def close_engine(engine: Engine, journal_url: str | None) -> None:
    """Close ``engine``; a throwaway campaign of a PostgreSQL journal is dropped too."""
    engine.close()
    if journal_url and engine.data_dir is not None and journal_kind(journal_url) == "postgres":
        from engine.journal.postgres import drop_campaign

        drop_campaign(journal_url, engine.campaign)


# ---------------------------------------------------------------------- throughput
def run_throughput(
    w: Workload,
    durable: bool,
    data_root: Path,
    shuffled: bool = True,
    journal_url: str | None = None,
) -> dict[str, float]:
    """Seconds to decide every customer, then to reward every decision, in batches of 256:
    wall time and this process's CPU time (all threads; on a loaded machine it leaves out the
    time other processes held the CPU). Rewards come in shuffled order, or in decision order.

    A warm-up batch (other customers) runs first, untimed: kernels and statements are warm.
    """
    engine = open_engine(durable, data_root, journal_url)
    try:
        engine.decide_batch([f"warm-{i}" for i in range(BATCH)], w.contexts[:BATCH])
        ids, contexts, n = w.customer_ids, w.contexts, len(w.customer_ids)
        decided: list[str] = []
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        for s in range(0, n, BATCH):
            records = engine.decide_batch(ids[s : s + BATCH], contexts[s : s + BATCH])
            decided += [r.decision_id for r in records]
        decide_s, decide_cpu = time.perf_counter() - start, time.process_time() - cpu
        order = w.reward_order.tolist() if shuffled else list(range(n))
        decision_ids = [decided[i] for i in order]
        values = [w.values[i] for i in order]
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        for s in range(0, n, BATCH):
            results = engine.reward_batch(decision_ids[s : s + BATCH], values[s : s + BATCH])
            if results[-1].status != "applied":
                raise RuntimeError(f"reward not applied: {results[-1]}")
        reward_s, reward_cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        close_engine(engine, journal_url)
    return {
        "decide": decide_s,
        "reward": reward_s,
        "decide_cpu": decide_cpu,
        "reward_cpu": reward_cpu,
    }


def throughput(
    sizes: Sizes, seed: int, data_root: Path, journal_url: str | None = None
) -> dict[str, Any]:
    """Durable and in-memory runs, interleaved repeat by repeat (same load drift for both)."""
    w = workload(sizes.decisions, seed, "tp")
    secs: dict[str, dict[str, list[float]]] = {
        mode: {"decide": [], "reward": [], "decide_cpu": [], "reward_cpu": []}
        for mode in ("durable", "memory", "in_order")
    }
    for _ in range(sizes.repeats):
        for mode in ("durable", "memory", "in_order"):
            run = run_throughput(w, mode != "memory", data_root, mode != "in_order", journal_url)
            for key, seconds in run.items():
                secs[mode][key].append(seconds)
    n = sizes.decisions
    out: dict[str, Any] = {"batch": BATCH, "decisions": n}
    for call in ("decide", "reward"):
        durable = bc.rate_stats(n, secs["durable"][call])
        memory = bc.rate_stats(n, secs["memory"][call])
        out[f"{call}_batch"] = {
            "durable": durable,
            "memory": memory,
            # Items per CPU-second of this process: less sensitive to other processes' load.
            "durable_cpu": bc.rate_stats(n, secs["durable"][f"{call}_cpu"]),
            "memory_cpu": bc.rate_stats(n, secs["memory"][f"{call}_cpu"]),
            # < 1: the share of in-memory throughput kept with the durable journal.
            "durable_vs_memory": bc.ratio(durable["median"], memory["median"]),
            "journal_us_per_item": 1e6 / durable["median"] - 1e6 / memory["median"],
        }
    # Rewards in decision order (durable): the index of rewarded ids then grows at one end;
    # shuffled rewards dirty about one index page each per commit.
    out["reward_batch"]["durable_in_decision_order"] = bc.rate_stats(n, secs["in_order"]["reward"])
    return out


# ---------------------------------------------------------------------- latency
def _latency_repeat(
    w: Workload, n: int, data_root: Path, journal_url: str | None = None
) -> np.ndarray:
    engine = open_engine(True, data_root, journal_url)
    try:
        for i in range(200):  # warm-up calls, other customers
            engine.decide(f"warm-{i}", w.contexts[n + i])
        ids, contexts = w.customer_ids, w.contexts
        samples = np.empty(n, dtype=np.int64)
        clock, decide = time.perf_counter_ns, engine.decide
        gc.collect()
        for i in range(n):  # as bc.latency_samples, but with the garbage collector running
            start = clock()
            decide(ids[i], contexts[i])
            samples[i] = clock() - start
    finally:
        close_engine(engine, journal_url)
    return samples


def latency(
    sizes: Sizes, seed: int, data_root: Path, journal_url: str | None = None
) -> dict[str, Any]:
    """Single ``decide`` calls with the durable journal: p50/p99 per repeat, and their medians."""
    n = sizes.latency_calls
    w = workload(n + 200, seed + 1, "lat")
    repeats = []
    pooled = []
    for _ in range(sizes.repeats):
        samples = _latency_repeat(w, n, data_root, journal_url)
        repeats.append(bc.latency_stats(samples))
        pooled.append(samples)
    return {
        "calls_per_repeat": n,
        "repeats": repeats,
        "p50_us": statistics.median(r["p50_us"] for r in repeats),
        "p99_us": statistics.median(r["p99_us"] for r in repeats),
        "pooled": bc.latency_stats(np.concatenate(pooled)),
    }


# ---------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak, which only grows here)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _journal_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("*.journal.sqlite*"))


def pending_memory_child(n_pending: int, seed: int, data_dir: Path) -> dict[str, Any]:
    """In this (fresh) process: RSS and journal size before and after ``n_pending`` decisions
    that get no reward (every one stays pending: the window is 30 days)."""
    w = workload(min(POOL, n_pending), seed + 2, "mem")
    pool = len(w.contexts)
    engine = Engine.from_config(CAMPAIGN, data_dir=data_dir)
    engine.prepare()
    engine.decide_batch([f"warm-{i}" for i in range(BATCH)], w.contexts[:BATCH])
    rss0, peak0 = _rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    journal0 = _journal_bytes(data_dir)
    start = time.perf_counter()
    for s in range(0, n_pending, BATCH):
        rows = min(BATCH, n_pending - s)
        offset = s % pool
        contexts = w.contexts[offset : offset + rows]
        if len(contexts) < rows:
            contexts = contexts + w.contexts[: rows - len(contexts)]
        engine.decide_batch([f"pending-{s + i}" for i in range(rows)], contexts)
    seconds = time.perf_counter() - start
    rss1 = _rss_bytes()
    counts = engine.journal.counts()
    engine.close()  # checkpoints the WAL into the database file
    return {
        "pending": n_pending,
        "journal_pending": counts["pending"] - BATCH,
        "seconds": seconds,
        "rss_before_mb": rss0 / 1e6,
        "rss_after_mb": rss1 / 1e6,
        "rss_growth_mb": (rss1 - rss0) / 1e6,
        "rss_bytes_per_pending": (rss1 - rss0) / n_pending,
        "peak_rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0,
        "journal_mb": _journal_bytes(data_dir) / 1e6,
        "journal_bytes_per_decision": (_journal_bytes(data_dir) - journal0) / n_pending,
    }


def pending_memory(n_pending: int, seed: int, data_root: Path) -> dict[str, Any]:
    """Run :func:`pending_memory_child` in a fresh Python process and return its figures."""
    data_dir = Path(tempfile.mkdtemp(dir=data_root))
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.engine_throughput",
        "--memory-child",
        str(n_pending),
        "--seed",
        str(seed),
        "--out",
        str(data_dir),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory run failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(
        "benchmarks.engine_throughput",
        "Benchmark the decision engine on examples/renewal.toml: decide_batch and reward_batch "
        "throughput with the journal durable and in memory, single decide latency, memory and "
        "journal size of pending decisions. Prints tables, writes JSON.",
        "small sizes (a smoke run)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON result file [benchmarks/results/engine.json; engine-postgres.json with a "
        "postgresql:// --journal]",
    )
    add_journal_url(
        parser,
        "journal of the durable runs: a path or postgresql://user@host:port/db [a SQLite file "
        "per run]",
    )
    add_seed(parser, "seed of the customers [0]")
    parser.add_argument("--repeats", type=int, help="repeats per figure [5; --quick 3]")
    parser.add_argument(
        "--pending",
        type=int,
        help="pending decisions of the memory run [1,000,000; --quick 20,000]",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads, 0 = library default [1]",
    )
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child is not None:  # internal: the fresh process of the memory run
        with bc.blas_threads(args.blas_threads):
            result = pending_memory_child(args.memory_child, args.seed, args.out)
        print(json.dumps(result))
        return 0

    sizes = QUICK if args.quick else FULL
    if args.repeats is not None:
        sizes = Sizes(sizes.decisions, sizes.latency_calls, sizes.pending, max(1, args.repeats))
    if args.pending is not None:
        sizes = Sizes(sizes.decisions, sizes.latency_calls, max(BATCH, args.pending), sizes.repeats)
    settings = dict(asdict(sizes), quick=args.quick, seed=args.seed, batch=BATCH)
    settings["blas_threads"] = args.blas_threads
    postgres = bool(args.journal) and journal_kind(args.journal) == "postgres"
    if args.journal and not postgres:
        parser.error("--journal: expected postgresql://user@host:port/db (SQLite is the default)")
    settings["journal"] = redact_url(args.journal) if args.journal else "sqlite"
    out_path = args.out or bc.RESULTS_DIR / ("engine-postgres.json" if postgres else "engine.json")
    results: dict[str, Any] = {"meta": bc.run_info(settings)}
    with (
        tempfile.TemporaryDirectory(prefix="nbo-bench-engine-") as tmp,
        bc.blas_threads(args.blas_threads),
    ):
        root = Path(tmp)
        print(f"throughput: {sizes.repeats} x {sizes.decisions:,} decisions ...", file=sys.stderr)
        results["throughput"] = throughput(sizes, args.seed, root, args.journal)
        print(f"latency: {sizes.repeats} x {sizes.latency_calls:,} calls ...", file=sys.stderr)
        results["latency"] = latency(sizes, args.seed, root, args.journal)
        print(f"memory: {sizes.pending:,} pending decisions ...", file=sys.stderr)
        results["memory"] = pending_memory(sizes.pending, args.seed, root)
    results["targets"] = targets(results)
    results["table"] = render(results)
    return bc.publish(out_path, results)


if __name__ == "__main__":
    sys.exit(main())
