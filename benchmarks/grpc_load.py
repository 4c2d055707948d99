"""gRPC load benchmark: QPS, latency percentiles and server CPU per RPC.

Runs ``nbo serve`` (and a bare grpcio echo server, the ceiling to compare with, measured in the
same run) as child processes and drives them from this process with the asyncio gRPC client on
loopback::

    python -m benchmarks.grpc_load [--seconds 5] [--out benchmarks/results/grpc_load.json]

It measures unary Decide at 1, 16 and 64 calls in flight, Decide at a fixed rate of 70% of the
best measured QPS (latency counted from the scheduled send time, so a slow server cannot hide
queueing), DecideBatch (dense form) decisions/s, and Reward QPS; it prints a table and writes
JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent import futures
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.common import REPO_ROOT, RESULTS_DIR
from engine.client import NboClient
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from testkit.traffic import decide_requests, dense_request


@dataclass(frozen=True)
class LoadResult:
    """One scenario: calls completed, rate, latency percentiles and server CPU per call."""

    scenario: str
    in_flight: int
    calls: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_call: float | None
    errors: dict[str, int]


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _closed_loop(
    call: Any, requests: list[Any], in_flight: int, seconds: float
) -> tuple[list[float], Counter[str], list[Any]]:
    latencies: list[float] = []
    responses: list[Any] = []
    errors: Counter[str] = Counter()
    stop = time.perf_counter() + seconds
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while time.perf_counter() < stop:
            request = requests[next(counter) % len(requests)]
            start = time.perf_counter()
            try:
                responses.append(await call(request))
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return latencies, errors, responses


async def _open_loop(
    call: Any, requests: list[Any], rate: float, seconds: float
) -> tuple[list[float], Counter[str]]:
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


def _result(
    scenario: str,
    in_flight: int,
    latencies: list[float],
    errors: Counter[str],
    seconds: float,
    cpu: float | None,
    units_per_call: int = 1,
) -> LoadResult:
    lat = np.sort(np.asarray(latencies)) * 1e3 if latencies else np.array([np.nan])
    calls = len(latencies)
    return LoadResult(
        scenario=scenario,
        in_flight=in_flight,
        calls=calls,
        seconds=round(seconds, 3),
        per_second=round(calls * units_per_call / seconds, 1),
        p50_ms=round(float(np.percentile(lat, 50)), 3),
        p99_ms=round(float(np.percentile(lat, 99)), 3),
        server_cpu_ms_per_call=None if cpu is None or not calls else round(cpu / calls * 1e3, 4),
        errors=dict(errors),
    )


async def _drive(
    target: str, server_pid: int, seconds: float, echo: bool, fixed_rate_share: float
) -> list[LoadResult]:
    results: list[LoadResult] = []
    prefix = "echo " if echo else ""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.OfferServiceStub(channel)
        requests = decide_requests(2048, seed=1)
        await stub.Decide(requests[0])  # connect
        decision_ids: list[str] = []
        best = 0.0
        for in_flight in (1, 16, 64):
            cpu0 = _cpu_seconds(server_pid)
            t0 = time.perf_counter()
            lat, errors, responses = await _closed_loop(stub.Decide, requests, in_flight, seconds)
            elapsed = time.perf_counter() - t0
            cpu1 = _cpu_seconds(server_pid)
            cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            results.append(_result(prefix + "Decide", in_flight, lat, errors, elapsed, cpu))
            best = max(best, results[-1].per_second)
            decision_ids.extend(r.decision_id for r in responses)
        rate = fixed_rate_share * best
        lat, errors = await _open_loop(stub.Decide, requests, rate, seconds)
        results.append(
            _result(f"{prefix}Decide @{fixed_rate_share:.0%} of max ({rate:.0f}/s)", 0, lat, errors,
                    seconds, None)
        )  # fmt: skip
        if echo:
            return results
        batches = [dense_request(64, seed) for seed in range(32)]
        cpu0 = _cpu_seconds(server_pid)
        t0 = time.perf_counter()
        lat, errors, _ = await _closed_loop(stub.DecideBatch, batches, 4, seconds)
        elapsed = time.perf_counter() - t0
        cpu1 = _cpu_seconds(server_pid)
        cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        results.append(_result("DecideBatch x64 (dense), decisions/s", 4, lat, errors, elapsed,
                               cpu, units_per_call=64))  # fmt: skip
        rewards = [pb.RewardRequest(decision_id=d, value=100.0) for d in decision_ids]
        cpu0 = _cpu_seconds(server_pid)
        t0 = time.perf_counter()
        lat, errors, _ = await _closed_loop(stub.Reward, rewards, 16, min(seconds, 2.0))
        elapsed = time.perf_counter() - t0
        cpu1 = _cpu_seconds(server_pid)
        cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        # Calls past the number of distinct decisions are idempotent retries (applied=False).
        results.append(_result("Reward", 16, lat, errors, elapsed, cpu))
    return results


class _EchoServicer(pb_grpc.OfferServiceServicer):
    """The ceiling: a servicer that answers Decide without deciding anything."""

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        return pb.DecideResponse(decision_id="echo", offer_id="none", propensity=1.0)


def run_echo_server(threads: int = 8) -> None:
    """Serve the echo servicer on a free loopback port and print the port (child process)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    pb_grpc.add_OfferServiceServicer_to_server(_EchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"nbo serve: listening on port {port}", flush=True)
    server.wait_for_termination()


