"""What shadow mode says about nbo before it serves anyone: the estimated value per decision of
nbo's own choices against the baseline's, on the journal's recent rewarded shadow decisions.

In shadow mode the baseline was served (propensity 1) and nbo's choice logged beside it (the
reason ``shadow:<offer>@<propensity>``, :mod:`engine.rollout`). A deterministic logger leaves
no overlap for importance weighting: where nbo disagreed, only a reward model can say what its
offer would have earned. The estimate is doubly robust with that logger,

    V(nbo) = mean_i [ q(x_i, pick_i) + 1{pick_i = a_i} (r_i - q(x_i, a_i)) ]

with ``q`` a ridge model per offer cross-fitted by customer folds (no row is predicted by a model
that saw it), ``a_i`` the served baseline and ``pick_i`` nbo's choice: observed outcomes where
they agreed, the model's prediction where they did not. Its interval is the normal one of the
per-customer sums of ``V_i - r_i`` (the difference to the baseline), which leaves out the
model's own error: on offers the baseline rarely gives, the estimate is only as good as the
model's extrapolation (the ``agreement`` and ``coverage`` say how much rests on it).

Examples
--------
>>> from engine.core import Engine
>>> eng = Engine.from_config("examples/renewal.toml", data_dir=None, background=False)
>>> shadow_evidence(eng.journal, list(eng.feature_names), list(eng.offer_ids)).rows
0
>>> eng.close()
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.journal.base import JournalBackend
from engine.journal.monitor import shadow_choice
from engine.kernels import norm_ppf
from engine.replay.gate import GATE_ROWS, recent_closed
from engine.replay.rewardmodel import cross_fit, customer_folds, n_folds, predict_out_of_fold

__all__ = ["MIN_SHADOW_ROWS", "ShadowEvidence", "shadow_evidence"]

MIN_SHADOW_ROWS = 100  # rewarded shadow decisions before an estimate is given


@dataclass(frozen=True)
class ShadowEvidence:
    """nbo's estimated value per decision against the baseline's, from shadow decisions.

    Attributes
    ----------
    rows : int
        Rewarded shadow decisions used.
    agreement : float
        Share where nbo's choice was the baseline's.
    coverage : float
        Share of nbo's choices whose offer the baseline served at least 20 times in these rows
        (where the reward model has data of its own).
    baseline_value, nbo_value : float
        Mean net reward of the baseline (observed) and nbo's estimate (doubly robust).
    difference, low, high : float
        nbo minus baseline, with its interval at ``level``.
    level : float
    """

    rows: int
    agreement: float
    coverage: float
    baseline_value: float
    nbo_value: float
    difference: float
    low: float
    high: float
    level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in asdict(self).items()
        }


def shadow_evidence(
    journal: JournalBackend,
    feature_names: list[str],
    offer_ids: list[str],
    rows: int = GATE_ROWS,
    level: float = 0.95,
) -> ShadowEvidence:
    """Estimate nbo's value against the baseline on the journal's recent closed decisions
    (at most ``rows``; those that are shadow decisions count)."""
    index = {o: i for i, o in enumerate(offer_ids)}
    found = []
    for r in recent_closed(journal, feature_names, offer_ids, rows):
        choice = shadow_choice((r.reasons or "").split(";"))
        if choice is not None and choice in index:
            found.append((r, index[choice]))
    n = len(found)
    nan = math.nan
    if n < MIN_SHADOW_ROWS:
        agree = sum(index[r.action] == p for r, p in found) / n if n else nan
        base = float(np.mean([r.reward for r, _ in found])) if n else nan
        return ShadowEvidence(n, agree, nan, base, nan, nan, nan, nan, level)
    d = len(feature_names)
    X = np.frombuffer(b"".join(r.context for r, _ in found), dtype=np.float64).reshape(n, d)
    served = np.array([index[r.action] for r, _ in found], dtype=np.int64)
    picks = np.array([p for _, p in found], dtype=np.int64)
    reward = np.array([r.reward for r, _ in found], dtype=np.float64)
    customers: dict[str, int] = {}
    unit = np.array([customers.setdefault(r.customer_id, len(customers)) for r, _ in found])
    folds = n_folds(len(customers))
    fold = customer_folds(unit, n, folds)
    q = predict_out_of_fold(cross_fit(X, served, reward, len(offer_ids), fold, folds), X, fold)
    rows_at = np.arange(n)
    agree = picks == served
    value = q[rows_at, picks] + np.where(agree, reward - q[rows_at, served], 0.0)
    diff = value - reward
    sums = np.bincount(unit, weights=diff)
    g = sums.shape[0]
    mean = float(diff.mean())
    se = math.sqrt(float(((sums - mean * np.bincount(unit)) ** 2).sum()) * g / (g - 1)) / n
    z = norm_ppf(1.0 - (1.0 - level) / 2.0)
    seen = np.bincount(served, minlength=len(offer_ids)) >= 20
    return ShadowEvidence(
        rows=n,
        agreement=float(agree.mean()),
        coverage=float(seen[picks].mean()),
        baseline_value=float(reward.mean()),
        nbo_value=float(value.mean()),
        difference=mean,
        low=mean - z * se,
        high=mean + z * se,
        level=level,
    )
