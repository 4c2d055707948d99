"""Scale-free exploration: the policies decide alike whatever currency the rewards are in, their
noise estimate is the ridge fits' residual, and models saved before it keep their behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.policies import LinUCB, Policy, VWPolicy, _blob, make_policy

SPECS = [
    {"name": "linucb"},
    {"name": "lints"},
    {"name": "softmax"},
    {"name": "rff", "n_components": 16, "standardize_rows": 50},
    {"name": "shared", "offer_features": np.eye(4)},
    {"name": "vw"},
]


def _stream(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.hstack([np.ones((400, 1)), rng.normal(size=(400, 4))])
    theta = rng.normal(size=(4, 5))
    return X, theta, rng.normal(size=(400, 4))


def _play(spec: dict, scale: float) -> list[int]:
    """Decisions of a policy learning online from rewards in units of ``scale``."""
    X, theta, noise = _stream()
    policy = make_policy(spec, 4, 5, seed=3)
    chosen: list[int] = []
    for start in range(0, 400, 20):
        x = X[start : start + 20]
        d = policy.choose(x)
        rows = np.arange(x.shape[0])
        rewards = scale * ((x @ theta.T)[rows, d.actions] + 0.5 * noise[start : start + 20, 0])
        policy.update(x, d.actions, rewards, d.propensities)
        chosen += d.actions.tolist()
    return chosen


@pytest.mark.parametrize("spec", SPECS, ids=[s["name"] for s in SPECS])
def test_decisions_do_not_depend_on_the_currency_of_the_rewards(spec: dict) -> None:
    unit = _play(spec, 1.0)
    assert _play(spec, 250.0) == unit
    assert _play(spec, 0.01) == unit
    assert len(set(unit)) > 1  # it explored


def test_the_noise_estimate_is_the_pooled_residual_of_the_ridge_fits() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    actions = rng.integers(0, 2, 300)
    rewards = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.7, size=300)
    policy = LinUCB(2, 3)
    assert policy.noise_level() == 1.0  # no reward yet
    policy.update(X, actions, rewards)
    residual = 0.0
    for a in (0, 1):
        Xa, ra = X[actions == a], rewards[actions == a]
        theta = np.linalg.solve(np.eye(3) + Xa.T @ Xa, Xa.T @ ra)
        residual += ra @ ra - theta @ (Xa.T @ ra)
    assert policy.noise_level() == pytest.approx(np.sqrt(residual / 300), rel=1e-9)
    assert 0.6 < policy.noise_level() < 0.8  # close to the true 0.7
    assert LinUCB(2, 3, noise=2.5).noise_level() == 2.5


def test_removing_an_offer_keeps_the_noise_estimate() -> None:
    X, theta, noise = _stream()
    policy = LinUCB(4, 5, seed=0)
    actions = np.arange(400) % 4
    policy.update(X, actions, (X @ theta.T)[np.arange(400), actions] + noise[:, 0])
    before = policy.noise_level()
    policy.remove_action(2)
    assert policy.noise_level() == pytest.approx(before, rel=1e-12)
    again = Policy.from_bytes(policy.to_bytes())
    assert again.noise_level() == pytest.approx(before, rel=1e-12)


def test_statistics_carry_the_squares_of_the_rewards() -> None:
    X, theta, noise = _stream()
    actions = np.arange(400) % 4
    rewards = 40.0 * ((X @ theta.T)[np.arange(400), actions] + noise[:, 0])
    online, batched = LinUCB(4, 5), LinUCB(4, 5)
    online.update(X, actions, rewards)
    stats = batched.sufficient_statistics(X[:200], actions[:200], rewards[:200])
    stats = stats + batched.sufficient_statistics(X[200:], actions[200:], rewards[200:])
    batched.add_statistics(stats)
    assert batched.noise_level() == pytest.approx(online.noise_level(), rel=1e-9)


def test_noise_and_reward_scale_refuse_what_is_neither_auto_nor_positive() -> None:
    for spec in ({"name": "linucb", "noise": 0.0}, {"name": "lints", "noise": "estimated"}):
        with pytest.raises(InvalidInputError, match="noise"):
            make_policy(spec, 2, 2)
    with pytest.raises(InvalidInputError, match="reward_scale"):
        make_policy({"name": "vw", "reward_scale": -1.0}, 2, 2)


def test_vw_scales_costs_by_the_largest_reward_and_old_models_keep_their_scale() -> None:
    X = _stream()[0]
    policy = VWPolicy(4, 5, seed=0)
    assert policy.cost_scale_ == 0.0
    policy.update(X[:50], np.arange(50) % 4, np.linspace(-300.0, 120.0, 50), np.full(50, 0.25))
    assert policy.cost_scale_ == 300.0
    # A blob from before the automatic scale: a numeric reward_scale and no cost_scale_.
    name, params, scalars, arrays = _blob.load(VWPolicy(4, 5, reward_scale=80.0).to_bytes())
    del scalars["cost_scale_"]
    old = Policy.from_bytes(_blob.dump(name, params, scalars, arrays))
    assert isinstance(old, VWPolicy) and old.cost_scale_ == 80.0
