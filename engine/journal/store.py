"""The durable decision/reward journal: one SQLite database (WAL mode) per campaign.

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
``reward_errors`` rejected rewards (unknown or expired ids), kept for audit.
``meta``      key/value pairs (encoder state, campaign name).

Every write commits before the method returns. In WAL mode with ``synchronous=NORMAL`` a commit
survives a crash of the process (kill -9); ``synchronous=FULL`` also survives power loss at the
cost of an fsync per commit.

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> j = Journal(os.path.join(d, "renewal.journal.sqlite"))
>>> cat = j.catalog("renewal", ["none", "gift"], ["bias"])
>>> seqs = j.append_decisions([("d1", 1_000_000, "c1", b"", "none,gift", "gift", 0.5, 0, 0,
...                             "v1", 2.0, b"", None, cat)])
>>> j.lookup(["d1"])["d1"].action
'gift'
>>> j.close()
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

from engine.errors import CorruptModelError, ResourceExhaustedError

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
"""

_INSERT_DECISION = (
    "INSERT INTO decisions (decision_id, ts_us, customer_id, context, eligible, action, propensity,"
    " explored, control, model_version, cost, scores, reasons, catalog)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_REWARD = (
    "INSERT INTO rewards (decision_id, decision_seq, ts_us, value, reward, source)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_LOOKUP = (
    "SELECT d.decision_id, d.seq, d.ts_us, d.customer_id, d.context, d.action, d.propensity,"
    " d.control, d.cost, r.source, r.reward FROM decisions d"
    " LEFT JOIN rewards r ON r.decision_id = d.decision_id WHERE d.decision_id IN ({})"
)
_CHUNK_ROWS = 64  # rows per multi-row INSERT (decisions: 14 parameters each, rewards: 6)


def _multi_row(insert: str, n_rows: int) -> str:
    """The single-row INSERT ``insert`` repeated over ``n_rows`` rows of VALUES."""
    head, values = insert.split(" VALUES ")
    return f"{head} VALUES " + ", ".join([values] * n_rows)


_INSERT_DECISIONS_CHUNK = _multi_row(_INSERT_DECISION, _CHUNK_ROWS)
_INSERT_REWARDS_CHUNK = _multi_row(_INSERT_REWARD, _CHUNK_ROWS)
# SQLite's default limit on host parameters is 32766 (999 before 3.32); stay well under it.
_CHUNK = 500


class StoredDecision(NamedTuple):
    """A decision as the journal holds it, with its reward status."""

    decision_id: str
    seq: int
    ts_us: int
    customer_id: str
    context: bytes
    action: str
    propensity: float
    control: int
    cost: float
    reward_source: str | None
    reward: float | None


