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

Hyperparameters are checked against constraints declared as data (as scikit-learn's
``utils/_param_validation.py`` does): a class maps each parameter to a list of constraints, a value
is valid when it satisfies one of them, and one template words every error.

>>> constraints = {"alpha": [Interval(Real, 0, None, closed="left")], "seed": SEED}
>>> validate_params("LinUCB", constraints, {"alpha": 0.5, "seed": None})
>>> validate_params("LinUCB", constraints, {"alpha": -1, "seed": None})
Traceback (most recent call last):
...
engine.errors.InvalidParameterError: The 'alpha' parameter of LinUCB must be a float >= 0. Got ...
>>> describe(SEED)
'an int or None'
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from numbers import Integral, Real
from operator import methodcaller
from typing import Any, Literal

import numpy as np

from engine.errors import InvalidInputError, InvalidParameterError

__all__ = [
    "ID_RULE",
    "MAX_ATTRIBUTES",
    "MAX_CATEGORY_CHARS",
    "MAX_COMPONENTS",
    "MAX_ID_CHARS",
    "MAX_NAME_CHARS",
    "SEED",
    "VALUE_LIMIT",
    "VALUE_RULE",
    "ArrayLike",
    "Boolean",
    "Constraint",
    "Integral",
    "Interval",
    "Options",
    "ParameterConstraints",
    "Real",
    "Satisfies",
    "check_context_bounds",
    "check_given",
    "check_id",
    "check_value",
    "describe",
    "first_bad_id",
    "invalid_value",
    "is_utf8",
    "shown",
    "valid_ids",
    "validate_params",
    "within_bounds",
]

# Numbers beyond this magnitude are refused everywhere (contexts, rewards, costs): squared in a
# ridge update they stay far from float64 overflow, and a journaled reward the learner cannot
# apply would be lost.
VALUE_LIMIT = 1e12
VALUE_RULE = f"a finite number with |value| <= {VALUE_LIMIT:g}"
# Ids (customers, decisions, requests, offers) are stored and echoed in gRPC metadata.
MAX_ID_CHARS = 256
ID_RULE = f"a non-empty UTF-8 string of <= {MAX_ID_CHARS} characters"
# What one request may carry: a context has at most MAX_ATTRIBUTES attributes, each named in at
# most MAX_NAME_CHARS characters (attribute, feature and reward component names, request ids);
# a categorical value has at most MAX_CATEGORY_CHARS characters (the encoder bounds its cache of
# hashed values in bytes itself: engine.features.encoder.HASH_CACHE_BYTES); a reward has at most
# MAX_COMPONENTS components.
# A campaign's schema is far inside these; the gRPC codec refuses anything beyond them before it
# reaches an Engine, and the error names the field.
MAX_ATTRIBUTES = 256
MAX_NAME_CHARS = 128
MAX_CATEGORY_CHARS = 256
MAX_COMPONENTS = 32
SHOWN_CHARS = 40  # of an over-long name, in the field an error names (errors are echoed, logged)
_NUMBER = (int, float, np.integer, np.floating)
_is_str = str.__instancecheck__
_values = methodcaller("values")


