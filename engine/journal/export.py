"""Journal -> Parquet in the logged-data schema, what engine/replay reads.

The schema is docs/architecture.md, section "Logged-data schema".

Columns: decision_id, timestamp (timestamp[us, UTC]), campaign, customer_id, context
(fixed_size_list<float64>[d]; names in the schema metadata ``nbo.feature_names``), action,
propensity, reward (net reward; null while pending or when a decision expired without a default),
eligible (list<string>), explored, control, model_version. A campaign with ``[[dimensions]]``
has, after ``action`` (the combination id, ``"upgrade+email+now"``), a string column per
dimension (``offer``, ``channel``, ...) and their names in ``nbo.dimensions``. Metadata also
carries ``nbo.offer_ids`` and ``nbo.campaign``.

The rows are read through :class:`~engine.journal.base.JournalBackend` (any backend: give
:func:`export_parquet` an open journal, or the path of a SQLite file). Rows are streamed in
chunks, so memory stays bounded for any journal size, into a file that appears whole or not
at all (:func:`write_logged`, which the journal's archive also writes with). When the campaign's
feature schema changed over time, only rows encoded with the newest schema are exported (the
context column has a single width); the result says how many rows were skipped.

Only served decisions are exported: a deferred decision (``Decide(defer_activation=true)``) is
exported once activated (its row is the decision's, at the decision's time); one never activated
was not delivered, and is left out whether pending or lapsed (so is it from the archive of
:mod:`engine.journal.compact`).

Examples
--------
>>> import tempfile, os
>>> import pyarrow.parquet as pq
>>> from engine.core import Engine
>>> d = tempfile.mkdtemp()
>>> eng = Engine.from_config("examples/renewal.toml", data_dir=d, clock=lambda: 1.7e9)
>>> dec = eng.decide("c1", {"tenure_months": 3, "monthly_price": 30.0, "plan": "basic"})
>>> eng.close()
>>> journal = os.path.join(d, "renewal.journal.sqlite")
>>> summary = export_parquet(journal, os.path.join(d, "l.parquet"))
>>> summary["rows"], pq.read_table(os.path.join(d, "l.parquet")).column_names[:4]
(1, ['decision_id', 'timestamp', 'campaign', 'customer_id'])
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import NotFoundError
from engine.features.combinations import SEPARATOR
from engine.journal.base import JournalBackend
from engine.journal.records import ExportedDecision
from engine.journal.store import Journal

CHUNK_ROWS = 65536
#: Journal meta key holding a campaign's dimension names (JSON list, "offer" first).
DIMENSIONS_META = "dimensions"
_OFFER_LIST = pa.list_(pa.string())
#: A reward's components (``engaged``, ``complaints``, ...): null without any.
_COMPONENTS = pa.map_(pa.string(), pa.float64())


def logged_schema(
    n_features: int, metadata: dict[str, str] | None = None, dimensions: Sequence[str] = ()
) -> pa.Schema:
    """The Arrow schema of the logged-data table for contexts of width ``n_features``; a
    campaign with dimensions has a string column per dimension (``offer``, ``channel``, ...)
    after ``action``, the combination id."""
    fields = [
        pa.field("decision_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("campaign", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("context", pa.list_(pa.float64(), n_features), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        *(pa.field(name, pa.string()) for name in dimensions),
        pa.field("propensity", pa.float64(), nullable=False),
        pa.field("reward", pa.float64(), nullable=True),
        pa.field("eligible", pa.list_(pa.string())),
        pa.field("explored", pa.bool_()),
        pa.field("control", pa.bool_()),
        pa.field("model_version", pa.string()),
        pa.field("components", _COMPONENTS),
    ]
    meta = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
    return pa.schema(fields, metadata=meta)


def find_journal(data_dir: str | Path, campaign: str | None = None) -> Path:
    """The journal file of ``campaign`` in ``data_dir`` (the only one when campaign is None)."""
    data_dir = Path(data_dir)
    if campaign is not None:
        path = data_dir / f"{campaign}.journal.sqlite"
        if not path.is_file():
            raise NotFoundError(f"campaign: expected a journal at {path}, got no such file")
        return path
    found = sorted(data_dir.glob("*.journal.sqlite"))
    if len(found) != 1:
        names = [p.name.removesuffix(".journal.sqlite") for p in found]
        raise NotFoundError(
            f"campaign: expected one of {names} (data dir {data_dir} holds {len(found)} journals)"
            if found
            else f"data_dir: expected a directory with a <campaign>.journal.sqlite, got {data_dir}"
        )
    return found[0]


@dataclass(frozen=True)
class LoggedLayout:
    """How a journal's decisions become logged-data tables (what ``nbo export`` and the archive
    of ``nbo journal compact`` write).

    The context column has one width, so only decisions made over the newest catalog's feature
    names fit (:meth:`fits`); ``catalogs`` are the catalogs with those names.
    """

    schema: pa.Schema
    campaign: str
    offer_ids: list[str]
    feature_names: list[str]
    catalogs: frozenset[int]
    campaign_of: dict[int, str]
    dimensions: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def fits(self, row: ExportedDecision) -> bool:
        """True when ``row`` was made over the layout's feature names (and has their width)."""
        return row.catalog in self.catalogs and len(row.context) == 8 * self.n_features

    def table(self, rows: Sequence[ExportedDecision]) -> pa.Table:
        """``rows`` (each one that :meth:`fits`) as a table of :attr:`schema`."""
        return _chunk_table(
            list(rows), self.schema, self.n_features, self.campaign_of, self.dimensions
        )


