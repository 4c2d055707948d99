"""Off-policy evaluation of candidate policies on logged data, fanned out over shards.

The plan: split the logs in time (train / test), fit the reward model on the train split, train
every static candidate on it (one task each), then score the static candidates and baselines on
each fixed-size test shard (one task per shard, bootstrap resamples included) and replay each
learning candidate through the test split (one task each). Shard boundaries depend on
the data only, and bootstrap weights on (seed, shard) only, so the numbers are the same whichever
way the tasks ran. Shard results are added in shard order.
"""

from __future__ import annotations

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
from engine.replay.data import LoggedData
from engine.replay.diagnostics import Diagnostics, merge_diagnostic_sums
from engine.replay.estimators import INTERVAL_METHODS, bootstrap_values, check_alpha
from engine.replay.fanout import Runner, Task, TaskFailure
from engine.replay.intervals import Moments, percentile_interval
from engine.replay.results import CandidateResult, Estimate, Evaluation, LiftEstimate
from engine.replay.rewardmodel import RewardModel

# Below this many (test rows x candidates) Ray's start-up costs more than it saves: a local Ray
# takes ~12 s to start here and in-process scoring runs at ~1M row-candidates per second.
SMALL_JOB = 25_000_000


def evaluate(
    data: LoggedData,
    candidates: list[Candidate],
    *,
    config: EvalConfig | None = None,
    train_fraction: float = 0.5,
    shard_rows: int = 131_072,
    control_action: int | None = None,
    primary: str = "dr",
    interval: str = "bootstrap",
    alpha: float = 0.05,
    runner: Runner | None = None,
) -> Evaluation:
    """Evaluate candidates (plus the logging, uniform and control baselines) on ``data``.

    Parameters
    ----------
    data : LoggedData
    candidates : list of Candidate
        From :func:`engine.replay.candidates.make_candidates`.
    config : EvalConfig
        Estimators, clipping, bootstrap resamples, seed, replay batch size.
    train_fraction : float
        Leading share of rows (by time) that trains the static candidates and the reward model.
    shard_rows : int
        Rows per test shard (the unit of parallel work).
    control_action : int, optional
        Offer index of the business-as-usual control; adds the control baseline.
    primary : str
        Estimator that ranks candidates and decides go / no-go.
    interval : {"bootstrap", "normal", "bernstein"}
    alpha : float
        1 - confidence level.
    runner : Runner, optional
        Where tasks run; by default in-process for small jobs, local Ray otherwise.

    Returns
    -------
    Evaluation
    """
    config = config or EvalConfig()
    check_alpha(alpha)
    if interval not in INTERVAL_METHODS:
        raise InvalidInputError("interval", f"one of {INTERVAL_METHODS}", interval)
    if interval == "bootstrap" and config.n_bootstrap < 2:
        raise InvalidInputError(
            "n_bootstrap", "at least 2 for bootstrap intervals", config.n_bootstrap
        )
    if primary not in config.estimators:
        raise InvalidInputError("primary", f"one of the estimators {config.estimators}", primary)
    if shard_rows < 1:
        raise InvalidInputError("shard_rows", "an int >= 1", shard_rows)
    if control_action is not None and not 0 <= control_action < data.n_actions:
        raise InvalidInputError(
            "control_action", f"an offer index in [0, {data.n_actions})", control_action
        )
    config.make()  # validates estimator names and clip before any work
    for c in candidates:  # a bad hyperparameter fails here, before any task runs
        make_policy(c.spec, data.n_actions, data.n_features, seed=config.seed)
    train, test = data.split(train_fraction)
    if test.n_rounds < 2:
        # One row has no variance: every interval would be NaN and the verdict meaningless.
        raise InvalidInputError(
            "logs",
            "at least 2 closed decisions in the evaluation split (the later "
            f"{1 - train_fraction:.0%} of the rows, by time)",
            f"{test.n_rounds} of {data.n_rounds} closed decisions",
        )
    all_candidates = baselines(control_action, data.actions) + list(candidates)
    if runner is None:
        small = test.n_rounds * len(all_candidates) < SMALL_JOB
        runner = Runner(workers=0 if small else None)

    runner.warm_up()
    k = data.n_actions
    results = {c.label: CandidateResult(c.label, c.kind, c.spec) for c in all_candidates}
    # Training runs on the workers while the driver fits the reward model and ships the shards.
    statics = [c for c in all_candidates if c.kind == "static"]
    train_args = runner.put((train.context, train.action, train.propensity, train.reward))
    training = runner.start(
        [Task(f"train {c.label}", _train_task, (c, train_args, k, config.seed)) for c in statics],
        "training",
    )
    needs_model = any(e.needs_model for e in config.make())
    coef = None
    if needs_model and train.n_rounds > 0:
        coef = RewardModel.fit(train.context, train.action, train.reward, k).coef
    p_min = float(test.propensity.min())
    shards = _shards(test, shard_rows)
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
            _fail(results[c.label], out)
        else:
            blobs[c.label] = out
    frozen = [c for c in all_candidates if c.kind != "learning" and results[c.label].status == "ok"]
    score_tasks = []
    if frozen:
        frozen_blobs = [blobs.get(c.label) for c in frozen]
        for s, ref in zip(shards, shard_refs, strict=True):
            args = (ref, frozen, frozen_blobs, coef, k, p_min, config)
            score_tasks.append(Task(f"shard {s.index}", static_shard, args))
            owners.append(([c.label for c in frozen], s.index))
    scoring = runner.start(score_tasks, "scoring")
    outputs = replaying() + scoring()

    collected: dict[str, list[ShardSummary | None]] = {
        c.label: [None] * len(shards) for c in all_candidates
    }
    for (labels, shard_index), out in zip(owners, outputs, strict=True):
        if isinstance(out, TaskFailure):
            for label in labels:
                _fail(results[label], out)
        elif shard_index is None:
            collected[labels[0]] = list(out)
        else:
            for label, summary in zip(labels, out, strict=True):
                collected[label][shard_index] = summary
    for c in all_candidates:
        result = results[c.label]
        if result.status == "ok":
            parts = collected[c.label]
            if any(p is None for p in parts):
                _fail(result, TaskFailure(c.label, "missing shard results", 0))
                continue
            _combine(result, [p for p in parts if p is not None], alpha)
    _paired_lifts(list(results.values()), alpha)
    return Evaluation(
        candidates=list(results.values()),
        primary=primary,
        interval=interval,
        alpha=alpha,
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
        },
    )


def _train_task(
    candidate: Candidate,
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_actions: int,
    seed: int,
) -> bytes:
    context, action, propensity, reward = train
    return train_static(candidate, context, action, propensity, reward, n_actions, seed)


def _shards(test: LoggedData, shard_rows: int) -> list[Shard]:
    mask = test.eligible
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
            )
        )
    return out


def _fail(result: CandidateResult, failure: TaskFailure) -> None:
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
        result.estimates[name] = Estimate(
            value=moments.estimate(),
            normal=moments.normal_interval(alpha),
            bernstein=moments.bernstein_interval(alpha),
            bootstrap=boot,
        )


def _paired_lifts(results: list[CandidateResult], alpha: float) -> None:
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
