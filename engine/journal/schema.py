"""The journal's tables and queries in the SQL both backends speak, and the schema version.

The SQLite backend (:mod:`engine.journal.store`) and the PostgreSQL backend
(:mod:`engine.journal.postgres`) run the same statements: they are written once, here, with
``?`` placeholders (PostgreSQL's driver takes ``%s``: :func:`pg` converts) and with the few type
names that differ left as ``{fields}`` of :data:`TABLES` (:data:`SQLITE_TYPES`,
:data:`POSTGRES_TYPES`). Column lists come from the row types of :mod:`engine.journal.records`,
so a row's field order is its column order.

Schema version
--------------
The ``meta`` table keeps ``schema_version``. Version 1 has the decision and reward tables;
version 2 adds the model registry (``models`` and ``model_blobs``, :data:`MODEL_TABLES`), the
idempotent requests and the counts of rejected rewards (``requests`` with its index
``requests_by_time``, ``reward_error_counts``, :data:`REQUEST_TABLES`), an additive change:
:data:`MIGRATIONS` creates whichever of them is missing and touches no existing row (the first
write open of a migrated store then counts its older reward_errors rows once). A store
created by an nbo of that version was version 2 from the start; an existing store without a
mark was written before versions were kept, with version 1's tables.

Version 3 is a version-2 store that a compaction (:mod:`engine.journal.compact`) has moved
closed decisions out of: its ``archived_offers`` and ``archived_customers``
(:data:`ARCHIVE_TABLES`) hold the totals of what left, and the reads that must not change
(``offer_totals``, ``lift_sums``, the lift) add them. An nbo older than compaction, which would
read budgets and lift without the archived rows, refused it as newer.

Version 4 adds deferred activation: the ``deferred`` column of ``decisions`` (false for every
decision of an older store) and the ``activations`` table (:data:`ACTIVATION_TABLES`), and a
version-4 store may hold archived rows (no separate mark: an nbo older than version 4 refuses it
as newer). :data:`MIGRATIONS` brings a version-2 or -3 store to it (the column with its default,
the table; no stored value changes), a version-1 store through version 2.

Version 5 (this nbo's) keys the rewards' "at most one per decision" on ``decision_seq`` (an
integer) instead of ``decision_id``, and every read joins a reward to its decision by seq: the
index an out-of-order reward dirties is a quarter of the size. Its step keeps every row and seq
(SQLite rebuilds the rewards table, PostgreSQL swaps the constraint). A store this nbo creates
is version 5, with every table (the archive's empty).

A store of another version is refused by name (:func:`check_version`), an older one with the
command that migrates it: nbo changes an existing store's schema only when asked (``nbo
journal migrate``).

Examples
--------
>>> pg("SELECT seq FROM decisions WHERE seq > ? LIMIT ?")
'SELECT seq FROM decisions WHERE seq > %s LIMIT %s'
>>> check_version("5", "journal x.sqlite")
>>> check_version("3", "journal x.sqlite")
Traceback (most recent call last):
...
engine.errors.ConfigError: journal x.sqlite: schema version 3, this nbo expects 5; migrate it ...
>>> check_version("6", "journal x.sqlite")
Traceback (most recent call last):
...
engine.errors.ConfigError: journal x.sqlite: schema version 6, this nbo expects 5; it was ...
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from itertools import chain
from operator import itemgetter
from typing import Any, ClassVar

from engine.errors import ConfigError, CorruptModelError
from engine.journal.base import (
    ERROR_PERIOD_US,
    ERROR_SAMPLES,
    DuplicateError,
    ModelBlob,
    StaleModelError,
)
from engine.journal.records import (
    LAPSED,
    ActivationRow,
    ArchiveCut,
    ArchivedCustomer,
    DecisionRow,
    ExportedDecision,
    GroupSums,
    ModelRow,
    OfferTotals,
    Outcome,
    RequestRow,
    RetentionBounds,
    RewardError,
    RewardRow,
    StoredDecision,
    StoredModel,
    StoredRequest,
    StoredReward,
)

SCHEMA_VERSION = 5
VERSION_KEY = "schema_version"

TABLES = """
CREATE TABLE IF NOT EXISTS catalogs (
    id {seq},
    campaign TEXT NOT NULL,
    offer_ids TEXT NOT NULL,
    feature_names TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    seq {seq},
    decision_id TEXT NOT NULL UNIQUE,
    ts_us {int} NOT NULL,
    customer_id TEXT NOT NULL,
    context {blob} NOT NULL,
    eligible TEXT NOT NULL,
    action TEXT NOT NULL,
    propensity {real} NOT NULL,
    explored {bool} NOT NULL,
    control {bool} NOT NULL,
    model_version TEXT NOT NULL,
    cost {real} NOT NULL,
    scores {blob} NOT NULL,
    reasons TEXT,
    catalog {int} NOT NULL REFERENCES catalogs(id),
    deferred {bool} NOT NULL DEFAULT {false}
);
CREATE TABLE IF NOT EXISTS rewards (
    seq {seq},
    decision_id TEXT NOT NULL,
    decision_seq {int} NOT NULL UNIQUE,
    ts_us {int} NOT NULL,
    value {real},
    reward {real},
    source TEXT NOT NULL,
    components TEXT
);
CREATE TABLE IF NOT EXISTS reward_errors (
    seq {seq},
    ts_us {int} NOT NULL,
    decision_id TEXT NOT NULL,
    value {real},
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Version 2 adds two groups of tables. The model registry (engine.journal.registry): ``models``
# rows are never changed or deleted; ``model_blobs`` holds the model bytes (engine.journal.
# snapshot's encoding) of the versions whose bytes are kept: inserted once per version, never
# rewritten, deleted when pruned. Idempotent decide requests (``requests``, pruned by time) and
# rejected rewards counted per minute and reason (``reward_error_counts``, beside the running
# total in meta; reward_errors keeps a bounded sample).
MODEL_TABLES = """
CREATE TABLE IF NOT EXISTS models (
    version {int} PRIMARY KEY,
    created_us {int} NOT NULL,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    parent {int},
    catalog {int} NOT NULL REFERENCES catalogs(id),
    policy_class TEXT NOT NULL,
    last_reward_seq {int} NOT NULL,
    n_rewards {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS model_blobs (
    version {int} PRIMARY KEY REFERENCES models(version),
    sha256 TEXT NOT NULL,
    model {blob} NOT NULL
);
"""
REQUEST_TABLES = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT NOT NULL,
    campaign TEXT NOT NULL,
    ts_us {int} NOT NULL,
    request_hash TEXT NOT NULL,
    decision_seqs TEXT NOT NULL,
    PRIMARY KEY (campaign, request_id)
);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (ts_us);
CREATE TABLE IF NOT EXISTS reward_error_counts (
    period_us {int} NOT NULL,
    error TEXT NOT NULL,
    n {int} NOT NULL,
    PRIMARY KEY (period_us, error)
);
"""
V2_TABLES = MODEL_TABLES + REQUEST_TABLES
# What a compaction moved out of the journal, per chosen offer (budgets: offer_totals) and per
# customer and group (lift: the interval is over customers, so a sum per group is not enough).
# Rows are added to, in the transaction of each delete, never otherwise changed.
ARCHIVE_TABLES = """
CREATE TABLE IF NOT EXISTS archived_offers (
    action TEXT PRIMARY KEY,
    n {int} NOT NULL,
    cost {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS archived_customers (
    customer_id TEXT NOT NULL,
    control {bool} NOT NULL,
    n {int} NOT NULL,
    total {real} NOT NULL,
    squares {real} NOT NULL,
    PRIMARY KEY (customer_id, control)
);
"""
# Version 4: deferred activation. A deferred decision (decisions.deferred) counts nowhere until
# its activation row (at most one per decision, numbered like rewards: other processes follow
# "activations after seq N") says when its offer was delivered.
ACTIVATION_TABLES = """
CREATE TABLE IF NOT EXISTS activations (
    seq {seq},
    decision_id TEXT NOT NULL UNIQUE,
    decision_seq {int} NOT NULL,
    ts_us {int} NOT NULL
);
"""
V4_STEP = (
    "ALTER TABLE decisions ADD COLUMN deferred {bool} NOT NULL DEFAULT {false};"
    "ALTER TABLE rewards ADD COLUMN components TEXT;" + ACTIVATION_TABLES
)
ALL_TABLES = TABLES + V2_TABLES + ARCHIVE_TABLES + ACTIVATION_TABLES
ARCHIVE_TABLE = "archived_offers"  # created with archived_customers (see SQLJournal._has_archive)
# from version -> (the version it becomes, the statements that bring it there, what they add).
# Up to version 4 additive only: every table CREATE ... IF NOT EXISTS and a column only added
# where missing (SQLJournal._migrate_store), so a store an interim nbo already gave some of them
# migrates the same way. Version 3 (compacted 2) has the archive's tables, which ALL_TABLES adds
# to a 2. Every step runs in the migration's one write transaction, so version 5's (a rebuild)
# is applied whole or not at all.
_V4_ADDS = (
    "the activations table, the decisions' deferred column (false for all) and the rewards' "
    "components column (none for all)"
)
# Version 5 (see the module's notes) differs per backend: SQLite cannot drop a column's UNIQUE,
# so its ``rekey_rewards`` (below) rebuilds the table; PostgreSQL's swaps the constraint.
V5_STEP = "{rekey_rewards}"
_V5_ADDS = (
    "the rewards' unique key on their decision's seq in place of the decision id (SQLite "
    "rebuilds the rewards table, keeping every row)"
)
MIGRATIONS: dict[int, tuple[int, str, str]] = {
    1: (2, V2_TABLES, "the model registry's, the requests' and the rejected-reward counts' tables"),
    2: (4, V4_STEP, _V4_ADDS),
    3: (4, V4_STEP, _V4_ADDS),
    4: (5, V5_STEP, _V5_ADDS),
}
_ADD_COLUMN = re.compile(r"\s*ALTER TABLE (\w+) ADD COLUMN (\w+)")
V1_TABLES = ("catalogs", "decisions", "rewards", "reward_errors", "meta")
# SQLite's INTEGER PRIMARY KEY is the rowid, numbered by SQLite. PostgreSQL's seqs are numbered
# by the backend itself, under a lock, in commit order (see engine.journal.postgres).
SQLITE_TYPES = {
    "seq": "INTEGER PRIMARY KEY",
    "int": "INTEGER",
    "blob": "BLOB",
    "real": "REAL",
    "bool": "INTEGER",
    "false": "0",
}
POSTGRES_TYPES = {
    "seq": "BIGINT PRIMARY KEY",
    "int": "BIGINT",
    "blob": "BYTEA",
    "real": "DOUBLE PRECISION",
    "bool": "BOOLEAN",
    "false": "FALSE",
}

DECISION_COLUMNS: tuple[str, ...] = DecisionRow._fields
REWARD_COLUMNS: tuple[str, ...] = RewardRow._fields
ERROR_COLUMNS: tuple[str, ...] = RewardError._fields
MODEL_COLUMNS: tuple[str, ...] = ("version", *ModelRow._fields)
ACTIVATION_COLUMNS: tuple[str, ...] = ActivationRow._fields


def _rekey_rewards_sqlite() -> str:
    """Version 5's step on SQLite: the rewards table rebuilt under the current definition (its
    key on decision_seq), every row copied with its seq, in the migration's one transaction."""
    ddl = TABLES[TABLES.index("CREATE TABLE IF NOT EXISTS rewards (") :]
    ddl = ddl[: ddl.index(");") + 1].replace(" rewards (", " rewards_v5 (", 1)
    fields = ", ".join(("seq", *REWARD_COLUMNS))
    return (
        ddl.format(**SQLITE_TYPES) + f"; INSERT INTO rewards_v5 ({fields}) SELECT {fields} FROM"
        " rewards ORDER BY seq; DROP TABLE rewards; ALTER TABLE rewards_v5 RENAME TO rewards"
    )


SQLITE_TYPES["rekey_rewards"] = _rekey_rewards_sqlite()
# PostgreSQL names a column's UNIQUE {table}_{column}_key: a new store's key has the name the
# step gives the index, and the step drops version 4's by its name.
POSTGRES_TYPES["rekey_rewards"] = (
    "CREATE UNIQUE INDEX IF NOT EXISTS rewards_decision_seq_key ON rewards (decision_seq);"
    " ALTER TABLE rewards DROP CONSTRAINT IF EXISTS rewards_decision_id_key"
)


def insert_sql(table: str, columns: Sequence[str], n_rows: int = 1) -> str:
    """INSERT of ``n_rows`` rows of ``columns`` (a multi-row INSERT takes one statement step per
    chunk instead of one per row)."""
    values = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([values] * n_rows)


def pg(sql: str) -> str:
    """``sql`` with PostgreSQL's ``%s`` placeholders (the statements here have no other ``?``
    or ``%``)."""
    return sql.replace("?", "%s")


# A decision counts (budgets, caps, lift, learning, export) when it is served: journaled
# immediate, or deferred and activated. ``a`` is its activation, LEFT JOINed by ACTIVATION.
ACTIVATION = " LEFT JOIN activations a ON a.decision_id = d.decision_id"
SERVED = "(NOT d.deferred OR a.seq IS NOT NULL)"
# Every read of stored decisions (lookup, expiry) selects StoredDecision's columns.
STORED = (
    "SELECT d.decision_id, d.seq, d.ts_us, d.customer_id, d.context, d.action, d.propensity,"
    " d.control, d.cost, r.source, r.reward, d.catalog, d.deferred, a.ts_us FROM decisions d"
    " LEFT JOIN rewards r ON r.decision_seq = d.seq" + ACTIVATION
)
DUE = STORED + " WHERE d.seq > ? ORDER BY d.seq LIMIT ?"
EXPORTED = (
    "SELECT d.seq, d.decision_id, d.ts_us, d.customer_id, d.context, d.action, d.propensity,"
    " r.reward, d.eligible, d.explored, d.control, d.model_version, d.catalog,"
    f" CASE WHEN {SERVED} THEN 1 ELSE 0 END, d.reasons, r.components"
)  # ExportedDecision's columns
# Only served decisions are exported: one deferred and never activated was not delivered.
EXPORT = (
    EXPORTED
    + " FROM decisions d LEFT JOIN rewards r ON r.decision_seq = d.seq"
    + ACTIVATION
    + f" WHERE d.seq > ? AND {SERVED} {{closed}} ORDER BY d.seq LIMIT ?"
)
EXPORT_CLOSED = "AND r.reward IS NOT NULL"
# The expiry of a deferred decision never activated (source LAPSED) is not a reward: the learner
# and the lift monitor never see it.
REWARDS_AFTER = (
    "SELECT r.seq, d.context, d.action, d.propensity, r.reward, d.catalog, r.components"
    " FROM rewards r JOIN decisions d ON d.seq = r.decision_seq"
    f" WHERE r.seq > ? AND r.source <> '{LAPSED}' ORDER BY r.seq LIMIT ?"
)
OUTCOMES_AFTER = (
    "SELECT r.seq, d.customer_id, d.control, d.cost, r.reward, d.reasons, d.model_version,"
    " d.action, d.ts_us, r.components FROM rewards r JOIN decisions d ON d.seq = r.decision_seq"
    f" WHERE r.seq > ? AND r.source <> '{LAPSED}' ORDER BY r.seq LIMIT ?"
)
LIFT_SUMS = (
    "SELECT d.control, COUNT(*), SUM(r.reward), SUM(r.reward * r.reward)"
    " FROM rewards r JOIN decisions d ON d.seq = r.decision_seq"
    + ACTIVATION
    + f" WHERE r.reward IS NOT NULL AND {SERVED} GROUP BY d.control"
)
LIFT_SUMS_ARCHIVED = (
    LIFT_SUMS + " UNION ALL SELECT control, SUM(n), SUM(total), SUM(squares)"
    " FROM archived_customers GROUP BY control"
)
# A deferred decision counts as of its activation: these reads take immediate decisions from
# ``decisions`` and activated ones, at their activation's time, from ``activations``.
_ACTIVATED = " FROM activations a JOIN decisions d ON d.seq = a.decision_seq"
INCENTIVE_TIMES = (
    "SELECT customer_id, ts_us, action FROM decisions WHERE ts_us > ? AND action != ?"
    " AND NOT control AND NOT deferred ORDER BY seq"
)
ACTIVATED_INCENTIVE_TIMES = (
    "SELECT d.customer_id, a.ts_us, d.action" + _ACTIVATED + " WHERE a.ts_us > ? AND d.action != ?"
    " AND NOT d.control ORDER BY a.seq"
)
FIND_CATALOG = (
    "SELECT id FROM catalogs WHERE campaign = ? AND offer_ids = ? AND feature_names = ?"
    " ORDER BY id DESC LIMIT 1"
)
CATALOGS = "SELECT id, campaign, offer_ids, feature_names FROM catalogs"
GET_META = "SELECT value FROM meta WHERE key = ?"
SET_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?)"
    " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
