"""gRPC load benchmark: nbo serve against bare grpcio echo servers, in one run.

Starts three child processes, ``nbo serve`` and the two echo servers of
:mod:`benchmarks.grpc_echo` (grpcio's thread-pool server and its asyncio server: the ceiling),
and drives them from this process with the asyncio gRPC client on loopback::

    python -m benchmarks.grpc_load [--seconds 3] [--repeats 3] [--out ...json]
    python -m benchmarks.grpc_load --quick      # the test suite's smoke run

The machine is shared, so wall-clock rates are noisy: every scenario is repeated, the servers
interleaved (sync echo, aio echo, nbo, sync echo, ...), and the table quotes medians. Each
measurement also reads the server process's CPU time (user + sys from /proc) over the run: CPU
per call does not depend on how much CPU other processes left the server, so it is the figure to
compare across runs. Ratios (nbo / the faster echo server) are taken within each repeat.

Scenarios: unary Decide at 1, 16 and 64 calls in flight (closed loop); Decide at a fixed rate of
70% of nbo's best median rate (open loop: latency counted from the scheduled send time, so a
slow server cannot hide queueing); DecideBatch of 64 rows (dense form) at 4 in flight; unary
Reward at 16 in flight, each for a distinct decision of this run. It prints a table and the
targets of issue 18, and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks import common as bc
from benchmarks.common import REPO_ROOT, RESULTS_DIR, cpu_seconds
from benchmarks.grpc_echo import READY_LINE
from engine.client import NboClient
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from simulators.processes import serve_command
from testkit.traffic import decide_requests, dense_request

SERVERS = ("sync echo", "aio echo", "nbo")
IN_FLIGHT = (1, 16, 64)
BATCH_ROWS = 64
BATCH_IN_FLIGHT = 4
REWARD_IN_FLIGHT = 16
FIXED_RATE_SHARE = 0.7


@dataclass(frozen=True)
class LoadResult:
    """One measurement: calls completed, rate, latency percentiles and server CPU per call."""

    server: str
    scenario: str
    in_flight: int  # 0: open loop
    repeat: int
    calls: int
    seconds: float
    per_second: float  # units (decisions for DecideBatch) per second
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_call: float | None
    errors: dict[str, int]


async def closed_loop(
    call: Callable[[Any], Awaitable[Any]],
    requests: Sequence[Any],
    in_flight: int,
    seconds: float,
    cycle: bool = True,
) -> tuple[list[float], Counter[str], list[Any]]:
    """``in_flight`` callers each sending the next request as soon as the last one answered,
    for ``seconds`` (or until ``requests`` run out when ``cycle`` is False)."""
    latencies: list[float] = []
    responses: list[Any] = []
    errors: Counter[str] = Counter()
    stop = time.perf_counter() + seconds
    counter = iter(range(1 << 62))
    n = len(requests)

    async def worker() -> None:
        while time.perf_counter() < stop:
            i = next(counter)
            if i >= n and not cycle:
                return
            start = time.perf_counter()
            try:
                responses.append(await call(requests[i % n]))
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return latencies, errors, responses


async def open_loop(
    call: Callable[[Any], Awaitable[Any]], requests: Sequence[Any], rate: float, seconds: float
) -> tuple[list[float], Counter[str]]:
    """Send at a fixed ``rate`` whatever the answers; latency from each scheduled send time."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    start = time.perf_counter()
    tasks = []

    async def one(request: Any, scheduled: float) -> None:
        try:
            await call(request)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
            return
        latencies.append(time.perf_counter() - scheduled)

    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(requests[i % len(requests)], scheduled)))
    await asyncio.gather(*tasks)
    return latencies, errors


class _Target:
    """One server under load: its process id and an OfferService stub."""

    def __init__(self, name: str, pid: int, channel: grpc.aio.Channel) -> None:
        self.name = name
        self.pid = pid
        self.stub = pb_grpc.OfferServiceStub(channel)

    async def measure(
        self,
        scenario: str,
        in_flight: int,
        repeat: int,
        run: Callable[[], Awaitable[tuple[list[float], Counter[str], list[Any]]]],
        units_per_call: int = 1,
    ) -> tuple[LoadResult, list[Any]]:
        cpu0 = cpu_seconds(self.pid)
        t0 = time.perf_counter()
        latencies, errors, responses = await run()
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_seconds(self.pid)
        cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        result = load_result(
            self.name, scenario, in_flight, repeat, latencies, errors, elapsed, cpu, units_per_call
        )
        return result, responses


