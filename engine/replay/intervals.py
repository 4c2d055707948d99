"""Additive statistics behind every estimate and interval, so work can be split into shards.

Every estimator in :mod:`engine.replay.estimators` has the form

    value = mean(a) + sum(b) / sum(c)

over per-row terms ``a``, ``b``, ``c`` (``c`` is all ones for the plain, non-self-normalized
estimators). :class:`Moments` holds the sums, cross-products and ranges of the three terms; shards
add their Moments, and the normal and empirical-Bernstein intervals follow from the merged sums
through the delta method. The bootstrap is a Poisson bootstrap: each resample weighs each row (or,
clustered, each customer) by a Poisson(1) count drawn from a hash of (seed, the row's index in the
evaluation split or the customer's key, resample), so resamples of different shards simply add and
the numbers depend neither on how the rows were cut into shards nor on how these were scheduled.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from engine.kernels import norm_ppf
from engine.types import FloatArray

# Layout of Moments.sums.
_N, _A, _B, _C, _AA, _BB, _CC, _AB, _AC, _BC = range(10)
_N_SUMS = 10
_BOOT_CHUNK = 16384
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# Salts of the hashes: customer folds, customer and row bootstrap, shuffle buckets, integer and
# null customer ids, row folds.
_FOLD_TAG, _BOOT_TAG, _ROW_TAG, _BUCKET_TAG = 0xF01D, 0xB007, 0x20, 0xB0C7
_INT_TAG, _NULL_TAG, _ROW_FOLD_TAG = 0x1D, 0x4E55, 0xF01E

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
) -> tuple[list[FloatArray], Callable[[FloatArray], list[FloatArray]]]:
    """Columns to resample for several estimators' terms, and how to expand their sums.

    Returns ``columns``, m arrays of shape (n,) (a column of ones, then each distinct
    non-constant term; :func:`bootstrap_sums` stacks them a chunk at a time) and a
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

    return columns, expand


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
# The count of every uniform 16-bit level: #{k: u >= T_k} for u in [0, 2^16).
_COUNTS = np.searchsorted(_THRESHOLDS, np.arange(_LEVELS), side="right").astype(np.float64)


def bootstrap_sums(
    terms: FloatArray | list[FloatArray], n_resamples: int, seed: int, first_row: int
) -> FloatArray:
    """Poisson-bootstrap sums of the columns of ``terms`` for ``n_resamples`` resamples.

    Parameters
    ----------
    terms : array of shape (n_rounds, n_columns), or a list of n_columns arrays (n_rounds,)
        Columns to sum (typically 1, then a, b, c of each estimator).
    n_resamples : int
    seed, first_row : int
        Row i (``first_row + i`` in the evaluation split) gets in resample r the Poisson(1)
        count drawn from the hash of (seed, first_row + i, r) (:func:`keyed_poisson_counts`),
        so a row's weights do not depend on how the rows were cut into shards, and sums over
        disjoint rows add.

    Returns
    -------
    array of shape (n_resamples, n_columns)

    Examples
    --------
    >>> import numpy as np
    >>> sums = bootstrap_sums(np.ones((1000, 1)), 4, seed=0, first_row=0)
    >>> sums.shape, bool(np.all(np.abs(sums - 1000) < 150))
    ((4, 1), True)
    >>> head = bootstrap_sums(np.ones((600, 1)), 4, seed=0, first_row=0)
    >>> bool(np.array_equal(head + bootstrap_sums(np.ones((400, 1)), 4, 0, 600), sums))
    True
    """
    salt = _salt(seed, _ROW_TAG)
    columns = _column_list(terms)
    n = columns[0].shape[0] if columns else 0
    keys = np.arange(first_row, first_row + n, dtype=np.int64)
    return _keyed_sums(mix64(keys.view(np.uint64) ^ salt), columns, n_resamples)


def _column_list(terms: FloatArray | list[FloatArray]) -> list[FloatArray]:
    if isinstance(terms, list):
        return [np.asarray(t, dtype=np.float64) for t in terms]
    terms = np.asarray(terms, dtype=np.float64)
    return [terms[:, j] for j in range(terms.shape[1])]


def _keyed_sums(base: np.ndarray, columns: list[FloatArray], n_resamples: int) -> FloatArray:
    """Σ_i w_ri columns_i, w from :func:`keyed_poisson_counts` of the mixed keys ``base``;
    chunk by chunk, so neither the weights nor the stacked columns are ever whole."""
    n, m = base.shape[0], len(columns)
    out = np.zeros((n_resamples, m))
    if not n or not m or n_resamples <= 0:
        return out
    size = min(_BOOT_CHUNK, n)
    weights = np.empty((n_resamples, size))
    block = np.empty((size, m))
    for start in range(0, n, _BOOT_CHUNK):
        stop = min(start + _BOOT_CHUNK, n)
        w = weights[:, : stop - start]
        _poisson_counts(base[start:stop], _COUNTS, w)
        b = block[: stop - start]
        for j, column in enumerate(columns):
            b[:, j] = column[start:stop]
        out += w @ b
    return out


