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

from engine.campaign.rules import Rule
from engine.features.columns import Columns
from engine.types import BoolArray, FloatArray

if TYPE_CHECKING:
    from engine.campaign.config import CampaignConfig


# Integers up to 2**53 convert to float64 exactly, so numpy comparisons of such columns against
# such literals give Python's answers; anything else takes the per-value path. A converted column
# is checked strictly below 2**53: 2**53 + 1 rounds to 2**53, so an int that converted to 2**53
# may not have been exact.
_EXACT = float(2**53)
# Batches smaller than this are evaluated row by row (the crossover on examples/renewal.toml:
# about 7 rows; numpy's per-call costs dominate below it).
_ROW_BY_ROW = 8
_ORDERINGS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def _vector_op(rule: Rule) -> Any:
    """The numpy comparison of an ordering rule against a number literal (None otherwise)."""
    value = rule.value
    exact = isinstance(value, float) or (type(value) is int and abs(value) <= _EXACT)
    return _ORDERINGS.get(rule.op) if exact else None


class Eligibility:
    """Static eligibility of a campaign's offers.

    Parameters
    ----------
    config : CampaignConfig
    """

    def __init__(self, config: CampaignConfig) -> None:
        self.n_actions = config.n_actions
        self._fixed = np.array([o.fixed_cost for o in config.offers])
        # A rule or share cost of an offer (or a dimension value) applies to all its actions:
        # the offer itself, or each of its combinations. Reasons name the offer or value once.
        groups = config.group_rules()
        offers = config.base_offers  # the first groups are the offers'
        self._shares = [
            (g.actions, o.cost_field, o.cost_share, o.cost_months, f"cost_unknown:{g.label}")
            for (g, _), o in zip(groups[: len(offers)], offers, strict=True)
            if o.cost_field is not None
        ]
        # The fixed part of each share cost's actions (a combination's channel cost).
        self._share_fixed = [self._fixed[list(actions)] for actions, *_ in self._shares]
        #: Context attributes the rules and costs read.
        self.fields = tuple(
            dict.fromkeys(
                [r.field for _, rules in groups for r in rules]
                + [field for _, field, _, _, _ in self._shares]
            )
        )
        self._rules = [
            (
                g.actions,
                r.field,
                r._test,
                f"rule:{g.label}:{r.text}",
                _vector_op(r),
                r.value,
                r.missing,
            )
            for g, rules in groups
            for r in rules
        ]
        # What a rule reads for a missing attribute: one value per field (the feature's).
        self._fills = {
            r.field: r.missing for _, rules in groups for r in rules if r.missing is not None
        }

    def evaluate(
        self,
        contexts: Sequence[Mapping[str, Any]],
        candidates: Sequence[BoolArray | None] | None = None,
        skip: Sequence[bool] | None = None,
        columns: Columns | None = None,
    ) -> tuple[BoolArray, FloatArray, list[list[str]]]:
        """Eligibility of every offer for every context.

        Parameters
        ----------
        contexts : sequence of mappings, length n_rounds
        candidates : sequence of (bool array of shape (n_actions,) or None), optional
            Per row, the offers the caller can deliver (None: all).
        skip : sequence of bool, optional
            Rows to leave all-False without reasons (the control group).
        columns : mapping of attribute name to values, optional
            Attributes already gathered from ``contexts`` (:func:`engine.features.columns.gather`).

        Returns
        -------
        masks : array of shape (n_rounds, n_actions), bool
        costs : array of shape (n_rounds, n_actions), float64
            Each offer's cost per row (NaN where it cannot be computed).
        reasons : list of list of str
        """
        n = len(contexts)
        if n < _ROW_BY_ROW:
            return self._evaluate_rows(contexts, candidates, skip)
        masks = np.ones((n, self.n_actions), dtype=np.bool_)
        reasons: list[list[str]] = [[] for _ in range(n)]
        live = np.ones(n, dtype=np.bool_)
        if skip is not None:
            live &= ~np.asarray(skip, dtype=np.bool_)
        allowed: BoolArray | None = None  # the candidate lists as a matrix
        if candidates is not None and any(c is not None for c in candidates):
            allowed = np.ones((n, self.n_actions), dtype=np.bool_)
            live_list = live.tolist()
            for i, cand in enumerate(candidates):
                if cand is not None:
                    allowed[i] = cand
                    if live_list[i]:
                        reasons[i].append("candidates")
        values: dict[str, Sequence[Any]] = dict(columns) if columns is not None else {}
        filled: dict[str, Sequence[Any]] = {}
        numbers: dict[tuple[str, bool], FloatArray | None] = {}

        def column(field: str) -> Sequence[Any]:
            got = values.get(field)
            if got is None:
                got = values[field] = [ctx.get(field) for ctx in contexts]
            return got

        def rule_column(field: str) -> Sequence[Any]:
            """The field as rules read it: a missing value is the feature's fill (not for costs)."""
            if field not in self._fills:
                return column(field)
            got = filled.get(field)
            if got is None:
                fill = self._fills[field]
                got = filled[field] = [fill if v is None else v for v in column(field)]
            return got

        def plain(field: str, rule: bool = False) -> FloatArray | None:
            """The field as float64 when every value is an int or a float, ints exactly."""
            key = (field, rule)
            if key not in numbers:
                numbers[key] = _plain_numbers(rule_column(field) if rule else column(field))
            return numbers[key]

        oks: dict[int, BoolArray] = {}

        def ok_column(a: int) -> BoolArray:
            # Offers the candidate list already excludes are not checked further.
            ok = oks.get(a)
            if ok is None:
                ok = oks[a] = live.copy() if allowed is None else live & allowed[:, a]
            return ok

        def exclude(actions: tuple[int, ...], holds: BoolArray, text: str) -> None:
            if len(actions) == 1:
                ok = ok_column(actions[0])
                failed = np.flatnonzero(ok & ~holds)
            else:  # a row counts the reason once, if the rule removes any of its actions
                oks_of = [ok_column(a) for a in actions]
                failed = np.flatnonzero(np.logical_or.reduce(oks_of) & ~holds)
            if failed.shape[0]:
                for i in failed.tolist():
                    reasons[i].append(text)
                for a in actions:
                    oks[a] &= holds

        for a, field, test, text, vector_op, literal, _ in self._rules:
            numeric = plain(field, rule=True) if vector_op is not None else None
            if numeric is not None:
                holds = vector_op(numeric, literal)  # NaN compares False, as in Python
            else:
                holds = np.fromiter(
                    (v is not None and test(v) for v in rule_column(field)),
                    dtype=np.bool_,
                    count=n,
                )
            exclude(a, holds, text)
        costs = np.empty((n, self.n_actions))
        costs[:] = self._fixed
        for (a, field, share, months, text), fixed in zip(
            self._shares, self._share_fixed, strict=True
        ):
            numeric = plain(field)
            if numeric is not None:
                valid = (numeric >= 0) & np.isfinite(numeric)
                shared = np.where(valid, share * numeric * months, math.nan)
            else:
                shared = np.empty(n)
                valid = np.ones(n, dtype=np.bool_)
                for i, value in enumerate(column(field)):
                    kind = type(value)
                    if kind is not float and kind is not int:
                        value = _as_number(value)
                    if value is not None and value >= 0 and math.isfinite(value):
                        shared[i] = share * value * months  # as Offer.cost_for computes it
                    else:
                        shared[i] = math.nan
                        valid[i] = False
            # The fixed part (a combination's channel cost) adds to the offer's share.
            costs[:, a] = fixed + shared[:, None]
            if not valid.all():
                exclude(a, valid, text)
        if allowed is not None:
            masks &= allowed
        for action, ok in oks.items():
            masks[:, action] &= ok
        if skip is not None:
            masks[~live] = False
        return masks, costs, reasons

    def _evaluate_rows(
        self,
        contexts: Sequence[Mapping[str, Any]],
        candidates: Sequence[BoolArray | None] | None,
        skip: Sequence[bool] | None,
    ) -> tuple[BoolArray, FloatArray, list[list[str]]]:
        """:meth:`evaluate` row by row: for a few rows, cheaper than numpy's per-call costs."""
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

        def oks_of(actions: tuple[int, ...]) -> list[list[bool]]:
            out = []
            for a in actions:
                ok = columns.get(a)
                if ok is None:
                    ok = columns[a] = start(a)
                out.append(ok)
            return out

        def remove(lists: list[list[bool]], i: int, text: str) -> None:
            """Row ``i`` loses the actions of ``lists`` (the reason once, if any was left)."""
            if any(ok[i] for ok in lists):
                reasons[i].append(text)
                for ok in lists:
                    ok[i] = False

        for actions, field, test, text, _, _, fill in self._rules:
            lists = oks_of(actions)
            for i, ctx in enumerate(contexts):
                value = ctx.get(field)
                if value is None:
                    value = fill
                if value is None or not test(value):
                    remove(lists, i, text)
        costs = np.empty((n, self.n_actions))
        costs[:] = self._fixed
        for (actions, field, share, months, text), fixed in zip(
            self._shares, self._share_fixed, strict=True
        ):
            for i, ctx in enumerate(contexts):
                value = ctx.get(field)
                kind = type(value)
                if kind is not float and kind is not int:
                    value = _as_number(value)
                if value is not None and value >= 0 and math.isfinite(value):
                    # As Offer.cost_for computes it, plus a combination's fixed part.
                    costs[i, actions] = fixed + share * value * months
                    continue
                costs[i, actions] = math.nan
                remove(oks_of(actions), i, text)
        if rows:
            for i, cand in enumerate(rows):
                if cand is not None:
                    masks[i] &= cand
        if columns:  # one conversion for every checked offer (not one per offer)
            checked = list(columns)
            masks[:, checked] &= np.array([columns[a] for a in checked], dtype=np.bool_).T
        if skip is not None:
            masks[np.asarray(skip, dtype=np.bool_)] = False
        return masks, costs, reasons


def _plain_numbers(values: Sequence[Any]) -> FloatArray | None:
    """``values`` as float64 when each is an int or a float and every int converts exactly."""
    if not values or not set(map(type, values)) <= _INT_FLOAT:
        return None
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:
        return None
    if not (np.abs(array) < _EXACT).all() and int in set(map(type, values)):
        return None  # a big int (or a big float beside ints): Python compares it exactly
    return array


_INT_FLOAT = frozenset((int, float))


def _as_number(value: Any) -> float | None:
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return float(value)
    return None