def load_result(
    server: str,
    scenario: str,
    in_flight: int,
    repeat: int,
    latencies: list[float],
    errors: Counter[str],
    seconds: float,
    cpu: float | None,
    units_per_call: int = 1,
) -> LoadResult:
    """One measurement's row from its latencies (seconds), errors and server CPU seconds."""
    lat = np.sort(np.asarray(latencies)) * 1e3 if latencies else np.array([np.nan])
    calls = len(latencies)
    return LoadResult(
        server=server,
        scenario=scenario,
        in_flight=in_flight,
        repeat=repeat,
        calls=calls,
        seconds=round(seconds, 3),
        per_second=round(calls * units_per_call / seconds, 1),
        p50_ms=round(float(np.percentile(lat, 50)), 3),
        p99_ms=round(float(np.percentile(lat, 99)), 3),
        server_cpu_ms_per_call=None if cpu is None or not calls else round(cpu / calls * 1e3, 4),
        errors=dict(errors),
    )


async def _drive(
    targets: dict[str, tuple[int, int]], seconds: float, repeats: int
) -> list[LoadResult]:
    results: list[LoadResult] = []
    channels = {
        name: grpc.aio.insecure_channel(f"127.0.0.1:{port}") for name, (_, port) in targets.items()
    }
    try:
        servers = [_Target(name, targets[name][0], channels[name]) for name in targets]
        requests = decide_requests(2048, seed=1)
        for server in servers:  # connect, and warm every code path once
            await closed_loop(server.stub.Decide, requests, 4, min(seconds, 0.5))
        nbo = next(s for s in servers if s.name == "nbo")
        for in_flight in IN_FLIGHT:
            for repeat in range(repeats):
                for server in servers:

                    def decide(s: _Target = server, k: int = in_flight) -> Any:
                        return closed_loop(s.stub.Decide, requests, k, seconds)

                    result, _ = await server.measure("Decide", in_flight, repeat, decide)
                    results.append(result)
        best = max(_median(results, "nbo", "Decide", k, "per_second") or 0.0 for k in IN_FLIGHT)
        rate = max(FIXED_RATE_SHARE * best, 1.0)
        for repeat in range(repeats):
            cpu0 = cpu_seconds(nbo.pid)
            t0 = time.perf_counter()
            lat, errors = await open_loop(nbo.stub.Decide, requests, rate, seconds)
            cpu1 = cpu_seconds(nbo.pid)
            cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            results.append(
                load_result(
                    "nbo",
                    f"Decide @{FIXED_RATE_SHARE:.0%} of max ({rate:.0f}/s)",
                    0,
                    repeat,
                    lat,
                    errors,
                    time.perf_counter() - t0,
                    cpu,
                )
            )
        batches = [dense_request(BATCH_ROWS, seed) for seed in range(32)]
        for repeat in range(repeats):

            def decide_batch() -> Any:
                return closed_loop(nbo.stub.DecideBatch, batches, BATCH_IN_FLIGHT, seconds)

            result, responses = await nbo.measure(
                f"DecideBatch x{BATCH_ROWS} (dense), decisions/s",
                BATCH_IN_FLIGHT,
                repeat,
                decide_batch,
                units_per_call=BATCH_ROWS,
            )
            results.append(result)
            # Every reward call below is for a distinct decision of this run: none is a retry.
            rewards = [
                pb.RewardRequest(decision_id=d, value=100.0)
                for r in responses
                for d in r.decision_ids
            ]

            def reward(rewards: list[pb.RewardRequest] = rewards) -> Any:
                return closed_loop(nbo.stub.Reward, rewards, REWARD_IN_FLIGHT, seconds, cycle=False)

            result, _ = await nbo.measure("Reward", REWARD_IN_FLIGHT, repeat, reward)
            results.append(result)
    finally:
        for channel in channels.values():
            await channel.close()
    return results


