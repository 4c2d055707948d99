"""Lift: the policy's incremental net reward per decision over the control group.

Customers in the control group (a sticky hash of customer id and campaign salt) always get the
control offer; everyone else gets the policy's choice. With closed decisions only (rewarded, or
expired with a default reward), lift = mean(treatment) - mean(control) with a Welch normal
confidence interval. Because the split is random and sticky, this is an unbiased estimate of the
campaign's value per decision over doing nothing.

Examples
--------
>>> lift = Lift.from_sums(n_t=400, sum_t=4400.0, sumsq_t=400 * 121.0 + 399 * 4.0,
...                       n_c=100, sum_c=1000.0, sumsq_c=100 * 100.0 + 99 * 4.0)
>>> round(lift.lift, 3), lift.ci_low < 1.0 < lift.ci_high
(1.0, True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from engine.journal.base import JournalBackend
from engine.journal.records import GroupSums
from engine.kernels import norm_ppf

LEVELS = (0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class Lift:
    """Incremental value per decision of the policy over control.

    Attributes
    ----------
    lift : float
        mean net reward (treatment) - mean net reward (control); NaN without data in both groups.
    ci_low, ci_high : float
        Confidence interval at ``level`` (Welch, normal approximation).
    treatment_mean, control_mean : float
    n_treatment, n_control : int
        Closed decisions counted in each group.
    level : float
    """

    lift: float
    ci_low: float
    ci_high: float
    treatment_mean: float
    control_mean: float
    n_treatment: int
    n_control: int
    level: float = 0.95

    @classmethod
    def from_sums(
        cls,
        n_t: int,
        sum_t: float,
        sumsq_t: float,
        n_c: int,
        sum_c: float,
        sumsq_c: float,
        level: float = 0.95,
    ) -> Lift:
        """Build from per-group counts, sums and sums of squares."""
        if level not in LEVELS:
            from engine.errors import InvalidInputError

            raise InvalidInputError("level", f"one of {list(LEVELS)}", level)
        z = norm_ppf(1.0 - (1.0 - level) / 2.0)
        mean_t = sum_t / n_t if n_t else math.nan
        mean_c = sum_c / n_c if n_c else math.nan
        if n_t < 2 or n_c < 2:
            diff = mean_t - mean_c
            return cls(diff, math.nan, math.nan, mean_t, mean_c, n_t, n_c, level)
        var_t = max(sumsq_t - n_t * mean_t * mean_t, 0.0) / (n_t - 1)
        var_c = max(sumsq_c - n_c * mean_c * mean_c, 0.0) / (n_c - 1)
        se = math.sqrt(var_t / n_t + var_c / n_c)
        diff = mean_t - mean_c
        return cls(diff, diff - z * se, diff + z * se, mean_t, mean_c, n_t, n_c, level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes None)."""
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def lift_from_journal(journal: JournalBackend, level: float = 0.95) -> Lift:
    """Compute :class:`Lift` over every closed decision of a journal."""
    groups = journal.lift_sums()
    empty = GroupSums(0, 0.0, 0.0)
    n_t, s_t, q_t = groups.get(False, empty)
    n_c, s_c, q_c = groups.get(True, empty)
    return Lift.from_sums(n_t, s_t, q_t, n_c, s_c, q_c, level=level)
