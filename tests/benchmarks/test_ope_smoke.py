"""Smoke test of benchmarks.ope: a --quick run writes valid JSON, creating its folder.

Only shapes and signs are checked, never speeds: the figures depend on the machine and its load.
"""

from __future__ import annotations

import math
from pathlib import Path

from tests.benchmarks.smoke import run_benchmark


def test_quick_run_writes_every_row_into_a_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "results" / "ope.json"  # results/ does not exist yet
    results, stdout = run_benchmark("benchmarks.ope", out, "--quick", wrote_on="stderr")
    assert results["quick"] is True and results["rows"] == 20_000
    whats = [row["what"] for row in results["results"]]
    assert whats == [
        "ips estimate + moments (1 core)",
        "snips estimate + moments (1 core)",
        "dr estimate + moments (1 core)",
        "replay LinUCB K=10 d=32 (1 core)",
        "end to end, in-process",
        "end to end, in-process, normal intervals only",
    ]
    for row in results["results"]:
        assert row["events_per_s"] > 0 and math.isfinite(row["events_per_s"])
        assert f"{row['what']:<52}" in stdout
    assert all(row["complete"] for row in results["results"][4:])