def _median(
    results: Sequence[LoadResult], server: str, scenario: str, in_flight: int, field: str
) -> float | None:
    values = [
        getattr(r, field)
        for r in results
        if r.server == server and r.scenario == scenario and r.in_flight == in_flight
    ]
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else None


def decide_ratio(results: Sequence[LoadResult], in_flight: int) -> float | None:
    """Median over repeats of nbo's Decide rate / the faster echo server's, within each repeat."""
    by_repeat: dict[int, dict[str, float]] = {}
    for r in results:
        if r.scenario == "Decide" and r.in_flight == in_flight:
            by_repeat.setdefault(r.repeat, {})[r.server] = r.per_second
    ratios = [
        rates["nbo"] / max(rates["sync echo"], rates["aio echo"])
        for rates in by_repeat.values()
        if {"nbo", "sync echo", "aio echo"} <= rates.keys()
        and max(rates["sync echo"], rates["aio echo"]) > 0
    ]
    return statistics.median(ratios) if ratios else None


def summarize(results: Sequence[LoadResult]) -> list[dict[str, Any]]:
    """One row per (server, scenario, in flight): the medians over repeats."""
    seen: dict[tuple[str, str, int], None] = {}
    for r in results:
        seen[(r.server, r.scenario, r.in_flight)] = None
    rows = []
    for server, scenario, in_flight in seen:
        row: dict[str, Any] = {"server": server, "scenario": scenario, "in_flight": in_flight}
        for field in ("per_second", "p50_ms", "p99_ms", "server_cpu_ms_per_call"):
            row[field] = _median(results, server, scenario, in_flight, field)
        row["repeats"] = sum(
            1
            for r in results
            if (r.server, r.scenario, r.in_flight) == (server, scenario, in_flight)
        )
        row["errors"] = sum(
            sum(r.errors.values())
            for r in results
            if (r.server, r.scenario, r.in_flight) == (server, scenario, in_flight)
        )
        rows.append(row)
    return rows


def targets(results: Sequence[LoadResult]) -> list[dict[str, Any]]:
    """Issue 18's serving targets, each checked against the medians of this run."""
    rows = [
        bc.target_row(
            f"Decide vs the faster echo, {k} in flight",
            "nbo / echo calls/s",
            decide_ratio(results, k),
            0.5,
        )
        for k in (16, 64)
    ]
    rows += [
        bc.target_row(
            f"server CPU per Decide, {k} in flight",
            "nbo",
            _median(results, "nbo", "Decide", k, "server_cpu_ms_per_call"),
            0.3,
            "<= ms",
        )
        for k in (16, 64)
    ]
    open_loop_rows = [r for r in results if r.server == "nbo" and r.in_flight == 0]
    p99 = statistics.median(r.p99_ms for r in open_loop_rows) if open_loop_rows else None
    rows.append(
        bc.target_row(
            f"Decide p99, open loop at {FIXED_RATE_SHARE:.0%} of capacity", "nbo", p99, 5.0, "<= ms"
        )
    )
    batch = f"DecideBatch x{BATCH_ROWS} (dense), decisions/s"
    rows.append(
        bc.target_row(
            f"DecideBatch, {BATCH_ROWS} rows",
            "nbo decisions/s",
            _median(results, "nbo", batch, BATCH_IN_FLIGHT, "per_second"),
            100_000,
        )
    )
    rows.append(
        bc.target_row(
            f"Reward, {REWARD_IN_FLIGHT} in flight",
            "nbo rewards/s",
            _median(results, "nbo", "Reward", REWARD_IN_FLIGHT, "per_second"),
            4_000,
        )
    )
    return rows


