"""Choosing a journal backend by URL (``nbo serve --journal URL``, ``[journal] url``).

Accepted forms:

- nothing: ``<data-dir>/<campaign>.journal.sqlite`` (in memory without a data dir);
- a path, or ``sqlite:///path`` (as in SQLAlchemy: ``sqlite:///x.sqlite`` is relative to the
  working directory, ``sqlite:////var/nbo/x.sqlite`` absolute): the SQLite backend;
- ``postgresql://user@host:port/db`` (or ``postgres://``, with any libpq parameters after
  ``?``): the PostgreSQL backend, one schema per campaign, so several campaigns and several
  replicas share one database.

Passwords never reach a message or a log: :func:`redact_url` is how a URL is shown. Prefer a
``~/.pgpass`` file or the ``PGPASSWORD`` environment variable to a password in the URL.

Examples
--------
>>> redact_url("postgresql://nbo:s3cret@db.internal:5432/offers?sslmode=require&password=x")
'postgresql://nbo@db.internal:5432/offers?sslmode=require'
>>> journal_kind("sqlite:///nbo-data/renewal.journal.sqlite"), journal_kind("data/x.sqlite")
('sqlite', 'sqlite')
>>> journal_kind("mysql://root@localhost/nbo")
Traceback (most recent call last):
...
engine.errors.ConfigError: journal: expected a path, sqlite:///path or postgresql://user@host:port/db, got scheme 'mysql' (mysql://root@localhost/nbo)
"""  # noqa: E501

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from engine.errors import ConfigError
from engine.journal.base import JournalBackend

__all__ = ["journal_kind", "open_journal", "redact_url"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_POSTGRES = ("postgresql", "postgres")
_SECRET_PARAMS = ("password", "sslpassword")
ACCEPTED = "a path, sqlite:///path or postgresql://user@host:port/db"


def redact_url(url: str) -> str:
    """``url`` without its password (in the authority or as a query parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = userinfo.split(":", 1)[0] + "@" + host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k not in _SECRET_PARAMS])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def journal_kind(url: str) -> str:
    """``"sqlite"`` or ``"postgres"``; ConfigError naming any other scheme."""
    match = _SCHEME.match(url)
    if match is None:
        return "sqlite"
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in _POSTGRES:
        return "postgres"
    raise ConfigError(f"journal: expected {ACCEPTED}, got scheme {scheme!r} ({redact_url(url)})")


def sqlite_path(url: str) -> Path:
    """The file of a SQLite journal URL or path."""
    if _SCHEME.match(url):
        rest = url.split("://", 1)[1]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"journal: expected sqlite:///path, got {url!r}")
        return Path(rest[1:])
    return Path(url)


def open_journal(
    url_or_path: str | Path | None,
    *,
    campaign: str,
    data_dir: str | Path | None = None,
    synchronous: str = "normal",
    readonly: bool = False,
    autocheckpoint: bool = True,
    migrate: bool = False,
    cache_mib: int | None = None,
) -> JournalBackend:
    """Open the journal of ``campaign`` that ``url_or_path`` names (see the module docstring).

    Parameters
    ----------
    url_or_path : str or Path or None
        None or ``""``: ``<data_dir>/<campaign>.journal.sqlite`` (``":memory:"`` without a
        data dir).
    campaign : str
        The campaign (PostgreSQL: the schema ``nbo_<campaign>`` holds its tables).
    data_dir : str or Path, optional
    synchronous, autocheckpoint, cache_mib : SQLite's settings (see
        :class:`~engine.journal.store.Journal`; cache_mib None: SQLite's own); PostgreSQL always
        commits with ``synchronous_commit = on`` and caches in the server's shared buffers.
    readonly : bool
        Open for reading only (exports, reports): nothing is created.
    migrate : bool
        Bring a journal of an older schema version to the current one (``nbo journal
        migrate``); without it such a journal is refused with that command named.

    Raises
    ------
    ConfigError
        For an unknown scheme, or a journal of another schema version.
    ResourceExhaustedError
        When a PostgreSQL server cannot be reached (within its connect timeout).
    """
    from engine.journal.store import Journal

    if url_or_path is None or str(url_or_path) == "":
        if data_dir is None:
            return Journal(
                ":memory:",
                synchronous=synchronous,
                autocheckpoint=autocheckpoint,
                cache_mib=cache_mib,
            )
        path = Path(data_dir) / f"{campaign}.journal.sqlite"
    elif isinstance(url_or_path, Path):
        path = url_or_path
    elif journal_kind(url_or_path) == "postgres":
        try:
            from engine.journal.postgres import PostgresJournal
        except ImportError as exc:
            raise ConfigError(
                f"journal: expected psycopg installed for {redact_url(url_or_path)} "
                f"(pip install 'nbo[postgres]'), got {exc}"
            ) from None
        return PostgresJournal(url_or_path, campaign, readonly=readonly, migrate=migrate)
    else:
        path = sqlite_path(url_or_path)
    return Journal(
        path,
        synchronous=synchronous,
        readonly=readonly,
        autocheckpoint=autocheckpoint,
        migrate=migrate,
        cache_mib=cache_mib,
    )
