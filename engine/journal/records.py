"""The records the Engine returns: one per decision, one per reward.

Examples
--------
>>> import numpy as np
>>> rec = DecisionRecord("d1", "b", 0.5, False, False, "v1", (), ("a", "b"), "c", "cust", 0.0,
...                      1.0, np.array([0.2, 0.7]), ("a", "b"))
>>> rec.ranking
(('b', 0.7), ('a', 0.2))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.types import FloatArray


@dataclass(slots=True)
class DecisionRecord:
    """What :meth:`Engine.decide` returns (and what the journal keeps). Read-only by contract
    (not frozen: a frozen dataclass costs ~2 us more per decision to build).

    Attributes
    ----------
    decision_id, offer_id : str
    propensity : float
        True probability of ``offer_id`` given the context, the rules and the model: 1 for the
        control group, for a fallback and when a single offer is eligible.
    explored, control : bool
    model_version : str
    reasons : tuple of str
        Rules that removed offers or set the outcome: ``control_group``, ``candidates``,
        ``rule:<offer>:<condition>``, ``cost_unknown:<offer>``, ``budget_count:<offer>``,
        ``budget_money:<offer>``, ``traffic_cap:<offer>``, ``frequency_cap``, ``cooldown``,
        ``fallback:<offer>``.
    eligible : tuple of str
        Offers that could have been chosen (the control offer alone for the control group, the
        fallback alone when nothing was eligible).
    campaign, customer_id : str
    timestamp : float
        Unix seconds (the engine's clock).
    cost : float
        The chosen offer's cost for this customer.
    scores : array of shape (n_actions,)
        The policy's score per offer (-inf where not eligible, NaN when the policy was not asked).
    offer_ids : tuple of str
        The campaign's offers, in the order of ``scores``.
    """

    decision_id: str
    offer_id: str
    propensity: float
    explored: bool
    control: bool
    model_version: str
    reasons: tuple[str, ...]
    eligible: tuple[str, ...]
    campaign: str
    customer_id: str
    timestamp: float
    cost: float
    scores: FloatArray = field(compare=False)
    offer_ids: tuple[str, ...]

    @property
    def ranking(self) -> tuple[tuple[str, float], ...]:
        """Eligible offers with their scores, best first (the chosen offer alone when the policy
        was not asked: control group or fallback)."""
        if not np.isfinite(self.scores).any():
            return ((self.offer_id, math.nan),)
        order = np.argsort(-self.scores, kind="stable")
        return tuple(
            (self.offer_ids[a], float(self.scores[a])) for a in order if np.isfinite(self.scores[a])
        )


@dataclass(slots=True)
class RewardRecord:
    """What :meth:`Engine.reward` returns, per reward.

    ``status`` is ``applied`` (new), ``duplicate`` (a retry: the first value stands, ``reward``
    is the stored one), ``expired`` (the window had passed) or ``unknown`` (no such decision).
    ``reward`` is the net reward the learner uses (None when not applied).
    """

    decision_id: str
    status: str
    offer_id: str = ""
    value: float | None = None
    reward: float | None = None
