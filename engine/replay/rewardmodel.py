"""The reward model of the direct and doubly robust estimators: one ridge regression per offer.

It is fit on the train split only, so the test rows it predicts on never taught it (the DR
estimate stays unbiased however wrong the model is). Plain numpy: one (d+1)x(d+1) solve per offer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from engine.errors import InvalidParameterError
from engine.types import FloatArray, IntArray


@dataclass(frozen=True, eq=False)
class RewardModel:
    """Per-offer ridge regression of reward on context (with intercept).

    Attributes
    ----------
    coef : array of shape (n_actions, n_features + 1)
        Weights per offer; the last column is the intercept.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 2)); a = rng.integers(0, 2, 500)
    >>> r = np.where(a == 0, X[:, 0], 1.0 + X[:, 1])
    >>> model = RewardModel.fit(X, a, r, n_actions=2, l2=1e-6)
    >>> np.round(model.predict(np.array([[1.0, 2.0]])), 3).tolist()
    [[1.0, 3.0]]
    """

    coef: FloatArray

    @classmethod
    def fit(
        cls,
        contexts: FloatArray,
        actions: IntArray,
        rewards: FloatArray,
        n_actions: int,
        l2: float = 1.0,
    ) -> RewardModel:
        """Fit on logged rows; an offer never logged predicts the overall mean reward.

        Parameters
        ----------
        contexts : array of shape (n_rounds, n_features)
        actions : array of shape (n_rounds,), int
        rewards : array of shape (n_rounds,)
        n_actions : int
        l2 : float
            Ridge penalty (the intercept is not penalized).
        """
        if not l2 > 0:
            raise InvalidParameterError("RewardModel", "l2", "a float > 0", l2)
        n, d = contexts.shape
        penalty = np.eye(d + 1) * l2
        penalty[d, d] = 1e-9  # the intercept is free; this keeps the solve defined
        overall = float(rewards.mean()) if n else 0.0
        coef = np.zeros((n_actions, d + 1))
        coef[:, d] = overall
        # One stable sort groups rows by offer, so each offer's Gram matrix reads a contiguous
        # block (single-threaded BLAS: faster than threads on a busy machine, and reproducible).
        order = np.argsort(actions, kind="stable")
        bounds = np.searchsorted(actions[order], np.arange(n_actions + 1))
        with threadpool_limits(limits=1):
            for a in range(n_actions):
                lo, hi = int(bounds[a]), int(bounds[a + 1])
                if hi == lo:
                    continue
                rows = order[lo:hi]
                Xa, ya = contexts[rows], rewards[rows]
                sums = Xa.sum(axis=0)
                gram = np.empty((d + 1, d + 1))
                gram[:d, :d] = Xa.T @ Xa
                gram[:d, d] = gram[d, :d] = sums
                gram[d, d] = hi - lo
                rhs = np.append(Xa.T @ ya, ya.sum())
                coef[a] = np.linalg.solve(gram + penalty, rhs)
        return cls(coef)

    def predict(self, contexts: FloatArray) -> FloatArray:
        """Predicted reward of every offer, array of shape (n_rounds, n_actions)."""
        return contexts @ self.coef[:, :-1].T + self.coef[:, -1]
