"""Readers: logged decisions from Parquet, CSV or DSJson into :class:`LoggedData`.

Parquet and CSV sources follow the logged-data schema (docs/architecture.md, what ``nbo export``
writes); other layouts are read by mapping their columns with a :class:`ColumnMap`. A Parquet source
may be one file, a directory of files or a hive-partitioned dataset (such as the archive ``nbo
journal compact`` writes, ``DIR/campaign=NAME/date=YYYY-MM-DD/part-*.parquet``, whose parts may
carry different offer lists when offers were added between runs: their union is the default, see
:func:`dataset_offer_ids`). DSJson decision-service logs are parsed by vowpal-wabbit-next (see
:mod:`engine.replay.dsjson`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from engine.errors import InvalidInputError
from engine.replay.data import LoggedData
from engine.replay.intervals import customer_keys

FEATURE_NAMES_KEY = b"nbo.feature_names"
ACTIONS_KEYS = (b"nbo.offer_ids", b"nbo.action_ids", b"nbo.actions")


@dataclass(frozen=True)
class ColumnMap:
    """Which source column holds each field of the logged-data schema.

    Parameters
    ----------
    action, propensity, reward : str
        Column names of the logged offer, its propensity and the reward.
    context : str or None
        A list column holding the whole context vector (the nbo schema's ``context``).
    context_columns : tuple of str
        Numeric columns that together form the context, in this order.
    context_prefix : str or None
        Every numeric column whose name starts with this prefix, in source order.
    eligible, timestamp, decision_id, control, explored, customer_id, components : str or None
        Optional columns; a name that is absent from the source is ignored. ``components``: a
        map of name to number per row (the rewards' components, e.g. ``engaged``).
    reward_is_cost : bool
        The column holds a cost: the reward is its negation.

    Examples
    --------
    >>> ColumnMap.parse(["action=offer", "reward=-cost", "context=x_*"]).context_prefix
    'x_'
    """

    action: str = "action"
    propensity: str = "propensity"
    reward: str = "reward"
    context: str | None = "context"
    context_columns: tuple[str, ...] = ()
    context_prefix: str | None = None
    eligible: str | None = "eligible"
    timestamp: str | None = "timestamp"
    decision_id: str | None = "decision_id"
    control: str | None = "control"
    explored: str | None = "explored"
    customer_id: str | None = "customer_id"
    components: str | None = "components"
    reward_is_cost: bool = False

    @classmethod
    def parse(cls, items: list[str] | None) -> ColumnMap:
        """Build from ``FIELD=COLUMN`` strings as given on the command line.

        ``context=a,b,c`` names columns, ``context=x_*`` takes a prefix, ``reward=-cost`` negates
        a cost column.
        """
        values: dict[str, Any] = {}
        allowed = {"action", "propensity", "reward", "context", "eligible", "timestamp"}
        allowed |= {"decision_id", "control", "explored", "customer_id", "components"}
        for item in items or []:
            key, sep, column = item.partition("=")
            key, column = key.strip(), column.strip()
            if not sep or key not in allowed or not column:
                raise InvalidInputError(
                    "--column", f"FIELD=COLUMN with FIELD one of {sorted(allowed)}", item
                )
            if key == "context":
                if column.endswith("*"):
                    values.update(context=None, context_prefix=column[:-1])
                elif "," in column:
                    names = tuple(c.strip() for c in column.split(",") if c.strip())
                    values.update(context=None, context_columns=names)
                else:
                    values["context"] = column
            elif key == "reward" and column.startswith("-"):
                values.update(reward=column[1:], reward_is_cost=True)
            else:
                values[key] = column
        return cls(**values)


def read_logs(
    path: str | Path,
    columns: ColumnMap | None = None,
    actions: tuple[str, ...] | None = None,
    *,
    format: str = "auto",
    n_features: int = 32,
) -> LoggedData:
    """Read logged decisions from a file or directory.

    Parameters
    ----------
    path : str or Path
        A Parquet file, a directory (possibly hive-partitioned) of Parquet files, a CSV file, or a
        DSJson file (``.json``, ``.jsonl``, ``.dsjson``).
    columns : ColumnMap, optional
        Column mapping; the nbo schema's names by default.
    actions : tuple of str, optional
        The offer list in policy order. By default the schema metadata ``nbo.offer_ids`` (or
        ``nbo.action_ids``) when present, else the sorted distinct offers seen in the ``action``
        and ``eligible`` columns.
    format : {"auto", "parquet", "csv", "dsjson"}
    n_features : int
        Only for DSJson: the number of hashed context features.

    Returns
    -------
    LoggedData
        Rows with a pending (null) reward are dropped and counted in ``n_pending``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    kind = format if format != "auto" else _guess_format(path)
    if kind == "dsjson":
        from engine.replay.dsjson import read_dsjson

        return read_dsjson(path, n_features=n_features, actions=actions)
    if kind not in ("csv", "parquet"):
        raise InvalidInputError("format", "one of auto, parquet, csv, dsjson", format)
    if kind == "csv":
        try:
            table = pacsv.read_csv(path)
        except pa.ArrowInvalid as exc:
            raise _unreadable(path, "csv", exc) from None
    else:
        dataset = open_dataset(path)
        table = dataset.to_table()
        if actions is None and len(dataset.files) > 1:
            offers = dataset_offer_ids(dataset.files)
            if offers:
                meta = dict(table.schema.metadata or {})
                meta[ACTIONS_KEYS[0]] = json.dumps(list(offers)).encode()
                table = table.replace_schema_metadata(meta)
    return from_table(table, columns, actions, source=str(path))


def open_dataset(path: str | Path) -> pads.Dataset:
    """The Parquet file or directory ``path`` as a dataset (hive partitioning).

    Raises
    ------
    InvalidInputError
        Naming ``--logs`` when it is not Parquet (one line, no traceback).
    """
    try:
        dataset = pads.dataset(str(path), format="parquet", partitioning="hive")
        if len(dataset.files) < 2:
            return dataset
        # The schema is the first file's: a column newer files gained (components) would be
        # dropped, so the dataset takes every file's columns.
        schemas = [dataset.schema, *(pq.read_schema(f) for f in dataset.files)]
        unified = pa.unify_schemas(schemas)
        if unified.names == dataset.schema.names:
            return dataset
        return pads.dataset(str(path), format="parquet", partitioning="hive", schema=unified)
    except pa.ArrowInvalid as exc:  # not what its name or --format says it is
        raise _unreadable(Path(path), "parquet", exc) from None


def _unreadable(path: Path, kind: str, exc: Exception) -> InvalidInputError:
    reason = str(exc).splitlines()[0]
    if "magic bytes" in reason:
        reason = "not a Parquet file (no Parquet footer)"
    return InvalidInputError(
        "--logs", f"a readable {kind} file or directory (or pass --format)", f"{path}: {reason}"
    )


def dataset_offer_ids(files: list[str]) -> tuple[str, ...]:
    """The offer ids the files' schema metadata names (``nbo.offer_ids``), in the order they
    are first seen, files in path order: a dataset's schema carries its first file's, which
    lacks offers added later.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> for name, offers in (("a", ["none", "gift"]), ("b", ["none", "gift", "new"])):
    ...     meta = {b"nbo.offer_ids": json.dumps(offers).encode()}
    ...     pq.write_table(pa.table({"x": [1]}).replace_schema_metadata(meta),
    ...                    os.path.join(d, name + ".parquet"))
    >>> dataset_offer_ids(sorted(os.path.join(d, f) for f in os.listdir(d)))
    ('none', 'gift', 'new')
    """
    seen: dict[str, None] = {}
    for file in sorted(files):
        metadata = pq.read_schema(file).metadata or {}
        seen.update(dict.fromkeys(_actions_from_metadata_dict(metadata)))
    return tuple(seen)


def _guess_format(path: Path) -> str:
    if path.is_dir():
        return "parquet"
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".json", ".jsonl", ".dsjson"):
        return "dsjson"
    return "parquet"


def from_table(
    table: pa.Table,
    columns: ColumnMap | None = None,
    actions: tuple[str, ...] | None = None,
    *,
    source: str = "",
    row_offset: int = 0,
) -> LoggedData:
    """Convert an Arrow table in the logged-data schema (or mapped by ``columns``).

    ``row_offset``: rows before this table in its log (the table is one fragment of it): error
    messages and ``source_row`` count rows from the log's start, and null customer ids are
    keyed apart from the other fragments' ones.

    Examples
    --------
    >>> import pyarrow as pa
    >>> table = pa.table({
    ...     "context": pa.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], pa.list_(pa.float64(), 2)),
    ...     "action": ["b", "a", "b"], "propensity": [0.5, 0.5, 0.5], "reward": [1.0, None, 0.0]})
    >>> data = from_table(table)
    >>> data.actions, data.action.tolist(), data.n_pending
    (('a', 'b'), [1, 1], 1)
    """
    cols = columns or ColumnMap()
    names = set(table.column_names)
    for field_name in ("action", "propensity", "reward"):
        column = getattr(cols, field_name)
        if column not in names:
            raise InvalidInputError(
                f"column {column!r}", f"a column in the source (has {sorted(names)})", "nothing"
            )
    n = table.num_rows
    reward_column = table.column(cols.reward)
    pending = reward_column.is_null().to_numpy(zero_copy_only=False)
    keep = np.flatnonzero(~pending)
    offers_seen = set(pc.unique(table.column(cols.action).cast(pa.string())).to_pylist())
    source_row = keep.astype(np.int64) + row_offset
    if pending.any():
        table = table.take(pa.array(keep))

    decision_id = _optional(table, cols.decision_id)
    context, feature_names = _context(table, cols, decision_id, source_row)
    raw_actions = _strings(table, cols.action, source_row, decision_id)
    eligible_lists = _eligible_lists(table, cols.eligible)
    actions = tuple(actions) if actions else _actions_from_metadata(table)
    if not actions:
        seen = offers_seen
        if eligible_lists is not None:
            seen.update(pc.unique(eligible_lists.flatten()).to_pylist())
        actions = tuple(sorted(str(a) for a in seen if a is not None))
    action = _indices(raw_actions, actions)
    if (action < 0).any():
        i = int(np.argmax(action < 0))
        raise InvalidInputError(
            _label(cols.action, i, source_row, decision_id),
            f"an offer id in {list(actions)}",
            repr(raw_actions[i].as_py()),
        )
    eligible = None
    if eligible_lists is not None and cols.eligible is not None:
        eligible = _eligible_mask(eligible_lists, actions, cols.eligible, source_row, decision_id)

    reward = _floats(table, cols.reward)
    if cols.reward_is_cost:
        reward = -reward
    data = LoggedData(
        context=context,
        action=action,
        propensity=_floats(table, cols.propensity, source_row, decision_id),
        reward=reward,
        actions=actions,
        feature_names=feature_names,
        eligible=eligible,
        timestamp=_timestamps(table, cols.timestamp),
        decision_id=decision_id,
        control=_bools(table, cols.control),
        explored=_bools(table, cols.explored),
        customer=_customer_keys(table, cols.customer_id, source_row),
        signals=_signals(table, cols.components, source_row, decision_id),
        source_row=source_row,
        n_pending=int(n - len(keep)),
        source=source,
    )
    return data.sorted_by_time()


# ---------------------------------------------------------------------- columns
def _optional(table: pa.Table, name: str | None) -> pa.Array | None:
    if name is None or name not in table.column_names:
        return None
    return table.column(name).cast(pa.string()).combine_chunks()


def _signals(
    table: pa.Table, name: str | None, source_row: np.ndarray, decision_id: pa.Array | None
) -> dict[str, np.ndarray] | None:
    """A map column of the rewards' components as one float column per name (NaN where a row
    lacks it), or None without the column or any component."""
    if name is None or name not in table.column_names:
        return None
    column = table.column(name).combine_chunks()
    if not pa.types.is_map(column.type):
        raise InvalidInputError(
            f"column {name!r}", "a map of component name to number", str(column.type)
        )
    n = len(column)
    offsets = column.offsets.to_numpy()
    rows = np.repeat(np.arange(n), np.diff(offsets))  # each entry's row (null maps have none)
    start, stop = int(offsets[0]), int(offsets[-1])
    keys = column.keys.slice(start, stop - start).to_numpy(zero_copy_only=False)
    values = column.items.slice(start, stop - start).to_numpy(zero_copy_only=False)
    values = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(rows[bad[0]])
        raise InvalidInputError(
            _label(name, i, source_row, decision_id), "finite numbers", repr(values[bad[0]])
        )
    out: dict[str, np.ndarray] = {}
    for key in np.unique(keys):
        hit = keys == key
        signal = out[str(key)] = np.full(n, np.nan)
        signal[rows[hit]] = values[hit]
    return out or None


def _label(column: str, i: int, source_row: np.ndarray, decision_id: pa.Array | None) -> str:
    label = f"column {column!r}, row {int(source_row[i])}"
    if decision_id is not None:
        label += f" (decision_id {decision_id[i].as_py()!r})"
    return label


def _first_null(column: pa.ChunkedArray) -> int:
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    return int(np.argmax(nulls)) if nulls.any() else -1


def _floats(
    table: pa.Table,
    name: str,
    source_row: np.ndarray | None = None,
    decision_id: pa.Array | None = None,
) -> np.ndarray:
    column = table.column(name)
    bad = _first_null(column)
    if bad >= 0:
        rows = source_row if source_row is not None else np.arange(table.num_rows)
        raise InvalidInputError(_label(name, bad, rows, decision_id), "a number", None)
    try:
        column = column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"column {name!r}", "numbers", str(column.type)) from exc
    return column.to_numpy()


