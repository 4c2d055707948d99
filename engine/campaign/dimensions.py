"""Decisions of several dimensions: ``[[dimensions]]`` and ``[combinations]`` of a campaign file.

The offers are the first dimension (named ``offer``); each ``[[dimensions]]`` table adds one more,
with a ``name`` and its ``values``: ids (``values = ["email", "sms", "call"]``) or tables with an
``id`` and optional ``description``, ``cost`` (money per decision, added to the offer's),
``attributes`` (numbers the joint model learns from), ``eligible`` rules (as an offer's),
lifetime budgets ``budget_count``/``budget_money``, daily budgets
``budget_count_per_day``/``budget_money_per_day`` (a call center's capacity: decisions per UTC
day) and a per-customer cap ``max_per_customer`` within ``frequency_window_days`` (at most one SMS
per customer in 30 days). ``[combinations] exclude`` lists conditions on the dimensions joined by
``and`` (``"offer == 'upgrade' and channel == 'sms'"``), parsed by the rule tokenizer and never
evaluated as code: a combination that meets every condition of one entry is not offered.

Every allowed combination becomes one action of the policy, with the id
:func:`~engine.features.combinations.combination_id` gives it (``"upgrade+email+now"``), the offer's
cost plus its values' costs, and the offer's rules and its values' rules: the whole decision
(offer, channel, timing) is drawn at once, so its propensity is the exact probability of the
combination (docs/architecture.md, "Multi-dimensional decisions").

Examples
--------
>>> from engine.campaign.offers import parse_offer
>>> offers = (parse_offer({"id": "none"}, "offers[0]"),
...           parse_offer({"id": "upgrade", "cost": 5.0}, "offers[1]"))
>>> dims = parse_dimensions([{"name": "channel", "values": [
...     "email", {"id": "call", "cost": 4.0, "budget_count_per_day": 100}]}])
>>> combos = expand(offers, dims, parse_exclusions(
...     {"exclude": ["offer == 'none' and channel != 'email'"]}, dims))
>>> combos.ids
('none+email', 'upgrade+email', 'upgrade+call')
>>> [o.fixed_cost for o in combos.offers]
[0.0, 5.0, 9.0]
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engine.campaign.limits import LIMIT_KEYS, NO_LIMITS, Limits, parse_limits
from engine.campaign.offers import Offer, parse_described
from engine.campaign.rules import Rule, parse_rule
from engine.errors import ConfigError
from engine.features.combinations import combination_id
from engine.features.configcheck import (
    fail,
    get_float,
    get_list,
    get_str,
    reject_unknown,
)
from engine.types import IntArray

OFFER_DIMENSION = "offer"
#: The logged-data columns (docs/architecture.md, "Logged-data schema"): an exported decision has
#: a column per dimension beside them, so a dimension may not take one of their names.
LOGGED_COLUMNS = (
    "decision_id",
    "timestamp",
    "campaign",
    "customer_id",
    "context",
    "action",
    "propensity",
    "reward",
    "eligible",
    "explored",
    "control",
    "model_version",
)
MAX_COMBINATIONS = 4096  # actions of one campaign: a policy scores every one per decision
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_VALUE_KEYS = ("id", "description", "cost", "attributes", "eligible", *LIMIT_KEYS)


@dataclass(frozen=True)
class DimensionValue:
    """One value of a dimension (``sms`` of ``channel``)."""

    id: str
    description: str = ""
    cost: float = 0.0
    attributes: tuple[tuple[str, float], ...] = ()
    rules: tuple[Rule, ...] = ()
    limits: Limits = NO_LIMITS


@dataclass(frozen=True)
class Dimension:
    """A dimension after the offers: its name and values, in the file's order."""

    name: str
    values: tuple[DimensionValue, ...]

    @property
    def value_ids(self) -> tuple[str, ...]:
        return tuple(v.id for v in self.values)


@dataclass(frozen=True)
class Exclusion:
    """One ``[combinations] exclude`` entry: conditions on dimensions, all of which exclude."""

    text: str
    rules: tuple[Rule, ...]

    def excludes(self, choice: dict[str, str]) -> bool:
        return all(rule.holds(choice) for rule in self.rules)


@dataclass(frozen=True)
class Combinations:
    """The allowed combinations of a campaign with dimensions.

    Attributes
    ----------
    names : tuple of str
        ``"offer"`` then each dimension's name.
    codes : array of shape (n_actions, n_dimensions)
        Each combination's value index per dimension.
    offers : tuple of Offer
        One per combination: id, summed fixed cost, the offer's share cost, all rules.
    """

    names: tuple[str, ...]
    codes: IntArray
    offers: tuple[Offer, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.offers)


