"""The offer catalog: ids, costs, numeric attributes, eligibility rules, budgets and caps.

An offer's cost is either fixed money (``cost = 25.0``) or a share of a numeric context field over
a number of months (``cost = {share = 0.10, of = "monthly_price", months = 12}`` costs
``0.10 * monthly_price * 12``).

Examples
--------
>>> offer = parse_offer({"id": "discount_10",
...                      "cost": {"share": 0.10, "of": "monthly_price", "months": 12},
...                      "eligible": ["tenure_months >= 6"]}, "offers[0]")
>>> offer.cost_for({"monthly_price": 50.0})
60.0
>>> offer.is_eligible({"tenure_months": 3})
False
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.campaign.limits import LIMIT_KEYS, NO_LIMITS, Limits, parse_limits
from engine.campaign.rules import Rule, parse_rule
from engine.errors import ConfigError, InvalidInputError
from engine.features.configcheck import (
    fail,
    get_bool,
    get_float,
    get_list,
    get_str,
    reject_unknown,
)

OFFER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_OFFER_KEYS = ("id", "description", "cost", "attributes", "eligible", "sends", *LIMIT_KEYS)


@dataclass(frozen=True)
class Offer:
    """One offer of a campaign.

    Attributes
    ----------
    id : str
        Stable identifier (letters, digits, ``_.:-``), what decisions and logs carry.
    fixed_cost : float
        Money per accepted offer when the cost is fixed (0 when it is a share).
    cost_share, cost_field, cost_months : float, str or None, float
        For a share cost: ``cost_share * context[cost_field] * cost_months``.
    attributes : dict of str to float
        Numeric offer features (used by the shared-parameter policy).
    rules : tuple of Rule
        Eligibility conditions, all of which must hold.
    limits : Limits
        Budgets (lifetime and per day) on how many times the offer is made and on its committed
        cost, a cap on the share of recent decisions it may take (for a newly added offer), a
        per-customer cap (see :mod:`engine.campaign.limits`).
    sends : bool
        False for an offer that sends the customer nothing (a no-incentive offer): no message
        goes out, so there is no engagement to learn from (``[[offers]] sends = false``, read by
        :class:`~engine.policies.LandingLift`). Default True.
    """

    id: str
    description: str = ""
    fixed_cost: float = 0.0
    cost_share: float = 0.0
    cost_field: str | None = None
    cost_months: float = 1.0
    attributes: tuple[tuple[str, float], ...] = ()
    rules: tuple[Rule, ...] = ()
    limits: Limits = NO_LIMITS
    sends: bool = True

    def cost_for(self, context: Mapping[str, Any]) -> float:
        """The offer's cost for this customer.

        Raises
        ------
        InvalidInputError
            When a share cost's context field is missing, not a number, or negative.
        """
        if self.cost_field is None:
            return self.fixed_cost
        value = context.get(self.cost_field)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(
                f"context.{self.cost_field}", f"a number (the cost basis of {self.id})", value
            )
        if not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"context.{self.cost_field}", "a finite number >= 0", value)
        return self.cost_share * float(value) * self.cost_months

    def is_eligible(self, context: Mapping[str, Any]) -> bool:
        """True when every eligibility rule holds."""
        for rule in self.rules:
            if not rule.holds(context):
                return False
        return True

    def failed_rule(self, context: Mapping[str, Any]) -> Rule | None:
        """The first rule that does not hold, or None."""
        for rule in self.rules:
            if not rule.holds(context):
                return rule
        return None


def parse_offer(item: Any, path: str) -> Offer:
    """Parse one ``[[offers]]`` table; errors name ``path`` and the key."""
    if not isinstance(item, dict):
        raise fail(path, "a table", item)
    reject_unknown(item, _OFFER_KEYS, path)
    offer_id, description, attrs, rules = parse_described(item, path)
    fixed, share, of, months = _parse_cost(item.get("cost", 0.0), f"{path}.cost")
    return Offer(
        id=offer_id,
        description=description,
        fixed_cost=fixed,
        cost_share=share,
        cost_field=of,
        cost_months=months,
        attributes=attrs,
        rules=rules,
        limits=parse_limits(item, path),
        sends=get_bool(item, "sends", path, default=True),
    )


def parse_described(
    item: dict[str, Any], path: str
) -> tuple[str, str, tuple[tuple[str, float], ...], tuple[Rule, ...]]:
    """The keys an offer and a dimension value share: ``id`` (letters, digits, ``_.:-``),
    ``description``, numeric ``attributes`` and ``eligible`` rules; errors name ``path``."""
    item_id = get_str(item, "id", path)
    if not OFFER_ID.match(item_id):
        raise fail(f"{path}.id", "1-64 characters from letters, digits and _.:-", item_id)
    description = item.get("description", "")
    if not isinstance(description, str):
        raise fail(f"{path}.description", "a string", description)
    attributes = item.get("attributes", {})
    if not isinstance(attributes, dict):
        raise fail(f"{path}.attributes", "a table of numbers", attributes)
    attrs = tuple((key, get_float(attributes, key, f"{path}.attributes")) for key in attributes)
    rules = []
    for i, text in enumerate(get_list(item, "eligible", path, default=[])):
        if not isinstance(text, str):
            raise fail(
                f"{path}.eligible[{i}]", "a condition string like 'tenure_months >= 12'", text
            )
        try:
            rules.append(parse_rule(text))
        except ConfigError as exc:
            raise ConfigError(f"{path}.eligible[{i}]: {exc}") from None
    return item_id, description, attrs, tuple(rules)


def _parse_cost(raw: Any, path: str) -> tuple[float, float, str | None, float]:
    expected = "a number >= 0 or a table {share, of, months}"
    if isinstance(raw, dict):
        reject_unknown(raw, ("share", "of", "months"), path)
        share = get_float(raw, "share", path, low=0.0)
        of = get_str(raw, "of", path)
        months = get_float(raw, "months", path, default=1.0, low=0.0)
        return 0.0, share, of, months
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise fail(path, expected, raw)
    if not math.isfinite(raw) or raw < 0:
        raise fail(path, expected, raw)
    return float(raw), 0.0, None, 1.0
