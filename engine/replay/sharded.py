"""Evaluation of a Parquet dataset whose tasks read their own fragments: the driver never holds the
logs, only per-fragment summaries, so its memory grows with the number of fragments, not rows.

The driver lists the fragments (:func:`list_fragments`: row groups of every file, in file order)
and hands each task a :class:`Fragment` (path + row-group ids); the task reads it. Four passes:

1. *scan* (columns action, propensity, reward, timestamp only): rows, pending rows, time range and
   offer counts of each fragment. The fragments must follow each other in time (each one's first
   timestamp at or after the previous one's last), which makes their concatenation the time order
   that :func:`engine.replay.evaluate.evaluate` sorts into; the split is then a global row cut.
2. *fit*: per fragment, the cross-fitted reward model's sums (every row) and the per-offer ridge
   sums of each static ridge candidate (train rows); the driver adds them and solves
   (:func:`engine.replay.rewardmodel.cross_fit_from_sums`,
   :meth:`engine.policies.linear.RidgeStatistics`). Static candidates whose statistics do not add
   are trained by one task that reads the train fragments in order.
3. *score*: one task per fragment with test rows scores every frozen candidate and baseline.
4. *replay*: one task per learning candidate reads the test fragments one at a time.

Shards are the fragments' test parts, so the numbers equal the in-memory evaluation run with the
same shard boundaries (every row group of ``shard_rows`` rows and a split on a row-group
boundary), up to summation order, and are identical in-process, on local Ray and on a cluster.
Not supported here (they need every row at once): a ``customer_id`` column (customer folds and
clustered intervals), 0/1 context columns without an ``eligible`` column (the unseen-offer
strata) and external candidates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from engine.errors import InvalidInputError
from engine.policies import Policy, RidgeStatistics, make_policy
from engine.replay.candidates import (
    Candidate,
    EvalConfig,
    Shard,
    ShardSummary,
    baselines,
    learning_replay,
    static_shard,
)
from engine.replay.data import LoggedData
from engine.replay.evaluate import _fail, _paired_lifts, collect_shard_results
from engine.replay.fanout import Runner, Task, TaskFailure
from engine.replay.readers import ColumnMap, dataset_offer_ids, from_table
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


@dataclass(frozen=True)
class FragmentScan:
    """What the scan pass learns of one fragment."""

    rows: int  # closed decisions (pending ones dropped)
    pending: int
    t_min: int | None
    t_max: int | None
    offers: dict[str, int]  # logged offer -> rows
    p_min: float


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

    def test_range(self, i: int) -> tuple[int, int]:
        """Rows of fragment i in the test split, as offsets into the fragment."""
        lo = max(self.cut - self.starts[i], 0)
        return min(lo, self.counts[i]), self.counts[i]


def list_fragments(path: str | Path, rows_per_fragment: int = 1) -> list[Fragment]:
    """Every Parquet file of ``path`` (a file or a directory, in path order) cut into fragments of
    consecutive row groups holding at least ``rows_per_fragment`` rows (1: one row group each).

    Only the files' footers are read."""
    dataset = pads.dataset(str(path), format="parquet", partitioning="hive")
    out: list[Fragment] = []
    for file in sorted(dataset.files):
        meta = pq.ParquetFile(file).metadata
        group: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            group.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= rows_per_fragment:
                out.append(Fragment(len(out), file, tuple(group), rows))
                group, rows = [], 0
        if group:
            out.append(Fragment(len(out), file, tuple(group), rows))
    return out


def _read(fragment: Fragment, columns: list[str] | None = None) -> pa.Table:
    return pq.ParquetFile(fragment.path).read_row_groups(list(fragment.row_groups), columns=columns)


def scan_fragment(fragment: Fragment, columns: ColumnMap) -> FragmentScan:
    """The scan pass of one fragment (reads four columns)."""
    names = set(pq.ParquetFile(fragment.path).schema_arrow.names)
    wanted = [c for c in (columns.action, columns.propensity, columns.reward) if c in names]
    timestamp = columns.timestamp if columns.timestamp in names else None
    table = _read(fragment, [*wanted, *([timestamp] if timestamp else [])])
    if columns.reward in names:
        closed = table.filter(pc.is_valid(table.column(columns.reward)))
    else:
        closed = table
    t_min = t_max = None
    if timestamp is not None and closed.num_rows:
        ts = closed.column(timestamp).cast(pa.int64())
        t_min, t_max = int(pc.min(ts).as_py()), int(pc.max(ts).as_py())
    offers: dict[str, int] = {}
    if columns.action in names and closed.num_rows:
        counts = pc.value_counts(closed.column(columns.action).cast(pa.string()))
        offers = {str(v["values"]): int(v["counts"]) for v in counts.to_pylist()}
    p_min = 1.0
    if columns.propensity in names and closed.num_rows:
        p_min = float(pc.min(closed.column(columns.propensity)).as_py())
    return FragmentScan(
        closed.num_rows, table.num_rows - closed.num_rows, t_min, t_max, offers, p_min
    )


def read_fragment(fragment: Fragment, layout: Layout) -> LoggedData:
    """One fragment's closed decisions in time order, offers indexed as in ``layout.actions``."""
    return from_table(_read(fragment), layout.columns, layout.actions, source=fragment.path)


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
        fold = _row_folds(layout.n_rows, layout.folds, layout.seed, start, start + data.n_rounds)
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
    lo, hi = layout.test_range(fragment.index)
    if hi <= lo:
        return None
    data = read_fragment(fragment, layout).take(slice(lo, hi))
    start = layout.starts[fragment.index] + lo
    fold = None
    if layout.folds:
        fold = _row_folds(layout.n_rows, layout.folds, layout.seed, start, start + data.n_rounds)
    unseen = None
    if data.eligible is None:
        unseen = np.broadcast_to(np.array(layout.unseen), (data.n_rounds, len(layout.actions)))
    return Shard(
        index=index,
        context=data.context,
        action=data.action,
        propensity=data.propensity,
        reward=data.reward,
        mask=data.eligible,
        fold=fold,
        start=start - layout.cut,
        unseen=unseen,
    )


