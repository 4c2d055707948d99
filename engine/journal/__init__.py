"""The durable journal (SQLite, WAL), model snapshots, the learner and the Parquet export."""

from __future__ import annotations

from engine.journal.learner import Learner
from engine.journal.lift import Lift, lift_from_journal
from engine.journal.snapshot import list_snapshots, read_snapshot, write_snapshot
from engine.journal.store import Journal, StoredDecision

__all__ = [
    "Journal",
    "Learner",
    "Lift",
    "StoredDecision",
    "lift_from_journal",
    "list_snapshots",
    "read_snapshot",
    "write_snapshot",
]
