"""Ready-made candidates: nbo snapshots (--policy snapshot:PATH) and probability files
(--policy file:PATH), checked against the log and scored on every logged row."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InvalidInputError
from engine.journal.snapshot import write_snapshot
from engine.policies import EpsilonGreedy, LinearTS, LinUCB, Softmax
from engine.replay import from_table
from engine.replay.candidates import EvalConfig
from engine.replay.evaluate import evaluate
from engine.replay.external import action_distribution, external_candidate, load_distribution
from engine.replay.fanout import Runner
from engine.replay.train import train_policy, write_trained_snapshot
from tests.engine.replay.synthetic import LinearEnv, make_logs, to_table

IN_PROCESS = Runner(workers=0, progress=False)
CONFIG = EvalConfig(estimators=("ips", "snips", "dm", "dr"), n_bootstrap=50)


@pytest.fixture(scope="module")
def data():
    env = LinearEnv.make(n_actions=3, n_features=2, seed=5)
    return from_table(to_table(make_logs(env, 1500, seed=6, kind="softmax")))


@pytest.fixture(scope="module")
def snapshot(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "trained.snap"
    policy = train_policy(data, {"name": "linucb", "alpha": 0.0, "min_propensity": 0.05})
    write_trained_snapshot(path, policy, data, target="ips")
    return path


@pytest.mark.parametrize(
    "policy",
    [
        LinUCB(3, 2, alpha=0.5, min_propensity=0.05, seed=0),
        EpsilonGreedy(3, 2, epsilon=0.2, min_propensity=0.01, seed=0),
        Softmax(3, 2, temperature=0.5, min_propensity=0.02, seed=0),
    ],
)
def test_action_distribution_is_exact_for_score_based_policies(policy):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    policy.update(X, rng.integers(0, 3, 300), X[:, 0] + rng.normal(size=300))
    mask = rng.random((300, 3)) < 0.8
    mask[:, 1] = True
    dist = action_distribution(policy, X, mask)
    assert np.allclose(dist.sum(axis=1), 1.0) and not dist[~mask].any()
    d = policy.copy().choose(X, mask)
    assert np.allclose(dist[np.arange(300), d.actions], d.propensities)


def test_action_distribution_of_thompson_sampling_is_a_mean_of_draws():
    policy = LinearTS(2, 1, scale=0.5, seed=0)
    policy.update(np.ones((20, 1)), np.zeros(20, dtype=int), np.ones(20))
    dist = action_distribution(policy, np.ones((50, 1)), np.ones((50, 2), dtype=bool))
    assert np.allclose(dist.sum(axis=1), 1.0)
    assert 0.6 < dist[:, 0].mean() <= 1.0


def test_snapshot_candidate_scores_every_row(data, snapshot):
    candidate = external_candidate(f"snapshot:{snapshot}")
    assert candidate is not None and candidate.label == f"snapshot ({snapshot})"
    result = evaluate(data, [candidate], config=CONFIG, runner=IN_PROCESS)
    assert result.n_test == data.n_rounds and result.n_train == 0
    assert result.info["every_row"] and result.info["reward_model_cross_fitted"]
    found = next(c for c in result.candidates if c.kind == "external")
    assert found.status == "ok" and np.isfinite(found.value("dr"))
    assert found.estimates["dr"].bootstrap is not None


def test_a_probability_file_of_the_same_policy_gives_the_same_numbers(data, snapshot, tmp_path):
    dist = load_distribution(external_candidate(f"snapshot:{snapshot}"), data)
    rows, cols = np.nonzero(dist)
    path = tmp_path / "probs.parquet"
    pq.write_table(
        pa.table(
            {
                "decision_id": pa.array(data.decision_id).take(pa.array(rows)),
                "action": [data.actions[c] for c in cols],
                "probability": dist[rows, cols],
            }
        ),
        path,
    )
    both = [external_candidate(f"snapshot:{snapshot}"), external_candidate(f"file:{path}")]
    result = evaluate(data, both, config=CONFIG, runner=IN_PROCESS)
    snap, file = (next(c for c in result.candidates if c.label == b.label) for b in both)
    for name in CONFIG.estimators:
        assert snap.value(name) == pytest.approx(file.value(name), rel=1e-12)
        assert snap.estimates[name].normal == pytest.approx(file.estimates[name].normal)


def test_snapshot_over_other_features_fails_naming_the_first_mismatch(data, tmp_path):
    path = tmp_path / "other.snap"
    header = {"offer_ids": list(data.actions), "feature_names": ["x0", "tenure"]}
    write_snapshot(path, header, LinUCB(3, 2, seed=0))
    with pytest.raises(InvalidInputError, match=r"expected feature 1 to be 'x1' .* got 'tenure'"):
        load_distribution(external_candidate(f"snapshot:{path}"), data)
    header = {"offer_ids": ["offer0", "offer1", "gift"], "feature_names": ["x0", "x1"]}
    write_snapshot(path, header, LinUCB(3, 2, seed=0))
    with pytest.raises(InvalidInputError, match="unknown offer 'gift'"):
        load_distribution(external_candidate(f"snapshot:{path}"), data)


def _file(tmp_path, data, edit):
    n, k = data.n_rounds, data.n_actions
    rows = {
        "decision_id": np.repeat(np.asarray(data.decision_id.to_pylist()), k).tolist(),
        "action": list(data.actions) * n,
        "probability": np.full(n * k, 1.0 / k),
    }
    edit(rows)
    path = tmp_path / "probs.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.table(rows), path)
    return external_candidate(f"file:{path}")


def _set(column, i, value):
    def edit(rows):
        values = list(rows[column])
        values[i] = value
        rows[column] = values

    return edit


def _drop_first_decision(rows):
    first = rows["decision_id"][0]
    keep = [i for i, d in enumerate(rows["decision_id"]) if d != first]
    for key in rows:
        rows[key] = [rows[key][i] for i in keep]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("probability", 4, 1.5), r"column 'probability', decision_id 'd\d+': expected a prob"),
        (_set("probability", 3, 0.5), r"column 'probability', decision_id 'd\d+': expected prob"),
        (_set("action", 2, "gift"), r"column 'action', decision_id 'd\d+': expected an offer id"),
        (_drop_first_decision, r"column 'decision_id': expected every logged decision covered"),
    ],
)
def test_probability_file_checks_name_the_decision_and_column(data, tmp_path, edit, message):
    candidate = _file(tmp_path, data, edit)
    with pytest.raises(InvalidInputError, match=message):
        load_distribution(candidate, data)


def test_probability_file_for_a_log_without_decision_ids(data, tmp_path):
    candidate = _file(tmp_path, data, lambda rows: None)
    assert load_distribution(candidate, data).shape == (data.n_rounds, data.n_actions)
    bare = dataclasses.replace(data, decision_id=None)
    with pytest.raises(InvalidInputError, match="decision_id column"):
        load_distribution(candidate, bare)
