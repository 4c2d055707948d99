"""The standard normal CDF and quantile of nbo, usable inside numba kernels and from Python.

These are the only normal quantiles in nbo: the Thompson-sampling propensities in
:mod:`engine.kernels.choice`, the replay's normal intervals and the journal's lift interval all
call :func:`norm_ppf`, so one confidence level gives one z everywhere.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_SQRT1_2 = 0.7071067811865476
_SQRT2PI = 2.5066282746310002

# Acklam's rational approximation of the normal quantile (relative error < 1.2e-9), refined by
# one Halley step to full double precision.
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


@njit(cache=True, nogil=True)
def norm_cdf(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x * _SQRT1_2)


# The normal CDF tabulated for the Thompson-sampling propensities, which evaluate it hundreds of
# times per row: values and slopes at z = -6 + j / 128 up to 8.3, between them the cubic Hermite
# interpolant (within 6e-12 of the CDF; checked in tests/engine/test_kernels.py), about 3x
# cheaper than erfc. Outside the table: exactly 1 from 8.3 (Phi rounds to 1.0 there), erfc below -6.
_TABLE_LO = -6.0
_TABLE_STEPS = 128
_TABLE_HI = 8.3
_TABLE_Z = _TABLE_LO + np.arange(int((_TABLE_HI - _TABLE_LO) * _TABLE_STEPS) + 2) / _TABLE_STEPS
_TABLE_CDF = np.array([0.5 * math.erfc(-z * _SQRT1_2) for z in _TABLE_Z.tolist()])
_TABLE_SLOPE = np.exp(-0.5 * _TABLE_Z * _TABLE_Z) / _SQRT2PI / _TABLE_STEPS


@njit(cache=True, nogil=True)
def norm_cdf_tabulated(x: float) -> float:
    """Standard normal CDF within 6e-12 (exact where it is 1.0 in double precision), from a
    table: what the Thompson-sampling propensities use."""
    if x >= _TABLE_HI:
        return 1.0
    if not x >= _TABLE_LO:
        return norm_cdf(x)
    t = (x - _TABLE_LO) * _TABLE_STEPS
    j = int(t)
    s = t - j
    s2 = s * s
    s3 = s2 * s
    return (
        (2.0 * s3 - 3.0 * s2 + 1.0) * _TABLE_CDF[j]
        + (s3 - 2.0 * s2 + s) * _TABLE_SLOPE[j]
        + (3.0 * s2 - 2.0 * s3) * _TABLE_CDF[j + 1]
        + (s3 - s2) * _TABLE_SLOPE[j + 1]
    )


@njit(cache=True, nogil=True)
def norm_ppf_approx(p: float) -> float:
    """Acklam's approximation of the standard normal quantile for p in (0, 1), relative error
    < 1.2e-9 (no refinement step: the Thompson-sampling propensities' points, where the error is
    far below the rule's own). Written without recursion (the upper half mirrors the lower one,
    1 - p and p - 0.5 being exact there), so it inlines into the rule's loop."""
    if not p > 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    q = p - 0.5
    if abs(q) <= 0.5 - 0.02425:
        r = q * q
        return (
            (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
            * q
            / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
        )
    t = math.sqrt(-2.0 * math.log(p if q < 0.0 else 1.0 - p))
    x = (((((_C[0] * t + _C[1]) * t + _C[2]) * t + _C[3]) * t + _C[4]) * t + _C[5]) / (
        (((_D[0] * t + _D[1]) * t + _D[2]) * t + _D[3]) * t + 1.0
    )
    return x if q < 0.0 else -x


@njit(cache=True, nogil=True)
def norm_ppf(p: float) -> float:
    """Standard normal quantile for p in (0, 1): :func:`norm_ppf_approx` refined by one Halley
    step to full double precision."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    if p > 0.5:
        # 1 - p is exact for p in [0.5, 1] (Sterbenz); the lower tail refines to full precision.
        return -norm_ppf(1.0 - p)
    x = norm_ppf_approx(p)
    e = norm_cdf(x) - p
    u = e * _SQRT2PI * math.exp(0.5 * x * x)
    return x - u / (1.0 + 0.5 * x * u)
