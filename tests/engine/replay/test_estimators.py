"""Estimators against plain numpy references, intervals, diagnostics and coverage over seeds."""

from __future__ import annotations

import dataclasses
import re
from statistics import NormalDist

import numpy as np
import pytest

from engine.errors import InvalidInputError, InvalidParameterError
from engine.replay.diagnostics import Diagnostics, diagnostic_sums, merge_diagnostic_sums
from engine.replay.estimators import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SGIPS,
    SNDR,
    SNIPS,
    DRos,
    OffPolicyInputs,
    Replay,
    SwitchDR,
    make_estimators,
    slope,
)
from engine.replay.intervals import Moments, bootstrap_sums, percentile_interval
from engine.replay.rewardmodel import RewardModel
from engine.validation import describe, invalid_value
from tests.engine.replay.synthetic import LinearEnv, make_logs

Z = NormalDist().inv_cdf(0.975)


@pytest.fixture(scope="module")
def fixed():
    rng = np.random.default_rng(42)
    n, k = 500, 3
    logging = rng.dirichlet(np.ones(k), size=n) * 0.8 + 0.2 / k
    action = np.array([rng.choice(k, p=p) for p in logging])
    rows = np.arange(n)
    propensity = logging[rows, action]
    reward = rng.normal(loc=action.astype(float), scale=1.0)
    target = rng.dirichlet(np.ones(k), size=n)
    q_hat = rng.normal(loc=np.arange(k, dtype=float), scale=0.5, size=(n, k))
    inputs = OffPolicyInputs.from_action_dist(reward, action, propensity, target, q_hat)
    w = target[rows, action] / propensity
    return {
        "inputs": inputs,
        "w": w,
        "r": reward,
        "q_logged": q_hat[rows, action],
        "q_target": (target * q_hat).sum(axis=1),
        "p": propensity,
    }


def test_estimators_match_numpy_references(fixed):
    inputs, w, r = fixed["inputs"], fixed["w"], fixed["r"]
    ql, qt = fixed["q_logged"], fixed["q_target"]
    references = {
        IPS(): np.mean(w * r),
        IPS(clip=2.0): np.mean(np.minimum(w, 2.0) * r),
        SNIPS(): np.sum(w * r) / np.sum(w),
        SNIPS(clip=2.0): np.sum(np.minimum(w, 2.0) * r) / np.sum(np.minimum(w, 2.0)),
        DM(): np.mean(qt),
        DR(): np.mean(qt + w * (r - ql)),
        DR(clip=1.5): np.mean(qt + np.minimum(w, 1.5) * (r - ql)),
        SNDR(): np.mean(qt) + np.sum(w * (r - ql)) / np.sum(w),
        SwitchDR(threshold=2.0): np.mean(qt + np.where(w <= 2.0, w, 0.0) * (r - ql)),
        Replay(): np.sum(w * fixed["p"].min() * r) / np.sum(w * fixed["p"].min()),
        DRos(shrinkage=3.0): np.mean(qt + 3.0 * w / (w**2 + 3.0) * (r - ql)),
        DRos(shrinkage=np.inf): np.mean(qt + w * (r - ql)),
        SGIPS(shrinkage=0.2): np.mean(w / (0.8 + 0.2 * w) * r),
        SGIPS(shrinkage=0.0): np.mean(w * r),
    }
    for estimator, expected in references.items():
        assert estimator.estimate(inputs) == pytest.approx(expected, rel=1e-12), estimator


def test_replay_with_explicit_acceptance_is_mean_of_accepted_rewards():
    r = np.array([1.0, 5.0, 2.0, 7.0, 3.0])
    accepted = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    inputs = OffPolicyInputs(r, np.full(5, 0.25), np.zeros(5), accepted=accepted)
    assert Replay().estimate(inputs) == pytest.approx(2.0)
    low, high = Replay().interval(inputs, method="normal")
    influence = accepted * (r - 2.0) / accepted.mean()  # delta method for a ratio of means
    se = influence.std(ddof=1) / np.sqrt(5)
    assert high - low == pytest.approx(2 * Z * se, rel=1e-9)


def test_normal_interval_matches_delta_method_reference(fixed):
    inputs, w, r = fixed["inputs"], fixed["w"], fixed["r"]
    n = len(r)
    terms = fixed["q_target"] + w * (r - fixed["q_logged"])
    low, high = DR().interval(inputs, method="normal")
    se = terms.std(ddof=1) / np.sqrt(n)
    assert (low, high) == pytest.approx((terms.mean() - Z * se, terms.mean() + Z * se), rel=1e-9)
    theta = np.sum(w * r) / np.sum(w)
    influence = w * (r - theta) / w.mean()
    se = influence.std(ddof=1) / np.sqrt(n)
    low, high = SNIPS().interval(inputs, method="normal")
    assert (low, high) == pytest.approx((theta - Z * se, theta + Z * se), rel=1e-9)


