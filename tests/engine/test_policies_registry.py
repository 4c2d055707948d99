"""The contract suite finds its subjects: every registered policy supplies test parameters and
declares a constraint for every constructor parameter, and a bad value for any declared parameter
is refused with the one worded message before anything is built."""

from __future__ import annotations

import functools
import inspect
import re

import pytest

from engine.errors import InvalidParameterError
from engine.policies import POLICY_NAMES, Policy, policy_classes
from engine.validation import describe, invalid_value
from tests.engine.policy_cases import NAMES, POLICY_CLASSES, build, params


def _constructor_parameters(cls: type) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def test_suite_runs_over_every_registered_policy() -> None:
    assert set(NAMES) == set(policy_classes())
    assert set(POLICY_NAMES.values()) <= set(POLICY_CLASSES.values())


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_policy_supplies_its_unit_test_params(name: str) -> None:
    cls = POLICY_CLASSES[name]
    assert "_unit_test_params" in vars(cls), f"{name} lacks a classmethod _unit_test_params"
    assert isinstance(build(name), cls)


@pytest.mark.parametrize("name", NAMES)
def test_every_constructor_parameter_has_a_constraint(name: str) -> None:
    cls = POLICY_CLASSES[name]
    assert set(_constructor_parameters(cls)) <= set(cls._parameter_constraints)


BAD_VALUES = [
    (name, parameter)
    for name in NAMES
    for parameter in _constructor_parameters(POLICY_CLASSES[name])
]


@pytest.mark.parametrize(("name", "parameter"), BAD_VALUES)
def test_bad_value_of_every_parameter_is_refused_before_anything_is_built(
    name: str, parameter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = POLICY_CLASSES[name]
    constraints = cls._parameter_constraints[parameter]
    bad = invalid_value(constraints)
    built: list[type] = []
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and issubclass(klass, Policy):
            original = vars(klass)["__init__"]

            @functools.wraps(original)
            def spy(self, *args, _original=original, _klass=klass, **kwargs):
                built.append(_klass)
                _original(self, *args, **kwargs)

            monkeypatch.setattr(klass, "__init__", spy)
    message = (
        f"The {parameter!r} parameter of {name} must be {describe(constraints)}. "
        f"Got {bad!r} instead."
    )
    with pytest.raises(InvalidParameterError, match=f"^{re.escape(message)}$") as caught:
        cls(**{**params(name), parameter: bad})
    assert caught.value.field == parameter and caught.value.owner == name
    assert built == []
    cls(**params(name))  # the spies do see a construction that passes
    assert built


def test_the_message_reads_as_before() -> None:
    from engine.policies import LinUCB

    with pytest.raises(InvalidParameterError) as caught:
        LinUCB(3, 2, alpha=-1)
    assert str(caught.value) == (
        "The 'alpha' parameter of LinUCB must be a float >= 0. Got -1 instead."
    )
