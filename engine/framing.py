"""Checksummed frames: the one byte layout of policy models and model snapshots.

Layout::

    magic | fixed fields (little-endian struct, the last one the header length)
    | header (UTF-8 JSON object) | payload | SHA-256 of everything before it (32 bytes)

Policy models (:mod:`engine.policies`) and snapshot files (:mod:`engine.journal.snapshot`) differ
only in their magic, their fixed fields and what their payload holds. Reading checks the magic,
the length and the checksum before parsing anything, so truncated or altered bytes are refused
with a :class:`~engine.errors.CorruptModelError` that names the source.

Examples
--------
>>> frame = Framing(b"NBOTEST", "<I", "an nbo test frame")
>>> data = frame.encode({"a": 1}, b"payload")
>>> frame.decode(data, "test")
((), {'a': 1}, b'payload')
>>> frame.decode(data[:-1], "test")
Traceback (most recent call last):
...
engine.errors.CorruptModelError: test: checksum mismatch (truncated or altered)
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import CorruptModelError

__all__ = ["DIGEST_BYTES", "Framing"]

DIGEST_BYTES = 32


@dataclass(frozen=True)
class Framing:
    """One frame layout.

    Parameters
    ----------
    magic : bytes
        The first bytes of every frame.
    fields : str
        ``struct`` format of the fixed fields after the magic; its last field is the header
        length, the others (a format version, say) are given to :meth:`encode` and returned by
        :meth:`decode`.
    kind : str
        What a frame is, for error messages ("an nbo policy").
    sort_keys : bool, default False
        Write the header's keys sorted.
    """

    magic: bytes
    fields: str
    kind: str
    sort_keys: bool = False

    @property
    def prefix_bytes(self) -> int:
        """Bytes before the header: the magic and the fixed fields."""
        return len(self.magic) + struct.calcsize(self.fields)

    def encode(self, header: dict[str, Any], payload: bytes, *fields: int) -> bytes:
        """The frame of ``header`` and ``payload``; ``fields`` are the fixed fields but the
        header length. NumPy scalars in the header are written as Python numbers."""
        head = json.dumps(
            header, sort_keys=self.sort_keys, default=_json_default, allow_nan=False
        ).encode()
        body = self.magic + struct.pack(self.fields, *fields, len(head)) + head + payload
        return body + hashlib.sha256(body).digest()

    def decode(self, data: bytes, source: str) -> tuple[tuple[int, ...], dict[str, Any], bytes]:
        """Verify a frame and return its fixed fields (but the header length), its header and
        its payload.

        Raises
        ------
        CorruptModelError
            When the magic, the length, the checksum or the header is wrong.
        """
        if len(data) < self.prefix_bytes + DIGEST_BYTES or not data.startswith(self.magic):
            raise CorruptModelError(
                f"{source}: expected {self.kind} (magic {self.magic!r}), got other data"
            )
        body, digest = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
        if hashlib.sha256(body).digest() != digest:
            raise CorruptModelError(f"{source}: checksum mismatch (truncated or altered)")
        *fields, header_len = struct.unpack(self.fields, body[len(self.magic) : self.prefix_bytes])
        end = self.prefix_bytes + header_len
        if end > len(body):
            raise CorruptModelError(
                f"{source}: header of {header_len} bytes runs past the end of the "
                f"{len(data)}-byte frame"
            )
        try:
            header = json.loads(body[self.prefix_bytes : end].decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptModelError(f"{source}: header is not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise CorruptModelError(f"{source}: header is not a JSON object")
        return tuple(fields), header, body[end:]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
