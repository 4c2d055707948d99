"""Per-offer ridge regression: batched scoring and rank-1 updates with periodic refactorization.

State of ``n_actions`` independent models over ``n_features`` dimensions:

- ``A``      (n_actions, n_features, n_features): l2 * I + sum of w x x^T, accumulated exactly;
- ``A_inv``  (n_actions, n_features, n_features): its inverse, kept by Sherman-Morrison updates;
- ``b``      (n_actions, n_features): sum of w r x;
- ``theta``  (n_actions, n_features): A^-1 b, the ridge solution;
- ``n_since_refactor`` (n_actions,) int64 and ``n_obs`` (n_actions,) float64 (sum of weights).

Sherman-Morrison drifts slowly in floating point; since ``A`` is accumulated exactly, every
``refactor_every`` updates of an action its inverse and solution are recomputed from ``A`` by a
Cholesky factorization, which bounds the drift (see tests/engine/test_kernels.py).
Kernels do no validation: callers pass C-contiguous float64 arrays of the right shapes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.kernels.choice import choose_gaussian_thompson, choose_greedy, choose_softmax
from engine.kernels.validate import first_invalid

# Rows processed per BLAS call: a (512, d) block and its product stay in L2 for d <= 128.
_BLOCK = 512
# Below this many rows plain loops beat the BLAS call overhead.
_SMALL = 8


# Reassociation lets LLVM vectorize the dot-product reductions (4-8x on AVX2); NaN/inf semantics
# are kept, since inputs are validated finite and nothing here relies on them.
_FAST = {"reassoc", "contract", "arcp", "nsz"}


@njit(cache=True, nogil=True, inline="always")
def _quadratic_form(M: np.ndarray, x: np.ndarray, v: np.ndarray) -> float:
    """x^T M x, leaving M x in ``v`` (inlined: its callers' fastmath flags apply)."""
    d = x.shape[0]
    q = 0.0
    for r in range(d):
        t = 0.0
        for c in range(d):
            t += M[r, c] * x[c]
        v[r] = t
        q += t * x[r]
    return q


@njit(cache=True, nogil=True, fastmath=_FAST)
def ridge_predict(
    X: np.ndarray,
    theta: np.ndarray,
    A_inv: np.ndarray,
    alpha: float,
    scores: np.ndarray,
    widths: np.ndarray,
) -> None:
    """Scores and confidence widths of every model for every row.

    widths[i, a] = sqrt(X[i]^T A_inv[a] X[i]) and
    scores[i, a] = X[i] . theta[a] + alpha * widths[i, a].
    Pass an ``A_inv`` with zero models (shape (0, d, d)) to get the plain means and skip the widths.

    Parameters
    ----------
    X : array of shape (n_rounds, n_features)
    theta : array of shape (n_actions, n_features)
    A_inv : array of shape (n_actions, n_features, n_features) or (0, n_features, n_features)
    scores, widths : arrays of shape (n_rounds, n_actions), written
    """
    n, d = X.shape
    k = theta.shape[0]
    with_width = A_inv.shape[0] == k
    if n < _SMALL:
        v = np.empty(d)
        for i in range(n):
            x = X[i]
            for a in range(k):
                s = 0.0
                for j in range(d):
                    s += x[j] * theta[a, j]
                w = 0.0
                if with_width:
                    q = _quadratic_form(A_inv[a], x, v)
                    w = math.sqrt(q) if q > 0.0 else 0.0
                    widths[i, a] = w
                scores[i, a] = s + alpha * w
        return
    scores[:, :] = np.dot(X, np.ascontiguousarray(theta.T))
    if not with_width:
        return
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        Xb = X[start:stop]
        for a in range(k):
            Z = np.dot(Xb, A_inv[a])
            for i in range(stop - start):
                q = 0.0
                for c in range(d):
                    q += Z[i, c] * Xb[i, c]
                w = math.sqrt(q) if q > 0.0 else 0.0
                widths[start + i, a] = w
                scores[start + i, a] += alpha * w


@njit(cache=True, nogil=True, fastmath=_FAST)
def kron_predict(
    X: np.ndarray,
    G: np.ndarray,
    theta: np.ndarray,
    A_inv: np.ndarray,
    alpha: float,
    scores: np.ndarray,
    widths: np.ndarray,
) -> None:
    """:func:`ridge_predict` of one model over the joint features z = x (x) g (flattened as
    ``z[i * q + k] = x[i] * g[k]``) of every row x of X and every row g of G, without forming z.

    For each row the q x q matrix P[k, l] = sum_ij x_i x_j A_inv[i q + k, j q + l] is built once
    (d^2 q^2 work); each action's width is then sqrt(g' P g) and its mean g . (Theta x), so a
    row costs d^2 q^2 + n_actions q^2 instead of n_actions d^2 q^2 (SharedLinear over many
    combinations). Pass an ``A_inv`` of shape (0, 0) to skip the widths.

    P is built in two steps: S[k, c] = sum_i x_i A_inv[i q + k, c] reads A_inv once, row after
    row, as scaled additions of whole rows (which vectorize: no reduction in the inner loop),
    then P[k, l] = sum_j x_j S[k, j q + l] (d q^2 more). Rows of a zero x_i are skipped.

    Parameters
    ----------
    X : array of shape (n_rounds, d)
    G : array of shape (n_actions, q)
    theta : array of shape (d * q,)
    A_inv : array of shape (d * q, d * q) or (0, 0)
    scores, widths : arrays of shape (n_rounds, n_actions), written
    """
    n, d = X.shape
    k_actions, q = G.shape
    dq = d * q
    with_width = A_inv.shape[0] == dq
    P = np.empty((q, q))
    t = np.empty(q)
    S = np.empty((q, dq)) if with_width else np.empty((0, 0))
    for r in range(n):
        x = X[r]
        for k in range(q):
            s = 0.0
            for i in range(d):
                s += x[i] * theta[i * q + k]
            t[k] = s
        if with_width:
            S[:, :] = 0.0
            for i in range(d):
                xi = x[i]
                if xi == 0.0:
                    continue
                for k in range(q):
                    src = A_inv[i * q + k]
                    dst = S[k]
                    for c in range(dq):
                        dst[c] += xi * src[c]
            for k in range(q):
                for m in range(q):
                    P[k, m] = 0.0
                for j in range(d):
                    xj = x[j]
                    for m in range(q):
                        P[k, m] += xj * S[k, j * q + m]
        for a in range(k_actions):
            s = 0.0
            for k in range(q):
                s += G[a, k] * t[k]
            w = 0.0
            if with_width:
                form = 0.0
                for k in range(q):
                    gk = G[a, k]
                    if gk == 0.0:
                        continue
                    acc = 0.0
                    for m in range(q):
                        acc += P[k, m] * G[a, m]
                    form += gk * acc
                w = math.sqrt(form) if form > 0.0 else 0.0
                widths[r, a] = w
            scores[r, a] = s + alpha * w


@njit(cache=True, nogil=True)
def refactor(A: np.ndarray, A_inv: np.ndarray, b: np.ndarray, theta: np.ndarray, a: int) -> None:
    """Recompute A_inv[a] and theta[a] from the exactly accumulated A[a] and b[a]."""
    d = A.shape[1]
    L = np.linalg.cholesky(A[a])
    L_inv = np.linalg.solve(L, np.eye(d))
    inv = np.dot(L_inv.T, L_inv)
    A_inv[a] = inv
    y = np.dot(L_inv, b[a])
    theta[a] = np.dot(L_inv.T, y)


@njit(cache=True, nogil=True, fastmath=_FAST)
def ridge_update(
    A: np.ndarray,
    A_inv: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    n_since_refactor: np.ndarray,
    n_obs: np.ndarray,
    rr: np.ndarray,
    X: np.ndarray,
    actions: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    refactor_every: int,
) -> None:
    """Apply one weighted observation (X[i], targets[i], weights[i]) per row to model actions[i]
    (``rr[a]`` sums w r^2, for :func:`pooled_noise`)."""
    n, d = X.shape
    v = np.empty(d)
    for i in range(n):
        a = actions[i]
        w = weights[i]
        r = targets[i]
        x = X[i]
        Ai = A_inv[a]
        q = _quadratic_form(Ai, x, v)
        coef = w / (1.0 + w * q)
        Aa = A[a]
        ba = b[a]
        for row in range(d):
            vr = coef * v[row]
            wx = w * x[row]
            for c in range(d):
                Ai[row, c] -= vr * v[c]
                Aa[row, c] += wx * x[c]
            ba[row] += wx * r
        n_obs[a] += w
        rr[a] += w * r * r
        n_since_refactor[a] += 1
        if n_since_refactor[a] >= refactor_every:
            refactor(A, A_inv, b, theta, a)
            n_since_refactor[a] = 0
        else:
            th = theta[a]
            for row in range(d):
                s = 0.0
                for c in range(d):
                    s += Ai[row, c] * ba[c]
                th[row] = s


@njit(cache=True, nogil=True)
def pooled_noise(
    rr: np.ndarray,
    theta: np.ndarray,
    b: np.ndarray,
    n_obs: np.ndarray,
    retired_residual: float,
    retired_weight: float,
    floor: float,
) -> float:
    """Pooled residual deviation of the ridge fits: sqrt(sum_a (rr[a] - theta[a] . b[a]) / n),
    the retired terms included (at least ``floor``; 1.0 before any weight)."""
    k, d = theta.shape
    residual = retired_residual
    n = retired_weight
    for a in range(k):
        s = rr[a]
        for j in range(d):
            s -= theta[a, j] * b[a, j]
        residual += s
        n += n_obs[a]
    if n <= 0.0:
        return 1.0
    return max(math.sqrt(max(residual, 0.0) / n), floor)


@njit(cache=True, nogil=True)
def ridge_choose_greedy(
    X: np.ndarray,
    theta: np.ndarray,
    A_inv: np.ndarray,
    alpha: float,
    mask: np.ndarray,
    epsilon: float,
    floor: float,
    state: np.ndarray,
    scores: np.ndarray,
    actions: np.ndarray,
    propensities: np.ndarray,
    explored: np.ndarray,
) -> None:
    """``ridge_predict`` then ``choose_greedy`` in one call: on the single-row path the call
    overhead is a large share of a decision (LinUCB, EpsilonGreedy)."""
    widths = np.empty_like(scores) if A_inv.shape[0] == theta.shape[0] else scores
    ridge_predict(X, theta, A_inv, alpha, scores, widths)
    choose_greedy(scores, mask, epsilon, floor, state, actions, propensities, explored)


@njit(cache=True, nogil=True)
def ridge_choose_one(
    x: np.ndarray,
    theta: np.ndarray,
    A_inv: np.ndarray,
    alpha: float,
    mask: np.ndarray,
    epsilon: float,
    floor: float,
    n_draws: int,
    state: np.ndarray,
    limit: float,
) -> tuple[int, float]:
    """A ridge policy's choice for one context ``x`` of shape (d,) and a mask of shape (1, k):
    ``(action, propensity)``, or ``(-1, 0.0)`` (nothing drawn) when an entry of ``x`` is not
    finite or exceeds ``limit``. Its one-row outputs live here, not in the caller: on this path
    the arguments' unboxing costs more than the model's arithmetic.

    With ``n_draws`` 0 it is :func:`ridge_choose_greedy`'s choice (LinUCB, EpsilonGreedy): the
    scores x . theta + ``alpha`` width, greedy with ``epsilon`` exploration. Otherwise it is
    LinearTS's: the means and widths of :func:`ridge_predict` (widths times ``alpha``), then the
    draws and the propensity (within 1 / ``n_draws``) of :func:`choose_gaussian_thompson`;
    ``epsilon`` is not used.
    """
    if first_invalid(x, limit) >= 0:
        return -1, 0.0
    k = theta.shape[0]
    row = x.reshape((1, x.shape[0]))
    scores = np.empty((1, k))
    actions = np.empty(1, np.int64)
    propensities = np.empty(1)
    explored = np.empty(1, np.bool_)
    if n_draws == 0:
        ridge_choose_greedy(
            row,
            theta,
            A_inv,
            alpha,
            mask,
            epsilon,
            floor,
            state,
            scores,
            actions,
            propensities,
            explored,
        )
    else:
        means = np.empty((1, k))
        widths = np.empty((1, k))
        ridge_predict(row, theta, A_inv, 0.0, means, widths)
        for a in range(k):
            widths[0, a] *= alpha
        choose_gaussian_thompson(
            means, widths, mask, floor, n_draws, state, scores, actions, propensities, explored
        )
    return actions[0], propensities[0]


@njit(cache=True, nogil=True)
def ridge_choose_softmax_one(
    x: np.ndarray,
    theta: np.ndarray,
    temperature: float,
    mask: np.ndarray,
    floor: float,
    state: np.ndarray,
    limit: float,
) -> tuple[int, float]:
    """Softmax's choice for one context ``x`` (d,) and a mask (1, k): the means x . theta, then
    :func:`choose_softmax` at ``temperature`` with the floor; ``(action, propensity)``, or
    ``(-1, 0.0)`` (nothing drawn) when an entry of ``x`` is not finite or exceeds ``limit``."""
    if first_invalid(x, limit) >= 0:
        return -1, 0.0
    k, d = theta.shape
    scores = np.empty((1, k))
    for a in range(k):
        s = 0.0
        for j in range(d):
            s += x[j] * theta[a, j]
        scores[0, a] = s
    actions = np.empty(1, np.int64)
    propensities = np.empty(1)
    explored = np.empty(1, np.bool_)
    choose_softmax(scores, mask, temperature, floor, state, actions, propensities, explored)
    return actions[0], propensities[0]


@njit(cache=True, nogil=True)
def shared_choose_one(
    x: np.ndarray,
    F1: np.ndarray,
    theta: np.ndarray,
    A_inv: np.ndarray,
    width: float,
    kron: bool,
    mask: np.ndarray,
    floor: float,
    state: np.ndarray,
    limit: float,
) -> tuple[int, float]:
    """SharedLinear's choice for one context ``x`` (d,) and a mask (1, k): the scores of its one
    model over z = x (x) F1[a] for every action a (``theta`` (1, D); ``A_inv`` (1, D, D), or any
    other shape for no widths), then the greedy choice with the floor; ``(action, propensity)``,
    or ``(-1, 0.0)`` (nothing drawn) when an entry of ``x`` is not finite or exceeds ``limit``.

    With ``kron`` the scores come from :func:`kron_predict`, otherwise from
    :func:`ridge_predict` of the formed joint rows: the branch and the kernels of
    ``SharedLinear._choose``, so a one-row ``choose`` gets the same numbers.
    """
    if first_invalid(x, limit) >= 0:
        return -1, 0.0
    k, q = F1.shape
    d = x.shape[0]
    row = x.reshape((1, d))
    full = A_inv.shape[0] == 1 and A_inv.shape[1] == d * q
    scores = np.empty((1, k))
    if kron:
        widths = np.empty((1, k))
        kron_predict(
            row, F1, theta[0], A_inv[0] if full else np.empty((0, 0)), width, scores, widths
        )
    else:
        Z = np.empty((k, d * q))
        for a in range(k):
            for i in range(d):
                for m in range(q):
                    Z[a, i * q + m] = x[i] * F1[a, m]
        flat = np.empty((k, 1))
        joint_widths = np.empty((k, 1))
        models = A_inv if full else np.empty((0, d * q, d * q))
        ridge_predict(Z, theta, models, width, flat, joint_widths)
        for a in range(k):
            scores[0, a] = flat[a, 0]
    actions = np.empty(1, np.int64)
    propensities = np.empty(1)
    explored = np.empty(1, np.bool_)
    choose_greedy(scores, mask, 0.0, floor, state, actions, propensities, explored)
    return actions[0], propensities[0]


@njit(cache=True, nogil=True)
def ridge_update_one(
    A: np.ndarray,
    A_inv: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    n_since_refactor: np.ndarray,
    n_obs: np.ndarray,
    rr: np.ndarray,
    x: np.ndarray,
    action: int,
    target: float,
    weight: float,
    refactor_every: int,
    limit: float,
) -> int:
    """:func:`ridge_update` of one observation, checked first: 0 when applied; 1 (``x`` not
    finite or beyond ``limit``), 2 (``action`` outside [0, k)) or 3 (``target`` not finite or
    beyond ``limit``) when refused, with nothing changed."""
    if action < 0 or action >= theta.shape[0]:
        return 2
    if not abs(target) <= limit:
        return 3
    if first_invalid(x, limit) >= 0:
        return 1
    ridge_update(
        A,
        A_inv,
        b,
        theta,
        n_since_refactor,
        n_obs,
        rr,
        x.reshape((1, x.shape[0])),
        np.full(1, action, np.int64),
        np.full(1, target),
        np.full(1, weight),
        refactor_every,
    )
    return 0
