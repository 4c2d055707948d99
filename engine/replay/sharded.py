"""Evaluation of a Parquet dataset whose tasks read their own fragments: the driver never holds the
logs, only per-fragment summaries, so its memory grows with the number of fragments, not with
rows or customers.

The driver lists the fragments (:func:`list_fragments`: row groups of every file, in file order)
and hands each task a :class:`Fragment` (path + row-group ids); the task reads it (only the
columns it uses, on one thread). The passes:

1. *scan* (columns action, propensity, reward, timestamp, customer_id, control): rows, pending
   rows, time range, offer counts and control rows' offers of each fragment. The fragments must
   follow each other in time (each one's first timestamp at or after the previous one's last),
   which makes their concatenation the time order that :func:`engine.replay.evaluate.evaluate`
   sorts into; the split is then a global row cut. With a customer column each fragment's
   distinct customer keys (:func:`engine.replay.intervals.customer_keys`) go to a shuffle,
   bucketed by a hash of the key, and one task per bucket counts them (the number of folds and
   the "customers return" rule need the number of customers).
2. *fit*: per fragment, the cross-fitted reward model's sums (every row; a row's fold is a
   seeded hash of its customer's key, or of its index without a customer column) and the
   per-offer ridge sums of each static ridge candidate (train rows); the driver adds them and
   solves (:func:`engine.replay.rewardmodel.cross_fit_from_sums`,
   :meth:`engine.policies.linear.RidgeStatistics`). Static candidates whose statistics do not add
   are trained by one task that reads the train fragments in order.
3. *score*: one task per fragment with test rows scores every frozen candidate and baseline;
   external candidates too: a snapshot's policy on the fragment's rows, or a probability file's
   rows for the fragment's decision ids (a filtered read of a Parquet file), checked as in
   memory (the first bad row of the first fragment that has one is reported).
4. *replay*: one task per learning candidate reads the test fragments one at a time.
5. *customers* (clustered intervals only): score and replay tasks put each customer's partial
   totals into the shuffle (Ray's object store, or files of a temporary directory in-process)
   instead of returning them; one task per bucket completes its customers and returns their
   :class:`~engine.replay.intervals.ClusterSums` (Σφ², the influence range and the bootstrap sums
   with per-customer weights), which add over buckets.

Shards are the fragments' test parts. Bootstrap weights depend on a row's index in the evaluation
split (or a customer's key) only, so the numbers equal the in-memory evaluation run with the same
shard boundaries (every row group of ``shard_rows`` rows and a split on a row-group boundary, which
the frozen policies' seeds and the learning replay's batches follow), up to summation order, and
are identical in-process, on local Ray and on a cluster.
Not supported here (``nbo evaluate`` reads such logs into memory and says why): 0/1 context
columns without an ``eligible`` column (the unseen-offer strata need every row), and snapshots
whose choice probabilities are sampled (Thompson sampling, VW: sampled in blocks of the whole
log, which a fragment cannot reproduce; the CLI checks before it starts). With trained
candidates beside them, a probability file is checked on the evaluation rows only (in memory:
on every row).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import pickle
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.errors import InvalidInputError
from engine.policies import Policy, RidgeStatistics, engagement_columns, make_policy
from engine.replay.candidates import (
    Candidate,
    EvalConfig,
    Shard,
    ShardSummary,
    baselines,
    learning_replay,
    static_shard,
)
from engine.replay.data import LoggedData, signal_rows
from engine.replay.evaluate import (
    CLUSTER_CHOICES,
    EvaluateOptions,
    EvaluateSettings,
    apply_cluster_sums,
    collect_shard_results,
    mark_failed,
    paired_lifts,
    row_sums,
)
from engine.replay.external import load_distribution
from engine.replay.fanout import Runner, Task, TaskFailure
from engine.replay.intervals import (
    ClusterSums,
    customer_bucket,
    customer_fold,
    customer_keys,
    merge_keyed,
)
from engine.replay.readers import ColumnMap, dataset_offer_ids, from_table, open_dataset
from engine.replay.results import CandidateResult, Evaluation, Gate
from engine.replay.rewardmodel import RewardSums, cross_fit_from_sums, n_folds, reward_sums
from engine.replay.rewardmodel import row_folds as _row_folds


@dataclass(frozen=True)
class Fragment:
    """Row groups ``row_groups`` of the Parquet file ``path`` (``rows`` rows in the file)."""

    index: int
    path: str
    row_groups: tuple[int, ...]
    rows: int
    first_row: int = 0  # rows (pending ones included) of the fragments before it


@dataclass(frozen=True)
class FragmentScan:
    """What the scan pass learns of one fragment."""

    rows: int  # closed decisions (pending ones dropped)
    pending: int
    t_min: int | None
    t_max: int | None
    offers: dict[str, int]  # logged offer -> rows
    p_min: float
    customers: list[Any] | None = None  # per bucket: the stashed distinct customer keys
    control_offers: dict[str, int] | None = None  # logged offer -> control rows


@dataclass(frozen=True)
class Layout:
    """Where each fragment's rows sit in the time-ordered logs, and what every task shares."""

    actions: tuple[str, ...]
    columns: ColumnMap
    starts: tuple[int, ...]  # global index of each fragment's first row
    counts: tuple[int, ...]
    cut: int  # first test row
    n_rows: int
    folds: int  # 0: no reward model
    seed: int
    unseen: tuple[bool, ...]  # offers never logged (the one stratum without 0/1 columns)
    customers: bool = False  # folds by customer (a customer column)
    clustered: bool = False  # intervals over customers
    buckets: int = 1  # reduce tasks of the customer shuffle
    spill: str | None = None  # in-process: directory of the shuffle's parts (Ray: object store)
    decision_ids: bool = False  # read the decision_id column (external candidates join on it)

    def test_range(self, i: int) -> tuple[int, int]:
        """Rows of fragment i in the test split, as offsets into the fragment."""
        lo = max(self.cut - self.starts[i], 0)
        return min(lo, self.counts[i]), self.counts[i]


