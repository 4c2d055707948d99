"""Running ``nbo evaluate`` from the replay tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.cli import main


def evaluate(logs: Path, out: Path, *options: str, exit_code: int = 0) -> dict[str, Any]:
    """``nbo evaluate --logs LOGS OPTIONS --out OUT --no-progress``: check the exit code and return
    the evaluation.json it wrote."""
    code = main(["evaluate", "--logs", str(logs), *options, "--out", str(out), "--no-progress"])
    assert code == exit_code
    return json.loads((out / "evaluation.json").read_text())