def _strings(
    table: pa.Table, name: str, source_row: np.ndarray, decision_id: pa.Array | None
) -> pa.Array:
    column = table.column(name)
    bad = _first_null(column)
    if bad >= 0:
        raise InvalidInputError(_label(name, bad, source_row, decision_id), "an offer id", None)
    return column.cast(pa.string()).combine_chunks()


def _indices(values: pa.Array, actions: tuple[str, ...]) -> np.ndarray:
    """Index of each value in ``actions`` (vectorized in Arrow), -1 where it is not there."""
    found = pc.index_in(values, value_set=pa.array(actions, pa.string()))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _customer_keys(table: pa.Table, name: str | None, rows: np.ndarray) -> np.ndarray | None:
    """Stable int64 keys of the customer ids (:func:`engine.replay.intervals.customer_keys`):
    the same id gets the same key in every fragment; a null id is a customer of its own."""
    if name is None or name not in table.column_names:
        return None
    return customer_keys(table.column(name), rows)


def _bools(table: pa.Table, name: str | None) -> np.ndarray | None:
    if name is None or name not in table.column_names:
        return None
    column = table.column(name).fill_null(False).cast(pa.bool_())
    return column.to_numpy(zero_copy_only=False)


def _timestamps(table: pa.Table, name: str | None) -> np.ndarray | None:
    if name is None or name not in table.column_names:
        return None
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("us", tz=column.type.tz))
    elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.timestamp("us", tz="UTC"))
    column = column.fill_null(0)
    return column.cast(pa.int64()).to_numpy()


