"""Action selection with exact (or bounded-error) propensities.

Every kernel fills, per row i: ``actions[i]`` (the chosen index), ``propensities[i]`` (the
probability the policy gave that action for that row) and ``explored[i]`` (True when the chosen
action is not the policy's exploit choice). ``scores`` has -inf where ``mask`` is False, and masked
actions are never chosen. The exploration floor ``floor`` mixes any rule with the uniform
distribution over the eligible actions so that each keeps probability >= min(floor, 1/k):

    p_final(a) = f + (1 - k f) p_rule(a),   k = number of eligible actions,  f = min(floor, 1/k)

which is exact because the mixture is sampled exactly (uniform with probability k f, else the rule).
Kernels do no validation; every row of ``mask`` has at least one True entry.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.kernels.rng import standard_normal, uniform
from engine.kernels.stats import norm_cdf_tabulated, norm_ppf_approx


@njit(cache=True, nogil=True)
def _pick_uniform_eligible(mask_row: np.ndarray, k: int, state: np.ndarray) -> int:
    j = int(uniform(state) * k)
    if j >= k:
        j = k - 1
    for a in range(mask_row.shape[0]):
        if mask_row[a]:
            if j == 0:
                return a
            j -= 1
    return -1


@njit(cache=True, nogil=True)
def _mask_and_max(scores_row: np.ndarray, mask_row: np.ndarray) -> tuple[int, float]:
    """Set masked scores to -inf; return the number of eligible actions and their best score."""
    best = -math.inf
    k = 0
    for a in range(scores_row.shape[0]):
        if mask_row[a]:
            k += 1
            if scores_row[a] > best:
                best = scores_row[a]
        else:
            scores_row[a] = -math.inf
    return k, best


@njit(cache=True, nogil=True)
def _draw(p: np.ndarray, mask_row: np.ndarray, state: np.ndarray) -> int:
    """Sample an eligible action from probabilities ``p`` (summing to 1 over the eligible ones)."""
    u = uniform(state)
    acc = 0.0
    last = -1
    for a in range(p.shape[0]):
        if mask_row[a]:
            acc += p[a]
            last = a
            if u < acc:
                return a
    return last  # rounding left u above the last cumulative sum


@njit(cache=True, nogil=True)
def _choose_row(
    i: int,
    p: np.ndarray,
    mask_row: np.ndarray,
    state: np.ndarray,
    values_row: np.ndarray,
    best: float,
    actions: np.ndarray,
    propensities: np.ndarray,
    explored: np.ndarray,
) -> None:
    """Draw row ``i``'s action from ``p`` and record it with its probability; it explored when
    its value in ``values_row`` (the rule's scores or probabilities) is not the ``best``."""
    chosen = _draw(p, mask_row, state)
    actions[i] = chosen
    propensities[i] = p[chosen]
    explored[i] = values_row[chosen] != best


@njit(cache=True, nogil=True)
def choose_greedy(
    scores: np.ndarray,
    mask: np.ndarray,
    epsilon: float,
    floor: float,
    state: np.ndarray,
    actions: np.ndarray,
    propensities: np.ndarray,
    explored: np.ndarray,
) -> None:
    """Argmax of ``scores`` (ties split evenly) mixed with uniform exploration.

    The uniform share per eligible action is min(max(epsilon / k, floor), 1 / k): epsilon-greedy
    with an exploration floor; epsilon = 0 gives a greedy policy (LinUCB, UCB1) with a floor.
    """
    n, n_actions = scores.shape
    p = np.zeros(n_actions)
    for i in range(n):
        k, best = _mask_and_max(scores[i], mask[i])
        n_ties = 0
        for a in range(n_actions):
            if mask[i, a] and scores[i, a] == best:
                n_ties += 1
        f = min(max(epsilon / k, floor), 1.0 / k)
        greedy_share = (1.0 - k * f) / n_ties
        for a in range(n_actions):
            p[a] = f + (greedy_share if scores[i, a] == best else 0.0)
        _choose_row(i, p, mask[i], state, scores[i], best, actions, propensities, explored)


@njit(cache=True, nogil=True)
def choose_softmax(
    scores: np.ndarray,
    mask: np.ndarray,
    temperature: float,
    floor: float,
    state: np.ndarray,
    actions: np.ndarray,
    propensities: np.ndarray,
    explored: np.ndarray,
) -> None:
    """Boltzmann exploration p(a) proportional to exp(score / temperature), with a floor."""
    n, n_actions = scores.shape
    p = np.zeros(n_actions)
    for i in range(n):
        k, best = _mask_and_max(scores[i], mask[i])
        total = 0.0
        for a in range(n_actions):
            p[a] = math.exp((scores[i, a] - best) / temperature) if mask[i, a] else 0.0
            total += p[a]
        f = min(floor, 1.0 / k)
        for a in range(n_actions):
            p[a] = f + (1.0 - k * f) * p[a] / total
        _choose_row(i, p, mask[i], state, scores[i], best, actions, propensities, explored)


@njit(cache=True, nogil=True)
def choose_from_probabilities(
    probabilities: np.ndarray,
    mask: np.ndarray,
    floor: float,
    state: np.ndarray,
    actions: np.ndarray,
    propensities: np.ndarray,
    explored: np.ndarray,
) -> None:
    """Sample each row from ``probabilities`` (n_rounds, n_actions), renormalized over the eligible
    actions and mixed with the floor. Rows whose eligible mass is zero fall back to uniform."""
    n, n_actions = probabilities.shape
    p = np.zeros(n_actions)
    for i in range(n):
        k = 0
        total = 0.0
        best = -1.0
        for a in range(n_actions):
            if mask[i, a]:
                k += 1
                total += probabilities[i, a]
                best = max(best, probabilities[i, a])
        f = min(floor, 1.0 / k)
        for a in range(n_actions):
            base = probabilities[i, a] / total if total > 0.0 else 1.0 / k
            p[a] = f + (1.0 - k * f) * base if mask[i, a] else 0.0
        _choose_row(i, p, mask[i], state, probabilities[i], best, actions, propensities, explored)


@njit(cache=True, nogil=True)
def _beats(v: float, mean_b: float, sd_b: float, b_before_a: bool) -> float:
    """P(draw of b < v): Phi((v - mean_b) / sd_b) (tabulated), or a step when b's draw is a
    constant (ties go to the lower index, as the sampling loop breaks them)."""
    if sd_b > 0.0:
        return norm_cdf_tabulated((v - mean_b) / sd_b)
    if v > mean_b:
        return 1.0
    if v < mean_b:
        return 0.0
    return 0.0 if b_before_a else 1.0


@njit(cache=True, nogil=True)
def _win_integrand(
    u: float,
    ma: float,
    sa: float,
    means: np.ndarray,
    sds: np.ndarray,
    active: np.ndarray,
    n_active: int,
    a: int,
) -> float:
    """prod over the active b of P(b's draw < m_a + s_a Phi^-1(u)): the integrand of
    :func:`gaussian_win_probability`, increasing in u."""
    v = ma + sa * norm_ppf_approx(u)
    prod = 1.0
    for t in range(n_active):
        b = active[t]
        prod *= _beats(v, means[b], sds[b], b < a)
        if prod < 1e-300:
            return 0.0
    return prod


@njit(cache=True, nogil=True)
def _heap_push(keys: np.ndarray, heap: np.ndarray, size: int, item: int) -> int:
    """Push ``item`` onto the max-heap ``heap[:size]`` ordered by ``keys``; the new size."""
    j = size
    heap[j] = item
    while j > 0:
        parent = (j - 1) // 2
        if keys[heap[parent]] >= keys[heap[j]]:
            break
        heap[parent], heap[j] = heap[j], heap[parent]
        j = parent
    return size + 1


@njit(cache=True, nogil=True)
def _heap_pop(keys: np.ndarray, heap: np.ndarray, size: int) -> int:
    """Remove the top of the max-heap ``heap[:size]`` (read it from ``heap[0]`` first)."""
    size -= 1
    heap[0] = heap[size]
    j = 0
    while True:
        left = 2 * j + 1
        if left >= size:
            break
        c = left
        if left + 1 < size and keys[heap[left + 1]] > keys[heap[left]]:
            c = left + 1
        if keys[heap[j]] >= keys[heap[c]]:
            break
        heap[c], heap[j] = heap[j], heap[c]
        j = c
    return size


#: The narrowest interval (in u) the adaptive rule of :func:`gaussian_win_probability` splits.
_MIN_WIDTH = 2.0**-40
#: Phi^-1(_MIN_WIDTH): the rule's points lie in [_MIN_WIDTH, 1 - _MIN_WIDTH], so their draws
#: in m_a + s_a [_Z_MIN, -_Z_MIN].
_Z_MIN = -7.047700256664409


@njit(cache=True, nogil=True)
def gaussian_win_probability(
    means: np.ndarray, sds: np.ndarray, mask_row: np.ndarray, a: int, n_draws: int
) -> float:
    """P(action ``a`` has the largest of independent N(means, sds^2) draws among eligible actions),
    within 1 / ``n_draws``.

    The probability is the integral over u in (0, 1) of
    f(u) = prod_{b != a} Phi((m_a + s_a Phi^-1(u) - m_b) / s_b),
    an increasing function from f(0) = 0 to f(1) = 1. On an interval [l, r] the integral lies
    between (r - l) f(l) and (r - l) f(r), so the trapezoid (r - l) (f(l) + f(r)) / 2 is off by
    at most (r - l) (f(r) - f(l)) / 2: summed over a partition of (0, 1), a certified bound on the
    error. The rule starts from [0, 1] and halves the interval with the largest
    (r - l) (f(r) - f(l)) until the bound is at most 1 / ``n_draws``. A uniform partition would
    need ``n_draws`` / 2 points for every row; where f rises steeply (the usual case once the
    models have learned, the winner's f is near 1 over most of (0, 1)), a dozen or so points reach
    the same bound, because the intervals where f is flat add nothing to it. The estimate is
    deterministic: no random numbers. If the refinement runs out of room (more than
    ``n_draws`` + 1 intervals, or one narrower than 2^-40), the rule falls back to the uniform
    trapezoid over ceil(``n_draws`` / 2) intervals, which meets the bound for any increasing f.

    Two approximations make a point cheap: its quantile comes from :func:`norm_ppf_approx`
    (relative error < 1.2e-9, which moves a point by at most 3e-10 in u, so the estimate moves by
    at most that), and the factors from :func:`norm_cdf_tabulated` (within 6e-12 of Phi,
    n_actions x 6e-12 on the product). docs/performance.md has the speed before and after.
    """
    n_actions = means.shape[0]
    ma = means[a]
    sa = sds[a]
    # The integrand is only evaluated for draws in the range the rule's points cover.
    lo_val = ma + sa * _Z_MIN
    hi_val = ma - sa * _Z_MIN
    active = np.empty(n_actions, np.int64)
    n_active = 0
    for b in range(n_actions):
        if b == a or not mask_row[b]:
            continue
        if sds[b] > 0.0:
            # Phi is 1 (to double precision) over the whole covered range: a factor of 1.
            if (lo_val - means[b]) / sds[b] > 8.5:
                continue
            if (hi_val - means[b]) / sds[b] < -38.0:
                return 0.0
        active[n_active] = b
        n_active += 1
    if n_active == 0:
        return 1.0
    if not sa > 0.0:
        # a's draw is the constant m_a: f is constant, its value is the probability
        prod = 1.0
        for t in range(n_active):
            b = active[t]
            prod *= _beats(ma, means[b], sds[b], b < a)
        return prod
    target = 2.0 / n_draws  # on sum (r - l) (f(r) - f(l)), twice the error bound
    cap = n_draws + 2
    # columns: l, r, f(l), f(r); keys[i] = (r - l) (f(r) - f(l))
    iv = np.empty((cap, 4))
    keys = np.empty(cap)
    heap = np.empty(cap, np.int64)
    iv[0, 0], iv[0, 1], iv[0, 2], iv[0, 3] = 0.0, 1.0, 0.0, 1.0
    keys[0] = 1.0
    heap[0] = 0
    n, size, excess = 1, 1, 1.0
    while excess > target and n < cap:
        i = heap[0]
        lo, hi, f_lo, f_hi = iv[i, 0], iv[i, 1], iv[i, 2], iv[i, 3]
        if hi - lo <= _MIN_WIDTH:
            break
        size = _heap_pop(keys, heap, size)
        mid = lo + 0.5 * (hi - lo)
        f_mid = _win_integrand(mid, ma, sa, means, sds, active, n_active, a)
        f_mid = min(max(f_mid, f_lo), f_hi)  # increasing, whatever the approximations' noise
        iv[i, 1], iv[i, 3] = mid, f_mid
        iv[n, 0], iv[n, 1], iv[n, 2], iv[n, 3] = mid, hi, f_mid, f_hi
        old = keys[i]
        keys[i] = (mid - lo) * (f_mid - f_lo)
        keys[n] = (hi - mid) * (f_hi - f_mid)
        excess += keys[i] + keys[n] - old
        size = _heap_push(keys, heap, size, i)
        size = _heap_push(keys, heap, size, n)
        n += 1
    if excess > target:
        m = (n_draws + 1) // 2
        total = 0.5  # (f(0) + f(1)) / 2
        for j in range(1, m):
            total += _win_integrand(j / m, ma, sa, means, sds, active, n_active, a)
        return total / m
    total = 0.0
    for i in range(n):
        total += (iv[i, 1] - iv[i, 0]) * (iv[i, 2] + iv[i, 3])
    return 0.5 * total


@njit(cache=True, nogil=True)
def gaussian_thompson_draws(
    means: np.ndarray,
    sds: np.ndarray,
    mask: np.ndarray,
    floor: float,
    state: np.ndarray,
    scores: np.ndarray,
    actions: np.ndarray,
    explored: np.ndarray,
) -> None:
    """The sampling half of :func:`choose_gaussian_thompson`: every row's draws (``scores``) and
    its chosen action (the floor's uniform pick included), drawn from ``state`` in row order."""
    n, n_actions = means.shape
    for i in range(n):
        k = 0
        best_mean = -math.inf
        for a in range(n_actions):
            if mask[i, a]:
                k += 1
                if means[i, a] > best_mean:
                    best_mean = means[i, a]
        f = min(floor, 1.0 / k)
        best = -math.inf
        ts_choice = -1
        for a in range(n_actions):
            if mask[i, a]:
                s = means[i, a] + sds[i, a] * standard_normal(state)
                scores[i, a] = s
                if s > best:
                    best = s
                    ts_choice = a
            else:
                scores[i, a] = -math.inf
        chosen = ts_choice
        if k * f > 0.0 and uniform(state) < k * f:
            chosen = _pick_uniform_eligible(mask[i], k, state)
        actions[i] = chosen
        explored[i] = means[i, chosen] != best_mean


@njit(cache=True, nogil=True)
def gaussian_thompson_propensities(
    means: np.ndarray,
    sds: np.ndarray,
    mask: np.ndarray,
    floor: float,
    n_draws: int,
    actions: np.ndarray,
    propensities: np.ndarray,
) -> None:
    """The estimating half of :func:`choose_gaussian_thompson`: the propensity of every row's
    action (``gaussian_win_probability``, mixed with the floor). It draws nothing, so rows may be
    split between threads (the kernel releases the GIL) with the same result."""
    n, n_actions = means.shape
    for i in range(n):
        k = 0
        for a in range(n_actions):
            if mask[i, a]:
                k += 1
        f = min(floor, 1.0 / k)
        p_ts = gaussian_win_probability(means[i], sds[i], mask[i], actions[i], n_draws)
        p = f + (1.0 - k * f) * p_ts
        if p <= 0.0:
            # The chosen action was actually drawn, so its probability is positive; the integral
            # underflowed. Report the smallest positive double rather than an impossible 0.
            p = 2.2250738585072014e-308
        propensities[i] = min(p, 1.0)


@njit(cache=True, nogil=True)
def choose_gaussian_thompson(
    means: np.ndarray,
    sds: np.ndarray,
    mask: np.ndarray,
    floor: float,
    n_draws: int,
    state: np.ndarray,
    scores: np.ndarray,
    actions: np.ndarray,
    propensities: np.ndarray,
    explored: np.ndarray,
) -> None:
    """Thompson sampling when each action's sampled score is N(means[i, a], sds[i, a]^2).

    For a linear-Gaussian posterior theta_a ~ N(theta_hat_a, v^2 A_a^-1), the sampled score
    x . theta_a is exactly N(x . theta_hat_a, v^2 x^T A_a^-1 x), so one normal draw per action
    replaces a d-dimensional sample. ``scores`` receives the sampled values. The propensity of the
    chosen action is ``gaussian_win_probability`` (error <= 1 / n_draws), mixed with the floor:
    :func:`gaussian_thompson_draws` then :func:`gaussian_thompson_propensities`.
    """
    gaussian_thompson_draws(means, sds, mask, floor, state, scores, actions, explored)
    gaussian_thompson_propensities(means, sds, mask, floor, n_draws, actions, propensities)


@njit(cache=True, nogil=True)
def landing_scores(
    X: np.ndarray,
    coef: np.ndarray,
    beta: np.ndarray,
    seen: np.ndarray,
    table: np.ndarray,
    scores: np.ndarray,
) -> None:
    """LandingLift's scores of every action for the rows of ``X``: base + route term +
    P(engaged | route) x the offer's lift (docs/architecture.md, "Multi-dimensional decisions").

    ``coef`` holds the base model's row, the ``n_offers`` lift rows, then the ``n_routes``
    landing rows; ``table`` each action's (offer, route, sends); ``seen`` 1.0 for a route whose
    engagement was reported (else it is taken to land)."""
    n, d = X.shape
    n_routes = beta.shape[0]
    n_offers = coef.shape[0] - 1 - n_routes
    dots = np.empty(coef.shape[0])
    for i in range(n):
        for r in range(coef.shape[0]):
            acc = 0.0
            for j in range(d):
                acc += coef[r, j] * X[i, j]
            dots[r] = acc
        for q in range(n_routes):
            land = dots[1 + n_offers + q] if seen[q] > 0.0 else 1.0
            dots[1 + n_offers + q] = min(max(land, 0.0), 1.0)
        for a in range(table.shape[0]):
            value = dots[0]
            if table[a, 2]:
                q = table[a, 1]
                value += beta[q] + dots[1 + n_offers + q] * dots[1 + table[a, 0]]
            scores[i, a] = value


@njit(cache=True, nogil=True)
def landing_choose_one(
    x: np.ndarray,
    coef: np.ndarray,
    beta: np.ndarray,
    seen: np.ndarray,
    table: np.ndarray,
    mask: np.ndarray,
    epsilon: float,
    floor: float,
    state: np.ndarray,
    limit: float,
) -> tuple[int, float]:
    """LandingLift's choice for one context ``x`` of shape (d,) and a mask of shape (1, k):
    :func:`landing_scores`, greedy with ``epsilon`` exploration (:func:`choose_greedy`);
    ``(-1, 0.0)`` when an entry of ``x`` is not finite or exceeds ``limit``."""
    for j in range(x.shape[0]):
        if not math.isfinite(x[j]) or abs(x[j]) > limit:
            return -1, 0.0
    k = table.shape[0]
    scores = np.empty((1, k))
    landing_scores(x.reshape((1, x.shape[0])), coef, beta, seen, table, scores)
    actions = np.empty(1, np.int64)
    propensities = np.empty(1)
    explored = np.empty(1, np.bool_)
    choose_greedy(scores, mask, epsilon, floor, state, actions, propensities, explored)
    return actions[0], propensities[0]
