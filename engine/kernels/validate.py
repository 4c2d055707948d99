"""Finiteness checks fast enough for the single-row decision path."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def first_non_finite(values: np.ndarray) -> int:
    """Flat index of the first NaN or infinite entry of a C-contiguous array, or -1."""
    flat = values.reshape(-1)
    for i in range(flat.shape[0]):
        if not math.isfinite(flat[i]):
            return i
    return -1
