"""Request checks of engine.requests: the batch fast paths refuse what the row-by-row path does,
in the same words."""

from __future__ import annotations

import math

import pytest

from engine.errors import InvalidInputError
from engine.requests import check_rewards
from engine.validation import within_bounds

IDS = ["d0", "d1", "d2", "d3"]


def test_a_batch_of_plain_floats_comes_back_as_is():
    assert check_rewards(IDS, [1.0, -2.5, 0.0, 1e12]) == [1.0, -2.5, 0.0, 1e12]
    assert check_rewards(IDS, [1, 2.0, 3, 4.0]) == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 2e12])
def test_a_float_batch_names_its_first_bad_value(bad):
    with pytest.raises(InvalidInputError) as info:
        check_rewards(IDS, [1.0, 2.0, bad, bad])
    expected = f"values[2]: expected a finite number with |value| <= 1e+12, got {bad}"
    assert str(info.value).startswith(expected)


def test_a_bad_id_is_named_before_a_later_bad_value():
    with pytest.raises(InvalidInputError, match=r"^decision_ids\[1\]"):
        check_rewards(["d0", "", "d2", "d3"], [1.0, 2.0, math.nan, 4.0])


def test_within_bounds_sees_a_long_name_in_any_key_set():
    assert within_bounds([{"a": 1.0}, {"b": "x"}])
    assert not within_bounds([{"a": 1.0}, {"a": 1.0, "n" * 300: 1.0}])
    assert not within_bounds([{"a": 1.0}, {"a": "v" * 300}])