def list_fragments(path: str | Path, rows_per_fragment: int = 1) -> list[Fragment]:
    """Every Parquet file of ``path`` (a file or a directory, in path order) cut into fragments of
    consecutive row groups holding at least ``rows_per_fragment`` rows (1: one row group each).

    Only the files' footers are read."""
    dataset = open_dataset(path)
    out: list[Fragment] = []
    seen = 0
    for file in sorted(dataset.files):
        meta = pq.ParquetFile(file).metadata
        group: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            group.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= rows_per_fragment:
                out.append(Fragment(len(out), file, tuple(group), rows, seen))
                seen += rows
                group, rows = [], 0
        if group:
            out.append(Fragment(len(out), file, tuple(group), rows, seen))
            seen += rows
    return out


def _read(fragment: Fragment, columns: list[str] | None = None) -> pa.Table:
    # One thread: a task is one core's work (threads only contend with the other tasks), and
    # memory-mapped, so the file's pages are not copied into a read buffer first.
    file = pq.ParquetFile(fragment.path, memory_map=True)
    return file.read_row_groups(list(fragment.row_groups), columns=columns, use_threads=False)


def _evaluation_columns(
    fragment: Fragment, columns: ColumnMap, decision_ids: bool = False
) -> list[str]:
    """The columns the fit and score passes use (not the control and explored flags, nor the
    decision ids unless an external candidate joins on them)."""
    names = pq.ParquetFile(fragment.path).schema_arrow.names
    wanted = {
        columns.action,
        columns.propensity,
        columns.reward,
        columns.context,
        columns.eligible,
        columns.timestamp,
        columns.customer_id,
        columns.components,
        columns.decision_id if decision_ids else None,
        *columns.context_columns,
    }
    prefix = columns.context_prefix
    return [n for n in names if n in wanted or (prefix is not None and n.startswith(prefix))]