def parse_dimensions(raw: Any) -> tuple[Dimension, ...]:
    """Parse the ``[[dimensions]]`` array (absent: no dimensions); errors name the key path."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise fail("dimensions", "a non-empty array of [[dimensions]] tables", raw)
    dims: list[Dimension] = []
    for i, item in enumerate(raw):
        path = f"dimensions[{i}]"
        if not isinstance(item, dict):
            raise fail(path, "a table with name and values", item)
        reject_unknown(item, ("name", "description", "values"), path)
        name = get_str(item, "name", path)
        if not _NAME.match(name) or name == OFFER_DIMENSION or name in LOGGED_COLUMNS:
            raise fail(
                f"{path}.name",
                "1-32 lowercase letters, digits and _, starting with a letter, neither 'offer' "
                "(the offers are the first dimension) nor a logged-data column ("
                + ", ".join(LOGGED_COLUMNS)
                + ")",
                name,
            )
        if name in (d.name for d in dims):
            raise fail(f"{path}.name", "a name not used by an earlier dimension", name)
        values_raw = get_list(item, "values", path)
        if not values_raw:
            raise fail(f"{path}.values", "a non-empty list of ids or tables", values_raw)
        values: list[DimensionValue] = []
        for j, value in enumerate(values_raw):
            parsed = _parse_value(value, f"{path}.values[{j}]")
            if parsed.id in (v.id for v in values):
                raise fail(
                    f"{path}.values[{j}].id", "an id not used by an earlier value", parsed.id
                )
            values.append(parsed)
        dims.append(Dimension(name, tuple(values)))
    return tuple(dims)


def _parse_value(item: Any, path: str) -> DimensionValue:
    if isinstance(item, str):
        item = {"id": item}
    if not isinstance(item, dict):
        raise fail(path, "an id or a table with an id", item)
    reject_unknown(item, _VALUE_KEYS, path)
    value_id, description, attributes, rules = parse_described(item, path)
    return DimensionValue(
        id=value_id,
        description=description,
        cost=get_float(item, "cost", path, default=0.0, low=0.0),
        attributes=attributes,
        rules=rules,
        limits=parse_limits(item, path),
    )


def parse_exclusions(raw: Any, dims: tuple[Dimension, ...]) -> tuple[Exclusion, ...]:
    """Parse ``[combinations]``: ``exclude``, conditions on ``offer`` and the dimensions' names
    joined by ``and``; every literal must be a value of its dimension (offers are checked when
    the combinations are expanded)."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise fail("combinations", "a table with exclude", raw)
    reject_unknown(raw, ("exclude",), "combinations")
    if not dims:
        raise fail("combinations", "[[dimensions]] to combine (no dimensions are declared)", raw)
    names = {d.name: d for d in dims}
    out = []
    for i, text in enumerate(get_list(raw, "exclude", "combinations", default=[])):
        path = f"combinations.exclude[{i}]"
        if not isinstance(text, str):
            raise fail(
                path, "a condition string like \"offer == 'upgrade' and channel == 'sms'\"", text
            )
        rules = []
        for part in _split_and(text):
            try:
                rule = parse_rule(part)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            if rule.field != OFFER_DIMENSION and rule.field not in names:
                raise fail(
                    path,
                    f"conditions on {', '.join((OFFER_DIMENSION, *names))}",
                    f"{rule.text!r} on {rule.field!r}",
                )
            if rule.op not in ("==", "!=", "in", "not in"):
                raise fail(
                    path, "==, !=, in or not in between a dimension and its values", rule.text
                )
            if rule.field in names:
                known = names[rule.field].value_ids
                literals = rule.value if isinstance(rule.value, tuple) else (rule.value,)
                for literal in literals:
                    if literal not in known:
                        raise fail(path, f"values of {rule.field} ({', '.join(known)})", literal)
            rules.append(rule)
        out.append(Exclusion(text, tuple(rules)))
    return tuple(out)


def _split_and(text: str) -> list[str]:
    """``text`` cut at each ``and`` outside quotes."""
    parts, start, quote = [], 0, ""
    for m in re.finditer(r"'|\"|\band\b", text):
        token = m.group(0)
        if token in ("'", '"'):
            quote = "" if quote == token else (quote or token)
        elif not quote:
            parts.append(text[start : m.start()])
            start = m.end()
    parts.append(text[start:])
    return [p.strip() for p in parts]


def expand(
    offers: tuple[Offer, ...], dims: tuple[Dimension, ...], exclusions: tuple[Exclusion, ...] = ()
) -> Combinations:
    """Every combination of an offer and one value per dimension that no exclusion removes, in
    the order of the offers, then of each dimension's values."""
    names = (OFFER_DIMENSION, *(d.name for d in dims))
    offer_ids = {o.id for o in offers}
    for i, exclusion in enumerate(exclusions):
        for rule in exclusion.rules:
            literals = rule.value if isinstance(rule.value, tuple) else (rule.value,)
            if rule.field == OFFER_DIMENSION:
                for literal in literals:
                    if literal not in offer_ids:
                        raise fail(f"combinations.exclude[{i}]", "offer ids of [[offers]]", literal)
    sizes = [len(offers), *(len(d.values) for d in dims)]
    if math.prod(sizes) > 16 * MAX_COMBINATIONS:
        raise fail("dimensions", f"at most {MAX_COMBINATIONS} combinations", math.prod(sizes))
    codes, combos = [], []
    for code in itertools.product(*(range(s) for s in sizes)):
        offer = offers[code[0]]
        values = [d.values[c] for d, c in zip(dims, code[1:], strict=True)]
        choice = dict(zip(names, (offer.id, *(v.id for v in values)), strict=True))
        if any(e.excludes(choice) for e in exclusions):
            continue
        codes.append(code)
        combos.append(
            replace(
                offer,
                id=combination_id(list(choice.values())),
                fixed_cost=offer.fixed_cost + sum(v.cost for v in values),
                rules=offer.rules + tuple(r for v in values for r in v.rules),
                attributes=(),
                limits=Limits(),
            )
        )
    if not combos:
        raise fail("combinations.exclude", "rules that leave at least one combination", "none")
    if len(combos) > MAX_COMBINATIONS:
        raise fail("dimensions", f"at most {MAX_COMBINATIONS} combinations", len(combos))
    return Combinations(names, np.asarray(codes, dtype=np.int64), tuple(combos))
