"""Random Fourier features: a fixed nonlinear map of contexts for linear models to learn on.

``Z[i] = [X[i], scale * cos(X[i] @ weights + offsets)]``: the context itself, then one cosine
per column of ``weights`` (Rahimi and Recht, 2007). A ridge regression on Z is a linear model of
the context plus a kernel machine (a Gaussian kernel over the inputs each column of ``weights``
reads), so the per-offer ridge policies over Z represent interactions of attributes that no
model linear in X can. Kernels do no validation: callers pass C-contiguous float64 arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Below this many rows plain loops beat the BLAS call overhead (as in engine/kernels/ridge.py).
_SMALL = 8
_FAST = {"reassoc", "contract", "arcp", "nsz"}


@njit(cache=True, nogil=True, fastmath=_FAST)
def fourier_features(
    X: np.ndarray, weights: np.ndarray, offsets: np.ndarray, scale: float, Z: np.ndarray
) -> None:
    """Write the contexts and their random Fourier features into ``Z``.

    Parameters
    ----------
    X : array of shape (n_rounds, n_features)
    weights : array of shape (n_features, n_components)
    offsets : array of shape (n_components,)
    scale : float
        Amplitude of the cosine features.
    Z : array of shape (n_rounds, n_features + n_components), written
    """
    n, d = X.shape
    m = offsets.shape[0]
    if n >= _SMALL:
        P = np.dot(X, weights)
        for i in range(n):
            for c in range(d):
                Z[i, c] = X[i, c]
            for j in range(m):
                Z[i, d + j] = scale * math.cos(P[i, j] + offsets[j])
        return
    p = np.empty(m)
    for i in range(n):
        p[:] = offsets
        for c in range(d):
            x = X[i, c]
            Z[i, c] = x
            if x != 0.0:  # one-hot and indicator columns are mostly zero
                for j in range(m):
                    p[j] += x * weights[c, j]
        for j in range(m):
            Z[i, d + j] = scale * math.cos(p[j])
