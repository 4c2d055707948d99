"""Smoke test of benchmarks.engine_throughput: a --quick run writes valid JSON with every row.

Only shapes, counts and signs are checked, never speeds: the figures depend on the machine and
its load.
"""

from __future__ import annotations

import math

import pytest

from tests.benchmarks.smoke import check_rate, run_benchmark

REPEATS = 2
PENDING = 2_048


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "engine.json"
    args = ("--quick", "--repeats", str(REPEATS), "--pending", str(PENDING))
    return run_benchmark("benchmarks.engine_throughput", out, *args)


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
            check_rate(row[mode], settings["decisions"], REPEATS)
        assert row["durable_vs_memory"] == pytest.approx(
            row["durable"]["median"] / row["memory"]["median"]
        )
        assert math.isfinite(row["journal_us_per_item"])
    check_rate(tp["reward_batch"]["durable_in_decision_order"], settings["decisions"], REPEATS)


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
