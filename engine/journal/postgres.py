"""The shared journal backend: PostgreSQL, for several decide replicas (processes, machines) of
the same campaigns.

:class:`PostgresJournal` implements :class:`~engine.journal.base.JournalBackend` with psycopg 3
and passes the same contract suite as the SQLite backend; the tables, the statements and the
reads are shared with it (:mod:`engine.journal.schema`).

One schema per campaign
-----------------------
A campaign's tables live in the schema ``nbo_<campaign>`` of the database the URL names, so any
number of campaigns share one database, each with the SQLite backend's tables unchanged: the
same statements, seqs that count one campaign's rows (``counts`` stays a lookup of the largest
seq rather than a scan filtered by campaign), and a campaign that can be granted, dumped or
dropped on its own (``DROP SCHEMA nbo_<campaign> CASCADE``).

Seq order is commit order
-------------------------
The learner reads "rewards after seq N", the expiry sweep "decisions after seq N", and both
remember the last N. A PostgreSQL sequence hands out numbers when a row is inserted, but
transactions commit in another order: a reader could see seq 11 committed, move past it, and
never see seq 10, committed a moment later by another replica. So every append to
``decisions``, ``rewards``, ``activations``, ``reward_errors`` (and ``catalogs``) first takes a
transaction-scoped advisory lock on that table (``pg_advisory_xact_lock``), then numbers its
rows from the table's largest seq, in a new statement (a new snapshot, which sees the previous
holder's commit). PostgreSQL releases the lock only after the commit is visible, so appends to
one table commit one after another, in seq order, and a reader can never skip a row. A rolled
back batch leaves no gap, so the largest seq is also the number of rows. The cost: appends to
one campaign's table wait for each other's commit (their WAL flush); one Engine already
serializes its appends, and batches keep the commits per second low.

An activation takes the ``activations`` lock (its rows are numbered the same way); a lapse (the
expiry of a deferred decision never activated) takes it too, after the ``rewards`` lock, so the
two are serialized and a decision is never both activated and lapsed. The count of inactive
decisions in ``meta`` is row-locked by the transactions that change it (decisions with deferred
rows, activations, lapses).

A request with a client request id is stored in its decisions' transaction (under the
decisions' lock); two replicas racing on one id serialize there, and the second breaks the
``requests`` primary key: DuplicateError, nothing of it stored, and it answers with the first
one's decisions. Rejected rewards add to per-(minute, reason) counts (``INSERT ... ON CONFLICT DO
UPDATE``, which row-locks the count) and keep their sample under the ``reward_errors`` lock.

Connections
-----------
A small pool (psycopg_pool): each call borrows a connection, so a metrics scrape does not wait
behind a commit, and a connection broken by a server restart is replaced by the pool instead of
failing every later call. Connections are in autocommit mode (a read is one statement, never a
transaction left open); every write is one explicit transaction with ``synchronous_commit =
on``: it returns only once PostgreSQL has flushed its commit record.

Failures: a server that cannot be reached at start raises ResourceExhaustedError naming the
host and the database within ``connect_timeout`` seconds; a write that cannot commit raises it
too, naming the journal; URLs are always shown without their password.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg_pool import ConnectionPool, PoolTimeout

from engine.errors import (
    ConfigError,
    JournalUnavailableError,
    NotFoundError,
    ResourceExhaustedError,
)
from engine.journal import records, schema
from engine.journal.backends import redact_url
from engine.journal.base import JournalBackend
from engine.journal.leader import LeaderLock
from engine.journal.schema import (
    DECISION_COLUMNS,
    ERROR_COLUMNS,
    POSTGRES_TYPES,
    REWARD_COLUMNS,
    SCHEMA_VERSION,
    VERSION_KEY,
    SQLJournal,
    count_deferred,
    lapsed_ids,
)

__all__ = ["PostgresJournal", "drop_campaign", "schema_name"]

CONNECT_TIMEOUT = 5.0  # seconds to reach the server, at start and for a new pooled connection
POOL_SIZE = 4
_NBO_LOCKS = 0x6E626F << 32  # "nbo" in the high half of every advisory lock key nbo takes
_DDL_LOCK = _NBO_LOCKS  # creating schemas and tables (no table has OID 0)
# The learner lock of a campaign: its models table's key with this bit set, so it never meets
# the transaction-scoped append lock of the table (a session lock on the same key would).
_LEADER_BIT = 1 << 31
KEEPALIVE_IDLE = 2  # seconds of silence before the server probes a leader's lock connection
_SCAN_BATCH = 65536
_LOOKUP = schema.pg(schema.STORED) + " WHERE d.decision_id = ANY(%s)"
_pg = lru_cache(maxsize=128)(schema.pg)
# Failures to reach the server or to commit (lost connection, disk full, read-only).
_UNAVAILABLE = (psycopg.OperationalError, pg_errors.ReadOnlySqlTransaction, PoolTimeout)
# The numbered column of each table an append lock orders.
_NUMBERED = {"catalogs": "id", "models": "version", "model_blobs": "version"}


def _executor(conn: psycopg.Connection[Any]) -> schema.Execute:
    """Runs a statement written with ``?`` placeholders on ``conn`` (in its transaction)."""
    return lambda sql, params: conn.execute(_pg(sql), params)


def _copy(
    conn: psycopg.Connection[Any],
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    last: int,
) -> None:
    """COPY ``rows`` into ``table`` numbered from ``last + 1``, in ``conn``'s transaction (which
    holds the table's append lock)."""
    if not rows:
        return
    statement = f"COPY {table} (seq, {', '.join(columns)}) FROM STDIN"
    with conn.cursor().copy(statement) as copy:
        for seq, row in enumerate(rows, last + 1):
            copy.write_row((seq, *row))


