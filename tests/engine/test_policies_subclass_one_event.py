"""A subclass that chooses or learns its own way keeps choose_one/update_one consistent with
choose/update: it takes the generic path, not its parent's compiled kernels."""

from __future__ import annotations

import numpy as np

from engine.policies import Decision, LinUCB


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
