"""nbo tune: a grid over a simulator (ground truth) and over logs (off-policy), the table, the
best spec as a campaign's [policy] table, the PNG, and its errors."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.cli import main
from engine.policies import EpsilonGreedy, make_policy
from simulators.envs import make_env
from simulators.logged import generate_logs


def test_a_simulator_grid_finds_the_better_exploration(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tune"
    argv = [
        "tune",
        "--policy",
        "softmax:temperature=0.03,3",
        "--env",
        "iris",
        "--rounds",
        "3000",
        "--seeds",
        "2",
        "--workers",
        "0",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "<- best" in printed and "best: softmax:temperature=0.03" in printed
    report = json.loads((out / "tune.json").read_text())
    values = {r["point"]["temperature"]: r["value"] for r in report["points"]}
    # A temperature of 3 noise deviations is close to uniform: it costs most of the accuracy.
    assert values[0.03] > values[3] + 0.2
    assert all(r["low"] <= r["value"] <= r["high"] for r in report["points"])
    assert report["best"] == {"name": "softmax", "temperature": 0.03}
    policy = tomllib.loads((out / "best-policy.toml").read_text())["policy"]
    assert policy == {"name": "softmax", "temperature": 0.03}
    make_policy(policy, 3, 4)  # it goes straight into a campaign file
    assert (out / "tune.png").stat().st_size > 1000


def test_a_log_grid_ranks_off_policy_estimates_with_intervals(tmp_path: Path, capsys) -> None:
    env = make_env("renewal")
    k, d = len(env.action_ids), len(env.feature_names)
    logs = tmp_path / "logs.parquet"
    pq.write_table(generate_logs(env, EpsilonGreedy(k, d, epsilon=0.5, seed=0), 3000, 3), logs)
    out = tmp_path / "tune"
    argv = [
        "tune",
        "--policy",
        "egreedy:epsilon=0.05,0.5",
        "--logs",
        str(logs),
        "--workers",
        "0",
        "--quiet",
        "--no-plot",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads((out / "tune.json").read_text())
    assert report["source"]["primary"] == "dr" and len(report["points"]) == 2
    for r in report["points"]:
        assert r["status"] == "ok" and r["low"] < r["value"] < r["high"]
    assert (out / "evaluation" / "report.html").is_file()
    assert "whole off-policy evaluation" in capsys.readouterr().out


def test_bad_searches_fail_before_running(tmp_path: Path, capsys) -> None:
    big = ",".join(str(i) for i in range(1, 16))
    argv = ["tune", "--policy", f"linucb:alpha={big}:l2={big}", "--env", "iris"]
    assert main(argv) == 2
    assert "a grid of at most 200 points, got 225 points" in capsys.readouterr().err
    assert main(["tune", "--policy", "nope:x=1,2", "--env", "iris", "--workers", "0"]) == 2
    assert "nope" in capsys.readouterr().err
    started = time.monotonic()
    argv = ["tune", "--policy", "linucb:alpha=1,2", "--env", "iris", "--ray-address", "127.0.0.1:1"]
    assert main(argv) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "127.0.0.1:1" in err[0]


@pytest.mark.parametrize("text", ["linucb", "linucb:alpha=0.5"])
def test_a_single_point_is_a_valid_search(text: str) -> None:
    from simulators.tune import grid_of

    assert len(grid_of(text)) == 1