def _eligible_lists(table: pa.Table, name: str | None) -> pa.ListArray | None:
    if name is None or name not in table.column_names:
        return None
    column = table.column(name).combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.split_pattern(column, "|")  # CSV: offers joined by "|"
    return column


def _eligible_mask(
    lists: Any,
    actions: tuple[str, ...],
    name: str,
    source_row: np.ndarray,
    decision_id: pa.Array | None,
) -> np.ndarray:
    n = len(lists)
    mask = np.zeros((n, len(actions)), dtype=np.bool_)
    null_rows = lists.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(lists).fill_null(0).to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(n), lengths)
    values = lists.flatten().cast(pa.string())
    cols = _indices(values, actions)
    if (cols < 0).any():
        j = int(np.argmax(cols < 0))
        raise InvalidInputError(
            _label(name, int(rows[j]), source_row, decision_id),
            f"offer ids in {list(actions)}",
            repr(values[j].as_py()),
        )
    mask[rows, cols] = True
    mask[null_rows] = True  # unknown eligibility: every offer
    return mask


def _actions_from_metadata(table: pa.Table) -> tuple[str, ...]:
    return _actions_from_metadata_dict(table.schema.metadata or {})


def _actions_from_metadata_dict(meta: dict[bytes, bytes]) -> tuple[str, ...]:
    for key in ACTIONS_KEYS:
        names = _parse_names(meta.get(key))
        if names:
            return names
    return ()


