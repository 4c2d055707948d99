"""Encoder: raw attribute dicts -> float64 feature vectors, following a :class:`FeatureSchema`.

Numbers may be int, float or bool; categorical values may be str or int (ints are compared as
their decimal text). A context that cannot be encoded raises :class:`InvalidInputError` naming
``context.<field>``. An attribute the schema does not declare (neither a feature nor one of its
``rule_attributes``; often a misspelling) is ignored, counted
(:meth:`Encoder.undeclared_attributes`) and logged once per name on the ``nbo.features`` logger;
with ``[features] strict = true`` the context is refused instead. The encoder's learned state
(running means and deviations) is a JSON-able dict saved with every model snapshot, so a restart
encodes exactly as before.

Examples
--------
>>> from engine.features.schema import parse_schema
>>> schema = parse_schema({"numeric": [{"name": "age", "mean": 40.0, "std": 10.0}],
...                        "categorical": [{"name": "plan", "values": ["a", "b"]}]})
>>> enc = Encoder(schema)
>>> enc.encode({"age": 50, "plan": "b"})
array([1., 1., 0., 1.])
>>> enc.encode_batch([{"age": 30, "plan": "a"}, {"plan": "zzz"}])
array([[ 1., -1.,  1.,  0.],
       [ 1.,  0.,  0.,  0.]])
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.errors import CorruptModelError, InvalidInputError, did_you_mean
from engine.features.columns import Columns
from engine.features.schema import CategoricalFeature, FeatureSchema, NumericFeature
from engine.types import FloatArray
from engine.validation import VALUE_LIMIT, VALUE_RULE

_NUMBER_TYPES = (int, float, bool, np.integer, np.floating)
_PLAIN_NUMBERS = frozenset((int, float, bool))
# Hashed-category strings remembered per feature, bounded by count and by the bytes of the keys
# (sys.getsizeof): a flood of long distinct values otherwise kept 65,536 of them per feature
# alive (issue 12: RSS 545 -> 1,027 MB). The cache is cleared when either bound would be passed.
_HASH_CACHE = 65536
HASH_CACHE_BYTES = 8 * 2**20
#: Batches of at most this many contexts are encoded row by row: below it numpy's per-call costs
#: exceed the rows' own work (about 65 us per batch against 6.5 us per row on the renewal schema).
ROW_WISE = 10
UNDECLARED_LIMIT = 1000  # distinct undeclared attribute names counted (bounded memory)

logger = logging.getLogger("nbo.features")


class _Running:
    """Welford mean/variance that freezes after ``limit`` observations."""

    __slots__ = ("count", "limit", "m2", "mean")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    @property
    def frozen(self) -> bool:
        return self.count >= self.limit

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    def std(self) -> float:
        if self.count < 2:
            return 1.0
        std = math.sqrt(self.m2 / (self.count - 1))
        return std if std > 1e-12 else 1.0


class Encoder:
    """Encode contexts with a feature schema.

    Parameters
    ----------
    schema : FeatureSchema
        The columns to produce, in order.

    Notes
    -----
    Not thread-safe while running statistics are still being learned: callers (the Engine)
    encode under their own lock.
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.feature_names = schema.feature_names
        self.n_features = len(self.feature_names)
        self._running: dict[str, _Running] = {
            f.name: _Running(f.freeze_after) for f in schema.numeric if f.standardize == "running"
        }
        #: Context attributes the encoder reads.
        self.attribute_names = tuple(f.name for f in schema.numeric) + tuple(
            c.name for c in schema.categorical
        )
        self._declared = frozenset(schema.attribute_names)
        self._undeclared: dict[str, int] = {}
        self._undeclared_lock = threading.Lock()
        self._offset = 1 if schema.bias else 0
        self._cat_offsets: list[int] = []
        offset = self._offset + len(schema.numeric)
        self._onehot: list[dict[str, int]] = []
        self._hash_cache: list[dict[str, int]] = [{} for _ in schema.categorical]
        self._hash_cache_bytes = [0] * len(schema.categorical)  # sizes of each cache's keys
        for c in schema.categorical:
            self._cat_offsets.append(offset)
            self._onehot.append({v: i for i, v in enumerate(c.values)})
            offset += c.width

    def undeclared_attributes(self) -> dict[str, int]:
        """How many contexts carried each attribute the schema does not declare.

        At most ``UNDECLARED_LIMIT`` distinct names are kept (the first ones seen). With
        ``strict`` the refused contexts are counted too.

        Examples
        --------
        >>> from engine.features.schema import parse_schema
        >>> enc = Encoder(parse_schema({"numeric": [{"name": "age", "mean": 40.0, "std": 10.0}]}))
        >>> _ = enc.encode_batch([{"age": 30, "agee": 31}, {"agee": 50}])
        >>> enc.undeclared_attributes()
        {'agee': 2}
        """
        with self._undeclared_lock:
            return dict(self._undeclared)

    def _undeclared_in(self, context: Mapping[str, Any], where: str) -> None:
        """Count (and log, or with ``strict`` refuse) the undeclared attributes of ``context``."""
        names = [str(name) for name in context if name not in self._declared]
        new = []
        with self._undeclared_lock:
            counts = self._undeclared
            for name in names:
                count = counts.get(name)
                if count is not None:
                    counts[name] = count + 1
                elif len(counts) < UNDECLARED_LIMIT:
                    counts[name] = 1
                    new.append(name)
            full = bool(new) and len(counts) == UNDECLARED_LIMIT
        declared = sorted(self._declared)
        if self.schema.strict:
            name = names[0]
            hint = did_you_mean(name, declared)
            raise InvalidInputError(
                f"{where}.{name}",
                f"one of the declared attributes{hint or ' (' + ', '.join(declared) + ')'}",
                "an undeclared attribute",
            )
        for name in new:
            logger.warning(
                "context attribute %r is not declared by the campaign and is ignored%s; declare "
                "it in [features] (a feature, or rule_attributes), or set strict = true to "
                "refuse such requests",
                name,
                did_you_mean(name, declared),
            )
        if full:
            logger.warning(
                "%d distinct undeclared context attributes: further names are neither counted "
                "nor logged",
                UNDECLARED_LIMIT,
            )

    @property
    def learning(self) -> bool:
        """True while some running statistic is still being estimated."""
        return any(not r.frozen for r in self._running.values())

    def _stats(self, f: NumericFeature) -> tuple[float, float]:
        if f.standardize == "none":
            return 0.0, 1.0
        if f.standardize == "running":
            r = self._running[f.name]
            return r.mean, r.std()
        return f.mean, f.std

    def _raw_number(self, f: NumericFeature, value: Any, mean: float) -> float | None:
        """The raw number to standardize, or None when the feature reads exactly 0."""
        if value is None:
            if f.missing == "mean":
                return None
            if f.missing == "zero":
                return 0.0
            if f.missing == "fill":
                return f.fill
            raise InvalidInputError(f"context.{f.name}", "a number", "nothing (missing)")
        if not isinstance(value, _NUMBER_TYPES):
            raise InvalidInputError(f"context.{f.name}", "a number", value)
        number = float(value)
        if not math.isfinite(number) or abs(number) > VALUE_LIMIT:
            raise InvalidInputError(f"context.{f.name}", VALUE_RULE, value)
        return number

    def _category_column(self, j: int, c: CategoricalFeature, value: Any) -> int:
        """Column index within the block, or -1 for all zeros."""
        if value is None:
            if c.missing == "error":
                raise InvalidInputError(f"context.{c.name}", "a category", "nothing (missing)")
            return -1
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidInputError(f"context.{c.name}", "a string category", value)
        text = value if isinstance(value, str) else str(value)
        if c.encoding == "hash":
            return zlib.crc32(f"{c.name}={text}".encode("utf-8", "surrogatepass")) % c.buckets
        col = self._onehot[j].get(text, -1)
        if col < 0:
            if c.unknown == "error":
                raise InvalidInputError(
                    f"context.{c.name}", "one of " + ", ".join(map(repr, c.values)), value
                )
            if c.unknown == "other":
                return len(c.values)
        return col

    def encode(self, context: Mapping[str, Any], learn: bool = False) -> FloatArray:
        """Encode one context into a float64 vector of shape (n_features,).

        With ``learn=True`` running statistics absorb this context (after encoding it).
        """
        if not isinstance(context, Mapping):
            raise InvalidInputError("context", "a mapping of attribute names to values", context)
        if not self._declared.issuperset(context):
            self._undeclared_in(context, "context")
        out = np.zeros(self.n_features)
        raws = self._encode_into(context, out)
        if learn and self._running:
            self._absorb(raws)
        return out

    def _encode_into(self, context: Mapping[str, Any], out: FloatArray) -> list[float | None]:
        """Write the encoding of one checked context into the zeroed row ``out``; the raw
        numbers, for the running statistics."""
        if self._offset:
            out[0] = 1.0
        pos = self._offset
        raws: list[float | None] = []
        for f in self.schema.numeric:
            mean, std = self._stats(f)
            raw = self._raw_number(f, context.get(f.name), mean)
            raws.append(raw)
            if raw is not None:
                out[pos] = (raw - mean) / std
            pos += 1
        for j, c in enumerate(self.schema.categorical):
            col = self._category_column(j, c, context.get(c.name))
            if col >= 0:
                out[self._cat_offsets[j] + col] = 1.0
        return raws

    def _encode_rows(self, contexts: Sequence[Mapping[str, Any]], learn: bool) -> FloatArray | None:
        """:meth:`encode_batch` of a few contexts row by row, cheaper than numpy's per-call
        costs there. None unless every context is a dict of declared attributes and every value
        is accepted: the column path then encodes the batch, or reports its first refused value
        as it does for any batch (nothing is absorbed before that)."""
        declared = self._declared
        if not all(type(ctx) is dict and declared.issuperset(ctx) for ctx in contexts):
            return None
        out = np.zeros((len(contexts), self.n_features))
        try:
            rows = [self._encode_into(ctx, out[i]) for i, ctx in enumerate(contexts)]
        except InvalidInputError:
            return None
        if learn and self._running:
            for raws in rows:
                self._absorb(raws)
        return out

    def encode_batch(
        self,
        contexts: Sequence[Mapping[str, Any]],
        learn: bool = False,
        columns: Columns | None = None,
    ) -> FloatArray:
        """Encode contexts into an array of shape (n_rounds, n_features).

        Rows are encoded with the statistics as they were before the batch; with ``learn=True``
        running statistics then absorb the whole batch. ``columns`` may hold attributes already
        gathered from these contexts (:func:`engine.features.columns.gather`).
        """
        n = len(contexts)
        if n <= ROW_WISE:
            few = self._encode_rows(contexts, learn)
            if few is not None:
                return few
        out = np.zeros((n, self.n_features))
        if self._offset:
            out[:, 0] = 1.0
        if not all(type(ctx) is dict for ctx in contexts):
            for i, ctx in enumerate(contexts):
                if not isinstance(ctx, Mapping):
                    raise InvalidInputError(f"contexts[{i}]", "a mapping of attribute names", ctx)
        declared = self._declared
        if not all(map(declared.issuperset, contexts)):
            for i, ctx in enumerate(contexts):
                if not declared.issuperset(ctx):
                    self._undeclared_in(ctx, f"contexts[{i}]")
        given = columns if columns is not None else {}
        learn_rows: list[list[float | None]] = [[] for _ in range(n)] if learn else []
        pos = self._offset
        for f in self.schema.numeric:
            mean, std = self._stats(f)
            name = f.name
            column = given.get(name)
            if column is None:
                column = [ctx.get(name) for ctx in contexts]
            if set(map(type, column)) <= _PLAIN_NUMBERS:  # bools too: float(True) == 1.0
                values = np.fromiter(column, dtype=np.float64, count=n)
                ok = np.abs(values) <= VALUE_LIMIT  # False for NaN and inf too
                if not ok.all():
                    bad = int(np.flatnonzero(~ok)[0])
                    raise InvalidInputError(f"contexts[{bad}].{name}", VALUE_RULE, column[bad])
                out[:, pos] = (values - mean) / std
                if learn:
                    for i in range(n):
                        learn_rows[i].append(column[i])
            else:
                for i, value in enumerate(column):
                    try:
                        raw = self._raw_number(f, value, mean)
                    except InvalidInputError as exc:
                        raise InvalidInputError(
                            f"contexts[{i}].{name}", exc.expected, exc.got
                        ) from None
                    if raw is not None:
                        out[i, pos] = (raw - mean) / std
                    if learn:
                        learn_rows[i].append(raw)
            pos += 1
        for j, c in enumerate(self.schema.categorical):
            base = self._cat_offsets[j]
            name = c.name
            lookup = self._onehot[j] if c.encoding == "onehot" else self._hash_cache[j]
            column = given.get(name)
            if column is None:
                column = [ctx.get(name) for ctx in contexts]
            # Fast path: known strings, in one pass. Anything else (missing, unknown, int,
            # invalid, unhashable) goes through the exact rules, which also produce the errors.
            get: Any = lookup.get  # any hashable value may be looked up (misses give -1)
            try:
                cols: list[int] = [get(value, -1) for value in column]
            except TypeError:  # an unhashable value: every row takes the exact rules
                cols = [-1] * n
            for i, col in enumerate(cols):
                if col < 0:
                    cols[i] = self._slow_category(j, c, i, column[i], lookup)
            found = np.fromiter(cols, dtype=np.int64, count=n)
            hit = np.flatnonzero(found >= 0)
            if hit.shape[0]:
                out[hit, base + found[hit]] = 1.0
        if learn and self._running:
            for raws in learn_rows:
                self._absorb(raws)
        return out

    def _slow_category(
        self, j: int, c: CategoricalFeature, i: int, value: Any, lookup: dict[str, int]
    ) -> int:
        """Column of row ``i``'s value by the exact rules (remembering hashed strings)."""
        try:
            col = self._category_column(j, c, value)
        except InvalidInputError as exc:
            raise InvalidInputError(f"contexts[{i}].{c.name}", exc.expected, exc.got) from None
        if c.encoding == "hash" and col >= 0 and type(value) is str:
            size = sys.getsizeof(value)
            if len(lookup) >= _HASH_CACHE or self._hash_cache_bytes[j] + size > HASH_CACHE_BYTES:
                lookup.clear()
                self._hash_cache_bytes[j] = 0
            if size <= HASH_CACHE_BYTES:  # a single larger value is hashed, never kept
                lookup[value] = col
                self._hash_cache_bytes[j] += size
        return col

    def _absorb(self, raws: list[float | None]) -> None:
        for f, raw in zip(self.schema.numeric, raws, strict=True):
            if f.standardize == "running" and raw is not None:
                r = self._running[f.name]
                if not r.frozen:
                    r.add(float(raw))

    def state(self) -> dict[str, Any]:
        """JSON-able state: the schema description and the running statistics."""
        return {
            "schema": self.schema.describe(),
            "running": {k: [r.count, r.mean, r.m2] for k, r in self._running.items()},
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore running statistics saved by :meth:`state`.

        Raises
        ------
        CorruptModelError
            When the state belongs to a different schema or is malformed.
        """
        if not isinstance(state, Mapping) or state.get("schema") != self.schema.describe():
            raise CorruptModelError(
                "encoder state: expected the state of this campaign's feature schema, "
                "got the state of a different schema"
            )
        running = state.get("running", {})
        if not isinstance(running, Mapping) or set(running) != set(self._running):
            raise CorruptModelError("encoder state: running statistics do not match the schema")
        for name, triple in running.items():
            try:
                count, mean, m2 = int(triple[0]), float(triple[1]), float(triple[2])
            except (TypeError, ValueError, IndexError) as exc:
                raise CorruptModelError(f"encoder state: running[{name!r}] malformed") from exc
            r = self._running[name]
            r.count, r.mean, r.m2 = count, mean, m2
