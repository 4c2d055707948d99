"""Every policy the contract suite runs over, built small and seeded."""

from __future__ import annotations

import numpy as np

from engine.policies import (
    UCB1,
    BetaTS,
    EpsilonGreedy,
    FixedAction,
    LinearTS,
    LinUCB,
    Policy,
    SharedLinear,
    Softmax,
    UniformRandom,
    VWPolicy,
)

N_ACTIONS = 4
N_FEATURES = 3
OFFER_FEATURES = np.array([[0.0, 1.0], [0.1, 0.0], [0.2, 0.0], [0.3, 1.0]])


def build(name: str, seed: int | None = 0, **overrides: object) -> Policy:
    k, d = N_ACTIONS, N_FEATURES
    factories = {
        "LinUCB": lambda: LinUCB(k, d, alpha=0.5, min_propensity=0.02, seed=seed),
        "LinearTS": lambda: LinearTS(k, d, scale=0.5, min_propensity=0.02, seed=seed),
        "EpsilonGreedy": lambda: EpsilonGreedy(k, d, epsilon=0.2, seed=seed),
        "Softmax": lambda: Softmax(k, d, temperature=0.5, seed=seed),
        "SharedLinear": lambda: SharedLinear(
            k, d, OFFER_FEATURES, alpha=0.5, min_propensity=0.02, seed=seed
        ),
        "UniformRandom": lambda: UniformRandom(k, d, seed=seed),
        "FixedAction": lambda: FixedAction(k, d, action=1, min_propensity=0.05, seed=seed),
        "UCB1": lambda: UCB1(k, d, c=0.5, min_propensity=0.02, seed=seed),
        "BetaTS": lambda: BetaTS(k, d, propensity_draws=400, seed=seed),
        "VWPolicy": lambda: VWPolicy(k, d, seed=seed),
    }
    policy = factories[name]()
    for key, value in overrides.items():
        setattr(policy, key, value)
    return policy


NAMES = [
    "LinUCB",
    "LinearTS",
    "EpsilonGreedy",
    "Softmax",
    "SharedLinear",
    "UniformRandom",
    "FixedAction",
    "UCB1",
    "BetaTS",
    "VWPolicy",
]


def training_data(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contexts, actions and rewards in [0, 1] where the best action depends on the context."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 0] = 1.0
    actions = rng.integers(0, N_ACTIONS, n)
    logits = X[:, 1] * (actions - 1.5) + 0.3 * X[:, 2] * (actions == 2)
    rewards = (1 / (1 + np.exp(-logits)) > rng.random(n)).astype(float)
    return X, actions, rewards


def trained(name: str, seed: int | None = 0) -> Policy:
    policy = build(name, seed)
    X, a, r = training_data()
    policy.update(X, a, r, np.full(len(a), 1 / N_ACTIONS))
    return policy
