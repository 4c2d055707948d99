"""Checks of the Engine's requests: customer ids, contexts, candidate offers, reward reports.

Everything here runs before the decision lock is taken and before anything is written: a bad
request changes no state. Limits and wording come from :mod:`engine.validation`.

Examples
--------
>>> check_decide_request(["c1"], [{"plan": "basic"}])
>>> check_decide_request(["c1", ""], [{}, {}])
Traceback (most recent call last):
...
engine.errors.InvalidInputError: customer_ids[1]: expected a non-empty UTF-8 string ...
>>> check_rewards(["d1", "d2"], [1, 2.5])
[1.0, 2.5]
>>> CandidateMasks(("none", "gift")).rows(["gift"], 2)
[array([False,  True]), array([False,  True])]
>>> request_hash(["c1"], [{"plan": "basic"}], None) == request_hash(["c1"], [{"plan": "basic"}])
True
>>> request_hash(["c1"], [{"plan": "basic"}]) == request_hash(["c2"], [{"plan": "basic"}])
False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import InvalidInputError
from engine.types import BoolArray
from engine.validation import (
    ID_RULE,
    MAX_COMPONENTS,
    VALUE_LIMIT,
    check_context_bounds,
    check_value,
    first_bad_id,
    valid_ids,
    within_bounds,
)

__all__ = [
    "CandidateMasks",
    "baseline_actions",
    "check_components",
    "check_decide_request",
    "check_rewards",
    "logging_probabilities",
    "request_hash",
]


def check_decide_request(
    customer_ids: Sequence[str], contexts: Sequence[Mapping[str, Any]]
) -> None:
    """Raise InvalidInputError unless ``contexts`` has one mapping per valid customer id, each
    within the request bounds of :func:`engine.validation.check_context_bounds` (the gRPC codec's
    limits and messages, so in-process callers are bounded as network ones are).

    The fields are named as a single decide names them (``customer_id``, ``context``) when there
    is one row, by position otherwise (``customer_ids[3]``).
    """
    n = len(customer_ids)
    single = n == 1
    if isinstance(customer_ids, str) or not isinstance(contexts, Sequence) or len(contexts) != n:
        raise InvalidInputError(
            "contexts", f"a list of {n} contexts (one per customer id)", type(contexts).__name__
        )
    if not valid_ids(customer_ids):
        i = first_bad_id(customer_ids)
        raise InvalidInputError(
            "customer_id" if single else f"customer_ids[{i}]", ID_RULE, customer_ids[i]
        )
    if not all(type(ctx) is dict for ctx in contexts):
        for i, ctx in enumerate(contexts):
            if not isinstance(ctx, Mapping):
                field = "context" if single else f"contexts[{i}]"
                raise InvalidInputError(field, "a mapping of attribute names to values", ctx)
    if single:
        check_context_bounds(contexts[0], "context")
    elif not within_bounds(contexts):
        for i, ctx in enumerate(contexts):
            check_context_bounds(ctx, f"contexts[{i}]")


def request_hash(
    customer_ids: Sequence[str], contexts: Sequence[Mapping[str, Any]], candidates: Any = None
) -> str:
    """Hex SHA-256 of a decide request: what a retry under the same request id must repeat.

    Contexts are hashed with their keys sorted, so the order a client sends attributes in does
    not matter; anything JSON cannot write is hashed by its ``repr``.
    """
    text = json.dumps(
        [list(customer_ids), [dict(c) for c in contexts], candidates],
        sort_keys=True,
        default=repr,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def check_rewards(decision_ids: Sequence[str], values: Any) -> list[float]:
    """The reported values as floats, after checking one valid id per finite value.

    The first bad pair in row order is reported (an id before its own value).
    """
    n = len(decision_ids)
    if (
        isinstance(decision_ids, str)
        or not isinstance(values, Sequence | np.ndarray)
        or len(values) != n
    ):
        raise InvalidInputError("values", f"a list of {n} numbers (one per decision id)", values)
    bad = -1 if valid_ids(decision_ids) else first_bad_id(decision_ids)
    if bad == -1 and n > 1 and all(type(v) is float for v in values):
        # The batch fast path: plain floats checked in one vectorized pass (NaN fails the
        # comparison, as does an infinity); any offender is then found row by row below.
        if bool((np.abs(np.array(values, dtype=np.float64)) <= VALUE_LIMIT).all()):
            return list(values)
    single = n == 1
    clean: list[float] = []
    for i, value in enumerate(values):
        if i == bad:
            field = "decision_id" if single else f"decision_ids[{i}]"
            raise InvalidInputError(field, ID_RULE, decision_ids[i])
        clean.append(check_value("value" if single else f"values[{i}]", value))
    return clean


class CandidateMasks:
    """Candidate offer lists of a request as masks over the campaign's offers.

    Parameters
    ----------
    offer_ids : tuple of str
        The campaign's offers, in action order.
    """

    def __init__(
        self,
        offer_ids: Sequence[str],
        groups: Mapping[str, tuple[int, Sequence[int]]] | None = None,
    ) -> None:
        self.offer_ids = tuple(offer_ids)
        self._index = {o: i for i, o in enumerate(self.offer_ids)}
        #: With dimensions: an offer id or ``<dimension>=<value>`` -> (its dimension's index,
        #: its combinations).
        self._groups = dict(groups or {})

    def rows(self, candidates: Any, n: int) -> list[BoolArray | None] | None:
        """One mask (or None: no restriction) per row, or None when no row is restricted.

        ``candidates`` is one list of offer ids for every row, or one list (or None) per row.
        """
        if candidates is None or (isinstance(candidates, Sequence) and not candidates):
            return None
        if isinstance(candidates, Sequence) and not isinstance(candidates, str):
            if all(isinstance(c, str) for c in candidates):
                return [self.mask(candidates, "candidates")] * n
            if len(candidates) == n:
                return [self.mask(c, f"candidates[{i}]") for i, c in enumerate(candidates)]
        raise InvalidInputError(
            "candidates", "a list of offer ids, or one list per row", candidates
        )

    def mask(self, candidates: Any, field: str) -> BoolArray | None:
        """Mask of one candidate list (None for None or an empty list)."""
        if candidates is None:
            return None
        if isinstance(candidates, str) or not isinstance(candidates, Sequence):
            raise InvalidInputError(field, "a list of offer ids", candidates)
        if not candidates:
            return None
        mask = np.zeros(len(self.offer_ids), dtype=np.bool_)
        # With dimensions a candidate may name a value: the combinations allowed are the
        # named ones, and those whose every named dimension has one of the named values.
        by_dimension: dict[int, BoolArray] = {}
        for i, offer_id in enumerate(candidates):
            index = self._index.get(offer_id) if isinstance(offer_id, str) else None
            if index is not None:
                mask[index] = True
                continue
            group = self._groups.get(offer_id) if isinstance(offer_id, str) else None
            if group is None:
                expected = (
                    "a combination id, an offer id or <dimension>=<value> of the campaign"
                    if self._groups
                    else "one of " + ", ".join(self.offer_ids)
                )
                raise InvalidInputError(f"{field}[{i}]", expected, offer_id)
            dim, actions = group
            allowed = by_dimension.setdefault(dim, np.zeros(len(self.offer_ids), dtype=np.bool_))
            allowed[list(actions)] = True
        if by_dimension:
            mask |= np.logical_and.reduce(list(by_dimension.values()))
        return mask


def _per_row(value: Any, one: type, n: int, field: str, what: str) -> Sequence[Any] | None:
    """``value`` as one entry per row: None (or empty) for none, a single ``one`` for every
    row, or a sequence of ``n``; anything else is InvalidInputError naming ``field``."""
    if value is None or (not isinstance(value, one) and not value):
        return None
    rows = [value] * n if isinstance(value, one) else value
    if not isinstance(rows, Sequence) or len(rows) != n:
        raise InvalidInputError(field, f"{what} for every row, or a list of {n}", value)
    return rows


def baseline_actions(
    baselines: Any, n: int, index: Mapping[str, int], offer_ids: Sequence[str]
) -> np.ndarray | None:
    """The baseline offers of a request as action indices (int64, one per row; -1 where a
    row has none), or None when no row has one.

    ``baselines`` is None, one offer id for every row, or one id (or None / "") per row. The
    field is named as a single decide names it (``baseline_offer``) when there is one row.

    Examples
    --------
    >>> index = {"none": 0, "gift": 1}
    >>> baseline_actions(["gift", None], 2, index, ("none", "gift")).tolist()
    [1, -1]
    >>> baseline_actions("nope", 1, index, ("none", "gift"))
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: baseline_offer: expected one of none, gift, got nope
    """
    rows = _per_row(baselines, str, n, "baseline_offers", "one offer id")
    if rows is None:
        return None
    out = np.full(n, -1, dtype=np.int64)
    for i, offer_id in enumerate(rows):
        if offer_id is None or offer_id == "":
            continue
        found = index.get(offer_id) if isinstance(offer_id, str) else None
        if found is None:
            field = (
                "baseline_offer"
                if n == 1 or isinstance(baselines, str)
                else (f"baseline_offers[{i}]")
            )
            raise InvalidInputError(field, "one of " + ", ".join(offer_ids), offer_id)
        out[i] = found
    return out if bool((out >= 0).any()) else None


PROBABILITY_TOLERANCE = 1e-6  # |sum - 1| allowed for a row of logging probabilities


def logging_probabilities(
    probabilities: Any, n: int, index: Mapping[str, int], offer_ids: Sequence[str]
) -> np.ndarray | None:
    """The caller's probabilities of the offers (logging mode) as an array of shape
    (n, n_offers), or None when the request has none.

    ``probabilities`` is one mapping of offer id to probability for every row, or one mapping
    (or None) per row. Each given row must name known offers with finite probabilities >= 0
    that sum to 1 (within PROBABILITY_TOLERANCE); offers it leaves out get 0. A row without
    any is all NaN.

    Examples
    --------
    >>> index = {"none": 0, "gift": 1}
    >>> logging_probabilities({"gift": 0.25, "none": 0.75}, 1, index, ("none", "gift")).tolist()
    [[0.75, 0.25]]
    >>> logging_probabilities({"gift": 0.5}, 1, index, ("none", "gift"))
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: probabilities: expected probabilities >= 0 that sum to 1, ...
    """
    rows = _per_row(probabilities, Mapping, n, "probabilities", "one mapping")
    if rows is None:
        return None
    out = np.full((n, len(offer_ids)), np.nan)
    single = n == 1 or isinstance(probabilities, Mapping)
    for i, row in enumerate(rows):
        if row is None or (isinstance(row, Mapping) and not row):
            continue
        field = "probabilities" if single else f"probabilities[{i}]"
        if not isinstance(row, Mapping):
            raise InvalidInputError(field, "a mapping of offer id to probability", row)
        out[i] = 0.0
        for offer_id, p in row.items():
            found = index.get(offer_id) if isinstance(offer_id, str) else None
            if found is None:
                raise InvalidInputError(
                    f"{field}[{offer_id!r}]", "one of " + ", ".join(offer_ids), offer_id
                )
            value = float(p) if isinstance(p, int | float) and not isinstance(p, bool) else -1.0
            if not (0.0 <= value <= 1.0):
                raise InvalidInputError(f"{field}[{offer_id!r}]", "a probability in [0, 1]", p)
            out[i, found] = value
        total = float(out[i].sum())
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise InvalidInputError(
                field, "probabilities >= 0 that sum to 1", f"a sum of {total:.10g}"
            )
    return out


def check_components(
    components: Any, n: int, engagements: Collection[str] = ()
) -> list[str | None] | None:
    """Reward components (one mapping of name to finite number, or None, per reward) as the
    journal keeps them: JSON text with sorted keys, or None. Components named in
    ``engagements`` (what the campaign's policy learns engagement from) must be in [0, 1].

    Examples
    --------
    >>> check_components([{"complaints": 1}, None], 2)
    ['{"complaints": 1.0}', None]
    >>> check_components([{"complaints": float("nan")}], 1)
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: components['complaints']: expected a finite number ..., got nan
    """
    if components is None:
        return None
    if not isinstance(components, Sequence) or len(components) != n:
        raise InvalidInputError("components", f"one mapping (or None) per reward ({n})", components)
    out: list[str | None] = []
    for i, parts in enumerate(components):
        field = "components" if n == 1 else f"components[{i}]"
        if not parts:
            out.append(None)
            continue
        if not isinstance(parts, Mapping) or len(parts) > MAX_COMPONENTS:
            raise InvalidInputError(
                field, f"a mapping of at most {MAX_COMPONENTS} names to numbers", parts
            )
        clean = {}
        for name, value in parts.items():
            if not isinstance(name, str) or not name:
                raise InvalidInputError(field, "non-empty component names", name)
            number = check_value(f"{field}[{name!r}]", value)
            if name in engagements and not 0.0 <= number <= 1.0:
                raise InvalidInputError(
                    f"{field}[{name!r}]",
                    "an engagement in [0, 1] (1 engaged, 0 not; the policy learns from it)",
                    number,
                )
            clean[name] = number
        out.append(json.dumps(clean, sort_keys=True))
    return out
