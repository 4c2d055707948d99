from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.errors import ConfigError, InvalidInputError
from simulators.engine_path import run_engine
from simulators.parallel import Task, run_tasks
from simulators.renewal import RenewalEnvironment
from simulators.supervised import SupervisedEnvironment

CAMPAIGN = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"


def test_simulate_writes_json_png_and_table(tmp_path, capsys):
    argv = "simulate --policies linucb,random,control --rounds 3000 --seeds 2 --workers 0 --quiet"
    code = main([*argv.split(), "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    for word in ("linucb", "random", "control", "best static", "oracle", "% of oracle"):
        assert word in out
    report = json.loads((tmp_path / "renewal-policy-3000x2.json").read_text())
    assert (tmp_path / "renewal-policy-3000x2.png").stat().st_size > 10_000
    assert report["seeds"] == [0, 1] and len(report["runs"]) == 6
    summary = report["summary"]
    assert set(summary["policies"]) == {"linucb", "random", "control"}
    assert summary["policies"]["control"]["value"] == pytest.approx(summary["control"])
    assert str(tmp_path / "renewal-policy-3000x2.json") in out


def test_simulate_data_set_env(tmp_path, capsys):
    argv = "simulate --env iris --policies linucb,random --rounds 1500 --seeds 1 --workers 0"
    code = main([*argv.split(), "--quiet", "--no-plot", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "iris-policy-1500x1.json").read_text())
    assert report["summary"]["policies"]["linucb"]["value"] > 0.7
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "x"], "--seeds: expected a count or a comma list"),
        (["--seeds", "1,1"], "--seeds: expected a count >= 1 or distinct"),
        (["--policies", "linucb,oracle9"], "policies: expected names from"),
        (["--rounds", "0"], "--rounds: expected an integer >= 1"),
        (["--env", "digits", "--via", "engine"], "--via: expected 'policy'"),
        (["--delay-days", "9", "3"], "delay_days"),
    ],
)
def test_simulate_rejects_bad_arguments(tmp_path, capsys, argv, message):
    code = main(["simulate", "--workers", "0", "--out", str(tmp_path), "--quiet", *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_ray_runs_match_in_process_runs(local_ray):
    tasks = [Task("renewal", p, s, 2000) for p in ("linucb", "control") for s in (0, 1)]
    local = run_tasks(tasks, workers=0, show_progress=False)
    assert local_ray.is_initialized()
    remote = run_tasks(tasks, workers=2, show_progress=False)
    assert [(r.policy, r.seed) for r in remote] == [(t.policy, t.seed) for t in tasks]
    for a, b in zip(local, remote, strict=True):
        assert a.value == b.value and a.realized == b.realized and a.oracle == b.oracle


@pytest.mark.slow
def test_engine_path_runs_the_campaign(tmp_path):
    env = RenewalEnvironment.from_campaign(CAMPAIGN)
    res = run_engine(env, "linucb", 3000, seed=0, data_dir=tmp_path / "journal")
    assert res.path == "engine" and res.n_rounds == 3000
    assert np.isfinite(res.value[-1]) and res.value[-1] <= res.oracle[-1]
    journal = next((tmp_path / "journal").glob("*.journal.sqlite"))
    with sqlite3.connect(journal) as db:
        n_decisions, n_control = db.execute(
            "SELECT COUNT(*), SUM(control) FROM decisions"
        ).fetchone()
        n_rewards = db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0]
    assert n_decisions == 3000
    assert 0.05 < n_control / n_decisions < 0.15  # the campaign's 10% control group
    assert 0 < n_rewards < 3000  # outcomes arrive late: the last ones are still pending


@pytest.mark.slow
def test_grpc_path_matches_engine_path():
    env = RenewalEnvironment.from_campaign(CAMPAIGN)
    via_engine = run_engine(env, "egreedy", 1500, seed=2, via="engine")
    via_grpc = run_engine(env, "egreedy", 1500, seed=2, via="grpc")
    assert via_grpc.path == "grpc"
    # same customers, same campaign, same seeded policy: the same decisions
    assert via_grpc.action_counts == via_engine.action_counts
    assert via_grpc.value == pytest.approx(via_engine.value)


def test_engine_path_rejects_mismatched_envs(tmp_path):
    with pytest.raises(InvalidInputError, match="RenewalEnvironment"):
        run_engine(SupervisedEnvironment("iris"), "linucb", 10)
    env = RenewalEnvironment(offers=RenewalEnvironment().offers[:3])
    with pytest.raises(ConfigError, match="expected the environment's offers"):
        run_engine(env, "linucb", 10)


@pytest.mark.slow
def test_engine_journal_of_a_simulation_exports_to_replayable_logs(tmp_path, capsys):
    from engine.replay.readers import read_logs

    journals, out = tmp_path / "journals", tmp_path / "logs.parquet"
    argv = "simulate --via engine --policies egreedy --rounds 2000 --seeds 1 --workers 0"
    argv += " --delay-days 1 5 --quiet --no-plot"
    code = main([*argv.split(), "--data-dir", str(journals), "--out", str(tmp_path / "sim")])
    assert code == 0
    assert main(["export", "--data-dir", str(journals / "egreedy-seed0"), "--out", str(out)]) == 0
    data = read_logs(out)
    assert data.actions == RenewalEnvironment().action_ids
    assert 0 < data.context.shape[0] < 2000 and data.n_pending > 0  # late outcomes still pending
    assert np.all((data.propensity > 0) & (data.propensity <= 1))


def test_data_dir_needs_the_engine(tmp_path, capsys):
    argv = "simulate --rounds 10 --seeds 1 --workers 0 --quiet"
    code = main([*argv.split(), "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--data-dir: expected --via engine or grpc" in capsys.readouterr().err
