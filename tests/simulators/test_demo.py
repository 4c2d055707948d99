"""nbo demo end to end on a small population: a real `nbo serve` subprocess, gRPC traffic,
SIGTERM, export, evaluate and the report."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.demo import run_demo


def _check_whole_loop(summary: dict, out: Path, text: str, customers: int) -> None:
    """What one demo run must show: the server stopped cleanly, every customer decided and
    rewarded, the control group, the ground truth, the evaluation, every file of the report."""
    assert summary["server_exit_code"] == 0
    assert summary["customers"] == customers and summary["rewards"] == customers
    assert 0.03 < summary["control_share"] < 0.2  # the campaign's 10% control group
    assert sum(summary["offers"].values()) == customers
    truth = summary["ground_truth"]
    assert 0 < truth["share_of_oracle"] <= 1.0
    ev = summary["evaluation"]
    labels = [c["candidate"] for c in ev["candidates"]]
    assert "logging policy" in labels and "uniform random" in labels
    assert ev["decision"]["reason"].startswith(("GO", "NO-GO"))
    for name in (
        "summary.json",
        "report.html",
        "live_run.png",
        "logs.parquet",
        "evaluation/evaluation.json",
        "evaluation/report.html",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["customers"] == customers
    anytime = summary["anytime_lift"]  # the rollout monitor's bound, from `nbo lift`
    assert anytime["alpha"] == pytest.approx(0.05)
    if anytime["lower"] is not None:  # finite once both groups have 30 customers
        assert anytime["lower"] <= anytime["lift"] <= anytime["upper"]
        assert "anytime-valid 95% bound" in text
    assert (out / "lift.json").is_file()
    assert "lift per decision" in text and f"wrote {out / 'report.html'}" in text
    # the journal holds exactly what was acknowledged, and the server left a snapshot
    assert any((out / "data" / "snapshots" / "renewal").iterdir())


def test_demo_rejects_bad_arguments_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "demo",
            "--customers",
            "0",
            "--out",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "nbo demo: error: --customers: expected an int >= 1, got 0"


def _story(summary: dict) -> dict:
    """What the demo tells: everything but timings and paths."""
    ev = summary["evaluation"]
    return {
        "live": {
            k: summary[k]
            for k in (
                "policy_mean_net_reward",
                "control_mean_net_reward",
                "lift_per_decision",
                "explored_share",
                "offers",
            )
        },
        "truth": summary["ground_truth"],
        "candidates": [(c["candidate"], c["value"], c["low"], c["high"]) for c in ev["candidates"]],
        "verdict": ev["decision"]["reason"],
    }


@pytest.mark.slow
def test_the_demo_runs_the_whole_loop_and_tells_one_story_with_the_cache_cold_or_warm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server and the evaluate step are subprocesses: an empty NUMBA_CACHE_DIR makes them
    # compile every kernel (cold); the second run finds what the first one cached (warm).
    # Each run is the whole loop (a real `nbo serve` subprocess, gRPC traffic, SIGTERM, export,
    # evaluate and the report), checked as such: this test is also the demo's end-to-end test.
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba-cache"))
    stories = []
    for run in ("cold", "warm"):
        stream = io.StringIO()
        summary = run_demo(
            customers=2400,
            per_day=150,
            batch=150,
            seed=5,
            out=tmp_path / run,
            workers=0,
            stream=stream,
        )
        _check_whole_loop(summary, tmp_path / run, stream.getvalue(), 2400)
        stories.append(_story(summary))
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))  # the first run did fill the cache
    assert stories[0] == stories[1]
