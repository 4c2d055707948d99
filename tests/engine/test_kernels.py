"""Kernels against plain numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special, stats

from engine.kernels import (
    choose_gaussian_thompson,
    choose_greedy,
    choose_softmax,
    gaussian_win_probability,
    kron_predict,
    ridge_predict,
    ridge_update,
    seed_state,
)
from engine.kernels.rng import beta, standard_normal, uniform
from engine.kernels.stats import norm_cdf, norm_cdf_tabulated, norm_ppf, norm_ppf_approx


def _ridge_state(k: int, d: int, l2: float = 1.0) -> list[np.ndarray]:
    return [
        np.repeat(np.eye(d)[None] * l2, k, axis=0),
        np.repeat(np.eye(d)[None] / l2, k, axis=0),
        np.zeros((k, d)),
        np.zeros((k, d)),
        np.zeros(k, np.int64),
        np.zeros(k),
        np.zeros(k),
    ]


@pytest.mark.parametrize("n", [1, 5, 700])  # loop branch and blocked BLAS branch
def test_ridge_predict_matches_numpy(n: int) -> None:
    rng = np.random.default_rng(0)
    k, d = 3, 6
    X = rng.normal(size=(n, d))
    theta = rng.normal(size=(k, d))
    M = rng.normal(size=(k, d, d))
    A_inv = np.einsum("kij,klj->kil", M, M) + np.eye(d)
    scores, widths = np.empty((n, k)), np.empty((n, k))
    ridge_predict(X, theta, A_inv, 0.7, scores, widths)
    ref_w = np.sqrt(np.einsum("ni,kij,nj->nk", X, A_inv, X))
    np.testing.assert_allclose(widths, ref_w, rtol=1e-10)
    np.testing.assert_allclose(scores, X @ theta.T + 0.7 * ref_w, rtol=1e-10)
    means = np.empty((n, k))
    ridge_predict(X, theta, A_inv[:0], 0.0, means, widths)
    np.testing.assert_allclose(means, X @ theta.T, rtol=1e-10)


def test_kron_predict_matches_the_formed_joint_features() -> None:
    rng = np.random.default_rng(1)
    n, d, k, q = 9, 5, 12, 4
    X = rng.normal(size=(n, d))
    X[:, 2] = 0.0  # zero features are skipped, not mis-scored
    G = rng.normal(size=(k, q))
    G[:, 1] = 0.0
    theta = rng.normal(size=d * q)
    M = rng.normal(size=(d * q, d * q))
    A_inv = M @ M.T + np.eye(d * q)
    Z = (X[:, None, :, None] * G[None, :, None, :]).reshape(n * k, d * q)  # z = x (x) g
    ref_w = np.sqrt(np.einsum("ri,ij,rj->r", Z, A_inv, Z)).reshape(n, k)
    scores, widths = np.empty((n, k)), np.empty((n, k))
    kron_predict(X, G, theta, A_inv, 0.3, scores, widths)
    np.testing.assert_allclose(widths, ref_w, rtol=1e-10)
    np.testing.assert_allclose(scores, (Z @ theta).reshape(n, k) + 0.3 * ref_w, rtol=1e-10)
    kron_predict(X, G, theta, A_inv[:0, :0], 0.0, scores, widths)
    np.testing.assert_allclose(scores, (Z @ theta).reshape(n, k), rtol=1e-10)


@pytest.mark.slow
def test_million_rank_one_updates_match_closed_form_ridge() -> None:
    """Sherman-Morrison + periodic Cholesky refactorization stay within 1e-6 of exact ridge."""
    rng = np.random.default_rng(1)
    n, d = 1_000_000, 8
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10.0, size=d)
    w_true = rng.normal(size=d)
    y = X @ w_true + rng.normal(size=n)
    weights = rng.uniform(0.5, 2.0, size=n)
    state = _ridge_state(1, d, l2=0.5)
    for start in range(0, n, 100_000):
        sl = slice(start, start + 100_000)
        ridge_update(*state, X[sl], np.zeros(100_000, np.int64), y[sl], weights[sl], 1000)
    A = 0.5 * np.eye(d) + (X * weights[:, None]).T @ X
    theta = np.linalg.solve(A, (X * weights[:, None]).T @ y)
    np.testing.assert_allclose(state[3][0], theta, rtol=1e-6)
    np.testing.assert_allclose(state[1][0], np.linalg.inv(A), rtol=1e-6, atol=1e-15)
    assert state[5][0] == pytest.approx(weights.sum())


def test_sherman_morrison_between_refactorizations() -> None:
    rng = np.random.default_rng(2)
    d, n = 5, 999
    X = rng.normal(size=(n, d))
    y = rng.normal(size=n)
    state = _ridge_state(2, d)
    actions = rng.integers(0, 2, n)
    ridge_update(*state, X, actions, y, np.ones(n), 10**9)  # never refactor: pure rank-1
    for a in range(2):
        Xa, ya = X[actions == a], y[actions == a]
        A = np.eye(d) + Xa.T @ Xa
        np.testing.assert_allclose(state[3][a], np.linalg.solve(A, Xa.T @ ya), rtol=1e-8)
        np.testing.assert_allclose(state[0][a], A, rtol=1e-12)


def test_normal_functions_match_scipy() -> None:
    xs = np.linspace(-9, 9, 181)
    np.testing.assert_allclose([norm_cdf(x) for x in xs], special.ndtr(xs), rtol=1e-13, atol=1e-300)
    ps = np.concatenate(
        [np.logspace(-300, -1, 60), np.linspace(0.01, 0.99, 99), 1 - np.logspace(-15, -2, 20)]
    )
    np.testing.assert_allclose([norm_ppf(p) for p in ps], special.ndtri(ps), rtol=1e-12)


def test_the_propensities_fast_normal_functions_are_within_their_documented_errors() -> None:
    # Dense enough to land between every pair of table nodes many times, and past both ends.
    xs = np.concatenate([np.linspace(-40, 10, 400_001), [-np.inf, np.inf]])
    table = np.array([norm_cdf_tabulated(x) for x in xs])
    assert np.max(np.abs(table - special.ndtr(xs))) <= 6e-12
    assert np.all(table[xs >= 8.3] == 1.0) and np.all((table >= 0.0) & (table <= 1.0))
    tail = xs < -6.0  # erfc there: the far tail keeps its relative accuracy
    np.testing.assert_allclose(table[tail], special.ndtr(xs[tail]), rtol=1e-13, atol=1e-300)
    ps = np.concatenate(
        [np.logspace(-300, -1, 60), np.linspace(0.01, 0.99, 99), 1 - np.logspace(-15, -2, 20)]
    )
    np.testing.assert_allclose([norm_ppf_approx(p) for p in ps], special.ndtri(ps), rtol=1.2e-9)


def test_random_generators_have_the_right_moments() -> None:
    state = seed_state(3)
    u = np.array([uniform(state) for _ in range(50_000)])
    z = np.array([standard_normal(state) for _ in range(50_000)])
    b = np.array([beta(state, 2.0, 5.0) for _ in range(20_000)])
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert stats.kstest(b, "beta", args=(2.0, 5.0)).pvalue > 1e-3
    small = np.array([beta(state, 0.3, 0.5) for _ in range(20_000)])  # shape < 1 branch
    assert stats.kstest(small, "beta", args=(0.3, 0.5)).pvalue > 1e-3


def test_same_seed_same_stream_and_different_seeds_differ() -> None:
    a, b, c = seed_state(7), seed_state(7), seed_state(8)
    xa = [uniform(a) for _ in range(5)]
    assert xa == [uniform(b) for _ in range(5)]
    assert xa != [uniform(c) for _ in range(5)]


def test_greedy_with_floor_and_ties_exact_probabilities() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 0.0, 2.0]])
    mask = np.array([[True, True, True, True, False]])
    n = 200_000
    S = np.repeat(scores, n, axis=0)
    M = np.repeat(mask, n, axis=0)
    actions, props, explored = np.empty(n, np.int64), np.empty(n), np.empty(n, np.bool_)
    choose_greedy(S, M, 0.0, 0.05, seed_state(0), actions, props, explored)
    expected = np.array([0.05, 0.05 + 0.4, 0.05 + 0.4, 0.05, 0.0])
    freq = np.bincount(actions, minlength=5) / n
    np.testing.assert_allclose(freq, expected, atol=0.004)
    np.testing.assert_allclose(props, expected[actions])
    assert (explored == np.isin(actions, [0, 3])).all()
    assert np.isneginf(S[:, 4]).all()


def test_softmax_probabilities() -> None:
    scores = np.array([[0.0, 1.0, 2.0]])
    n = 200_000
    actions, props, explored = np.empty(n, np.int64), np.empty(n), np.empty(n, np.bool_)
    choose_softmax(
        np.repeat(scores, n, axis=0),
        np.ones((n, 3), np.bool_),
        0.5,
        0.1,
        seed_state(1),
        actions,
        props,
        explored,
    )
    soft = np.exp(scores[0] / 0.5) / np.exp(scores[0] / 0.5).sum()
    expected = 0.1 + (1 - 0.3) * soft
    np.testing.assert_allclose(np.bincount(actions, minlength=3) / n, expected, atol=0.004)
    np.testing.assert_allclose(props, expected[actions])


@pytest.mark.parametrize(
    "means, sds",
    [
        ([0.0, 0.1, -0.2, 0.05], [1.0, 0.5, 2.0, 0.1]),
        ([1.0, 0.99, 0.0, 1.01], [0.01, 0.02, 0.3, 0.005]),
        ([0.0, 5.0, 0.0], [1.0, 0.1, 1.0]),
    ],
)
def test_gaussian_win_probability_within_bound_of_monte_carlo(means: list, sds: list) -> None:
    m, s = np.array(means), np.array(sds)
    mask = np.ones(len(m), np.bool_)
    rng = np.random.default_rng(0)
    draws = rng.normal(m, s, size=(400_000, len(m)))
    truth = np.bincount(draws.argmax(axis=1), minlength=len(m)) / len(draws)
    for n_draws in (16, 128):
        est = np.array([gaussian_win_probability(m, s, mask, a, n_draws) for a in range(len(m))])
        assert np.all(np.abs(est - truth) <= 1.0 / n_draws + 0.003), (est, truth)


def _win_probability_by_quadrature(m: np.ndarray, s: np.ndarray, mask: np.ndarray, a: int) -> float:
    """P(a's draw is the largest) by adaptive quadrature over a's standardized draw z."""
    others = [b for b in range(len(m)) if b != a and mask[b]]

    def density(z: float) -> float:
        v = m[a] + s[a] * z
        return float(
            stats.norm.pdf(z) * np.prod([stats.norm.cdf((v - m[b]) / s[b]) for b in others])
        )

    # the integrand's steep parts sit where a's draw meets another's mean
    kinks = sorted({float((m[b] - m[a]) / s[a]) for b in others if abs(m[b] - m[a]) < 12 * s[a]})
    return integrate.quad(density, -12, 12, points=kinks, limit=500, epsabs=1e-12)[0]


def test_gaussian_win_probability_within_its_certified_bound() -> None:
    """The adaptive trapezoid's error is at most 1 / n_draws on every row, for many shapes of
    the integrand: near ties, clear winners, a few very sure models, ineligible offers."""
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(300):
        k = int(rng.integers(2, 10))
        m = rng.normal(0.0, rng.choice([0.01, 0.3, 1.0, 3.0]), k)
        s = np.abs(rng.normal(0.0, rng.choice([0.01, 0.1, 1.0]), k)) + 1e-4
        mask = rng.random(k) < 0.9
        a = int(rng.integers(k))
        mask[a] = True
        exact = _win_probability_by_quadrature(m, s, mask, a)
        for n_draws in (2, 5, 16, 128):
            est = gaussian_win_probability(m, s, mask, a, n_draws)
            assert 0.0 <= est <= 1.0
            worst = max(worst, abs(est - exact) * n_draws)
    assert worst <= 1.0 + 1e-6, worst


def test_gaussian_win_probability_of_a_sure_model_is_exact() -> None:
    """A model with no uncertainty draws its mean: the probability is a product of CDFs."""
    m, s = np.array([0.5, 0.0, 1.0]), np.array([0.0, 1.0, 2.0])
    mask = np.ones(3, np.bool_)
    exact = stats.norm.cdf(0.5) * stats.norm.cdf(-0.25)
    assert gaussian_win_probability(m, s, mask, 0, 16) == pytest.approx(exact, abs=1e-10)


def test_gaussian_thompson_propensities_match_frequencies() -> None:
    means = np.array([[0.0, 0.2, 0.1, -1.0]])
    sds = np.array([[0.3, 0.2, 0.5, 0.4]])
    mask = np.array([[True, True, True, False]])
    n = 100_000
    actions, props, explored = np.empty(n, np.int64), np.empty(n), np.empty(n, np.bool_)
    scores = np.empty((n, 4))
    choose_gaussian_thompson(
        np.repeat(means, n, 0),
        np.repeat(sds, n, 0),
        np.repeat(mask, n, 0),
        0.02,
        256,
        seed_state(5),
        scores,
        actions,
        props,
        explored,
    )
    freq = np.bincount(actions, minlength=4) / n
    assert freq[3] == 0.0
    for a in range(3):
        assert abs(props[actions == a].mean() - freq[a]) < 0.006
    assert (props >= 0.02).all()
