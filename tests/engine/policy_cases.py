"""Every registered policy, built small and seeded from its own ``_unit_test_params``."""

from __future__ import annotations

import numpy as np

from engine.policies import Policy, policy_classes

N_ACTIONS = 4
N_FEATURES = 3
# Every registered policy: a new policy class joins the suite by defining _unit_test_params.
POLICY_CLASSES = policy_classes()
NAMES = sorted(POLICY_CLASSES)


def params(name: str, seed: int | None = 0) -> dict[str, object]:
    """The constructor arguments the suite builds policy ``name`` with."""
    cls = POLICY_CLASSES[name]
    test_params = cls._unit_test_params(N_ACTIONS, N_FEATURES)  # type: ignore[attr-defined]
    return {"n_actions": N_ACTIONS, "n_features": N_FEATURES, **test_params, "seed": seed}


def build(name: str, seed: int | None = 0) -> Policy:
    return POLICY_CLASSES[name](**params(name, seed))


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
