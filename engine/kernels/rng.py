"""A small counter-free random generator (xoshiro256**) whose state is a uint64 array.

Policies keep their randomness in a ``uint64[4]`` array that the kernels advance in place. Passing
a ``np.random.Generator`` into numba costs several microseconds per call (it is unboxed every
time), which is more than a whole single-row decision; a plain array costs nothing, serializes with
the model, and makes decisions reproducible after a ``to_bytes``/``from_bytes`` round trip.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_TWO_POW_53_INV = 1.0 / 9007199254740992.0


def seed_state(seed: int | None) -> np.ndarray:
    """Return a fresh ``uint64[4]`` generator state derived from ``seed`` by ``SeedSequence``."""
    state = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint64)
    if not state.any():  # xoshiro's one forbidden state
        state[0] = np.uint64(0x9E3779B97F4A7C15)
    return state


@njit(cache=True, nogil=True, inline="always")
def _rotl(x: np.uint64, k: int) -> np.uint64:
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True, nogil=True)
def next_u64(state: np.ndarray) -> np.uint64:
    s0 = state[0]
    s1 = state[1]
    s2 = state[2]
    s3 = state[3]
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    state[0] = s0
    state[1] = s1
    state[2] = s2
    state[3] = s3
    return result


@njit(cache=True, nogil=True)
def uniform(state: np.ndarray) -> float:
    """A float64 in [0, 1) with 53 random bits."""
    return float(next_u64(state) >> np.uint64(11)) * _TWO_POW_53_INV


@njit(cache=True, nogil=True)
def uniform_open(state: np.ndarray) -> float:
    """A float64 in (0, 1): never 0, so its logarithm is finite."""
    return (float(next_u64(state) >> np.uint64(11)) + 0.5) * _TWO_POW_53_INV


@njit(cache=True, nogil=True)
def standard_normal(state: np.ndarray) -> float:
    """One N(0, 1) draw (Box-Muller; the second value is discarded to keep the state simple)."""
    u1 = uniform_open(state)
    u2 = uniform(state)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True, nogil=True)
def gamma(state: np.ndarray, shape: float) -> float:
    """One Gamma(shape, 1) draw (Marsaglia and Tsang, 2000), for shape > 0."""
    boost = 1.0
    if shape < 1.0:
        boost = uniform_open(state) ** (1.0 / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = standard_normal(state)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = uniform_open(state)
        if math.log(u) < 0.5 * x * x + d - d * v + d * math.log(v):
            return d * v * boost


@njit(cache=True, nogil=True)
def beta(state: np.ndarray, a: float, b: float) -> float:
    """One Beta(a, b) draw as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b)."""
    x = gamma(state, a)
    y = gamma(state, b)
    return x / (x + y)
