"""kill -9 of decide servers and of the leading learner, under load, on a PostgreSQL journal
shared by two decide servers and two learners (testkit.replicas; ``benchmarks.faults
--replica-cycles 10`` runs 10 decide-server kills and 5 leader kills)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.harness import campaign_config
from testkit.replicas import replica_kill_cycles


@pytest.mark.slow
def test_kills_of_replicas_and_the_leader_lose_and_double_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    config = campaign_config(tmp_path)
    acks, stats = replica_kill_cycles(postgres_url, config, tmp_path, n_cycles=3, seed=5)
    assert [len(s.killed) for s in stats] == [2, 1, 2]  # 3 decide kills, 2 leader kills
    assert all(s.failover_seconds is not None and s.failover_seconds <= 5.0 for s in stats[::2])
    assert len(acks.decisions) > 200 and len(acks.rewards) > 50 and acks.duplicates > 0
    assert stats[-1].decisions_acked > stats[0].decisions_acked
