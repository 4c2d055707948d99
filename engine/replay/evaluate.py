"""Off-policy evaluation of candidate policies on logged data, fanned out over shards.

The plan: split the logs in time (train / test), cross-fit the reward model over every row in
folds of customers, train every static candidate on the train split (one task each), then score
the static candidates and baselines on each fixed-size test shard (one task per shard, bootstrap
resamples included) and replay each learning candidate through the test split (one task each).
Shard boundaries depend on the data only, and bootstrap weights on (seed, shard) only, so the
numbers are the same whichever way the tasks ran. Shard results are added in shard order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypedDict, Unpack

import numpy as np

from engine.errors import InvalidInputError
from engine.policies import make_policy
from engine.replay.candidates import (
    Candidate,
    EvalConfig,
    Shard,
    ShardSummary,
    baselines,
    learning_replay,
    static_shard,
    train_static,
)
from engine.replay.data import LoggedData, signal_rows
from engine.replay.diagnostics import Diagnostics, merge_diagnostic_sums
from engine.replay.estimators import INTERVAL_METHODS, SLOPE, bootstrap_values, check_alpha
from engine.replay.external import load_distribution
from engine.replay.fanout import Runner, Task, TaskFailure
from engine.replay.intervals import ClusterSums, Moments, merge_keyed, percentile_interval
from engine.replay.results import CandidateResult, Estimate, Evaluation, Gate, LiftEstimate
from engine.replay.rewardmodel import cross_fit, customer_folds, n_folds
from engine.replay.support import unseen_offers

# Below this many (test rows x candidates) Ray's start-up costs more than it saves: a local Ray
# takes ~12 s to start here and in-process scoring runs at ~1M row-candidates per second.
SMALL_JOB = 25_000_000
CLUSTER_CHOICES = ("auto", "customer_id", "none")


class EvaluateOptions(TypedDict, total=False):
    """The keyword arguments that :func:`evaluate` and
    :func:`engine.replay.sharded.evaluate_dataset` share: the fields of
    :class:`EvaluateSettings`, which holds their defaults."""

    config: EvalConfig | None
    train_fraction: float
    control_action: int | None
    primary: str
    interval: str
    alpha: float
    runner: Runner | None
    cluster: str
    gate: Gate | None
    folds: int | None


@dataclass(frozen=True)
class EvaluateSettings:
    """The options of an evaluation that do not depend on where the logs are, as
    :class:`EvaluateOptions` passes them (see :func:`evaluate` for their meaning)."""

    config: EvalConfig | None = None
    train_fraction: float = 0.5
    control_action: int | None = None
    primary: str = "dr"
    interval: str = "bootstrap"
    alpha: float = 0.05
    runner: Runner | None = None
    cluster: str = "auto"
    gate: Gate | None = None
    folds: int | None = None


def evaluate(
    data: LoggedData,
    candidates: list[Candidate],
    *,
    shard_rows: int = 131_072,
    **options: Unpack[EvaluateOptions],
) -> Evaluation:
    """Evaluate candidates (plus the logging, uniform and control baselines) on ``data``.

    Parameters
    ----------
    data : LoggedData
    candidates : list of Candidate
        From :func:`engine.replay.candidates.make_candidates`.
    config : EvalConfig, optional
        Estimators, clipping, bootstrap resamples, seed, replay batch size.
    train_fraction : float, default 0.5
        Leading share of rows (by time) that trains the static candidates.
    shard_rows : int, default 131072
        Rows per test shard (the unit of parallel work).
    control_action : int, optional
        Offer index of the business-as-usual control; adds the control baseline.
    primary : str, default "dr"
        Estimator that ranks candidates and decides go / no-go.
    interval : {"bootstrap", "normal", "bernstein"}, default "bootstrap"
    alpha : float, default 0.05
        1 - confidence level.
    runner : Runner, optional
        Where tasks run; by default in-process for small jobs, local Ray otherwise.
    cluster : {"auto", "customer_id", "none"}, default "auto"
        The independent units of every interval: customers (their rows summed, customers
        resampled) or rows. ``auto``: customers whenever a customer has several rows.
    gate : Gate, optional
        Thresholds below which the evidence is too weak for a GO (see :class:`Gate`).
    folds : int, optional
        Folds of the cross-fitted reward model (customers dealt at random; every evaluation row
        is predicted by the model of the other folds, :mod:`engine.replay.rewardmodel`). By
        default 5, or 2 when that leaves fewer than 20 customers per fold.

    Returns
    -------
    Evaluation

    Notes
    -----
    The options but ``shard_rows`` are :class:`EvaluateOptions`, with the defaults of
    :class:`EvaluateSettings`.
    """
    settings = EvaluateSettings(**options)
    config = settings.config or EvalConfig()
    train_fraction = settings.train_fraction
    runner = settings.runner
    check_alpha(settings.alpha)
    if settings.interval not in INTERVAL_METHODS:
        raise InvalidInputError("interval", f"one of {INTERVAL_METHODS}", settings.interval)
    if settings.interval == "bootstrap" and config.n_bootstrap < 2:
        raise InvalidInputError(
            "n_bootstrap", "at least 2 for bootstrap intervals", config.n_bootstrap
        )
    if settings.primary not in (*config.estimators, SLOPE):
        raise InvalidInputError(
            "primary", f"one of the estimators {config.estimators} or {SLOPE!r}", settings.primary
        )
    if shard_rows < 1:
        raise InvalidInputError("shard_rows", "an int >= 1", shard_rows)
    if settings.control_action is not None and not 0 <= settings.control_action < data.n_actions:
        raise InvalidInputError(
            "control_action", f"an offer index in [0, {data.n_actions})", settings.control_action
        )
    clustered = _clustered(data, settings.cluster)
    config.make()  # validates estimator names and clip before any work
    for c in candidates:  # a bad hyperparameter fails here, before any task runs
        if c.kind != "external":
            make_policy(c.spec, data.n_actions, data.n_features, seed=config.seed)
    # Ready-made candidates need no training: without trained ones, every row evaluates.
    every_row = bool(candidates) and all(c.kind == "external" for c in candidates)
    if every_row:
        train_fraction = 0.0
    data = data.sorted_by_time()
    train, test = data.split(train_fraction)
    external = {
        c.label: load_distribution(c, data)[train.n_rounds :]
        for c in candidates
        if c.kind == "external"
    }
    if test.n_rounds < 2:
        # One row has no variance: every interval would be NaN and the verdict meaningless.
        raise InvalidInputError(
            "logs",
            "at least 2 closed decisions in the evaluation split (the later "
            f"{1 - train_fraction:.0%} of the rows, by time)",
            f"{test.n_rounds} of {data.n_rounds} closed decisions",
        )
    all_candidates = baselines(settings.control_action, data.actions) + list(candidates)
    if runner is None:
        small = test.n_rounds * len(all_candidates) < SMALL_JOB
        runner = Runner(workers=0 if small else None)

    runner.warm_up()
    k = data.n_actions
    results = {c.label: CandidateResult(c.label, c.kind, c.spec) for c in all_candidates}
    # Training runs on the workers while the driver fits the reward model and ships the shards.
    statics = [c for c in all_candidates if c.kind == "static"]
    train_args = runner.put(
        (train.context, train.action, train.propensity, train.reward, train.signals)
    )
    training = runner.start(
        [Task(f"train {c.label}", _train_task, (c, train_args, k, config.seed)) for c in statics],
        "training",
    )
    needs_model = any(e.needs_model for e in config.make())
    coef = None
    fold = None
    n_model_folds = 0
    if needs_model:
        # Cross-fitted over every row (the train split's too), customers dealt into folds: an
        # evaluation row is predicted by a model that saw neither it nor its customer.
        units = data.customer if data.customer is not None else None
        n_units = data.n_rounds if units is None else int(np.unique(units).shape[0])
        n_model_folds = n_folds(n_units, settings.folds)
        all_folds = customer_folds(units, data.n_rounds, n_model_folds, config.seed)
        coef = cross_fit(data.context, data.action, data.reward, k, all_folds, n_model_folds)
        fold = all_folds[train.n_rounds :]
    p_min = float(test.propensity.min())
    unseen = unseen_offers(data)
    shards = _shards(
        test, shard_rows, clustered, fold, None if unseen is None else unseen[train.n_rounds :]
    )
    shard_refs = [runner.put(s) for s in shards]

    # One task per learning candidate (a replay is sequential), and one task per shard scoring
    # every frozen candidate and baseline together (their bootstrap shares Poisson weights).
    owners: list[tuple[list[str], int | None]] = []
    learners = [c for c in all_candidates if c.kind == "learning"]
    replay_tasks = []
    if learners:
        # Ray resolves only top-level references, so a replay gets the whole list as one.
        all_shards = runner.put(shards)
        for c in learners:
            replay_args = (c, all_shards, coef, k, p_min, config)
            replay_tasks.append(Task(f"replay {c.label}", learning_replay, replay_args))
            owners.append(([c.label], None))
    replaying = runner.start(replay_tasks, "replaying")

    blobs: dict[str, bytes] = {}
    for c, out in zip(statics, training(), strict=True):
        if isinstance(out, TaskFailure):
            mark_failed(results[c.label], out)
        else:
            blobs[c.label] = out
    frozen = [c for c in all_candidates if c.kind != "learning" and results[c.label].status == "ok"]
    score_tasks = []
    if frozen:
        for s, ref in zip(shards, shard_refs, strict=True):
            frozen_blobs = [
                external[c.label][s.start : s.start + len(s)]
                if c.kind == "external"
                else blobs.get(c.label)
                for c in frozen
            ]
            args = (ref, frozen, frozen_blobs, coef, k, p_min, config)
            score_tasks.append(Task(f"shard {s.index}", static_shard, args))
            owners.append(([c.label for c in frozen], s.index))
    scoring = runner.start(score_tasks, "scoring")
    outputs = replaying() + scoring()

    collected = collect_shard_results(
        owners, outputs, all_candidates, results, len(shards), settings.alpha
    )
    n_clusters = test.n_rounds
    if clustered:
        groups = []
        for result in results.values():
            if result.status == "ok":
                parts = [p for p in collected[result.label] if p is not None]
                slots, keyed = cluster_parts(result.label, parts)
                keys, totals = merge_keyed(keyed)
                total = ClusterSums.of(
                    keys, totals, row_sums(parts, slots), config.n_bootstrap, config.seed
                )
                groups.append((slots, total))
                n_clusters = total.n_clusters
        apply_cluster_sums(results, groups, settings.alpha)
    for result in results.values():
        if result.status == "ok":
            result.select(settings.interval)
    paired_lifts(list(results.values()), settings.alpha)
    return Evaluation(
        candidates=list(results.values()),
        primary=settings.primary,
        interval=settings.interval,
        alpha=settings.alpha,
        n_train=train.n_rounds,
        n_test=test.n_rounds,
        n_shards=len(shards),
        mode=runner.mode,
        info={
            "n_rows": data.n_rounds,
            "n_pending": data.n_pending,
            "actions": list(data.actions),
            "n_features": data.n_features,
            "uniform_logging": data.is_uniform(),
            "estimators": list(config.estimators),
            "clip": config.clip,
            "n_bootstrap": config.n_bootstrap,
            "seed": config.seed,
            "shard_rows": shard_rows,
            "train_fraction": train_fraction,
            "reward_model": coef is not None,
            "cluster": "customer_id" if clustered else "none",
            "n_clusters": n_clusters,
            "every_row": every_row,
            "eligibility_known": data.eligible is not None,
            "gate": asdict(settings.gate or Gate()),
            "reward_model_cross_fitted": fold is not None,
            "reward_model_folds": n_model_folds,
        },
    )


def _train_task(
    candidate: Candidate,
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray] | None],
    n_actions: int,
    seed: int,
) -> bytes:
    context, action, propensity, reward, signals = train
    return train_static(
        candidate, context, action, propensity, reward, n_actions, seed, signals=signals
    )


def _clustered(data: LoggedData, cluster: str) -> bool:
    """Whether intervals resample customers (see :func:`evaluate`'s ``cluster``)."""
    if cluster not in CLUSTER_CHOICES:
        raise InvalidInputError("--cluster", f"one of {'|'.join(CLUSTER_CHOICES)}", cluster)
    if cluster == "none":
        return False
    if cluster == "customer_id" and data.customer is None:
        raise InvalidInputError(
            "--cluster customer_id", "a customer_id column in the logs", "none (use --cluster none)"
        )
    return data.returning_customers() or (cluster == "customer_id" and data.customer is not None)


def _shards(
    test: LoggedData,
    shard_rows: int,
    clustered: bool = False,
    fold: np.ndarray | None = None,
    unseen: np.ndarray | None = None,
) -> list[Shard]:
    mask = test.eligible
    cluster = test.customer if clustered else None
    out = []
    for i, start in enumerate(range(0, test.n_rounds, shard_rows)):
        stop = min(start + shard_rows, test.n_rounds)
        out.append(
            Shard(
                index=i,
                context=test.context[start:stop],
                action=test.action[start:stop],
                propensity=test.propensity[start:stop],
                reward=test.reward[start:stop],
                mask=None if mask is None else mask[start:stop],
                signals=signal_rows(test.signals, slice(start, stop)),
                cluster=None if cluster is None else cluster[start:stop],
                fold=None if fold is None else fold[start:stop],
                start=start,
                unseen=None if unseen is None else unseen[start:stop],
            )
        )
    return out


def collect_shard_results(
    owners: Sequence[tuple[list[str], int | None]],
    outputs: Sequence[Any],
    candidates: Sequence[Candidate],
    results: dict[str, CandidateResult],
    n_shards: int,
    alpha: float,
) -> dict[str, list[ShardSummary | None]]:
    """Route every task's output to its candidates' shard slots and combine each candidate whose
    shards all came back; a failed task or a missing shard fails the candidates it owns.

    ``owners[i]`` is ``(candidate labels, shard index)`` of ``outputs[i]``; a shard index of None
    means the task returned every shard of its one candidate (a learning replay). Returns the
    per-shard summaries by label (the clustered bootstrap reads them again).
    """
    collected: dict[str, list[ShardSummary | None]] = {
        c.label: [None] * n_shards for c in candidates
    }
    for (labels, shard_index), out in zip(owners, outputs, strict=True):
        if isinstance(out, TaskFailure):
            for label in labels:
                mark_failed(results[label], out)
        elif shard_index is None:
            collected[labels[0]] = list(out)
        else:
            for label, summary in zip(labels, out, strict=True):
                collected[label][shard_index] = summary
    for c in candidates:
        result = results[c.label]
        if result.status == "ok":
            parts = collected[c.label]
            if any(p is None for p in parts):
                mark_failed(result, TaskFailure(c.label, "missing shard results", 0))
                continue
            _combine(result, [p for p in parts if p is not None], alpha)
    return collected


def mark_failed(result: CandidateResult, failure: TaskFailure) -> None:
    """Mark a candidate failed by one of its tasks, keeping every earlier error beside it."""
    result.status = "failed"
    note = f"{failure.key}: {failure.error} (after {failure.attempts} attempts)"
    result.error = note if result.error is None else f"{result.error}; {note}"


def _combine(result: CandidateResult, parts: list[ShardSummary], alpha: float) -> None:
    names = list(parts[0].moments)
    diag = parts[0].diagnostics
    for p in parts[1:]:
        diag = merge_diagnostic_sums(diag, p.diagnostics)
    result.diagnostics = Diagnostics.from_sums(diag)
    for name in names:
        moments = Moments.empty()
        for p in parts:
            moments = moments + p.moments[name]
        boot = None
        if all(name in p.bootstrap for p in parts):
            sums = np.sum([p.bootstrap[name] for p in parts], axis=0)
            result.replicates[name] = bootstrap_values(sums)
            boot = percentile_interval(result.replicates[name], alpha)
        # Clustered runs replace the intervals (apply_cluster_sums) once the customers are in.
        result.estimates[name] = Estimate(
            value=moments.estimate(),
            normal=moments.normal_interval(alpha),
            bernstein=moments.bernstein_interval(alpha),
            bootstrap=boot,
        )


Slot = tuple[str, str]  # (candidate label, estimator name)


def cluster_parts(
    label: str, parts: Sequence[ShardSummary]
) -> tuple[list[Slot], list[tuple[np.ndarray, np.ndarray]]]:
    """One candidate's estimator slots and its shards' per-customer totals, ``(keys (n,),
    totals (n, slots, 4))`` per shard (a customer may appear in several)."""
    names = list(parts[0].cluster_totals) if parts else []
    keyed = [
        (p.clusters, np.stack([p.cluster_totals[n] for n in names], axis=1))
        for p in parts
        if p.clusters is not None and p.clusters.size
    ]
    return [(label, n) for n in names], keyed


def row_sums(parts: Sequence[ShardSummary], slots: Sequence[Slot]) -> np.ndarray:
    """Each slot's sums of 1, a, b, c over every row, array of shape (len(slots), 4)."""
    out = np.zeros((len(slots), 4))
    for p in parts:
        for j, (_, name) in enumerate(slots):
            out[j] += p.moments[name].sums[:4]
    return out


def apply_cluster_sums(
    results: dict[str, CandidateResult],
    groups: Sequence[tuple[Sequence[Slot], ClusterSums]],
    alpha: float,
) -> None:
    """Set every slot's intervals from its customers' :class:`ClusterSums`: cluster-robust
    normal and Bernstein intervals, and the percentile interval of a bootstrap over customers
    whose weights depend on each customer's key only (paired across candidates)."""
    for slots, sums in groups:
        for j, (label, name) in enumerate(slots):
            result = results[label]
            estimate = result.estimates[name]
            boot = None
            if sums.boot is not None:
                values = bootstrap_values(sums.boot[:, j, :])
                result.replicates[name] = values
                boot = percentile_interval(values, alpha)
            else:
                result.replicates.pop(name, None)
            result.estimates[name] = Estimate(
                estimate.value,
                sums.normal_interval(j, estimate.value, alpha),
                sums.bernstein_interval(j, estimate.value, alpha),
                boot,
            )


def paired_lifts(results: list[CandidateResult], alpha: float) -> None:
    """Candidate minus logging policy per estimator, from the shared bootstrap resamples."""
    logging = next((r for r in results if r.spec.get("name") == "logging"), None)
    if logging is None or logging.status != "ok":
        return
    for result in results:
        if result is logging or result.status != "ok":
            continue
        for name, replicates in result.replicates.items():
            base = logging.replicates.get(name)
            if base is None:
                continue
            result.lift[name] = LiftEstimate(
                value=result.value(name) - logging.value(name),
                bootstrap=percentile_interval(replicates - base, alpha),
            )
