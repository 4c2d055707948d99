"""Schema version 5 on every backend: the rewards' "at most one per decision" keyed on the
integer decision_seq, and the migration of a version-4 journal (its key on decision_id) that
keeps every reward, its seq and what the engine reads."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.journal import JournalBackend
from engine.journal.base import DuplicateError
from engine.journal.records import RewardRow
from engine.journal.schema import REWARD_COLUMNS
from tests.engine.journal_files import what_is_read
from tests.engine.test_journal import decision, raw_sql

# The version-4 rewards table, as the nbo before version 5 created it on SQLite.
_V4_SQLITE_REWARDS = (
    "CREATE TABLE rewards (seq INTEGER PRIMARY KEY, decision_id TEXT NOT NULL UNIQUE,"
    " decision_seq INTEGER NOT NULL, ts_us INTEGER NOT NULL, value REAL, reward REAL,"
    " source TEXT NOT NULL, components TEXT)"
)
_FIELDS = ", ".join(("seq", *REWARD_COLUMNS))


def _to_version_4(store_url: str) -> None:
    """Make the store a version-4 one: its rewards unique on decision_id (not decision_seq),
    every row kept, marked 4."""
    if store_url.startswith("postgresql://"):
        statements = [
            "ALTER TABLE rewards DROP CONSTRAINT rewards_decision_seq_key",
            "ALTER TABLE rewards ADD CONSTRAINT rewards_decision_id_key UNIQUE (decision_id)",
        ]
    else:
        statements = [
            "ALTER TABLE rewards RENAME TO rewards_v5",
            _V4_SQLITE_REWARDS,
            f"INSERT INTO rewards ({_FIELDS}) SELECT {_FIELDS} FROM rewards_v5",
            "DROP TABLE rewards_v5",
        ]
    for statement in [*statements, "UPDATE meta SET value = '4' WHERE key = 'schema_version'"]:
        raw_sql(store_url, statement)


def _reward_keys(store_url: str) -> set[tuple[str, ...]]:
    """The column lists of the rewards table's unique indexes."""
    if store_url.startswith("postgresql://"):
        rows = raw_sql(
            store_url,
            "SELECT array_to_string(array_agg(a.attname ORDER BY a.attnum), ',') FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)"
            " WHERE c.relname = 'rewards' AND n.nspname = current_schema() AND i.indisunique"
            " AND NOT i.indisprimary GROUP BY i.indexrelid",
        )
        return {tuple(r[0].split(",")) for r in rows}
    keys = set()
    for _, name, unique, origin, _partial in raw_sql(store_url, "PRAGMA index_list(rewards)"):
        if unique and origin != "pk":
            info = raw_sql(store_url, f"PRAGMA index_info({name})")
            keys.add(tuple(str(column) for _, _, column in info))
    return keys


def _rewarded(backend: JournalBackend) -> tuple[dict[str, int], list[RewardRow], list[int]]:
    """A store with decisions d0..d5, rewards for d4, d1, d3 (out of decision order, one with
    components) and an expiry for d0: the decisions' seqs, the rewards and their seqs."""
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    ids = [f"d{i}" for i in range(6)]
    seqs = dict(zip(ids, backend.append_decisions([decision(d, 1, cat) for d in ids]), strict=True))
    rewards = [
        RewardRow("d4", seqs["d4"], 2_000_000, 5.0, 4.0, "reward", '{"engaged": 1.0}'),
        RewardRow("d1", seqs["d1"], 2_000_001, 3.0, 2.0, "reward"),
        RewardRow("d3", seqs["d3"], 2_000_002, 0.0, -1.0, "reward"),
        RewardRow("d0", seqs["d0"], 2_000_003, None, 0.0, "expired"),
    ]
    return seqs, rewards, backend.append_rewards(rewards)


def test_a_new_journal_keys_its_rewards_on_the_decision_seq(backend, store_url):
    assert backend.get_meta("schema_version") == "5"
    assert _reward_keys(store_url) == {("decision_seq",)}
    seqs, _, _ = _rewarded(backend)
    with pytest.raises(DuplicateError, match="at most one reward per decision"):
        backend.append_rewards([RewardRow("d1", seqs["d1"], 3_000_000, 1.0, 1.0, "reward")])
    found = backend.lookup(["d1", "d2", "d4"])
    assert found["d1"].reward == 2.0 and found["d4"].reward == 4.0
    assert found["d2"].reward is None and found["d2"].reward_source is None


def test_a_version_4_journal_is_refused_until_migrated_and_keeps_every_reward(
    backend, reopen, store_url
):
    seqs, rewards, reward_seqs = _rewarded(backend)
    read = what_is_read(backend)
    replay = [list(batch) for batch in backend.rewards_after(0)]
    exported = backend.decisions_for_export(0, 100)
    _to_version_4(store_url)
    assert _reward_keys(store_url) == {("decision_id",)}
    refused = (
        "schema version 4, this nbo expects 5; migrate it first.*it adds the rewards' unique key"
        " on their decision's seq in place of the decision id"
    )
    with pytest.raises(ConfigError, match=refused):
        reopen()
    migrated = reopen(migrate=True)
    assert migrated.migrated_from == "4" and migrated.get_meta("schema_version") == "5"
    assert _reward_keys(store_url) == {("decision_seq",)}
    # Every reward kept with its seq, its decision and its components; the reads unchanged.
    assert what_is_read(migrated) == read
    assert [list(batch) for batch in migrated.rewards_after(0)] == replay
    assert migrated.decisions_for_export(0, 100) == exported
    assert sorted(str(o.reward_source) for o in migrated.lookup(list(seqs)).values()) == [
        "None",
        "None",
        "expired",
        "reward",
        "reward",
        "reward",
    ]
    stored = raw_sql(store_url, f"SELECT {_FIELDS} FROM rewards ORDER BY seq")
    assert [tuple(r) for r in stored] == [
        (seq, *reward) for seq, reward in zip(reward_seqs, rewards, strict=True)
    ]
    # Still at most one reward per decision; new rewards number on from the kept ones.
    with pytest.raises(DuplicateError, match="at most one reward per decision"):
        migrated.append_rewards([RewardRow("d4", seqs["d4"], 3_000_000, 1.0, 1.0, "reward")])
    (new,) = migrated.append_rewards([RewardRow("d2", seqs["d2"], 3_000_000, 1.0, 1.0, "reward")])
    assert new == reward_seqs[-1] + 1
    assert migrated.lookup(["d2"])["d2"].reward == 1.0
    assert reopen(migrate=True).migrated_from is None  # current: nothing to do