def scan_fragment(
    fragment: Fragment, columns: ColumnMap, buckets: int = 1, spill: str | None = None
) -> FragmentScan:
    """The scan pass of one fragment (reads four columns, and the customer column when there
    is one: its distinct keys go to the shuffle, bucketed)."""
    names = set(pq.ParquetFile(fragment.path).schema_arrow.names)
    wanted = [c for c in (columns.action, columns.propensity, columns.reward) if c in names]
    timestamp = columns.timestamp if columns.timestamp in names else None
    customer = columns.customer_id if columns.customer_id in names else None
    control = columns.control if columns.control in names else None
    extra = [c for c in (timestamp, customer, control) if c is not None and c not in wanted]
    table = _read(fragment, [*wanted, *extra])
    positions = np.arange(table.num_rows) + fragment.first_row
    if columns.reward in names:
        valid = pc.is_valid(table.column(columns.reward))
        closed = table.filter(valid)
        positions = positions[valid.to_numpy(zero_copy_only=False)]
    else:
        closed = table
    stashes = None
    if customer is not None:
        keys = np.unique(customer_keys(closed.column(customer), positions))
        bucket = customer_bucket(keys, buckets)
        stashes = [_stash(keys[bucket == j], spill) for j in range(buckets)]
    t_min = t_max = None
    if timestamp is not None and closed.num_rows:
        ts = closed.column(timestamp).cast(pa.int64())
        t_min, t_max = int(pc.min(ts).as_py()), int(pc.max(ts).as_py())
    offers: dict[str, int] = {}
    if columns.action in names and closed.num_rows:
        counts = pc.value_counts(closed.column(columns.action).cast(pa.string()))
        offers = {str(v["values"]): int(v["counts"]) for v in counts.to_pylist()}
    control_offers = None
    if control is not None and columns.action in names:
        flag = closed.column(control).fill_null(False).cast(pa.bool_())
        chosen = closed.filter(flag).column(columns.action).cast(pa.string())
        control_offers = {
            str(v["values"]): int(v["counts"]) for v in pc.value_counts(chosen).to_pylist()
        }
    p_min = 1.0
    if columns.propensity in names and closed.num_rows:
        p_min = float(pc.min(closed.column(columns.propensity)).as_py())
    return FragmentScan(
        closed.num_rows,
        table.num_rows - closed.num_rows,
        t_min,
        t_max,
        offers,
        p_min,
        stashes,
        control_offers,
    )


def count_bucket(stashes: list[Any]) -> int:
    """Distinct customers of one bucket over every fragment."""
    parts = [_unstash(x) for x in stashes]
    return int(np.unique(np.concatenate(parts)).shape[0]) if parts else 0


def _stash(value: Any, spill: str | None) -> Any:
    """Keep a shuffle part off the driver: in the Ray object store (``spill`` None, in a
    task on Ray) or in a file of the in-process run's spill directory."""
    if spill is None:
        import ray

        return ray.put(value)
    path = Path(spill) / f"{uuid.uuid4().hex}.pkl"
    with path.open("wb") as f:
        pickle.dump(value, f, protocol=5)
    return str(path)


def _unstash(handle: Any) -> Any:
    if isinstance(handle, str):
        with open(handle, "rb") as f:
            return pickle.load(f)
    import ray

    return ray.get(handle)


def read_fragment(fragment: Fragment, layout: Layout) -> LoggedData:
    """One fragment's closed decisions in time order, offers indexed as in ``layout.actions``."""

    def convert(table: pa.Table) -> LoggedData:
        return from_table(
            table,
            layout.columns,
            layout.actions,
            source=fragment.path,
            row_offset=fragment.first_row,
        )

    try:
        wanted = _evaluation_columns(fragment, layout.columns, layout.decision_ids)
        return convert(_read(fragment, wanted))
    except InvalidInputError:
        return convert(_read(fragment))  # again with every column: the message names the id


@dataclass(frozen=True, eq=False)
class FitPart:
    """What the fit pass returns for one fragment."""

    rewards: RewardSums | None
    ridge: dict[str, RidgeStatistics]  # static candidate label -> statistics of its train rows
    binary: np.ndarray  # (n_features,) bool: the column is 0/1 on this fragment
    uniform: bool
    eligible: bool


def fit_fragment(
    fragment: Fragment, layout: Layout, statics: list[Candidate], config: EvalConfig
) -> FitPart:
    """The fit pass of one fragment: reward-model sums over every row (with a reward model) and
    each static ridge candidate's statistics over the fragment's train rows."""
    data = read_fragment(fragment, layout)
    start, k = layout.starts[fragment.index], len(layout.actions)
    sums = None
    if layout.folds:
        fold = _folds(data, layout, start)
        sums = reward_sums(data.context, data.action, data.reward, k, fold, layout.folds)
    n_train = min(max(layout.cut - start, 0), data.n_rounds)
    ridge: dict[str, RidgeStatistics] = {}
    by_weighting: dict[bool, RidgeStatistics] = {}  # candidates differ only in how they choose
    d = data.n_features
    for c in statics:
        policy = make_policy(c.spec, k, d, seed=config.seed)
        weighted = bool(policy.importance_weighting)  # type: ignore[attr-defined]
        if weighted not in by_weighting:
            if sums is not None and n_train == data.n_rounds and not weighted:
                # A train-only fragment: the reward model's Gram blocks already hold sum x x^T
                # and sum r x per offer (summed over its folds).
                by_weighting[weighted] = RidgeStatistics(
                    sums.gram[:, :, :d, :d].sum(axis=0),
                    sums.rhs[:, :, :d].sum(axis=0),
                    sums.gram[:, :, d, d].sum(axis=0),
                    n_train,
                    np.bincount(data.action, data.reward * data.reward, k).astype(np.float64),
                )
            else:
                by_weighting[weighted] = policy.sufficient_statistics(  # type: ignore[attr-defined]
                    data.context[:n_train],
                    data.action[:n_train],
                    data.reward[:n_train],
                    data.propensity[:n_train],
                )
        ridge[c.label] = by_weighting[weighted]
    binary = np.all((data.context == 0.0) | (data.context == 1.0), axis=0)
    return FitPart(sums, ridge, binary, data.is_uniform(), data.eligible is not None)


