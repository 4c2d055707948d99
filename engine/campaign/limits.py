"""Guardrails on a set of actions, as an offer or a dimension value declares them.

The keys (all optional): ``budget_count`` and ``budget_money`` (lifetime limits on the decisions
and their committed cost), ``budget_count_per_day`` and ``budget_money_per_day`` (the same per
UTC day: a call center's capacity), ``max_traffic_share`` (share of the last ``traffic_window``
decisions) and ``max_per_customer`` incentives within ``frequency_window_days``. An offer's limits
cover its combinations, a dimension value's every combination that has it (see
:mod:`engine.campaign.guardrails`).

Examples
--------
>>> parse_limits({"budget_count_per_day": 200}, "offers[1]").budget_count_per_day
200
>>> parse_limits({"max_per_customer": 1}, "dimensions[0].values[1]")
Traceback (most recent call last):
...
engine.errors.ConfigError: dimensions[0].values[1].frequency_window_days: expected a number > 0 ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.features.configcheck import fail, get_float, get_int

DAY = 86400.0
LIMIT_KEYS = (
    "budget_count",
    "budget_money",
    "budget_count_per_day",
    "budget_money_per_day",
    "max_traffic_share",
    "max_per_customer",
    "frequency_window_days",
)


@dataclass(frozen=True)
class Limits:
    """Guardrails on a set of actions (an offer's combinations, or a dimension value's).

    Attributes
    ----------
    budget_count, budget_money : int or None, float or None
        Lifetime limits on the decisions and on their committed cost.
    budget_count_per_day, budget_money_per_day : int or None, float or None
        The same per UTC day.
    max_traffic_share : float or None
        Cap on the share of the last ``traffic_window`` decisions.
    max_per_customer : int or None
        Incentives per customer within ``frequency_window`` seconds.
    frequency_window : float
    """

    budget_count: int | None = None
    budget_money: float | None = None
    budget_count_per_day: int | None = None
    budget_money_per_day: float | None = None
    max_traffic_share: float | None = None
    max_per_customer: int | None = None
    frequency_window: float = 0.0

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.budget_count,
                self.budget_money,
                self.budget_count_per_day,
                self.budget_money_per_day,
                self.max_traffic_share,
                self.max_per_customer,
            )
        )


def parse_limits(item: dict[str, Any], path: str) -> Limits:
    """The guardrail keys of an offer or a dimension value (absent: no limit)."""

    def optional(key: str, parse: Any, **bounds: Any) -> Any:
        return parse(item, key, path, **bounds) if key in item else None

    max_per_customer = optional("max_per_customer", get_int, low=1)
    window = get_float(item, "frequency_window_days", path, default=0.0, low=0.0)
    if max_per_customer is not None and window <= 0:
        raise fail(
            f"{path}.frequency_window_days",
            "a number > 0 when max_per_customer is set",
            item.get("frequency_window_days"),
        )
    return Limits(
        budget_count=optional("budget_count", get_int, low=0),
        budget_money=optional("budget_money", get_float, low=0.0),
        budget_count_per_day=optional("budget_count_per_day", get_int, low=0),
        budget_money_per_day=optional("budget_money_per_day", get_float, low=0.0),
        max_traffic_share=optional(
            "max_traffic_share", get_float, low=0.0, high=1.0, low_open=True
        ),
        max_per_customer=max_per_customer,
        frequency_window=window * DAY if max_per_customer is not None else 0.0,
    )


NO_LIMITS = Limits()
