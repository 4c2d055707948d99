"""What engine tests read from a journal: the model its rewards rebuild, and raw rows of the
SQLite file through a read-only connection of the test's own."""

from __future__ import annotations

import sqlite3
from typing import Any

from engine.core import Engine
from engine.journal.base import JournalBackend
from engine.journal.lift import lift_from_journal
from engine.policies import Policy
from testkit.replicas import rebuilt_from_rewards


def read_journal(eng: Engine, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on ``eng``'s journal file."""
    assert eng.data_dir is not None, "an in-memory journal has no file to read"
    path = eng.data_dir / f"{eng.campaign}.journal.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def rebuilt_from_journal(eng: Engine) -> Policy:
    """A fresh model fed every learnable reward in journal order: what recovery must equal."""
    policy, _ = rebuilt_from_rewards(eng.journal, eng.config.policy, eng.offer_ids, eng.n_features)
    return policy


def what_is_read(journal: JournalBackend) -> dict[str, Any]:
    """What a compaction and a migration must leave unchanged: budgets, lift and counts."""
    return {
        "offer_totals": journal.offer_totals(),
        "lift_sums": journal.lift_sums(),
        "counts": journal.counts(),
        "lift": lift_from_journal(journal).to_dict(),
    }
