"""``nbo serve --workers 2`` as real processes on loopback, on SQLite and on PostgreSQL.

The supervisor's ``/metrics`` is the observable that tells the workers apart: each live
process reports its own decision count with its pid (``nbo_process_decisions``), the counters
add up over all of them, and the learner is the process whose ``nbo_learner_leading`` is 1.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from engine.cliargs import parse_command
from engine.client import NboClient
from engine.errors import ConfigError
from engine.journal.backends import open_journal
from engine.serving.cli import check_workers, register
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from testkit.harness import RENEWAL, TOKEN, ServeProcess, run_serve
from testkit.traffic import decide_requests
from testkit.workers import by_pid, channels, decide_pids, scrape, total, wait_for
from tests.engine.serving.support import free_port

pytestmark = pytest.mark.slow


class Workers:
    """A running ``nbo serve --workers 2`` and what the tests made through it."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.metrics_port = free_port()
        self.server = ServeProcess(
            RENEWAL,
            data_dir,
            "--workers",
            "2",
            "--metrics-port",
            str(self.metrics_port),
            "--log-level",
            "info",
            *extra,
        )
        self.stubs = [pb_grpc.OfferServiceStub(c) for c in channels(self.server.target, 16)]
        self.decisions: list[str] = []  # every decision the server acknowledged
        self.rewarded: set[str] = set()

    def decide(self, n: int, seed: int) -> list[str]:
        """``n`` decisions spread round-robin over 16 connections."""
        ids = [
            self.stubs[i % len(self.stubs)].Decide(request, timeout=10).decision_id
            for i, request in enumerate(decide_requests(n, seed))
        ]
        self.decisions += ids
        return ids

    def worker_counts(self) -> dict[int, float]:
        """Decisions per live worker (both of them)."""
        samples = wait_for(self.metrics_port, lambda s: len(decide_pids(s)) == 2)
        counts = by_pid(samples, "nbo_process_decisions")
        return {p: counts[p] for p in decide_pids(samples)}

    def logs(self, msg: str) -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in self.server.stderr().splitlines() if x.startswith("{")]
        return [x for x in lines if x.get("msg") == msg and "child" not in x]


def check_spread_and_sum(workers: Workers, seed: int = 1) -> dict[int, float]:
    """Calls from 16 connections land on both workers, and ``/metrics`` adds them up (its
    counters over every process that ever ran; its per-process gauges over the live ones)."""
    before = workers.worker_counts()
    workers.decide(64, seed=seed)

    def added_up(samples: list[Any]) -> bool:
        counts = by_pid(samples, "nbo_process_decisions")
        pids = decide_pids(samples)
        return pids == set(before) and sum(counts[p] - before[p] for p in pids) == 64

    samples = wait_for(workers.metrics_port, added_up)
    counts = by_pid(samples, "nbo_process_decisions")
    per_worker = {p: counts[p] - before[p] for p in before}
    assert all(n > 0 for n in per_worker.values()), per_worker
    assert total(samples, "nbo_decisions_total") == len(workers.decisions)
    supervisor = workers.server.proc.pid
    for pid in per_worker:  # children of this supervisor, not some other process
        assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(supervisor)
    return per_worker


def channel_workers(workers: Workers) -> dict[int, int]:
    """``worker pid -> index of a stub connected to it``, for both workers: one decision
    through each stub in turn, seen in the per-process counts."""
    found: dict[int, int] = {}
    before = workers.worker_counts()
    for i in range(len(workers.stubs)):
        decision = workers.stubs[i].Decide(decide_requests(1, seed=100 + i)[0], timeout=10)
        workers.decisions.append(decision.decision_id)

        def moved(samples: list[Any], before: dict[int, float] = before) -> bool:
            counts = by_pid(samples, "nbo_process_decisions")
            return sum(counts.get(p, 0) - before[p] for p in before) == 1

        counts = by_pid(wait_for(workers.metrics_port, moved), "nbo_process_decisions")
        (pid,) = (p for p in before if counts[p] != before[p])
        found.setdefault(pid, i)
        before = {p: counts[p] for p in before}
        if len(found) == 2:
            return found
    raise AssertionError(f"every connection went to the same worker: {found}")


def check_reward_through_another_worker(workers: Workers) -> None:
    first, second = channel_workers(workers).values()
    decision = workers.stubs[first].Decide(decide_requests(1, seed=200)[0], timeout=10)
    workers.decisions.append(decision.decision_id)
    reward = pb.RewardRequest(decision_id=decision.decision_id, value=120.0)
    assert workers.stubs[second].Reward(reward, timeout=10).applied  # the other process
    assert not workers.stubs[first].Reward(reward, timeout=10).applied  # a retry: once only
    workers.rewarded.add(decision.decision_id)


