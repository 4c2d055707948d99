"""Smoke tests of the benchmarks that drive a real ``nbo serve``: benchmarks.grpc_load,
benchmarks.faults and benchmarks.soak, each on tiny settings, writing JSON into a missing folder.

Only shapes and counts are checked, never speeds: the figures depend on the machine and its load.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.smoke import run_benchmark


@pytest.mark.slow
def test_grpc_load_measures_the_echo_ceiling_and_nbo_serve(tmp_path: Path) -> None:
    results, stdout = run_benchmark(
        "benchmarks.grpc_load", tmp_path / "new" / "grpc.json", "--seconds", "0.3"
    )
    scenarios = [r["scenario"] for r in results]
    assert scenarios[:3] == ["echo Decide"] * 3 and scenarios[4:7] == ["Decide"] * 3
    assert scenarios[-2:] == ["DecideBatch x64 (dense), decisions/s", "Reward"]
    assert [r["in_flight"] for r in results[4:7]] == [1, 16, 64]
    for row in results:
        assert row["calls"] > 0 and row["per_second"] > 0
    assert "| scenario | in flight |" in stdout


@pytest.mark.slow
def test_faults_survives_a_kill_and_answers_every_fuzz_case(tmp_path: Path) -> None:
    results, stdout = run_benchmark(
        "benchmarks.faults", tmp_path / "new" / "faults.json", "--kills", "1", "--fuzz-cases", "40"
    )
    assert results["kills"]["kills_survived"] == 1
    assert results["fuzz"]["cases"] >= 40
    assert results["kills"]["journal_integrity"] == results["fuzz"]["journal_integrity"] == "ok"
    assert "Fault injection and fuzzing" in stdout


@pytest.mark.slow
def test_soak_reports_its_targets(tmp_path: Path) -> None:
    results, stdout = run_benchmark(
        "benchmarks.soak",
        tmp_path / "new" / "soak.json",
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