def score_fragment(
    fragment: Fragment,
    index: int,
    layout: Layout,
    candidates: list[Candidate],
    blobs: list[bytes | None],
    coef: np.ndarray | None,
    p_min: float,
    config: EvalConfig,
) -> list[ShardSummary]:
    """The score pass of one fragment: every frozen candidate on its test rows (shard ``index``)."""
    shard = _shard(fragment, layout, index)
    if shard is None:
        raise InvalidInputError("fragment", "test rows", fragment.path)
    k = len(layout.actions)
    return static_shard(shard, candidates, list(blobs), coef, k, p_min, config)


def replay_fragments(
    candidate: Candidate,
    fragments: list[tuple[Fragment, int]],
    layout: Layout,
    coef: np.ndarray | None,
    p_min: float,
    config: EvalConfig,
) -> list[ShardSummary]:
    """Replay a learning candidate through the test fragments, reading one at a time."""

    def shards() -> Iterator[Shard]:
        for fragment, index in fragments:
            shard = _shard(fragment, layout, index)
            if shard is not None:
                yield shard

    return learning_replay(candidate, shards(), coef, len(layout.actions), p_min, config)


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
            policy.update(data.context[:n], data.action[:n], data.reward[:n], data.propensity[:n])
    if policy is None:
        raise InvalidInputError("train split", "at least one fragment", "none")
    return policy.to_bytes()


def _adds(candidate: Candidate, n_actions: int, seed: int) -> bool:
    policy = make_policy(candidate.spec, n_actions, 1, seed=seed)
    return hasattr(policy, "add_statistics")


def evaluate_dataset(
    path: str | Path,
    candidates: list[Candidate],
    *,
    columns: ColumnMap | None = None,
    actions: tuple[str, ...] | None = None,
    config: EvalConfig | None = None,
    train_fraction: float = 0.5,
    rows_per_fragment: int = 1,
    control_action: int | None = None,
    primary: str = "dr",
    interval: str = "bootstrap",
    alpha: float = 0.05,
    runner: Runner | None = None,
    gate: Gate | None = None,
    folds: int | None = None,
) -> Evaluation:
    """:func:`engine.replay.evaluate.evaluate` of the Parquet dataset at ``path``, with every
    task reading its own fragment (see the module docstring for the passes and the limits).

    ``rows_per_fragment`` groups consecutive row groups of a file into one task (the shards);
    the other parameters are :func:`~engine.replay.evaluate.evaluate`'s.
    """
    config = config or EvalConfig()
    runner = runner or Runner(workers=0, progress=False)
    cols = columns or ColumnMap()
    if not 0.0 <= train_fraction < 1.0:
        raise InvalidInputError("train_fraction", "a number in [0, 1)", train_fraction)
    if interval == "bootstrap" and config.n_bootstrap < 2:
        raise InvalidInputError("n_bootstrap", "at least 2 for bootstrap intervals", 0)
    if any(c.kind == "external" for c in candidates):
        raise InvalidInputError("candidates", "no external candidates in sharded mode", "some")
    estimators = config.make()
    fragments = list_fragments(path, rows_per_fragment)
    if not fragments:
        raise InvalidInputError("logs", "at least one Parquet row group", str(path))
    schema = pq.ParquetFile(fragments[0].path).schema_arrow
    if cols.customer_id is not None and cols.customer_id in schema.names:
        raise InvalidInputError(
            f"column {cols.customer_id!r}",
            "no customer column in sharded mode (customer folds and clustered intervals need "
            "every row at once; evaluate in memory)",
            "a customer column",
        )
    runner.warm_up()
    scans: list[Any] = runner.run(
        [Task(f"scan {f.index}", scan_fragment, (f, cols)) for f in fragments], "scanning"
    )
    _raise_failures(scans)
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
    every_row = False
    cut = round(train_fraction * n_rows)
    if n_rows - cut < 2:
        raise InvalidInputError(
            "logs", "at least 2 closed decisions in the evaluation split", n_rows - cut
        )
    logged = np.zeros(len(actions), dtype=np.int64)
    for s in scans:
        for offer, n in s.offers.items():
            if offer in actions:
                logged[actions.index(offer)] += n
    needs_model = any(e.needs_model for e in estimators)
    n_model_folds = n_folds(n_rows, folds) if needs_model else 0
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
    )
    k = len(actions)
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
            _fail(results[c.label], out)
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
    outputs = replaying() + scoring()
    collect_shard_results(owners, outputs, all_candidates, results, len(indexed), alpha)
    for c in all_candidates:
        if results[c.label].status == "ok":
            results[c.label].select(interval)
    _paired_lifts(list(results.values()), alpha)
    n_test = n_rows - cut
    return Evaluation(
        candidates=list(results.values()),
        primary=primary,
        interval=interval,
        alpha=alpha,
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
            "cluster": "none",
            "n_clusters": n_test,
            "every_row": every_row,
            "eligibility_known": eligible,
            "gate": asdict(gate or Gate()),
            "reward_model_cross_fitted": coef is not None,
            "reward_model_folds": n_model_folds,
            "fragments": len(fragments),
            "sharded": True,
        },
    )


def _raise_failures(outputs: list[Any]) -> None:
    for out in outputs:
        if isinstance(out, TaskFailure):
            raise InvalidInputError(out.key, "a readable fragment", out.error)
