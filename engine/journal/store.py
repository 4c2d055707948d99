"""The embedded journal backend: one SQLite database (WAL mode) per campaign.

:class:`Journal` implements :class:`~engine.journal.base.JournalBackend`, whose docstrings state
the guarantees; every SQL statement against the journal's schema is in this module.

Tables
------
``catalogs``  one row per (campaign, offer ids, feature names) the engine ran with; decisions
              point at it, so a changed config never reinterprets old rows.
``decisions`` decision_id (unique), ts_us, customer_id, context (float64 bytes), eligible offer
              ids, chosen offer id, propensity, explored, control, model_version, cost, scores
              (float64 bytes in the catalog's offer order), reasons.
``rewards``   at most one per decision (UNIQUE decision_id, which makes retries idempotent):
              reported value, net reward, source ``reward`` or ``expired``. Its ``seq`` is the
              order in which the learner applies rewards; snapshots record the last one applied.
``requests``  decide requests with a client request id (campaign, request_id unique), their time,
              a hash of the request and the seqs of the decisions they made; stored in the
              decisions' transaction, pruned once their window passed.
``reward_error_counts`` rejected rewards (unknown or expired ids) counted per reason and minute.
``reward_errors`` a bounded sample of those rejected reports (ERROR_SAMPLES per reason and
              minute), kept for audit.
``meta``      key/value pairs (encoder state, campaign name, the total of rejected rewards).

The journal file and its ``-wal``/``-shm`` companions are created exclusively, owner-only, and
refused when they exist as a symlink or anything but a regular file (see
:mod:`engine.journal.files`).

Every write commits before the method returns. In WAL mode with ``synchronous=NORMAL`` a commit
survives a crash of the process (kill -9); ``synchronous=FULL`` also survives power loss at the
cost of an fsync per commit.

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> j = Journal(os.path.join(d, "renewal.journal.sqlite"))
>>> cat = j.catalog("renewal", ["none", "gift"], ["bias"])
>>> row = DecisionRow("d1", 1_000_000, "c1", b"", "none,gift", "gift", 0.5, False, False,
...                   "v1", 2.0, b"", None, cat)
>>> j.append_decisions([row])
[1]
>>> j.lookup(["d1"])["d1"].action
'gift'
>>> j.close()
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

from engine.errors import CorruptModelError, ResourceExhaustedError
from engine.journal.base import ERROR_PERIOD_US, ERROR_SAMPLES, DuplicateError, JournalBackend
from engine.journal.files import create_private, refuse_links
from engine.journal.records import (
    DecisionRow,
    ExportedDecision,
    GroupSums,
    OfferTotals,
    RequestRow,
    RewardError,
    RewardRow,
    StoredDecision,
    StoredRequest,
    StoredReward,
)

__all__ = ["DuplicateError", "Journal", "JournalBackend", "StoredDecision"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalogs (
    id INTEGER PRIMARY KEY,
    campaign TEXT NOT NULL,
    offer_ids TEXT NOT NULL,
    feature_names TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL UNIQUE,
    ts_us INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    context BLOB NOT NULL,
    eligible TEXT NOT NULL,
    action TEXT NOT NULL,
    propensity REAL NOT NULL,
    explored INTEGER NOT NULL,
    control INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    cost REAL NOT NULL,
    scores BLOB NOT NULL,
    reasons TEXT,
    catalog INTEGER NOT NULL REFERENCES catalogs(id)
);
CREATE TABLE IF NOT EXISTS rewards (
    seq INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL UNIQUE,
    decision_seq INTEGER NOT NULL,
    ts_us INTEGER NOT NULL,
    value REAL,
    reward REAL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reward_errors (
    seq INTEGER PRIMARY KEY,
    ts_us INTEGER NOT NULL,
    decision_id TEXT NOT NULL,
    value REAL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT NOT NULL,
    campaign TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    request_hash TEXT NOT NULL,
    decision_seqs TEXT NOT NULL,
    PRIMARY KEY (campaign, request_id)
);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (ts_us);
CREATE TABLE IF NOT EXISTS reward_error_counts (
    period_us INTEGER NOT NULL,
    error TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (period_us, error)
);
"""
_ERROR_TOTAL = "reward_errors_total"  # meta key: every rejected report, so counts() reads 1 row