def _start(command: list[str], timeout: float = 120.0) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("nbo serve: listening on port "):
            return proc, int(line.rsplit(" ", 1)[1])
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"{' '.join(command)} did not report its port (exit {proc.wait()})")


def _wait_serving(port: int, timeout: float = 120.0) -> None:
    with NboClient(f"127.0.0.1:{port}") as client:
        client.wait_until_serving(timeout)


def run_benchmark(
    config: Path, seconds: float = 5.0, fixed_rate_share: float = 0.7
) -> list[LoadResult]:
    """Measure the echo ceiling and ``nbo serve`` on ``config``; returns every scenario."""
    results: list[LoadResult] = []
    echo, echo_port = _start([sys.executable, "-m", "benchmarks.grpc_load", "--echo-server"])
    try:
        results += asyncio.run(
            _drive(f"127.0.0.1:{echo_port}", echo.pid, seconds, True, fixed_rate_share)
        )
    finally:
        echo.terminate()
        echo.wait()
    with tempfile.TemporaryDirectory() as data_dir:
        serve_cmd = [sys.executable, "-m", "engine.cli", "serve", "--config", str(config),
                     "--data-dir", data_dir, "--host", "127.0.0.1", "--port", "0",
                     "--log-level", "warning"]  # fmt: skip
        server, port = _start(serve_cmd)
        try:
            _wait_serving(port)
            results += asyncio.run(
                _drive(f"127.0.0.1:{port}", server.pid, seconds, False, fixed_rate_share)
            )
        finally:
            server.terminate()
            server.wait(timeout=60)
    return results


def format_table(results: list[LoadResult]) -> str:
    """A markdown table of the results."""
    lines = [
        "| scenario | in flight | calls | per second | p50 ms | p99 ms | server CPU ms/call "
        "| errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cpu = "" if r.server_cpu_ms_per_call is None else f"{r.server_cpu_ms_per_call:.3f}"
        in_flight = "open loop" if r.in_flight == 0 else str(r.in_flight)
        errors = ", ".join(f"{code} {n}" for code, n in sorted(r.errors.items())) or "0"
        lines.append(
            f"| {r.scenario} | {in_flight} | {r.calls} | {r.per_second:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {cpu} | {errors} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "examples" / "renewal.toml")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "grpc_load.json")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        run_echo_server()
        return 0
    results = run_benchmark(args.config, args.seconds)
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