SET_META_ONCE = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING"
FIRST_OPEN_AFTER = "SELECT seq, ts_us FROM decisions WHERE seq > ? ORDER BY seq LIMIT 1"
LAST_REWARD_SEQ = "SELECT MAX(seq) FROM rewards"
LATEST_MODEL_VERSION = "SELECT model_version FROM decisions ORDER BY seq DESC LIMIT 1"
OFFER_TOTALS = (
    "SELECT action, COUNT(*), SUM(cost) FROM decisions WHERE NOT deferred GROUP BY action"
    " UNION ALL SELECT d.action, COUNT(*), SUM(d.cost)" + _ACTIVATED + " GROUP BY d.action"
)
# One statement, so one snapshot: a compaction committing meanwhile is counted once, either as
# rows or as archived totals, never both or neither.
OFFER_TOTALS_ARCHIVED = OFFER_TOTALS + " UNION ALL SELECT action, n, cost FROM archived_offers"
# Decisions counted from a time on (the daily budgets): never archived, as retention keeps a day.
OFFER_TOTALS_SINCE = (
    "SELECT action, COUNT(*), SUM(cost) FROM decisions WHERE NOT deferred AND ts_us >= ?"
    " GROUP BY action UNION ALL SELECT d.action, COUNT(*), SUM(d.cost)"
    + _ACTIVATED
    + " WHERE a.ts_us >= ? GROUP BY d.action"
)
# The newest ? of each, then the newest ? of both by time (ties: by seq within their table).
RECENT_ACTIONS = (
    "SELECT action FROM (SELECT * FROM (SELECT action, ts_us, seq FROM decisions"
    " WHERE NOT deferred ORDER BY seq DESC LIMIT ?) AS made"
    " UNION ALL SELECT * FROM (SELECT d.action, a.ts_us, a.seq"
    + _ACTIVATED
    + " ORDER BY a.seq DESC LIMIT ?) AS activated) AS counted"
    " ORDER BY ts_us DESC, seq DESC LIMIT ?"
)
DECISIONS_AFTER = (
    "SELECT seq, customer_id, ts_us, action, cost FROM decisions WHERE seq > ? AND NOT deferred"
    " ORDER BY seq LIMIT ?"
)
ACTIVATIONS_AFTER = (
    "SELECT a.seq, d.customer_id, a.ts_us, d.action, d.cost"
    + _ACTIVATED
    + " WHERE a.seq > ? ORDER BY a.seq LIMIT ?"
)
MODELS = (
    "SELECT m.version, m.created_us, m.kind, m.origin, m.parent, m.catalog, m.policy_class,"
    " m.last_reward_seq, m.n_rewards, b.sha256 FROM models m"
    " LEFT JOIN model_blobs b ON b.version = m.version"
)
MODELS_BEFORE = MODELS + " WHERE m.version < ? ORDER BY m.version DESC LIMIT ?"
MODELS_KEPT = MODELS + " WHERE b.sha256 IS NOT NULL ORDER BY m.version DESC"
MODEL = MODELS + " WHERE m.version = ?"
MODEL_BYTES = "SELECT model FROM model_blobs WHERE version = ?"
MODEL_SHA = "SELECT sha256 FROM model_blobs WHERE version = ?"
LAST_MODEL = "SELECT MAX(version) FROM models"
INSERT_MODEL = insert_sql("models", MODEL_COLUMNS)
INSERT_MODEL_BLOB = "INSERT INTO model_blobs (version, sha256, model) VALUES (?, ?, ?)"
# The bytes kept forever: every promoted and rollback version and the version live before each
# (its parent); of the others (initial, learned) the newest ``?`` that still have bytes.
PRUNE_MODEL_BLOBS = (
    "DELETE FROM model_blobs WHERE version IN ("
    " SELECT m.version FROM models m JOIN model_blobs b ON b.version = m.version"
    " WHERE m.kind IN ('initial', 'learned')"
    " AND m.version NOT IN (SELECT parent FROM models"
    "  WHERE kind IN ('promoted', 'rollback') AND parent IS NOT NULL)"
    " AND m.version NOT IN (SELECT k.version FROM model_blobs k JOIN models km"
    "  ON km.version = k.version WHERE km.kind IN ('initial', 'learned')"
    "  ORDER BY k.version DESC LIMIT ?))"
)