def logged_layout(journal: JournalBackend) -> LoggedLayout:
    """The layout of ``journal``'s newest catalog (its schema metadata: feature names, offer ids,
    campaign and the encoder's frozen statistics when the journal has them).

    Raises
    ------
    NotFoundError
        For a journal without any catalog (nothing was ever decided).
    """
    catalogs = journal.catalogs()
    if not catalogs:
        where = getattr(journal, "location", "journal")
        raise NotFoundError(f"{where}: expected decisions, got an empty journal")
    campaign, offer_ids, feature_names = catalogs[max(catalogs)]
    metadata = {
        "nbo.feature_names": json.dumps(feature_names),
        "nbo.offer_ids": json.dumps(offer_ids),
        "nbo.campaign": campaign,
    }
    encoder = journal.get_meta("encoder")  # running statistics, once they froze
    if encoder is not None:
        metadata["nbo.encoder"] = encoder  # nbo train copies it into its snapshot
    stored = journal.get_meta(DIMENSIONS_META)
    dimensions = tuple(json.loads(stored)) if stored else ()
    if dimensions:
        metadata["nbo.dimensions"] = stored or ""
    return LoggedLayout(
        schema=logged_schema(len(feature_names), metadata, dimensions),
        dimensions=dimensions,
        campaign=campaign,
        offer_ids=offer_ids,
        feature_names=feature_names,
        catalogs=frozenset(i for i, c in catalogs.items() if c[2] == feature_names),
        campaign_of={i: c[0] for i, c in catalogs.items()},
    )


def write_logged(out_path: str | Path, schema: pa.Schema, tables: Iterable[pa.Table]) -> Path:
    """Write ``tables`` as one Parquet file at ``out_path``, all or nothing.

    The file is written under a hidden temporary name beside ``out_path`` (Parquet readers skip
    names starting with a dot), flushed to disk, then renamed into place and the directory
    flushed too: once this returns, the file survives a crash or a power loss whole; before,
    ``out_path`` is untouched (an existing file there is replaced only by the complete new one).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in tables:
                writer.write_table(table)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(out_path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return out_path


def export_parquet(
    journal: JournalBackend | str | Path,
    out_path: str | Path,
    closed_only: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a journal's decisions as a Parquet file in the logged-data schema.

    Parameters
    ----------
    journal : JournalBackend, or the path of a ``<campaign>.journal.sqlite``
        An open journal is read and left open; a path is opened read-only and closed.
    out_path : path of the Parquet file to write (parent directories are created)
    closed_only : bool
        Only decisions with a reward (rewarded or expired with a default reward).
    progress : callable, optional
        Called with the number of rows written after each chunk.

    Returns
    -------
    dict
        ``rows``, ``skipped`` (rows of an older feature schema), ``path``, ``n_features``,
        ``feature_names``, ``campaign``.
    """
    opened = not isinstance(journal, JournalBackend)
    if not isinstance(journal, JournalBackend):
        journal = Journal(journal, readonly=True)
    counted = {"rows": 0, "skipped": 0}
    try:
        layout = logged_layout(journal)
        backend = journal

        def chunks() -> Iterator[pa.Table]:
            last = 0
            while rows := backend.decisions_for_export(last, CHUNK_ROWS, closed_only=closed_only):
                last = int(rows[-1].seq)
                keep = [r for r in rows if layout.fits(r)]
                counted["skipped"] += len(rows) - len(keep)
                if keep:
                    yield layout.table(keep)
                    counted["rows"] += len(keep)
                if progress is not None:
                    progress(len(rows))

        out_path = write_logged(out_path, layout.schema, chunks())
    finally:
        if opened:
            journal.close()
    return {
        "path": str(out_path),
        "rows": counted["rows"],
        "skipped": counted["skipped"],
        "n_features": layout.n_features,
        "feature_names": layout.feature_names,
        "campaign": layout.campaign,
    }


def _chunk_table(
    rows: list[ExportedDecision],
    schema: pa.Schema,
    d: int,
    campaign_of: dict[int, str],
    dimensions: tuple[str, ...] = (),
) -> pa.Table:
    n = len(rows)
    flat = np.frombuffer(b"".join(r.context for r in rows), dtype=np.float64)
    context = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float64()), d)
    columns = [
        pa.array([r.decision_id for r in rows], pa.string()),
        pa.array(np.fromiter((r.ts_us for r in rows), np.int64, n), pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        ),
        pa.array([campaign_of[r.catalog] for r in rows], pa.string()),
        pa.array([r.customer_id for r in rows], pa.string()),
        context,
        pa.array([r.action for r in rows], pa.string()),
        *_dimension_columns([r.action for r in rows], len(dimensions)),
        pa.array([r.propensity for r in rows], pa.float64()),
        pa.array([r.reward for r in rows], pa.float64()),
        pa.array([r.eligible.split(",") if r.eligible else [] for r in rows], _OFFER_LIST),
        pa.array([bool(r.explored) for r in rows], pa.bool_()),
        pa.array([bool(r.control) for r in rows], pa.bool_()),
        pa.array([r.model_version for r in rows], pa.string()),
        pa.array([_parts(r.components) for r in rows], _COMPONENTS),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _parts(text: str | None) -> list[tuple[str, float]] | None:
    return None if text is None else sorted(json.loads(text).items())


def _dimension_columns(actions: list[str], n_dimensions: int) -> list[pa.Array]:
    """One column per dimension: each action's value (null for an action of another shape,
    a decision made before the campaign had its dimensions)."""
    if not n_dimensions:
        return []
    parts = [a.split(SEPARATOR) for a in actions]
    return [
        pa.array([p[k] if len(p) == n_dimensions else None for p in parts], pa.string())
        for k in range(n_dimensions)
    ]
