"""The model registry's part of the journal contract (both backends) and the schema migration
from version 1: numbers never reused, bytes never rewritten, bounded bytes, additive upgrade."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.cli import main as nbo_main
from engine.errors import ConfigError
from engine.journal import DuplicateError, JournalBackend
from engine.journal.records import ModelRow, RequestRow, RewardError, RewardRow
from engine.journal.schema import sha256
from engine.journal.store import Journal
from tests.engine.test_journal import decision


def row(kind: str, catalog: int, parent: int | None = None, seq: int = 0) -> ModelRow:
    return ModelRow(1_700_000_000_000_000, kind, "{}", parent, catalog, "LinUCB", seq, seq)


def test_versions_are_numbered_by_the_journal_and_never_reused(backend, reopen):
    cat = backend.catalog("c", ["a", "b"], ["bias"])
    first = backend.add_model(row("initial", cat), b"m1")
    second = backend.add_model(row("learned", cat, first, seq=4))
    assert (first, second) == (1, 2)
    assert backend.add_model(row("learned", cat, second), at_least=10) == 11
    other = reopen()  # another connection (another process) continues the numbering
    assert other.add_model(row("learned", cat, 11)) == 12
    stored = backend.model(2)
    assert stored is not None and (stored.kind, stored.parent, stored.last_reward_seq) == (
        "learned",
        1,
        4,
    )
    assert stored.sha256 is None and backend.model_bytes(2) is None
    assert backend.model(99) is None
    assert [m.version for m in backend.models()] == [12, 11, 2, 1]
    assert [m.version for m in backend.models(before=11, limit=1)] == [2]
    assert [m.version for m in backend.models_with_bytes()] == [1]


def test_racing_writers_get_distinct_numbers(backend, reopen):
    cat = backend.catalog("c", ["a"], ["bias"])
    journals = [backend, reopen(), reopen()]
    got: list[int] = []
    lock = threading.Lock()

    def write(journal: JournalBackend) -> None:
        for _ in range(20):
            number = journal.add_model(row("learned", cat))
            with lock:
                got.append(number)

    threads = [threading.Thread(target=write, args=(j,)) for j in journals]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 61))


def test_model_bytes_are_kept_once_and_never_rewritten(backend):
    cat = backend.catalog("c", ["a"], ["bias"])
    number = backend.add_model(row("promoted", cat), lambda n: f"model v{n}".encode())
    assert backend.model_bytes(number) == f"model v{number}".encode()
    assert backend.model(number).sha256 == sha256(f"model v{number}".encode())
    learned = backend.add_model(row("learned", cat, number))
    assert backend.keep_model_bytes(learned, b"checkpoint") is True
    assert backend.keep_model_bytes(learned, b"checkpoint") is False  # the same bytes: no-op
    with pytest.raises(DuplicateError, match=f"model bytes of v{learned} to stay as stored"):
        backend.keep_model_bytes(learned, b"other bytes")
    assert backend.model_bytes(learned) == b"checkpoint"


def test_pruning_keeps_promotions_their_parents_and_the_newest_checkpoints(backend):
    cat = backend.catalog("c", ["a"], ["bias"])
    kept = {}
    parent = None
    for i in range(12):
        kind = "promoted" if i in (4, 9) else "rollback" if i == 10 else "learned"
        parent = backend.add_model(row(kind, cat, parent), f"bytes {i}".encode())
        kept[parent] = (kind, f"bytes {i}".encode())
    # versions 1..12; promoted 5 and 10 (parents 4 and 9), rollback 11 (parent 10)
    assert backend.prune_model_bytes(keep_learned=2) == 6
    with_bytes = {m.version for m in backend.models_with_bytes()}
    assert with_bytes == {4, 5, 9, 10, 11, 12}
    for version in with_bytes:  # what is kept is what was stored
        assert backend.model_bytes(version) == kept[version][1]
    assert len(backend.models()) == 12  # every row stays, as metadata
    assert backend.prune_model_bytes(keep_learned=2) == 0


def _downgrade(journal: JournalBackend, mark: str | None, interim: bool = False) -> None:
    """Make the store a version-1 one: no registry tables, ``mark`` as its schema version; no
    request or error-count tables either, unless ``interim`` (a version-1 store an nbo between
    the two versions wrote: it had them, still marked version 1)."""
    statements = ["DROP TABLE model_blobs", "DROP TABLE models"]
    if not interim:
        statements += [
            "DROP TABLE requests",
            "DROP TABLE reward_error_counts",
            "DELETE FROM meta WHERE key = 'reward_errors_total'",
        ]
    statements.append("DELETE FROM meta WHERE key = 'schema_version'")
    if mark is not None:
        statements.append(f"INSERT INTO meta VALUES ('schema_version', '{int(mark)}')")
    if isinstance(journal, Journal):
        with journal._write() as db:
            for statement in statements:
                db.execute(statement)
        return
    with journal._write() as (conn, _):
        for statement in statements:
            conn.execute(statement)


@pytest.mark.parametrize(("mark", "interim"), [("1", False), (None, False), ("1", True)])
def test_a_version_1_journal_is_refused_until_migrated(backend, reopen, mark, interim):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    backend.append_decisions([decision("d1", 1, cat)])
    backend.append_rewards([RewardRow("d1", 1, 2_000_000, 3.0, 1.0, "reward")])
    backend.record_errors([RewardError(2_000_000, f"x{i}", 1.0, "unknown") for i in range(2)])
    if interim:
        backend.append_request(RequestRow("r1", "c", 2_000_000, "h"), [decision("d2", 2, cat)])
    _downgrade(backend, mark, interim)
    with pytest.raises(
        ConfigError,
        match=r"schema version 1, this nbo expects 5; migrate it "
        r"first with `nbo journal migrate --journal URL`",
    ):
        reopen()
    migrated = reopen(migrate=True)
    assert migrated.get_meta("schema_version") == "5"
    assert migrated.models() == [] and migrated.lookup(["d1"])["d1"].reward == 1.0
    assert migrated.add_model(row("initial", cat)) == 1
    # Version 2's request and error-count tables are there (kept as they were, if any).
    found = migrated.find_request("c", "r1")
    assert (found is not None) == interim
    migrated.append_request(RequestRow("r2", "c", 3_000_000, "h"), [decision("d3", 3, cat)])
    assert migrated.find_request("c", "r2") is not None
    assert migrated.counts()["reward_errors"] == 2  # older rows counted once, or kept counts
    migrated.record_errors([RewardError(3_000_000, "x9", 1.0, "unknown")])
    assert migrated.counts()["reward_errors"] == 3
    again = reopen(migrate=True)  # migrating a current journal changes nothing
    assert again.get_meta("schema_version") == "5" and len(again.models()) == 1


def test_nbo_journal_migrate_command(tmp_path, capsys):
    path = tmp_path / "renewal.journal.sqlite"
    journal = Journal(path)
    cat = journal.catalog("renewal", ["none"], ["bias"])
    journal.append_decisions([decision("d1", 1, cat, context=np.ones(1).tobytes())])
    _downgrade(journal, "1")
    journal.close()
    argv = ["journal", "migrate", "--data-dir", str(tmp_path), "--campaign", "renewal"]
    assert nbo_main(argv) == 0
    out = capsys.readouterr().out
    assert "schema version 1 -> 5" in out and str(path) in out
    assert nbo_main(argv) == 0
    assert "already at schema version 5" in capsys.readouterr().out
    assert Journal(path).get_meta("schema_version") == "5"
    assert nbo_main(["journal", "migrate", "--journal", str(tmp_path / "none.sqlite")]) == 2
    assert "no such file" in capsys.readouterr().err
