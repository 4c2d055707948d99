"""Additive statistics behind every estimate and interval, so work can be split into shards.

Every estimator in :mod:`engine.replay.estimators` has the form

    value = mean(a) + sum(b) / sum(c)

over per-row terms ``a``, ``b``, ``c`` (``c`` is all ones for the plain, non-self-normalized
estimators). :class:`Moments` holds the sums, cross-products and ranges of the three terms; shards
add their Moments, and the normal and empirical-Bernstein intervals follow from the merged sums
through the delta method. The bootstrap is a Poisson bootstrap: each resample weighs each row by an
independent Poisson(1) count drawn from a generator seeded by (seed, shard), so resamples of
different shards simply add and the numbers do not depend on how the shards were scheduled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.kernels import norm_ppf
from engine.types import FloatArray

# Layout of Moments.sums.
_N, _A, _B, _C, _AA, _BB, _CC, _AB, _AC, _BC = range(10)
_N_SUMS = 10
_BOOT_CHUNK = 16384

# Per-row terms (a, b, c) of an estimator; None is a constant (a, b: 0; c: 1).
Terms = tuple[FloatArray | None, FloatArray | None, FloatArray | None]


@dataclass(frozen=True)
class Moments:
    """Sums, cross-products and ranges of the terms (a, b, c) of one estimator.

    Attributes
    ----------
    sums : array of shape (10,)
        n, Σa, Σb, Σc, Σa², Σb², Σc², Σab, Σac, Σbc.
    low, high : array of shape (3,)
        Smallest and largest a, b, c.

    Examples
    --------
    >>> import numpy as np
    >>> a, b, c = np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4)
    >>> m = Moments.from_terms(a, b, c)
    >>> m.estimate(), round(m.std_error(), 4)
    (2.5, 0.6455)
    >>> head = Moments.from_terms(a[:2], b[:2], c[:2])
    >>> tail = Moments.from_terms(a[2:], b[2:], c[2:])
    >>> (head + tail).estimate()
    2.5
    """

    sums: FloatArray
    low: FloatArray
    high: FloatArray

    @classmethod
    def from_terms(
        cls, a: FloatArray | None, b: FloatArray | None, c: FloatArray | None, n: int | None = None
    ) -> Moments:
        """From per-row terms; None means a or b all zeros, c all ones (then pass ``n``)."""
        if n is None:
            n = next(t.shape[0] for t in (a, b, c) if t is not None)
        if n == 0:
            return cls.empty()
        zero, one = np.zeros(1), np.ones(1)
        sums = np.array(
            [
                float(n),
                _sum(a, 0.0, n),
                _sum(b, 0.0, n),
                _sum(c, 1.0, n),
                _dot(a, a, 0.0, n),
                _dot(b, b, 0.0, n),
                _dot(c, c, 1.0, n),
                _dot(a, b, 0.0, n),
                _dot(a, c, 0.0, n) if c is not None else _sum(a, 0.0, n),
                _dot(b, c, 0.0, n) if c is not None else _sum(b, 0.0, n),
            ]
        )
        terms = [zero if a is None else a, zero if b is None else b, one if c is None else c]
        low = np.array([t.min() for t in terms])
        high = np.array([t.max() for t in terms])
        return cls(sums, low, high)

    @classmethod
    def empty(cls) -> Moments:
        return cls(np.zeros(_N_SUMS), np.full(3, np.inf), np.full(3, -np.inf))

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.sums + other.sums,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
        )

    @property
    def n(self) -> int:
        return int(self.sums[_N])

    def estimate(self) -> float:
        """mean(a) + sum(b) / sum(c); NaN when there are no rows or sum(c) is 0."""
        s = self.sums
        if s[_N] == 0 or s[_C] == 0:
            return math.nan
        return float(s[_A] / s[_N] + s[_B] / s[_C])

    def std_error(self) -> float:
        """Delta-method standard error of :meth:`estimate` (n - 1 in the variance)."""
        s = self.sums
        n = s[_N]
        if n < 2 or s[_C] == 0:
            return math.nan
        mean_a = s[_A] / n
        theta = s[_B] / s[_C]
        mean_c = s[_C] / n
        var_a = s[_AA] / n - mean_a**2
        # Influence of a row: (a - mean_a) + (b - theta c) / mean_c; E[b - theta c] = 0.
        var_r = (s[_BB] - 2.0 * theta * s[_BC] + theta**2 * s[_CC]) / n
        cov = (s[_AB] - theta * s[_AC]) / n
        variance = max(var_a + var_r / mean_c**2 + 2.0 * cov / mean_c, 0.0)
        return float(math.sqrt(variance / (n - 1)))

    def normal_interval(self, alpha: float) -> tuple[float, float]:
        """Two-sided 1 - alpha interval from the normal approximation."""
        z = norm_ppf(1.0 - alpha / 2.0)
        value, se = self.estimate(), self.std_error()
        return value - z * se, value + z * se

    def bernstein_interval(self, alpha: float) -> tuple[float, float]:
        """Empirical-Bernstein interval (Maurer & Pontil 2009, Theorem 4, alpha/2 per side).

        The range of a row's influence is bounded by range(a) + (range(b) + |theta| range(c)) /
        mean(c), so the bound stays valid for the self-normalized estimators; it is wider than
        the normal interval and does not rely on asymptotics.
        """
        s = self.sums
        n = s[_N]
        if n < 2 or s[_C] == 0:
            return math.nan, math.nan
        theta = s[_B] / s[_C]
        mean_c = s[_C] / n
        spread = self.high - self.low
        span = spread[0] + (spread[1] + abs(theta) * spread[2]) / mean_c
        variance = (self.std_error() ** 2) * n
        log_term = math.log(2.0 / (alpha / 2.0))
        half = math.sqrt(2.0 * variance * log_term / n) + 7.0 * span * log_term / (3.0 * (n - 1))
        value = self.estimate()
        return value - half, value + half


def _sum(x: FloatArray | None, constant: float, n: int) -> float:
    return constant * n if x is None else float(x.sum())


def _dot(x: FloatArray | None, y: FloatArray | None, constant: float, n: int) -> float:
    """Σ x·y, where None operands are only ever paired with a zero term (so the sum is 0) or,
    both None, stand for the constant product ``constant`` per row."""
    if x is None and y is None:
        return constant * n
    if x is None or y is None:
        return 0.0
    return float(x @ y)


def bootstrap_columns(
    terms: list[Terms], n: int, count: FloatArray | None = None
) -> tuple[FloatArray, Callable[[FloatArray], list[FloatArray]]]:
    """Columns to resample for several estimators' terms, and how to expand their sums.

    Returns ``columns`` of shape (n, m) (a column of ones, then each non-constant term) and a
    function mapping bootstrap sums of shape (n_resamples, m) to one array of shape
    (n_resamples, 4) per estimator: sums of 1, a, b, c. ``count`` replaces the column of ones
    when the units are clusters (rows per cluster; a None ``c`` then stands for it).
    """
    columns: list[FloatArray] = [np.ones(n) if count is None else count]
    # Estimators share many terms (w r, w, the DR term, ...): resample each distinct one once.
    seen: dict[tuple[float, float, float], list[int]] = {}
    slots: list[tuple[int | None, int | None, int | None]] = []
    for a, b, c in terms:
        index: list[int | None] = []
        for t in (a, b, c):
            if t is None:
                index.append(None)
                continue
            key = (float(t.sum()), float(t[0]), float(t[-1]))
            match = next((j for j in seen.get(key, []) if np.array_equal(columns[j], t)), None)
            if match is None:
                match = len(columns)
                columns.append(t)
                seen.setdefault(key, []).append(match)
            index.append(match)
        slots.append((index[0], index[1], index[2]))

    def expand(sums: FloatArray) -> list[FloatArray]:
        out = []
        zeros = np.zeros(sums.shape[0])
        for ia, ib, ic in slots:
            out.append(
                np.column_stack(
                    [
                        sums[:, 0],
                        zeros if ia is None else sums[:, ia],
                        zeros if ib is None else sums[:, ib],
                        sums[:, 0] if ic is None else sums[:, ic],
                    ]
                )
            )
        return out

    return np.column_stack(columns), expand


_LEVELS = 1 << 16


def _poisson_thresholds() -> np.ndarray:
    """uint16 thresholds T_k: a uniform u in [0, 2^16) gives the Poisson(1) count #{k: u >= T_k}.

    This is the inverse CDF of Poisson(1) on the grid of levels (u + 0.5) / 2^16 (probabilities
    exact to 2^-16; counts above 8 have probability < 1e-5 and never occur).
    """
    k = np.arange(32)
    cdf = np.cumsum(np.exp(-1.0 - np.cumsum(np.log(np.maximum(k, 1)))))
    thresholds = np.floor(cdf * _LEVELS - 0.5) + 1
    return thresholds[thresholds <= _LEVELS - 1].astype(np.uint16)


_THRESHOLDS = _poisson_thresholds()


def poisson_weights(
    rng: np.random.Generator, shape: tuple[int, int], out: FloatArray | None = None
) -> FloatArray:
    """Poisson(1) counts as float64: comparisons of uint16 draws, no float sampling per entry.

    ``out`` (float64 of ``shape``) is filled and returned when given; reusing one buffer across
    chunks avoids the page faults of a fresh large array each time.
    """
    draws = rng.integers(0, _LEVELS, size=shape, dtype=np.uint16)
    counts = np.zeros(shape, dtype=np.uint8)
    above = np.empty(shape, dtype=np.bool_)
    for threshold in _THRESHOLDS:
        np.greater_equal(draws, threshold, out=above)
        counts += above
    if out is None:
        return counts.astype(np.float64)
    np.copyto(out, counts)
    return out


def bootstrap_sums(terms: FloatArray, n_resamples: int, seed: int, shard: int) -> FloatArray:
    """Poisson-bootstrap sums of the columns of ``terms`` for ``n_resamples`` resamples.

    Parameters
    ----------
    terms : array of shape (n_rounds, n_columns)
        Columns to sum (typically 1, then a, b, c of each estimator).
    n_resamples : int
    seed, shard : int
        Resample weights come from ``np.random.default_rng([seed, shard])``, so the same shard
        gets the same weights in every run and in every process.

    Returns
    -------
    array of shape (n_resamples, n_columns)

    Examples
    --------
    >>> import numpy as np
    >>> sums = bootstrap_sums(np.ones((1000, 1)), 4, seed=0, shard=0)
    >>> sums.shape, bool(np.all(np.abs(sums - 1000) < 150))
    ((4, 1), True)
    """
    rng = np.random.default_rng([seed, shard])
    out = np.zeros((n_resamples, terms.shape[1]))
    terms = np.asarray(terms, dtype=np.float64)
    buffer = np.empty((n_resamples, min(_BOOT_CHUNK, terms.shape[0])))
    for start in range(0, terms.shape[0], _BOOT_CHUNK):
        block = terms[start : start + _BOOT_CHUNK]
        weights = poisson_weights(rng, (n_resamples, block.shape[0]), buffer[:, : block.shape[0]])
        out += weights @ block
    return out


def percentile_interval(values: FloatArray, alpha: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates are dropped)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# ---------------------------------------------------------------------- clustered
def cluster_codes(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 of cluster keys (customer ids), in order of first appearance.

    Examples
    --------
    >>> import numpy as np
    >>> codes, n = cluster_codes(np.array(["c2", "c1", "c2"], dtype=object))
    >>> codes.tolist(), n
    ([0, 1, 0], 2)
    """
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    # Renumber by first appearance so the codes do not depend on how the keys sort.
    order = np.argsort(np.argsort(first, kind="stable"), kind="stable")
    return order[inverse].astype(np.int64), int(first.shape[0])


