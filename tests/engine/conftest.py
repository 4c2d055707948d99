"""Fixtures of the engine tests: the journal backends the contract suite runs over."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from engine.journal import JournalBackend
from engine.journal.backends import open_journal

# Every test taking ``backend`` (and ``reopen``) runs against each journal backend: the suite is
# the definition of JournalBackend. A new backend adds a parameter to the ``backend`` fixture.


@pytest.fixture(params=["sqlite", "postgres"])
def reopen(request, tmp_path) -> Iterator[Callable[[], JournalBackend]]:
    """Opens one more connection to the same, initially empty, journal store."""
    opened: list[JournalBackend] = []
    url = (
        str(tmp_path / "c.journal.sqlite")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )

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
