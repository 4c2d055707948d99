"""An anytime-valid bound on the lift: a confidence sequence that may be looked at after every
reward batch, and acted on, without inflating the error rate.

A fixed-sample interval (:class:`engine.journal.lift.Lift`) covers the truth with 95%
probability at one look decided in advance; looked at daily and acted on the first time it looks
bad, it errs far more often. A confidence sequence covers the truth at *every* time at once with
probability 1 - alpha, so "stop when the upper bound falls below 0" errs at most alpha / 2 of the
time however often it looks.

The lift is a difference of per-decision means of two randomized groups of customers, with
customers as the independent units (each customer's rewards are summed, as in
:meth:`~engine.journal.lift.Lift.from_customers`). Asymptotically it is the mean of one
influence term per customer, whose variance is ``n * se**2`` for ``n`` customers and the
cluster-robust standard error ``se``. The bound is the asymptotic confidence sequence of
Waudby-Smith, Arnold, Wu, Howard & Ramdas (2021, "Time-uniform central limit theory and
asymptotic confidence sequences", Theorem 2.2, the Gaussian-mixture boundary of Robbins):

    lift +- se * sqrt(n) * sqrt( 2 (n rho^2 + 1) / (n^2 rho^2) * log( sqrt(n rho^2 + 1) / alpha ) )

``rho`` sets where the sequence is tightest (``rho_for(n_star)``: tightest near ``n_star``
customers; default 1,000). Before ``MIN_CUSTOMERS`` customers in each group the bound is
infinite: the central-limit approximation is not yet trusted, so nothing can trigger on it.

Examples
--------
>>> low, high = lift_sequence(lift=2.0, se=0.5, n=400, alpha=0.05)
>>> bool(low < 2.0 - 1.96 * 0.5), bool(high > 2.0 + 1.96 * 0.5)  # wider than a fixed look
(True, True)
>>> lift_sequence(2.0, 0.5, n=400, alpha=0.05, n_groups=(400, 10))
(-inf, inf)
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_N_STAR", "MIN_CUSTOMERS", "boundary", "lift_sequence", "rho_for"]

DEFAULT_N_STAR = 1000  # customers at which the sequence is tightest
MIN_CUSTOMERS = 30  # per group, before the bound is finite


def rho_for(n_star: float, alpha: float) -> float:
    """The mixture parameter that makes the boundary tightest near ``n_star`` observations
    (Waudby-Smith et al. 2021, eq. (14))."""
    if n_star <= 0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"n_star > 0 and 0 < alpha < 1 expected, got {n_star}, {alpha}")
    a = -2.0 * math.log(alpha)
    return math.sqrt((a + math.log(a + 1.0)) / n_star)


def boundary(n: float, alpha: float, rho: float) -> float:
    """Half-width, in standard deviations of one observation, of the two-sided asymptotic
    confidence sequence after ``n`` observations."""
    t = n * rho * rho
    return math.sqrt(2.0 * (t + 1.0) / (n * n * rho * rho) * math.log(math.sqrt(t + 1.0) / alpha))


def lift_sequence(
    lift: float,
    se: float,
    n: int,
    alpha: float = 0.05,
    n_star: float = DEFAULT_N_STAR,
    n_groups: tuple[int, int] | None = None,
) -> tuple[float, float]:
    """(lower, upper) of the anytime-valid bound on the lift after ``n`` customers.

    Parameters
    ----------
    lift, se : float
        The lift estimate and its cluster-robust standard error (over customers).
    n : int
        Customers in both groups together.
    alpha : float
        The bound covers the truth at every time with probability ``1 - alpha``.
    n_star : float
        Customers at which the sequence is tightest.
    n_groups : (int, int), optional
        Customers of each group; fewer than MIN_CUSTOMERS in either gives (-inf, inf).
    """
    if n_groups is not None and min(n_groups) < MIN_CUSTOMERS:
        return -math.inf, math.inf
    if n < 2 * MIN_CUSTOMERS or not (math.isfinite(lift) and math.isfinite(se)):
        return -math.inf, math.inf
    half = se * math.sqrt(n) * boundary(n, alpha, rho_for(n_star, alpha))
    return lift - half, lift + half
