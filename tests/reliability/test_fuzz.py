"""Fuzzing a real ``nbo serve`` process: 1,000 generated requests in CI (``make soak`` sends
10,000+ through benchmarks.faults). Each gets its exact status, rejected ones change nothing,
and the server is still serving afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from testkit.fuzzing import DELIBERATE, run_fuzz
from testkit.harness import RENEWAL, ServeProcess, customer

MAX_ROWS = 200


@pytest.mark.slow
def test_thousand_fuzz_cases_get_the_right_status_and_change_nothing_when_rejected(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    # The fuzzer sends wrong admin tokens on purpose, expecting PERMISSION_DENIED each time: a
    # failure limit it never reaches (the throttle itself is tested in test_attacks.py).
    server = ServeProcess(
        RENEWAL,
        data_dir,
        "--max-batch-rows",
        str(MAX_ROWS),
        "--max-message-bytes",
        str(1 << 20),
        "--auth-failure-limit",
        "1000000",
    )
    try:
        server.wait_serving()
        report = run_fuzz(server.target, 1000, MAX_ROWS, 1 << 20, seed=8)
        assert report.cases >= 1000
        # Every family of cases ran, and both accepted and rejected answers came back.
        assert set(report.by_kind) == {"targeted", "admin", "wild", "raw"}
        assert set(report.by_status) <= DELIBERATE
        assert report.by_status["OK"] > 100 and report.by_status["INVALID_ARGUMENT"] > 100
        assert server.proc.poll() is None, "the server died"
        with server.client() as c:
            assert c.health() == "SERVING"
            assert c.decide("after-fuzz", customer(1)).decision_id
    finally:
        assert server.stop() == 0, server.stderr()[-3000:]
    db = sqlite3.connect(data_dir / "renewal.journal.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
