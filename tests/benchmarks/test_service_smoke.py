"""Smoke tests of the benchmarks that drive a real ``nbo serve``: benchmarks.grpc_load,
benchmarks.faults and benchmarks.soak, each on tiny settings, writing JSON into a missing folder.

Only shapes and counts are checked, never speeds: the figures depend on the machine and its load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, out: Path, *args: str) -> tuple[Any, str]:
    cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_grpc_load_measures_both_echo_servers_and_nbo_serve(tmp_path: Path) -> None:
    results, stdout = _run("benchmarks.grpc_load", tmp_path / "new" / "grpc.json", "--quick")
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
def test_faults_survives_a_kill_and_answers_every_fuzz_case(tmp_path: Path) -> None:
    results, stdout = _run(
        "benchmarks.faults", tmp_path / "new" / "faults.json", "--kills", "1", "--fuzz-cases", "40"
    )
    assert results["kills"]["kills_survived"] == 1
    assert results["fuzz"]["cases"] >= 40
    assert results["kills"]["journal_integrity"] == results["fuzz"]["journal_integrity"] == "ok"
    assert "Fault injection and fuzzing" in stdout


@pytest.mark.slow
def test_soak_reports_its_targets(tmp_path: Path) -> None:
    results, stdout = _run(
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
