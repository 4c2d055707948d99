"""Evaluating part of a multi-dimensional decision: the candidate picks some dimensions, the
logs keep the others.

Logs of a campaign with ``[[dimensions]]`` hold one action per combination
(``"discount_10+sms+week_1"``). ``nbo evaluate --hold channel,timing`` asks what "nbo for the
offer, the current rule for the channel and the timing" would earn: each row's eligible set is
narrowed to the combinations that keep the logged values of the held dimensions, so a candidate
chooses only the rest, and every estimator weighs it against the logging policy as usual (the
logged action stays eligible: it agrees with itself). Where the logs were made by the current
rule for those dimensions, the held values are that rule's choices.

Examples
--------
>>> import numpy as np
>>> from engine.replay.data import LoggedData
>>> data = LoggedData(context=np.ones((2, 1)), action=np.array([0, 3]),
...     propensity=np.full(2, 0.25), reward=np.zeros(2),
...     actions=("a+email", "a+sms", "b+email", "b+sms"))
>>> held = hold_dimensions(data, ("offer", "channel"), ["channel"])
>>> held.eligible.astype(int).tolist()
[[1, 0, 1, 0], [0, 1, 0, 1]]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.errors import InvalidInputError
from engine.features.combinations import (
    combination_features,
    split_combination,
    treatment_table,
)
from engine.replay.data import LoggedData
from engine.replay.readers import open_dataset
from engine.types import FloatArray, IntArray


def logged_dimensions(path: str | Path) -> tuple[str, ...]:
    """The dimension names a Parquet export records (``nbo.dimensions``), or () for logs of a
    campaign without dimensions or from elsewhere."""
    try:
        metadata = open_dataset(path).schema.metadata or {}
    except (OSError, ValueError):  # not Parquet (CSV, DSJSON): no metadata
        return ()
    raw = metadata.get(b"nbo.dimensions")
    return tuple(json.loads(raw)) if raw else ()


def hold_dimensions(data: LoggedData, names: Sequence[str], held: Sequence[str]) -> LoggedData:
    """``data`` with each row's eligible combinations narrowed to those that keep its logged
    values of the ``held`` dimensions.

    Parameters
    ----------
    data : LoggedData
        Logs whose actions are combination ids.
    names : sequence of str
        The dimensions, in the order of the ids' values (``"offer"`` first).
    held : sequence of str
        The dimensions the logs keep; the candidates choose the others.

    Raises
    ------
    InvalidInputError
        Naming ``--hold`` for an unknown dimension or one that would leave nothing to choose,
        or ``actions`` for an id that is not a combination of ``names``.
    """
    names = tuple(names)
    if not names:
        raise InvalidInputError(
            "--hold",
            "logs of a campaign with [[dimensions]] (nbo.dimensions in the Parquet "
            "metadata, as nbo export writes it)",
            "logs without dimensions",
        )
    unknown = [h for h in held if h not in names]
    if unknown or not held:
        raise InvalidInputError("--hold", f"dimensions among {', '.join(names)}", ",".join(held))
    if set(held) == set(names):
        raise InvalidInputError(
            "--hold", "some dimension left for the candidates to choose", ",".join(held)
        )
    columns = [names.index(h) for h in held]
    values = np.array(
        [[split_combination(a, len(names))[c] for c in columns] for a in data.actions],
        dtype=object,
    ).reshape(len(data.actions), len(columns))
    # Code each action by its held values: equal codes keep the same held values.
    _, code = np.unique(["\x1f".join(map(str, row)) for row in values], return_inverse=True)
    keep = code[data.action][:, None] == code[None, :]
    eligible = keep if data.eligible is None else keep & data.eligible
    return replace(data, eligible=eligible)


def logged_treatments(actions: Sequence[str], names: Sequence[str]) -> IntArray:
    """What a ``landing`` candidate takes as ``offer_features`` on logs: per action its offer's
    index, its route's index (the other dimensions' values; values in order of first
    appearance) and 1: the logs do not say which offer sends nothing, so every action is taken
    to send a message (a no-message offer's rows carry no engagement and enter the value model
    with their predicted landing, :class:`~engine.policies.LandingLift`).

    Examples
    --------
    >>> logged_treatments(["a+email", "a+sms", "b+sms"], ("offer", "channel")).tolist()
    [[0, 0, 1], [0, 1, 1], [1, 1, 1]]
    >>> logged_treatments(["a", "b"], ()).tolist()
    [[0, 0, 1], [1, 0, 1]]
    """
    codes = _codes(actions, names) if names else np.arange(len(actions))[:, None]
    return treatment_table(codes, list(codes.max(axis=0) + 1), [True] * len(actions))


def _codes(actions: Sequence[str], names: Sequence[str]) -> IntArray:
    """Each action's value index per dimension, values in order of first appearance."""
    parts = [split_combination(a, len(names)) for a in actions]
    values = [list(dict.fromkeys(p[d] for p in parts)) for d in range(len(names))]
    codes = np.array([[values[d].index(p[d]) for d in range(len(names))] for p in parts])
    return codes.reshape(len(actions), len(names))


def logged_offer_features(actions: Sequence[str], names: Sequence[str]) -> FloatArray:
    """Offer features a ``shared`` candidate learns from on logs: with dimensions each
    combination's one-hot per dimension (:func:`~engine.features.combinations.combination_features`,
    values in order of first appearance), so combinations share what their values taught;
    without, each offer's own one-hot.

    Examples
    --------
    >>> logged_offer_features(["a+email", "a+sms", "b+sms"], ("offer", "channel")).tolist()
    [[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0]]
    >>> logged_offer_features(["a", "b"], ()).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if not names:
        return np.eye(len(actions))
    codes = _codes(actions, names)
    return combination_features(codes, list(codes.max(axis=0) + 1))