def test_bernstein_interval_matches_reference_and_is_wider(fixed):
    inputs, w, r = fixed["inputs"], fixed["w"], fixed["r"]
    n = len(r)
    terms = w * r
    log_term = np.log(2 / 0.025)
    half = np.sqrt(2 * terms.var(ddof=1) * log_term / n) + 7 * np.ptp(terms) * log_term / (
        3 * (n - 1)
    )
    low, high = IPS().interval(inputs, method="bernstein")
    assert (low, high) == pytest.approx((terms.mean() - half, terms.mean() + half), rel=1e-9)
    n_low, n_high = IPS().interval(inputs, method="normal")
    assert low < n_low and high > n_high


def test_bootstrap_interval_is_seeded_and_close_to_normal(fixed):
    inputs = fixed["inputs"]
    a = DR().interval(inputs, method="bootstrap", n_bootstrap=400, seed=3)
    b = DR().interval(inputs, method="bootstrap", n_bootstrap=400, seed=3)
    c = DR().interval(inputs, method="bootstrap", n_bootstrap=400, seed=4)
    assert a == b and a != c
    normal = DR().interval(inputs, method="normal")
    assert a[1] - a[0] == pytest.approx(normal[1] - normal[0], rel=0.2)


def test_poisson_bootstrap_weights_have_poisson_moments():
    sums = bootstrap_sums(np.ones((200_000, 1)), 8, seed=0, first_row=5)
    weights_mean = sums[:, 0] / 200_000
    assert np.allclose(weights_mean, 1.0, atol=0.01)
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == (1.5, 2.5)


def test_moments_of_shards_add_up_to_the_whole(fixed):
    a, b, c = SNDR().terms(fixed["inputs"])
    assert b is not None and c is not None and a is not None
    whole = Moments.from_terms(a, b, c)
    parts = Moments.empty()
    for rows in np.array_split(np.arange(len(a)), 7):
        parts = parts + Moments.from_terms(a[rows], b[rows], c[rows])
    assert np.allclose(parts.sums, whole.sums)
    assert parts.estimate() == pytest.approx(whole.estimate(), rel=1e-12)
    assert parts.std_error() == pytest.approx(whole.std_error(), rel=1e-9)
    assert np.array_equal(parts.low, whole.low) and np.array_equal(parts.high, whole.high)


def test_diagnostics_reference(fixed):
    w, p = fixed["w"], fixed["p"]
    sums = diagnostic_sums(fixed["inputs"])
    half = len(w) // 2
    left = OffPolicyInputs(fixed["r"][:half], p[:half], w[:half])
    right = OffPolicyInputs(fixed["r"][half:], p[half:], w[half:])
    merged = merge_diagnostic_sums(diagnostic_sums(left), diagnostic_sums(right))
    assert np.allclose(merged, sums)
    diag = Diagnostics.from_sums(sums)
    assert diag.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert diag.min_propensity == p.min() and diag.max_weight == w.max()
    assert diag.support_share == 1.0
    assert diag.overlap_warning is None


def test_overlap_warning_when_target_rarely_matches_the_log():
    n = 5000
    w = np.zeros(n)
    w[:20] = 100.0  # a deterministic target that matches 20 rows logged at 1%
    diag = Diagnostics.from_sums(diagnostic_sums(OffPolicyInputs(np.ones(n), np.full(n, 0.01), w)))
    assert diag.ess == pytest.approx(20.0)
    assert diag.overlap_warning is not None and "effective sample size 20" in diag.overlap_warning


BAD_ESTIMATORS = [
    (lambda: IPS(clip=True), InvalidParameterError, "The 'clip' parameter of IPS must be"),
    (lambda: make_estimators(["ipss"]), InvalidInputError, "estimator: expected one of"),
]

ESTIMATOR_PARAMETERS = [
    (cls, f.name) for cls in ESTIMATORS.values() for f in dataclasses.fields(cls)
]


@pytest.mark.parametrize(
    ("cls", "parameter"),
    ESTIMATOR_PARAMETERS,
    ids=[f"{c.name}-{p}" for c, p in ESTIMATOR_PARAMETERS],
)
def test_bad_value_of_every_estimator_parameter_is_refused(cls, parameter):
    constraints = cls._parameter_constraints[parameter]
    bad = invalid_value(constraints)
    message = (
        f"The {parameter!r} parameter of {cls.__name__} must be {describe(constraints)}. "
        f"Got {bad!r} instead."
    )
    with pytest.raises(InvalidParameterError, match=f"^{re.escape(message)}$"):
        cls(**{parameter: bad})


