"""RandomFourierUCB: its feature kernel against numpy, the warm-up standardization (exact rebuild,
serialization, offers removed), its map's independence from the random stream, a campaign
through the Engine and the service; then seeded learning tests (slow, never skipped) of the
targets of issue #19 that the defaults meet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.learning_nonlinear import progressive_accuracy
from engine.errors import CorruptModelError
from engine.kernels.features import fourier_features
from engine.policies import Policy, RandomFourierUCB, _blob, make_policy
from simulators.interactions import InteractionEnvironment
from simulators.runner import POLICY_DEFAULTS, run_policy
from simulators.supervised import SupervisedEnvironment

K, D = 3, 4
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(2.0, 3.0, n), rng.integers(0, 2, (n, D - 2))])
    actions = rng.integers(0, K, n)
    rewards = np.where(actions == (X[:, 2] != X[:, 3]), 1.0, 0.0) + 0.1 * rng.normal(size=n)
    return X, actions, rewards, np.full(n, 1 / K)


def _small(**params: object) -> RandomFourierUCB:
    return RandomFourierUCB(
        K, D, **{"n_components": 16, "standardize_rows": 50, "seed": 0, **params}
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 3, 40])  # the loop branch and the BLAS branch
def test_fourier_features_match_numpy(n: int) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 5))
    X[:, 2] = 0.0  # a zero input (skipped by the loop branch)
    weights, offsets = rng.normal(size=(5, 7)), rng.uniform(0, 6.3, 7)
    Z = np.empty((n, 12))
    fourier_features(X, weights, offsets, 0.5, Z)
    np.testing.assert_allclose(Z, np.hstack([X, 0.5 * np.cos(X @ weights + offsets)]), atol=1e-12)


def test_each_random_feature_reads_interaction_order_inputs() -> None:
    policy = RandomFourierUCB(2, 10, n_components=50, interaction_order=3)
    assert ((policy.map_weights_ != 0).sum(axis=0) == 3).all()
    assert (RandomFourierUCB(2, 2, interaction_order=3).map_weights_ != 0).sum(axis=0).max() == 2


def test_features_standardize_after_the_warm_up() -> None:
    policy = _small()
    X, a, r, p = _data(80)
    policy.update(X[:30], a[:30], r[:30], p[:30])
    assert not policy.map_frozen_ and policy.n_warmup_ == 30
    policy.update(X[30:], a[30:], r[30:], p[30:])
    assert policy.map_frozen_
    rows = X[:50]
    std = rows.std(axis=0)
    np.testing.assert_allclose(policy.means_, rows.mean(axis=0))
    np.testing.assert_allclose(policy.scales_, np.where(std > 1e-12, std, 1.0))
    Z = policy.features(X[:5])
    standardized = (X[:5] - policy.means_) / policy.scales_
    cosines = policy.feature_scale * np.cos(
        standardized @ policy.map_weights_ + policy.map_offsets_
    )
    np.testing.assert_allclose(Z, np.hstack([X[:5], cosines]), atol=1e-9)


def test_models_are_the_exact_ridge_regression_of_every_row_on_the_final_map() -> None:
    X, a, r, p = _data(200)
    one_batch, row_by_row = _small(), _small()
    one_batch.update(X, a, r, p)
    for i in range(200):
        row_by_row.update(X[i : i + 1], a[i : i + 1], r[i : i + 1], p[i : i + 1])
    Z = one_batch.features(X)
    for k in range(K):
        rows = a == k
        A = np.eye(Z.shape[1]) + Z[rows].T @ Z[rows]
        theta = np.linalg.solve(A, Z[rows].T @ r[rows])
        np.testing.assert_allclose(one_batch.theta_[k], theta, atol=1e-8)
        np.testing.assert_allclose(row_by_row.theta_[k], theta, atol=1e-8)


def test_round_trip_during_the_warm_up_then_learning_alike() -> None:
    X, a, r, p = _data(120)
    policy = _small()
    policy.update(X[:20], a[:20], r[:20], p[:20])
    same = Policy.from_bytes(policy.to_bytes())
    assert isinstance(same, RandomFourierUCB) and same.n_warmup_ == 20
    assert same.to_bytes() == policy.to_bytes()
    for model in (policy, same):
        model.update(X[20:], a[20:], r[20:], p[20:])
    assert same.map_frozen_ and same.to_bytes() == policy.to_bytes()
    np.testing.assert_array_equal(policy.choose(X).actions, same.choose(X).actions)


def test_removing_an_offer_during_the_warm_up_forgets_its_rows() -> None:
    X, a, r, p = _data(150)
    policy = _small()
    policy.update(X[:40], a[:40], r[:40], p[:40])
    policy.remove_action(1)
    kept = a != 1
    later = np.flatnonzero(kept)[np.flatnonzero(kept) >= 40]
    Xk, ak, rk = X[later], a[later], r[later]
    ak = ak - (ak > 1)
    policy.update(Xk, ak, rk)
    fresh = RandomFourierUCB(K - 1, D, n_components=16, standardize_rows=50, seed=0)
    first = np.flatnonzero(kept[:40])
    fresh.update(X[first], a[first] - (a[first] > 1), r[first], p[first])
    fresh.update(Xk, ak, rk)
    np.testing.assert_allclose(policy.theta_, fresh.theta_, atol=1e-9)
    np.testing.assert_allclose(policy.means_, fresh.means_)


def test_the_map_comes_from_feature_seed_not_from_the_random_stream() -> None:
    a, b = _small(seed=1), _small(seed=2)
    np.testing.assert_array_equal(a.map_weights_, b.map_weights_)
    a.reseed(5)
    np.testing.assert_array_equal(a.map_weights_, b.map_weights_)
    assert not np.array_equal(_small(feature_seed=1).map_weights_, a.map_weights_)
    drawn = _small(feature_seed=None)
    assert Policy.from_bytes(drawn.to_bytes()).map_weights_.tolist() == drawn.map_weights_.tolist()


def test_ridge_statistics_are_not_offered() -> None:
    # engine.replay sums per-shard statistics only for policies that have add_statistics.
    policy = _small()
    assert not hasattr(policy, "add_statistics")
    assert not hasattr(policy, "sufficient_statistics")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("scales_", np.zeros(D), "'scales_': expected deviations > 0"),
        ("map_weights_", np.zeros((D, 3)), r"'map_weights_': expected float64 of shape \(4, 16\)"),
        ("warmup_actions_", np.array([0, 9]), r"'warmup_actions_': expected indices in \[0, 3\)"),
        ("map_offsets_", np.full(16, np.nan), "'map_offsets_' holds non-finite values"),
    ],
)
def test_a_blob_with_a_bad_map_is_refused(name: str, value: np.ndarray, message: str) -> None:
    policy = _small()
    X, a, r, p = _data(2)
    policy.update(X, a, r, p)
    cls, params, scalars, arrays = _blob.load(policy.to_bytes())
    arrays[name] = value
    with pytest.raises(CorruptModelError, match=message):
        Policy.from_bytes(_blob.dump(cls, params, scalars, arrays))


def _rff_campaign(folder: Path) -> Path:
    """examples/renewal.toml with ``[policy] name = "rff"``."""
    text = (EXAMPLES / "renewal.toml").read_text()
    start, end = text.index("[policy]"), text.index("[learning]")
    policy = '[policy]\nname = "rff"\nn_components = 32\nmin_propensity = 0.02\nseed = 7\n\n'
    campaign = folder / "renewal.toml"
    campaign.write_text(text[:start] + policy + text[end:])
    return campaign


def test_a_campaign_serves_rff_through_the_engine(tmp_path: Path) -> None:
    from engine.core import Engine

    campaign = _rff_campaign(tmp_path)
    engine = Engine.from_config(campaign, data_dir=tmp_path / "data")
    try:
        customer = {"tenure_months": 14, "plan": "premium", "monthly_price": 70.0}
        decisions = [engine.decide(f"c{i}", customer) for i in range(150)]
        for d in decisions:
            engine.reward(d.decision_id, 10.0 if d.offer_id == "none" else 0.0)
        assert engine.model_info()["policy"] == "RandomFourierUCB"
        version = engine.snapshot()
        assert version
    finally:
        engine.close()
    reopened = Engine.from_config(campaign, data_dir=tmp_path / "data")
    try:
        assert reopened.model_info()["policy"] == "RandomFourierUCB"
        assert 0 < reopened.decide("c-after", customer).propensity <= 1
    finally:
        reopened.close()


def test_a_campaign_serves_rff_through_the_service(tmp_path: Path) -> None:
    from engine.client import NboClient
    from engine.serving.server import create_server
    from tests.engine.serving.support import TOKEN, customer, serve_config

    config = serve_config(tmp_path / "data", campaigns=(_rff_campaign(tmp_path),))
    server, _port = create_server(config)
    server.start()
    try:
        with NboClient(f"127.0.0.1:{server.port}", admin_token=TOKEN) as client:
            decisions = [client.decide(f"s{i}", customer(i)) for i in range(20)]
            assert all(0 < d.propensity <= 1 for d in decisions)
            for d in decisions:
                client.reward(d.decision_id, 1.0)
            assert json.loads(client.model_info().policy)["class"] == "RandomFourierUCB"
    finally:
        server.stop(grace=1.0)


# ---------------------------------------------------------------------- learning (targets)
def _share(spec: dict | str, seed: int = 0, n_rounds: int = 100_000) -> float:
    result = run_policy(InteractionEnvironment(), spec, n_rounds, seed=seed)
    return result.value[-1] / result.oracle[-1]


@pytest.mark.slow
def test_interactions_defaults_reach_90_percent_of_the_oracle_where_linucb_stays_below_85() -> None:
    assert _share({"name": "rff"}) >= 0.90
    for linucb in (POLICY_DEFAULTS["linucb"], {"name": "linucb", "alpha": 0.1}):  # default, tuned
        assert _share(dict(linucb)) < 0.85


@pytest.mark.slow
def test_digits_three_passes_progressive_accuracy_at_least_090() -> None:
    env = SupervisedEnvironment("digits")
    policy = make_policy("rff", len(env.action_ids), len(env.feature_names), seed=0)
    assert progressive_accuracy(policy, env, passes=3, seed=0) >= 0.90
