"""Smoke test of benchmarks.dimensions: ``--quick`` runs every row but VW on renewal-multi and
writes the table's JSON; the README holds the table's markers. Shares are checked for shape and
range only (the seeded figures are the benchmark's, not this test's)."""

from __future__ import annotations

import pytest

from benchmarks.dimensions import BEGIN, END, QUICK_ROWS
from tests.benchmarks.smoke import REPO_ROOT, run_benchmark


@pytest.mark.slow
def test_quick_run_writes_every_row(tmp_path) -> None:
    payload, stdout = run_benchmark("benchmarks.dimensions", tmp_path / "dim.json", "--quick")
    table = payload["sizes"]["1000"]
    rows = table["rows"]
    assert set(QUICK_ROWS) <= set(rows)
    assert any(label.startswith("best static combination (") for label in rows)
    assert all(0.0 < row["mean"] <= 1.0 for row in rows.values()), rows
    assert 0.0 < table["control_share"] < 1.0 and table["oracle_value"] > 0
    assert "% of oracle, 1,000 customers" in stdout


def test_the_readme_has_the_tables_markers() -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert text.index(BEGIN) < text.index(END)


@pytest.mark.slow
def test_ceiling_quick_run_separates_the_model_classes(tmp_path) -> None:
    """The noise-free fits: being told the landing beats both linear classes by points, every
    restricted oracle stays below the oracle, and the control is below them all."""
    from benchmarks.dimensions_ceiling import DESIGNS, TABLE

    payload, stdout = run_benchmark(
        "benchmarks.dimensions_ceiling", tmp_path / "ceiling.json", "--quick"
    )
    shares = payload["shares"]
    additive, per_combination, landing = (shares[label] for label in DESIGNS)
    assert landing > max(additive, per_combination) + 0.03, shares
    oracles = [v for label, v in shares.items() if label.startswith("oracle")]
    assert len(oracles) == 3 and all(0.9 < v < 1.0 for v in oracles), shares
    assert shares["control (no incentive)"] < min(shares.values()) + 1e-12
    assert "% of oracle" in stdout
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = (f"<!-- {TABLE}:{edge} -->" for edge in ("begin", "end"))
    assert text.index(begin) < text.index(end)
