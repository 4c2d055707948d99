"""Offline replay and off-policy evaluation: validate a policy on logged data before rollout."""

from __future__ import annotations

from engine.replay.data import LoggedData
from engine.replay.readers import ColumnMap, from_table, read_logs

__all__ = ["ColumnMap", "LoggedData", "from_table", "read_logs"]
