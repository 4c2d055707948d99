"""The learner's leadership: at most one process per campaign applies rewards and publishes.

Every process that may learn (``nbo serve --role all`` or ``--role learn``) asks its journal
for the campaign's leader lock (:meth:`~engine.journal.base.JournalBackend.try_lead`). Whoever
gets it is the leader until it releases it or dies; the others stand by and ask again every
:data:`RETRY_SECONDS`. The lock dies with its holder, so no lease has to expire:

- SQLite: an exclusive ``flock`` on ``<journal>.learner.lock`` beside the journal file. The
  kernel drops it when the process exits, however it exits (kill -9 included).
- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) held by a connection of its
  own. The server drops it when that connection ends: a killed process's socket is closed by
  its kernel, so the server sees the end at once; a machine that vanishes is noticed through
  TCP keepalives (``keepalives_idle`` below).
- A journal in memory belongs to one process: the lock is always granted.

A leader checks :meth:`LeaderLock.held` on every tick of its upkeep and stops publishing the
moment it returns False (its lock connection broke: another process may lead now). A second
fence is in the registry: a learner publishes a version only when the newest stored version is
its own last one (``add_model(..., expect_newest=N)``), so a leader that lost its lock between
two ticks cannot publish over its successor's versions (:class:`~engine.journal.base.
StaleModelError`). See docs/architecture.md, "Replicated serving".

Examples
--------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "renewal.journal.sqlite.learner.lock")
>>> first = FileLeaderLock.acquire(path)
>>> first is not None and first.held()
True
>>> FileLeaderLock.acquire(path) is None      # a second holder is refused while it lives
True
>>> first.release(); first.held()
False
>>> again = FileLeaderLock.acquire(path); again.held()
True
>>> again.release()
"""

from __future__ import annotations

import fcntl
import os
from typing import Protocol

__all__ = ["RETRY_SECONDS", "FileLeaderLock", "LeaderLock", "ProcessLeaderLock"]

RETRY_SECONDS = 0.5  # a standby asks for the lock this often (failover within about 1 s)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class LeaderLock(Protocol):
    """A held leadership: true until released or lost."""

    def held(self) -> bool:
        """Whether this process still holds the lock (checked on every upkeep tick)."""
        ...

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        ...


class FileLeaderLock:
    """An exclusive ``flock`` on a lock file (SQLite journals)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str | os.PathLike[str]) -> FileLeaderLock | None:
        """The lock, or None while another open file (any process) holds it. The file is
        created owner-only and never followed through a symlink."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor of the open file drops the flock


class ProcessLeaderLock:
    """The lock of a journal only this process can open (in memory): always granted."""

    def __init__(self) -> None:
        self._held = True

    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        self._held = False
