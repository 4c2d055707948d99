"""benchmarks.common.report_only_campaign: a campaign copy whose lift monitor only reports."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from benchmarks.common import report_only_campaign
from engine.campaign import load_campaign

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"


def test_the_examples_monitor_is_turned_off_and_nothing_else_changes(tmp_path: Path) -> None:
    copy = report_only_campaign(EXAMPLE, tmp_path)
    assert copy.parent == tmp_path and copy.read_text() != EXAMPLE.read_text()
    original, changed = load_campaign(EXAMPLE), load_campaign(copy)
    assert original.rollout.monitor is True and changed.rollout.monitor is False
    assert changed.rollout.alpha == original.rollout.alpha
    assert changed.offer_ids == original.offer_ids and changed.policy == original.policy


@pytest.mark.parametrize(
    "rollout", ["", "[rollout]\nalpha = 0.1\n", "[rollout]\nmonitor = true\nalpha = 0.1\n"]
)
def test_a_campaign_without_a_monitor_key_or_table_gets_one(tmp_path: Path, rollout: str) -> None:
    text = EXAMPLE.read_text().split("[rollout]")[0] + rollout
    source = tmp_path / "src" / "c.toml"
    source.parent.mkdir()
    source.write_text(text + "\n[reward]\nwindow_days = 30.0\n" if rollout else text)
    out = tmp_path / "out"
    out.mkdir()
    table = tomllib.loads(report_only_campaign(source, out).read_text())
    assert table["rollout"]["monitor"] is False
    if "alpha" in rollout:
        assert table["rollout"]["alpha"] == 0.1
