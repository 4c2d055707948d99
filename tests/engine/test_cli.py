"""The ``nbo`` command finds its subcommands through the ``nbo.commands`` entry points."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from engine.cli import COMMAND_GROUP, build_parser, commands

REPO_ROOT = Path(__file__).resolve().parents[2]
ALL = {
    "serve",
    "demo",
    "simulate",
    "evaluate",
    "train",
    "export",
    "lift",
    "journal",
    "model",
    "promote",
    "mode",
    "tune",
    "bench",
}


def _entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=COMMAND_GROUP)


def test_every_command_is_an_installed_entry_point() -> None:
    found = {ep.name: ep.module for ep in commands()}
    assert set(found) == ALL
    assert found["demo"].startswith("simulators.") and found["bench"].startswith("benchmarks.")
    assert all(
        module.startswith("engine.")
        for name, module in found.items()
        if name not in {"demo", "simulate", "tune", "bench"}
    )


def test_help_lists_every_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith("    ")}
    assert ALL <= listed


def test_running_one_command_imports_only_its_module() -> None:
    code = (
        "import sys\n"
        "from engine.cli import build_parser\n"
        "build_parser('export')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'simulators', 'benchmarks', "
        "'grpc', 'ray'}), 'engine.replay.cli' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["[]", "False"]


def test_a_command_whose_module_is_not_installed_is_skipped() -> None:
    available = [
        _entry_point("ghost", "nbo_no_such_package.cli:register"),
        _entry_point("export", "engine.journal.cli:register"),
        _entry_point("lift", "engine.journal.cli:register"),
    ]
    parser = build_parser(available=available)
    usage = parser.format_help()
    assert "export" in usage and "lift" in usage and "ghost" not in usage
    assert parser.parse_args(["lift", "--level", "0.9"]).level == 0.9


def test_a_command_whose_own_import_fails_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nbo_broken_command.py").write_text("import nbo_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = [_entry_point("broken", "nbo_broken_command:register")]
    with pytest.raises(ModuleNotFoundError, match="nbo_no_such_dependency"):
        build_parser(available=broken)
