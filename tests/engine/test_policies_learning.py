"""Seeded learning test: on a synthetic linear environment every contextual policy's regret after
20,000 rounds is far below uniform random's."""

from __future__ import annotations

import numpy as np
import pytest

from engine.policies import make_policy

K, D, ROUNDS, BATCH = 5, 6, 20_000, 50


def _environment(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(K, D))
    X = rng.normal(size=(ROUNDS, D))
    X[:, 0] = 1.0
    means = X @ weights.T * 0.5
    noise = rng.normal(size=(ROUNDS, K))
    return X, means, means + noise


def _regret(spec: str | dict, seed: int = 0) -> float:
    X, means, rewards = _environment(seed)
    offer_features = np.eye(K)
    policy = make_policy(spec, K, D, seed=seed, offer_features=offer_features)
    regret = 0.0
    # Decide a batch, then learn from it: rewards arrive in batches, as in production.
    for start in range(0, ROUNDS, BATCH):
        sl = slice(start, start + BATCH)
        d = policy.choose(X[sl])
        rows = np.arange(sl.start, sl.stop)
        regret += float((means[rows].max(axis=1) - means[rows, d.actions]).sum())
        policy.update(X[sl], d.actions, rewards[rows, d.actions], d.propensities)
    return regret


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    [
        {"name": "linucb", "alpha": 1.0},
        {"name": "lints", "scale": 0.5},
        {"name": "egreedy", "epsilon": 0.05},
        {"name": "softmax", "temperature": 0.1},
        {"name": "shared", "alpha": 1.0},
        {"name": "vw"},
    ],
    ids=lambda s: s["name"],
)
def test_contextual_regret_far_below_uniform(spec: dict) -> None:
    uniform = _regret("random")
    learned = _regret(spec)
    assert learned < 0.15 * uniform, (learned, uniform)


@pytest.mark.slow
def test_context_free_baselines_beat_uniform_on_their_own_problem() -> None:
    rng = np.random.default_rng(4)
    p_true = np.array([0.2, 0.5, 0.35, 0.1])
    for name in ("betats", "ucb1"):
        policy = make_policy(name, 4, 0, seed=1)
        total = 0.0
        for _ in range(200):
            d = policy.choose(np.empty((25, 0)))
            r = (rng.random(25) < p_true[d.actions]).astype(float)
            total += float((p_true.max() - p_true[d.actions]).sum())
            policy.update(np.empty((25, 0)), d.actions, r)
        uniform_regret = 5000 * (p_true.max() - p_true.mean())
        assert total < 0.2 * uniform_regret, (name, total, uniform_regret)
