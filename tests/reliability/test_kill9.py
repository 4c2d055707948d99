"""kill -9 of a real ``nbo serve`` under mixed load, a few times in a row (``make soak`` runs 20+
through benchmarks.faults): nothing acknowledged is lost or doubled, and the model after each
restart equals the one rebuilt from the journal."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from testkit.harness import REPO, campaign_config, kill_cycles


@pytest.mark.slow
def test_kill9_under_mixed_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    config = campaign_config(tmp_path)
    data_dir = tmp_path / "data"
    acks, stats = kill_cycles(config, data_dir, n_kills=4, seed=3)
    assert len(stats) == 4
    # The load really ran across the kills: decisions and rewards were acknowledged in every
    # cycle, some rewards were retries, and snapshots were written between kills.
    assert all(b.decisions_acked > a.decisions_acked for a, b in itertools.pairwise(stats))
    assert len(acks.rewards) > 50 and acks.duplicates > 0
    assert list((data_dir / "snapshots" / "renewal").glob("v*.snap"))


@pytest.mark.slow
def test_kill9_of_a_multi_dimensional_campaign_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """The same on examples/renewal_channels.toml: 69 combinations, the shared policy, a daily
    budget on calls and an SMS cap, whose state a restart rebuilds from the journal."""
    config = campaign_config(tmp_path, REPO / "examples" / "renewal_channels.toml")
    data_dir = tmp_path / "data"
    acks, stats = kill_cycles(config, data_dir, n_kills=2, seed=5)
    assert len(stats) == 2 and len(acks.rewards) > 20
    assert list((data_dir / "snapshots" / "renewal_channels").glob("v*.snap"))