def _insert_sql(table: str, columns: Sequence[str], n_rows: int = 1) -> str:
    """INSERT of ``n_rows`` rows of ``columns`` (a multi-row INSERT takes one statement step per
    chunk instead of one per row)."""
    values = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([values] * n_rows)


_CHUNK_ROWS = 64  # rows per multi-row INSERT (decisions: 14 parameters each, rewards: 6)
# Column lists come from the row types, so a row's field order is its column order.
_INSERT_DECISION = _insert_sql("decisions", DecisionRow._fields)
_INSERT_DECISIONS_CHUNK = _insert_sql("decisions", DecisionRow._fields, _CHUNK_ROWS)
_INSERT_REWARD = _insert_sql("rewards", RewardRow._fields)
_INSERT_REWARDS_CHUNK = _insert_sql("rewards", RewardRow._fields, _CHUNK_ROWS)
_INSERT_ERROR = _insert_sql("reward_errors", RewardError._fields)
_INSERT_REQUEST = _insert_sql("requests", (*RequestRow._fields, "decision_seqs"))
_FIND_REQUEST = (
    f"SELECT {', '.join(RequestRow._fields)}, decision_seqs FROM requests"
    " WHERE campaign = ? AND request_id = ?"
)
_REQUEST_DECISIONS = (
    f"SELECT seq, {', '.join(DecisionRow._fields)} FROM decisions WHERE seq IN ({{}})"
)
_COUNT_ERRORS = (
    "INSERT INTO reward_error_counts (period_us, error, n) VALUES (?, ?, ?)"
    " ON CONFLICT(period_us, error) DO UPDATE SET n = n + excluded.n RETURNING n"
)
_ADD_ERROR_TOTAL = (
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key)"
    " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT)"
)
# Journals written before errors were counted hold one reward_errors row per report: counted
# once, when such a journal is first opened for writing.
_MIGRATE_ERRORS = (
    "INSERT INTO reward_error_counts (period_us, error, n)"
    " SELECT (ts_us / ?) * ?, error, COUNT(*) FROM reward_errors GROUP BY 1, 2"
)
# Every read of stored decisions (lookup, expiry) selects StoredDecision's columns.
_STORED = (
    "SELECT d.decision_id, d.seq, d.ts_us, d.customer_id, d.context, d.action, d.propensity,"
    " d.control, d.cost, r.source, r.reward FROM decisions d"
    " LEFT JOIN rewards r ON r.decision_id = d.decision_id"
)
_LOOKUP = _STORED + " WHERE d.decision_id IN ({})"
_DUE = _STORED + " WHERE d.seq > ? ORDER BY d.seq LIMIT ?"
_EXPORT = (
    "SELECT d.seq, d.decision_id, d.ts_us, d.customer_id, d.context, d.action, d.propensity,"
    " r.reward, d.eligible, d.explored, d.control, d.model_version, d.catalog"
    " FROM decisions d LEFT JOIN rewards r ON r.decision_id = d.decision_id"
    " WHERE d.seq > ? {closed} ORDER BY d.seq LIMIT ?"
)
_REWARDS_AFTER = (
    "SELECT r.seq, d.context, d.action, d.propensity, r.reward, d.catalog"
    " FROM rewards r JOIN decisions d ON d.seq = r.decision_seq"
    " WHERE r.seq > ? ORDER BY r.seq LIMIT ?"
)
_LIFT_SUMS = (
    "SELECT d.control, COUNT(*), SUM(r.reward), SUM(r.reward * r.reward)"
    " FROM rewards r JOIN decisions d ON d.seq = r.decision_seq"
    " WHERE r.reward IS NOT NULL GROUP BY d.control"
)
_INCENTIVE_TIMES = (
    "SELECT customer_id, ts_us FROM decisions WHERE ts_us > ? AND action != ? AND control = 0"
    " ORDER BY seq"
)
# SQLite's default limit on host parameters is 32766 (999 before 3.32); stay well under it.
_CHUNK = 500
_SCAN_BATCH = 65536  # rows fetched at a time by the scans that stream