def _insert(
    db: sqlite3.Connection, insert: str, chunk_insert: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows``: whole chunks as multi-row INSERTs (one statement step per chunk instead
    of one per row), the rest row by row. The caller holds the transaction."""
    full = len(rows) - len(rows) % _CHUNK_ROWS
    for start in range(0, full, _CHUNK_ROWS):
        db.execute(chunk_insert, list(chain.from_iterable(rows[start : start + _CHUNK_ROWS])))
    if full < len(rows):
        db.executemany(insert, rows[full:])


def _create_private(path: Path) -> None:
    # SQLite gives its -wal and -shm files the database file's permissions: owner-only.
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def _rollback(db: sqlite3.Connection) -> None:
    # SQLite has already rolled back a transaction whose COMMIT failed on a full disk; a second
    # ROLLBACK would raise "no transaction is active" and hide the real error.
    if db.in_transaction:
        db.execute("ROLLBACK")


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _writes(method: _Method) -> _Method:
    """Turn SQLite's failures to write (a full disk, an I/O error, a read-only file) into one
    clear ResourceExhaustedError naming the journal; the transaction was rolled back."""

    @functools.wraps(method)
    def write(self: Journal, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise ResourceExhaustedError(
                f"journal {self.path}: expected room to commit (free disk space, a writable "
                f"file), got {exc!s}; nothing was written"
            ) from exc

    return cast(_Method, write)


class Journal:
    """A campaign's journal file.

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
            _create_private(self.path)
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
        except sqlite3.DatabaseError as exc:
            raise CorruptModelError(
                f"journal {self.path}: expected an nbo SQLite journal, got {exc}"
            ) from None

    # ------------------------------------------------------------------ catalogs and meta
    @_writes
    def catalog(self, campaign: str, offer_ids: Sequence[str], feature_names: Sequence[str]) -> int:
        """Id of the catalog row for this campaign, offers and features (added if new)."""
        offers = json.dumps(list(offer_ids))
        features = json.dumps(list(feature_names))
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM catalogs WHERE campaign = ? AND offer_ids = ? AND feature_names = ?"
                " ORDER BY id DESC LIMIT 1",
                (campaign, offers, features),
            ).fetchone()
            if row is not None:
                return int(row[0])
            cur = self._db.execute(
                "INSERT INTO catalogs (campaign, offer_ids, feature_names) VALUES (?, ?, ?)",
                (campaign, offers, features),
            )
            return int(cur.lastrowid or 0)

    def catalogs(self) -> dict[int, tuple[str, list[str], list[str]]]:
        """All catalogs: id -> (campaign, offer ids, feature names)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, campaign, offer_ids, feature_names FROM catalogs"
            ).fetchall()
        return {int(i): (c, json.loads(o), json.loads(f)) for i, c, o, f in rows}

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @_writes
    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ writes
    @_writes
    def append_decisions(self, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """Insert decisions in one transaction; return their seq numbers once committed."""
        with self._lock:
            db = self._db
            if len(rows) == 1:
                cur = db.execute(_INSERT_DECISION, rows[0])
                return [int(cur.lastrowid or 0)]
            db.execute("BEGIN IMMEDIATE")
            try:
                _insert(db, _INSERT_DECISION, _INSERT_DECISIONS_CHUNK, rows)
                last = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        # Rows of one transaction get consecutive rowids: the table only ever grows at its end.
        return list(range(last - len(rows) + 1, last + 1))

    @_writes
    def append_rewards(self, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """Insert rewards (decision_id, decision_seq, ts_us, value, reward, source) in one
        transaction; return their seq numbers (the learner's order) once committed."""
        if not rows:
            return []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                _insert(db, _INSERT_REWARD, _INSERT_REWARDS_CHUNK, rows)
                last = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        return list(range(last - len(rows) + 1, last + 1))

    @_writes
    def record_errors(self, rows: Sequence[tuple[int, str, float | None, str]]) -> None:
        """Keep rejected rewards (ts_us, decision_id, value, error) for audit."""
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO reward_errors (ts_us, decision_id, value, error)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                _rollback(self._db)
                raise

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
                    out[row[0]] = StoredDecision(*row)
        return out

    def first_open_after(self, seq: int) -> tuple[int, int] | None:
        """(seq, ts_us) of the first decision after ``seq``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, ts_us FROM decisions WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def due_for_expiry(
        self, after_seq: int, cutoff_us: int, limit: int
    ) -> tuple[list[StoredDecision], int]:
        """Unrewarded decisions after ``after_seq`` made at or before ``cutoff_us``.

        Decisions are scanned in seq order and the scan stops at the first decision made after
        the cutoff (the clock is assumed not to run backwards). Returns the due decisions and the
        seq the scan reached (every decision up to it is now rewarded or due).
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT d.decision_id, d.seq, d.ts_us, d.customer_id, d.context, d.action,"
                " d.propensity, d.control, d.cost, r.source, r.reward FROM decisions d"
                " LEFT JOIN rewards r ON r.decision_id = d.decision_id"
                " WHERE d.seq > ? ORDER BY d.seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        due = []
        reached = after_seq
        for row in rows:
            if row[2] > cutoff_us:
                break
            reached = int(row[1])
            if row[9] is None:
                due.append(StoredDecision(*row))
        return due, reached

    def rewards_after(self, seq: int, batch: int = 4096) -> Iterator[list[tuple[Any, ...]]]:
        """Rewards after reward ``seq``, in order, in batches of rows (reward_seq, context bytes,
        action id, propensity, reward or None, catalog)."""
        last = seq
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT r.seq, d.context, d.action, d.propensity, r.reward, d.catalog"
                    " FROM rewards r JOIN decisions d ON d.seq = r.decision_seq"
                    " WHERE r.seq > ? ORDER BY r.seq LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            yield rows

    def last_reward_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(seq) FROM rewards").fetchone()
        return int(row[0] or 0)

    def iterate(
        self, sql: str, params: Sequence[Any] = (), batch: int = 65536
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of a read-only query, fetched in batches (bounded memory for big scans).

        Holds the journal's lock until exhausted: for start-up and offline tools.
        """
        with self._lock:
            cursor = self._db.execute(sql, params)
            while True:
                rows = cursor.fetchmany(batch)
                if not rows:
                    return
                yield from rows

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (used by exports, reports and recovery)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def counts(self) -> dict[str, int]:
        """Numbers of decisions, rewards, pending decisions and rejected rewards."""
        # Rows are never deleted, so the largest rowid is the count: O(log n), not a table scan
        # (metrics scrape this while decisions wait for the lock).
        with self._lock:
            n_dec = self._db.execute("SELECT MAX(seq) FROM decisions").fetchone()[0] or 0
            n_rew = self._db.execute("SELECT MAX(seq) FROM rewards").fetchone()[0] or 0
            n_err = self._db.execute("SELECT MAX(seq) FROM reward_errors").fetchone()[0] or 0
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
