"""The policy model format: JSON header + raw little-endian arrays + SHA-256, never pickle.

Layout (an :class:`engine.framing.Framing`)::

    b"NBOPOLICY" | version (uint16) | header length (uint32) | header (UTF-8 JSON)
    | array bytes, in header order | SHA-256 of everything before it (32 bytes)

The header holds the class name, the hyperparameters, scalar state and, per array, its name,
dtype and shape. Loading checks the magic, the version, the checksum and every declared size
before building anything, so a truncated or altered blob is refused with a clear error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import CorruptModelError
from engine.framing import Framing

MAGIC = b"NBOPOLICY"
VERSION = 1
_FRAME = Framing(MAGIC, "<HI", "an nbo policy")
_SOURCE = "model blob"
_ALLOWED_DTYPES = {"<f8", "<i8", "<u8", "|b1", "|u1"}


def dump(
    class_name: str, params: dict[str, Any], scalars: dict[str, Any], arrays: dict[str, np.ndarray]
) -> bytes:
    specs = []
    chunks = []
    for name, value in arrays.items():
        arr = np.ascontiguousarray(value)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        dtype = arr.dtype.str
        if dtype not in _ALLOWED_DTYPES:
            raise TypeError(f"array {name!r} has unsupported dtype {dtype}")
        specs.append({"name": name, "dtype": dtype, "shape": list(arr.shape)})
        chunks.append(arr.tobytes())
    header = {"class": class_name, "params": params, "scalars": scalars, "arrays": specs}
    return _FRAME.encode(header, b"".join(chunks), VERSION)


def load(blob: bytes) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CorruptModelError(f"{_SOURCE}: expected bytes, got {type(blob).__name__}")
    (version,), header, payload = _FRAME.decode(bytes(blob), _SOURCE)
    if version != VERSION:
        raise CorruptModelError(f"{_SOURCE}: format version {version}, this nbo reads {VERSION}")
    offset = 0
    arrays: dict[str, np.ndarray] = {}
    for spec in header.get("arrays", []):
        dtype = np.dtype(spec["dtype"]) if spec.get("dtype") in _ALLOWED_DTYPES else None
        if dtype is None:
            raise CorruptModelError(f"{_SOURCE}: array {spec.get('name')!r} has a bad dtype")
        shape = tuple(int(s) for s in spec["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + nbytes > len(payload):
            raise CorruptModelError(f"{_SOURCE}: array {spec['name']!r} runs past the end")
        arrays[spec["name"]] = (
            np.frombuffer(payload, dtype, int(np.prod(shape)), offset).reshape(shape).copy()
        )
        offset += nbytes
    if offset != len(payload):
        raise CorruptModelError(f"{_SOURCE}: trailing bytes after the arrays")
    return header["class"], dict(header["params"]), dict(header["scalars"]), arrays
