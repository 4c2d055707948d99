"""Declarative eligibility conditions, parsed by a small tokenizer (never eval/exec).

A condition is ``<field> <op> <literal>``:

- ``op`` is one of ``==  !=  <  <=  >  >=  in  not in``;
- ``literal`` is a number, a quoted string ('x' or "x"), ``true``/``false``, or for ``in`` /
  ``not in`` a list ``[lit, lit, ...]``.

An offer's ``eligible`` list holds conditions that must all be true. A condition on a value of
the wrong type (``plan < 3``) is false: the offer is not eligible.

A campaign's rules may only name declared attributes: its features and ``[features]
rule_attributes`` (:func:`engine.campaign.config.parse_campaign` refuses any other name). When
the context does not carry the field (or carries None), the rule reads what the model reads,
the feature's declared missing value (:meth:`Rule.with_missing`):

- numeric ``missing = "zero"``: 0; ``missing = <number>``: that number; ``missing = "mean"``:
  the configured mean (0 with ``standardize = "none"``). ``"mean"`` with running statistics has
  no fixed value, and a rule on such a feature is refused at load;
- ``missing = "error"`` (numeric or categorical): the request is refused (the encoder rejects it;
  :meth:`Rule.holds` raises), never read as false;
- categorical ``missing = "ignore"`` and rule attributes: the rule is false.

A rule parsed alone (:func:`parse_rule`) has no missing value: a missing field makes it false.

Examples
--------
>>> rule = parse_rule("tenure_months >= 12")
>>> rule.holds({"tenure_months": 14}), rule.holds({"tenure_months": 3}), rule.holds({})
(True, False, False)
>>> parse_rule("plan in ['basic', 'standard']").holds({"plan": "basic"})
True
>>> parse_rule("support_tickets < 2").with_missing(0.0).holds({})
True
>>> parse_rule("tenure_months >> 3")
Traceback (most recent call last):
...
engine.errors.ConfigError: rule 'tenure_months >> 3': expected <field> <op> <literal> ...
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import ConfigError, InvalidInputError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op>==|!=|<=|>=|<|>)
      | (?P<punct>[\[\],])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ORDERING = ("<", "<=", ">", ">=")
_SYNTAX = "<field> <op> <literal> with op one of ==, !=, <, <=, >, >=, in, not in"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True)
class Rule:
    """One parsed condition. ``holds(context)`` says whether it is true for that context.

    ``missing`` is the value read when the context lacks ``field`` (None: the rule is false);
    ``required`` says that a context lacking it is an error, not a false rule.
    """

    text: str
    field: str
    op: str
    value: Any
    _test: Callable[[Any], bool] = dataclasses.field(repr=False, compare=False)
    missing: Any = None
    required: bool = False

    def holds(self, context: Mapping[str, Any]) -> bool:
        """True when the condition holds for ``context``.

        Raises
        ------
        InvalidInputError
            When the field is missing and ``required``.
        """
        value = context.get(self.field)
        if value is None:
            if self.required:
                raise InvalidInputError(
                    f"context.{self.field}",
                    f"a value (rule {self.text!r} reads it)",
                    "nothing (missing)",
                )
            value = self.missing
            if value is None:
                return False
        return self._test(value)

    def with_missing(self, missing: Any = None, required: bool = False) -> Rule:
        """This rule reading ``missing`` for an absent field, or refusing it when ``required``."""
        return dataclasses.replace(self, missing=missing, required=required)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"rule {text!r}: expected {_SYNTAX}, got {stripped[pos:]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _literal(kind: str, raw: str, text: str) -> Any:
    if kind == "number":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw else number
    if kind == "string":
        return raw[1:-1]
    if kind == "word" and raw in ("true", "false"):
        return raw == "true"
    raise ConfigError(
        f"rule {text!r}: expected a number, a quoted string or true/false, got {raw!r}"
    )


def _make_test(op: str, value: Any) -> Callable[[Any], bool]:
    if op in ("in", "not in"):
        members = frozenset(value)
        negate = op == "not in"

        def test_in(x: Any) -> bool:
            try:
                return (x in members) != negate
            except TypeError:  # unhashable context value
                return negate

        return test_in
    compare = _COMPARE[op]
    numeric = _is_number(value)
    if op in _ORDERING:
        if numeric:
            # NaN compares False with every ordering operator: no isfinite check needed.
            def test_number(x: Any) -> bool:
                kind = type(x)
                if kind is int or kind is float:
                    return compare(x, value)
                return _is_number(x) and compare(x, value)

            return test_number

        def test_text(x: Any) -> bool:
            return type(x) is str and compare(x, value)

        return test_text
    negated = op == "!="

    def test_eq(x: Any) -> bool:
        kind = type(x)
        if kind is type(value) or (numeric and _is_number(x)):
            return compare(x, value)
        return negated

    return test_eq


def parse_rule(text: str) -> Rule:
    """Parse one condition.

    Raises
    ------
    ConfigError
        When the text is not ``<field> <op> <literal>``; the message quotes the rule.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"rule {text!r}: expected {_SYNTAX}, got an empty rule")
    tokens = _tokenize(text)
    bad = ConfigError(f"rule {text!r}: expected {_SYNTAX}")
    if len(tokens) < 3 or tokens[0][0] != "word":
        raise bad
    name = tokens[0][1]
    rest = tokens[1:]
    if rest[0] == ("word", "not") and len(rest) > 1 and rest[1] == ("word", "in"):
        op, rest = "not in", rest[2:]
    elif rest[0] == ("word", "in"):
        op, rest = "in", rest[1:]
    elif rest[0][0] == "op":
        op, rest = rest[0][1], rest[1:]
    else:
        raise bad
    if op in ("in", "not in"):
        if not rest or rest[0] != ("punct", "[") or rest[-1] != ("punct", "]"):
            raise ConfigError(f"rule {text!r}: expected a list [..] after {op!r}")
        items = rest[1:-1]
        values = []
        for i, (kind, raw) in enumerate(items):
            if i % 2 == 1:
                if (kind, raw) != ("punct", ","):
                    raise ConfigError(
                        f"rule {text!r}: expected ',' between list items, got {raw!r}"
                    )
                continue
            values.append(_literal(kind, raw, text))
        if items and items[-1] == ("punct", ","):
            raise ConfigError(f"rule {text!r}: expected a literal after ',', got ']'")
        value: Any = tuple(values)
    else:
        if len(rest) != 1:
            raise bad
        value = _literal(rest[0][0], rest[0][1], text)
        if op in _ORDERING and isinstance(value, bool):
            raise ConfigError(
                f"rule {text!r}: expected a number or string after {op!r}, got a bool"
            )
    return Rule(text=text, field=name, op=op, value=value, _test=_make_test(op, value))
