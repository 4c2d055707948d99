"""The embedded journal backend: one SQLite database (WAL mode) per campaign.

:class:`Journal` implements :class:`~engine.journal.base.JournalBackend`, whose docstrings state
the guarantees. The tables and the statements are shared with the PostgreSQL backend
(:mod:`engine.journal.schema`, which also does the reads); this module runs them on SQLite.

Tables
------
``catalogs``  one row per (campaign, offer ids, feature names) the engine ran with; decisions
              point at it, so a changed config never reinterprets old rows.
``decisions`` decision_id (unique), ts_us, customer_id, context (float64 bytes), eligible offer
              ids, chosen offer id, propensity, explored, control, model_version, cost, scores
              (float64 bytes in the catalog's offer order), reasons, catalog, deferred (journaled
              inactive: counts once activated).
``activations`` at most one per deferred decision (UNIQUE decision_id): when its offer was
              delivered. Its ``seq`` is the order other processes follow them in.
``rewards``   at most one per decision (UNIQUE decision_seq, the decision's ``seq``, which makes
              retries idempotent; joined to the decision by it):
              reported value, net reward, source ``reward`` or ``expired``. Its ``seq`` is the
              order in which the learner applies rewards; snapshots record the last one applied.
``reward_error_counts`` rejected rewards (unknown or expired ids) counted per reason and minute.
``reward_errors`` a bounded sample of those rejected reports (ERROR_SAMPLES per reason and
              minute), kept for audit.
``meta``      key/value pairs (encoder state, campaign name, schema version, the total of
              rejected rewards).
``requests``  decide requests with a client request id (campaign, request_id unique), their time,
              a hash of the request and the seqs of the decisions they made; stored in the
              decisions' transaction, pruned once their window passed.
``models``, ``model_blobs`` the model registry (see :mod:`engine.journal.registry`): one
              immutable row per model version, and the model bytes of the versions whose bytes
              are kept.

``archived_offers``, ``archived_customers`` the totals of the closed decisions a compaction
              moved to its Parquet archive (:mod:`engine.journal.compact`), per offer and per
              customer and group, added to by each compaction step's delete.

``requests``, ``reward_error_counts``, ``models`` and ``model_blobs`` are schema version 2's
(see :mod:`engine.journal.schema`), the archive's tables version 3's, ``activations`` and
``decisions.deferred`` version 4's; version 5 (this nbo's) keys the rewards on decision_seq.

The journal file and its ``-wal``/``-shm`` companions are created exclusively, owner-only, and
refused when they exist as a symlink or anything but a regular file (see
:mod:`engine.journal.files`). Everything above lives in that one file, the model registry's bytes
(``model_blobs``) included: the file's checks cover them, and nbo writes no model file of its
own beside the journal.

A journal this nbo creates has ``auto_vacuum=INCREMENTAL`` (set on the empty file before WAL
mode): pages a compaction frees go back to the file system with ``PRAGMA incremental_vacuum``
(:meth:`Journal.reclaim_space`) instead of a VACUUM that rewrites the file.

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
from engine.journal import schema
from engine.journal.base import DuplicateError, JournalBackend
from engine.journal.files import create_private, refuse_links
from engine.journal.leader import FileLeaderLock, LeaderLock, ProcessLeaderLock
from engine.journal.records import (
    ArchiveCut,
    DecisionRow,
    RequestRow,
    RewardError,
    RewardRow,
    StoredDecision,
)
from engine.journal.schema import (
    DECISION_COLUMNS,
    ERROR_COLUMNS,
    REWARD_COLUMNS,
    SCHEMA_VERSION,
    SQLITE_TYPES,
    VERSION_KEY,
    SQLJournal,
    count_deferred,
    insert_sql,
    lapsed_ids,
)

__all__ = ["DuplicateError", "Journal", "JournalBackend", "StoredDecision"]

_CHUNK_ROWS = 64  # rows per multi-row INSERT (decisions: 15 parameters each, rewards: 6)
_INSERT_DECISION = insert_sql("decisions", DECISION_COLUMNS)
_INSERT_DECISIONS_CHUNK = insert_sql("decisions", DECISION_COLUMNS, _CHUNK_ROWS)
_INSERT_REWARD = insert_sql("rewards", REWARD_COLUMNS)
_INSERT_REWARDS_CHUNK = insert_sql("rewards", REWARD_COLUMNS, _CHUNK_ROWS)
_INSERT_ERROR = insert_sql("reward_errors", ERROR_COLUMNS)
_INSERT_ACTIVATION = schema.INSERT_ACTIVATION
_LOOKUP = schema.STORED + " WHERE d.decision_id IN ({})"
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


class Journal(SQLJournal, JournalBackend):
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
    migrate : bool
        Bring an existing journal of an older schema version to the current one (new
        tables, columns and keys; no stored value changed) instead of refusing it. A journal this
        call creates is current anyway.
    cache_mib : int, optional
        The connection's page cache in MiB (SQLite's ``cache_size``; None keeps SQLite's 2 MiB;
        a campaign's ``[journal] cache_mib`` is 64 unless set),
        filled as pages are read. A reward's join reads random pages of the decisions and
        their indexes: with the default those reads went through the operating system and a
        64 MiB cache made the lookup of a 256-reward batch about 20% cheaper
        (docs/performance.md, "The reward path").

    Notes
    -----
    One connection shared by all threads and guarded by an internal lock; SQLite releases the GIL
    while it works, so readers in other threads keep running.
    """

    _unique_error = sqlite3.IntegrityError
    _TABLE_EXISTS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    _COLUMN_EXISTS = "SELECT 1 FROM pragma_table_info(?) WHERE name = ?"

    def __init__(
        self,
        path: str | Path,
        synchronous: str = "normal",
        readonly: bool = False,
        autocheckpoint: bool = True,
        migrate: bool = False,
        cache_mib: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.location = f"journal {self.path}"
        self.in_memory = str(path) == ":memory:"
        self._lock = threading.RLock()
        self._checkpointer: sqlite3.Connection | None = None
        self._page_bytes = 4096  # read from the file when the checkpointer connects
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
            self._check_version(self.location)
            return
        if not self.in_memory:
            _open_safely(self.path, create=True)
        try:
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            found = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'"
            ).fetchone()
            if found is None:
                # Only an empty file takes it, and only before WAL mode writes the header: a
                # compaction then gives its freed pages back with PRAGMA incremental_vacuum.
                self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal" and not self.in_memory:
                raise CorruptModelError(f"journal {self.path}: expected WAL mode, got {mode!r}")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            if cache_mib is not None:  # else SQLite's own 2 MiB
                self._db.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")  # negative: KiB
            if not autocheckpoint:
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            if found is None:  # a new journal: created at the current version
                self._db.executescript(schema.ALL_TABLES.format(**SQLITE_TYPES))
                self.set_meta(VERSION_KEY, str(SCHEMA_VERSION))
            else:
                self._db.executescript(schema.TABLES.format(**SQLITE_TYPES))
        except sqlite3.DatabaseError as exc:
            raise CorruptModelError(
                f"journal {self.path}: expected an nbo SQLite journal, got {exc}"
            ) from None
        if migrate:
            self._migrate()
        self._check_version(self.location)
        with self._write() as db:
            self._count_legacy_errors(db.execute)

    def _migrate(self) -> None:
        """Apply the migrations from the stored schema version, in one transaction, and create
        whichever current table is still missing (see SQLJournal._migrate_store)."""
        with self._write() as db:
            self._migrate_store(db.execute, SQLITE_TYPES)

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
                raise self._exhausted(exc) from exc

    def _exhausted(self, exc: sqlite3.OperationalError) -> ResourceExhaustedError:
        return ResourceExhaustedError(
            f"journal {self.path}: expected room to commit (free disk space, a writable "
            f"file), got {exc!s}; nothing was written"
        )

    def _insert_one(self, insert: str, row: tuple[Any, ...], rule: str) -> list[int]:
        """One row as one autocommit INSERT: a single statement is atomic, so BEGIN IMMEDIATE
        and COMMIT (two more statements) would only add work. Same errors as :meth:`_write`
        under :meth:`_unique`; returns the row's seq once committed."""
        with self._unique(rule), self._lock:
            try:
                return [int(self._db.execute(insert, row).lastrowid or 0)]
            except sqlite3.OperationalError as exc:
                raise self._exhausted(exc) from exc

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
            row = db.execute(schema.FIND_CATALOG, (campaign, offers, features)).fetchone()
            if row is not None:
                return int(row[0])
            cur = db.execute(
                "INSERT INTO catalogs (campaign, offer_ids, feature_names) VALUES (?, ?, ?)",
                (campaign, offers, features),
            )
            return int(cur.lastrowid or 0)

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing any earlier value."""
        with self._write() as db:
            db.execute(schema.SET_META, (key, value))

    def set_meta_once(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless one is stored; return the stored value."""
        with self._write() as db:
            db.execute(schema.SET_META_ONCE, (key, value))
            return str(db.execute(schema.GET_META, (key,)).fetchone()[0])

    def try_lead(self) -> LeaderLock | None:
        """The learner lock: a flock on ``<journal>.learner.lock`` (always granted in memory)."""
        if self.in_memory:
            return ProcessLeaderLock()
        return FileLeaderLock.acquire(self.path.with_name(self.path.name + ".learner.lock"))

    # ------------------------------------------------------------------ writes
    def append_decisions(self, rows: Sequence[DecisionRow]) -> list[int]:
        """Insert decisions in one transaction; return their seq numbers once committed."""
        rule = "decision ids are unique"
        if not count_deferred(rows):
            return self._append(rows, _INSERT_DECISION, _INSERT_DECISIONS_CHUNK, rule)
        with self._unique(rule), self._write() as db:  # with the inactive count
            last = _insert(db, _INSERT_DECISION, _INSERT_DECISIONS_CHUNK, rows)
            self._note_deferred(db.execute, rows)
        return _seqs(last, len(rows))

    def append_rewards(self, rows: Sequence[RewardRow]) -> list[int]:
        """Insert rewards in one transaction; return their seq numbers (the learner's order)
        once committed."""
        rule = "at most one reward per decision"
        lapses = lapsed_ids(rows)
        if not lapses:
            return self._append(rows, _INSERT_REWARD, _INSERT_REWARDS_CHUNK, rule)
        with self._unique(rule), self._write() as db:  # BEGIN IMMEDIATE: after any activation
            self._check_lapses(db.execute, lapses)
            last = _insert(db, _INSERT_REWARD, _INSERT_REWARDS_CHUNK, rows)
        return _seqs(last, len(rows))

    def activate(
        self, decision_ids: Sequence[str], ts_us: int, cutoff_us: int | None = None
    ) -> list[str]:
        """Activate deferred decisions in one transaction; the status of each id (see
        :meth:`JournalBackend.activate`)."""
        if not decision_ids:
            return []
        with self._unique(schema.ACTIVATION_RULE), self._write() as db:
            statuses, rows = self._activate(db.execute, decision_ids, ts_us, cutoff_us)
            if rows:
                db.executemany(_INSERT_ACTIVATION, rows)
        return statuses

    def _append(
        self, rows: Sequence[tuple[Any, ...]], insert: str, chunk_insert: str, rule: str
    ) -> list[int]:
        """``rows`` in one transaction (one row as one autocommit INSERT), refused whole with
        DuplicateError naming ``rule``; their seqs once committed."""
        if not rows:
            return []
        if len(rows) == 1:
            return self._insert_one(insert, rows[0], rule)
        with self._unique(rule), self._write() as db:
            last = _insert(db, insert, chunk_insert, rows)
        return _seqs(last, len(rows))

    def append_request(self, request: RequestRow, rows: Sequence[DecisionRow]) -> list[int]:
        """Insert decisions and the request that made them in one transaction; return the
        decisions' seq numbers once committed."""
        with self._unique(schema.REQUEST_RULE), self._write() as db:
            last = _insert(db, _INSERT_DECISION, _INSERT_DECISIONS_CHUNK, rows) if rows else 0
            seqs = _seqs(last, len(rows))
            db.execute(schema.INSERT_REQUEST, schema.request_params(request, seqs))
            self._note_deferred(db.execute, rows)
        return seqs

    def prune_requests(self, before_us: int) -> int:
        """Delete requests made before ``before_us``; return how many."""
        with self._write() as db:
            return int(db.execute(schema.PRUNE_REQUESTS, (before_us,)).rowcount)

    def record_errors(self, rows: Sequence[RewardError]) -> None:
        """Count rejected rewards per reason and period; keep a bounded sample for audit."""
        if not rows:
            return
        with self._write() as db:
            db.executemany(_INSERT_ERROR, self._count_errors(db.execute, rows))

    # ------------------------------------------------------------------ the model registry
    @contextmanager
    def _models_write(self) -> Iterator[tuple[schema.Execute, int]]:
        """A write transaction (:meth:`_write`: BEGIN IMMEDIATE holds the only writer) and the
        newest stored model version, for :meth:`SQLJournal.add_model`."""
        with self._write() as db:
            yield db.execute, int(db.execute(schema.LAST_MODEL).fetchone()[0] or 0)

    def keep_model_bytes(self, version: int, blob: bytes) -> bool:
        """Keep the bytes of a stored version; False when they are already kept."""
        with self._write() as db:
            return self._keep_model_bytes(db.execute, version, blob)

    def prune_model_bytes(self, keep_learned: int) -> int:
        """Delete the bytes the registry need not keep (see schema.PRUNE_MODEL_BLOBS)."""
        with self._write() as db:
            return int(db.execute(schema.PRUNE_MODEL_BLOBS, (keep_learned,)).rowcount or 0)

    # ------------------------------------------------------------------ retention
    def begin_archive(self, intent: str) -> str:
        """Store a compaction step's intent unless another's is stored; return the stored one."""
        with self._write() as db:
            return self._begin_archive(db.execute, intent, SQLITE_TYPES)

    def finish_archive(self, intent: str, cut: ArchiveCut) -> bool:
        """Move the cut's decisions and rewards into the archived totals, in one transaction
        (see :meth:`JournalBackend.finish_archive`)."""
        with self._write() as db:
            return self._finish_archive(db.execute, intent, cut)

    def storage_bytes(self) -> int:
        """The journal file and its WAL, in bytes (in memory: its pages)."""
        if self.in_memory:
            pages = self._rows("PRAGMA page_count")[0][0]
            return int(pages) * int(self._rows("PRAGMA page_size")[0][0])
        total = 0
        for name in (self.path.name, self.path.name + "-wal"):
            try:
                total += self.path.with_name(name).stat().st_size
            except FileNotFoundError:
                pass
        return total

    def reclaim_space(self, full: bool = False) -> str:
        """Give freed pages back to the file system, then truncate the WAL.

        A journal created with ``auto_vacuum=INCREMENTAL`` (every journal this nbo creates)
        returns its free pages with ``PRAGMA incremental_vacuum``, a write transaction of
        its own. An older journal only reuses them for new rows until ``full``: VACUUM
        rewrites the file (all writers wait meanwhile, and it needs as much free disk as the
        journal takes) and turns incremental auto-vacuum on for the compactions after it.
        """
        with self._lock:
            db = self._db
            try:
                if full:
                    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    db.execute("VACUUM")
                    done = "VACUUM"
                elif int(db.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
                    # executescript steps it to the end; execute() frees one page per step
                    db.executescript("PRAGMA incremental_vacuum;")
                    done = "incremental_vacuum"
                else:
                    done = "none (auto_vacuum off: free pages are reused; --vacuum gives them back)"
                if not self.in_memory:
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.OperationalError as exc:
                raise self._exhausted(exc) from exc
        return done

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

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query: SQLite only and not part of :class:`JournalBackend`.

        For tests that inspect the file beside a running engine; engine code calls the named
        methods above, which every backend implements.
        """
        return self._rows(sql, params)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` for an intact file (SQLite only)."""
        return str(self._rows("PRAGMA integrity_check")[0][0])

    def checkpoint(self, wal_limit: int = 64 << 20, restart_bytes: int = 4 << 20) -> None:
        """Copy committed WAL content into the database file, and keep the WAL short.

        Runs on a connection of its own. The first pass is PASSIVE without the journal's lock,
        so decisions keep committing while it copies most frames. Under a steady stream of
        writes such a checkpoint never catches up (new frames arrive while it copies), and
        SQLite starts the WAL over only once every frame is in the database. So when the WAL
        holds more than ``restart_bytes``, a second PASSIVE pass runs under the journal's lock:
        it copies only the frames written during the first one (a few milliseconds), and the
        next write starts the WAL from its beginning. The WAL then holds about a checkpoint
        interval of writes. Should its file still pass ``wal_limit`` bytes (a burst), a
        TRUNCATE checkpoint under the lock gives the space back.

        This process's writers wait on the journal's lock, not inside SQLite: a writer that
        SQLite's busy handler makes wait sleeps in steps of up to 100 ms, which held decisions
        50-100 ms where the checkpoint took a few (docs/performance.md, "Stalls").
        """
        if self.in_memory:
            return
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._page_bytes = int(self._checkpointer.execute("PRAGMA page_size").fetchone()[0])
        frames = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        if frames * self._page_bytes > restart_bytes:
            with self._lock:
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            size = wal.stat().st_size
        except OSError:
            return
        if size > wal_limit:
            with self._lock:
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
