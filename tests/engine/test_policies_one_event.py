"""The single-event API (choose_one / update_one) of every policy: the same choices, propensities
and learned state as choose / update on one-row arrays, and bad input refused with the field
named and nothing changed (the compiled path of the ridge policies included)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInputError, NoEligibleActionError
from tests.engine.policy_cases import N_ACTIONS, N_FEATURES, NAMES, trained

pytestmark = pytest.mark.parametrize("name", NAMES)


def _events(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 0] = 1.0
    rewards = rng.random((n, N_ACTIONS))
    masks = rng.random((n, N_ACTIONS)) < 0.7
    masks[np.arange(n), rng.integers(0, N_ACTIONS, n)] = True
    return X, rewards, masks


def test_one_event_at_a_time_equals_one_row_batches(name: str) -> None:
    by_row, one = trained(name), trained(name)
    X, R, M = _events(120)
    for t in range(len(X)):
        mask = M[t] if t % 3 == 0 else None  # with and without a mask
        d = by_row.choose(X[t : t + 1], None if mask is None else mask[None])
        action, propensity = one.choose_one(X[t], mask)
        assert isinstance(action, int) and isinstance(propensity, float)
        assert action == int(d.actions[0])
        assert propensity == pytest.approx(float(d.propensities[0]), rel=1e-12, abs=1e-15)
        reward = float(R[t, action])
        by_row.update(X[t : t + 1], d.actions, np.array([reward]), d.propensities)
        one.update_one(X[t], action, reward, propensity)
    assert one.n_updates_ == by_row.n_updates_
    a, b = by_row.to_bytes(), one.to_bytes()
    if a != b:  # the compiled path may round differently in the last bits
        left, right = type(by_row).from_bytes(a), type(one).from_bytes(b)
        Z = np.random.default_rng(3).normal(size=(50, N_FEATURES))
        np.testing.assert_allclose(
            left.choose(Z).scores, right.choose(Z).scores, rtol=1e-9, atol=1e-12
        )
    np.testing.assert_array_equal(one.rng_state_, by_row.rng_state_)


def test_read_only_inputs_give_the_same_answers(name: str) -> None:
    writable, read_only = trained(name), trained(name)
    x = np.array([1.0, 0.3, -0.2])
    frozen = np.frombuffer(x.tobytes())  # read-only: the generic path, no new compile
    mask = np.array([True, False, True, True])
    frozen_mask = np.frombuffer(mask.tobytes(), dtype=np.bool_)
    assert not frozen.flags.writeable and not frozen_mask.flags.writeable
    assert read_only.choose_one(frozen, frozen_mask) == writable.choose_one(x, mask)
    read_only.update_one(frozen, 2, 0.5, 0.5)
    writable.update_one(x, 2, 0.5, 0.5)
    assert read_only.to_bytes() == writable.to_bytes()


def test_python_numbers_and_lists_are_accepted(name: str) -> None:
    policy = trained(name)
    action, propensity = policy.choose_one([1.0, 0.2, -0.3], [True] * N_ACTIONS)
    policy.update_one([1.0, 0.2, -0.3], np.int64(action), 1, propensity)
    policy.update_one((1.0, 0.2, -0.3), action, np.float32(0.5))
    assert 0 < propensity <= 1


BAD_CHOOSE = [
    ("context", [1.0, np.nan, 0.0], None, InvalidInputError),
    ("context", [1.0, np.inf, 0.0], None, InvalidInputError),
    ("context", [1.0, 0.0], None, InvalidInputError),
    ("context", np.ones((1, N_FEATURES)), None, InvalidInputError),
    ("context", "abc", None, InvalidInputError),
    ("action_mask", [1.0, 0.0, 0.0], [True, False], InvalidInputError),
    ("action_mask", [1.0, 0.0, 0.0], [False] * N_ACTIONS, NoEligibleActionError),
]


@pytest.mark.parametrize("case", BAD_CHOOSE, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CHOOSE)])
def test_bad_choose_one_input_names_the_field_and_changes_nothing(name: str, case: tuple) -> None:
    field, context, mask, error = case
    policy = trained(name)
    before, rng = policy.to_bytes(), policy.rng_state_.copy()
    with pytest.raises(error) as err:
        policy.choose_one(np.array(context) if isinstance(context, list) else context, mask)
    assert field in str(err.value)
    assert policy.to_bytes() == before
    np.testing.assert_array_equal(policy.rng_state_, rng)
    policy.choose_one(np.array([1.0, 0.0, 0.0]))  # and it keeps working


GOOD = (np.array([1.0, 0.3, -0.2]), 1, 0.5, 0.25)
BAD_UPDATE = [
    ("context", 0, np.array([1.0, np.nan, 0.0])),
    ("context", 0, np.array([1.0, 0.0])),
    ("action", 1, N_ACTIONS),
    ("action", 1, -1),
    ("action", 1, True),
    ("action", 1, 1.0),
    ("action", 1, 2**64),
    ("action", 1, -(2**63) - 1),
    ("action", 1, np.uint64(2**64 - 1)),
    ("reward", 2, np.nan),
    ("reward", 2, np.inf),
    ("reward", 2, "1"),
    ("reward", 2, False),
    ("propensity", 3, 0.0),
    ("propensity", 3, 1.5),
    ("propensity", 3, np.nan),
]


@pytest.mark.parametrize("case", BAD_UPDATE, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_UPDATE)])
def test_bad_update_one_input_names_the_field_and_changes_nothing(name: str, case: tuple) -> None:
    field, position, value = case
    policy = trained(name)
    before = policy.to_bytes()
    args = list(GOOD)
    args[position] = value
    with pytest.raises(InvalidInputError) as err:
        policy.update_one(*args)
    assert field in str(err.value)
    assert policy.to_bytes() == before
    policy.update_one(*GOOD)  # and it keeps learning
    assert policy.to_bytes() != before or name in {"UniformRandom", "FixedAction"}


def test_the_ridge_policies_take_the_compiled_path(name: str) -> None:
    policy = trained(name)
    compiled = name in {"LinUCB", "LinearTS", "EpsilonGreedy", "Softmax"}
    assert getattr(type(policy), "_one_compiled", False) is compiled
    # RandomFourierUCB maps its contexts first: it inherits LinUCB's kernel but not this path.
    # SharedLinear chooses in one compiled call (shared_choose_one) and learns the generic way.
    chooses_compiled = compiled or name == "SharedLinear"
    assert getattr(type(policy), "_one_choice", False) is chooses_compiled
    if compiled:
        action, propensity = policy._choose_one(np.array([1.0, 0.1, 0.2]), policy._all_eligible)
        assert (action >= 0) is compiled and (0 < propensity <= 1) is compiled
