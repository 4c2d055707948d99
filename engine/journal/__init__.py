"""The durable journal (the JournalBackend interface and its SQLite backend), model snapshots,
the learner and the Parquet export."""

from __future__ import annotations

from engine.journal.base import DuplicateError, JournalBackend
from engine.journal.learner import Learner
from engine.journal.lift import Lift, lift_from_journal
from engine.journal.records import DecisionRow, RewardError, RewardRow, StoredDecision
from engine.journal.snapshot import list_snapshots, read_snapshot, write_snapshot
from engine.journal.store import Journal

__all__ = [
    "DecisionRow",
    "DuplicateError",
    "Journal",
    "JournalBackend",
    "Learner",
    "Lift",
    "RewardError",
    "RewardRow",
    "StoredDecision",
    "lift_from_journal",
    "list_snapshots",
    "read_snapshot",
    "write_snapshot",
]
