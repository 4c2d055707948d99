from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.errors import InvalidInputError
from engine.policies import EpsilonGreedy, FixedAction, LinUCB, Softmax, UniformRandom
from simulators.logged import generate_logs, simulate_logs, true_policy_value
from simulators.renewal import RenewalEnvironment
from simulators.supervised import SupervisedEnvironment


@pytest.fixture(scope="module")
def env() -> RenewalEnvironment:
    return RenewalEnvironment()


def test_schema_matches_design(env, tmp_path):
    logs = generate_logs(env, UniformRandom(7, seed=0), n_rounds=300, seed=3)
    schema = logs.schema
    assert schema.field("decision_id").type == pa.string()
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("context").type == pa.list_(pa.float64(), 24)
    assert schema.field("action").type == pa.string()
    assert schema.field("propensity").type == pa.float64()
    assert schema.field("reward").type == pa.float64()
    assert schema.field("eligible").type == pa.list_(pa.string())
    assert schema.field("explored").type == pa.bool_()
    names = json.loads(schema.metadata[b"nbo.feature_names"])
    assert names == list(env.feature_names)
    assert json.loads(schema.metadata[b"nbo.offer_ids"]) == list(env.action_ids)
    # round trip through Parquet keeps types and metadata
    pq.write_table(logs, tmp_path / "logs.parquet")
    back = pq.read_table(tmp_path / "logs.parquet")
    assert back.schema.field("context").type == pa.list_(pa.float64(), 24)
    assert json.loads(back.schema.metadata[b"nbo.feature_names"]) == names
    assert len(set(logs["decision_id"].to_pylist())) == 300
    # the logged action was eligible, and the propensity of a uniform choice is 1 / #eligible
    actions = logs["action"].to_pylist()
    eligible = logs["eligible"].to_pylist()
    assert all(a in e for a, e in zip(actions, eligible, strict=True))
    props = logs["propensity"].to_numpy()
    np.testing.assert_allclose(props, [1.0 / len(e) for e in eligible])


def test_same_seed_same_logs(env):
    a = generate_logs(env, EpsilonGreedy(7, 24, epsilon=0.2, seed=1), 400, seed=5, learn=True)
    b = generate_logs(env, EpsilonGreedy(7, 24, epsilon=0.2, seed=1), 400, seed=5, learn=True)
    c = generate_logs(env, EpsilonGreedy(7, 24, epsilon=0.2, seed=1), 400, seed=6, learn=True)
    assert a.equals(b)
    assert not a.equals(c)


def test_propensities_match_empirical_frequencies():
    """A frozen softmax policy on a book of 4 customers: each customer's logged propensity of an
    action equals how often that action was chosen for them."""
    env = RenewalEnvironment(population_size=4, population_seed=2)
    policy = Softmax(7, 24, temperature=30.0, seed=0)
    warm = env.sample_rounds(2000, np.random.default_rng(0))
    d = policy.choose(warm.contexts, warm.action_mask)
    out = env.draw_outcomes(warm, d.actions, np.random.default_rng(1))
    policy.update(warm.contexts, d.actions, out.rewards)
    logs = generate_logs(env, policy, n_rounds=40_000, seed=9, batch_size=5000)
    customers = np.asarray(logs["customer_id"].to_pylist())
    actions = np.asarray(logs["action"].to_pylist())
    props = logs["propensity"].to_numpy()
    checked = 0
    for c in np.unique(customers):
        rows = customers == c
        for a in np.unique(actions[rows]):
            hit = rows & (actions == a)
            p = props[hit]
            assert np.ptp(p) < 1e-12  # same customer, same frozen policy: same propensity
            freq = hit.sum() / rows.sum()
            se = np.sqrt(p[0] * (1 - p[0]) / rows.sum())
            assert abs(freq - p[0]) < 4 * se + 1e-3, (c, a, freq, p[0])
            checked += 1
    assert checked >= 8


