"""Each typed ``**options`` TypedDict names exactly the keywords of what it forwards to.

``Engine.from_config(path, **options: Unpack[EngineOptions])`` and its siblings let mypy check a
caller's keywords, but a keyword added to the target and forgotten in the TypedDict would be out
of reach for typed callers without any error: this test is that error.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from engine.core import Engine, EngineOptions
from engine.lifecycle import ModelLifecycle, PromoteOptions
from engine.replay.evaluate import EvaluateOptions, EvaluateSettings
from simulators.logged import LogOptions, simulate_logs


def keyword_only(function: Callable[..., Any]) -> set[str]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize(
    ("options", "target"),
    [
        (EngineOptions, keyword_only(Engine.__init__)),
        (PromoteOptions, keyword_only(ModelLifecycle.promote_bytes)),
        (EvaluateOptions, {f.name for f in dataclasses.fields(EvaluateSettings)}),
        (LogOptions, keyword_only(simulate_logs)),
    ],
    ids=["EngineOptions", "PromoteOptions", "EvaluateOptions", "LogOptions"],
)
def test_typed_options_name_every_keyword_of_their_target(options: type, target: set[str]) -> None:
    assert set(options.__annotations__) == target