def _insert(
    db: sqlite3.Connection, insert: str, chunk_insert: str, rows: Sequence[tuple[Any, ...]]
) -> int:
    """Insert ``rows``: whole chunks as multi-row INSERTs, the rest row by row. The caller holds
    the transaction. Returns the rowid of the last row."""
    full = len(rows) - len(rows) % _CHUNK_ROWS
    for start in range(0, full, _CHUNK_ROWS):
        db.execute(chunk_insert, list(chain.from_iterable(rows[start : start + _CHUNK_ROWS])))
    if len(rows) - full == 1:
        return int(db.execute(insert, rows[full]).lastrowid or 0)
    if full < len(rows):
        db.executemany(insert, rows[full:])
    return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])


def _seqs(last: int, n: int) -> list[int]:
    # Rows of one transaction get consecutive rowids: the tables only ever grow at their end.
    return list(range(last - n + 1, last + 1))


_COMPANIONS = ("-wal", "-shm", "-journal")  # files SQLite opens beside the database


def _open_safely(path: Path, create: bool) -> None:
    """Refuse a journal (or a companion file SQLite would open) that is a symlink or not a
    regular file; create the journal exclusively, owner-only (SQLite gives its -wal and -shm
    files the database file's permissions)."""
    for companion in _COMPANIONS:
        refuse_links(path.with_name(path.name + companion), "journal")
    if create:
        create_private(path, "journal")
    else:
        refuse_links(path, "journal")


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite has already rolled back a transaction whose COMMIT failed on a full disk; a second
    # ROLLBACK would raise "no transaction is active" and hide the real error.
    if db.in_transaction:
        db.execute("ROLLBACK")


