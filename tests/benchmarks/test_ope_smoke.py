"""Smoke test of benchmarks.ope: a --quick run writes valid JSON, creating its folder.

Only shapes and signs are checked, never speeds: the figures depend on the machine and its load.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_writes_every_row_into_a_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "results" / "ope.json"  # results/ does not exist yet
    cmd = [sys.executable, "-m", "benchmarks.ope", "--quick", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stderr
    results = json.loads(out.read_text())
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
        assert f"{row['what']:<52}" in proc.stdout
    assert all(row["complete"] for row in results["results"][4:])