def is_utf8(text: str) -> bool:
    """False for strings that cannot be stored as UTF-8 (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """A caller's name as an error shows it: its first 40 characters, then "..." when there
    were more (the gRPC codec cuts names the same way).

    >>> shown("plan"), shown("x" * 50)
    ('plan', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...')
    """
    return name if len(name) <= SHOWN_CHARS else name[:SHOWN_CHARS] + "..."


def check_context_bounds(context: Mapping[Any, Any], field: str) -> None:
    """Refuse a context beyond what one request may carry, worded as the gRPC codec words it:
    more than MAX_ATTRIBUTES attributes, a name longer than MAX_NAME_CHARS or a string value
    longer than MAX_CATEGORY_CHARS (names and values that are not strings are the encoder's
    business). C-level passes over the keys and values; the offender is looked for only then.

    >>> check_context_bounds({"plan": "basic", "tenure_months": 14}, "context")
    >>> check_context_bounds({"plan": "b" * 300}, "contexts[2]")
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: contexts[2]["plan"]: expected a category value of at most ...
    """
    n = len(context)
    if n > MAX_ATTRIBUTES:
        raise InvalidInputError(field, f"at most {MAX_ATTRIBUTES} attributes", f"{n} attributes")
    if max(map(len, filter(_is_str, context)), default=0) > MAX_NAME_CHARS:
        name = next(k for k in context if _is_str(k) and len(k) > MAX_NAME_CHARS)
        raise InvalidInputError(
            f'{field}["{shown(name)}"]',
            f"an attribute name of at most {MAX_NAME_CHARS} characters",
            f"a name of {len(name)} characters",
        )
    if max(map(len, filter(_is_str, context.values())), default=0) > MAX_CATEGORY_CHARS:
        name, value = next(
            (k, v) for k, v in context.items() if _is_str(v) and len(v) > MAX_CATEGORY_CHARS
        )
        raise InvalidInputError(
            f'{field}["{shown(str(name))}"]',
            f"a category value of at most {MAX_CATEGORY_CHARS} characters",
            f"{len(value)} characters",
        )


def within_bounds(contexts: Sequence[Mapping[Any, Any]]) -> bool:
    """True when every context is within :func:`check_context_bounds`: three C-level passes over
    the whole batch (the fast path of batch requests; the offender is then found row by row)."""
    if not contexts:
        return True
    if max(map(len, contexts)) > MAX_ATTRIBUTES:
        return False
    # The names of each distinct key set once: a batch's contexts mostly share one.
    names = filter(_is_str, chain.from_iterable(set(map(tuple, contexts))))
    if max(map(len, names), default=0) > MAX_NAME_CHARS:
        return False
    values = filter(_is_str, chain.from_iterable(map(_values, contexts)))
    return max(map(len, values), default=0) <= MAX_CATEGORY_CHARS


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


def check_given(field: str, value: str, expected: str) -> str:
    """``value`` unless it is empty (a string field a request left unset), else
    InvalidInputError naming ``field``: ``expected`` says what it should hold.

    Examples
    --------
    >>> check_given("version", "", "a model version such as v12")
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: version: expected a model version such as v12, got an empty...
    """
    if not value:
        raise InvalidInputError(field, expected, "an empty string")
    return value


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


def float_array(field: str, value: Any, expected: str) -> np.ndarray:
    """``value`` as a C-contiguous float64 array, else InvalidInputError naming ``field`` (what
    numpy cannot convert is reported as not ``expected``)."""
    try:
        return np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(field, expected, value) from exc


# ---------------------------------------------------------------------- hyperparameter constraints
class Constraint(ABC):
    """One rule a parameter value may satisfy; ``str(constraint)`` words it for error messages.

    Each constraint can also make a value that breaks it and one that keeps it, so tests can try
    a bad value for every declared parameter without a hand-written list.
    """

    @abstractmethod
    def is_satisfied_by(self, value: Any) -> bool:
        """True when ``value`` keeps this rule."""

    @abstractmethod
    def invalid_value(self) -> Any:
        """A value that breaks this rule."""

    @abstractmethod
    def valid_value(self) -> Any:
        """A value that keeps this rule."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)
class Interval(Constraint):
    """A number in a range: ``Interval(Real, 0, 1, closed="both")`` is "a float >= 0 and <= 1".

    Parameters
    ----------
    kind : Integral or Real
        ``Integral`` accepts ints (not bools); ``Real`` accepts ints and floats (not bools).
    left, right : number or None
        The bounds; None is unbounded on that side.
    closed : {"left", "right", "both", "neither"}
        Which bounds belong to the interval. NaN is never inside, and an infinite value only
        through an unbounded side that is closed (``Interval(Real, 0, None, closed="both")``).

    Examples
    --------
    >>> str(Interval(Real, 0, None, closed="neither"))
    'a float > 0'
    >>> str(Interval(Integral, 1, None, closed="left"))
    'an int >= 1'
    >>> Interval(Real, 0, 1, closed="both").invalid_value()
    -1.0
    """

    kind: type[Integral] | type[Real]
    left: float | None
    right: float | None
    closed: Literal["left", "right", "both", "neither"] = field(kw_only=True)

    def __post_init__(self) -> None:
        if self.kind not in (Integral, Real):
            raise TypeError(f"Interval kind must be Integral or Real, got {self.kind!r}")
        if self.left is not None and self.right is not None and self.right < self.left:
            raise ValueError(
                f"Interval right bound {self.right} is below its left bound {self.left}"
            )

    @property
    def _left_closed(self) -> bool:
        return self.closed in ("left", "both")

    @property
    def _right_closed(self) -> bool:
        return self.closed in ("right", "both")

    def is_satisfied_by(self, value: Any) -> bool:
        if not (_is_int(value) if self.kind is Integral else _is_number(value)):
            return False
        if math.isnan(value):
            return False
        if math.isinf(value):
            bound = self.left if value < 0 else self.right
            closed = self._left_closed if value < 0 else self._right_closed
            return bound is None and closed
        if self.left is not None and not (
            value >= self.left if self._left_closed else value > self.left
        ):
            return False
        return self.right is None or (
            value <= self.right if self._right_closed else value < self.right
        )

    def __str__(self) -> str:
        rule = "an int" if self.kind is Integral else "a float"
        bounds = []
        if self.left is not None:
            bounds.append(f"{'>=' if self._left_closed else '>'} {self.left:g}")
        if self.right is not None:
            bounds.append(f"{'<=' if self._right_closed else '<'} {self.right:g}")
        return " ".join([rule, " and ".join(bounds)]) if bounds else rule

    def invalid_value(self) -> Any:
        number = int if self.kind is Integral else float
        if self.left is not None:
            return number(self.left - 1 if self._left_closed else self.left)
        if self.right is not None:
            return number(self.right + 1 if self._right_closed else self.right)
        return "a string"

    def valid_value(self) -> Any:
        number = int if self.kind is Integral else float
        if self.left is None and self.right is None:
            return number(1)
        if self.left is None:
            assert self.right is not None
            return number(self.right if self._right_closed else self.right - 1)
        if self._left_closed:
            return number(self.left)
        if self.right is None:
            return number(self.left + 1)
        return number((self.left + self.right) / 2) if self.kind is Real else number(self.left + 1)


class Boolean(Constraint):
    """A bool (``True``/``False`` or a NumPy bool); ints are not bools here."""

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, bool | np.bool_)

    def __str__(self) -> str:
        return "a bool"

    def invalid_value(self) -> Any:
        return "yes"

    def valid_value(self) -> Any:
        return True