def stale_message(location: str, expected: int, found: int) -> str:
    """What a fenced publish says when another learner published first."""
    return (
        f"{location}: expected v{expected} to be the newest model version (this learner's "
        f"last), got v{found}: another learner published since; nothing was stored"
    )


def sha256(blob: bytes) -> str:
    """Hex SHA-256 of model bytes (what ``model_blobs.sha256`` holds)."""
    return hashlib.sha256(blob).hexdigest()


# Appends number a table's rows from its largest seq and a rolled-back batch leaves no gap, so the
# largest seq is the count of every row ever appended: O(log n), not a table scan (metrics scrape
# this while decisions run). A compaction deletes older rows, never the newest decision or
# reward (which would let a seq be given twice), so the count still includes the archived rows.
# Rejected rewards keep their running total in meta (reward_errors holds only a sample); a store
# without that total has none yet, or is an older one opened read-only, with a reward_errors row
# per report.
# Deferred decisions neither activated nor lapsed are counted the same way, in meta: added to by
# the decisions' transaction, taken from by the activation's and by the lapse's (a scan of the
# deferred decisions would grow with the journal).
ERROR_TOTAL_KEY = "reward_errors_total"
INACTIVE_KEY = "inactive_decisions"
COUNTS = (
    "SELECT (SELECT MAX(seq) FROM decisions), (SELECT MAX(seq) FROM rewards),"
    " COALESCE((SELECT CAST(value AS BIGINT) FROM meta WHERE key = ?),"
    " (SELECT MAX(seq) FROM reward_errors)), (SELECT MAX(seq) FROM activations),"
    " (SELECT CAST(value AS BIGINT) FROM meta WHERE key = ?)"
)

