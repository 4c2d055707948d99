"""Small readers for parsed TOML tables that raise :class:`ConfigError` naming the key path.

Used by the feature schema and the campaign loader so that every configuration message has the
same shape: ``"offers[2].cost: expected a number >= 0 or a table {share, of, months}, got -1"``.

Examples
--------
>>> table = {"mean": 3.0, "name": "tenure_months"}
>>> get_float(table, "mean", "features.numeric[0]")
3.0
>>> get_float(table, "std", "features.numeric[0]", default=1.0)
1.0
>>> get_str(table, "mean", "features.numeric[0]")
Traceback (most recent call last):
...
engine.errors.ConfigError: features.numeric[0].mean: expected a non-empty string, got 3.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import ConfigError

_MISSING: Any = object()


class _Plain(str):
    """Text shown as is in a message (not quoted like a configured value)."""


ABSENT = _Plain("nothing (key missing)")


def fail(path: str, expected: str, got: object) -> ConfigError:
    """Build the error for ``path`` (returned, so callers write ``raise fail(...)``).

    Configured values are shown as TOML would spell them closely enough: strings quoted.
    """
    text = str(got) if isinstance(got, _Plain) else repr(got)
    if len(text) > 80:
        text = text[:77] + "..."
    return ConfigError(f"{path}: expected {expected}, got {text}")


def join(path: str, key: str) -> str:
    """``join("offers[1]", "cost") == "offers[1].cost"``; an empty path gives the bare key."""
    return f"{path}.{key}" if path else key


def _given(table: Mapping[str, Any], key: str, path: str, default: Any, expected: str) -> Any:
    """The configured value, or ``_MISSING`` when the key is absent and has a default (which the
    caller converts; a default is not checked); an absent key without a default fails."""
    value = table.get(key, _MISSING)
    if value is _MISSING and default is _MISSING:
        raise fail(join(path, key), expected, ABSENT)
    return value


def _of_type(
    table: Mapping[str, Any], key: str, path: str, default: Any, expected: str, kind: type
) -> Any:
    """A value that must be an instance of ``kind`` (a default is converted with ``kind``)."""
    value = _given(table, key, path, default, expected)
    if value is _MISSING:
        return kind(default)
    if not isinstance(value, kind):
        raise fail(join(path, key), expected, value)
    return value


def _number(
    table: Mapping[str, Any],
    key: str,
    path: str,
    default: Any,
    kind: type[float] | type[int],
    rule: str,
    low: float | None,
    high: float | None = None,
    low_open: bool = False,
) -> Any:
    """A number: a float (from an int or a float, finite) or an int (bools are neither) within
    the bounds, else fail with ``rule`` (a default is converted with ``kind``, not checked)."""
    value = _given(table, key, path, default, "a number" if kind is float else "an integer")
    if value is _MISSING:
        return kind(default)
    accepted = int | float if kind is float else int
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise fail(join(path, key), rule, value)
    if kind is float and not math.isfinite(value):
        raise fail(join(path, key), rule, value)
    number = kind(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    if too_low or (high is not None and number > high):
        raise fail(join(path, key), rule, value)
    return number


def get_table(table: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> dict:
    return _of_type(table, key, path, default, "a table", dict)


def get_str(
    table: Mapping[str, Any],
    key: str,
    path: str,
    default: Any = _MISSING,
    choices: Iterable[str] | None = None,
) -> str:
    value = _given(table, key, path, default, "a string")
    if value is _MISSING:
        return str(default)
    allowed = tuple(choices) if choices is not None else None
    if not isinstance(value, str) or (allowed is None and not value):
        raise fail(join(path, key), "a non-empty string", value)
    if allowed is not None and value not in allowed:
        raise fail(join(path, key), "one of " + ", ".join(repr(c) for c in allowed), value)
    return value


def get_float(
    table: Mapping[str, Any],
    key: str,
    path: str,
    default: Any = _MISSING,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    rule = "a finite number"
    if low is not None:
        rule += f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        rule += f" <= {high:g}"
    return _number(table, key, path, default, float, rule, low, high, low_open)


def get_int(
    table: Mapping[str, Any],
    key: str,
    path: str,
    default: Any = _MISSING,
    low: int | None = None,
) -> int:
    rule = "an integer" + (f" >= {low}" if low is not None else "")
    return _number(table, key, path, default, int, rule, low)


def get_bool(table: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> bool:
    return _of_type(table, key, path, default, "true or false", bool)


def get_list(table: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> list:
    return _of_type(table, key, path, default, "a list", list)


def reject_unknown(table: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    """Typos in key names must not pass silently: name the first unknown key."""
    known = set(allowed)
    for key in table:
        if key not in known:
            where = join(path, key)
            raise ConfigError(
                f"{where}: unknown key; expected one of {', '.join(sorted(known))}, got {key!r}"
            )