def check_drain(workers: Workers, journal_url: str | None = None) -> None:
    """SIGTERM under load: exit 0, every acknowledged decision and reward in the journal, no
    child left, the metrics directory removed."""
    acked: list[str] = []
    applied: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    requests = decide_requests(500, seed=300)

    def load(k: int) -> None:
        stub = workers.stubs[k]
        for i in range(100_000):
            request = requests[(i * 8 + k) % len(requests)]
            try:
                decision = stub.Decide(request, timeout=10)
                with lock:
                    acked.append(decision.decision_id)
                reward = pb.RewardRequest(decision_id=decision.decision_id, value=float(i))
                if i % 2 and stub.Reward(reward, timeout=10).applied:
                    with lock:
                        applied.append(decision.decision_id)
            except grpc.RpcError as exc:
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), exc
                return
            if stop.is_set():
                return

    pids = set(by_pid(scrape(workers.metrics_port), "nbo_learner_leading"))
    threads = [threading.Thread(target=load, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert workers.server.stop() == 0, workers.server.stderr()[-3000:]
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 20 and applied
    journal = open_journal(
        journal_url, campaign="renewal", data_dir=workers.data_dir, readonly=True
    )
    try:
        every = workers.decisions + acked
        assert len(journal.lookup(every)) == len(every), "acknowledged decisions lost"
        assert journal.counts()["rewards"] == len(applied) + len(workers.rewarded)
    finally:
        journal.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    (serving,) = workers.logs("serving")
    assert not Path(serving["metrics_dir"]).exists()
    assert workers.logs("stopped")[-1]["clean"] is True


def check_admin_goes_to_the_learner(workers: Workers) -> None:
    assert workers.server.learner_port is not None
    with NboClient(f"127.0.0.1:{workers.server.learner_port}", admin_token=TOKEN) as learner:
        live = learner.list_models()[0].version
    with NboClient(workers.server.target, admin_token=TOKEN) as worker:
        with pytest.raises(grpc.RpcError) as refused:
            worker.rollback(live)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module")
def sqlite_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    workers = Workers(tmp_path_factory.mktemp("workers") / "data")
    yield workers
    if workers.server.proc.poll() is None:
        workers.server.stop()


def test_calls_spread_over_both_workers_and_metrics_add_them_up(sqlite_workers: Workers) -> None:
    check_spread_and_sum(sqlite_workers)
    check_admin_goes_to_the_learner(sqlite_workers)
    url = f"http://127.0.0.1:{sqlite_workers.metrics_port}/healthz"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200


def test_a_decision_made_through_one_worker_is_rewarded_through_the_other(
    sqlite_workers: Workers,
) -> None:
    check_reward_through_another_worker(sqlite_workers)


def test_a_killed_worker_is_restarted_and_serving_continues(sqlite_workers: Workers) -> None:
    before = sqlite_workers.worker_counts()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced(samples: list[Any]) -> bool:
        pids = decide_pids(samples)
        restarted = total(samples, "nbo_worker_restarts_total", role="decide")
        return restarted == 1 and len(pids) == 2 and victim not in pids

    wait_for(sqlite_workers.metrics_port, replaced, timeout=60)
    # New connections reach both workers again; counters still hold the killed one's decisions.
    per_worker = check_spread_and_sum(sqlite_workers, seed=2)
    assert victim not in per_worker
    (exited,) = sqlite_workers.logs("child exited; restarting")
    assert (exited["pid"], exited["signal"], exited["restart_in"]) == (victim, "SIGKILL", 0.0)


def test_a_second_supervisor_on_a_led_journal_refuses_to_start(
    sqlite_workers: Workers,
) -> None:
    proc = run_serve(RENEWAL, sqlite_workers.data_dir, "--workers", "2", log_level="warning")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("nbo serve: error: campaign renewal: expected this server's learner")


def test_decide_workers_without_a_learner_follow_the_running_one(sqlite_workers: Workers) -> None:
    replicas = ServeProcess(RENEWAL, sqlite_workers.data_dir, "--workers", "2", "--role", "decide")
    try:
        assert replicas.learner_port is None
        stub = pb_grpc.OfferServiceStub(channels(replicas.target, 1)[0])
        decision = stub.Decide(decide_requests(1, seed=400)[0], timeout=10)
        sqlite_workers.decisions.append(decision.decision_id)
        reward = pb.RewardRequest(decision_id=decision.decision_id, value=7.0)
        assert sqlite_workers.stubs[0].Reward(reward, timeout=10).applied  # the other server
        sqlite_workers.rewarded.add(decision.decision_id)
    finally:
        assert replicas.stop() == 0, replicas.stderr()[-2000:]


def test_sigterm_drains_every_child_and_loses_nothing(sqlite_workers: Workers) -> None:
    check_drain(sqlite_workers)


def test_workers_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    workers = Workers(tmp_path / "data", "--journal", postgres_url)
    try:
        check_spread_and_sum(workers)
        check_reward_through_another_worker(workers)
        check_drain(workers, postgres_url)
    finally:
        if workers.server.proc.poll() is None:
            workers.server.stop()


def test_a_child_that_cannot_start_stops_the_supervisor_with_its_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(RENEWAL.read_text().replace("[campaign]", "[campaign]\nsurprise = 1", 1))
    started = time.monotonic()
    proc = run_serve(bad, tmp_path / "data", "--workers", "2", log_level="info")
    assert proc.returncode == 2 and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("nbo serve: error: the learn process failed to start: "), last
    assert "surprise" in last
    assert proc.stderr.count('"msg":"child started"') == 1  # no restart loop
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "0"], "workers: expected an integer >= 1, got 0"),
        (["--learner-port", "5"], "learner_port: expected --workers > 1 with --role all"),
        (["--workers", "2", "--role", "decide", "--learner-port", "5"], "learner_port: expected"),
        (["--workers", "2", "--role", "learn"], "role: expected all or decide with --workers > 1"),
    ],
)
def test_worker_flags_that_cannot_work_together_are_refused(flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_workers(parse_command(register, ["serve", *flags]))
