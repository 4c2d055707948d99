"""Smoke tests of the benchmarks that drive a real ``nbo serve``: benchmarks.grpc_load,
benchmarks.replicas, benchmarks.faults and benchmarks.soak, each on tiny settings, writing JSON
into a missing folder.

Only shapes and counts are checked, never speeds: the figures depend on the machine and its load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.smoke import run_benchmark


def _run_into_new_folder(module: str, tmp_path: Path, *args: str) -> tuple[Any, str]:
    """:func:`run_benchmark` of ``module`` writing ``<module name>.json`` into a folder that does
    not exist yet (the benchmark creates it)."""
    return run_benchmark(module, tmp_path / "new" / f"{module.rsplit('.', 1)[1]}.json", *args)


@pytest.mark.slow
def test_grpc_load_measures_both_echo_servers_and_nbo_serve(tmp_path: Path) -> None:
    results, stdout = _run_into_new_folder("benchmarks.grpc_load", tmp_path, "--quick")
    runs = results["runs"]
    decide = [(r["server"], r["in_flight"]) for r in runs if r["scenario"] == "Decide"]
    # Interleaved: every in-flight level measures the three servers one after the other.
    assert decide == [(s, k) for k in (1, 16, 64) for s in ("sync echo", "aio echo", "nbo")]
    scenarios = {r["scenario"] for r in runs if r["server"] == "nbo"}
    assert {"DecideBatch x64 (dense), decisions/s", "Reward"} <= scenarios
    for row in runs:
        assert row["calls"] > 0 and row["per_second"] > 0
    assert len(results["targets"]) == 7
    assert "| Decide, in flight | nbo /s | sync echo /s | aio echo /s |" in stdout


@pytest.mark.slow
def test_replicas_measures_workers_against_one_process_echo_propagation_and_failover(
    tmp_path: Path,
) -> None:
    results, stdout = _run_into_new_folder("benchmarks.replicas", tmp_path, "--quick")
    servers = [
        "sync echo",
        "aio echo",
        "1 process, SQLite",
        "2 workers, SQLite",
        "1 process, PostgreSQL",
        "2 workers, PostgreSQL",
    ]
    decide = [
        (r["load"]["server"], r["load"]["in_flight"])
        for r in results["runs"]
        if r["load"]["scenario"] == "Decide"
    ]
    assert decide == [(s, k) for k in (1, 16, 64) for s in servers]  # interleaved
    rewards = [r["load"]["server"] for r in results["runs"] if r["load"]["scenario"] == "Reward"]
    assert rewards == servers[2:]
    for row in results["runs"]:
        assert row["load"]["calls"] > 0 and row["load"]["errors"] == {}, row
        assert row["client_cpu_ms_per_call"] > 0
        assert (row["database_cpu_ms_per_call"] is not None) == (
            "PostgreSQL" in row["load"]["server"]
        )
    for journal in ("SQLite", "PostgreSQL"):
        delays = results["propagation_seconds"][f"2 workers, {journal}"]
        assert len(delays) == 2
        assert all(0 < d["first"] <= d["all_connections"] < 30 for d in delays)
        (failover,) = results["failover_seconds"][f"2 workers, {journal}"]
        assert 0 < failover < 60
    assert [t["measured"] > 0 for t in results["targets"]] == [True, True]
    assert "| Decide | calls/s at 1 / 16 / 64 in flight |" in stdout


@pytest.mark.slow
def test_faults_survives_a_kill_and_answers_every_fuzz_case(tmp_path: Path) -> None:
    results, stdout = _run_into_new_folder(
        "benchmarks.faults", tmp_path, "--kills", "1", "--fuzz-cases", "40", "--replica-cycles", "1"
    )
    assert results["kills"]["kills_survived"] == 1
    assert results["replicas"]["cycles_survived"] == results["replicas"]["leader_kills"] == 1
    assert results["fuzz"]["cases"] >= 40
    assert results["kills"]["journal_integrity"] == results["fuzz"]["journal_integrity"] == "ok"
    assert "Fault injection and fuzzing" in stdout


@pytest.mark.slow
def test_soak_reports_its_targets(tmp_path: Path) -> None:
    results, stdout = _run_into_new_folder(
        "benchmarks.soak",
        tmp_path,
        "--minutes",
        "0.1",
        "--capacity-seconds",
        "1.5",
        "--warmup",
        "1",
        "--in-flight",
        "4",
    )
    assert results["summary"]["calls"] > 0
    assert {t["target"] for t in results["targets"]} >= {"errors", "p99 latency"}
    assert "Soak" in stdout
