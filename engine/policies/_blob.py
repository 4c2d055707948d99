"""The policy model format: JSON header + raw little-endian arrays + SHA-256, never pickle.

Layout::

    b"NBOPOLICY" | version (uint16) | header length (uint32) | header (UTF-8 JSON)
    | array bytes, in header order | SHA-256 of everything before it (32 bytes)

The header holds the class name, the hyperparameters, scalar state and, per array, its name,
dtype and shape. Loading checks the magic, the version, the checksum and every declared size
before building anything, so a truncated or altered blob is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np

from engine.errors import CorruptModelError

MAGIC = b"NBOPOLICY"
VERSION = 1
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
    header = json.dumps(
        {"class": class_name, "params": params, "scalars": scalars, "arrays": specs},
        default=_json_default,
        allow_nan=False,
    ).encode()
    body = MAGIC + struct.pack("<HI", VERSION, len(header)) + header + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def load(blob: bytes) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CorruptModelError(f"model blob: expected bytes, got {type(blob).__name__}")
    data = bytes(blob)
    fixed = len(MAGIC) + 6
    if len(data) < fixed + 32 or not data.startswith(MAGIC):
        raise CorruptModelError("model blob: not an nbo policy (bad magic or too short)")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptModelError("model blob: checksum mismatch (truncated or corrupted)")
    version, header_len = struct.unpack("<HI", data[len(MAGIC) : fixed])
    if version != VERSION:
        raise CorruptModelError(f"model blob: format version {version}, this nbo reads {VERSION}")
    try:
        header = json.loads(body[fixed : fixed + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelError(f"model blob: unreadable header ({exc})") from exc
    offset = fixed + header_len
    arrays: dict[str, np.ndarray] = {}
    for spec in header.get("arrays", []):
        dtype = np.dtype(spec["dtype"]) if spec.get("dtype") in _ALLOWED_DTYPES else None
        if dtype is None:
            raise CorruptModelError(f"model blob: array {spec.get('name')!r} has a bad dtype")
        shape = tuple(int(s) for s in spec["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + nbytes > len(body):
            raise CorruptModelError(f"model blob: array {spec['name']!r} runs past the end")
        arrays[spec["name"]] = (
            np.frombuffer(body, dtype, int(np.prod(shape)), offset).reshape(shape).copy()
        )
        offset += nbytes
    if offset != len(body):
        raise CorruptModelError("model blob: trailing bytes after the arrays")
    return header["class"], dict(header["params"]), dict(header["scalars"]), arrays


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
