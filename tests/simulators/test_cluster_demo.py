"""nbo demo --cluster end to end on a small population: a real PostgreSQL, two decide servers,
a leading and a standby learner; one decide server and the leader killed -9 midway."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from simulators.cluster import run_cluster_demo


@pytest.mark.slow
def test_the_cluster_demo_loses_nothing_acknowledged_across_kills(tmp_path: Path) -> None:
    out = tmp_path / "cluster"
    stream = io.StringIO()
    summary = run_cluster_demo(
        customers=4000, per_day=200, batch=100, seed=1, out=out, stream=stream
    )
    assert summary["decisions_acknowledged"] == 4000 and summary["decisions_lost"] == 0
    assert summary["rewards_acknowledged"] == 4000 and summary["rewards_lost"] == 0
    assert summary["calls_retried_on_the_other_server"] >= 1  # the killed server's next call
    assert summary["failover_seconds"] is not None and 0 < summary["failover_seconds"] <= 5.0
    assert summary["exit_codes"] == {"decide-2": 0, "learner-b": 0}
    assert json.loads((out / "summary.json").read_text()) == summary
    text = stream.getvalue()
    assert "kill -9 decide-1 learner-a" in text and "rewards acknowledged / lost" in text