@njit(cache=True, nogil=True)
def _mix_one(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _poisson_counts(
    base: np.ndarray, counts: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    """out[r, i] = Poisson(1) count of key i in resample r: the 16-bit slice r % 4 of
    mix64(base[i] + (r // 4 + 1) * golden), through the inverse CDF table ``counts``."""
    n_resamples, n = out.shape
    for q in range((n_resamples + 3) // 4):
        step = np.uint64(q + 1) * np.uint64(0x9E3779B97F4A7C15)
        for i in range(n):
            h = _mix_one(base[i] + step)
            for j in range(4):
                r = 4 * q + j
                if r >= n_resamples:
                    break
                out[r, i] = counts[(h >> np.uint64(16 * j)) & np.uint64(0xFFFF)]


def keyed_poisson_counts(keys: np.ndarray, n_resamples: int, salt: int) -> FloatArray:
    """Poisson(1) counts of int64 ``keys`` in ``n_resamples`` resamples, (n_resamples, n):
    a pure function of (salt, key, resample)."""
    base = mix64(np.asarray(keys, dtype=np.int64).view(np.uint64) ^ np.uint64(salt))
    out = np.empty((n_resamples, base.shape[0]))
    _poisson_counts(base, _COUNTS, out)
    return out


def percentile_interval(values: FloatArray, alpha: float) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN replicates are dropped)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# ---------------------------------------------------------------------- clustered


def mix64(x: np.ndarray | int) -> np.ndarray:
    """splitmix64 of every element (uint64 in, uint64 out): a fixed, well-mixed 64-bit hash.

    Examples
    --------
    >>> int(mix64(0)), int(mix64(np.array([1], dtype=np.uint64))[0]) == int(mix64(1))
    (16294208416658607535, True)
    """
    with np.errstate(over="ignore"):
        z = np.array(x, dtype=np.uint64, copy=True) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        result: np.ndarray = z ^ (z >> np.uint64(31))
    return result


def _salt(seed: int, tag: int) -> np.uint64:
    return np.uint64(mix64(int(mix64(seed & 0xFFFFFFFFFFFFFFFF)) ^ tag))


def customer_keys(values: Any, positions: np.ndarray | None = None) -> np.ndarray:
    """A stable int64 key of every customer id (equal ids, equal keys, in every process and
    whatever else is in the batch): integers hashed by :func:`mix64`, other ids by the
    blake2b digest of their text. A null id is a customer of its own, keyed by its row's
    position in the log (``positions``, by default 0..n-1), so batches of one log that pass
    their rows' positions keep those apart too.

    ``values`` is a pyarrow array or anything numpy takes.

    Examples
    --------
    >>> a = customer_keys(np.array(["c2", "c1", "c2"], dtype=object))
    >>> bool(a[0] == a[2] != a[1]), bool(customer_keys(np.array(["c1"]))[0] == a[1])
    (True, True)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n = len(array)
    nulls = array.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(array.type):
        ints = array.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
        keys = mix64(ints.view(np.uint64) ^ _salt(0, _INT_TAG))
    else:
        encoded = pc.dictionary_encode(array.cast(pa.string()))
        digests = np.array(
            [
                int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little")
                for v in encoded.dictionary.to_pylist()
            ],
            dtype=np.uint64,
        )
        index = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        keys = digests[index] if digests.size else np.zeros(n, dtype=np.uint64)
    if nulls.any():
        where = np.flatnonzero(nulls)
        rows = (where if positions is None else np.asarray(positions)[where]).astype(np.uint64)
        keys[nulls] = mix64(rows ^ _salt(0, _NULL_TAG))
    return keys.view(np.int64)


def customer_fold(keys: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each customer's cross-fitting fold in [0, folds): a seeded hash of its key, so a
    customer's fold is known from its key alone (in memory or one batch of rows at a time)."""
    h = mix64(np.asarray(keys, dtype=np.int64).view(np.uint64) ^ _salt(seed, _FOLD_TAG))
    return (h % np.uint64(folds)).astype(np.int64)


def row_fold(rows: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The cross-fitting fold of rows (each its own unit) by their index in the log."""
    h = mix64(np.asarray(rows, dtype=np.int64).view(np.uint64) ^ _salt(seed, _ROW_FOLD_TAG))
    return (h % np.uint64(folds)).astype(np.int64)


def customer_bucket(keys: np.ndarray, buckets: int) -> np.ndarray:
    """The reduce bucket in [0, buckets) of each customer key (for the sharded shuffle)."""
    h = mix64(np.asarray(keys, dtype=np.int64).view(np.uint64) ^ _salt(0, _BUCKET_TAG))
    return (h % np.uint64(buckets)).astype(np.int64)


def customer_weights(keys: np.ndarray, n_resamples: int, seed: int) -> FloatArray:
    """Poisson(1) weight of every customer in every resample, array (n_resamples, n_keys):
    resample r weighs customer g by a count drawn from the hash of (seed, key_g, r) alone, so
    a customer's weights do not depend on which other customers sit beside it, in what order
    or in which shard; sums over disjoint sets of customers add."""
    return keyed_poisson_counts(keys, n_resamples, int(_salt(seed, _BOOT_TAG)))


def customer_bootstrap_sums(
    keys: np.ndarray, columns: FloatArray, n_resamples: int, seed: int
) -> FloatArray:
    """Σ_g w_rg columns_g for every resample r (weights of :func:`customer_weights`),
    array of shape (n_resamples, n_columns)."""
    base = mix64(np.asarray(keys, dtype=np.int64).view(np.uint64) ^ _salt(seed, _BOOT_TAG))
    columns = np.asarray(columns, dtype=np.float64).reshape(len(keys), -1)
    return _keyed_sums(base, _column_list(columns), n_resamples)


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


def merge_keyed(parts: list[tuple[np.ndarray, FloatArray]]) -> tuple[np.ndarray, FloatArray]:
    """Add per-customer totals of several batches: ``(keys (n_i,), totals (n_i, ...))`` each ->
    the sorted distinct keys and their summed totals."""
    keys = np.concatenate([k for k, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
    if not parts:
        return keys, np.zeros((0, 4))
    totals = np.concatenate([t for _, t in parts])
    unique, inverse = np.unique(keys, return_inverse=True)
    if unique.shape[0] == keys.shape[0]:
        order = np.argsort(keys, kind="stable")
        return unique, totals[order]
    flat = totals.reshape(totals.shape[0], -1)
    out = np.zeros((unique.shape[0], flat.shape[1]))
    np.add.at(out, inverse, flat)
    return unique, out.reshape((unique.shape[0], *totals.shape[1:]))


@dataclass(frozen=True, eq=False)
class ClusterSums:
    """What the clustered intervals of S estimator slots (a candidate's estimator each) need
    from a set of customers, additive over disjoint sets (reduce buckets).

    With the slot's global sums N, A, B, C (over every customer) fixed beforehand, a customer's
    influence is ψ_g = G φ_g with φ_g = (A_g - A/N N_g)/N + (B_g - B/C C_g)/C, linear in its
    totals; so Σφ², min φ and max φ add over buckets, and so do the Poisson-bootstrap sums of
    the totals (each customer's weights depend only on its key, :func:`customer_weights`).

    Attributes
    ----------
    n_clusters : int
        Customers (with rows) in the set.
    phi2, low, high : arrays of shape (S,)
        Σφ², min φ and max φ per slot.
    boot : array of shape (n_resamples, S, 4), or None without a bootstrap
        Bootstrap sums of (N_g, A_g, B_g, C_g) per slot.
    """

    n_clusters: int
    phi2: FloatArray
    low: FloatArray
    high: FloatArray
    boot: FloatArray | None

    @classmethod
    def of(
        cls,
        keys: np.ndarray,
        totals: FloatArray,
        global_sums: FloatArray,
        n_resamples: int,
        seed: int,
    ) -> ClusterSums:
        """From distinct customers ``keys`` (G,), their totals (G, S, 4) and each slot's
        global sums (S, 4) of 1, a, b, c."""
        totals = np.asarray(totals, dtype=np.float64).reshape(len(keys), -1, 4)
        s = totals.shape[1]
        present = totals[:, 0, 0] > 0 if s else np.zeros(len(keys), dtype=np.bool_)
        keys, totals = keys[present], totals[present]
        g = int(keys.shape[0])
        n, a, b, c = (np.asarray(global_sums, dtype=np.float64).reshape(s, 4)).T
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = (totals[:, :, 1] - (a / n) * totals[:, :, 0]) / n + (
                totals[:, :, 2] - (b / c) * totals[:, :, 3]
            ) / c
        if g:
            phi2 = np.einsum("gs,gs->s", phi, phi)
            low, high = phi.min(axis=0), phi.max(axis=0)
        else:
            phi2, low, high = np.zeros(s), np.full(s, np.inf), np.full(s, -np.inf)
        boot = None
        if n_resamples > 0:
            flat = totals.reshape(g, s * 4)
            # Columns shared by several slots (the row count, w r, w, ...) are resampled once.
            distinct, inverse = np.unique(flat, axis=1, return_inverse=True) if g else (flat, None)
            sums = customer_bootstrap_sums(keys, distinct, n_resamples, seed)
            boot = (sums if inverse is None else sums[:, np.ravel(inverse)]).reshape(
                n_resamples, s, 4
            )
        return cls(g, phi2, low, high, boot)

    def __add__(self, other: ClusterSums) -> ClusterSums:
        boot = None
        if self.boot is not None and other.boot is not None:
            boot = self.boot + other.boot
        return ClusterSums(
            self.n_clusters + other.n_clusters,
            self.phi2 + other.phi2,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
            boot,
        )

    def std_error(self, slot: int) -> float:
        """Cluster-robust standard error, sqrt(Σψ² / (G (G - 1))) = sqrt(G Σφ² / (G - 1))."""
        g = self.n_clusters
        if g < 2 or not np.isfinite(self.phi2[slot]):
            return math.nan
        return float(math.sqrt(g * float(self.phi2[slot]) / (g - 1)))

    def normal_interval(self, slot: int, value: float, alpha: float) -> tuple[float, float]:
        z = norm_ppf(1.0 - alpha / 2.0)
        se = self.std_error(slot)
        return value - z * se, value + z * se

    def bernstein_interval(self, slot: int, value: float, alpha: float) -> tuple[float, float]:
        """Empirical-Bernstein interval over customers (see :meth:`Moments.bernstein_interval`),
        the range of the customers' influence as the bound of one unit."""
        g = self.n_clusters
        if g < 2 or not np.isfinite(self.phi2[slot]):
            return math.nan, math.nan
        variance = g * g * float(self.phi2[slot]) / (g - 1)
        span = g * float(self.high[slot] - self.low[slot])
        log_term = math.log(2.0 / (alpha / 2.0))
        half = math.sqrt(2.0 * variance * log_term / g) + 7.0 * span * log_term / (3.0 * (g - 1))
        return value - half, value + half


@dataclass(frozen=True)
class ClusteredMoments:
    """An estimator's terms summed per cluster (customer), for intervals that resample customers.

    Rows of one customer are correlated (the same person returns, with the same tastes), so the
    independent units are customers, not rows. With per-cluster totals N_g, A_g, B_g, C_g of
    1, a, b, c the estimate is ΣA/ΣN + ΣB/ΣC, and its cluster-robust (delta-method) variance sums
    the influence of whole clusters,

        ψ_g = (A_g - mean_a N_g) / mean_N + (B_g - θ C_g) / mean_C,   var = Σψ² / (G (G - 1)),

    which is :meth:`Moments.std_error` when every cluster is one row. The bootstrap weighs
    each customer by Poisson(1) counts drawn from its key (:func:`customer_weights`).

    Attributes
    ----------
    totals : array of shape (n_clusters, 4)
        Per-cluster sums of 1, a, b, c; clusters without rows are dropped.
    keys : array of shape (n_clusters,), int64
        Each cluster's key (:func:`customer_keys`, or the integer customer code).

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([1.0, 2.0, 3.0, 4.0])
    >>> rows = ClusteredMoments.from_terms((None, b, None), np.arange(4))
    >>> rows.std_error() == Moments.from_terms(None, b, None, n=4).std_error()
    True
    >>> pairs = ClusteredMoments.from_terms((None, b, None), np.array([0, 0, 1, 1]))
    >>> pairs.estimate(), pairs.n_clusters
    (2.5, 2)
    """

    totals: FloatArray
    keys: np.ndarray

    def __post_init__(self) -> None:
        totals = np.asarray(self.totals, dtype=np.float64).reshape(-1, 4)
        keep = totals[:, 0] > 0
        object.__setattr__(self, "totals", totals[keep])
        object.__setattr__(self, "keys", np.asarray(self.keys, dtype=np.int64)[keep])

    @classmethod
    def from_terms(cls, terms: Terms, cluster: np.ndarray) -> ClusteredMoments:
        """From per-row terms and each row's cluster: integer keys, or ids of any kind
        (hashed by :func:`customer_keys`)."""
        cluster = np.asarray(cluster)
        if not np.issubdtype(cluster.dtype, np.integer):
            cluster = customer_keys(cluster)
        keys, inverse = np.unique(cluster, return_inverse=True)
        n = cluster.shape[0]
        return cls(cluster_totals(terms_columns(terms, n), inverse, keys.shape[0]), keys)

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
        sums = customer_bootstrap_sums(self.keys, self.totals, n_bootstrap, seed)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = sums[:, 1] / sums[:, 0] + sums[:, 2] / sums[:, 3]
        return percentile_interval(values, alpha)
