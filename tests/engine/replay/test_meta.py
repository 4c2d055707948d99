"""``nbo evaluate --meta``: estimators scored against a simulator's truth over seeds."""

from __future__ import annotations

import pytest

from engine.errors import InvalidInputError
from engine.replay.candidates import EvalConfig
from engine.replay.meta import find_generator, meta_evaluate
from simulators.meta import renewal


def test_meta_evaluation_reports_bias_rmse_and_coverage():
    config = EvalConfig(estimators=("ips", "dm", "dr", "dr-os"), n_bootstrap=20)
    result = meta_evaluate(renewal(n_rounds=600), 3, config=config, interval="normal")
    rows = {r["estimator"]: r for r in result.rows()}
    assert set(rows) == {"ips", "dm", "dr", "dr-os", "slope"}
    assert all(r["n"] == 3 and 0.0 <= r["coverage"] <= 1.0 for r in rows.values())
    assert rows["dr"]["rmse"] >= abs(rows["dr"]["bias"])
    assert "coverage" in result.table() and sum(result.slope_choices.values()) == 3
    assert result.to_dict()["rows_per_seed"] == 600


def test_unknown_meta_generator_is_named():
    with pytest.raises(InvalidInputError, match="--meta"):
        find_generator("no-such-simulator")
