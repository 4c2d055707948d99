"""Model snapshot files: policy bytes + encoder state + metadata, checksummed, no pickle.

Layout (an :class:`engine.framing.Framing`): ``b"NBOSNAP1"`` · header length (8 bytes, little
endian) · header (UTF-8 JSON) · policy blob (``policy.to_bytes()``) · SHA-256 of everything before
it (32 bytes). Files are written to a fresh temporary name (created exclusively, owner-only),
fsynced and renamed, so a reader never sees half a snapshot; a write killed midway leaves a
``.v<N>.snap.<pid>.<random>.tmp`` file that the next start removes.

The header carries: ``campaign``, ``version``, ``created`` (unix seconds), ``config_hash``,
``last_reward_seq`` (the journal's last reward the model has learned from), ``n_rewards``,
``offer_ids``, ``feature_names``, ``encoder`` (its state) and ``policy_class``.

Reading a snapshot for a campaign (a :class:`ModelShape`) checks, before building anything, that
the file is a regular file of at most ``max_bytes``, that its features are the campaign's, that
its offers map onto the campaign's (see :func:`check_offer_mapping`), that the model they declare
fits in ``max_bytes`` and that the policy's saved shapes and parameters are what the header says
(:meth:`Policy.from_bytes`). Any failure is a :class:`CorruptModelError` with the reason.

Examples
--------
>>> import tempfile, os
>>> from engine.policies import LinUCB
>>> path = os.path.join(tempfile.mkdtemp(), "v1.snap")
>>> write_snapshot(path, {"version": "v1", "offer_ids": ["a", "b"]}, LinUCB(2, 3, seed=0))
>>> header, policy = read_snapshot(path)
>>> header["version"], type(policy).__name__, policy.n_actions
('v1', 'LinUCB', 2)
>>> read_snapshot(path, ModelShape(("x", "y"), ("a", "b")))
Traceback (most recent call last):
...
engine.errors.CorruptModelError: ...: model blob: expected n_features = 2 (the campaign's), got 3
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CorruptModelError, ResourceExhaustedError
from engine.framing import Framing
from engine.journal.files import create_private, read_regular
from engine.policies import Policy

__all__ = [
    "MAGIC",
    "MAX_SNAPSHOT_BYTES",
    "ModelShape",
    "check_offer_mapping",
    "decode_header",
    "decode_snapshot",
    "encode_snapshot",
    "list_snapshots",
    "read_snapshot",
    "short_list",
    "string_list",
    "write_snapshot",
    "write_snapshot_bytes",
]

MAGIC = b"NBOSNAP1"
MAX_SNAPSHOT_BYTES = 256 << 20  # larger files are refused before a byte is read
_FRAME = Framing(MAGIC, "<Q", "an nbo snapshot", sort_keys=True)


@dataclass(frozen=True)
class ModelShape:
    """What a snapshot must fit to serve a campaign.

    Parameters
    ----------
    feature_names : tuple of str
        The campaign's encoded features, in order.
    offer_ids : tuple of str
        The campaign's offers, in order.
    bytes_per_offer : int, default 0
        Model bytes one offer takes in the campaign's policy (0: no bound); with it, a snapshot
        declaring so many offers that its model would pass ``max_bytes`` is refused before the
        model is built.
    max_bytes : int
        Largest snapshot file read, and largest model built.
    """

    feature_names: tuple[str, ...]
    offer_ids: tuple[str, ...]
    bytes_per_offer: int = 0
    max_bytes: int = MAX_SNAPSHOT_BYTES


def check_offer_mapping(old_ids: Sequence[str], new_ids: Sequence[str], source: str) -> None:
    """Raise CorruptModelError unless a model over offers ``old_ids`` maps onto ``new_ids``: the
    offers they share in the same order, new offers at the end, at least one shared (a model
    keeps at least one offer)."""
    new = list(new_ids)
    kept = [i for i in old_ids if i in new]
    if len(set(old_ids)) != len(old_ids) or not kept or new[: len(kept)] != kept:
        raise CorruptModelError(
            f"{source} offer_ids: expected distinct offers, at least one shared with the config, "
            f"the shared ones in the config's order, with new offers at the end; config has "
            f"{new}, snapshot has {short_list(old_ids)}"
        )


def short_list(items: Sequence[Any], limit: int = 12) -> str:
    """``items`` for an error message: the first ``limit`` and how many there are in all."""
    shown = list(items[:limit])
    return repr(shown) if len(items) <= limit else f"{repr(shown)[:-1]}, ... ({len(items)} in all)]"


def string_list(header: dict[str, Any], key: str, source: str) -> list[str] | None:
    """A snapshot header's list of strings under ``key`` (None when absent); a value of another
    type is a CorruptModelError naming ``source``."""
    value = header.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CorruptModelError(f"{source}: header {key!r} is not a list of strings")
    return value


def encode_snapshot(header: dict[str, Any], policy: Policy) -> bytes:
    """The bytes of a snapshot file."""
    blob = policy.to_bytes()
    head = dict(header, policy_class=type(policy).__name__, policy_len=len(blob))
    return _FRAME.encode(head, blob)


def decode_header(data: bytes, source: str = "snapshot") -> dict[str, Any]:
    """The verified header of snapshot bytes (magic, checksum, lengths), without building the
    model."""
    _, header, blob = _FRAME.decode(data, source)
    if header.get("policy_len") != len(blob):
        raise CorruptModelError(f"{source}: policy blob length does not match its header")
    return header


def decode_snapshot(
    data: bytes, source: str = "snapshot", shape: ModelShape | None = None
) -> tuple[dict[str, Any], Policy]:
    """Verify and decode snapshot bytes; with ``shape``, also check that the snapshot fits the
    campaign before its model is built (see the module's notes).

    Raises
    ------
    CorruptModelError
        When the magic, the checksum, the header or the policy blob is wrong, or the snapshot
        does not fit ``shape``.
    """
    _, header, blob = _FRAME.decode(data, source)
    if header.get("policy_len") != len(blob):
        raise CorruptModelError(f"{source}: policy blob length does not match its header")
    names = string_list(header, "feature_names", source)
    offers = string_list(header, "offer_ids", source)
    n_actions = n_features = None
    if shape is not None:
        if names is not None and names != list(shape.feature_names):
            raise CorruptModelError(
                f"{source}: expected a model over features {list(shape.feature_names)}, "
                f"got one over {short_list(names)}"
            )
        n_features = len(shape.feature_names)
        old = shape.offer_ids if offers is None else offers
        check_offer_mapping(old, shape.offer_ids, source)
        n_actions = len(old)
        if shape.bytes_per_offer * n_actions > shape.max_bytes:
            raise CorruptModelError(
                f"{source}: expected at most {shape.max_bytes // max(shape.bytes_per_offer, 1)} "
                f"offers (a model of at most {shape.max_bytes} bytes), got {n_actions}"
            )
    try:
        policy = Policy.from_bytes(blob, n_actions=n_actions, n_features=n_features)
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
    # A fresh name per write, created exclusively: never an existing file or a planted symlink.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    try:
        create_private(tmp, "snapshot")
        fd = os.open(tmp, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
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


def read_snapshot(
    path: str | Path, shape: ModelShape | None = None, max_bytes: int | None = None
) -> tuple[dict[str, Any], Policy]:
    """Read and verify a snapshot file (see :func:`decode_snapshot`): a regular file, opened
    without following a symlink, of at most ``max_bytes`` (default ``shape.max_bytes`` or
    MAX_SNAPSHOT_BYTES), checked before it is read."""
    limit = (
        max_bytes
        if max_bytes is not None
        else (shape.max_bytes if shape is not None else MAX_SNAPSHOT_BYTES)
    )
    data = read_regular(Path(path), limit, str(path))
    return decode_snapshot(data, str(path), shape)


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