def test_infinite_thresholds_mean_no_clipping():
    assert IPS(clip=float("inf")).clip == float("inf")
    assert SwitchDR(threshold=float("inf")).threshold == float("inf")


@pytest.mark.parametrize(("build", "error", "message"), BAD_ESTIMATORS)
def test_bad_hyperparameters(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_model_based_estimators_need_predictions(fixed):
    bare = OffPolicyInputs(fixed["r"], fixed["p"], fixed["w"])
    with pytest.raises(InvalidInputError, match="reward-model predictions"):
        DR().estimate(bare)
    with pytest.raises(InvalidInputError, match="method: expected one of"):
        IPS().interval(bare, method="wald")
    with pytest.raises(InvalidInputError, match="alpha"):
        IPS().interval(bare, alpha=1.5)


def _coverage(kind: str, n_seeds: int, n_rounds: int) -> dict[str, float]:
    env = LinearEnv.make(n_actions=4, n_features=3, seed=11, noise=1.0)
    rng = np.random.default_rng(0)
    # Target: greedy on a perturbed copy of the truth (good, not perfect), exact one-hot dist.
    theta_target = env.theta + rng.normal(scale=0.3, size=env.theta.shape)
    big = np.random.default_rng(99).normal(size=(400_000, 3))
    greedy = np.argmax(big @ theta_target.T + env.bias, axis=1)
    truth = env.expected(big)[np.arange(len(big)), greedy].mean()
    hits = {"dr": 0, "snips": 0, "dr-bootstrap": 0}
    for seed in range(n_seeds):
        train = make_logs(env, n_rounds, seed=1000 + seed, kind=kind)
        test = make_logs(env, n_rounds, seed=5000 + seed, kind=kind)
        model = RewardModel.fit(train.context, train.action, train.reward, 4)
        target = np.argmax(test.context @ theta_target.T + env.bias, axis=1)
        dist = np.zeros((n_rounds, 4))
        dist[np.arange(n_rounds), target] = 1.0
        inputs = OffPolicyInputs.from_action_dist(
            test.reward, test.action, test.propensity, dist, model.predict(test.context)
        )
        low, high = DR().interval(inputs)
        hits["dr"] += low <= truth <= high
        low, high = SNIPS().interval(inputs)
        hits["snips"] += low <= truth <= high
        if seed < n_seeds // 4:
            low, high = DR().interval(inputs, method="bootstrap", n_bootstrap=200, seed=seed)
            hits["dr-bootstrap"] += low <= truth <= high
    return {
        "dr": hits["dr"] / n_seeds,
        "snips": hits["snips"] / n_seeds,
        "dr-bootstrap": hits["dr-bootstrap"] / (n_seeds // 4),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["uniform", "softmax"])
def test_dr_and_snips_intervals_cover_the_truth_at_nominal_rate(kind):
    coverage = _coverage(kind, n_seeds=200, n_rounds=2000)
    # 95% nominal; with 200 seeds the binomial sd is 1.5 points.
    assert 0.90 <= coverage["dr"] <= 0.99, coverage
    assert 0.90 <= coverage["snips"] <= 0.99, coverage
    assert 0.84 <= coverage["dr-bootstrap"] <= 1.0, coverage


def test_slope_follows_the_published_rule():
    # Widest first: ips (2), dr (1), sndr (0.5), dm (0.1). Tucker & Lee's test against every
    # accepted wider one: |theta_i - theta_j| <= cnf_i + (sqrt(6) - 1) cnf_j.
    values = {"dm": 3.0, "ips": 0.0, "dr": 1.0, "sndr": 1.4}
    widths = {"dm": 0.1, "ips": 2.0, "dr": 1.0, "sndr": 0.5}
    assert slope(values, widths) == "sndr"  # dm: |3 - 1.4| > 0.1 + 1.449 * 0.5: the walk stops
    values["sndr"] = 3.3  # |3.3 - 1| = 2.3 > 0.5 + 1.449 * 1: sndr fails, dr is the last accepted
    assert slope(values, widths) == "dr"
    # the walk stops at the first failure even if a narrower one would pass again
    values = {"ips": 0.0, "dr": 5.0, "dm": 0.0}
    assert slope(values, {"ips": 1.0, "dr": 0.5, "dm": 0.1}) == "ips"
    assert slope({"a": float("nan")}, {"a": 1.0}) is None
    assert slope({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": float("nan")}) == "a"


def test_grid_estimators_expand_and_evaluation_narrows_them(fixed):
    keys = [e.key for e in make_estimators(["dr-os", "sg-ips"])]
    assert keys[0] == "dr-os(lambda=1)" and keys[-1] == "sg-ips(lambda=0.03)"
    assert len(set(keys)) == len(keys)