# Idempotent requests. A request's decisions got consecutive seqs in one transaction (both
# backends number a transaction's rows so), read back as one range of the primary key.
REQUEST_COLUMNS: tuple[str, ...] = (*RequestRow._fields, "decision_seqs")
INSERT_REQUEST = insert_sql("requests", REQUEST_COLUMNS)
FIND_REQUEST = (
    f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE campaign = ? AND request_id = ?"
)
REQUEST_DECISIONS = (
    f"SELECT seq, {', '.join(DECISION_COLUMNS)} FROM decisions WHERE seq >= ? AND seq <= ?"
)
PRUNE_REQUESTS = "DELETE FROM requests WHERE ts_us < ?"
REQUEST_RULE = "request ids and decision ids are unique"  # what a DuplicateError says

# Rejected rewards: one count per (period, reason), its new value returned so the writer knows
# how many samples the period still has room for; the total in meta grows by the batch.
COUNT_ERRORS = (
    "INSERT INTO reward_error_counts (period_us, error, n) VALUES (?, ?, ?)"
    " ON CONFLICT (period_us, error) DO UPDATE SET n = reward_error_counts.n + excluded.n"
    " RETURNING n"
)
ADD_TO_META = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value ="
    " CAST(CAST(meta.value AS BIGINT) + CAST(excluded.value AS BIGINT) AS TEXT)"
)  # a running total in meta, added to (a negative number takes from it)
ADD_ERROR_TOTAL = ADD_TO_META
# Stores written before errors were counted hold one reward_errors row per report: counted once,
# when such a store is first opened for writing.
HAS_ERROR_COUNTS = "SELECT 1 FROM reward_error_counts LIMIT 1"
LEGACY_ERRORS = "SELECT COUNT(*) FROM reward_errors"
MIGRATE_ERRORS = (
    "INSERT INTO reward_error_counts (period_us, error, n)"
    " SELECT (ts_us / ?) * ?, error, COUNT(*) FROM reward_errors GROUP BY 1, 2"
)


def request_params(request: RequestRow, seqs: Sequence[int]) -> tuple[Any, ...]:
    """The parameters of :data:`INSERT_REQUEST` for a request whose decisions got ``seqs``."""
    return (*request, json.dumps(list(seqs)))


# Compaction (engine.journal.compact). What it must keep, in one snapshot: the oldest of the
# newest N decisions (the traffic window), the least cursor recovery could restart the learner
# from (any version with kept bytes: it falls back to older ones), the newest reward (never
# deleted: see COUNTS) and the oldest stored request (its decisions are read back on a retry).
RETENTION_BOUNDS = (
    "SELECT (SELECT seq FROM decisions ORDER BY seq DESC LIMIT 1 OFFSET ?),"
    " (SELECT MIN(m.last_reward_seq) FROM models m JOIN model_blobs b ON b.version = m.version),"
    " (SELECT MAX(seq) FROM rewards), (SELECT MIN(ts_us) FROM requests),"
    " (SELECT seq FROM activations ORDER BY seq DESC LIMIT 1 OFFSET ?)"
)
# The rows of an ArchiveCut: every statement of a step selects them with the same clause. A cut
# holds closed decisions served or not (a lapsed one: deferred, never activated); only served
# ones reach the archive's files and totals, the others are deleted (they were not delivered).
# An activated decision counts from its activation (caps read it by that time, the traffic
# window rebuilds from the newest activations too), so its activation bounds it as well.
_CUT = (
    " FROM decisions d JOIN rewards r ON r.decision_seq = d.seq"
    + ACTIVATION
    + " WHERE d.seq > ? AND d.seq <= ? AND COALESCE(a.ts_us, d.ts_us) < ? AND r.seq <= ?"
    " AND (a.seq IS NULL OR a.seq < ?) AND d.catalog IN ({})"
)
ARCHIVABLE = EXPORTED + _CUT + " ORDER BY d.seq LIMIT ?"
CUT_SPAN = (
    f"SELECT COUNT(*), MIN(r.seq), MAX(r.seq), SUM(CASE WHEN {SERVED} THEN 0 ELSE 1 END)" + _CUT
)
ARCHIVE_OFFERS = (
    "INSERT INTO archived_offers (action, n, cost) SELECT d.action, COUNT(*), SUM(d.cost)"
    + _CUT
    + f" AND {SERVED} GROUP BY d.action"
    " ON CONFLICT (action) DO UPDATE SET n = archived_offers.n + excluded.n,"
    " cost = archived_offers.cost + excluded.cost"
)
ARCHIVE_CUSTOMERS = (
    "INSERT INTO archived_customers (customer_id, control, n, total, squares)"
    " SELECT d.customer_id, d.control, COUNT(*), SUM(r.reward), SUM(r.reward * r.reward)"
    + _CUT
    + f" AND r.reward IS NOT NULL AND {SERVED} GROUP BY d.customer_id, d.control"
    " ON CONFLICT (customer_id, control) DO UPDATE SET n = archived_customers.n + excluded.n,"
    " total = archived_customers.total + excluded.total,"
    " squares = archived_customers.squares + excluded.squares"
)
# Activations leave with their decisions, before them (the cut is read through the decisions),
# except the newest activation: new activation seqs are numbered from it (as for decisions).
DELETE_CUT_ACTIVATIONS = (
    "DELETE FROM activations WHERE decision_id IN (SELECT d.decision_id" + _CUT + ")"
    " AND seq < (SELECT MAX(seq) FROM activations)"
)
DELETE_CUT_DECISIONS = "DELETE FROM decisions WHERE seq IN (SELECT d.seq" + _CUT + ")"
# Then their rewards: every other reward's decision is still stored (a reward is only appended
# for a stored decision, and compaction deletes both in one transaction), so within the cut's
# reward seqs the rewards without a decision are exactly the cut's.
DELETE_CUT_REWARDS = (
    "DELETE FROM rewards WHERE seq >= ? AND seq <= ?"
    " AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.seq = rewards.decision_seq)"
)
ARCHIVED_DECISIONS = "SELECT SUM(n) FROM archived_offers"
DROPPED_KEY = "dropped_decisions"  # meta: lapsed decisions compactions deleted, not archived
ARCHIVED_CUSTOMERS = "SELECT control, customer_id, n, total FROM archived_customers"
# A step's intent: set only when no other step's is (a second compactor finishes the first's).
COMPACTION_KEY = "compaction"
SET_META_IF_ABSENT = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
DELETE_META = "DELETE FROM meta WHERE key = ?"


