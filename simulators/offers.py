"""The renewal campaign's offers as the simulator sees them: kind, cost and eligibility.

The defaults mirror ``examples/renewal.toml`` (ids, costs, eligibility rules, cost charging); a test
keeps them in step, and :func:`offers_from_campaign` reads any campaign file of the same shape so
the simulator and the Engine price and filter offers identically.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InvalidInputError
from engine.types import BoolArray, FloatArray

OFFER_KINDS = ("none", "discount", "free_month", "upgrade", "gift")
CHARGE_MODES = ("always", "on_success", "never")
_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<|not in|in)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Offer:
    """One offer: what it is, what it costs and who may get it.

    Parameters
    ----------
    offer_id : str
    kind : {"none", "discount", "free_month", "upgrade", "gift"}
    amount : float
        Discount share (``discount``) or months given (``free_month``); 0 otherwise.
    cost : float
        Fixed cost per accepted offer.
    cost_share, cost_of, cost_months : float, str, float
        Variable cost ``cost_share * attribute[cost_of] * cost_months`` (0 when ``cost_of`` is "").
    eligible : tuple of str
        Conditions that must all hold, in the campaign file's syntax (``"tenure_months >= 6"``,
        ``"plan in ['basic', 'standard']"``, ``"contract_type != 'monthly'"``).
    features : tuple of float
        Numeric offer features (discount, months, gift, upgrade) for shared models.

    Examples
    --------
    >>> import numpy as np
    >>> o = Offer("discount_10", "discount", 0.10, cost_share=0.10, cost_of="monthly_price",
    ...           cost_months=12, eligible=("tenure_months >= 6",))
    >>> attrs = {"monthly_price": np.array([40.0, 40.0]), "tenure_months": np.array([3, 12])}
    >>> o.costs(attrs).tolist(), o.eligible_mask(attrs).tolist()
    ([48.0, 48.0], [False, True])
    """

    offer_id: str
    kind: str
    amount: float = 0.0
    cost: float = 0.0
    cost_share: float = 0.0
    cost_of: str = ""
    cost_months: float = 0.0
    eligible: tuple[str, ...] = ()
    features: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        where = f"offer {self.offer_id!r}"
        if self.kind not in OFFER_KINDS:
            raise InvalidInputError(f"{where} kind", f"one of {OFFER_KINDS}", self.kind)
        for name in ("amount", "cost", "cost_share", "cost_months"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"{where} {name}", "a finite number >= 0", value)
        for rule in self.eligible:
            _parse_rule(rule, where)

    def costs(self, attributes: dict[str, np.ndarray]) -> FloatArray:
        """Cost of this offer per customer, shape (n_rounds,)."""
        n = len(next(iter(attributes.values())))
        out = np.full(n, self.cost, dtype=np.float64)
        if self.cost_of:
            out += self.cost_share * self.cost_months * attributes[self.cost_of].astype(np.float64)
        return out

    def eligible_mask(self, attributes: dict[str, np.ndarray]) -> BoolArray:
        """True where every eligibility condition holds, shape (n_rounds,)."""
        n = len(next(iter(attributes.values())))
        mask = np.ones(n, dtype=bool)
        for rule in self.eligible:
            field, op, value = _parse_rule(rule, f"offer {self.offer_id!r}")
            column = attributes[field]
            if op == "in":
                mask &= np.isin(column, value)
            elif op == "not in":
                mask &= ~np.isin(column, value)
            else:
                mask &= _COMPARE[op](column, value)
        return mask


_COMPARE = {
    ">=": np.greater_equal,
    "<=": np.less_equal,
    ">": np.greater,
    "<": np.less,
    "==": np.equal,
    "!=": np.not_equal,
}


def _parse_rule(rule: str, where: str) -> tuple[str, str, Any]:
    match = _RULE.match(rule)
    if match is None:
        raise ConfigError(f"{where} eligible: cannot parse {rule!r} (expected 'field op value')")
    field, op, literal = match.groups()
    try:
        value = _literal(literal)
    except ValueError as exc:
        raise ConfigError(f"{where} eligible: bad value in {rule!r}: {exc}") from None
    if (op in ("in", "not in")) != isinstance(value, list):
        raise ConfigError(f"{where} eligible: {op!r} needs a list, got {literal!r} in {rule!r}")
    return field, op, value


def _literal(text: str) -> Any:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_literal(part) for part in inner.split(",")] if inner else []
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a number, a quoted string nor a list") from None


def _campaign_offer(
    offer_id: str, cost: Any, eligible: Any, attributes: dict[str, Any], where: str
) -> Offer:
    """The :class:`Offer` of one campaign-file offer (its ``cost``, ``eligible`` and
    ``attributes`` values); ``where`` names it in errors."""
    disc, months = float(attributes.get("discount", 0.0)), float(attributes.get("months", 0.0))
    gift, upgrade = float(attributes.get("gift", 0.0)), float(attributes.get("upgrade", 0.0))
    if disc > 0:
        kind, amount = "discount", disc
    elif upgrade > 0:
        kind, amount = "upgrade", 0.0
    elif gift > 0:
        kind, amount = "gift", 0.0
    elif months > 0:
        kind, amount = "free_month", months
    else:
        kind, amount = "none", 0.0
    fixed, share, of, n_months = 0.0, 0.0, "", 0.0
    if isinstance(cost, dict):
        share, of, n_months = float(cost["share"]), str(cost["of"]), float(cost["months"])
    elif isinstance(cost, int | float):
        fixed = float(cost)
    else:
        raise ConfigError(f"{where}.cost must be a number or a table, got {cost!r}")
    return Offer(
        offer_id,
        kind,
        amount,
        fixed,
        share,
        of,
        n_months,
        tuple(eligible),
        (disc, months, gift, upgrade),
    )


DEFAULT_CHARGE = "on_success"
# examples/renewal.toml's offers as its [[offers]] tables give them: id; cost, a fixed amount or
# (share, months) of the monthly price; attributes (discount, months, gift, upgrade); eligibility.
# They are read as offers_from_campaign reads the file, kind and amount following the attributes.
_RENEWAL_OFFERS: tuple[tuple[str, Any, tuple[float, ...], tuple[str, ...]], ...] = (
    ("none", 0.0, (0, 0, 0, 0), ()),
    ("discount_5", (0.05, 12), (0.05, 12, 0, 0), ()),
    ("discount_10", (0.10, 12), (0.10, 12, 0, 0), ("tenure_months >= 6",)),
    ("discount_20", (0.20, 12), (0.20, 12, 0, 0), ("tenure_months >= 12", "payment_failures < 2")),
    ("free_month", (1.0, 1), (0, 1, 0, 0), ("payment_failures < 3", "contract_type != 'monthly'")),
    ("upgrade", 18.0, (0, 3, 0, 1), ("plan in ['basic', 'standard']",)),
    ("loyalty_gift", 25.0, (0, 0, 1, 0), ("tenure_months >= 24",)),
)
_ATTRIBUTES = ("discount", "months", "gift", "upgrade")
DEFAULT_OFFERS = tuple(
    _campaign_offer(
        offer_id,
        {"share": cost[0], "of": "monthly_price", "months": cost[1]}
        if isinstance(cost, tuple)
        else cost,
        eligible,
        dict(zip(_ATTRIBUTES, attributes, strict=True)),
        f"DEFAULT_OFFERS {offer_id!r}",
    )
    for offer_id, cost, attributes, eligible in _RENEWAL_OFFERS
)


def offers_from_campaign(path: str | Path) -> tuple[tuple[Offer, ...], str]:
    """Read a campaign file's offers and cost-charging mode.

    The offer's kind comes from its ``attributes`` (discount > 0: discount; upgrade: upgrade;
    gift: gift; months > 0 alone: free month; else none).

    Returns
    -------
    offers : tuple of Offer
    charge_cost : {"always", "on_success", "never"}
    """
    path = Path(path)
    with path.open("rb") as fh:
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    charge = doc.get("reward", {}).get("charge_cost", DEFAULT_CHARGE)
    if charge not in CHARGE_MODES:
        raise ConfigError(
            f"{path}: reward.charge_cost must be one of {CHARGE_MODES}, got {charge!r}"
        )
    raw_offers = doc.get("offers")
    if not isinstance(raw_offers, list) or not raw_offers:
        raise ConfigError(f"{path}: offers must be a non-empty array of tables")
    offers = []
    for i, raw in enumerate(raw_offers):
        where = f"{path}: offers[{i}]"
        if not isinstance(raw.get("id"), str):
            raise ConfigError(f"{where}.id must be a string, got {raw.get('id')!r}")
        offers.append(
            _campaign_offer(
                raw["id"],
                raw.get("cost", 0.0),
                raw.get("eligible", ()),
                raw.get("attributes", {}),
                where,
            )
        )
    return tuple(offers), charge
