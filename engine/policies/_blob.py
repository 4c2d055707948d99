"""The policy model format: JSON header + raw little-endian arrays + SHA-256, never pickle.

Layout (an :class:`engine.framing.Framing`)::

    b"NBOPOLICY" | version (uint16) | header length (uint32) | header (UTF-8 JSON)
    | array bytes, in header order | SHA-256 of everything before it (32 bytes)

The header holds the class name, the hyperparameters, scalar state and, per array, its name,
dtype and shape. Loading checks the magic, the version, the checksum and every declared size
(against the payload's length) before building anything, so a truncated, altered or crafted blob
is refused with a clear error and allocates nothing it does not hold.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.errors import CorruptModelError
from engine.framing import Framing

MAGIC = b"NBOPOLICY"
VERSION = 1
_FRAME = Framing(MAGIC, "<HI", "an nbo policy")
_SOURCE = "model blob"
_ALLOWED_DTYPES = {"<f8", "<i8", "<u8", "|b1", "|u1"}
_MAX_NDIM = 8


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


def _array_specs(header: dict[str, Any]) -> list[tuple[str, np.dtype, tuple[int, ...], int]]:
    """(name, dtype, shape, nbytes) of every declared array, checked as data before any is read."""
    specs = header.get("arrays", [])
    if not isinstance(specs, list):
        raise CorruptModelError(f"{_SOURCE}: header 'arrays' is not a list")
    out = []
    seen: set[str] = set()
    for spec in specs:
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or name in seen:
            raise CorruptModelError(f"{_SOURCE}: an array entry without a distinct name")
        seen.add(name)
        if spec.get("dtype") not in _ALLOWED_DTYPES:
            raise CorruptModelError(f"{_SOURCE}: array {name!r} has a bad dtype")
        shape = spec.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) > _MAX_NDIM
            or not all(type(s) is int and s >= 0 for s in shape)
        ):
            raise CorruptModelError(
                f"{_SOURCE}: array {name!r}: expected a shape of at most {_MAX_NDIM} sizes >= 0, "
                f"got {shape!r}"
            )
        dtype = np.dtype(spec["dtype"])
        # Python integers: a product of declared sizes cannot overflow into a small number.
        out.append((name, dtype, tuple(shape), math.prod(shape) * dtype.itemsize))
    return out


def load(blob: bytes) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Class name, parameters, scalars and arrays of a model blob.

    Every declared size is checked against the payload before an array is built, so a header
    declaring more than the blob holds allocates nothing.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CorruptModelError(f"{_SOURCE}: expected bytes, got {type(blob).__name__}")
    (version,), header, payload = _FRAME.decode(bytes(blob), _SOURCE)
    if version != VERSION:
        raise CorruptModelError(f"{_SOURCE}: format version {version}, this nbo reads {VERSION}")
    name = header.get("class")
    params, scalars = header.get("params"), header.get("scalars")
    if not isinstance(name, str) or not isinstance(params, dict) or not isinstance(scalars, dict):
        raise CorruptModelError(f"{_SOURCE}: header lacks its class, params or scalars")
    specs = _array_specs(header)
    total = sum(nbytes for *_, nbytes in specs)
    if total != len(payload):
        raise CorruptModelError(
            f"{_SOURCE}: expected arrays filling the {len(payload)}-byte payload, the header "
            f"declares {total} bytes"
        )
    offset = 0
    arrays: dict[str, np.ndarray] = {}
    for array_name, dtype, shape, nbytes in specs:
        count = nbytes // dtype.itemsize
        arrays[array_name] = np.frombuffer(payload, dtype, count, offset).reshape(shape).copy()
        offset += nbytes
    return name, dict(params), dict(scalars), arrays
