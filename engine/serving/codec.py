"""Decode request messages into the Engine's Python arguments, validating what the proto cannot.

Every failure raises :class:`InvalidInputError` naming the request field (``rows[3].customer_id``,
``dense.numeric_values``), what was expected and what came; nothing here touches an Engine, so a
rejected request changes no state. The dense batch form is decoded with numpy: values become an
``(n_rows, n_numeric)`` array in one call, and rows become dicts without a per-value Python loop.

Examples
--------
>>> from engine.serving.pb import offers_pb2 as pb
>>> ctx = pb.Context(numeric={"tenure_months": 14.0}, categorical={"plan": "premium"})
>>> sorted(context_to_dict(ctx).items())
[('plan', 'premium'), ('tenure_months', 14.0)]
>>> dense = pb.DenseContexts(customer_ids=["a", "b"], numeric_names=["x", "y"],
...                          numeric_values=[1.0, 2.0, 3.0, float("nan")],
...                          categorical_names=["plan"], categorical_values=["basic", ""])
>>> ids, contexts = dense_to_contexts(dense, max_rows=10)
>>> ids, contexts
(['a', 'b'], [{'x': 1.0, 'y': 2.0, 'plan': 'basic'}, {'x': 3.0, 'y': None, 'plan': None}])
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import InvalidInputError
from engine.serving.pb import offers_pb2 as pb
from engine.validation import (
    MAX_ATTRIBUTES,
    MAX_CATEGORY_CHARS,
    MAX_COMPONENTS,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    check_given,
)

_SHOWN_CHARS = 40  # of an over-long name, in the field an error names


def shown(name: str) -> str:
    """A caller's name as an error shows it (errors are echoed and logged): its first 40
    characters, then "..." when there were more.

    Examples
    --------
    >>> shown("plan"), shown("x" * 50)
    ('plan', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...')
    """
    return name if len(name) <= _SHOWN_CHARS else name[:_SHOWN_CHARS] + "..."


def named(field: str, name: str) -> str:
    """The field of one entry of a map: ``context["plan"]``, with the name :func:`shown`."""
    return f'{field}["{shown(name)}"]'


def _check_count(n: int, limit: int, field: str, what: str) -> None:
    if n > limit:
        raise InvalidInputError(field, f"at most {limit} {what}", f"{n} {what}")


def _check_name_lengths(names: Collection[str], field: str, what: str) -> None:
    if names and max(map(len, names)) > MAX_NAME_CHARS:
        name = next(n for n in names if len(n) > MAX_NAME_CHARS)
        raise InvalidInputError(
            named(field, name),
            f"{what} of at most {MAX_NAME_CHARS} characters",
            f"a name of {len(name)} characters",
        )


def _check_category_lengths(values: Mapping[str, str], field: str) -> None:
    if values and max(map(len, values.values())) > MAX_CATEGORY_CHARS:
        name, value = next((n, v) for n, v in values.items() if len(v) > MAX_CATEGORY_CHARS)
        raise InvalidInputError(
            named(field, name),
            f"a category value of at most {MAX_CATEGORY_CHARS} characters",
            f"{len(value)} characters",
        )


def check_id(value: str, field: str) -> str:
    """Return a required id (customer, decision) or raise naming ``field``.

    Examples
    --------
    >>> check_id("c-1", "customer_id")
    'c-1'
    >>> check_id("", "customer_id")
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: customer_id: expected a non-empty string, got an empty string
    """
    check_given(field, value, "a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise InvalidInputError(
            field, f"at most {MAX_ID_CHARS} characters", f"{len(value)} characters"
        )
    return value


def is_echoable_id(value: str) -> bool:
    """True for a request id the server can echo in response metadata: printable ASCII
    (gRPC refuses other metadata values) of at most ``MAX_NAME_CHARS`` characters.

    Examples
    --------
    >>> is_echoable_id("req-42"), is_echoable_id("bell\\x07"), is_echoable_id("é")
    (True, False, False)
    """
    return len(value) <= MAX_NAME_CHARS and value.isascii() and value.isprintable()


def check_request_id(value: str) -> None:
    """Reject a request id the server will not log or echo: too long, or not printable ASCII."""
    if len(value) > MAX_NAME_CHARS:
        raise InvalidInputError(
            "request_id", f"at most {MAX_NAME_CHARS} characters", f"{len(value)} characters"
        )
    if not is_echoable_id(value):
        raise InvalidInputError("request_id", "printable ASCII characters", repr(value))


MAX_REASON_CHARS = 500  # a SetMode reason, kept in the journal's rollout history


def check_reason(value: str) -> None:
    """Reject a SetMode reason the journal will not keep: too long, or with control
    characters."""
    if len(value) > MAX_REASON_CHARS:
        raise InvalidInputError(
            "reason", f"at most {MAX_REASON_CHARS} characters", f"{len(value)} characters"
        )
    if not value.isprintable():
        raise InvalidInputError("reason", "printable characters", repr(value))


def candidates_of(
    values: Sequence[str], offer_ids: Sequence[str], field: str = "candidates"
) -> list[str] | None:
    """The candidate offer ids of a request, or None (all offers) when the list is empty.

    Examples
    --------
    >>> candidates_of(["b"], ["a", "b"]) is None, candidates_of([], ["a", "b"])
    (False, None)
    >>> candidates_of(["a", "z"], ["a", "b"], "rows[2].candidates")
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: rows[2].candidates[1]: expected one of a, b, got z
    >>> candidates_of(["a"] * 3, ["a", "b"])
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: candidates: expected at most 2 candidates (the campaign's...
    """
    if not values:
        return None
    if len(values) > len(offer_ids):
        raise InvalidInputError(
            field,
            f"at most {len(offer_ids)} candidates (the campaign's offers)",
            f"{len(values)} candidates",
        )
    out = list(values)
    seen: set[str] = set()
    for i, value in enumerate(out):
        if value in seen:
            raise InvalidInputError(field, "distinct offer ids", f"{value!r} more than once")
        if value not in offer_ids:
            raise InvalidInputError(f"{field}[{i}]", "one of " + ", ".join(offer_ids), value)
        seen.add(value)
    return out


def context_to_dict(context: pb.Context, field: str = "context") -> dict[str, Any]:
    """Merge a Context's numeric and categorical maps into the Engine's attribute dict.

    At most ``MAX_ATTRIBUTES`` attributes, names of at most ``MAX_NAME_CHARS`` characters and
    category values of at most ``MAX_CATEGORY_CHARS`` (see :mod:`engine.validation`).

    Examples
    --------
    >>> context_to_dict(pb.Context(categorical={"k" * 1000: "v"}))
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: context["kkk...kkk..."]: expected an attribute name of at ...
    """
    categorical = context.categorical
    _check_count(len(context.numeric) + len(categorical), MAX_ATTRIBUTES, field, "attributes")
    out: dict[str, Any] = dict(context.numeric)
    _check_name_lengths(out, field, "an attribute name")
    if not all(map(math.isfinite, out.values())):
        name = min(n for n, v in out.items() if not math.isfinite(v))
        raise InvalidInputError(f"{field}.numeric[{name!r}]", "a finite number", out[name])
    if categorical:
        categorical = dict(categorical)
        _check_name_lengths(categorical, field, "an attribute name")
        _check_category_lengths(categorical, field)
        both = out.keys() & categorical.keys()
        if both:
            raise InvalidInputError(
                f"{field}.{min(both)}", "a numeric or a categorical attribute", "both"
            )
        out.update(categorical)
    return out


def rows_to_contexts(
    rows: Sequence[pb.DecideRow], max_rows: int, offer_ids: Sequence[str]
) -> tuple[list[str], list[dict[str, Any]], list[list[str] | None]]:
    """Decode the row form of DecideBatch into (customer_ids, contexts, per-row candidates)."""
    _check_row_count(len(rows), max_rows, "rows")
    customer_ids = [
        check_id(row.customer_id, f"rows[{i}].customer_id") for i, row in enumerate(rows)
    ]
    contexts = [context_to_dict(row.context, f"rows[{i}].context") for i, row in enumerate(rows)]
    candidates = [
        candidates_of(row.candidates, offer_ids, f"rows[{i}].candidates")
        for i, row in enumerate(rows)
    ]
    return customer_ids, contexts, candidates


def dense_to_contexts(
    dense: pb.DenseContexts, max_rows: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """Decode the dense form of DecideBatch into (customer_ids, contexts).

    Numeric NaN and categorical "" become None (a missing value, handled as the schema declares).
    """
    customer_ids = list(dense.customer_ids)
    n_rows = len(customer_ids)
    _check_row_count(n_rows, max_rows, "dense.customer_ids")
    for i, customer_id in enumerate(customer_ids):
        check_id(customer_id, f"dense.customer_ids[{i}]")
    n_names = len(dense.numeric_names) + len(dense.categorical_names)
    _check_count(
        n_names, MAX_ATTRIBUTES, "dense.numeric_names, dense.categorical_names", "attributes"
    )
    numeric_names = _names(dense.numeric_names, "dense.numeric_names")
    categorical_names = _names(dense.categorical_names, "dense.categorical_names")
    both = set(numeric_names) & set(categorical_names)
    if both:
        raise InvalidInputError(
            "dense.categorical_names", "names not also in dense.numeric_names", sorted(both)[0]
        )
    numeric = np.array(dense.numeric_values, dtype=np.float64)
    if numeric.size != n_rows * len(numeric_names):
        raise InvalidInputError(
            "dense.numeric_values",
            f"{n_rows} rows x {len(numeric_names)} columns = {n_rows * len(numeric_names)} values",
            f"{numeric.size} values",
        )
    numeric = numeric.reshape(n_rows, len(numeric_names))
    if np.isinf(numeric).any():
        row, col = np.argwhere(np.isinf(numeric))[0]
        raise InvalidInputError(
            f"dense.numeric_values[{row * len(numeric_names) + col}]"
            f" ({numeric_names[col]!r}, row {row})",
            "a finite number or NaN for missing",
            float(numeric[row, col]),
        )
    categorical = np.array(dense.categorical_values, dtype=object)
    if categorical.size != n_rows * len(categorical_names):
        raise InvalidInputError(
            "dense.categorical_values",
            f"{n_rows} rows x {len(categorical_names)} columns = "
            f"{n_rows * len(categorical_names)} values",
            f"{categorical.size} values",
        )
    if categorical.size and max(map(len, dense.categorical_values)) > MAX_CATEGORY_CHARS:
        i = next(i for i, v in enumerate(dense.categorical_values) if len(v) > MAX_CATEGORY_CHARS)
        row, col = divmod(i, len(categorical_names))
        raise InvalidInputError(
            f"dense.categorical_values[{i}] ({categorical_names[col]!r}, row {row})",
            f"a category value of at most {MAX_CATEGORY_CHARS} characters",
            f"{len(dense.categorical_values[i])} characters",
        )
    columns = numeric_names + categorical_names
    table = np.empty((n_rows, len(columns)), dtype=object)
    missing = np.isnan(numeric)
    table[:, : len(numeric_names)] = numeric
    if missing.any():
        table[:, : len(numeric_names)][missing] = None
    if categorical_names:
        categorical = categorical.reshape(n_rows, len(categorical_names))
        categorical[categorical == ""] = None
        table[:, len(numeric_names) :] = categorical
    contexts = [dict(zip(columns, row, strict=True)) for row in table.tolist()]
    return customer_ids, contexts


def _names(values: Sequence[str], field: str) -> list[str]:
    names = list(values)
    for i, name in enumerate(names):
        if not name or len(name) > MAX_NAME_CHARS:
            raise InvalidInputError(
                f"{field}[{i}]", f"a name of 1..{MAX_NAME_CHARS} characters", repr(name)
            )
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise InvalidInputError(field, "distinct names", f"{duplicate!r} more than once")
    return names


def _check_row_count(n_rows: int, max_rows: int, field: str) -> None:
    if n_rows == 0:
        raise InvalidInputError(field, "at least 1 row", "0 rows")
    if n_rows > max_rows:
        raise InvalidInputError(field, f"at most {max_rows} rows per call", f"{n_rows} rows")


def reward_arrays(
    decision_ids: Sequence[str], values: Sequence[float], max_rows: int
) -> tuple[list[str], list[float]]:
    """Decode RewardBatch's columns into (decision_ids, values), validating both."""
    ids = list(decision_ids)
    _check_row_count(len(ids), max_rows, "decision_ids")
    for i, decision_id in enumerate(ids):
        check_id(decision_id, f"decision_ids[{i}]")
    array = np.array(values, dtype=np.float64)
    if array.size != len(ids):
        raise InvalidInputError(
            "values", f"{len(ids)} values (one per decision id)", f"{array.size} values"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInputError(f"values[{i}]", "a finite number", float(array[i]))
    return ids, array.tolist()


def reward_components(components: Mapping[str, float]) -> dict[str, float]:
    """A Reward's components as a dict: at most ``MAX_COMPONENTS``, names of at most
    ``MAX_NAME_CHARS`` characters, finite values.

    Examples
    --------
    >>> reward_components({"revenue": 588.0, "cost": -20.0})
    {'revenue': 588.0, 'cost': -20.0}
    >>> reward_components({f"c{i}": 1.0 for i in range(40)})
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: components: expected at most 32 components, got 40 components
    """
    _check_count(len(components), MAX_COMPONENTS, "components", "components")
    out = dict(components)
    _check_name_lengths(out, "components", "a component name")
    for name, value in out.items():
        if not math.isfinite(value):
            raise InvalidInputError(named("components", name), "a finite number", value)
    return out
