"""The reward model of the direct and doubly robust estimators: one ridge regression per offer.

It is cross-fitted (:func:`cross_fit`): customers are dealt into k folds, and each row is
predicted by the model fit on the other folds, so no row (nor any other row of its customer) ever
taught the prediction it is scored with. An in-sample model has learnt each row's own noise: its
residuals r - q are too small, so DR's correction falls short and DR drifts toward the model's
bias (tests/engine/replay/test_crossfit.py measures it). Plain numpy: one (d+1)x(d+1) solve per
offer and fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from engine.errors import InvalidInputError, InvalidParameterError
from engine.replay.intervals import customer_fold, row_fold
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


#: Folds of the cross-fitted reward model when ``--folds`` is not given, and the fewest customers
#: per fold below which 2 folds are used instead.
DEFAULT_FOLDS = 5
MIN_CUSTOMERS_PER_FOLD = 20


def n_folds(n_customers: int, requested: int | None = None) -> int:
    """Folds for ``n_customers`` independent units: ``requested``, or by default 5, or 2 when
    that would leave fewer than 20 customers in a fold.

    Examples
    --------
    >>> n_folds(1000), n_folds(60), n_folds(60, 3)
    (5, 2, 3)
    """
    if requested is not None:
        if not 2 <= requested <= max(n_customers, 2):
            raise InvalidInputError(
                "--folds", f"an int in [2, {max(n_customers, 2)}] (the customers)", requested
            )
        return int(requested)
    if n_customers < DEFAULT_FOLDS * MIN_CUSTOMERS_PER_FOLD:
        return 2
    return DEFAULT_FOLDS


def customer_folds(customer: IntArray | None, n_rows: int, folds: int, seed: int = 0) -> IntArray:
    """Each row's fold: customers dealt into ``folds`` folds by a seeded hash of their key
    (:func:`engine.replay.intervals.customer_fold`, so a batch of rows knows its folds without
    the others); without a customer column each row is its own unit, dealt by a seeded hash of
    its index (:func:`row_folds` reads a range of them).

    Examples
    --------
    >>> import numpy as np
    >>> fold = customer_folds(np.array([7, 3, 7, 9, 3]), 5, 2)
    >>> bool(fold[0] == fold[2] and fold[1] == fold[4]), set(fold.tolist()) <= {0, 1}
    (True, True)
    """
    if customer is None:
        return row_folds(n_rows, folds, seed, 0, n_rows)
    return customer_fold(np.asarray(customer, dtype=np.int64), folds, seed)


def cross_fit(
    contexts: FloatArray,
    actions: IntArray,
    rewards: FloatArray,
    n_actions: int,
    fold: IntArray,
    folds: int,
    l2: float = 1.0,
) -> FloatArray:
    """One model per fold, each fit on the rows of every other fold.

    Returns
    -------
    array of shape (folds, n_actions, n_features + 1)
        ``coef[j]`` never saw a row of fold j; :func:`predict_out_of_fold` predicts with it.
    """
    return np.stack(
        [
            RewardModel.fit(
                contexts[fold != j], actions[fold != j], rewards[fold != j], n_actions, l2
            ).coef
            for j in range(folds)
        ]
    )


def predict_out_of_fold(coef: FloatArray, contexts: FloatArray, fold: IntArray) -> FloatArray:
    """Every offer's prediction for each row by the model of its fold (:func:`cross_fit`),
    array of shape (n_rounds, n_actions)."""
    folds, k, _ = coef.shape
    n = contexts.shape[0]
    out = np.empty((n, k))
    # Every fold's model on a block of rows in one product, each row's own fold picked out:
    # cheaper than masking, gathering and scattering each fold's rows (the block stays in cache).
    weights = np.ascontiguousarray(coef[:, :, :-1].reshape(folds * k, -1).T)
    intercept = coef[:, :, -1].reshape(-1)
    fold = np.asarray(fold, dtype=np.int64)
    for start in range(0, n, _PREDICT_BLOCK):
        stop = min(start + _PREDICT_BLOCK, n)
        every = contexts[start:stop] @ weights
        every += intercept
        picked = np.take_along_axis(every.reshape(-1, folds, k), fold[start:stop, None, None], 1)
        out[start:stop] = picked[:, 0]
    return out


_PREDICT_BLOCK = 8192


# ---------------------------------------------------------------------- shard by shard
@dataclass(frozen=True, eq=False)
class RewardSums:
    """Additive sufficient statistics of :func:`cross_fit` from a batch of rows, per fold of the
    rows: ``gram[j, a]`` (the (d+1)x(d+1) Gram matrix of [x, 1] over fold j's rows that logged
    offer a), ``rhs[j, a]`` (sum of r [x, 1]), ``count[j]`` and ``total[j]`` (rows, reward sum).
    Sums of disjoint batches add; :func:`cross_fit_from_sums` solves them."""

    gram: FloatArray  # (folds, n_actions, d + 1, d + 1)
    rhs: FloatArray  # (folds, n_actions, d + 1)
    count: FloatArray  # (folds,)
    total: FloatArray  # (folds,)

    def __add__(self, other: RewardSums) -> RewardSums:
        return RewardSums(
            self.gram + other.gram,
            self.rhs + other.rhs,
            self.count + other.count,
            self.total + other.total,
        )


def reward_sums(
    contexts: FloatArray,
    actions: IntArray,
    rewards: FloatArray,
    n_actions: int,
    fold: IntArray,
    folds: int,
) -> RewardSums:
    """The :class:`RewardSums` of these rows (``fold``: each row's fold)."""
    d = contexts.shape[1]
    gram = np.zeros((folds, n_actions, d + 1, d + 1))
    rhs = np.zeros((folds, n_actions, d + 1))
    key = fold.astype(np.int64) * n_actions + actions
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(folds * n_actions + 1))
    with threadpool_limits(limits=1):
        for j in range(folds):
            for a in range(n_actions):
                lo, hi = int(bounds[j * n_actions + a]), int(bounds[j * n_actions + a + 1])
                if hi == lo:
                    continue
                rows = order[lo:hi]
                Xa, ya = contexts[rows], rewards[rows]
                g = gram[j, a]
                g[:d, :d] = Xa.T @ Xa
                g[:d, d] = g[d, :d] = Xa.sum(axis=0)
                g[d, d] = hi - lo
                rhs[j, a, :d] = Xa.T @ ya
                rhs[j, a, d] = ya.sum()
    count = np.bincount(fold, minlength=folds).astype(np.float64)[:folds]
    total = np.bincount(fold, weights=rewards, minlength=folds)[:folds].astype(np.float64)
    return RewardSums(gram, rhs, count, total)


