"""Smoke test of benchmarks.core: a --quick run through `nbo bench` writes a complete JSON file.

Only shapes and signs are checked, never speeds: the figures depend on the machine and its load.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.benchmarks.smoke import REPO_ROOT, check_rate, run_benchmark

BATCH = {"nbo LinUCB", "nbo LinearTS", "MABWiser LinUCB", "MABWiser LinTS", "numpy LinUCB"}
ONLINE = {
    "nbo LinUCB",
    "nbo LinearTS",
    "nbo EpsilonGreedy",
    "nbo LinUCB, choose/update on (1, d) arrays",
    "VW pyvw (vowpalwabbit, text)",
    "VW next (TextFormatParser)",
    "VW next (nbo VWPolicy)",
    "MABWiser LinUCB",
    "MABWiser LinTS",
    "MABWiser LinGreedy",
}
LATENCY = {"nbo LinUCB", "nbo LinearTS", "nbo VWPolicy", "MABWiser LinUCB"}
ONE_EVENT = {
    f"nbo {name} choose_one"
    for name in (
        "LinUCB",
        "LinearTS",
        "EpsilonGreedy",
        "Softmax",
        "SharedLinear",
        "RandomFourierUCB",
        "LandingLift",
    )
}
REPEATS = 2


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "core.json"
    return run_benchmark("engine.cli", out, "bench", "--quick", "--repeats", str(REPEATS))


@pytest.mark.slow
def test_quick_run_writes_every_batch_and_online_row(quick_run: tuple[dict, str]) -> None:
    results, stdout = quick_run
    settings = results["meta"]["settings"]
    assert settings["quick"] is True and settings["repeats"] == REPEATS
    small, large = results["batch"]
    assert (small["config"], large["config"]) == ("K=10,d=32", "K=100,d=64")
    for section, rows in ((small, settings["batch_small"]), (large, settings["batch_large"])):
        assert set(section["results"]) == BATCH
        for row in section["results"].values():
            check_rate(row, rows, REPEATS)
        assert all(v > 0 for v in section["results"]["nbo LinUCB"]["vs"].values())
    # The same fitted models give the same LinUCB choices in nbo, MABWiser and plain numpy.
    assert min(small["linucb_agreement"].values()) >= 0.99

    online = results["online"]
    assert set(online["results"]) == ONLINE
    assert online["mabwiser_events"] == settings["mabwiser_online"] < online["events"]
    for name, row in online["results"].items():
        events = online["mabwiser_events"] if name.startswith("MABWiser") else online["events"]
        check_rate(row, events, REPEATS)
        reward = row["reward"]
        assert reward["rounds"] == events
        assert reward["mean_regret"] >= 0 and math.isfinite(reward["mean_reward"])
    for name in ("nbo LinUCB", "nbo LinearTS", "nbo EpsilonGreedy"):
        assert all(v > 0 for v in online["results"][name]["vs"].values())
    assert "MABWiser refits per event: capped at its first" in stdout


@pytest.mark.slow
def test_quick_run_writes_latency_compile_and_targets(quick_run: tuple[dict, str]) -> None:
    results, stdout = quick_run
    latency = results["latency"]["results"]
    assert set(latency) == LATENCY | ONE_EVENT
    for row in latency.values():
        assert row["calls"] > 0 and 0 < row["p50_us"] <= row["p99_us"]
    first = results["compile"]
    assert first["cold_measured"] is False
    assert set(first["results"]) == LATENCY
    for row in first["results"].values():
        assert row["cold"] is None
        assert all(v > 0 for v in row["warm"].values())
    targets = results["targets"]
    assert len(targets) == 27  # a single-row target for every contextual policy (LandingLift too)
    for t in targets:  # a quick run measures every figure but judges none
        assert t["passed"] is None and math.isfinite(t["measured"])
        if not t["target"].startswith("mean reward"):
            assert t["measured"] > 0
    assert results["table"] in stdout
    for title in (
        "Batch choose",
        "Online choose+update",
        "Reward on the online stream",
        "single-row choose latency",
        "First calls",
        "Targets: not judged. A --quick run is too small",
    ):
        assert title in stdout
    assert "FAIL" not in stdout and "issue" not in stdout


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_nbo_bench_comes_from_the_benchmarks_entry_point() -> None:
    proc = _python("-m", "engine.cli", "bench", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "python -m benchmarks.core" in proc.stdout and "--blas-threads" in proc.stdout


def test_bench_repeats_below_one_is_a_usage_error() -> None:
    proc = _python("-m", "benchmarks.core", "--repeats", "0")
    assert proc.returncode == 2
    assert "argument --repeats: expected an int >= 1, got 0" in proc.stderr