def format_report(results: Sequence[LoadResult]) -> str:
    """The markdown tables: Decide against both echo servers, the other scenarios, targets."""

    def med(server: str, scenario: str, k: int, field: str) -> float | None:
        return _median(results, server, scenario, k, field)

    def num(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        "| Decide, in flight | nbo /s | sync echo /s | aio echo /s | nbo / faster echo "
        "| nbo CPU ms/call | sync echo CPU | aio echo CPU | nbo p50 ms | nbo p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in IN_FLIGHT:
        ratio = decide_ratio(results, k)
        lines.append(
            f"| {k} | {num(med('nbo', 'Decide', k, 'per_second'))} "
            f"| {num(med('sync echo', 'Decide', k, 'per_second'))} "
            f"| {num(med('aio echo', 'Decide', k, 'per_second'))} "
            f"| {'-' if ratio is None else f'{ratio:.2f}'} "
            f"| {num(med('nbo', 'Decide', k, 'server_cpu_ms_per_call'), 3)} "
            f"| {num(med('sync echo', 'Decide', k, 'server_cpu_ms_per_call'), 3)} "
            f"| {num(med('aio echo', 'Decide', k, 'server_cpu_ms_per_call'), 3)} "
            f"| {num(med('nbo', 'Decide', k, 'p50_ms'), 2)} "
            f"| {num(med('nbo', 'Decide', k, 'p99_ms'), 2)} |"
        )
    lines += [
        "",
        "| nbo scenario | in flight | per second | p50 ms | p99 ms | server CPU ms/call | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summarize(results):
        if row["server"] != "nbo" or row["scenario"] == "Decide":
            continue
        in_flight = "open loop" if row["in_flight"] == 0 else str(row["in_flight"])
        lines.append(
            f"| {row['scenario']} | {in_flight} | {num(row['per_second'])} "
            f"| {num(row['p50_ms'], 2)} | {num(row['p99_ms'], 2)} "
            f"| {num(row['server_cpu_ms_per_call'], 3)} | {row['errors']} |"
        )
    lines += bc.target_lines(
        targets(results),
        lambda t: ("-" if t["measured"] is None else f"{t['measured']:,.3g}") + _unit(t),
        lambda t: f"{t['bound']:,}{_unit(t)}",
    )
    return "\n".join(lines)


def _unit(check: dict[str, Any]) -> str:
    return f" {check['unit']}" if check["unit"] else ""


def start_server(
    command: list[str], timeout: float = 120.0, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """Start a server child process and wait for the port it reports (the ready line)."""
    proc = launch_server(command, env)
    return proc, reported_port(proc, command, timeout)


def launch_server(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a server child process from the repository root, its stdout piped."""
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)


def reported_port(proc: subprocess.Popen[str], command: list[str], timeout: float = 120.0) -> int:
    """The port ``proc`` reports on its ready line; RuntimeError (and the process killed) when
    it exits or ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(READY_LINE):
            return int(line.rsplit(" ", 1)[1])
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"{' '.join(command)} did not report its port (exit {proc.wait()})")


def _wait_serving(port: int, timeout: float = 120.0) -> None:
    with NboClient(f"127.0.0.1:{port}") as client:
        client.wait_until_serving(timeout)


def run_benchmark(config: Path, seconds: float = 3.0, repeats: int = 3) -> list[LoadResult]:
    """Measure both echo servers and ``nbo serve`` on ``config``, interleaved; every run."""
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as conf_dir:
        try:
            ports: dict[str, tuple[int, int]] = {}
            for name, flavour in (("sync echo", "sync"), ("aio echo", "aio")):
                proc, port = start_server([sys.executable, "-m", "benchmarks.grpc_echo", flavour])
                procs.append(proc)
                ports[name] = (proc.pid, port)
            served = bc.report_only_campaign(config, Path(conf_dir))
            serve_cmd = serve_command(served, data_dir, log_level="error")
            proc, port = start_server(serve_cmd)
            procs.append(proc)
            _wait_serving(port)
            ports["nbo"] = (proc.pid, port)
            return asyncio.run(_drive(ports, seconds, repeats))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "examples" / "renewal.toml")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every measurement")
    parser.add_argument("--quick", action="store_true", help="0.3 s, 1 repeat: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "grpc_load.json")
    args = parser.parse_args(argv)
    seconds, repeats = (0.3, 1) if args.quick else (args.seconds, args.repeats)
    results = run_benchmark(args.config, seconds, repeats)
    print(format_report(results))
    settings = {"config": str(args.config), "seconds": seconds, "repeats": repeats}
    bc.write_json(
        args.out,
        {
            "run": bc.run_info(settings),
            "summary": summarize(results),
            "targets": targets(results),
            "runs": [asdict(r) for r in results],
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
