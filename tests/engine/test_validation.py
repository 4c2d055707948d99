"""The constraint vocabulary: wording, membership, and the values it makes for tests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.errors import InvalidParameterError
from engine.validation import (
    SEED,
    ArrayLike,
    Boolean,
    Integral,
    Interval,
    Options,
    Real,
    Satisfies,
    describe,
    invalid_value,
    validate_params,
)

CONSTRAINTS = [
    (
        Interval(Real, 0, None, closed="left"),
        "a float >= 0",
        [0, 0.5, np.float32(2)],
        [-1, math.inf],
    ),
    (Interval(Real, 0, None, closed="neither"), "a float > 0", [1e-9, 3], [0.0, math.nan]),
    (Interval(Real, 0, 1, closed="both"), "a float >= 0 and <= 1", [0, 1.0], [1.5, -0.1]),
    (Interval(Real, 0, 1, closed="neither"), "a float > 0 and < 1", [0.5], [0.0, 1.0]),
    (Interval(Real, 0, None, closed="right"), "a float > 0", [math.inf, 2.0], [0.0, -math.inf]),
    (Interval(Integral, 1, None, closed="left"), "an int >= 1", [1, np.int64(7)], [0, 1.0, True]),
    (Interval(Integral, None, None, closed="neither"), "an int", [-3, 0], [0.5, "1", False]),
    (Boolean(), "a bool", [True, np.bool_(False)], [1, "yes", None]),
    (Options(str, {"b", "a"}), "a str among {'a', 'b'}", ["a", "b"], ["c", 1]),
    (ArrayLike(), "an array-like", [[1.0], np.zeros(2), ((1,),)], ["abc", 3, None]),
    (Satisfies("an even int", lambda v: v % 2 == 0, 3, 4), "an even int", [0, 4], [3]),
]


@pytest.mark.parametrize(("constraint", "words", "good", "bad"), CONSTRAINTS)
def test_constraint_words_membership_and_generated_values(constraint, words, good, bad) -> None:
    assert str(constraint) == words
    assert all(constraint.is_satisfied_by(v) for v in good)
    assert not any(constraint.is_satisfied_by(v) for v in bad)
    assert constraint.is_satisfied_by(constraint.valid_value())
    assert not constraint.is_satisfied_by(constraint.invalid_value())


def test_a_value_is_valid_when_it_satisfies_one_constraint() -> None:
    constraints = {"clip": [Interval(Real, 0, None, closed="neither"), None], "seed": SEED}
    validate_params("IPS", constraints, {"clip": None, "seed": 3, "undeclared": object()})
    with pytest.raises(InvalidParameterError) as caught:
        validate_params("IPS", constraints, {"clip": 0})
    assert (
        str(caught.value)
        == "The 'clip' parameter of IPS must be a float > 0 or None. Got 0 instead."
    )


def test_describe_joins_constraints() -> None:
    assert describe(SEED) == "an int or None"
    assert describe([Boolean(), Options(str, {"x"}), None]) == "a bool, a str among {'x'} or None"


def test_invalid_value_breaks_every_constraint_of_a_parameter() -> None:
    assert invalid_value(SEED) == "a string"
    assert invalid_value([Interval(Real, 0, None, closed="left"), None]) == -1.0
    unsatisfiable = [Satisfies("anything", lambda v: True, None, 1)]
    with pytest.raises(ValueError, match="no value breaks"):
        invalid_value(unsatisfiable)


def test_interval_refuses_a_reversed_range_and_other_kinds() -> None:
    with pytest.raises(ValueError, match="below its left bound"):
        Interval(Real, 1, 0, closed="both")
    with pytest.raises(TypeError, match="Integral or Real"):
        Interval(float, 0, 1, closed="both")  # type: ignore[arg-type]
