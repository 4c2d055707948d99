"""Hyperparameter validation, the factory, and property-based input checks."""

from __future__ import annotations

import inspect

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
    with pytest.raises(InvalidInputError, match="offer_features"):
        make_policy("shared", 3, 2)


LINUCB_KEYS = "alpha, importance_weighting, l2, min_propensity, noise, refactor_every, seed"
BAD_SPECS = [
    (
        "nope",
        "^policy: expected one of linucb, lints, egreedy, softmax, shared, random, fixed, "
        "control, betats, ucb1, vw, rff, landing, got 'nope'$",
    ),
    ("linucbb", r"^policy: expected one of linucb, .*, got 'linucbb' \(did you mean 'linucb'\?\)$"),
    (
        {"name": "linucb", "min_propensty": 0.1},
        rf"^min_propensty: expected a hyperparameter of LinUCB \(one of {LINUCB_KEYS}\), "
        r"got 'min_propensty' \(did you mean 'min_propensity'\?\)$",
    ),
    (
        {"name": "linucb", "bogus": 1},
        rf"^bogus: expected a hyperparameter of LinUCB \(one of {LINUCB_KEYS}\), got 'bogus'$",
    ),
    (  # the dimensions come from the campaign, not from the spec
        {"name": "ucb1", "n_actions": 5},
        r"^n_actions: expected a hyperparameter of UCB1 \(one of c, min_propensity, seed\), "
        r"got 'n_actions'$",
    ),
    (
        {"name": "linucb", "alpha": -1},
        r"^The 'alpha' parameter of LinUCB must be a float >= 0\. Got -1 instead\.$",
    ),
]


@pytest.mark.parametrize("spec, message", BAD_SPECS)
def test_factory_names_the_bad_key_and_the_valid_ones(spec, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make_policy(spec, 3, 2)


@pytest.mark.parametrize("cls", sorted(set(POLICY_NAMES.values()), key=lambda c: c.__name__))
def test_hyperparameters_are_the_constructor_keywords(cls: type) -> None:
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "n_actions", "n_features"}
    assert cls.hyperparameters() == tuple(sorted(accepted))


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
