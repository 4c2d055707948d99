"""Smoke test of benchmarks.retention: a small run writes valid JSON whose journal shrank.

Only counts and signs are checked, never speeds: the figures depend on the machine and its load.
"""

from __future__ import annotations

import pytest

from tests.benchmarks.smoke import run_benchmark

ROWS = 3_000


@pytest.mark.slow
def test_a_small_run_archives_and_shrinks_the_journal(tmp_path) -> None:
    results, printed = run_benchmark(
        "benchmarks.retention", tmp_path / "retention.json", "--rows", str(ROWS)
    )
    assert results["meta"]["settings"]["rows"] == ROWS
    report = results["report"]
    before, after = report["space"]["before"], report["space"]["after"]
    assert before["decisions"] == after["decisions"] == ROWS
    assert 0 < report["archived"] == ROWS - after["kept"]
    assert after["bytes_per_decision"] < before["bytes_per_decision"]
    assert results["archive_bytes"] > 0 and results["files"] > 0
    assert "nbo journal compact --older-than 181" in printed
