"""Context-free baselines: UniformRandom, FixedAction (the control), UCB1 and BetaTS.

They accept contexts of any ``n_features`` (so an engine can swap them in for a contextual
policy) and ignore their values.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from engine.errors import InvalidInputError
from engine.kernels import (
    beta_win_probabilities,
    choose_from_probabilities,
    choose_greedy,
    ucb1_scores,
)
from engine.policies.base import Decision, Policy
from engine.policies.linear import COUNT, NON_NEGATIVE, POSITIVE
from engine.types import BoolArray, FloatArray, IntArray
from engine.validation import Integral, Interval, ParameterConstraints


def _greedy(policy: Policy, scores: FloatArray, mask: BoolArray, epsilon: float = 0.0) -> Decision:
    """The decision of :func:`engine.kernels.choose_greedy` on ``scores`` with the policy's
    exploration floor and random stream."""
    actions, props, explored = policy._outputs(scores.shape[0])
    choose_greedy(
        scores, mask, epsilon, policy.min_propensity, policy.rng_state_, actions, props, explored
    )
    return Decision(actions, props, scores, explored)


class UniformRandom(Policy):
    """Every eligible action with equal probability 1/k; learns nothing.

    Examples
    --------
    >>> from engine.policies import UniformRandom
    >>> d = UniformRandom(n_actions=4, seed=0).choose([[]] * 3, [[1, 1, 0, 0]] * 3)
    >>> d.propensities.tolist()
    [0.5, 0.5, 0.5]
    """

    def __init__(self, n_actions: int, n_features: int = 0, seed: int | None = None) -> None:
        super().__init__(n_actions, n_features, seed=seed)

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {}

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        n = X.shape[0]
        decision = _greedy(self, np.zeros((n, self.n_actions)), mask, epsilon=1.0)
        decision.explored[:] = True
        return decision

    def _update(self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: object) -> None:
        return None


class FixedAction(Policy):
    """Always the same action (the business-as-usual control). Where that action is not eligible
    the choice is uniform over the eligible ones, with the matching propensity.

    Examples
    --------
    >>> from engine.policies import FixedAction
    >>> d = FixedAction(n_actions=3, action=1, seed=0).choose([[]] * 2, [[1, 1, 1], [1, 0, 1]])
    >>> d.actions.tolist(), d.propensities.tolist()
    ([1, 2], [1.0, 0.5])
    """

    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **Policy._parameter_constraints,
        "action": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int = 0,
        action: int = 0,
        min_propensity: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(n_actions, n_features, min_propensity=min_propensity, seed=seed)
        if action >= n_actions:
            raise InvalidInputError("action", f"an action index in [0, {n_actions})", action)
        self.action = int(action)

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {"action": 1, "min_propensity": 0.05}

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        n = X.shape[0]
        scores = np.zeros((n, self.n_actions))
        scores[:, self.action] = 1.0
        return _greedy(self, scores, mask)

    def _update(self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: object) -> None:
        return None

    def _remove_action(self, index: int) -> None:
        if index == self.action:
            raise InvalidInputError("index", "an action other than the fixed one", index)
        if index < self.action:
            self.action -= 1


class UCB1(Policy):
    """UCB1 (Auer et al., 2002): argmax mean_a + c sqrt(2 ln t / n_a); untried actions first.

    Examples
    --------
    >>> from engine.policies import UCB1
    >>> policy = UCB1(n_actions=2, seed=0)
    >>> policy.update([[]] * 2, [0, 1], [1.0, 0.0])
    >>> policy.choose([[]]).actions.tolist()
    [0]
    """

    _state_arrays = ("sums_", "counts_")
    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **Policy._parameter_constraints,
        "c": [NON_NEGATIVE],
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int = 0,
        c: float = 1.0,
        min_propensity: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(n_actions, n_features, min_propensity=min_propensity, seed=seed)
        self.c = float(c)
        self.sums_ = np.zeros(self.n_actions)
        self.counts_ = np.zeros(self.n_actions)

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {"c": 0.5, "min_propensity": 0.02}

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        n = X.shape[0]
        row = np.empty(self.n_actions)
        ucb1_scores(self.sums_, self.counts_, self.c, row)
        return _greedy(self, np.repeat(row[None], n, axis=0), mask)

    def _update(self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: object) -> None:
        np.add.at(self.sums_, actions, rewards)
        np.add.at(self.counts_, actions, 1.0)


class BetaTS(Policy):
    """Bernoulli Thompson sampling with Beta(prior_alpha, prior_beta) priors; rewards in [0, 1]
    (fractional rewards update both counts).

    The probability that each eligible action wins the posterior draw is estimated once per
    eligibility pattern with ``propensity_draws`` Monte-Carlo draws, and the action is then
    sampled from exactly those probabilities, so the reported propensity is the true probability
    of the sampling that took place (the approximation is only in how closely the policy follows
    ideal Thompson sampling: standard error <= 0.5 / sqrt(propensity_draws)).

    Examples
    --------
    >>> from engine.policies import BetaTS
    >>> policy = BetaTS(n_actions=2, seed=0)
    >>> policy.update([[]] * 40, [0] * 20 + [1] * 20, [1.0] * 20 + [0.0] * 20)
    >>> policy.choose([[]]).actions.tolist()
    [0]
    """

    _state_arrays = ("alpha_", "beta_")
    _parameter_constraints: ClassVar[ParameterConstraints] = {
        **Policy._parameter_constraints,
        "prior_alpha": [POSITIVE],
        "prior_beta": [POSITIVE],
        "propensity_draws": [COUNT],
    }

    def __init__(
        self,
        n_actions: int,
        n_features: int = 0,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        propensity_draws: int = 1000,
        min_propensity: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(n_actions, n_features, min_propensity=min_propensity, seed=seed)
        self.prior_alpha = float(prior_alpha)
        self.prior_beta = float(prior_beta)
        self.propensity_draws = int(propensity_draws)
        self.alpha_ = np.full(self.n_actions, self.prior_alpha)
        self.beta_ = np.full(self.n_actions, self.prior_beta)

    @classmethod
    def _unit_test_params(cls, n_actions: int, n_features: int) -> dict[str, Any]:
        return {"propensity_draws": 400}

    def _new_action_state(self, name: str) -> np.ndarray:
        return np.array([self.prior_alpha if name == "alpha_" else self.prior_beta])

    def _check_rewards(self, rewards: FloatArray) -> None:
        if rewards.size and ((rewards < 0.0) | (rewards > 1.0)).any():
            bad = int(np.argmax((rewards < 0.0) | (rewards > 1.0)))
            raise InvalidInputError(
                "rewards", "values in [0, 1] for BetaTS", f"{float(rewards[bad])!r} at row {bad}"
            )

    def _choose(self, X: FloatArray, mask: BoolArray) -> Decision:
        n = X.shape[0]
        probabilities = np.empty((n, self.n_actions))
        beta_win_probabilities(
            self.alpha_, self.beta_, mask, self.propensity_draws, self.rng_state_, probabilities
        )
        actions, props, explored = self._outputs(n)
        choose_from_probabilities(
            probabilities, mask, self.min_propensity, self.rng_state_, actions, props, explored
        )
        scores = np.where(mask, probabilities, -np.inf)
        return Decision(actions, props, scores, explored)

    def _update(self, X: FloatArray, actions: IntArray, rewards: FloatArray, props: object) -> None:
        np.add.at(self.alpha_, actions, rewards)
        np.add.at(self.beta_, actions, 1.0 - rewards)