def schema_name(campaign: str) -> str:
    """The schema of a campaign's tables: ``nbo_<campaign>`` (at most 63 bytes)."""
    name = f"nbo_{campaign}"
    if len(name.encode()) > 63:
        raise ConfigError(
            f"campaign.name: expected at most 59 bytes for a PostgreSQL journal, got {campaign!r}"
        )
    return name


def _where(url: str) -> str:
    """``host:port, database db`` of a libpq URL (host and database also from ``?host=``)."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    host = params.get("host") or parts.hostname or "localhost"
    port = params.get("port") or (str(parts.port) if parts.port else "5432")
    database = params.get("dbname") or parts.path.lstrip("/") or parts.username or "(default)"
    return f"host {host} port {port}, database {database}"


def _message(exc: BaseException, url: str) -> str:
    """The first lines of a driver error, without the URL's password."""
    text = " ".join(str(exc).split())
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


class PostgresJournal(SQLJournal, JournalBackend):
    """A campaign's journal in a PostgreSQL database (see the module notes).

    Parameters
    ----------
    url : str
        ``postgresql://user@host:port/db`` (libpq parameters may follow ``?``).
    campaign : str
        Its tables are in the schema ``nbo_<campaign>``, created if missing.
    readonly : bool
        Read only (exports, reports): nothing is created and every write is refused.
    connect_timeout : float
        Seconds to reach the server.
    pool_size : int
        Most connections open at once.
    migrate : bool
        Bring a journal of an older schema version to the current one (new tables, columns
        and keys; no stored value changed) instead of refusing it. A journal this call
        creates is current anyway.

    Raises
    ------
    ResourceExhaustedError
        When the server cannot be reached within ``connect_timeout``.
    NotFoundError
        Read-only, when the database holds no journal of ``campaign``.
    ConfigError
        When the journal has another schema version.
    """

    _unique_error = pg_errors.UniqueViolation
    _TABLE_EXISTS = "SELECT 1 WHERE to_regclass(?) IS NOT NULL"  # in the search_path: the schema
    _COLUMN_EXISTS = (
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = ? AND column_name = ?"
    )

    def __init__(
        self,
        url: str,
        campaign: str,
        *,
        readonly: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
        pool_size: int = POOL_SIZE,
        migrate: bool = False,
    ) -> None:
        self.url = url
        self.campaign = campaign
        self.schema = schema_name(campaign)
        self.location = f"journal {redact_url(url)} (campaign {campaign})"
        self.readonly = readonly
        timeout = max(1, round(connect_timeout))
        self._keys = self._create(url, timeout, readonly, migrate)
        settings: list[pg_sql.SQL | pg_sql.Composed] = [
            pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(self.schema)),
            pg_sql.SQL("SET synchronous_commit TO on"),
        ]
        if readonly:
            settings.append(pg_sql.SQL("SET default_transaction_read_only TO on"))

        def configure(conn: psycopg.Connection[Any]) -> None:
            for statement in settings:
                conn.execute(statement)

        self._pool = ConnectionPool(
            url,
            kwargs={"autocommit": True, "connect_timeout": timeout},
            min_size=1,
            max_size=pool_size,
            configure=configure,
            timeout=float(timeout),
            open=False,
            name=f"nbo-journal-{campaign}",
        )
        try:
            self._pool.open(wait=True, timeout=float(timeout))
            self._check_version(self.location)
            if not readonly:  # under the reward_errors lock: one replica counts old rows
                with self._write("reward_errors") as (conn, _):
                    self._count_legacy_errors(_executor(conn))
        except BaseException:
            self._pool.close()
            raise

    def _create(self, url: str, timeout: int, readonly: bool, migrate: bool) -> dict[str, int]:
        """Reach the server, create the campaign's schema and tables (unless read-only; a new
        journal at the current version, an older one migrated when asked) and return the
        advisory lock key of each table."""
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout)
        except psycopg.Error as exc:
            raise JournalUnavailableError(
                f"{self.location}: expected a reachable PostgreSQL server ({_where(url)}), "
                f"got {_message(exc, url)}"
            ) from None
        try:
            with conn.transaction():
                found = conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                ).fetchone()
                if (readonly or migrate) and found is None:
                    raise NotFoundError(
                        f"{self.location}: expected a journal, got no schema {self.schema}"
                    )
                if not readonly:
                    # One creator at a time: concurrent CREATE ... IF NOT EXISTS can still clash.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                    ident = pg_sql.Identifier(self.schema)
                    conn.execute(pg_sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                    conn.execute(pg_sql.SQL("SET LOCAL search_path TO {}").format(ident))
                    new = not conn.execute(
                        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = %s AND c.relname = 'decisions'",
                        (self.schema,),
                    ).fetchone()
                    tables = schema.ALL_TABLES if new else schema.TABLES
                    _run_script(conn, tables)
                    if new:
                        conn.execute(_pg(schema.SET_META), (VERSION_KEY, str(SCHEMA_VERSION)))
                    elif migrate:  # and whichever current table is still missing
                        self._migrate_store(_executor(conn), POSTGRES_TYPES)
                rows = conn.execute(
                    "SELECT c.relname, c.oid::bigint FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relkind = 'r'",
                    (self.schema,),
                ).fetchall()
        except psycopg.Error as exc:
            raise ResourceExhaustedError(
                f"{self.location}: expected to create or open the journal's tables, got "
                f"{_message(exc, url)}"
            ) from None
        finally:
            conn.close()
        keys = {name: _NBO_LOCKS | oid for name, oid in rows}
        missing = set(schema.V1_TABLES) - set(keys)
        if missing:
            raise NotFoundError(f"{self.location}: expected a journal, got no {sorted(missing)}")
        return keys

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise JournalUnavailableError(
                f"{self.location}: expected a reachable server, got {_message(exc, self.url)}"
            ) from exc

    @contextmanager
    def _write(self, table: str | None = None) -> Iterator[tuple[psycopg.Connection[Any], int]]:
        """One write transaction, committed durably on exit and rolled back on any exception.

        With ``table``: holds the table's append lock and yields the table's largest seq (see
        the module notes); else yields 0.
        """
        committing = False
        try:
            with self._pool.connection() as conn, conn.transaction():
                last = 0
                if table is not None:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._keys[table],))
                    column = _NUMBERED.get(table, "seq")
                    row = conn.execute(f"SELECT MAX({column}) FROM {table}").fetchone()
                    last = int(row[0] or 0) if row else 0
                yield conn, last
                committing = True
        except _UNAVAILABLE as exc:
            outcome = "the commit's outcome is unknown" if committing else "nothing was written"
            raise JournalUnavailableError(
                f"{self.location}: expected a reachable, writable server to commit, got "
                f"{_message(exc, self.url)}; {outcome}"
            ) from exc

    def _violation(self, exc: Exception) -> str:
        diag = getattr(exc, "diag", None)
        return (diag and (diag.message_detail or diag.message_primary)) or str(exc)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(_pg(sql), params).fetchall()

    def _scan(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        """Rows of a query streamed through a server-side cursor (bounded memory)."""
        with self._connection() as conn, conn.transaction():
            with conn.cursor(name="nbo_scan") as cursor:
                cursor.itersize = _SCAN_BATCH
                cursor.execute(_pg(sql), params)
                yield from cursor

    def _append(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
        """COPY ``rows`` into ``table`` numbered after its largest seq; returns that seq."""
        with self._write(table) as (conn, last):
            _copy(conn, table, columns, rows, last)
        return last

    # ------------------------------------------------------------------ catalogs and meta
    def catalog(self, campaign: str, offer_ids: Sequence[str], feature_names: Sequence[str]) -> int:
        """Id of the catalog row for this campaign, offers and features (added if new)."""
        key = (campaign, json.dumps(list(offer_ids)), json.dumps(list(feature_names)))
        with self._write("catalogs") as (conn, last):
            row = conn.execute(_pg(schema.FIND_CATALOG), key).fetchone()
            if row is not None:
                return int(row[0])
            conn.execute(
                "INSERT INTO catalogs (id, campaign, offer_ids, feature_names)"
                " VALUES (%s, %s, %s, %s)",
                (last + 1, *key),
            )
        return last + 1

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing any earlier value."""
        with self._write() as (conn, _):
            conn.execute(_pg(schema.SET_META), (key, value))

    # ------------------------------------------------------------------ writes
    def append_decisions(self, rows: Sequence[records.DecisionRow]) -> list[int]:
        """Insert decisions in one transaction; return their seq numbers once committed."""
        if not rows:
            return []
        rule = "decision ids are unique"
        if not count_deferred(rows):
            with self._unique(rule):
                last = self._append("decisions", DECISION_COLUMNS, rows)
        else:  # with the inactive count (a row lock on its meta row)
            with self._unique(rule), self._write("decisions") as (conn, last):
                _copy(conn, "decisions", DECISION_COLUMNS, rows, last)
                self._note_deferred(_executor(conn), rows)
        return list(range(last + 1, last + len(rows) + 1))

    def append_rewards(self, rows: Sequence[records.RewardRow]) -> list[int]:
        """Insert rewards in one transaction; return their seq numbers (the learner's order)
        once committed. Lapses also take the activations' append lock, so an activation
        committed before is seen (and refuses them) and one after sees them."""
        if not rows:
            return []
        rule = "at most one reward per decision"
        lapses = lapsed_ids(rows)
        if not lapses:
            with self._unique(rule):
                last = self._append("rewards", REWARD_COLUMNS, rows)
        else:
            with self._unique(rule), self._write("rewards") as (conn, last):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._keys["activations"],))
                self._check_lapses(_executor(conn), lapses)
                _copy(conn, "rewards", REWARD_COLUMNS, rows, last)
        return list(range(last + 1, last + len(rows) + 1))

    def activate(
        self, decision_ids: Sequence[str], ts_us: int, cutoff_us: int | None = None
    ) -> list[str]:
        """Activate deferred decisions in one transaction under the activations' append lock
        (numbered in commit order, serialized with lapses); the status of each id (see
        :meth:`JournalBackend.activate`)."""
        if not decision_ids:
            return []
        with self._unique(schema.ACTIVATION_RULE), self._write("activations") as (conn, last):
            statuses, rows = self._activate(_executor(conn), decision_ids, ts_us, cutoff_us)
            _copy(conn, "activations", schema.ACTIVATION_COLUMNS, rows, last)
        return statuses

    def append_request(
        self, request: records.RequestRow, rows: Sequence[records.DecisionRow]
    ) -> list[int]:
        """Insert decisions and the request that made them in one transaction; return the
        decisions' seq numbers once committed."""
        with self._unique(schema.REQUEST_RULE), self._write("decisions") as (conn, last):
            _copy(conn, "decisions", DECISION_COLUMNS, rows, last)
            seqs = list(range(last + 1, last + len(rows) + 1))
            conn.execute(_pg(schema.INSERT_REQUEST), schema.request_params(request, seqs))
            self._note_deferred(_executor(conn), rows)
        return seqs

    def prune_requests(self, before_us: int) -> int:
        """Delete requests made before ``before_us``; return how many."""
        with self._write() as (conn, _):
            return int(conn.execute(_pg(schema.PRUNE_REQUESTS), (before_us,)).rowcount)

    def record_errors(self, rows: Sequence[records.RewardError]) -> None:
        """Count rejected rewards per reason and period; keep a bounded sample for audit."""
        if not rows:
            return
        with self._write("reward_errors") as (conn, last):
            samples = self._count_errors(_executor(conn), rows)
            _copy(conn, "reward_errors", ERROR_COLUMNS, samples, last)

    def set_meta_once(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless one is stored; return the stored value."""
        with self._write() as (conn, _):
            conn.execute(_pg(schema.SET_META_ONCE), (key, value))
            row = conn.execute(_pg(schema.GET_META), (key,)).fetchone()
        return str(row[0]) if row else value

    def try_lead(self) -> LeaderLock | None:
        """The learner lock: a session advisory lock on a connection of its own (see
        :mod:`engine.journal.leader`); None while another session holds it."""
        return AdvisoryLeaderLock.acquire(self.url, self._keys["models"] ^ _LEADER_BIT, self)

    # ------------------------------------------------------------------ the model registry
    @contextmanager
    def _models_write(self) -> Iterator[tuple[schema.Execute, int]]:
        """A write transaction holding the models table's append lock, and the newest stored
        version, for :meth:`SQLJournal.add_model`: writers of any process take the lock, so
        numbers are unique and grow in commit order."""
        with self._write("models") as (conn, last):
            yield _executor(conn), last

    def keep_model_bytes(self, version: int, blob: bytes) -> bool:
        """Keep the bytes of a stored version; False when they are already kept."""
        with self._write("model_blobs") as (conn, _):
            return self._keep_model_bytes(_executor(conn), version, blob)

    def prune_model_bytes(self, keep_learned: int) -> int:
        """Delete the bytes the registry need not keep (see schema.PRUNE_MODEL_BLOBS)."""
        with self._write("model_blobs") as (conn, _):
            cursor = conn.execute(_pg(schema.PRUNE_MODEL_BLOBS), (keep_learned,))
            return int(cursor.rowcount or 0)

    # ------------------------------------------------------------------ retention
    # Compaction steps of one campaign take the advisory lock of its meta table (which no append
    # takes): they serialize with each other, never with decisions and rewards, whose appends
    # number rows from the newest ones, which a compaction never deletes.
    def begin_archive(self, intent: str) -> str:
        """Store a compaction step's intent unless another's is stored; return the stored one."""
        with self._write() as (conn, _):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._keys["meta"],))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))  # may create tables
            return self._begin_archive(_executor(conn), intent, POSTGRES_TYPES)

    def finish_archive(self, intent: str, cut: records.ArchiveCut) -> bool:
        """Move the cut's decisions and rewards into the archived totals, in one transaction
        (see :meth:`JournalBackend.finish_archive`)."""
        with self._write() as (conn, _):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._keys["meta"],))
            return self._finish_archive(_executor(conn), intent, cut)

    def storage_bytes(self) -> int:
        """pg_total_relation_size of the campaign schema's tables (indexes and TOAST included)."""
        rows = self._rows(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ? AND c.relkind = 'r'",
            (self.schema,),
        )
        return int(rows[0][0])

    def reclaim_space(self, full: bool = False) -> str:
        """VACUUM the tables compaction deletes from (outside a transaction: the pool's
        connections are in autocommit mode). Plain VACUUM makes the space reusable by new rows
        and gives back only empty pages at a table's end, without blocking writers; ``full``
        (VACUUM FULL) rewrites the tables and gives it all back, holding an exclusive lock on
        them meanwhile (decisions and rewards wait)."""
        statement = "VACUUM (FULL) decisions, rewards" if full else "VACUUM decisions, rewards"
        with self._connection() as conn:
            conn.execute(statement)
        return statement.replace(" decisions, rewards", "")

    # ------------------------------------------------------------------ reads
    def lookup(self, decision_ids: Sequence[str]) -> dict[str, records.StoredDecision]:
        """Stored decisions by id (ids not in the journal are absent from the result)."""
        if not decision_ids:
            return {}
        with self._connection() as conn:
            rows = conn.execute(_LOOKUP, (list(dict.fromkeys(decision_ids)),)).fetchall()
        return {row[0]: records.StoredDecision._make(row) for row in rows}

    # ------------------------------------------------------------------ upkeep
    def checkpoint(self) -> None:
        """Nothing to do: PostgreSQL checkpoints and vacuums on its own."""

    def close(self) -> None:
        """Close the pool's connections; committed rows stay durable."""
        self._pool.close()


class AdvisoryLeaderLock:
    """The learner lock on PostgreSQL: ``pg_try_advisory_lock`` on a connection of its own,
    held while the connection lives (the server releases it when the connection ends)."""

    def __init__(self, conn: psycopg.Connection[Any], key: int, journal: PostgresJournal) -> None:
        self._conn: psycopg.Connection[Any] | None = conn
        self._key = key
        self._journal = journal

    @classmethod
    def acquire(cls, url: str, key: int, journal: PostgresJournal) -> AdvisoryLeaderLock | None:
        """The lock, or None while another session holds it.

        Raises
        ------
        ResourceExhaustedError
            When the server cannot be reached (naming host and database, never the password).
        """
        try:
            conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=round(CONNECT_TIMEOUT),
                keepalives=1,
                keepalives_idle=KEEPALIVE_IDLE,
                keepalives_interval=1,
                keepalives_count=2,
            )
        except psycopg.Error as exc:
            raise JournalUnavailableError(
                f"{journal.location}: expected a reachable server to take the learner lock, "
                f"got {_message(exc, url)}"
            ) from None
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        except psycopg.Error as exc:
            conn.close()
            raise ResourceExhaustedError(
                f"{journal.location}: expected to take the learner lock, got {_message(exc, url)}"
            ) from None
        if not (row and row[0]):
            conn.close()
            return None
        return cls(conn, key, journal)

    def held(self) -> bool:
        """Asks the server (one round trip): False once the connection is gone."""
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            row = conn.execute(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                " AND objid::bigint = %s AND granted",
                (self._key & 0xFFFFFFFF,),
            ).fetchone()
        except psycopg.Error:
            self.release()
            return False
        if row is None:
            self.release()
            return False
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # ends the session: the server drops its advisory locks
            except psycopg.Error:
                pass


def _run_script(conn: psycopg.Connection[Any], script: str) -> None:
    for statement in script.format(**POSTGRES_TYPES).split(";"):
        if statement.strip():
            conn.execute(statement)


def drop_campaign(url: str, campaign: str) -> None:
    """Delete a campaign's journal from a database (``DROP SCHEMA nbo_<campaign> CASCADE``):
    for benchmarks and tests that made throwaway campaigns."""
    with psycopg.connect(url, autocommit=True, connect_timeout=round(CONNECT_TIMEOUT)) as conn:
        ident = pg_sql.Identifier(schema_name(campaign))
        conn.execute(pg_sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