def _parse_names(raw: bytes | None) -> tuple[str, ...]:
    if not raw:
        return ()
    text = raw.decode()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return tuple(s.strip() for s in text.split(",") if s.strip())
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _context(
    table: pa.Table,
    cols: ColumnMap,
    decision_id: pa.Array | None,
    source_row: np.ndarray,
) -> tuple[np.ndarray, tuple[str, ...]]:
    n = table.num_rows
    if cols.context_prefix is not None or cols.context_columns:
        names = cols.context_columns or tuple(
            c for c in table.column_names if c.startswith(cols.context_prefix or "")
        )
        if not names:
            raise InvalidInputError(
                "context", f"columns starting with {cols.context_prefix!r}", table.column_names
            )
        out = np.empty((n, len(names)))
        for j, name in enumerate(names):
            if name not in table.column_names:
                raise InvalidInputError(f"column {name!r}", "a context column", "nothing")
            out[:, j] = _floats(table, name, source_row, decision_id)
        return out, tuple(names)
    if cols.context is None or cols.context not in table.column_names:
        return np.zeros((n, 0)), ()
    name = cols.context
    column = table.column(name)
    meta = table.schema.metadata or {}
    feature_names = _parse_names(meta.get(FEATURE_NAMES_KEY))
    if pa.types.is_fixed_size_list(column.type):
        d = column.type.list_size
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = pc.list_value_length(column).fill_null(-1).to_numpy(zero_copy_only=False)
        d = int(lengths[0]) if n else 0
        if (lengths != d).any():
            i = int(np.argmax(lengths != d))
            raise InvalidInputError(
                _label(name, i, source_row, decision_id),
                f"a context of length {d} like row {int(source_row[0])} (ragged contexts)",
                f"length {int(lengths[i])}" if lengths[i] >= 0 else None,
            )
    else:
        raise InvalidInputError(f"column {name!r}", "a list of float64", str(column.type))
    bad = _first_null(column)
    if bad >= 0:
        raise InvalidInputError(_label(name, bad, source_row, decision_id), "a context", None)
    # Chunk by chunk into one array: combining the chunks first would copy (and fault in) the
    # whole context once more; a single chunk is used without any copy.
    blocks = []
    start = 0
    for chunk in column.chunks:
        values = chunk.flatten()
        if values.null_count:
            flat_bad = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False)))
            row = start + flat_bad // max(d, 1)
            raise InvalidInputError(
                _label(name, row, source_row, decision_id), "finite values", None
            )
        blocks.append(values.cast(pa.float64()).to_numpy(zero_copy_only=False).reshape(-1, d))
        start += len(chunk)
    if len(blocks) == 1:
        context = blocks[0]
    else:
        context = np.empty((n, d))
        start = 0
        for block in blocks:
            context[start : start + block.shape[0]] = block
            start += block.shape[0]
    if feature_names and len(feature_names) != d:
        feature_names = ()
    return context, feature_names
