"""How fast a model and the learner's leadership travel between the processes of
``nbo serve --workers 2`` (:mod:`benchmarks.replicas`): the servers it starts, model propagation
from the learner to the workers, learner failover to a standby.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.grpc_load import launch_server, reported_port
from engine.client import NboClient
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from simulators.processes import serve_command
from testkit.traffic import decide_requests
from testkit.workers import by_pid, channels, scrape, total

CONNECTIONS = 64  # one connection reaches one worker: many, to spread the load
TOKEN = "replicas-benchmark-token"


@dataclass(frozen=True)
class Served:
    """A server under load: its process (tree), ports, and the database process if any."""

    name: str
    proc: subprocess.Popen[str]
    port: int
    learner_port: int | None = None
    database_pid: int | None = None
    metrics_port: int | None = None


def serve_env() -> dict[str, str]:
    """The environment of every server: the admin token (never on a command line)."""
    return dict(os.environ, NBO_ADMIN_TOKEN=TOKEN)


def launch_nbo(config: Path, data_dir: str, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``nbo serve`` on a free port (see :func:`ready`)."""
    command = serve_command(config, data_dir, *extra, log_level="error")
    return launch_server(command, serve_env()), command


def ready(
    name: str, launched: tuple[subprocess.Popen[str], list[str]], database: int | None = None
) -> Served:
    """Wait for a launched ``nbo serve`` (and the learner's port line of ``--workers``)."""
    proc, command = launched
    port = reported_port(proc, command)
    learner = metrics = None
    if "--workers" in command:
        assert proc.stdout is not None
        learner = int(proc.stdout.readline().rsplit(" ", 1)[1])
    if "--metrics-port" in command:
        metrics = int(command[command.index("--metrics-port") + 1])
    return Served(name, proc, port, learner, database, metrics)


def propagation(served: Served, samples: int) -> list[dict[str, float]]:
    """Reward a few decisions, then Decide until the learner's next version answers: seconds
    from its ``created`` to the first answer with it, and to every connection's."""
    assert served.learner_port is not None
    chans = channels(f"127.0.0.1:{served.port}", CONNECTIONS)
    stubs = [pb_grpc.OfferServiceStub(c) for c in chans]
    requests = decide_requests(256, seed=7)
    out: list[dict[str, float]] = []
    try:
        with NboClient(f"127.0.0.1:{served.learner_port}", admin_token=TOKEN) as learner:
            for sample in range(samples):
                live = learner.model_info().model_version
                for i in range(8):
                    stub = stubs[(sample * 8 + i) % len(stubs)]
                    d = stub.Decide(requests[(sample * 8 + i) % len(requests)], timeout=10)
                    stub.Reward(pb.RewardRequest(decision_id=d.decision_id, value=50.0), timeout=10)
                first, version = _first_new(stubs, requests, live)
                every = _all_have(stubs, requests, version)
                created = learner.get_model(version).created
                out.append({"first": first - created, "all_connections": every - created})
    finally:
        for channel in chans:
            channel.close()
    return out


def _number(version: str) -> int:
    return int(version.lstrip("v"))


def _first_new(stubs: list[Any], requests: list[Any], live: str) -> tuple[float, str]:
    deadline = time.monotonic() + 30
    for i in itertools.count():
        answer = stubs[i % len(stubs)].Decide(requests[i % len(requests)], timeout=10)
        if _number(answer.model_version) > _number(live):
            return time.time(), answer.model_version
        if time.monotonic() > deadline:
            raise RuntimeError(f"no version after {live} reached the workers in 30 s")
        time.sleep(0.002)
    raise AssertionError("unreachable")


def _all_have(stubs: list[Any], requests: list[Any], version: str) -> float:
    waiting = set(range(len(stubs)))
    deadline = time.monotonic() + 30
    while waiting:
        for i in sorted(waiting):
            answer = stubs[i].Decide(requests[i], timeout=10)
            if _number(answer.model_version) >= _number(version):
                waiting.discard(i)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} connections still without {version} after 30 s")
        time.sleep(0.002)
    return time.time()


def failover(
    config: Path, served: Served, data_dir: str, journal: str | None, kills: int
) -> list[float]:
    """Seconds from kill -9 of the leading learner (the ``--workers 2`` server's learner child)
    to the leadership of a standby ``--role learn`` process started beside it (its own
    ``nbo_learner_leading`` gauge reads 1), ``kills`` times. Between two kills the standby is
    stopped gracefully, the supervisor's restarted learner leads again and a new standby starts.
    """
    supervisor = served.metrics_port
    assert supervisor is not None
    extra = ("--journal", journal) if journal else ()

    def leader_child() -> int | None:
        leads = by_pid(scrape(supervisor), "nbo_learner_leading")
        return next((pid for pid, value in leads.items() if value == 1.0), None)

    def wait(what: str, check: Any) -> Any:
        deadline = time.perf_counter() + 60
        while not (found := check()):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{what} within 60 s")
            time.sleep(0.005)
        return found

    seconds: list[float] = []
    standby: subprocess.Popen[str] | None = None
    try:
        for _ in range(kills):
            leader = wait("no learner child led", leader_child)
            metrics = free_port()
            standby, command = launch_nbo(
                config, data_dir, "--role", "learn", "--metrics-port", str(metrics), *extra
            )
            reported_port(standby, command)
            killed = time.perf_counter()
            os.kill(leader, signal.SIGKILL)
            wait("the standby did not lead", lambda port=metrics: _leads(port))
            seconds.append(time.perf_counter() - killed)
            stop([standby])  # the lock frees: the supervisor's restarted learner leads again
            standby = None
    finally:
        if standby is not None:
            stop([standby])
    return seconds


def _leads(metrics_port: int) -> bool:
    return total(scrape(metrics_port), "nbo_learner_leading") == 1.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        proc.wait(timeout=60)