class Journal(JournalBackend):
    """A campaign's journal file (SQLite).

    Parameters
    ----------
    path : str or Path
        The SQLite file (created owner-only if missing). ``":memory:"`` keeps the journal in
        memory: nothing is durable (benchmarks measure the journal's cost with it).
    synchronous : {"normal", "full"}
        SQLite's ``synchronous`` pragma (see the module notes).
    readonly : bool
        Open an existing journal for reading only (exports and reports beside a running engine).
    autocheckpoint : bool
        Let SQLite copy the WAL into the database inside whichever commit crosses its threshold.
        False leaves that to :meth:`checkpoint`, called from a background thread, which keeps
        the fsync of a checkpoint out of the latency of decisions.

    Notes
    -----
    One connection shared by all threads and guarded by an internal lock; SQLite releases the GIL
    while it works, so readers in other threads keep running.
    """

    def __init__(
        self,
        path: str | Path,
        synchronous: str = "normal",
        readonly: bool = False,
        autocheckpoint: bool = True,
    ) -> None:
        self.path = Path(path)
        self.in_memory = str(path) == ":memory:"
        self._lock = threading.RLock()
        self._checkpointer: sqlite3.Connection | None = None
        if readonly:
            _open_safely(self.path, create=False)
            if not self.path.is_file():
                raise FileNotFoundError(f"journal {self.path}: no such file")
            try:
                self._db = sqlite3.connect(
                    f"file:{self.path}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=30.0,
                )
                self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()
            except sqlite3.DatabaseError as exc:
                raise CorruptModelError(
                    f"journal {self.path}: expected an nbo SQLite journal, got {exc}"
                ) from None
            return
        if not self.in_memory:
            _open_safely(self.path, create=True)
        try:
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal" and not self.in_memory:
                raise CorruptModelError(f"journal {self.path}: expected WAL mode, got {mode!r}")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            if not autocheckpoint:
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.executescript(_SCHEMA)
            self._count_legacy_errors()
        except sqlite3.DatabaseError as exc:
            raise CorruptModelError(
                f"journal {self.path}: expected an nbo SQLite journal, got {exc}"
            ) from None

    def _count_legacy_errors(self) -> None:
        db = self._db
        if db.execute("SELECT 1 FROM reward_error_counts LIMIT 1").fetchone() is not None:
            return
        legacy = db.execute("SELECT COUNT(*) FROM reward_errors").fetchone()[0]
        if legacy:
            with self._write() as tx:
                tx.execute(_MIGRATE_ERRORS, (ERROR_PERIOD_US, ERROR_PERIOD_US))
                tx.execute(_ADD_ERROR_TOTAL, (_ERROR_TOTAL, str(legacy)))

    # ------------------------------------------------------------------ catalogs and meta
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT under the journal's lock, rolled
        back on any exception. SQLite's failures to write (a full disk, an I/O error, a
        read-only file) become one clear ResourceExhaustedError naming the journal."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    _rollback(db)
                    raise
            except sqlite3.OperationalError as exc:
                raise ResourceExhaustedError(
                    f"journal {self.path}: expected room to commit (free disk space, a writable "
                    f"file), got {exc!s}; nothing was written"
                ) from exc

    @contextmanager
    def _unique(self, rule: str) -> Iterator[None]:
        """A broken UNIQUE constraint as DuplicateError (the transaction was rolled back)."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise DuplicateError(
                f"journal {self.path}: expected {rule}, got {exc!s}; nothing was written"
            ) from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _scan(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        """Rows of a query fetched in batches (bounded memory for big scans); holds the
        journal's lock until exhausted, so only start-up and offline tools use it."""
        with self._lock:
            cursor = self._db.execute(sql, params)
            while rows := cursor.fetchmany(_SCAN_BATCH):
                yield from rows

    # ------------------------------------------------------------------ catalogs and meta
    def catalog(self, campaign: str, offer_ids: Sequence[str], feature_names: Sequence[str]) -> int:
        """Id of the catalog row for this campaign, offers and features (added if new)."""
        offers = json.dumps(list(offer_ids))
        features = json.dumps(list(feature_names))
        with self._write() as db:
            row = db.execute(
                "SELECT id FROM catalogs WHERE campaign = ? AND offer_ids = ? AND feature_names = ?"
                " ORDER BY id DESC LIMIT 1",
                (campaign, offers, features),
            ).fetchone()
            if row is not None:
                return int(row[0])
            cur = db.execute(
                "INSERT INTO catalogs (campaign, offer_ids, feature_names) VALUES (?, ?, ?)",
                (campaign, offers, features),
            )
            return int(cur.lastrowid or 0)

    def catalogs(self) -> dict[int, tuple[str, list[str], list[str]]]:
        """All catalogs: id -> (campaign, offer ids, feature names)."""
        rows = self._rows("SELECT id, campaign, offer_ids, feature_names FROM catalogs")
        return {int(i): (c, json.loads(o), json.loads(f)) for i, c, o, f in rows}

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing any earlier value."""
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ writes
    def append_decisions(self, rows: Sequence[DecisionRow]) -> list[int]:
        """Insert decisions in one transaction; return their seq numbers once committed."""
        if not rows:
            return []
        with self._unique("decision ids are unique"), self._write() as db:
            last = _insert(db, _INSERT_DECISION, _INSERT_DECISIONS_CHUNK, rows)
        return _seqs(last, len(rows))

    def append_rewards(self, rows: Sequence[RewardRow]) -> list[int]:
        """Insert rewards in one transaction; return their seq numbers (the learner's order)
        once committed."""
        if not rows:
            return []
        with self._unique("at most one reward per decision"), self._write() as db:
            last = _insert(db, _INSERT_REWARD, _INSERT_REWARDS_CHUNK, rows)
        return _seqs(last, len(rows))

    def append_request(self, request: RequestRow, rows: Sequence[DecisionRow]) -> list[int]:
        """Insert decisions and the request that made them in one transaction; return the
        decisions' seq numbers once committed."""
        rule = "request ids and decision ids are unique"
        with self._unique(rule), self._write() as db:
            last = _insert(db, _INSERT_DECISION, _INSERT_DECISIONS_CHUNK, rows) if rows else 0
            seqs = _seqs(last, len(rows))
            db.execute(_INSERT_REQUEST, (*request, json.dumps(seqs)))
        return seqs

    def find_request(self, campaign: str, request_id: str) -> StoredRequest | None:
        """The stored request and its decisions in row order, or None."""
        with self._lock:
            found = self._db.execute(_FIND_REQUEST, (campaign, request_id)).fetchone()
            if found is None:
                return None
            seqs = json.loads(found[-1])
            by_seq: dict[int, DecisionRow] = {}
            for start in range(0, len(seqs), _CHUNK):
                chunk = seqs[start : start + _CHUNK]
                sql = _REQUEST_DECISIONS.format(",".join("?" * len(chunk)))
                for seq, *row in self._db.execute(sql, chunk):
                    row[7], row[8] = bool(row[7]), bool(row[8])  # explored, control
                    by_seq[seq] = DecisionRow._make(row)
        return StoredRequest(RequestRow._make(found[:-1]), [by_seq[s] for s in seqs])

    def prune_requests(self, before_us: int) -> int:
        """Delete requests made before ``before_us``; return how many."""
        with self._write() as db:
            return int(db.execute("DELETE FROM requests WHERE ts_us < ?", (before_us,)).rowcount)

    def record_errors(self, rows: Sequence[RewardError]) -> None:
        """Count rejected rewards per reason and period; keep a bounded sample for audit."""
        if not rows:
            return
        groups: dict[tuple[int, str], list[RewardError]] = {}
        for row in rows:
            period = row.ts_us // ERROR_PERIOD_US * ERROR_PERIOD_US
            groups.setdefault((period, row.error), []).append(row)
        with self._write() as db:
            samples: list[RewardError] = []
            for (period, error), items in groups.items():
                (total,) = db.execute(_COUNT_ERRORS, (period, error, len(items))).fetchone()
                room = ERROR_SAMPLES - (int(total) - len(items))
                samples.extend(items[: max(room, 0)])
            db.executemany(_INSERT_ERROR, samples)
            db.execute(_ADD_ERROR_TOTAL, (_ERROR_TOTAL, str(len(rows))))

    # ------------------------------------------------------------------ reads
    def lookup(self, decision_ids: Sequence[str]) -> dict[str, StoredDecision]:
        """Stored decisions by id (ids not in the journal are absent from the result)."""
        out: dict[str, StoredDecision] = {}
        unique = list(dict.fromkeys(decision_ids))
        with self._lock:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                sql = _LOOKUP.format(",".join("?" * len(chunk)))
                for row in self._db.execute(sql, chunk):
                    out[row[0]] = StoredDecision._make(row)
        return out

    def first_open_after(self, seq: int) -> tuple[int, int] | None:
        """(seq, ts_us) of the first decision after ``seq``, or None."""
        rows = self._rows(
            "SELECT seq, ts_us FROM decisions WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
        )
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
        for row in map(StoredDecision._make, self._rows(_DUE, (after_seq, limit))):
            if row.ts_us > cutoff_us:
                break
            reached = int(row.seq)
            if row.reward_source is None:
                due.append(row)
        return due, reached

    def rewards_after(self, seq: int, batch: int = 4096) -> Iterator[list[StoredReward]]:
        """Rewards after reward ``seq``, in order, in batches of rows."""
        last = seq
        while rows := self._rows(_REWARDS_AFTER, (last, batch)):
            last = int(rows[-1][0])
            yield list(map(StoredReward._make, rows))

    def last_reward_seq(self) -> int:
        """The largest reward seq (0 without rewards)."""
        return int(self._rows("SELECT MAX(seq) FROM rewards")[0][0] or 0)

    def latest_model_version(self) -> str | None:
        """Model version of the newest decision, or None."""
        rows = self._rows("SELECT model_version FROM decisions ORDER BY seq DESC LIMIT 1")
        return str(rows[0][0]) if rows else None

    def offer_totals(self) -> dict[str, OfferTotals]:
        """Decisions and summed cost per chosen offer id."""
        rows = self._rows("SELECT action, COUNT(*), SUM(cost) FROM decisions GROUP BY action")
        return {a: OfferTotals(int(n), float(money or 0.0)) for a, n, money in rows}

    def recent_actions(self, n: int) -> list[str]:
        """Chosen offer ids of the newest ``n`` decisions, oldest first."""
        rows = self._rows("SELECT action FROM decisions ORDER BY seq DESC LIMIT ?", (n,))
        return [a for (a,) in reversed(rows)]

    def incentive_times(self, since_us: int, control_offer: str) -> Iterator[tuple[str, int]]:
        """(customer_id, ts_us) of decisions after ``since_us`` outside the control group whose
        offer is not ``control_offer``, in seq order."""
        return self._scan(_INCENTIVE_TIMES, (since_us, control_offer))

    def decisions_for_export(
        self, after_seq: int, limit: int, closed_only: bool = False
    ) -> list[ExportedDecision]:
        """Up to ``limit`` decisions after ``after_seq`` with their net rewards, in seq order."""
        sql = _EXPORT.format(closed="AND r.reward IS NOT NULL" if closed_only else "")
        return list(map(ExportedDecision._make, self._rows(sql, (after_seq, limit))))

    def lift_sums(self) -> dict[bool, GroupSums]:
        """Count, sum and sum of squares of closed decisions' net rewards by control flag."""
        return {
            bool(c): GroupSums(int(n), float(total or 0.0), float(squares or 0.0))
            for c, n, total, squares in self._rows(_LIFT_SUMS)
        }

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query: SQLite only and not part of :class:`JournalBackend`.

        For tests that inspect the file beside a running engine; engine code calls the named
        methods above, which every backend implements.
        """
        return self._rows(sql, params)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for an intact file (SQLite only)."""
        return str(self._rows("PRAGMA integrity_check")[0][0])

    def counts(self) -> dict[str, int]:
        """Numbers of decisions, rewards, pending decisions and rejected rewards."""
        # Decisions and rewards are never deleted, so the largest rowid is the count: O(log n),
        # not a table scan (metrics scrape this while decisions wait for the lock); rejected
        # rewards keep their running total in meta.
        with self._lock:
            n_dec = self._db.execute("SELECT MAX(seq) FROM decisions").fetchone()[0] or 0
            n_rew = self._db.execute("SELECT MAX(seq) FROM rewards").fetchone()[0] or 0
            total = self._db.execute(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?", (_ERROR_TOTAL,)
            ).fetchone()
            if total is None:  # none yet, or an older journal opened read-only: a row each
                total = self._db.execute("SELECT MAX(seq) FROM reward_errors").fetchone()
            n_err = total[0] or 0
        return {
            "decisions": int(n_dec),
            "rewards": int(n_rew),
            "pending": int(n_dec) - int(n_rew),
            "reward_errors": int(n_err),
        }

    def checkpoint(self, wal_limit: int = 64 << 20) -> None:
        """Copy committed WAL content into the database file.

        Runs on a connection of its own, PASSIVE (never blocking writers), so decisions keep
        committing meanwhile. Under a steady stream of writes a passive checkpoint never lets
        the WAL start over, so once the WAL file passes ``wal_limit`` bytes a TRUNCATE
        checkpoint makes writers wait for the few frames left and resets it: the WAL stays
        bounded.
        """
        if self.in_memory:
            return
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            size = wal.stat().st_size
        except OSError:
            return
        if size > wal_limit:
            self._checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass
            self._db.close()
