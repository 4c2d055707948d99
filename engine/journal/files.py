"""The data directory's files, opened so that nobody but its owner can redirect or replace them.

Every directory the engine keeps data in (the data directory, ``snapshots/<campaign>/``,
``models/``) must belong to the server's user and be writable by nobody else: created owner-only
when missing, refused when it pre-exists otherwise. With that, the checks below cannot be raced by
another user; they still refuse what the owner (or a bug) may have left: a journal or snapshot
that is a symlink, a FIFO offered for promotion, a file too large to be a model.

- Files are created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600) and opened without
  following a symlink in their last component (``O_NOFOLLOW``).
- Reads take regular files only (``O_NONBLOCK``, so a FIFO is refused instead of blocking), and
  check the size with ``fstat`` before reading a byte.
- Promotion takes paths inside the model directory only: :func:`resolve_inside` refuses absolute
  paths, ``..`` and symlinks leading out, with one message whether or not the target exists.

Examples
--------
>>> import tempfile
>>> root = Path(tempfile.mkdtemp()) / "data"
>>> private_dir(root, "data_dir") == root
True
>>> (root / "v1.snap").write_bytes(b"model")
5
>>> read_regular(resolve_inside(root, "v1.snap", "snapshot_path"), 1024, "v1.snap")
b'model'
>>> resolve_inside(root, "../etc/passwd", "snapshot_path")
Traceback (most recent call last):
...
engine.errors.PermissionDeniedError: snapshot_path: expected a file inside the model directory, ...
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from engine.errors import CorruptModelError, InvalidInputError, NotFoundError, PermissionDeniedError

__all__ = [
    "TEMPORARY_SNAPSHOTS",
    "create_private",
    "private_dir",
    "read_regular",
    "refuse_links",
    "remove_temporaries",
    "resolve_inside",
]

TEMPORARY_SNAPSHOTS = ".v*.snap.*.tmp"  # what write_snapshot leaves when killed mid-write
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_log = logging.getLogger("nbo.files")


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "a regular file")


def private_dir(path: Path, field: str) -> Path:
    """``path`` as a directory only its owner can change: created 0700 (with its missing
    parents) when absent; when it exists, refused unless it is a directory owned by this process's
    user and neither group- nor world-writable.

    Raises
    ------
    PermissionDeniedError
        Naming ``field``, the path and the reason, in one line.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # mkdir's mode went through the umask
    except FileExistsError:
        pass
    except OSError as exc:
        raise PermissionDeniedError(
            f"{field}: expected a directory the server can create, got {str(path)!r} "
            f"({exc.strerror or exc})"
        ) from None
    info = path.stat()
    why = None
    if not stat.S_ISDIR(info.st_mode):
        why = f"{_kind(info.st_mode)}, not a directory"
    elif info.st_uid != os.geteuid():
        why = f"owned by uid {info.st_uid}, not by this server's uid {os.geteuid()}"
    elif info.st_mode & 0o022:
        who = (
            "group- and world"
            if info.st_mode & 0o022 == 0o022
            else ("group" if info.st_mode & 0o020 else "world")
        )
        why = f"{who}-writable (mode {stat.S_IMODE(info.st_mode):04o}); chmod go-w it"
    if why is not None:
        raise PermissionDeniedError(
            f"{field}: expected a directory only this server's user can write, got "
            f"{str(path)!r} ({why})"
        )
    return path


def refuse_links(path: Path, field: str) -> None:
    """Refuse ``path`` when it exists as anything but a regular file (a planted symlink above
    all: following it would write the journal wherever it points)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise PermissionDeniedError(
            f"{field}: expected a regular file, got {str(path)!r} ({_kind(info.st_mode)}; "
            "refusing to follow or replace it)"
        )


def create_private(path: Path, field: str) -> bool:
    """Create ``path`` empty, owner-only (0600), exclusively and without following a symlink;
    an existing regular file is kept. Returns True when the file was created.

    Raises
    ------
    PermissionDeniedError
        When ``path`` exists as a symlink or anything else but a regular file.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW | _CLOEXEC, 0o600)
    except FileExistsError:
        refuse_links(path, field)
        return False
    os.close(fd)
    return True


def read_regular(path: Path, max_bytes: int, source: str) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read without following a symlink
    and without blocking on a FIFO; the size is checked before anything is read.

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    CorruptModelError
        When the file is larger than ``max_bytes``.
    InvalidInputError
        When it is not a regular file (a symlink, a FIFO, a device, a directory).
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        try:
            kind = _kind(os.lstat(path).st_mode)
        except OSError:
            kind = exc.strerror or str(exc)
        raise InvalidInputError(source, "a regular file", f"{kind}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(source, "a regular file", _kind(info.st_mode))
        if info.st_size > max_bytes:
            raise CorruptModelError(
                f"{source}: expected a model of at most {max_bytes} bytes, got {info.st_size} "
                "bytes (not read)"
            )
        chunks = []
        left = max_bytes + 1  # one byte more tells a file that grew past the limit meanwhile
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise CorruptModelError(f"{source}: expected a model of at most {max_bytes} bytes")
    return data


def resolve_inside(root: Path, requested: str, field: str) -> Path:
    """The file ``requested`` names inside ``root``: a relative path without ``..`` whose
    resolved location (symlinks followed) is still inside ``root``.

    Raises
    ------
    PermissionDeniedError
        For an absolute path, a ``..`` component or a path that resolves outside ``root``, with
        the same message whether or not the target exists.
    NotFoundError
        When the path is inside ``root`` but names no file.
    """
    refused = PermissionDeniedError(
        f"{field}: expected a file inside the model directory, got {requested!r}"
    )
    if not requested or "\0" in requested or os.path.isabs(requested):
        raise refused
    parts = Path(requested).parts
    if ".." in parts:
        raise refused
    base = Path(os.path.realpath(root))
    target = Path(os.path.realpath(base / requested))
    if target == base or base not in target.parents:
        raise refused
    if not os.path.lexists(target):
        raise NotFoundError(
            f"{field}: expected a file in the model directory, got {requested!r} (no such file)"
        )
    return target


def remove_temporaries(directory: Path, pattern: str = TEMPORARY_SNAPSHOTS) -> list[Path]:
    """Delete the leftovers of writes killed midway (``pattern`` in ``directory``), logging each
    one; returns what was removed. Unlinking never follows a symlink."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.glob(pattern)):
        try:
            entry.unlink()
        except FileNotFoundError:
            continue
        removed.append(entry)
        _log.warning("removed %s, left over from a snapshot write that did not finish", entry)
    return removed
