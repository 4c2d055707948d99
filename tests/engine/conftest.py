"""Fixtures of the engine tests: the journal backends the contract suite runs over."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from engine.journal import JournalBackend
from engine.journal.backends import open_journal

# Every test taking ``backend`` (and ``reopen``) runs against each journal backend: the suite is
# the definition of JournalBackend. A new backend adds a parameter to the ``backend`` fixture.


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """Where the test's journal store is (campaign ``c``): a SQLite file or a new database."""
    if request.param == "sqlite":
        return str(tmp_path / "c.journal.sqlite")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def reopen(store_url) -> Iterator[Callable[[], JournalBackend]]:
    """Opens one more connection to the same, initially empty, journal store."""
    opened: list[JournalBackend] = []
    url = store_url

    def open_backend(**options: bool) -> JournalBackend:
        journal = open_journal(url, campaign="c", **options)
        opened.append(journal)
        return journal

    yield open_backend
    for journal in opened:
        journal.close()


@pytest.fixture
def backend(reopen) -> JournalBackend:
    return reopen()
