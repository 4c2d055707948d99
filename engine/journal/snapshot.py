"""Model snapshot files: policy bytes + encoder state + metadata, checksummed, no pickle.

Layout (an :class:`engine.framing.Framing`): ``b"NBOSNAP1"`` · header length (8 bytes, little
endian) · header (UTF-8 JSON) · policy blob (``policy.to_bytes()``) · SHA-256 of everything before
it (32 bytes). Files are written to a temporary name, fsynced and renamed, so a reader never sees
half a snapshot.

The header carries: ``campaign``, ``version``, ``created`` (unix seconds), ``config_hash``,
``last_reward_seq`` (the journal's last reward the model has learned from), ``n_rewards``,
``offer_ids``, ``feature_names``, ``encoder`` (its state) and ``policy_class``.

Examples
--------
>>> import tempfile, os
>>> from engine.policies import LinUCB
>>> path = os.path.join(tempfile.mkdtemp(), "v1.snap")
>>> write_snapshot(path, {"version": "v1", "offer_ids": ["a", "b"]}, LinUCB(2, 3, seed=0))
>>> header, policy = read_snapshot(path)
>>> header["version"], type(policy).__name__, policy.n_actions
('v1', 'LinUCB', 2)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import CorruptModelError, ResourceExhaustedError
from engine.framing import Framing
from engine.policies import Policy

MAGIC = b"NBOSNAP1"
_FRAME = Framing(MAGIC, "<Q", "an nbo snapshot", sort_keys=True)


def encode_snapshot(header: dict[str, Any], policy: Policy) -> bytes:
    """The bytes of a snapshot file."""
    blob = policy.to_bytes()
    head = dict(header, policy_class=type(policy).__name__, policy_len=len(blob))
    return _FRAME.encode(head, blob)


def decode_snapshot(data: bytes, source: str = "snapshot") -> tuple[dict[str, Any], Policy]:
    """Verify and decode snapshot bytes.

    Raises
    ------
    CorruptModelError
        When the magic, the checksum, the header or the policy blob is wrong.
    """
    _, header, blob = _FRAME.decode(data, source)
    if header.get("policy_len") != len(blob):
        raise CorruptModelError(f"{source}: policy blob length does not match its header")
    try:
        policy = Policy.from_bytes(blob)
    except CorruptModelError as exc:
        raise CorruptModelError(f"{source}: {exc}") from None
    return header, policy


def write_snapshot(path: str | Path, header: dict[str, Any], policy: Policy) -> None:
    """Write a snapshot file atomically with owner-only permissions (replacing any file of
    that name: ``nbo train --out``)."""
    write_snapshot_bytes(path, encode_snapshot(header, policy), replace=True)


def write_snapshot_bytes(path: str | Path, data: bytes, replace: bool = False) -> bool:
    """Write encoded snapshot bytes atomically (temporary file, fsync, rename).

    With ``replace`` False an existing file is never replaced: the registry's exports are
    immutable, so a file already there is left as it is. Returns whether the file was written.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the name exists: never rewrites a file
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # a partial file would only hold on to the space it took
        raise ResourceExhaustedError(
            f"snapshot {path}: expected room to write it, got {exc.strerror or exc}"
        ) from exc
    return True


def read_snapshot(path: str | Path) -> tuple[dict[str, Any], Policy]:
    """Read and verify a snapshot file (see :func:`decode_snapshot`)."""
    return decode_snapshot(Path(path).read_bytes(), str(path))


def list_snapshots(directory: str | Path) -> list[Path]:
    """Snapshot files (``v<N>.snap``) in a directory, newest version first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.glob("v*.snap"):
        digits = entry.stem[1:]
        if digits.isdigit():
            found.append((int(digits), entry))
    return [entry for _, entry in sorted(found, reverse=True)]
