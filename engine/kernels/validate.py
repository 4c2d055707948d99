"""Input checks fast enough for the single-row decision path."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def first_invalid(values: np.ndarray, limit: float) -> int:
    """Flat index of the first entry that is NaN, infinite or larger than ``limit`` in absolute
    value, in a C-contiguous array; -1 when every entry is valid."""
    flat = values.reshape(-1)
    for i in range(flat.shape[0]):
        v = flat[i]
        if not math.isfinite(v) or abs(v) > limit:
            return i
    return -1


@njit(cache=True, nogil=True)
def first_outside(values: np.ndarray, low: int, high: int) -> int:
    """Index of the first integer entry outside [low, high), or -1."""
    for i in range(values.shape[0]):
        if values[i] < low or values[i] >= high:
            return i
    return -1


@njit(cache=True, nogil=True)
def first_not_probability(values: np.ndarray) -> int:
    """Index of the first entry that is not a probability in (0, 1] (NaN included), or -1."""
    for i in range(values.shape[0]):
        v = values[i]
        if not (v > 0.0 and v <= 1.0):
            return i
    return -1
