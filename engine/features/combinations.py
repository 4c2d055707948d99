"""Treatments of several dimensions: the combination ids and the features a joint model learns from.

A multi-dimensional campaign decides an offer and, with it, a value of every other dimension
(channel, send time, creative, ...). Each allowed combination is one action of the policy; its id
joins the values with :data:`SEPARATOR` (``"discount_10+email+now"``), a character no offer or
value id may contain, so the id splits back into its values. A model over context x combination
features (:class:`~engine.policies.SharedLinear`) learns a combination from what its offer, its
channel and its timing taught in other combinations: the features are each dimension's one-hot
identity next to the numeric attributes of its value, so a combination shares a coefficient with
every combination that has one of its values, and a value added later starts from what values
with similar attributes taught (docs/architecture.md, "Multi-dimensional decisions").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.errors import InvalidInputError
from engine.types import FloatArray, IntArray

SEPARATOR = "+"


def combination_id(values: Sequence[str]) -> str:
    """The action id of one combination: its values joined by :data:`SEPARATOR`.

    Examples
    --------
    >>> combination_id(["discount_10", "email", "now"])
    'discount_10+email+now'
    """
    return SEPARATOR.join(values)


def split_combination(action: str, n_dimensions: int) -> tuple[str, ...]:
    """The values of a combination id, one per dimension (the offer first).

    Raises
    ------
    InvalidInputError
        If ``action`` does not hold exactly ``n_dimensions`` values.

    Examples
    --------
    >>> split_combination("upgrade+sms+week_1", 3)
    ('upgrade', 'sms', 'week_1')
    """
    parts = tuple(action.split(SEPARATOR))
    if len(parts) != n_dimensions or not all(parts):
        raise InvalidInputError(
            "action", f"{n_dimensions} values joined by {SEPARATOR!r}", repr(action)
        )
    return parts


def combination_features(
    codes: IntArray, sizes: Sequence[int], attributes: Sequence[FloatArray | None] | None = None
) -> FloatArray:
    """Numeric description of every combination, for a model shared across combinations.

    Parameters
    ----------
    codes : array of shape (n_combinations, n_dimensions)
        Index of each combination's value in every dimension (the offer first).
    sizes : sequence of int, length n_dimensions
        Number of values of each dimension.
    attributes : sequence of (array of shape (sizes[d], n_attributes_d) or None), optional
        Numeric attributes of each dimension's values (cost, discount size, ...).

    Returns
    -------
    array of shape (n_combinations, sum(sizes) + sum(n_attributes_d))
        Per dimension, the one-hot of its value, then the value's attributes.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([[0, 0], [0, 1], [1, 1]])
    >>> combination_features(codes, [2, 2], [np.array([[0.0], [0.1]]), None]).tolist()
    [[1.0, 0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.1, 0.0, 1.0]]
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] != len(sizes):
        raise InvalidInputError(
            "codes", f"shape (n_combinations, {len(sizes)})", f"shape {codes.shape}"
        )
    attributes = list(attributes) if attributes is not None else [None] * len(sizes)
    blocks = []
    for d, size in enumerate(sizes):
        column = codes[:, d]
        if column.size and not (0 <= column.min() and column.max() < size):
            raise InvalidInputError(f"codes[:, {d}]", f"value indices in [0, {size})", column)
        blocks.append(np.eye(size)[column])
        table = attributes[d]
        if table is not None:
            table = np.asarray(table, dtype=np.float64).reshape(size, -1)
            blocks.append(table[column])
    return np.hstack(blocks) if blocks else np.zeros((codes.shape[0], 0))


def treatment_table(codes: IntArray, sizes: Sequence[int], sends: Sequence[bool]) -> IntArray:
    """Per combination: its offer's index, its *route*'s index (the other dimensions' values in
    mixed radix; 0 when the offer is the only dimension) and 1 if it sends a message, the table
    :class:`~engine.policies.LandingLift` takes as ``offer_features``.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([[0, 0, 0], [1, 2, 1], [1, 0, 3]])      # offer, channel, window
    >>> treatment_table(codes, [2, 3, 4], [False, True, True]).tolist()
    [[0, 0, 0], [1, 9, 1], [1, 3, 1]]
    >>> treatment_table(np.array([[0], [1]]), [2], [True, True]).tolist()
    [[0, 0, 1], [1, 0, 1]]
    """
    codes = np.asarray(codes, dtype=np.int64)
    if codes.shape[1] > 1:
        route = np.ravel_multi_index(tuple(codes[:, 1:].T), tuple(sizes[1:]))
    else:
        route = np.zeros(codes.shape[0], dtype=np.int64)
    flags = np.asarray(sends, dtype=np.int64)
    return np.column_stack([codes[:, 0], route, flags]).astype(np.int64)
