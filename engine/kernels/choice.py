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
from engine.kernels.stats import norm_cdf_tabulated, norm_ppf, norm_ppf_approx


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
def gaussian_win_probability(
    means: np.ndarray, sds: np.ndarray, mask_row: np.ndarray, a: int, n_draws: int, shift: float
) -> float:
    """P(action ``a`` has the largest of independent N(means, sds^2) draws among eligible actions).

    Computed as the integral over u in (0, 1) of
    prod_{b != a} Phi((m_a + s_a Phi^-1(u) - m_b) / s_b),
    an increasing function of u with values in [0, 1], by a randomly shifted midpoint rule with
    ``n_draws`` strata: u_j = (j + shift) / n_draws. The estimate is unbiased over the shift and,
    because the integrand is monotone, lies between the left and right Riemann sums, so its error
    is at most 1 / n_draws for every row, whatever the shift. Two approximations make a stratum
    cheap: the strata's quantiles come from :func:`norm_ppf_approx` (relative error < 1.2e-9:
    each point moves by at most 3e-10 in u, inside its stratum, so the 1 / n_draws bound holds
    and the estimate's mean moves by at most that), and the factors from
    :func:`norm_cdf_tabulated` (within 6e-12 of Phi, n_actions * 6e-12 on the product).
    Together with the threads of ``over_rows`` they made a LinearTS batch 3.5x faster
    (docs/performance.md).
    """
    n_actions = means.shape[0]
    ma = means[a]
    sa = sds[a]
    # The integrand only needs z in the range the strata cover.
    lo_val = ma + sa * norm_ppf(shift / n_draws)
    hi_val = ma + sa * norm_ppf((n_draws - 1 + shift) / n_draws)
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
    total = 0.0
    # Scan the strata from the top: the integrand decreases along the way, so once it reaches
    # 0 every remaining stratum contributes 0 and the scan stops. After learning, the integrand
    # is close to a step and most strata are skipped.
    for j in range(n_draws - 1, -1, -1):
        v = ma + sa * norm_ppf_approx((j + shift) / n_draws) if sa > 0.0 else ma
        prod = 1.0
        for t in range(n_active):
            b = active[t]
            prod *= _beats(v, means[b], sds[b], b < a)
            if prod < 1e-300:
                prod = 0.0
                break
        if prod == 0.0:
            break
        total += prod
    return total / n_draws


@njit(cache=True, nogil=True)
def gaussian_thompson_draws(
    means: np.ndarray,
    sds: np.ndarray,
    mask: np.ndarray,
    floor: float,
    state: np.ndarray,
    scores: np.ndarray,
    actions: np.ndarray,
    shifts: np.ndarray,
    explored: np.ndarray,
) -> None:
    """The sampling half of :func:`choose_gaussian_thompson`: every row's draws (``scores``), its
    chosen action (the floor's uniform pick included) and ``shifts[i]``, the uniform shift of the
    row's propensity estimate, drawn from ``state`` in the same order as the whole kernel."""
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
        shifts[i] = uniform(state)
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
    shifts: np.ndarray,
    propensities: np.ndarray,
) -> None:
    """The estimating half of :func:`choose_gaussian_thompson`: the propensity of every row's
    action (``gaussian_win_probability`` with the row's shift, mixed with the floor). It draws
    nothing, so rows may be split between threads (the kernel releases the GIL) with the same
    result."""
    n, n_actions = means.shape
    for i in range(n):
        k = 0
        for a in range(n_actions):
            if mask[i, a]:
                k += 1
        f = min(floor, 1.0 / k)
        p_ts = gaussian_win_probability(means[i], sds[i], mask[i], actions[i], n_draws, shifts[i])
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
    :func:`gaussian_thompson_draws` then :func:`gaussian_thompson_propensities`, whose shifts
    pass through ``propensities``.
    """
    gaussian_thompson_draws(means, sds, mask, floor, state, scores, actions, propensities, explored)
    gaussian_thompson_propensities(
        means, sds, mask, floor, n_draws, actions, propensities, propensities
    )
