"""Kernels of the context-free baselines (UCB1, Beta Thompson sampling)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.kernels.rng import beta


@njit(cache=True, nogil=True)
def ucb1_scores(sums: np.ndarray, counts: np.ndarray, c: float, out_row: np.ndarray) -> None:
    """UCB1 index mean + c * sqrt(2 ln t / n); +inf for actions never tried."""
    t = 0.0
    for a in range(counts.shape[0]):
        t += counts[a]
    log_t = math.log(max(t, 1.0))
    for a in range(counts.shape[0]):
        if counts[a] <= 0.0:
            out_row[a] = math.inf
        else:
            out_row[a] = sums[a] / counts[a] + c * math.sqrt(2.0 * log_t / counts[a])


@njit(cache=True, nogil=True)
def beta_win_probabilities(
    alpha: np.ndarray,
    beta_: np.ndarray,
    mask: np.ndarray,
    n_draws: int,
    state: np.ndarray,
    out: np.ndarray,
) -> None:
    """Monte-Carlo estimate of P(argmax of Beta(alpha, beta_) draws = a) per row of ``mask``.

    Rows with the same mask as the row before reuse its estimate, so a batch with one eligibility
    pattern costs one estimate. ``out`` (n_rounds, n_actions) is 0 where masked.
    """
    n, n_actions = mask.shape
    draws = np.empty(n_actions)
    for i in range(n):
        same = i > 0
        if same:
            for a in range(n_actions):
                if mask[i, a] != mask[i - 1, a]:
                    same = False
                    break
        if same:
            out[i] = out[i - 1]
            continue
        for a in range(n_actions):
            out[i, a] = 0.0
        for _ in range(n_draws):
            best = -1.0
            arg = -1
            for a in range(n_actions):
                if mask[i, a]:
                    draws[a] = beta(state, alpha[a], beta_[a])
                    if draws[a] > best:
                        best = draws[a]
                        arg = a
            out[i, arg] += 1.0 / n_draws
