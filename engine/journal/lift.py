"""Lift: the policy's incremental net reward per decision over the control group.

Customers in the control group (a sticky hash of customer id and campaign salt) always get the
control offer; everyone else gets the policy's choice. With closed decisions only (rewarded, or
expired with a default reward), lift = mean(treatment) - mean(control) with a Welch normal
confidence interval. A deferred decision counts once activated; one never activated (lapsed)
never does. Because the split is random and sticky, this is an unbiased estimate of the
campaign's value per decision over doing nothing.

The split randomizes customers, not decisions, and a returning customer's rewards are
correlated, so :func:`lift_from_journal` computes each group's variance over customers
(cluster-robust: the sum of each customer's deviations from the group mean, squared), which is
the row variance when every customer decided once.

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

    @classmethod
    def from_customers(
        cls,
        treatment: tuple[Any, Any],
        control: tuple[Any, Any],
        level: float = 0.95,
    ) -> Lift:
        """Build from per-customer (count, sum) arrays of each group, variance over customers.

        Examples
        --------
        >>> import numpy as np
        >>> one_each = Lift.from_customers((np.ones(4), np.array([1.0, 2, 3, 4])),
        ...                                (np.ones(4), np.zeros(4)))
        >>> rows = Lift.from_sums(4, 10.0, 30.0, 4, 0.0, 0.0)
        >>> round(one_each.ci_low, 9) == round(rows.ci_low, 9)
        True
        """
        import numpy as np

        if level not in LEVELS:
            from engine.errors import InvalidInputError

            raise InvalidInputError("level", f"one of {list(LEVELS)}", level)
        z = norm_ppf(1.0 - (1.0 - level) / 2.0)
        stats = []
        for counts, sums in (treatment, control):
            counts, sums = np.asarray(counts, float), np.asarray(sums, float)
            n, g = float(counts.sum()), int(counts.shape[0])
            mean = float(sums.sum() / n) if n else math.nan
            var = math.nan
            if g >= 2:
                dev = sums - mean * counts
                var = float(dev @ dev) * g / ((g - 1) * n * n)
            stats.append((int(n), g, mean, var))
        (n_t, g_t, mean_t, var_t), (n_c, g_c, mean_c, var_c) = stats
        diff = mean_t - mean_c
        if n_t < 2 or n_c < 2 or g_t < 2 or g_c < 2:
            return cls(diff, math.nan, math.nan, mean_t, mean_c, n_t, n_c, level)
        se = math.sqrt(var_t + var_c)
        return cls(diff, diff - z * se, diff + z * se, mean_t, mean_c, n_t, n_c, level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes None)."""
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def lift_from_journal(journal: JournalBackend, level: float = 0.95) -> Lift:
    """Compute :class:`Lift` over every closed decision of a journal, its interval over
    customers (see the module docstring), those a compaction archived included (the journal
    keeps their count and sum per customer and group, so the lift does not change).

    The journal is read in pages; when a compaction moves rows to the archive meanwhile (the
    archived count changed), the read starts again, so no row is counted twice or missed.
    """
    for _ in range(_READS):
        archived = journal.archived_decisions()
        groups = _customer_sums(journal)
        if journal.archived_decisions() == archived:
            break
    arrays = []
    for flag in (False, True):
        values = list(groups[flag].values())
        arrays.append(([v[0] for v in values], [v[1] for v in values]))
    return Lift.from_customers(arrays[0], arrays[1], level=level)


_READS = 3  # reads of a journal that compactions keep changing before the last one is taken


def _customer_sums(journal: JournalBackend) -> dict[bool, dict[str, list[float]]]:
    """Per group and customer: [count, sum] of the closed decisions' net rewards."""
    groups: dict[bool, dict[str, list[float]]] = {False: {}, True: {}}
    for archived in journal.archived_customers():
        entry = groups[archived.control].setdefault(archived.customer_id, [0.0, 0.0])
        entry[0] += archived.n
        entry[1] += archived.total
    seq = 0
    while True:
        page = journal.decisions_for_export(seq, 50_000, closed_only=True)
        if not page:
            break
        for row in page:
            if row.reward is None:
                continue
            entry = groups[bool(row.control)].setdefault(row.customer_id, [0.0, 0.0])
            entry[0] += 1.0
            entry[1] += row.reward
        seq = page[-1].seq
    return groups
