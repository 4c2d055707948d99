"""Overlap diagnostics: can the logs tell us anything about this candidate?

Additive sums per shard (:func:`diagnostic_sums`, :func:`merge_diagnostic_sums`), turned into the
effective sample size, the smallest propensity, the largest weight and the support share, with a
warning when overlap is too poor to trust an estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.replay.estimators import OffPolicyInputs
from engine.types import FloatArray


@dataclass(frozen=True)
class Diagnostics:
    """Overlap diagnostics of one target policy on the logs.

    Attributes
    ----------
    n_rounds : int
    ess : float
        Effective sample size (Σw)² / Σw² (Kish).
    min_propensity : float
        Smallest logging propensity.
    max_weight : float
    support_share : float
        Share of logged rows whose action the target gives positive probability.
    match_rate : float
        The target's mean probability of the logged offer (for a deterministic target: the share
        of rows where its choice is the logged offer).
    unseen_share : float
        The target's mean probability of offers never logged in a row's stratum (see
        :func:`engine.replay.support.unseen_offers`); 0 when the logs say what was eligible.
    """

    n_rounds: int
    ess: float
    min_propensity: float
    max_weight: float
    support_share: float
    match_rate: float = float("nan")
    unseen_share: float = 0.0

    @classmethod
    def from_sums(cls, sums: FloatArray) -> Diagnostics:
        """From :func:`diagnostic_sums` (added over shards)."""
        n, sw, sww, n_support, min_p, max_w, matched, unseen = sums
        ess = float(sw * sw / sww) if sww > 0 else 0.0
        share = float(n_support / n) if n else 0.0
        match = float(matched / n) if n else math.nan
        return cls(
            int(n), ess, float(min_p), float(max_w), share, match, float(unseen / n) if n else 0.0
        )

    @property
    def overlap_warning(self) -> str | None:
        """A sentence when overlap is too poor to trust an estimate, else None."""
        if self.n_rounds == 0:
            return "no rows to evaluate on"
        reasons = []
        if self.ess < 100 or self.ess < 0.01 * self.n_rounds:
            reasons.append(f"effective sample size {self.ess:.0f} of {self.n_rounds} rows")
        if self.support_share < 0.01:
            reasons.append(
                f"the candidate supports only {self.support_share:.1%} of logged actions"
            )
        if not reasons:
            return None
        return "poor overlap: " + "; ".join(reasons)


def diagnostic_sums(inputs: OffPolicyInputs, unseen_mass: float = 0.0) -> FloatArray:
    """Additive diagnostic statistics: n, Σw, Σw², #(w > 0), min propensity, max w,
    Σ pi(logged offer) (= Σ w p) and ``unseen_mass`` (the target's summed probability of
    offers never logged in the row's stratum).

    Shards combine with :func:`merge_diagnostic_sums`.
    """
    w = inputs.weight
    if w.shape[0] == 0:
        return np.array([0.0, 0.0, 0.0, 0.0, math.inf, 0.0, 0.0, 0.0])
    return np.array(
        [
            float(w.shape[0]),
            w.sum(),
            w @ w,
            float(np.count_nonzero(w)),
            inputs.propensity.min(),
            w.max(),
            float(w @ inputs.propensity),
            unseen_mass,
        ]
    )


def merge_diagnostic_sums(a: FloatArray, b: FloatArray) -> FloatArray:
    out = a + b
    out[4] = min(a[4], b[4])
    out[5] = max(a[5], b[5])
    return out