def cross_fit_from_sums(sums: RewardSums, l2: float = 1.0) -> FloatArray:
    """:func:`cross_fit`'s coefficients from the rows' :class:`RewardSums` (equal up to
    summation order), array of shape (folds, n_actions, n_features + 1)."""
    folds, n_actions, d1, _ = sums.gram.shape
    d = d1 - 1
    penalty = np.eye(d1) * l2
    penalty[d, d] = 1e-9
    coef = np.zeros((folds, n_actions, d1))
    for j in range(folds):
        others = np.arange(folds) != j
        n = float(sums.count[others].sum())
        coef[j, :, d] = float(sums.total[others].sum()) / n if n else 0.0
        gram = sums.gram[others].sum(axis=0)
        rhs = sums.rhs[others].sum(axis=0)
        for a in range(n_actions):
            if gram[a, d, d] > 0:
                coef[j, a] = np.linalg.solve(gram[a] + penalty, rhs[a])
    return coef


def row_folds(n_rows: int, folds: int, seed: int, start: int, stop: int) -> IntArray:
    """Rows ``start:stop`` of :func:`customer_folds` without a customer column (each of the
    ``n_rows`` rows its own unit): a seeded hash of the row's index, so any range of rows knows
    its folds at O(rows) cost."""
    if not 0 <= start <= stop <= n_rows:
        raise InvalidInputError("rows", f"a range within [0, {n_rows}]", (start, stop))
    return row_fold(np.arange(start, stop, dtype=np.int64), folds, seed)