# Deferred activation (SQLJournal._activate): the state of each decision asked about, read in
# the activation's write transaction; a lapse checks that none of its decisions was activated.
ACTIVATION_STATE = (
    "SELECT d.decision_id, d.seq, d.ts_us, d.deferred, a.seq, r.source FROM decisions d"
    " LEFT JOIN rewards r ON r.decision_seq = d.seq" + ACTIVATION + " WHERE d.decision_id IN ({})"
)
ACTIVATED_AMONG = "SELECT decision_id FROM activations WHERE decision_id IN ({})"
INSERT_ACTIVATION = insert_sql("activations", ACTIVATION_COLUMNS)
ACTIVATION_RULE = "at most one activation per decision"
_IN_CHUNK = 500  # ids per IN (...) list (SQLite's host-parameter limit)


def cut_sql(sql: str, cut: ArchiveCut) -> str:
    """``sql`` (one of the statements over :data:`_CUT`) for ``cut``'s catalogs."""
    return sql.format(", ".join("?" * max(len(cut.catalogs), 1)))


def cut_params(cut: ArchiveCut) -> tuple[Any, ...]:
    """The parameters of :data:`_CUT` for ``cut`` (no catalog: none matches id 0)."""
    catalogs = cut.catalogs or (0,)
    return (
        cut.after_seq,
        cut.through_seq,
        cut.before_us,
        cut.reward_seq,
        cut.activation_seq,
        *catalogs,
    )


# Runs one statement (``?`` placeholders) in the caller's write transaction; returns its cursor.
Execute = Callable[[str, Sequence[Any]], Any]
_BOOLS = tuple(DECISION_COLUMNS.index(c) for c in ("explored", "control", "deferred"))
_DEFERRED = DECISION_COLUMNS.index("deferred")
_SOURCE = REWARD_COLUMNS.index("source")


def count_deferred(rows: Sequence[DecisionRow]) -> int:
    """How many of ``rows`` are deferred (C-level: no Python loop on the decide path)."""
    return sum(map(itemgetter(_DEFERRED), rows))


def lapsed_ids(rows: Sequence[RewardRow]) -> list[str]:
    """Decision ids of the lapses among ``rows`` (expiries of never-activated decisions)."""
    if LAPSED not in map(itemgetter(_SOURCE), rows):
        return []
    return [r.decision_id for r in rows if r.source == LAPSED]


def check_version(found: str | None, where: str) -> None:
    """Refuse a store whose schema version is not :data:`SCHEMA_VERSION` (None: version 1).

    Raises
    ------
    ConfigError
        Naming the store (``where``, with any password already removed), both versions and
        what to do: migrate an older store (naming what the migration adds), upgrade nbo for a
        newer one.
    """
    version = 1 if found is None else found
    if str(version) == str(SCHEMA_VERSION):
        return
    head = f"{where}: schema version {version}, this nbo expects {SCHEMA_VERSION}; "
    try:
        number: int | None = int(version)
    except ValueError:
        number = None
    if number is not None and number in MIGRATIONS:
        raise ConfigError(
            head + "migrate it first with `nbo journal migrate --journal URL` (or `--data-dir "
            f"DIR --campaign NAME`): it adds {migration_summary(number)} and changes no stored "
            "value"
        )
    if number is not None and number < SCHEMA_VERSION:
        raise ConfigError(
            head + f"this nbo has no migration from version {version} (open it with the nbo "
            "that wrote it and export it to Parquet)"
        )
    raise ConfigError(head + "it was written by a newer nbo: upgrade nbo to open it")


def _steps(start: int) -> list[tuple[str, str]]:
    """(statements, what they add) of each migration from version ``start`` to the current."""
    steps = []
    version = start
    while version != SCHEMA_VERSION:
        version, script, what = MIGRATIONS[version]
        steps.append((script, what))
    return steps


def migration_summary(start: int | str) -> str:
    """What migrating a store of version ``start`` adds, in words (``nbo journal migrate``)."""
    return "; ".join(dict.fromkeys(what for _, what in _steps(int(start))))


def migrations_from(found: str | None) -> list[str]:
    """The statements that bring a store of version ``found`` (None: 1) to
    :data:`SCHEMA_VERSION`, in order; empty when it is current.

    Raises
    ------
    ConfigError
        For a version nbo cannot migrate (see :func:`check_version`).
    """
    version = 1 if found is None else found
    if str(version) == str(SCHEMA_VERSION):
        return []
    try:
        start = int(version)
    except ValueError:
        start = SCHEMA_VERSION + 1
    if start not in MIGRATIONS:
        check_version(found, "journal")
    return [script for script, _ in _steps(start)]


