"""Smoke test of benchmarks.engine_throughput: a --quick run writes valid JSON with every row.

Only shapes, counts and signs are checked, never speeds: the figures depend on the machine and
its load.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REPEATS = 2
PENDING = 2_048


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "engine.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.engine_throughput",
        "--quick",
        "--repeats",
        str(REPEATS),
    ]
    cmd += ["--pending", str(PENDING), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stdout
    return json.loads(out.read_text()), proc.stdout


def _rate(row: dict, items: int) -> None:
    assert row["items"] == items
    assert row["repeats"] == REPEATS and len(row["runs"]) == REPEATS
    assert all(r > 0 and math.isfinite(r) for r in row["runs"])
    assert 0 < row["min"] <= row["median"] <= row["max"]


@pytest.mark.slow
def test_quick_run_has_every_throughput_row(quick_run: tuple[dict, str]) -> None:
    results, _ = quick_run
    settings = results["meta"]["settings"]
    assert settings["quick"] is True and settings["repeats"] == REPEATS
    assert settings["batch"] == 256 and settings["pending"] == PENDING
    tp = results["throughput"]
    assert tp["batch"] == 256 and tp["decisions"] == settings["decisions"]
    for call in ("decide_batch", "reward_batch"):
        row = tp[call]
        for mode in ("durable", "memory"):
            _rate(row[mode], settings["decisions"])
        assert row["durable_vs_memory"] == pytest.approx(
            row["durable"]["median"] / row["memory"]["median"]
        )
        assert math.isfinite(row["journal_us_per_item"])
    _rate(tp["reward_batch"]["durable_in_decision_order"], settings["decisions"])


@pytest.mark.slow
def test_quick_run_has_latency_memory_and_targets(quick_run: tuple[dict, str]) -> None:
    results, stdout = quick_run
    lat = results["latency"]
    assert len(lat["repeats"]) == REPEATS
    for row in [*lat["repeats"], lat["pooled"]]:
        assert 0 < row["p50_us"] <= row["p99_us"]
    assert lat["pooled"]["calls"] == REPEATS * lat["calls_per_repeat"]
    assert 0 < lat["p50_us"] <= lat["p99_us"]

    mem = results["memory"]
    assert mem["pending"] == PENDING
    assert mem["journal_pending"] == PENDING  # every decision journaled, none rewarded
    assert mem["journal_mb"] > 0 and mem["journal_bytes_per_decision"] > 0
    assert mem["rss_after_mb"] > 0 and mem["seconds"] > 0

    targets = results["targets"]
    assert [t["target"] for t in targets] == [
        "decide_batch >= 100,000/s",
        "reward_batch >= 100,000/s",
        "single decide p99 <= 200 us",
    ]
    for t in targets:
        assert isinstance(t["passed"], bool) and t["measured"] > 0
    assert results["table"] in stdout
    for title in ("Engine throughput", "Single decide latency", "Pending decisions", "Targets"):
        assert title in stdout
