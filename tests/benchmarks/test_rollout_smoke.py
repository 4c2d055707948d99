"""Smoke test of benchmarks.rollout: a tiny run writes the table's JSON with every scenario.

Only counts are checked, never how fast a rollback came: that is the seeded evidence test's
job (tests/simulators/test_rollout_evidence.py)."""

from __future__ import annotations

import pytest

from tests.benchmarks.smoke import run_benchmark


@pytest.mark.slow
def test_a_tiny_run_reports_every_scenario(tmp_path) -> None:
    results, printed = run_benchmark(
        "benchmarks.rollout",
        tmp_path / "rollout.json",
        "--quick",
        "--seeds",
        "1",
        "--good-seeds",
        "2",
        "--workers",
        "1",
    )
    assert set(results["scenarios"]) == {"worst_offer", "wrong_sign", "good"}
    for s in results["scenarios"].values():
        assert 0 <= s["rolled_back"] <= s["runs"] and 0 <= s["fixed_interval_stops"] <= s["runs"]
    assert results["scenarios"]["good"]["runs"] == 2
    assert 0.0 <= results["false_rollback_rate"] <= 1.0
    assert "lift monitor on the renewal simulator" in printed