def _shard(fragment: Fragment, layout: Layout, index: int) -> Shard | None:
    found = _test_part(fragment, layout, index)
    return None if found is None else found[0]


def _test_part(
    fragment: Fragment, layout: Layout, index: int
) -> tuple[Shard, LoggedData, int] | None:
    """The fragment's test rows as a shard, as logged data, and the global index of the
    first one (None without test rows)."""
    lo, hi = layout.test_range(fragment.index)
    if hi <= lo:
        return None
    data = read_fragment(fragment, layout).take(slice(lo, hi))
    start = layout.starts[fragment.index] + lo
    fold = None
    if layout.folds:
        fold = _folds(data, layout, start)
    unseen = None
    if data.eligible is None:
        unseen = np.broadcast_to(np.array(layout.unseen), (data.n_rounds, len(layout.actions)))
    shard = Shard(
        index=index,
        context=data.context,
        action=data.action,
        propensity=data.propensity,
        reward=data.reward,
        mask=data.eligible,
        signals=data.signals,
        cluster=data.customer if layout.clustered else None,
        fold=fold,
        start=start - layout.cut,
        unseen=unseen,
    )
    return shard, data, start


def _folds(data: LoggedData, layout: Layout, start: int) -> np.ndarray:
    """Cross-fitting folds of a fragment's rows (``start``: its first row's global index):
    by customer key, or each row its own unit."""
    if layout.customers and data.customer is not None:
        return customer_fold(data.customer, layout.folds, layout.seed)
    return _row_folds(layout.n_rows, layout.folds, layout.seed, start, start + data.n_rounds)


def _shuffle(
    summaries: list[ShardSummary], layout: Layout
) -> tuple[list[ShardSummary], list[Any] | None]:
    """Split the per-customer totals off a task's summaries (one per candidate and shard, in
    order): they go to the shuffle, bucketed by customer, as (keys, totals (n, slots, 4)) per
    bucket; the driver gets the summaries without them."""
    if not layout.clustered:
        return summaries, None
    keyed = []
    by_shard: dict[int, list[ShardSummary]] = {}
    for s in summaries:
        by_shard.setdefault(id(s.clusters), []).append(s)
    for group in by_shard.values():
        if group[0].clusters is None or not group[0].clusters.size:
            continue
        stacked = [np.stack([s.cluster_totals[n] for n in s.cluster_totals], axis=1) for s in group]
        keyed.append((group[0].clusters, np.concatenate(stacked, axis=1)))
    keys, totals = merge_keyed(keyed)
    bucket = customer_bucket(keys, layout.buckets)
    stashes = [
        _stash((keys[bucket == j], totals[bucket == j]), layout.spill)
        for j in range(layout.buckets)
    ]
    stripped = [dataclasses.replace(s, clusters=None, cluster_totals={}) for s in summaries]
    return stripped, stashes


def reduce_bucket(
    parts: list[list[Any]], sums: list[np.ndarray], n_bootstrap: int, seed: int
) -> list[ClusterSums]:
    """One bucket of the customer shuffle: per group of slots (the frozen candidates, or one
    learning candidate), its tasks' parts merged into complete customers and summarized
    against the slots' global sums (:class:`engine.replay.intervals.ClusterSums`)."""
    out = []
    for handles, group_sums in zip(parts, sums, strict=True):
        keys, totals = merge_keyed([_unstash(h) for h in handles])
        if not keys.size:
            totals = np.zeros((0, group_sums.shape[0], 4))
        out.append(ClusterSums.of(keys, totals, group_sums, n_bootstrap, seed))
    return out


