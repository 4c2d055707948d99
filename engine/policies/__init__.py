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

from engine.errors import InvalidInputError, did_you_mean
from engine.policies.base import Decision, Policy, engagement_columns, policy_classes
from engine.policies.baselines import UCB1, BetaTS, FixedAction, UniformRandom
from engine.policies.landing import LandingLift
from engine.policies.linear import EpsilonGreedy, LinearTS, LinUCB, RidgeStatistics, Softmax
from engine.policies.nonlinear import RandomFourierUCB
from engine.policies.shared import SharedLinear
from engine.policies.vw import VWPolicy

__all__ = [
    "POLICY_NAMES",
    "UCB1",
    "BetaTS",
    "Decision",
    "EpsilonGreedy",
    "FixedAction",
    "LandingLift",
    "LinUCB",
    "LinearTS",
    "Policy",
    "RandomFourierUCB",
    "RidgeStatistics",
    "SharedLinear",
    "Softmax",
    "UniformRandom",
    "VWPolicy",
    "engagement_columns",
    "make_policy",
    "policy_class",
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
    "rff": RandomFourierUCB,
    "landing": LandingLift,
}
#: The classes ``make_policy`` hands a campaign's ``offer_features`` to: SharedLinear's are the
#: combinations' features, LandingLift's each action's (offer, route, sends) indices.
OFFER_FEATURE_POLICIES: tuple[type[Policy], ...] = (SharedLinear, LandingLift)


def policy_class(name: str) -> type[Policy] | None:
    """The class a ``[policy] name`` names (a :data:`POLICY_NAMES` key in any case, or a class
    name), or None.

    >>> policy_class("Landing").__name__, policy_class("LandingLift").__name__
    ('LandingLift', 'LandingLift')
    """
    return POLICY_NAMES.get(name.lower()) or Policy._registry.get(name)


def make_policy(
    spec: str | dict[str, Any],
    n_actions: int,
    n_features: int,
    seed: int | None = None,
    offer_features: Any = None,
) -> Policy:
    """Build a policy from a name (``"linucb"``) or a dict (``{"name": "linucb", "alpha": 0.5}``).

    Names: linucb, lints, egreedy, softmax, shared, random, fixed (alias control), betats, ucb1,
    vw, rff (:class:`RandomFourierUCB`), landing (:class:`LandingLift`), or a class name.
    ``offer_features`` is passed to SharedLinear and LandingLift only.

    Raises
    ------
    InvalidInputError
        For an unknown name (field ``policy``) or a key the class does not take (field: the
        key; the message lists :meth:`Policy.hyperparameters` and the closest of them).
    InvalidParameterError
        For a value outside its declared constraint (field: the key).

    Examples
    --------
    >>> make_policy({"name": "linucb", "min_propensty": 0.1}, 3, 4)
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: min_propensty: expected a hyperparameter of LinUCB (one of
    alpha, importance_weighting, l2, ...), got 'min_propensty' (did you mean 'min_propensity'?)
    """
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        params = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
    else:
        raise InvalidInputError("policy", "a policy name or a dict with a 'name' key", spec)
    cls = policy_class(name)
    if cls is None:
        hint = did_you_mean(name.lower(), POLICY_NAMES) or did_you_mean(name, Policy._registry)
        raise InvalidInputError("policy", f"one of {', '.join(POLICY_NAMES)}", f"{name!r}{hint}")
    accepted = cls.hyperparameters()
    for key in params:
        if key not in accepted:
            raise InvalidInputError(
                str(key),
                f"a hyperparameter of {cls.__name__} (one of {', '.join(accepted)})",
                f"{key!r}{did_you_mean(key, accepted)}",
            )
    kwargs: dict[str, Any] = {"seed": seed, **params}
    if cls in OFFER_FEATURE_POLICIES:
        kwargs.setdefault("offer_features", offer_features)
        if kwargs["offer_features"] is None:
            raise InvalidInputError(
                "offer_features",
                f"an (n_actions, n_offer_features) array for the {name} policy",
                None,
            )
    return cls(n_actions, n_features, **kwargs)