class Options(Constraint):
    """One of a fixed set of values of one type: ``Options(str, {"normal", "bootstrap"})``."""

    def __init__(self, kind: type, options: set[Any]) -> None:
        self.kind = kind
        self.options = frozenset(options)

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, self.kind) and value in self.options

    def __str__(self) -> str:
        listed = ", ".join(repr(o) for o in sorted(self.options))
        return f"a {self.kind.__name__} among {{{listed}}}"

    def invalid_value(self) -> Any:
        return f"not {'|'.join(sorted(map(str, self.options)))}"

    def valid_value(self) -> Any:
        return sorted(self.options)[0]


class ArrayLike(Constraint):
    """Something NumPy can read as an array: an ndarray or a (nested) sequence, not a string.
    Shape and values are the owner's to check, as they depend on other parameters."""

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, np.ndarray):
            return True
        return isinstance(value, Sequence) and not isinstance(value, str | bytes)

    def __str__(self) -> str:
        return "an array-like"

    def invalid_value(self) -> Any:
        return "not an array"

    def valid_value(self) -> Any:
        return [[0.0]]


class Satisfies(Constraint):
    """A rule of the owner's, stated in words with a test and one value either side of it."""

    def __init__(self, rule: str, test: Callable[[Any], bool], invalid: Any, valid: Any) -> None:
        self.rule = rule
        self.test = test
        self.invalid = invalid
        self.valid = valid

    def is_satisfied_by(self, value: Any) -> bool:
        return bool(self.test(value))

    def __str__(self) -> str:
        return self.rule

    def invalid_value(self) -> Any:
        return self.invalid

    def valid_value(self) -> Any:
        return self.valid


ParameterConstraints = Mapping[str, Sequence[Constraint | None]]
SEED: list[Constraint | None] = [Interval(Integral, None, None, closed="neither"), None]
"""A random seed: an int or None (then the policy seeds itself from the OS)."""


def _satisfies(constraint: Constraint | None, value: Any) -> bool:
    return value is None if constraint is None else constraint.is_satisfied_by(value)


def describe(constraints: Sequence[Constraint | None]) -> str:
    """The words of a parameter's constraints: "an int or None"."""
    words = ["None" if c is None else str(c) for c in constraints]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def validate_params(
    owner: str, constraints: ParameterConstraints, params: Mapping[str, Any]
) -> None:
    """Check every parameter in ``params`` that ``constraints`` declares, in ``params`` order.

    Raises
    ------
    InvalidParameterError
        For the first value that satisfies none of its constraints, worded "The 'alpha'
        parameter of LinUCB must be a float >= 0. Got -1 instead."
    """
    for name, value in params.items():
        declared = constraints.get(name)
        if declared is not None and not any(_satisfies(c, value) for c in declared):
            raise InvalidParameterError(owner, name, describe(declared), value)


def invalid_value(constraints: Sequence[Constraint | None]) -> Any:
    """A value that satisfies none of ``constraints`` (for tests)."""
    candidates = [c.invalid_value() for c in constraints if c is not None]
    candidates += [object()] if None in constraints else [None]
    for candidate in candidates:
        if not any(_satisfies(c, candidate) for c in constraints):
            return candidate
    raise ValueError(f"no value breaks every one of {describe(constraints)}")
