"""A subclass that chooses or learns its own way keeps choose_one/update_one consistent with
choose/update: it takes the generic path, not its parent's compiled kernels."""

from __future__ import annotations

import numpy as np
import pytest

from engine.policies import Decision, LinUCB, SharedLinear
from engine.policies.shared import KRON_RATIO


class _FirstEligible(LinUCB):  # a leading underscore: not registered as a policy name
    def _choose(self, X: np.ndarray, mask: np.ndarray) -> Decision:
        n = X.shape[0]
        actions = np.argmax(mask, axis=1).astype(np.int64)
        scores = np.where(mask, 0.0, -np.inf)
        return Decision(actions, np.ones(n), scores, np.zeros(n, np.bool_))


class _Doubled(LinUCB):
    def _update(self, X, actions, rewards, props) -> None:  # type: ignore[no-untyped-def]
        super()._update(X, actions, 2.0 * rewards, props)


def test_an_overridden_choose_is_what_choose_one_runs() -> None:
    policy = _FirstEligible(3, 2, seed=0)
    assert not policy._one_choice and policy._one_compiled
    assert policy.choose_one(np.array([1.0, 0.5]), np.array([False, True, True])) == (1, 1.0)


def test_an_overridden_update_is_what_update_one_runs() -> None:
    one, batch = _Doubled(2, 2, seed=0), _Doubled(2, 2, seed=0)
    assert not one._one_compiled and not one._one_choice
    x = np.array([1.0, 0.5])
    one.update_one(x, 1, 3.0)
    batch.update(x[None], np.array([1]), np.array([3.0]))
    np.testing.assert_array_equal(one.b_, batch.b_)
    assert one.b_[1, 0] == 6.0  # the doubled reward


class _SharedFirstEligible(SharedLinear):
    def _choose(self, X: np.ndarray, mask: np.ndarray) -> Decision:
        n = X.shape[0]
        actions = np.argmax(mask, axis=1).astype(np.int64)
        scores = np.where(mask, 0.0, -np.inf)
        return Decision(actions, np.ones(n), scores, np.zeros(n, np.bool_))


def test_an_overridden_shared_choose_is_what_choose_one_runs() -> None:
    offers = np.array([[0.0], [0.1], [0.2]])
    policy = _SharedFirstEligible(3, 2, offer_features=offers, seed=0)
    assert not policy._one_choice and SharedLinear._one_choice
    assert policy.choose_one(np.array([1.0, 0.5]), np.array([False, True, True])) == (1, 1.0)


@pytest.mark.parametrize("n_actions", [4, 24])  # formed joint rows; the Kronecker branch
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_shared_choose_one_is_a_one_row_choose_on_both_branches(
    n_actions: int, alpha: float
) -> None:
    rng = np.random.default_rng(n_actions)
    offers = rng.normal(size=(n_actions, 3))
    assert (n_actions >= KRON_RATIO * 4) is (n_actions == 24)
    one, by_row = (
        SharedLinear(n_actions, 5, offer_features=offers, alpha=alpha, seed=2) for _ in "ab"
    )
    X = rng.normal(size=(200, 5))
    X[:, 3] = 0.0
    for t in range(len(X)):
        mask = rng.random(n_actions) < 0.6
        mask[t % n_actions] = True
        action, propensity = one.choose_one(X[t], mask)
        d = by_row.choose(X[t : t + 1], mask[None])
        assert (action, propensity) == (int(d.actions[0]), float(d.propensities[0]))
        reward = float(X[t, 0] * offers[action, 0])
        one.update_one(X[t], action, reward, propensity)
        by_row.update(X[t : t + 1], d.actions, np.array([reward]), d.propensities)
    np.testing.assert_array_equal(one.rng_state_, by_row.rng_state_)
    assert one.to_bytes() == by_row.to_bytes()
