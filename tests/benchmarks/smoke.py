"""What the benchmark smoke tests share: run a benchmark at smoke size and check its rows.

Only shapes, counts and signs are checked, never speeds: the figures depend on the machine and
its load.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(
    module: str, out: Path, *args: str, wrote_on: Literal["stdout", "stderr"] = "stdout"
) -> tuple[Any, str]:
    """Run ``python -m module *args --out out`` from the repository root; check it exits 0 and
    says ``wrote <out>`` on ``wrote_on``; return the JSON it wrote and its stdout."""
    cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in getattr(proc, wrote_on)
    return json.loads(out.read_text()), proc.stdout


def check_rate(row: dict[str, Any], items: int, repeats: int) -> None:
    """A throughput row: ``items`` per run, ``repeats`` finite positive runs, min <= median
    <= max."""
    assert row["items"] == items
    assert row["repeats"] == repeats and len(row["runs"]) == repeats
    assert all(r > 0 and math.isfinite(r) for r in row["runs"])
    assert 0 < row["min"] <= row["median"] <= row["max"]