def score_fragment(
    fragment: Fragment,
    index: int,
    layout: Layout,
    candidates: list[Candidate],
    blobs: list[bytes | None],
    coef: np.ndarray | None,
    p_min: float,
    config: EvalConfig,
) -> tuple[list[ShardSummary], list[Any] | None]:
    """The score pass of one fragment: every frozen candidate on its test rows (shard
    ``index``); with clustered intervals also its per-customer totals, shuffled."""
    found = _test_part(fragment, layout, index)
    if found is None:
        raise InvalidInputError("fragment", "test rows", fragment.path)
    shard, data, start = found
    k = len(layout.actions)
    # External candidates: their probabilities on these rows (a snapshot's policy on them, or
    # the file's rows for these decision ids).
    scored: list[bytes | np.ndarray | None] = [
        load_distribution(c, data, start) if c.kind == "external" else blob
        for c, blob in zip(candidates, blobs, strict=True)
    ]
    return _shuffle(static_shard(shard, candidates, scored, coef, k, p_min, config), layout)


def replay_fragments(
    candidate: Candidate,
    fragments: list[tuple[Fragment, int]],
    layout: Layout,
    coef: np.ndarray | None,
    p_min: float,
    config: EvalConfig,
) -> tuple[list[ShardSummary], list[Any] | None]:
    """Replay a learning candidate through the test fragments, reading one at a time."""

    def shards() -> Iterator[Shard]:
        for fragment, index in fragments:
            shard = _shard(fragment, layout, index)
            if shard is not None:
                yield shard

    summaries = learning_replay(candidate, shards(), coef, len(layout.actions), p_min, config)
    return _shuffle(summaries, layout)


def train_fragments(
    candidate: Candidate, fragments: list[Fragment], layout: Layout, seed: int
) -> bytes:
    """Train a static candidate whose statistics do not add on the train fragments, in order."""
    policy: Policy | None = None
    for fragment in fragments:
        data = read_fragment(fragment, layout)
        n = min(max(layout.cut - layout.starts[fragment.index], 0), data.n_rounds)
        if policy is None:
            policy = make_policy(candidate.spec, len(layout.actions), data.n_features, seed=seed)
        if n:
            signals = engagement_columns(policy, signal_rows(data.signals, slice(0, n)))
            policy.update(
                data.context[:n],
                data.action[:n],
                data.reward[:n],
                data.propensity[:n],
                signals=signals,
            )
    if policy is None:
        raise InvalidInputError("train split", "at least one fragment", "none")
    return policy.to_bytes()


def _adds(candidate: Candidate, n_actions: int, seed: int) -> bool:
    policy = make_policy(candidate.spec, n_actions, 1, seed=seed)
    return hasattr(policy, "add_statistics")


#: Most reduce tasks of the customer shuffle (one per test fragment up to this).
MAX_BUCKETS = 64


def evaluate_dataset(
    path: str | Path,
    candidates: list[Candidate],
    *,
    columns: ColumnMap | None = None,
    actions: tuple[str, ...] | None = None,
    rows_per_fragment: int = 1,
    control_from_logs: bool = False,
    **options: Unpack[EvaluateOptions],
) -> Evaluation:
    """:func:`engine.replay.evaluate.evaluate` of the Parquet dataset at ``path``, with every
    task reading its own fragment (see the module docstring for the passes and the limits).

    ``rows_per_fragment`` groups consecutive row groups of a file into one task (the shards);
    ``control_from_logs`` (without ``control_action``): the control offer is the most frequent
    logged offer of the rows the control column flags (the lowest index on ties; none without
    such rows), as ``nbo evaluate`` picks it in memory; the other parameters
    (:class:`~engine.replay.evaluate.EvaluateOptions`) are
    :func:`~engine.replay.evaluate.evaluate`'s.
    """
    settings = EvaluateSettings(**options)
    config = settings.config or EvalConfig()
    runner = settings.runner or Runner(workers=0, progress=False)
    train_fraction = settings.train_fraction
    cols = columns or ColumnMap()
    if not 0.0 <= train_fraction < 1.0:
        raise InvalidInputError("train_fraction", "a number in [0, 1)", train_fraction)
    if settings.interval == "bootstrap" and config.n_bootstrap < 2:
        raise InvalidInputError("n_bootstrap", "at least 2 for bootstrap intervals", 0)
    if settings.cluster not in CLUSTER_CHOICES:
        raise InvalidInputError(
            "--cluster", f"one of {'|'.join(CLUSTER_CHOICES)}", settings.cluster
        )
    # Ready-made candidates need no training: without trained ones, every row evaluates.
    every_row = bool(candidates) and all(c.kind == "external" for c in candidates)
    if every_row:
        train_fraction = 0.0
    config.make()  # validates estimator names and clip before any work
    fragments = list_fragments(path, rows_per_fragment)
    if not fragments:
        raise InvalidInputError("logs", "at least one Parquet row group", str(path))
    schema = pq.ParquetFile(fragments[0].path).schema_arrow
    has_customers = cols.customer_id is not None and cols.customer_id in schema.names
    if settings.cluster == "customer_id" and not has_customers:
        raise InvalidInputError(
            "--cluster customer_id", "a customer_id column in the logs", "none (use --cluster none)"
        )
    buckets = max(1, min(len(fragments), MAX_BUCKETS))
    with tempfile.TemporaryDirectory(prefix="nbo-shuffle-") as spill_dir:
        spill = None if runner.uses_ray else spill_dir
        return _evaluate_fragments(
            fragments,
            candidates,
            cols,
            actions,
            settings,
            config,
            runner,
            train_fraction,
            control_from_logs,
            has_customers,
            buckets,
            spill,
        )


