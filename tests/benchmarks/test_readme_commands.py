"""Every benchmark command of the README runs in the suite, in its quick mode, so none can rot.

Most have their own smoke test (``test_*_smoke.py``, the reliability suite); this file runs the
rest and checks that the README names no benchmark the suite never runs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from tests.benchmarks.smoke import REPO_ROOT, run_benchmark

pytestmark = pytest.mark.slow

README = REPO_ROOT / "README.md"


def _readme_modules() -> set[str]:
    text = README.read_text()
    modules = set(re.findall(r"python -m (benchmarks\.\w+)", text))
    if "nbo bench" in text:
        modules.add("engine.cli bench")  # = benchmarks.core
    return modules


def test_every_benchmark_the_readme_names_is_run_by_a_test() -> None:
    modules = _readme_modules()
    assert "benchmarks.core" in modules or "engine.cli bench" in modules
    suite = (
        "\n".join(
            p.read_text()
            for p in (REPO_ROOT / "tests").rglob("*.py")
            if p.name != Path(__file__).name
        )
        + Path(__file__).read_text().split("# -- runs --", 1)[1]
    )
    never_run = sorted(
        m
        for m in modules
        # A test starts it: run_benchmark("benchmarks.x", ...) or [..., "-m", "benchmarks.x", ...].
        if f'"{m}"' not in suite and not (m == "engine.cli bench" and '"bench"' in suite)
    )
    assert not never_run, f"README benchmark commands no test runs: {never_run}"


# -- runs --
def test_learning_quick_run_measures_every_environment(tmp_path: Path) -> None:
    results, stdout = run_benchmark("benchmarks.learning", tmp_path / "learning.json", "--quick")
    environments = results["environments"]
    assert {"renewal", "interactions", "linear-32"} <= set(environments)
    for name, row in environments.items():
        assert row["rounds"] > 0 and row["oracle_value"] > 0, name
        for policy in ("linucb", "lints", "softmax", "vw"):
            share = row[policy]["default"]
            assert math.isfinite(share) and -1.0 < share <= 1.0, (name, policy, share)
        assert name in stdout


def test_nonlinear_learning_quick_run_measures_every_section(tmp_path: Path) -> None:
    results, stdout = run_benchmark(
        "benchmarks.learning_nonlinear", tmp_path / "nonlinear.json", "--quick"
    )
    for section in ("interactions", "digits", "renewal"):
        policies = results[section]["policies"]
        assert "RandomFourierUCB" in policies, section
        assert any(name.startswith("LinUCB") for name in policies), section
        for name, row in policies.items():
            # digits is a classification task: accuracy; the others a share of the oracle.
            figure = row["accuracy"] if section == "digits" else row["share_of_oracle"]
            assert 0.0 < figure <= 1.0, (section, name)
    assert results["targets"] and all("passed" in t for t in results["targets"])
    assert "RandomFourierUCB" in stdout


def test_sharded_ope_quick_run_reads_fragments_in_process_and_on_ray(tmp_path: Path) -> None:
    results, _ = run_benchmark(
        "benchmarks.ope", tmp_path / "ope.json", "--quick", "--sharded", wrote_on="stderr"
    )
    assert results["sharded"] is True and results["rows"] == 20_000
    whats = [row["what"] for row in results["results"]]
    assert any("fragments, in-process" in w for w in whats)
    assert any("fragments, ray (local)" in w for w in whats)
    assert any("in memory" in w for w in whats)
    for row in results["results"]:
        assert row["events_per_s"] > 0 and math.isfinite(row["events_per_s"])
