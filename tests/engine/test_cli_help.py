"""Every option of the `nbo` commands says what it does and what it defaults to.

The commands are found through engine.cli (their entry points), so a new command or option is
checked without being named here. `nbo serve` is left to the serving layer's tests: its flags
default to a ServeConfig field or a [server] table, and it is being reworked in parallel.
"""

from __future__ import annotations

import argparse

import pytest

from engine.cli import build_parser, commands
from engine.replay.cli import COLUMN_FIELDS
from engine.replay.readers import ColumnMap

# Flags and repeatable options have no default to state.
SILENT = (
    argparse._HelpAction,
    argparse._StoreTrueAction,
    argparse._StoreConstAction,
    argparse._AppendAction,
)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(ep.name for ep in commands() if ep.name != "serve"))
def test_every_option_has_help_with_its_default(command: str) -> None:
    sub = _subparsers()[command]
    for action in sub._actions:
        if isinstance(action, SILENT) or not action.option_strings or action.required:
            continue
        name = action.option_strings[-1]
        assert action.help, f"nbo {command} {name}: no help"
        shown = sub._get_formatter()._expand_help(action)
        assert "[" in shown and "]" in shown, f"nbo {command} {name}: no [default] in {shown!r}"
        if action.default not in (None, [], ""):
            default = action.default
            text = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
            assert str(text) in shown, f"nbo {command} {name}: default {text!r} not in {shown!r}"


def test_column_help_lists_every_field_columnmap_accepts() -> None:
    for field in COLUMN_FIELDS:
        ColumnMap.parse([f"{field}=x"])  # accepted
    with pytest.raises(ValueError, match="FIELD one of") as info:
        ColumnMap.parse(["nope=x"])
    accepted = str(info.value).split("one of ")[1]
    assert accepted.count("'") == 2 * len(COLUMN_FIELDS)  # no field missing from COLUMN_FIELDS
    shown = _subparsers()["evaluate"].format_help()
    for field in COLUMN_FIELDS:
        assert field in shown
