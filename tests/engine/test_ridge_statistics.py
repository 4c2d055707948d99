"""Per-offer ridge policies trained shard by shard from added sufficient statistics equal one
pass of ``update`` over every row (issue 15 item 5)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.errors import InvalidParameterError
from engine.policies import RidgeStatistics, make_policy

SPECS = [
    {"name": "linucb", "alpha": 0.5},
    {"name": "lints", "importance_weighting": True},
    {"name": "egreedy", "epsilon": 0.1, "decay": 0.01},
    {"name": "softmax", "refactor_every": 7},
]


@pytest.mark.parametrize("spec", SPECS, ids=[s["name"] for s in SPECS])
def test_merged_shard_statistics_equal_single_pass_training(spec):
    rng = np.random.default_rng(3)
    n, d, k = 6000, 6, 5
    X = rng.normal(size=(n, d))
    a = rng.integers(0, k - 1, n)  # offer k-1 is never logged: it keeps its prior
    r = X[:, 0] * (a == 1) + rng.normal(size=n)
    p = rng.uniform(0.1, 1.0, n)
    single = make_policy(spec, k, d, seed=0)
    single.update(X, a, r, p)
    sharded = make_policy(spec, k, d, seed=0)
    bounds = [0, 1, 999, 2500, 2500, 6000]  # uneven, with an empty and a one-row shard
    parts = [
        sharded.sufficient_statistics(X[lo:hi], a[lo:hi], r[lo:hi], p[lo:hi])
        for lo, hi in itertools.pairwise(bounds)
    ]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    assert isinstance(total, RidgeStatistics) and total.rows == n
    sharded.add_statistics(total)
    for name in ("A_", "b_", "theta_", "A_inv_", "n_obs_"):
        np.testing.assert_allclose(getattr(sharded, name), getattr(single, name), rtol=0, atol=1e-9)
    assert sharded.n_updates_ == single.n_updates_
    Xt = rng.normal(size=(500, d))
    np.testing.assert_array_equal(sharded.choose(Xt).actions, single.choose(Xt).actions)


def test_statistics_of_another_shape_are_refused():
    policy = make_policy({"name": "linucb"}, 3, 2)
    other = make_policy({"name": "linucb"}, 4, 2).sufficient_statistics(
        np.zeros((1, 2)), [0], [1.0]
    )
    with pytest.raises(InvalidParameterError, match="statistics of shape"):
        policy.add_statistics(other)
