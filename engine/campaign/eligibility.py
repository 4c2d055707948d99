"""Request-level eligibility over a batch: candidate lists, offer rules and offer costs.

What depends on the request alone (not on guardrail state) is computed here, column by column
over a batch of contexts, so per-decision Python work stays small. An offer whose cost cannot be
computed (its cost field missing or invalid) is not eligible: reason ``cost_unknown:<offer>``.

Examples
--------
>>> from engine.campaign.config import load_campaign
>>> cfg = load_campaign("examples/renewal.toml")
>>> masks, costs, reasons = Eligibility(cfg).evaluate(
...     [{"tenure_months": 3, "monthly_price": 40.0, "plan": "premium"}])
>>> [o for o, ok in zip(cfg.offer_ids, masks[0]) if ok]
['none', 'discount_5']
>>> float(costs[0, cfg.offer_index("discount_5")])
24.0
>>> reasons[0][:2]
['rule:discount_10:tenure_months >= 6', 'rule:discount_20:tenure_months >= 12']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.types import BoolArray, FloatArray

if TYPE_CHECKING:
    from engine.campaign.config import CampaignConfig


class Eligibility:
    """Static eligibility of a campaign's offers.

    Parameters
    ----------
    config : CampaignConfig
    """

    def __init__(self, config: CampaignConfig) -> None:
        self.n_actions = config.n_actions
        self._fixed = np.array([o.fixed_cost for o in config.offers])
        self._shares = [
            (a, o.cost_field, o.cost_share, o.cost_months, f"cost_unknown:{o.id}")
            for a, o in enumerate(config.offers)
            if o.cost_field is not None
        ]
        self._rules = [
            (a, r.field, r._test, f"rule:{o.id}:{r.text}")
            for a, o in enumerate(config.offers)
            for r in o.rules
        ]

    def evaluate(
        self,
        contexts: Sequence[Mapping[str, Any]],
        candidates: Sequence[BoolArray | None] | None = None,
        skip: Sequence[bool] | None = None,
    ) -> tuple[BoolArray, FloatArray, list[list[str]]]:
        """Eligibility of every offer for every context.

        Parameters
        ----------
        contexts : sequence of mappings, length n_rounds
        candidates : sequence of (bool array of shape (n_actions,) or None), optional
            Per row, the offers the caller can deliver (None: all).
        skip : sequence of bool, optional
            Rows to leave all-False without reasons (the control group).

        Returns
        -------
        masks : array of shape (n_rounds, n_actions), bool
        costs : array of shape (n_rounds, n_actions), float64
            Each offer's cost per row (NaN where it cannot be computed).
        reasons : list of list of str
        """
        n = len(contexts)
        masks = np.ones((n, self.n_actions), dtype=np.bool_)
        reasons: list[list[str]] = [[] for _ in range(n)]
        live = [True] * n if skip is None else [not s for s in skip]
        rows = [] if candidates is None else [c for c in candidates]
        if candidates is not None:
            for i, cand in enumerate(rows):
                if cand is not None and live[i]:
                    reasons[i].append("candidates")

        def start(a: int) -> list[bool]:
            # Offers the candidate list already excludes are not checked further.
            if not rows:
                return list(live)
            return [lv and (c is None or bool(c[a])) for lv, c in zip(live, rows, strict=True)]

        columns: dict[int, list[bool]] = {}
        for a, field, test, text in self._rules:
            ok = columns.get(a)
            if ok is None:
                ok = columns[a] = start(a)
            for i, ctx in enumerate(contexts):
                if ok[i]:
                    value = ctx.get(field)
                    if value is None or not test(value):
                        ok[i] = False
                        reasons[i].append(text)
        costs = np.empty((n, self.n_actions))
        costs[:] = self._fixed
        for a, field, share, months, text in self._shares:
            column = costs[:, a]
            for i, ctx in enumerate(contexts):
                value = ctx.get(field)
                kind = type(value)
                if kind is not float and kind is not int:
                    value = _as_number(value)
                if value is not None and value >= 0 and math.isfinite(value):
                    column[i] = share * value * months  # as Offer.cost_for computes it
                    continue
                column[i] = math.nan
                ok = columns.get(a)
                if ok is None:
                    ok = columns[a] = start(a)
                if ok[i]:
                    ok[i] = False
                    reasons[i].append(text)
        if rows:
            for i, cand in enumerate(rows):
                if cand is not None:
                    masks[i] &= cand
        for a, ok in columns.items():
            masks[:, a] &= ok
        if skip is not None:
            masks[np.asarray(skip, dtype=np.bool_)] = False
        return masks, costs, reasons


def _as_number(value: Any) -> float | None:
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    return None