def cluster_totals(columns: FloatArray, cluster: np.ndarray, n_clusters: int) -> FloatArray:
    """Per-cluster sums of ``columns`` (n_rounds, m) -> (n_clusters, m)."""
    columns = np.asarray(columns, dtype=np.float64).reshape(cluster.shape[0], -1)
    return (
        np.column_stack(
            [
                np.bincount(cluster, weights=columns[:, j], minlength=n_clusters)
                for j in range(columns.shape[1])
            ]
        )
        if columns.shape[1]
        else np.zeros((n_clusters, 0))
    )


def terms_columns(terms: Terms, n: int) -> FloatArray:
    """(n, 4) columns 1, a, b, c of an estimator's terms (None expanded to its constant)."""
    a, b, c = terms
    return np.column_stack(
        [
            np.ones(n),
            np.zeros(n) if a is None else a,
            np.zeros(n) if b is None else b,
            np.ones(n) if c is None else c,
        ]
    )


@dataclass(frozen=True)
class ClusteredMoments:
    """An estimator's terms summed per cluster (customer), for intervals that resample customers.

    Rows of one customer are correlated (the same person returns, with the same tastes), so the
    independent units are customers, not rows. With per-cluster totals N_g, A_g, B_g, C_g of
    1, a, b, c the estimate is ΣA/ΣN + ΣB/ΣC, and its cluster-robust (delta-method) variance sums
    the influence of whole clusters,

        ψ_g = (A_g - mean_a N_g) / mean_N + (B_g - θ C_g) / mean_C,   var = Σψ² / (G (G - 1)),

    which is :meth:`Moments.std_error` when every cluster is one row.

    Attributes
    ----------
    totals : array of shape (n_clusters, 4)
        Per-cluster sums of 1, a, b, c; clusters without rows are dropped.

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([1.0, 2.0, 3.0, 4.0])
    >>> rows = ClusteredMoments.from_terms((None, b, None), np.arange(4), 4)
    >>> rows.std_error() == Moments.from_terms(None, b, None, n=4).std_error()
    True
    >>> pairs = ClusteredMoments.from_terms((None, b, None), np.array([0, 0, 1, 1]), 2)
    >>> pairs.estimate(), pairs.n_clusters
    (2.5, 2)
    """

    totals: FloatArray

    def __post_init__(self) -> None:
        totals = np.asarray(self.totals, dtype=np.float64).reshape(-1, 4)
        object.__setattr__(self, "totals", totals[totals[:, 0] > 0])

    @classmethod
    def from_terms(cls, terms: Terms, cluster: np.ndarray, n_clusters: int) -> ClusteredMoments:
        """From per-row terms and each row's cluster code in [0, n_clusters)."""
        n = cluster.shape[0]
        return cls(cluster_totals(terms_columns(terms, n), cluster, n_clusters))

    @property
    def n_clusters(self) -> int:
        return int(self.totals.shape[0])

    def estimate(self) -> float:
        n, a, b, c = self.totals.sum(axis=0) if self.n_clusters else np.zeros(4)
        if n == 0 or c == 0:
            return math.nan
        return float(a / n + b / c)

    def influence(self) -> FloatArray:
        """ψ_g of every cluster, array of shape (n_clusters,)."""
        g = self.n_clusters
        n_g, a_g, b_g, c_g = self.totals.T
        n, a, b, c = self.totals.sum(axis=0)
        return (a_g - (a / n) * n_g) / (n / g) + (b_g - (b / c) * c_g) / (c / g)

    def std_error(self) -> float:
        g = self.n_clusters
        if g < 2 or self.totals[:, 3].sum() == 0:
            return math.nan
        psi = self.influence()
        return float(math.sqrt(float(psi @ psi) / (g * (g - 1))))

    def normal_interval(self, alpha: float) -> tuple[float, float]:
        z = norm_ppf(1.0 - alpha / 2.0)
        value, se = self.estimate(), self.std_error()
        return value - z * se, value + z * se

    def bernstein_interval(self, alpha: float) -> tuple[float, float]:
        """Empirical-Bernstein interval over clusters (see :meth:`Moments.bernstein_interval`),
        with the range of the clusters' influence as the bound of one unit."""
        g = self.n_clusters
        if g < 2 or self.totals[:, 3].sum() == 0:
            return math.nan, math.nan
        psi = self.influence()
        variance = float(psi @ psi) / (g - 1)
        span = float(psi.max() - psi.min())
        log_term = math.log(2.0 / (alpha / 2.0))
        half = math.sqrt(2.0 * variance * log_term / g) + 7.0 * span * log_term / (3.0 * (g - 1))
        value = self.estimate()
        return value - half, value + half

    def bootstrap_interval(self, alpha: float, n_bootstrap: int, seed: int) -> tuple[float, float]:
        """Percentile interval of a Poisson bootstrap that resamples whole clusters."""
        sums = bootstrap_sums(self.totals, n_bootstrap, seed, CLUSTER_SHARD)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = sums[:, 1] / sums[:, 0] + sums[:, 2] / sums[:, 3]
        return percentile_interval(values, alpha)


# The bootstrap stream of clustered resamples: one "shard" of cluster totals, whatever the row
# shards were, so the numbers do not depend on how the rows were split.
CLUSTER_SHARD = 0xC105
