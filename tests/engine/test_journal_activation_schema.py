"""Deferred activation and the journal's schema and retention, on every backend: schema version
4 and the migration of a version-3 journal (one written by the nbo before it, checked in), and
compaction of deferred decisions (only served ones are archived; lapsed ones are deleted)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main as nbo_main
from engine.core import Engine
from engine.errors import ConfigError
from engine.journal import Journal, JournalBackend, lift_from_journal
from engine.journal.compact import RetentionRules, compact_journal
from engine.journal.records import LAPSED, DecisionRow, ModelRow, RewardRow
from tests.engine.journal_files import what_is_read
from tests.engine.test_journal import decision, raw_sql
from tests.engine.test_journal_compact import archive_rows, rounded

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
RENEWAL = ROOT / "examples" / "renewal.toml"
DAY = 86_400.0  # seconds
NOW = 300 * DAY


def made(did: str, second: float, cat: int, **kw: Any) -> DecisionRow:
    """Decision ``did`` made at ``second``."""
    return decision(did, 1, cat, ts_us=int(second * 1e6), **kw)


# ---------------------------------------------------------------------- retention
def test_compaction_archives_served_decisions_and_deletes_lapsed_ones(backend, tmp_path):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    rows = []
    for day in range(1, 5):  # an immediate, an activated and a lapsed decision a day
        rows += [
            made(f"now{day}", day * DAY, cat, customer_id=f"c{day}", control=day == 2),
            made(f"act{day}", day * DAY, cat, customer_id=f"c{day}", deferred=True),
            made(f"lap{day}", day * DAY, cat, customer_id=f"c{day}", deferred=True),
        ]
    rows.append(made("late", DAY, cat, deferred=True))  # activated after the cut: caps read it
    rows.append(made("open", 5 * DAY, cat, deferred=True))  # pending inactive: never archived
    rows += [made(f"new{i}", NOW - DAY / 2, cat) for i in range(3)]  # too young to archive
    seqs = dict(zip([r.decision_id for r in rows], backend.append_decisions(rows), strict=True))
    backend.activate(["late"], int((NOW - DAY / 2) * 1e6))  # the oldest activation seq
    for day in range(1, 5):
        backend.activate([f"act{day}"], int((day + 0.5) * DAY * 1e6))
    at = int((NOW - DAY / 4) * 1e6)
    rewards = [
        RewardRow(d, s, at, None, None, LAPSED)
        if d.startswith("lap")
        else RewardRow(d, s, at, float(s), float(s) - 1, "reward")
        for d, s in seqs.items()
        if d != "open"
    ]
    reward_seqs = backend.append_rewards(rewards)
    backend.add_model(ModelRow(1, "learned", "{}", None, cat, "LinUCB", reward_seqs[-1], 1), b"m")
    before = what_is_read(backend)
    assert before["counts"]["activations"] == 5 and before["counts"]["inactive"] == 1

    archive = tmp_path / "archive"
    report = compact_journal(backend, RetentionRules(keep_recent=2), NOW, archive, 1)
    # act3 and act4 are the traffic window's newest 2 activations, late was activated after
    # the cut: kept, as are open (pending) and the young ones
    served = {f"now{day}" for day in range(1, 5)} | {"act1", "act2"}
    lapsed = {f"lap{day}" for day in range(1, 5)}
    kept = {"act3", "act4", "late", "open", "new0", "new1", "new2"}
    assert report.archived == len(served) == backend.archived_decisions()
    assert report.bounds["activation_seq"] == 4
    assert {r["decision_id"] for r in archive_rows(archive)} == served  # files: served only
    assert backend.lookup(sorted(served | lapsed)) == {}
    assert set(backend.lookup(sorted(kept))) == kept
    assert backend.get_meta("dropped_decisions") == str(len(lapsed))
    assert rounded(what_is_read(backend)) == before  # budgets, lift and counts unchanged
    assert report.space["after"]["kept"] == len(kept)
    # activations left with their decisions; numbering continues
    assert [a[0] for a in backend.activations_after(0, 10)] == [1, 4, 5]
    backend.activate(["open"], int(NOW * 1e6))
    assert backend.activations_after(5, 10)[0][0] == 6 and backend.counts()["activations"] == 6


# ---------------------------------------------------------------------- schema version 4
def _to_version_3(backend: JournalBackend, store_url: str) -> None:
    """Make the store a version-3 one, as the nbo before deferred activation left it: no
    activations table, no decisions.deferred or rewards.components column, marked 3
    (compacted)."""
    for statement in (
        "DROP TABLE activations",
        "ALTER TABLE decisions DROP COLUMN deferred",
        "ALTER TABLE rewards DROP COLUMN components",
        "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
        "DELETE FROM meta WHERE key = 'inactive_decisions'",
    ):
        raw_sql(store_url, statement)


def test_a_version_3_journal_is_refused_until_migrated_on_every_backend(backend, reopen, store_url):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    (seq,) = backend.append_decisions([made("d1", 1, cat)])
    backend.append_rewards([RewardRow("d1", seq, 2_000_000, 3.0, 1.0, "reward")])
    read = what_is_read(backend)
    _to_version_3(backend, store_url)
    refused = "schema version 3, this nbo expects 5; migrate it first.*it adds the activations"
    with pytest.raises(ConfigError, match=refused + " table, the decisions' deferred column"):
        reopen()
    migrated = reopen(migrate=True)
    assert migrated.migrated_from == "3" and migrated.get_meta("schema_version") == "5"
    assert what_is_read(migrated) == read
    assert migrated.lookup(["d1"])["d1"].served and not migrated.lookup(["d1"])["d1"].deferred
    migrated.append_decisions([made("d2", 3, cat, deferred=True)])
    assert migrated.activate(["d2", "d1"], 4_000_000) == ["activated", "immediate"]
    assert reopen(migrate=True).migrated_from is None  # current: nothing to do


def test_a_version_3_journal_written_by_the_nbo_before_migrates(tmp_path, capsys):
    """tests/engine/data/v3.journal.sqlite was written (and compacted) by the nbo of commit
    b87b224; v3.journal.json holds what that nbo read from it."""
    data = tmp_path / "data"
    data.mkdir()
    path = data / "renewal.journal.sqlite"
    shutil.copyfile(DATA / "v3.journal.sqlite", path)
    path.chmod(0o600)
    shutil.copyfile(path, tmp_path / "copy.sqlite")
    expected = json.loads((DATA / "v3.journal.json").read_text())
    for readonly in (False, True):
        with pytest.raises(ConfigError, match="schema version 3, this nbo expects 5; migrate"):
            Journal(path, readonly=readonly)
    with pytest.raises(ConfigError, match="schema version 3, this nbo expects 5"):
        Engine.from_config(RENEWAL, data_dir=data, background=False)
    journal = Journal(path, migrate=True)
    assert journal.migrated_from == "3" and journal.get_meta("schema_version") == "5"
    counts = journal.counts()
    assert counts == {**expected["counts"], "inactive": 0, "activations": 0}
    assert {a: list(t) for a, t in journal.offer_totals().items()} == expected["offer_totals"]
    sums = {str(k): list(v) for k, v in journal.lift_sums().items()}
    assert sums == {k: pytest.approx(v) for k, v in expected["lift_sums"].items()}
    assert rounded(lift_from_journal(journal).to_dict()) == expected["lift"]
    assert journal.archived_decisions() == expected["archived"]
    assert journal.recent_actions(1000) == expected["recent_actions"]
    # (customer, time) as that nbo read them; this one also reads each incentive's action
    times = [[c, t] for c, t, _ in journal.incentive_times(0, "none")]
    assert times == expected["incentive_times"]
    kept = journal.lookup(expected["kept"])
    assert sorted(kept) == expected["kept"] and not any(s.deferred for s in kept.values())
    assert sorted(d for d, s in kept.items() if s.reward_source is None) == sorted(
        expected["pending"]
    )
    assert journal.last_reward_seq() == expected["last_reward_seq"]
    assert len(journal.models()) == expected["models"]
    found = journal.find_request("renewal", "req-1")
    assert found is not None and [d.decision_id for d in found.decisions] == expected["request"]
    assert journal.integrity_check() == "ok"
    journal.close()
    # the campaign runs on it: decisions are journaled (immediate) and rewarded as before
    eng = Engine.from_config(RENEWAL, data_dir=data, background=False, clock=lambda: 1.8e9)
    made_now = eng.decide("c9", {"tenure_months": 3, "monthly_price": 30.0, "plan": "basic"})
    assert eng.reward(made_now.decision_id, 10.0).status == "applied"
    assert eng.journal.counts()["decisions"] == expected["counts"]["decisions"] + 1
    eng.close()
    # and `nbo journal migrate` says what it added
    assert nbo_main(["journal", "migrate", "--journal", str(tmp_path / "copy.sqlite")]) == 0
    out = capsys.readouterr().out
    assert "migrated schema version 3 -> 5 (added the activations table, the decisions' " in out
    assert "the rewards' unique key on their decision's seq in place of the decision id" in out