def test_inverse_propensity_identity_with_adaptive_logging():
    """For every action a, E[1{A=a} / p(A|x)] = 1 even when the logging policy learns as it logs,
    which holds only if every logged propensity is the exact probability used."""
    env = SupervisedEnvironment("wine")
    logs = generate_logs(
        env,
        EpsilonGreedy(3, 14, epsilon=0.3, seed=4),
        n_rounds=30_000,
        seed=1,
        learn=True,
        batch_size=100,
    )
    actions = np.asarray(logs["action"].to_pylist())
    props = logs["propensity"].to_numpy()
    for a in env.action_ids:
        ratio = np.mean((actions == a) / props)
        assert abs(ratio - 1.0) < 0.05, (a, ratio)


def test_true_value_agrees_with_rewards_and_ips(env):
    target = LinUCB(7, 24, alpha=0.0, seed=0)
    warm = env.sample_rounds(5000, np.random.default_rng(7))
    warm_actions = np.random.default_rng(8).integers(0, 7, 5000)
    warm_actions = np.where(warm.action_mask[np.arange(5000), warm_actions], warm_actions, 0)
    target.update(warm.contexts, warm_actions, warm.expected_rewards[np.arange(5000), warm_actions])
    before = target.to_bytes()
    n = 40_000
    truth = true_policy_value(env, target, n_rounds=n, seed=11)
    assert target.to_bytes() == before  # a copy chose, the target is unchanged
    # the target's realized mean reward on the same customers agrees with its true value
    own = simulate_logs(env, LinUCB.from_bytes(before), n_rounds=n, seed=11)
    realized = own.table["reward"].to_numpy()
    assert abs(realized.mean() - truth) < 4 * realized.std() / np.sqrt(n)
    # IPS on uniform logs of the same customers recovers the true value
    logs = generate_logs(env, UniformRandom(7, seed=3), n_rounds=n, seed=11)
    ids = list(env.action_ids)
    logged = np.asarray([ids.index(a) for a in logs["action"].to_pylist()])
    X = np.stack(logs["context"].to_numpy(zero_copy_only=False))
    mask = np.array([[a in e for a in ids] for e in logs["eligible"].to_pylist()])
    chosen = LinUCB.from_bytes(before).choose(X, mask).actions
    weights = (chosen == logged) / logs["propensity"].to_numpy()
    ips = weights * logs["reward"].to_numpy()
    assert abs(ips.mean() - truth) < 4 * ips.std() / np.sqrt(n)


def test_control_value_is_exact(env):
    control = FixedAction(7, action=0)
    logged = simulate_logs(env, control, n_rounds=1000, seed=4)
    assert true_policy_value(env, control, 1000, seed=4) == pytest.approx(
        logged.value_of_actions(np.zeros(1000, dtype=np.int64))
    )


@pytest.mark.parametrize(
    ("policy", "match"),
    [
        (UniformRandom(5, seed=0), "n_actions=7"),
        (LinUCB(7, 3, seed=0), "n_features=24"),
        ("linucb", "Policy"),
    ],
)
def test_rejects_mismatched_policy(env, policy, match):
    with pytest.raises(InvalidInputError, match=match):
        generate_logs(env, policy, 10)


def test_rejects_bad_round_counts(env):
    with pytest.raises(InvalidInputError, match="n_rounds: expected an integer >= 1"):
        generate_logs(env, UniformRandom(7), 0)
    with pytest.raises(InvalidInputError, match="batch_size"):
        generate_logs(env, UniformRandom(7), 10, batch_size=-1)


def test_replay_reader_reads_generated_logs(env, tmp_path):
    from engine.replay.readers import read_logs

    logs = generate_logs(env, EpsilonGreedy(7, 24, epsilon=0.5, seed=0), n_rounds=500, seed=2)
    pq.write_table(logs, tmp_path / "logs.parquet")
    data = read_logs(tmp_path / "logs.parquet")
    assert data.actions == env.action_ids
    assert tuple(data.feature_names) == env.feature_names
    assert data.context.shape == (500, 24)
    ids = list(env.action_ids)
    assert [ids[a] for a in data.action] == logs["action"].to_pylist()
    np.testing.assert_allclose(data.propensity, logs["propensity"].to_numpy())
