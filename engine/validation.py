"""One validation vocabulary: the limits nbo enforces and the checks that enforce them.

Every layer that takes outside input (the Policy API, the encoder, the Engine, the gRPC codec,
the campaign loader) uses these names, so a limit is written once and every error about it is
worded the same way: the field, what was expected, what came (see :mod:`engine.errors`).

Examples
--------
>>> check_id("customer_id", "c1")
'c1'
>>> check_id("customer_id", "")
Traceback (most recent call last):
...
engine.errors.InvalidInputError: customer_id: expected a non-empty UTF-8 string ...
>>> check_value("value", float("nan"))
Traceback (most recent call last):
...
engine.errors.InvalidInputError: value: expected a finite number with |value| <= 1e+12, got nan
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.errors import InvalidInputError

__all__ = [
    "ID_RULE",
    "MAX_ID_CHARS",
    "VALUE_LIMIT",
    "VALUE_RULE",
    "check_id",
    "check_value",
    "first_bad_id",
    "is_utf8",
    "valid_ids",
]

# Numbers beyond this magnitude are refused everywhere (contexts, rewards, costs): squared in a
# ridge update they stay far from float64 overflow, and a journaled reward the learner cannot
# apply would be lost.
VALUE_LIMIT = 1e12
VALUE_RULE = f"a finite number with |value| <= {VALUE_LIMIT:g}"
# Ids (customers, decisions, requests, offers) are stored and echoed in gRPC metadata.
MAX_ID_CHARS = 256
ID_RULE = f"a non-empty UTF-8 string of <= {MAX_ID_CHARS} characters"
_NUMBER = (int, float, np.integer, np.floating)


def is_utf8(text: str) -> bool:
    """False for strings that cannot be stored as UTF-8 (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_ids(ids: Sequence[Any]) -> bool:
    """True when every id is a non-empty UTF-8 string of <= MAX_ID_CHARS characters.

    One pass per property over the whole list: the fast path of batch requests.
    """
    if not all(type(i) is str for i in ids):
        return False
    if not ids:
        return True
    lengths = list(map(len, ids))
    return min(lengths) > 0 and max(lengths) <= MAX_ID_CHARS and is_utf8("".join(ids))


def first_bad_id(ids: Sequence[Any]) -> int:
    """Index of the first id :func:`valid_ids` refuses, or -1."""
    for i, value in enumerate(ids):
        if type(value) is not str or not value or len(value) > MAX_ID_CHARS or not is_utf8(value):
            return i
    return -1


def check_id(field: str, value: Any) -> str:
    """``value`` if it is a valid id, else InvalidInputError naming ``field``."""
    if first_bad_id([value]) == 0:
        raise InvalidInputError(field, ID_RULE, value)
    return str(value)


def check_value(field: str, value: Any) -> float:
    """``value`` as a float if it is a finite number within VALUE_LIMIT, else
    InvalidInputError naming ``field`` (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        raise InvalidInputError(field, "a finite number", value)
    number = float(value)
    if not math.isfinite(number) or abs(number) > VALUE_LIMIT:
        raise InvalidInputError(field, VALUE_RULE, value)
    return number
