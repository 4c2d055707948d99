"""Bandit policies behind one batch-first API (see :class:`Policy`).

>>> import numpy as np
>>> from engine.policies import make_policy
>>> policy = make_policy({"name": "linucb", "alpha": 0.5}, n_actions=3, n_features=4, seed=0)
>>> d = policy.choose(np.zeros((2, 4)))
>>> d.actions.shape, d.propensities.dtype, d.scores.shape
((2,), dtype('float64'), (2, 3))
"""

from __future__ import annotations

from typing import Any

from engine.errors import InvalidInputError
from engine.policies.base import Decision, Policy, policy_classes
from engine.policies.baselines import UCB1, BetaTS, FixedAction, UniformRandom
from engine.policies.linear import EpsilonGreedy, LinearTS, LinUCB, Softmax
from engine.policies.shared import SharedLinear
from engine.policies.vw import VWPolicy

__all__ = [
    "POLICY_NAMES",
    "UCB1",
    "BetaTS",
    "Decision",
    "EpsilonGreedy",
    "FixedAction",
    "LinUCB",
    "LinearTS",
    "Policy",
    "SharedLinear",
    "Softmax",
    "UniformRandom",
    "VWPolicy",
    "make_policy",
    "policy_classes",
]

POLICY_NAMES: dict[str, type[Policy]] = {
    "linucb": LinUCB,
    "lints": LinearTS,
    "egreedy": EpsilonGreedy,
    "softmax": Softmax,
    "shared": SharedLinear,
    "random": UniformRandom,
    "fixed": FixedAction,
    "control": FixedAction,
    "betats": BetaTS,
    "ucb1": UCB1,
    "vw": VWPolicy,
}


def make_policy(
    spec: str | dict[str, Any],
    n_actions: int,
    n_features: int,
    seed: int | None = None,
    offer_features: Any = None,
) -> Policy:
    """Build a policy from a name (``"linucb"``) or a dict (``{"name": "linucb", "alpha": 0.5}``).

    Names: linucb, lints, egreedy, softmax, shared, random, fixed (alias control), betats, ucb1,
    vw, or a class name. ``offer_features`` is passed to SharedLinear only.
    """
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        params = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
    else:
        raise InvalidInputError("policy", "a policy name or a dict with a 'name' key", spec)
    cls = POLICY_NAMES.get(name.lower()) or Policy._registry.get(name)
    if cls is None:
        raise InvalidInputError("policy", f"one of {sorted(POLICY_NAMES)}", name)
    kwargs: dict[str, Any] = {"seed": seed, **params}
    if cls is SharedLinear:
        kwargs.setdefault("offer_features", offer_features)
        if kwargs["offer_features"] is None:
            raise InvalidInputError(
                "offer_features",
                "an (n_actions, n_offer_features) array for the shared policy",
                None,
            )
    try:
        return cls(n_actions, n_features, **kwargs)
    except TypeError as exc:
        raise InvalidInputError(
            "policy", f"hyperparameters accepted by {cls.__name__}", str(exc)
        ) from exc
