"""The docstring examples of benchmarks/ and testkit/ run as tests.

pytest's --doctest-modules covers the folders in its testpaths (engine/, simulators/); these two
packages are found here module by module, so a new module's examples run without being listed.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import benchmarks
import testkit

MODULES = sorted(
    info.name
    for package in (benchmarks, testkit)
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failed, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert failed == 0


def test_the_examples_are_found() -> None:
    assert {"benchmarks.cli", "benchmarks.common", "testkit.traffic"} <= set(MODULES)
    attempted = sum(
        doctest.testmod(importlib.import_module(name), report=False).attempted
        for name in ("benchmarks.cli", "benchmarks.common", "testkit.traffic")
    )
    assert attempted > 0
