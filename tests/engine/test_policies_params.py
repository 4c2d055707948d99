"""Hyperparameter validation, the factory, and property-based input checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.errors import InvalidInputError, InvalidParameterError
from engine.policies import (
    POLICY_NAMES,
    FixedAction,
    LinearTS,
    LinUCB,
    SharedLinear,
    VWPolicy,
    make_policy,
)

# A bad value of every declared parameter is generated in test_policies_registry.py; these are
# the rules that span parameters and the values a generator would not think of.
BAD_PARAMS = [
    (lambda: LinUCB(3, 2, alpha=float("nan")), "'alpha' parameter of LinUCB must be a float >= 0"),
    (lambda: LinUCB(3, 2, alpha=float("inf")), "'alpha' parameter of LinUCB must be a float >= 0"),
    (lambda: LinUCB(3, 2, seed=True), "'seed' parameter of LinUCB must be an int or None"),
    (lambda: LinUCB(3.0, 2), "'n_actions' parameter of LinUCB must be an int >= 1. Got 3.0"),
    (lambda: FixedAction(3, action=5), r"action: expected an action index in \[0, 3\), got 5"),
    (lambda: SharedLinear(3, 2, np.ones((2, 1))), r"offer_features: expected shape \(3, n_offer"),
    (lambda: VWPolicy(3, 2, args=7), "'args' parameter of VWPolicy must be a VW command"),
]


@pytest.mark.parametrize("build, message", BAD_PARAMS)
def test_bad_hyperparameters_rejected_with_clear_message(build, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build()


def test_parameter_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        LinUCB(3, 2, alpha=-1)
    assert issubclass(InvalidParameterError, ValueError)


def test_factory_builds_every_name() -> None:
    for name in POLICY_NAMES:
        policy = make_policy(name, 3, 2, seed=0, offer_features=np.eye(3))
        assert policy.choose(np.ones((2, 2))).actions.shape == (2,)
    assert make_policy({"name": "linucb", "alpha": 0.3}, 3, 2).alpha == 0.3
    with pytest.raises(InvalidInputError, match="policy: expected one of"):
        make_policy("nope", 3, 2)
    with pytest.raises(InvalidInputError, match="hyperparameters accepted by LinUCB"):
        make_policy({"name": "linucb", "bogus": 1}, 3, 2)
    with pytest.raises(InvalidInputError, match="offer_features"):
        make_policy("shared", 3, 2)


def test_importance_weighting_recovers_target_under_skewed_logging() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    X = np.ones((n, 1))
    p0 = 0.9
    actions = (rng.random(n) > p0).astype(np.int64)
    props = np.where(actions == 0, p0, 1 - p0)
    rewards = np.where(actions == 0, 1.0, 2.0) + rng.normal(size=n) * 0.1
    policy = LinUCB(2, 1, alpha=0.0, importance_weighting=True)
    policy.update(X, actions, rewards, props)
    np.testing.assert_allclose(policy.predict_mean(np.ones((1, 1)))[0], [1.0, 2.0], atol=0.02)


@settings(max_examples=150, deadline=None)
@given(
    contexts=st.one_of(
        hnp.arrays(
            dtype=st.sampled_from([np.float64, np.float32]),
            shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
            elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
        ),
        hnp.arrays(
            np.int64,
            hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
            elements=st.integers(-5, 5),
        ),
    )
)
def test_choose_either_decides_or_raises_invalid_input(contexts: np.ndarray) -> None:
    policy = LinUCB(3, 4, seed=0)
    before = policy.to_bytes()
    try:
        d = policy.choose(contexts)
    except InvalidInputError:
        assert policy.to_bytes() == before
        return
    assert contexts.ndim == 2 and contexts.shape[1] == 4
    assert np.isfinite(contexts).all()
    assert ((d.propensities > 0) & (d.propensities <= 1)).all()


@settings(max_examples=100, deadline=None)
@given(
    rewards=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3),
    actions=st.lists(st.integers(-2, 4), min_size=3, max_size=3),
)
def test_update_never_lets_nan_or_inf_into_state(rewards: list, actions: list) -> None:
    policy = LinearTS(3, 2, seed=0)
    try:
        policy.update(np.ones((3, 2)), actions, rewards)
    except InvalidInputError:
        pass
    for name in policy._state_arrays:
        assert np.isfinite(getattr(policy, name)).all()
