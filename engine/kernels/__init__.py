"""Pure numba kernels on arrays: scoring, sampling, rank-1 updates. No classes, no I/O.

Kernels validate nothing; the policies in :mod:`engine.policies` check dtype, shape, contiguity and
finiteness before calling them. :func:`prepare` compiles (or loads from the on-disk cache) every
kernel, so a server can report SERVING only once the first decision will be fast.
"""

from __future__ import annotations

import numpy as np

from engine.kernels.choice import (
    choose_from_probabilities,
    choose_gaussian_thompson,
    choose_greedy,
    choose_softmax,
    gaussian_thompson_draws,
    gaussian_thompson_propensities,
    gaussian_win_probability,
    landing_choose_one,
    landing_scores,
)
from engine.kernels.contextfree import beta_win_probabilities, ucb1_scores
from engine.kernels.ridge import (
    kron_predict,
    pooled_noise,
    refactor,
    ridge_choose_greedy,
    ridge_choose_one,
    ridge_choose_softmax_one,
    ridge_predict,
    ridge_update,
    ridge_update_one,
    shared_choose_one,
)
from engine.kernels.rng import seed_state
from engine.kernels.stats import norm_cdf, norm_ppf
from engine.kernels.validate import first_invalid, first_not_probability, first_outside

__all__ = [
    "beta_win_probabilities",
    "choose_from_probabilities",
    "choose_gaussian_thompson",
    "choose_greedy",
    "choose_softmax",
    "first_invalid",
    "first_not_probability",
    "first_outside",
    "gaussian_thompson_draws",
    "gaussian_thompson_propensities",
    "gaussian_win_probability",
    "kron_predict",
    "landing_choose_one",
    "landing_scores",
    "norm_cdf",
    "norm_ppf",
    "pooled_noise",
    "prepare",
    "refactor",
    "ridge_choose_greedy",
    "ridge_choose_one",
    "ridge_choose_softmax_one",
    "ridge_predict",
    "ridge_update",
    "ridge_update_one",
    "seed_state",
    "shared_choose_one",
    "ucb1_scores",
]


def prepare() -> None:
    """Compile every kernel on tiny inputs (both the loop and the BLAS branches)."""
    state = seed_state(0)
    for n in (1, 16):
        d, k = 3, 2
        X = np.ones((n, d))
        theta = np.zeros((k, d))
        A = np.repeat(np.eye(d)[None], k, axis=0)
        A_inv = A.copy()
        b = np.zeros((k, d))
        out = np.empty((n, k))
        widths = np.empty((n, k))
        ridge_predict(X, theta, A_inv, 1.0, out, widths)
        ridge_predict(X, theta, A_inv[:0], 0.0, out, widths)
        G = np.ones((k, 1))
        kron_predict(X, G, theta[0], A_inv[0], 1.0, out, widths)
        kron_predict(X, G, theta[0], A_inv[0, :0, :0], 0.0, out, widths)
        mask = np.ones((n, k), dtype=np.bool_)
        actions = np.empty(n, np.int64)
        props = np.empty(n)
        explored = np.empty(n, np.bool_)
        for inv in (A_inv, A_inv[:0]):
            ridge_choose_greedy(
                X,
                theta,
                inv,
                1.0,
                mask,
                0.0,
                0.0,
                state,
                np.empty((n, k)),
                actions,
                props,
                explored,
            )
        choose_greedy(out.copy(), mask, 0.1, 0.0, state, actions, props, explored)
        choose_softmax(out.copy(), mask, 1.0, 0.0, state, actions, props, explored)
        choose_from_probabilities(np.full((n, k), 0.5), mask, 0.0, state, actions, props, explored)
        choose_gaussian_thompson(
            out, widths + 1.0, mask, 0.01, 4, state, np.empty((n, k)), actions, props, explored
        )
        gaussian_thompson_draws(
            out, widths + 1.0, mask, 0.01, state, np.empty((n, k)), actions, explored
        )
        gaussian_thompson_propensities(out, widths + 1.0, mask, 0.01, 4, actions, props)
        ridge_update(
            A,
            A_inv,
            b,
            theta,
            np.zeros(k, np.int64),
            np.zeros(k),
            np.zeros(k),
            X,
            np.zeros(n, np.int64),
            np.ones(n),
            np.ones(n),
            2,
        )
        pooled_noise(np.ones(k), theta, b, np.ones(k), 0.0, 0.0, 1e-12)
        row = X[0]
        for inv in (A_inv, A_inv[:0]):
            ridge_choose_one(row, theta, inv, 1.0, mask[:1], 0.0, 0.0, 0, state, 1e9)
        ridge_choose_one(row, theta, A_inv, 1.0, mask[:1], 0.0, 0.0, 4, state, 1e9)
        ridge_choose_softmax_one(row, theta, 1.0, mask[:1], 0.0, state, 1e9)
        for inv in (A_inv[:1], np.empty((1, 0, 0))):  # one model with and without widths
            shared_choose_one(row, G, theta[:1], inv, 1.0, n == 1, mask[:1], 0.0, state, 1e9)
        ridge_update_one(
            A,
            A_inv,
            b,
            theta,
            np.zeros(k, np.int64),
            np.zeros(k),
            np.zeros(k),
            row,
            0,
            1.0,
            1.0,
            2,
            1e9,
        )
        table = np.array([[0, 0, 0], [1, 0, 1]], dtype=np.int64)
        coef, routes = np.zeros((3, d)), np.zeros(1)
        landing_scores(X, coef, routes, routes, table, np.empty((n, k)))
        landing_choose_one(row, coef, routes, routes, table, mask[:1], 0.1, 0.0, state, 1e9)
        first_invalid(X, 1.0)
        first_invalid(np.ones(n), 1.0)
        first_outside(np.zeros(n, np.int64), 0, 1)
        first_not_probability(np.ones(n))
    ucb1_scores(np.zeros(2), np.zeros(2), 1.0, np.empty(2))
    beta_win_probabilities(
        np.ones(2), np.ones(2), np.ones((1, 2), np.bool_), 4, state, np.empty((1, 2))
    )
