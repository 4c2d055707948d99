"""Candidates, Li et al. replay by hand, in-process evaluation end to end, go / no-go, training."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.journal.snapshot import read_snapshot
from engine.replay.candidates import (
    Candidate,
    EvalConfig,
    Shard,
    acceptance_rng,
    expand_grid,
    learning_replay,
    make_candidates,
    parse_policy,
)
from engine.replay.evaluate import evaluate
from engine.replay.fanout import Runner
from engine.replay.report import write_report
from engine.replay.train import train_policy, write_trained_snapshot
from tests.engine.replay.synthetic import LinearEnv, make_logs

IN_PROCESS = Runner(workers=0, progress=False)


def test_policy_specs_and_grids():
    assert parse_policy("linucb") == {"name": "linucb"}
    spec = parse_policy("egreedy:epsilon=0.05,0.1:l2=2.0")
    assert spec == {"name": "egreedy", "epsilon": [0.05, 0.1], "l2": 2.0}
    assert [s["epsilon"] for s in expand_grid(spec)] == [0.05, 0.1]
    candidates = make_candidates([spec], ("static", "learning"))
    assert [c.label for c in candidates] == [
        "egreedy(epsilon=0.05, l2=2.0) static",
        "egreedy(epsilon=0.05, l2=2.0) learning",
        "egreedy(epsilon=0.1, l2=2.0) static",
        "egreedy(epsilon=0.1, l2=2.0) learning",
    ]
    with pytest.raises(InvalidInputError, match="--policy: expected KEY=VALUE"):
        parse_policy("linucb:alpha")
    with pytest.raises(InvalidInputError, match="--mode: expected one of"):
        make_candidates([spec], ("frozen",))
    with pytest.raises(InvalidInputError, match="--policy: expected distinct candidates"):
        make_candidates([spec, spec])


def test_learning_replay_matches_hand_computed_sequence():
    # One constant feature, two offers, greedy ridge (LinUCB alpha=0, l2=1): the score of an offer
    # is (sum of its learned rewards) / (its count + 1). Row 0 only offers 0 (propensity 1); the
    # others log each offer with propensity 0.5, so rejection sampling keeps row 0 with
    # probability 0.5 and every other row always.
    logged = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    reward = np.array([1.0, 5.0, 0.0, 3.0, 2.0, 4.0, -5.0, 2.0, 3.0, 6.0])
    propensity = np.array([1.0] + [0.5] * 9)
    mask = np.ones((10, 2), dtype=bool)
    mask[0, 1] = False
    seed = next(s for s in range(100) if acceptance_rng(s).random(1)[0] * 1.0 < 0.5)
    shard = Shard(0, np.ones((10, 1)), logged, propensity, reward, mask)
    candidate = Candidate("greedy learning", {"name": "linucb", "alpha": 0.0}, "learning")
    config = EvalConfig(estimators=("replay", "ips"), n_bootstrap=0, seed=seed, batch_size=1)
    (summary,) = learning_replay(candidate, [shard], None, 2, 0.5, config)
    # By hand: row 0 forced to offer 0 and kept -> score0 = 1/2. Offer 0 stays ahead while
    # positive: rows 2 (r=0 -> 1/3), 4 (r=2 -> 3/4), 6 (r=-5 -> -2/5) match; now offer 1 (score 0)
    # leads: row 7 (r=2 -> 1) and row 9 (r=6 -> 8/3) match, rows 1, 3, 5, 8 do not.
    kept = [1.0, 0.0, 2.0, -5.0, 2.0, 6.0]
    assert summary.moments["replay"].estimate() == pytest.approx(np.mean(kept))
    assert summary.moments["replay"].sums[3] == 6  # accepted events
    # IPS of the same run: matched rows weigh 1 / propensity.
    ips = (1.0 * 1 + 2 * (0.0 + 2.0 - 5.0 + 2.0 + 6.0)) / 10
    assert summary.moments["ips"].estimate() == pytest.approx(ips)


@pytest.fixture(scope="module")
def env_logs():
    env = LinearEnv.make(n_actions=4, n_features=3, seed=3)
    return env, make_logs(env, 8000, seed=4, kind="softmax")


@pytest.fixture(scope="module")
def evaluation(env_logs):
    _, logs = env_logs
    data = logs.data()
    candidates = make_candidates([parse_policy("linucb:alpha=0.5"), {"name": "fixed", "action": 2}])
    return evaluate(
        data,
        candidates,
        config=EvalConfig(n_bootstrap=100, seed=1),
        control_action=0,
        shard_rows=1500,
        runner=IN_PROCESS,
    )


def test_evaluation_ranks_and_decides(env_logs, evaluation):
    _, logs = env_logs
    assert evaluation.complete and evaluation.n_shards == 3 and evaluation.n_test == 4000
    labels = [c.label for c in evaluation.ranking()]
    assert labels[0].startswith("linucb(alpha=0.5)")
    # the logging policy's value is the on-policy mean of the test rewards, for every estimator
    test_rewards = logs.reward[4000:]
    for name in ("ips", "snips", "dr", "replay"):
        assert evaluation.logging.value(name) == pytest.approx(test_rewards.mean())
    truth_uniform = logs.expected[4000:].mean()
    uniform = next(c for c in evaluation.candidates if c.label == "uniform random")
    low, high = uniform.interval("dr", "bootstrap")
    assert low - 0.05 < truth_uniform < high + 0.05
    control = next(c for c in evaluation.candidates if c.label.startswith("control"))
    truth_control = logs.expected[4000:, 0].mean()
    assert control.value("dr") == pytest.approx(truth_control, abs=0.1)
    best = evaluation.ranking()[0]
    lift = best.lift["dr"]
    assert lift.value == pytest.approx(best.value("dr") - evaluation.logging.value("dr"))
    assert lift.bootstrap[0] > 0 and "dr" not in evaluation.logging.lift
    decision = evaluation.decision()
    assert decision["promote"] and decision["candidate"] == labels[0]
    assert decision["reason"].startswith("GO: ")


def test_report_files(evaluation, tmp_path):
    paths = write_report(evaluation, tmp_path / "report")
    for key in ("json", "html", "ranking", "estimators"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    assert paths["ranking"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert "GO: linucb(alpha=0.5)" in page and "ranking.png" in page
    import json

    data = json.loads(paths["json"].read_text())
    assert data["complete"] is True and data["decision"]["promote"] is True
    first = data["candidates"][0]
    assert set(first["estimates"]["dr"]) == {"value", "normal", "bernstein", "bootstrap"}


def test_no_go_when_nothing_beats_the_logging_policy(env_logs):
    _, logs = env_logs
    worst = int(np.argmin(logs.expected.mean(axis=0)))
    result = evaluate(
        logs.data(),
        make_candidates([{"name": "fixed", "action": worst}], ("static",)),
        config=EvalConfig(n_bootstrap=50),
        interval="normal",
        runner=IN_PROCESS,
    )
    decision = result.decision()
    assert not decision["promote"] and decision["reason"].startswith("NO-GO: no candidate")


def test_failed_candidate_makes_the_evaluation_incomplete(env_logs, tmp_path):
    _, logs = env_logs  # rewards outside [0, 1]: BetaTS refuses to train on them
    result = evaluate(
        logs.data(),
        make_candidates([parse_policy("betats"), parse_policy("linucb")], ("static",)),
        config=EvalConfig(n_bootstrap=20),
        runner=IN_PROCESS,
    )
    assert not result.complete
    failed = [c for c in result.candidates if c.status == "failed"]
    assert [c.label for c in failed] == ["betats static"]
    assert "values in [0, 1] for BetaTS" in failed[0].error
    decision = result.decision()
    assert not decision["promote"] and "incomplete" in decision["reason"]
    page = write_report(result, tmp_path)["html"].read_text()
    assert "INCOMPLETE" in page and "betats static" in page


def test_bad_candidate_is_rejected_before_any_work(env_logs):
    _, logs = env_logs
    with pytest.raises(InvalidInputError, match="alpha"):
        evaluate(logs.data(), make_candidates([{"name": "linucb", "alpha": -1.0}]))
    with pytest.raises(InvalidInputError, match="primary"):
        evaluate(logs.data(), [], primary="magic")


@pytest.mark.parametrize("target", ["ips", "dr"])
def test_train_learns_a_better_policy_and_writes_a_snapshot(env_logs, target, tmp_path):
    env, logs = env_logs
    data = logs.data()
    policy = train_policy(data, {"name": "egreedy", "epsilon": 0.0}, target=target)
    fresh = np.random.default_rng(7).normal(size=(5000, 3))
    chosen = policy.choose(fresh).actions
    value = env.expected(fresh)[np.arange(5000), chosen].mean()
    logging_value = (logs.expected * logs.logging_dist).sum(axis=1).mean()
    assert value > logging_value + 0.2
    path = tmp_path / "v1.snap"
    header = write_trained_snapshot(path, policy, data, target=target, campaign="renewal")
    stored, loaded = read_snapshot(path)
    assert stored["offer_ids"] == list(data.actions) and header["campaign"] == "renewal"
    assert np.array_equal(loaded.choose(fresh[:50]).actions, policy.choose(fresh[:50]).actions)
