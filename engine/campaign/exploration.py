"""The campaign's exploration settings applied to whatever model it serves.

A campaign file sets the exploration floor (``[policy] min_propensity``: every eligible offer
keeps at least that probability) and the seed. A model that comes from elsewhere (``nbo train``,
a promotion, a snapshot restored at start-up that was promoted before) carries its own, often
``min_propensity 0.0``: served as is it would stop exploring, and an offer added later would
never be tried. :func:`apply_exploration` puts the campaign's settings on such a model and says
what it changed, so the caller can log it.

Examples
--------
>>> from engine.policies import LinUCB
>>> trained = LinUCB(3, 2, min_propensity=0.0, seed=0)
>>> apply_exploration(trained, {"name": "linucb", "min_propensity": 0.02, "seed": 7})
['min_propensity 0.0 -> 0.02 (the campaign floor)', 'seed 0 -> 7 (the campaign seed)']
>>> trained.min_propensity, trained.seed
(0.02, 7)
>>> apply_exploration(trained, {"name": "linucb", "min_propensity": 0.02, "seed": 7})
[]
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from engine.policies import Policy, policy_class

__all__ = ["apply_exploration", "campaign_floor"]


def campaign_floor(policy_spec: Mapping[str, Any]) -> float:
    """The exploration floor a campaign's ``[policy]`` table asks for: its ``min_propensity``,
    else the default of its policy class."""
    if "min_propensity" in policy_spec:
        return float(policy_spec["min_propensity"])
    name = str(policy_spec.get("name", ""))
    cls = policy_class(name)
    if cls is None:
        return 0.0
    default = inspect.signature(cls.__init__).parameters.get("min_propensity")
    if default is None or default.default is inspect.Parameter.empty:
        return 0.0
    return float(default.default)


def apply_exploration(policy: Policy, policy_spec: Mapping[str, Any]) -> list[str]:
    """Give ``policy`` the campaign's exploration floor and seed (in place).

    A model whose floor is below the campaign's is re-floored; one with a different seed is
    reseeded (its random stream restarts from the campaign's seed). A model that already has the
    campaign's settings is left untouched, so a campaign's own snapshot resumes its random stream
    after a restart.

    Returns
    -------
    list of str
        One line per setting changed (empty when nothing changed).
    """
    changes = []
    if "min_propensity" in policy.get_params():
        floor = campaign_floor(policy_spec)
        if policy.min_propensity < floor:
            changes.append(
                f"min_propensity {policy.min_propensity!r} -> {floor!r} (the campaign floor)"
            )
            policy.min_propensity = floor
    seed = policy_spec.get("seed")
    if seed is not None and policy.seed != int(seed):
        changes.append(f"seed {policy.seed!r} -> {int(seed)} (the campaign seed)")
        policy.reseed(int(seed))
    return changes