def _evaluate_fragments(
    fragments: list[Fragment],
    candidates: list[Candidate],
    cols: ColumnMap,
    actions: tuple[str, ...] | None,
    settings: EvaluateSettings,
    config: EvalConfig,
    runner: Runner,
    train_fraction: float,
    control_from_logs: bool,
    has_customers: bool,
    buckets: int,
    spill: str | None,
) -> Evaluation:
    estimators = config.make()
    control_action = settings.control_action
    runner.warm_up()
    clock = time.perf_counter()
    seconds: dict[str, float] = {}
    # This process's CPU seconds per pass: in-process, every task's work (robust to a busy
    # machine, where wall time also counts other processes' turns).
    cpu: dict[str, float] = {}
    cpu_clock = time.process_time()

    def lap(name: str) -> None:
        nonlocal clock, cpu_clock
        now, now_cpu = time.perf_counter(), time.process_time()
        seconds[name], cpu[name] = now - clock, now_cpu - cpu_clock
        clock, cpu_clock = now, now_cpu

    scans: list[Any] = runner.run(
        [Task(f"scan {f.index}", scan_fragment, (f, cols, buckets, spill)) for f in fragments],
        "scanning",
    )
    _raise_failures(scans)
    n_customers = None
    if has_customers:
        counted: list[Any] = runner.run(
            [
                Task(f"customers {j}", count_bucket, ([s.customers[j] for s in scans],))
                for j in range(buckets)
            ],
            "counting customers",
        )
        _raise_failures(counted)
        n_customers = int(sum(counted))
    lap("scan")
    if not actions:
        actions = dataset_offer_ids([f.path for f in fragments]) or tuple(
            sorted({o for s in scans for o in s.offers})
        )
    for s, f in zip(scans[1:], fragments[1:], strict=False):
        previous = scans[f.index - 1]
        if s.t_min is not None and previous.t_max is not None and s.t_min < previous.t_max:
            raise InvalidInputError(
                "fragments",
                "time-ordered row groups (each starting at or after the previous one's end); "
                "sort the dataset by timestamp",
                f"{f.path} row groups {list(f.row_groups)} start before the previous one ends",
            )
    counts = tuple(s.rows for s in scans)
    starts = tuple(int(x) for x in np.cumsum((0, *counts[:-1])))
    n_rows = int(sum(counts))
    every_row = bool(candidates) and all(c.kind == "external" for c in candidates)
    cut = round(train_fraction * n_rows)
    if n_rows - cut < 2:
        # One row has no variance: every interval would be NaN and the verdict meaningless.
        raise InvalidInputError(
            "logs",
            "at least 2 closed decisions in the evaluation split (the later "
            f"{1 - train_fraction:.0%} of the rows, by time)",
            f"{n_rows - cut} of {n_rows} closed decisions",
        )
    clustered = False
    if has_customers and n_customers is not None and settings.cluster != "none":
        # As in memory: customers are the units whenever one has several rows.
        clustered = n_customers < n_rows or settings.cluster == "customer_id"
    logged = np.zeros(len(actions), dtype=np.int64)
    for s in scans:
        for offer, n in s.offers.items():
            if offer in actions:
                logged[actions.index(offer)] += n
    needs_model = any(e.needs_model for e in estimators)
    n_units = n_rows if n_customers is None else n_customers
    n_model_folds = n_folds(n_units, settings.folds) if needs_model else 0
    layout = Layout(
        tuple(actions),
        cols,
        starts,
        counts,
        cut,
        n_rows,
        n_model_folds,
        config.seed,
        tuple(bool(x) for x in logged == 0),
        customers=has_customers,
        clustered=clustered,
        buckets=buckets,
        spill=spill,
        decision_ids=any(c.kind == "external" for c in candidates),
    )
    k = len(actions)
    if control_action is None and control_from_logs:
        in_control = np.zeros(k, dtype=np.int64)
        for s in scans:
            for offer, n in (s.control_offers or {}).items():
                if offer in actions:
                    in_control[actions.index(offer)] += n
        control_action = int(np.argmax(in_control)) if in_control.any() else None
    if control_action is not None and not 0 <= control_action < k:
        raise InvalidInputError("control_action", f"an offer index in [0, {k})", control_action)
    all_candidates = baselines(control_action, tuple(actions)) + list(candidates)
    statics = [c for c in all_candidates if c.kind == "static"]
    adding = [c for c in statics if _adds(c, k, config.seed)]
    others = [c for c in statics if c not in adding]
    train_frags = [f for f in fragments if starts[f.index] < cut]
    fit_frags = fragments if needs_model else train_frags
    training = runner.start(
        [
            Task(f"train {c.label}", train_fragments, (c, train_frags, layout, config.seed))
            for c in others
        ],
        "training",
    )
    parts: list[Any] = runner.run(
        [Task(f"fit {f.index}", fit_fragment, (f, layout, adding, config)) for f in fit_frags],
        "fitting",
    )
    _raise_failures(parts)
    lap("fit")
    fits: list[FitPart] = parts
    n_features = int(fits[0].binary.shape[0]) if fits else 0
    eligible = bool(fits) and fits[0].eligible
    if not eligible and any(bool(p.binary.any()) for p in fits):
        binary = np.logical_and.reduce([p.binary for p in fits])
        if binary.any():
            raise InvalidInputError(
                "context",
                "no 0/1 columns without an eligible column in sharded mode (the unseen-offer "
                "strata need every row; evaluate in memory)",
                f"0/1 columns {np.flatnonzero(binary).tolist()}",
            )
    coef = None
    if needs_model:
        total = fits[0].rewards
        for p in fits[1:]:
            total = total + p.rewards  # type: ignore[operator]
        coef = cross_fit_from_sums(total)  # type: ignore[arg-type]
    results = {c.label: CandidateResult(c.label, c.kind, c.spec) for c in all_candidates}
    blobs: dict[str, bytes] = {}
    for c in adding:
        stats = [p.ridge[c.label] for p in fits if c.label in p.ridge]
        policy = make_policy(c.spec, k, n_features, seed=config.seed)
        if stats:
            merged = stats[0]
            for s in stats[1:]:
                merged = merged + s
            policy.add_statistics(merged)  # type: ignore[attr-defined]
        blobs[c.label] = policy.to_bytes()
    for c, out in zip(others, training(), strict=True):
        if isinstance(out, TaskFailure):
            mark_failed(results[c.label], out)
        else:
            blobs[c.label] = out
    test_frags = [
        f for f in fragments if layout.test_range(f.index)[1] > layout.test_range(f.index)[0]
    ]
    indexed = [(f, i) for i, f in enumerate(test_frags)]
    p_min = min(s.p_min for s, f in zip(scans, fragments, strict=True) if f in test_frags)
    owners: list[tuple[list[str], int | None]] = []
    learners = [c for c in all_candidates if c.kind == "learning"]
    replaying = runner.start(
        [
            Task(f"replay {c.label}", replay_fragments, (c, indexed, layout, coef, p_min, config))
            for c in learners
        ],
        "replaying",
    )
    owners += [([c.label], None) for c in learners]
    frozen = [c for c in all_candidates if c.kind != "learning" and results[c.label].status == "ok"]
    frozen_blobs = [blobs.get(c.label) for c in frozen]
    score_tasks = []
    if frozen:
        for f, i in indexed:
            args = (f, i, layout, frozen, frozen_blobs, coef, p_min, config)
            score_tasks.append(Task(f"shard {i}", score_fragment, args))
            owners.append(([c.label for c in frozen], i))
    scoring = runner.start(score_tasks, "scoring")
    raw = replaying() + scoring()
    # A probability file or snapshot that does not fit the logs is bad input, as in memory.
    _raise_failures(
        [
            out
            for out in raw
            if isinstance(out, TaskFailure) and out.error.startswith("InvalidInputError: --policy ")
        ][:1]
    )
    outputs = [out if isinstance(out, TaskFailure) else out[0] for out in raw]
    collected = collect_shard_results(
        owners, outputs, all_candidates, results, len(indexed), settings.alpha
    )
    lap("score")
    n_clusters = n_rows - cut
    if clustered:
        n_clusters = _cluster_intervals(
            raw, owners, collected, results, layout, config, settings.alpha, runner
        )
        lap("clusters")
    for c in all_candidates:
        if results[c.label].status == "ok":
            results[c.label].select(settings.interval)
    paired_lifts(list(results.values()), settings.alpha)
    n_test = n_rows - cut
    return Evaluation(
        candidates=list(results.values()),
        primary=settings.primary,
        interval=settings.interval,
        alpha=settings.alpha,
        n_train=cut,
        n_test=n_test,
        n_shards=len(indexed),
        mode=runner.mode,
        info={
            "n_rows": n_rows,
            "n_pending": sum(s.pending for s in scans),
            "actions": list(actions),
            "n_features": n_features,
            "uniform_logging": all(p.uniform for p in fits) and len(fits) == len(fragments),
            "estimators": list(config.estimators),
            "clip": config.clip,
            "n_bootstrap": config.n_bootstrap,
            "seed": config.seed,
            "shard_rows": None,
            "train_fraction": train_fraction,
            "reward_model": coef is not None,
            "cluster": "customer_id" if clustered else "none",
            "n_clusters": n_clusters,
            "every_row": every_row,
            "eligibility_known": eligible,
            "gate": asdict(settings.gate or Gate()),
            "reward_model_cross_fitted": coef is not None,
            "reward_model_folds": n_model_folds,
            "fragments": len(fragments),
            "sharded": True,
            "pass_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "pass_driver_cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        },
    )