class SQLJournal(ABC):
    """The reads of :class:`~engine.journal.base.JournalBackend` over the tables above, and the
    logic on top of them, written once for both SQL backends.

    A backend supplies :meth:`_rows` (every row of a query written with ``?`` placeholders) and
    :meth:`_scan` (the same, streamed), ``location`` (how messages name it, without secrets)
    and its driver's unique-violation error, and implements the writes, :meth:`lookup`,
    :meth:`checkpoint` and :meth:`close` itself.
    """

    location: str
    _unique_error: ClassVar[type[Exception]]
    migrated_from: str | None = None  #: the schema version a ``migrate=True`` open upgraded
    _archive_tables = False  # known to exist (they are never dropped)
    _TABLE_EXISTS: ClassVar[str]  # a row when the table named by the parameter exists
    _COLUMN_EXISTS: ClassVar[str]  # a row when the table (1st parameter) has the column (2nd)

    @contextmanager
    def _unique(self, rule: str) -> Iterator[None]:
        """A broken UNIQUE constraint as DuplicateError (the transaction was rolled back)."""
        try:
            yield
        except self._unique_error as exc:
            raise DuplicateError(
                f"{self.location}: expected {rule}, got {self._violation(exc)}; nothing was written"
            ) from exc

    def _violation(self, exc: Exception) -> str:
        return str(exc)

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of ``sql`` (``?`` placeholders)."""

    @abstractmethod
    def _scan(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        """The rows of ``sql`` (``?`` placeholders), streamed."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` in the meta table (committed)."""

    def _has_archive(self) -> bool:
        """Whether the store has the archive's tables (:data:`ARCHIVE_TABLES`; without them
        nothing was ever archived). Looked up again on each call until they are found: another
        process's first compaction step may create them while this one runs."""
        if not self._archive_tables:
            self._archive_tables = bool(self._rows(self._TABLE_EXISTS, (ARCHIVE_TABLE,)))
        return self._archive_tables

    def _check_version(self, where: str) -> None:
        """Refuse a store of another schema version (an unmarked one is version 1)."""
        check_version(self.get_meta(VERSION_KEY), where)

    def _migrate_store(self, execute: Execute, types: dict[str, str]) -> None:
        """In the caller's write transaction: apply the migrations from the stored schema
        version, then create whichever current table is still missing (CREATE ... IF NOT
        EXISTS); a column a migration adds is added only where missing. Sets
        :attr:`migrated_from` when a migration ran."""
        row = execute(GET_META, (VERSION_KEY,)).fetchone()
        found = None if row is None else str(row[0])
        steps = migrations_from(found)
        for script in [*steps, ALL_TABLES]:
            for statement in script.format(**types).split(";"):
                if not statement.strip():
                    continue
                added = _ADD_COLUMN.match(statement)
                if added and execute(self._COLUMN_EXISTS, added.groups()).fetchone():
                    continue
                execute(statement, ())
        if steps:
            self.migrated_from = found or "1"
            execute(SET_META, (VERSION_KEY, str(SCHEMA_VERSION)))

    def _note_deferred(self, execute: Execute, rows: Sequence[DecisionRow]) -> None:
        """In the decisions' write transaction: count their deferred ones as inactive."""
        deferred = count_deferred(rows)
        if deferred:
            execute(ADD_TO_META, (INACTIVE_KEY, str(deferred)))

    def _check_lapses(self, execute: Execute, ids: Sequence[str]) -> None:
        """In a write transaction that journals the lapses of ``ids`` (deferred decisions
        whose window passed without an activation), serialized with activations: refuse them
        all when one was activated meanwhile (the ledger looks again: its expiry is then the
        default reward's), else take them from the inactive count."""
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            found = execute(ACTIVATED_AMONG.format(", ".join("?" * len(chunk))), chunk)
            activated = found.fetchone()
            if activated is not None:
                raise DuplicateError(
                    f"{self.location}: expected the deferred decisions that lapse to have no "
                    f"activation, got {activated[0]} activated meanwhile; nothing was written"
                )
        execute(ADD_TO_META, (INACTIVE_KEY, str(-len(ids))))

    def _activate(
        self, execute: Execute, decision_ids: Sequence[str], ts_us: int, cutoff_us: int | None
    ) -> tuple[list[str], list[ActivationRow]]:
        """In the caller's write transaction (serialized with other activations and with
        lapses): the status of each id (see :data:`~engine.journal.records.
        ACTIVATION_STATUSES`) and the activation rows to insert; takes those from the inactive
        count. ``cutoff_us``: a decision made at or before it is past its reward window."""
        unique = list(dict.fromkeys(decision_ids))
        state: dict[str, tuple[Any, ...]] = {}  # id -> seq, ts_us, deferred, activation, source
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            sql = ACTIVATION_STATE.format(", ".join("?" * len(chunk)))
            for did, *fields in execute(sql, chunk).fetchall():
                state[str(did)] = tuple(fields)
        statuses: list[str] = []
        rows: list[ActivationRow] = []
        done: set[str] = set()
        for did in decision_ids:
            found = state.get(did)
            if found is None:
                statuses.append("unknown")
                continue
            seq, made_us, deferred, activation, source = found
            if not deferred:
                statuses.append("immediate")
            elif activation is not None or did in done:
                statuses.append("duplicate")
            elif source is not None or (cutoff_us is not None and int(made_us) <= cutoff_us):
                statuses.append("expired")
            else:
                statuses.append("activated")
                done.add(did)
                rows.append(ActivationRow(did, int(seq), ts_us))
        if rows:
            execute(ADD_TO_META, (INACTIVE_KEY, str(-len(rows))))
        return statuses, rows

    def _count_errors(self, execute: Execute, rows: Sequence[RewardError]) -> list[RewardError]:
        """In the caller's write transaction: add ``rows`` to their (period, reason) counts and
        to the total; return the rows to keep as samples (the first ERROR_SAMPLES of each)."""
        groups: dict[tuple[int, str], list[RewardError]] = {}
        for row in rows:
            period = row.ts_us // ERROR_PERIOD_US * ERROR_PERIOD_US
            groups.setdefault((period, row.error), []).append(row)
        samples: list[RewardError] = []
        for (period, error), items in groups.items():
            (total,) = execute(COUNT_ERRORS, (period, error, len(items))).fetchone()
            room = ERROR_SAMPLES - (int(total) - len(items))
            samples.extend(items[: max(room, 0)])
        execute(ADD_ERROR_TOTAL, (ERROR_TOTAL_KEY, str(len(rows))))
        return samples

    def _count_legacy_errors(self, execute: Execute) -> None:
        """In the caller's write transaction: count the reward_errors rows of a store written
        before rejected rewards were counted (once: afterwards the counts are not empty)."""
        if execute(HAS_ERROR_COUNTS, ()).fetchone() is not None:
            return
        (legacy,) = execute(LEGACY_ERRORS, ()).fetchone()
        if legacy:
            execute(MIGRATE_ERRORS, (ERROR_PERIOD_US, ERROR_PERIOD_US))
            execute(ADD_ERROR_TOTAL, (ERROR_TOTAL_KEY, str(legacy)))

    def find_request(self, campaign: str, request_id: str) -> StoredRequest | None:
        """The stored request and its decisions in the request's row order, or None."""
        found = self._rows(FIND_REQUEST, (campaign, request_id))
        if not found:
            return None
        *fields, stored_seqs = found[0]
        seqs = [int(s) for s in json.loads(stored_seqs)]
        by_seq: dict[int, DecisionRow] = {}
        if seqs:
            for seq, *row in self._rows(REQUEST_DECISIONS, (min(seqs), max(seqs))):
                for i in _BOOLS:  # SQLite keeps them as 0/1
                    row[i] = bool(row[i])
                by_seq[int(seq)] = DecisionRow._make(row)
        missing = [s for s in seqs if s not in by_seq]
        if missing:
            raise CorruptModelError(
                f"{self.location}: expected the decisions of request {request_id!r}, got none "
                f"with seq {missing[0]}"
            )
        return StoredRequest(RequestRow._make(fields), [by_seq[s] for s in seqs])

    def catalogs(self) -> dict[int, tuple[str, list[str], list[str]]]:
        """All catalogs: id -> (campaign, offer ids, feature names)."""
        return {int(i): (c, json.loads(o), json.loads(f)) for i, c, o, f in self._rows(CATALOGS)}

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        rows = self._rows(GET_META, (key,))
        return str(rows[0][0]) if rows else None

    # ------------------------------------------------------------------ the model registry
    def models(self, before: int | None = None, limit: int = 1000) -> list[StoredModel]:
        """Registry rows newest first: at most ``limit`` with a version below ``before``."""
        top = (1 << 62) if before is None else before
        return [_model(row) for row in self._rows(MODELS_BEFORE, (top, limit))]

    def models_with_bytes(self) -> list[StoredModel]:
        """Registry rows whose model bytes are kept, newest first."""
        return [_model(row) for row in self._rows(MODELS_KEPT)]

    def model(self, version: int) -> StoredModel | None:
        """The registry row of ``version``, or None."""
        rows = self._rows(MODEL, (version,))
        return _model(rows[0]) if rows else None

    def model_bytes(self, version: int) -> bytes | None:
        """The kept model bytes of ``version`` (None when pruned or never kept)."""
        rows = self._rows(MODEL_BYTES, (version,))
        return bytes(rows[0][0]) if rows else None

    @abstractmethod
    def _models_write(self) -> AbstractContextManager[tuple[Execute, int]]:
        """One write transaction of the model registry, as ``(execute, last)``: ``last`` is the
        newest stored version, and no other writer can add one before the commit."""

    def add_model(
        self,
        row: ModelRow,
        blob: ModelBlob = None,
        at_least: int = 0,
        expect_newest: int | None = None,
    ) -> int:
        """Add a model version numbered one above every stored one (and above ``at_least``),
        with its bytes when given (or a function of the new number that encodes them, called
        inside the transaction), in one transaction (:meth:`_models_write`); return its number.
        ``expect_newest``: see :meth:`~engine.journal.base.JournalBackend.add_model`."""
        with self._models_write() as (execute, last):
            if expect_newest is not None and last != expect_newest:
                raise StaleModelError(stale_message(self.location, expect_newest, last))
            version = max(last, at_least) + 1
            execute(INSERT_MODEL, (version, *row))
            if blob is not None:
                data = blob(version) if callable(blob) else blob
                execute(INSERT_MODEL_BLOB, (version, sha256(data), data))
            return version

    def _keep_model_bytes(self, execute: Execute, version: int, blob: bytes) -> bool:
        """In the caller's write transaction: keep ``blob`` as the bytes of ``version``; False
        when they are already kept, DuplicateError when other bytes are."""
        row = execute(MODEL_SHA, (version,)).fetchone()
        if row is None:
            execute(INSERT_MODEL_BLOB, (version, sha256(blob), blob))
            return True
        found = str(row[0])
        if found == sha256(blob):
            return False
        raise DuplicateError(
            f"{self.location}: expected the model bytes of v{version} to stay as stored "
            f"(sha256 {found[:12]}...), got other bytes; nothing was written"
        )

    def first_open_after(self, seq: int) -> tuple[int, int] | None:
        """(seq, ts_us) of the first decision after ``seq``, or None."""
        rows = self._rows(FIRST_OPEN_AFTER, (seq,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def due_for_expiry(
        self, after_seq: int, cutoff_us: int, limit: int
    ) -> tuple[list[StoredDecision], int]:
        """Unrewarded decisions after ``after_seq`` made at or before ``cutoff_us``.

        Decisions are scanned in seq order and the scan stops at the first decision made after
        the cutoff (the clock is assumed not to run backwards). Returns the due decisions and the
        seq the scan reached (every decision up to it is now rewarded or due).
        """
        due = []
        reached = after_seq
        for row in map(StoredDecision._make, self._rows(DUE, (after_seq, limit))):
            if row.ts_us > cutoff_us:
                break
            reached = int(row.seq)
            if row.reward_source is None:
                due.append(row)
        return due, reached

    def rewards_after(self, seq: int, batch: int = 4096) -> Iterator[list[StoredReward]]:
        """Rewards after reward ``seq``, in order, in batches of rows."""
        last = seq
        while rows := self._rows(REWARDS_AFTER, (last, batch)):
            last = int(rows[-1][0])
            yield list(map(StoredReward._make, rows))

    def outcomes_after(self, seq: int, batch: int = 4096) -> Iterator[list[Outcome]]:
        """Rewards after reward ``seq`` with what the lift monitor reads of their decisions,
        in order, in batches of rows (see :class:`~engine.journal.records.Outcome`)."""
        last = seq
        while rows := self._rows(OUTCOMES_AFTER, (last, batch)):
            last = int(rows[-1][0])
            yield [
                Outcome(int(q), str(c), bool(g), float(m or 0.0), r, w, str(v), str(a), int(t), k)
                for q, c, g, m, r, w, v, a, t, k in rows
            ]

    def last_reward_seq(self) -> int:
        """The largest reward seq (0 without rewards)."""
        return int(self._rows(LAST_REWARD_SEQ)[0][0] or 0)

    def latest_model_version(self) -> str | None:
        """Model version of the newest decision, or None."""
        rows = self._rows(LATEST_MODEL_VERSION)
        return str(rows[0][0]) if rows else None

    def offer_totals(self, since_us: int | None = None) -> dict[str, OfferTotals]:
        """Decisions and summed cost per chosen offer id, the archived ones included; with
        ``since_us``, of the decisions counted from then on."""
        totals: dict[str, tuple[int, float]] = {}
        if since_us is not None:
            rows = self._rows(OFFER_TOTALS_SINCE, (since_us, since_us))
        else:
            rows = self._rows(OFFER_TOTALS_ARCHIVED if self._has_archive() else OFFER_TOTALS)
        for action, n, money in rows:
            count, cost = totals.get(action, (0, 0.0))
            totals[action] = (count + int(n), cost + float(money or 0.0))
        return {a: OfferTotals(n, cost) for a, (n, cost) in totals.items()}

    def recent_actions(self, n: int) -> list[str]:
        """Chosen offer ids of the newest ``n`` counted decisions (immediate ones at their
        time, deferred ones at their activation's), oldest first."""
        return [a for (a,) in reversed(self._rows(RECENT_ACTIONS, (n, n, n)))]

    def decisions_after(self, seq: int, limit: int) -> list[tuple[int, str, int, str, float]]:
        """(seq, customer_id, ts_us, action, cost) of the next ``limit`` immediate decisions
        after ``seq``."""
        rows = self._rows(DECISIONS_AFTER, (seq, limit))
        return [(int(q), str(c), int(t), str(a), float(m or 0.0)) for q, c, t, a, m in rows]

    def activations_after(self, seq: int, limit: int) -> list[tuple[int, str, int, str, float]]:
        """(activation seq, customer_id, activation ts_us, action, cost) of the next ``limit``
        activations after activation ``seq``."""
        rows = self._rows(ACTIVATIONS_AFTER, (seq, limit))
        return [(int(q), str(c), int(t), str(a), float(m or 0.0)) for q, c, t, a, m in rows]

    def incentive_times(self, since_us: int, control_offer: str) -> Iterator[tuple[str, int, str]]:
        """(customer_id, ts_us, action) of counted decisions after ``since_us`` outside the
        control group whose offer is not ``control_offer``: immediate ones in seq order, then
        activated ones at their activation's time in activation order."""
        params = (since_us, control_offer)
        return chain(
            self._scan(INCENTIVE_TIMES, params), self._scan(ACTIVATED_INCENTIVE_TIMES, params)
        )

    def decisions_for_export(
        self, after_seq: int, limit: int, closed_only: bool = False
    ) -> list[ExportedDecision]:
        """Up to ``limit`` decisions after ``after_seq`` with their net rewards, in seq order."""
        sql = EXPORT.format(closed=EXPORT_CLOSED if closed_only else "")
        return list(map(ExportedDecision._make, self._rows(sql, (after_seq, limit))))

    def lift_sums(self) -> dict[bool, GroupSums]:
        """Count, sum and sum of squares of closed decisions' net rewards by control flag, the
        archived ones included."""
        sums: dict[bool, GroupSums] = {}
        for c, n, total, squares in self._rows(
            LIFT_SUMS_ARCHIVED if self._has_archive() else LIFT_SUMS
        ):
            if not n:
                continue
            before = sums.get(bool(c), GroupSums(0, 0.0, 0.0))
            sums[bool(c)] = GroupSums(
                before.n + int(n),
                before.total + float(total or 0.0),
                before.squares + float(squares or 0.0),
            )
        return sums

    # ------------------------------------------------------------------ retention
    def retention_bounds(self, keep_recent: int) -> RetentionBounds:
        """What a compaction must keep (see :class:`~engine.journal.records.RetentionBounds`)."""
        offset = max(keep_recent, 1) - 1
        recent, model, last, request, activation = self._rows(RETENTION_BOUNDS, (offset, offset))[0]
        return RetentionBounds(
            int(recent or 0),
            None if model is None else int(model),
            int(last or 0),
            None if request is None else int(request),
            int(activation or 0),
        )

    def archivable(self, cut: ArchiveCut, limit: int) -> list[ExportedDecision]:
        """At most ``limit`` of the decisions ``cut`` names, in seq order, with their rewards."""
        rows = self._rows(cut_sql(ARCHIVABLE, cut), (*cut_params(cut), limit))
        return list(map(ExportedDecision._make, rows))

    def archived_decisions(self) -> int:
        """Decisions a compaction moved to an archive (each with its reward)."""
        if not self._has_archive():
            return 0
        return int(self._rows(ARCHIVED_DECISIONS)[0][0] or 0)

    def archived_customers(self) -> Iterator[ArchivedCustomer]:
        """Per group and customer, the archived closed decisions with a net reward."""
        if not self._has_archive():
            return iter(())
        return (
            ArchivedCustomer(bool(c), str(customer), int(n), float(total))
            for c, customer, n, total in self._scan(ARCHIVED_CUSTOMERS, ())
        )

    def _begin_archive(self, execute: Execute, intent: str, types: dict[str, str]) -> str:
        """In the caller's write transaction: create the archive's tables if missing (a store
        of an older nbo), store ``intent`` unless another step's is stored; return the stored
        one."""
        for statement in ARCHIVE_TABLES.format(**types).split(";"):
            if statement.strip():
                execute(statement, ())
        execute(SET_META_IF_ABSENT, (COMPACTION_KEY, intent))
        return str(execute(GET_META, (COMPACTION_KEY,)).fetchone()[0])

    def _finish_archive(self, execute: Execute, intent: str, cut: ArchiveCut) -> bool:
        """In the caller's write transaction: add the cut's totals to the archived ones, delete
        its decisions, their activations and rewards and clear the intent; False (and nothing
        done) when ``intent`` is no longer the stored one (another process finished it).
        Lapsed decisions of the cut (deferred, never activated) are deleted without being added
        to the totals, counted in meta :data:`DROPPED_KEY`. A cut of no rows only clears the
        intent. Raises CorruptModelError, rolling everything back, when the rows are not the
        ``cut.rows`` the cut named when its file was written."""
        found = execute(GET_META, (COMPACTION_KEY,)).fetchone()
        if found is None or str(found[0]) != intent:
            return False
        params = cut_params(cut)
        n, low, high, unserved = execute(cut_sql(CUT_SPAN, cut), params).fetchone()
        if int(n or 0) != cut.rows:
            raise CorruptModelError(
                f"{self.location}: expected the {cut.rows} closed decisions a compaction step "
                f"archived to be in the journal still, got {int(n or 0)}; nothing was deleted"
            )
        execute(cut_sql(ARCHIVE_OFFERS, cut), params)
        execute(cut_sql(ARCHIVE_CUSTOMERS, cut), params)
        execute(cut_sql(DELETE_CUT_ACTIVATIONS, cut), params)
        decisions = int(execute(cut_sql(DELETE_CUT_DECISIONS, cut), params).rowcount)
        rewards = int(execute(DELETE_CUT_REWARDS, (low, high)).rowcount) if cut.rows else 0
        if decisions != cut.rows or rewards != cut.rows:
            raise CorruptModelError(
                f"{self.location}: expected to delete {cut.rows} decisions and their rewards, "
                f"got {decisions} and {rewards}; nothing was deleted"
            )
        if unserved:
            execute(ADD_TO_META, (DROPPED_KEY, str(int(unserved))))
        execute(DELETE_META, (COMPACTION_KEY,))
        return True

    def counts(self) -> dict[str, int]:
        """Numbers of decisions, rewards, pending decisions, rejected rewards (every one
        counted, not only the samples kept), inactive decisions (pending, deferred, not
        activated) and activations."""
        row = self._rows(COUNTS, (ERROR_TOTAL_KEY, INACTIVE_KEY))[0]
        n_dec, n_rew, n_err, n_act, n_inactive = (int(v or 0) for v in row)
        return {
            "decisions": n_dec,
            "rewards": n_rew,
            "pending": n_dec - n_rew,
            "reward_errors": n_err,
            "inactive": n_inactive,
            "activations": n_act,
        }


def _model(row: Sequence[Any]) -> StoredModel:
    version, created, kind, origin, parent, catalog, cls, seq, n, digest = row
    return StoredModel(
        int(version),
        int(created),
        str(kind),
        str(origin),
        None if parent is None else int(parent),
        int(catalog),
        str(cls),
        int(seq),
        int(n),
        None if digest is None else str(digest),
    )