def _cluster_intervals(
    raw: list[Any],
    owners: list[tuple[list[str], int | None]],
    collected: dict[str, list[ShardSummary | None]],
    results: dict[str, CandidateResult],
    layout: Layout,
    config: EvalConfig,
    alpha: float,
    runner: Runner,
) -> int:
    """The shuffle's reduce: one task per bucket completes its customers' totals for every
    group of slots (the frozen candidates' score tasks; each learning candidate's replay) and
    returns their :class:`ClusterSums`; the driver adds the buckets and sets the intervals.
    Returns the number of customers in the evaluation split."""
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for (labels, _), out in zip(owners, raw, strict=True):
        key = tuple(labels)
        if isinstance(out, TaskFailure) or any(results[c].status != "ok" for c in key):
            groups.pop(key, None)
            groups[key] = []  # marks the group as broken
            continue
        if key in groups and not groups[key]:
            continue
        groups.setdefault(key, [[] for _ in range(layout.buckets)])
        for j, handle in enumerate(out[1]):
            groups[key][j].append(handle)
    live = [(key, parts) for key, parts in groups.items() if parts]
    slots = []
    sums = []
    for group_labels, _ in live:
        group_slots = []
        group_sums = []
        for label in group_labels:
            shard_parts = [p for p in collected[label] if p is not None]
            names = [(label, n) for n in shard_parts[0].moments]
            group_slots += names
            group_sums.append(row_sums(shard_parts, names))
        slots.append(group_slots)
        sums.append(np.concatenate(group_sums))
    tasks = [
        Task(
            f"customers {j}",
            reduce_bucket,
            ([parts[j] for _, parts in live], sums, config.n_bootstrap, config.seed),
        )
        for j in range(layout.buckets)
    ]
    reduced: list[Any] = runner.run(tasks, "reducing customers")
    failed = next((r for r in reduced if isinstance(r, TaskFailure)), None)
    if failed is not None:
        for group_labels, _ in live:
            for label in group_labels:
                mark_failed(results[label], failed)
        return 0
    totals = [functools.reduce(operator.add, [r[g] for r in reduced]) for g in range(len(live))]
    apply_cluster_sums(results, list(zip(slots, totals, strict=True)), alpha)
    return totals[0].n_clusters if totals else 0


def _raise_failures(outputs: list[Any]) -> None:
    """Raise the first failed task's error: bad input in a fragment as the reader's own
    message (column, row and decision id), anything else naming the task."""
    for out in outputs:
        if isinstance(out, TaskFailure):
            prefix = "InvalidInputError: "
            field, sep, rest = out.error.removeprefix(prefix).partition(": expected ")
            expected, comma, got = rest.rpartition(", got ")
            if out.error.startswith(prefix) and sep and comma:
                raise InvalidInputError(field, expected, got)
            raise InvalidInputError(out.key, "a readable fragment", out.error)
