"""Candidates that come ready-made: an nbo snapshot, or another system's probabilities.

* ``--policy snapshot:PATH``: a snapshot file (from ``nbo train`` or a server's snapshot
  directory). The logged contexts are the journal's encoded vectors, so the snapshot must have
  been trained over the same features (its header's ``feature_names`` must equal the log's
  ``nbo.feature_names``) and its offers must be offers of the log. Its probability of every offer
  on every row is computed by :func:`action_distribution`.
* ``--policy file:PATH``: target probabilities in long form (Parquet or CSV with columns
  ``decision_id, action, probability``; one row per logged decision and offer, a missing pair
  means probability 0), checked by :func:`read_target_file`.

Neither needs training, so both are scored on every logged row when no trained candidate asks
for a train split (the reward model of DM and DR is then cross-fitted, see
:mod:`engine.replay.evaluate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import InvalidInputError
from engine.kernels import seed_state
from engine.policies import (
    UCB1,
    EpsilonGreedy,
    FixedAction,
    LinUCB,
    Policy,
    SharedLinear,
    Softmax,
    UniformRandom,
)
from engine.replay.candidates import Candidate
from engine.replay.data import LoggedData
from engine.types import BoolArray, FloatArray

EXTERNAL = ("snapshot", "file")
_MC_DRAWS = 64
_SUM_TOLERANCE = 1e-6


def external_candidate(text: str) -> Candidate | None:
    """A candidate for ``snapshot:PATH`` or ``file:PATH``; None for any other policy spec.

    Examples
    --------
    >>> external_candidate("file:probs.parquet").label
    'file (probs.parquet)'
    >>> external_candidate("linucb:alpha=1") is None
    True
    """
    kind, sep, path = text.strip().partition(":")
    if not sep or kind not in EXTERNAL:
        return None
    if not path:
        raise InvalidInputError(f"--policy {kind}:", "a file path after the colon", "nothing")
    return Candidate(f"{kind} ({path})", {"name": kind, "path": path}, "external")


def load_distribution(candidate: Candidate, data: LoggedData, offset: int = 0) -> FloatArray:
    """The candidate's probability of every offer on every row of ``data``.

    ``offset``: the index of ``data``'s first row in the whole log (``data`` is one fragment of
    it), so a snapshot's stochastic choices are seeded as when the whole log is scored.

    Returns
    -------
    array of shape (n_rounds, n_actions)
        In ``data.actions`` order; rows sum to 1.
    """
    path = Path(candidate.spec["path"])
    flag = f"--policy {candidate.spec['name']}:{path}"
    if not path.is_file():
        raise InvalidInputError(flag, "an existing file", "no such file")
    if candidate.spec["name"] == "snapshot":
        return snapshot_distribution(path, data, flag, offset)
    return read_target_file(path, data, flag)


# ---------------------------------------------------------------------- snapshots
def snapshot_distribution(path: Path, data: LoggedData, flag: str, offset: int = 0) -> FloatArray:
    """Probabilities of a snapshot's policy on the logged (encoded) contexts."""
    from engine.journal.snapshot import read_snapshot

    header, policy = read_snapshot(path)
    check_features(header.get("feature_names"), data.feature_names, flag)
    if policy.n_features != data.n_features:
        raise InvalidInputError(
            flag, f"a model over {data.n_features} features", f"{policy.n_features}"
        )
    offers = [str(o) for o in header.get("offer_ids") or data.actions[: policy.n_actions]]
    unknown = [o for o in offers if o not in data.actions]
    if unknown:
        raise InvalidInputError(
            flag, f"offers of the log {list(data.actions)}", f"unknown offer {unknown[0]!r}"
        )
    if len(offers) != policy.n_actions:
        raise InvalidInputError(flag, f"{policy.n_actions} offer ids in its header", offers)
    columns = np.array([data.actions.index(o) for o in offers])
    # Offers of the log the snapshot does not know are never chosen by it.
    mask = data.action_mask()[:, columns]
    empty = ~mask.any(axis=1)
    mask[empty] = True  # a row where none of its offers was eligible: let it choose freely
    dist = np.zeros((data.n_rounds, data.n_actions))
    # Blocks of 8192 rows of the whole log, each seeded by its first row's index in it.
    start = 0
    while start < data.n_rounds:
        stop = min(start + 8192 - (offset + start) % 8192, data.n_rounds)
        seed = offset + start
        part = action_distribution(policy, data.context[start:stop], mask[start:stop], seed)
        dist[start:stop, columns] = part
        start = stop
    return dist


def check_features(found: Any, expected: tuple[str, ...], flag: str) -> None:
    """Fail naming the first feature where a model's feature names differ from the log's."""
    if found is None or not expected:
        return
    found = [str(f) for f in found]
    for i, (a, b) in enumerate(zip(found, expected, strict=False)):
        if a != b:
            raise InvalidInputError(
                flag, f"feature {i} to be {b!r} (the log's nbo.feature_names)", repr(a)
            )
    if len(found) != len(expected):
        i = min(len(found), len(expected))
        extra = found[i] if len(found) > i else expected[i]
        raise InvalidInputError(
            flag,
            f"the log's {len(expected)} features",
            f"{len(found)} features (first mismatch: feature {i}, {extra!r})",
        )


def action_distribution(
    policy: Policy, contexts: FloatArray, mask: BoolArray, seed: int = 0
) -> FloatArray:
    """pi(a | x) of ``policy`` for every action of every row, array of shape (n_rounds, n_actions).

    Exact for the policies whose choice is a known function of their scores (the greedy ones with
    their floor, epsilon-greedy, softmax): the same formula as their kernels, checked against the
    propensity ``choose`` reports for the chosen action. For the others (Thompson sampling, VW)
    the mean of ``64`` independent choices: an unbiased estimate.
    """
    policy = policy.copy()
    policy.rng_state_ = seed_state(seed)
    decision = policy.choose(contexts, mask)
    dist = _exact(policy, decision.scores, mask)
    rows = np.arange(contexts.shape[0])
    if dist is not None and np.allclose(
        dist[rows, decision.actions], decision.propensities, rtol=1e-9, atol=1e-12
    ):
        return dist
    dist = np.zeros((contexts.shape[0], policy.n_actions))
    for _ in range(_MC_DRAWS):
        dist[rows, policy.choose(contexts, mask).actions] += 1.0 / _MC_DRAWS
    return dist


def exact_policy(policy: Policy) -> bool:
    """Whether :func:`action_distribution` computes the policy's probabilities exactly (not by
    sampling its choices)."""
    exact = Softmax | UniformRandom | EpsilonGreedy | LinUCB | UCB1 | FixedAction | SharedLinear
    return isinstance(policy, exact)


def _exact(policy: Policy, scores: FloatArray, mask: BoolArray) -> FloatArray | None:
    floor = float(getattr(policy, "min_propensity", 0.0))
    k = mask.sum(axis=1, keepdims=True).astype(np.float64)
    masked = np.where(mask, scores, -np.inf)
    best = masked.max(axis=1, keepdims=True)
    if isinstance(policy, Softmax):
        p = np.where(mask, np.exp((masked - best) / policy.effective_temperature), 0.0)
        p /= p.sum(axis=1, keepdims=True)
        f = np.minimum(floor, 1.0 / k)
        return np.where(mask, f + (1.0 - k * f) * p, 0.0)
    if isinstance(policy, UniformRandom):
        epsilon = 1.0
    elif isinstance(policy, EpsilonGreedy):
        epsilon = policy.current_epsilon
    elif isinstance(policy, LinUCB | UCB1 | FixedAction | SharedLinear):
        epsilon = 0.0
    else:
        return None
    top = mask & (masked == best)
    f = np.minimum(np.maximum(epsilon / k, floor), 1.0 / k)
    share = (1.0 - k * f) / top.sum(axis=1, keepdims=True)
    return np.where(mask, f + np.where(top, share, 0.0), 0.0)


# ---------------------------------------------------------------------- probability files
def read_target_file(path: Path, data: LoggedData, flag: str) -> FloatArray:
    """Read and check long-form target probabilities for every logged decision.

    Checks, each failure naming the column and the first offending decision id: the columns
    exist; every action is an offer of the log; each (decision, action) pair appears once;
    probabilities are in [0, 1]; each decision's probabilities sum to 1 within 1e-6; every
    logged decision is covered. Rows for decisions the evaluation does not use (pending ones)
    are ignored.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if data.decision_id is None:
        raise InvalidInputError(flag, "logs with a decision_id column to join on", "none")
    is_csv = path.suffix.lower() in (".csv", ".tsv")
    if is_csv:
        table = pacsv.read_csv(path)
    else:
        # Only the rows of these decisions (a fragment's, in sharded evaluation).
        table = pq.read_table(
            path, filters=pc.field("decision_id").isin(pa.array(data.decision_id).cast(pa.string()))
        )
    for column in ("decision_id", "action", "probability"):
        if column not in table.column_names:
            raise InvalidInputError(
                f"{flag}: column {column!r}",
                "columns decision_id, action, probability",
                f"columns {table.column_names}",
            )
    ids = table.column("decision_id").cast(pa.string()).combine_chunks()
    logged = pa.array(data.decision_id).cast(pa.string())
    row = pc.index_in(ids, value_set=logged).to_numpy(zero_copy_only=False)
    used = ~np.isnan(row.astype(np.float64))
    if not used.all():
        keep = np.flatnonzero(used)
        table, ids = table.take(pa.array(keep)), ids.take(pa.array(keep))
    row = row[used].astype(np.int64)

    def fail(column: str, i: int, expected: str, got: Any) -> None:
        raise InvalidInputError(
            f"{flag}: column {column!r}, decision_id {ids[i].as_py()!r}", expected, got
        )

    actions = table.column("action").cast(pa.string()).combine_chunks()
    col = pc.index_in(actions, value_set=pa.array(list(data.actions))).to_numpy(
        zero_copy_only=False
    )
    unknown = np.isnan(col.astype(np.float64))
    if unknown.any():
        i = int(np.argmax(unknown))
        fail("action", i, f"an offer id in {list(data.actions)}", repr(actions[i].as_py()))
    col = col.astype(np.int64)
    prob_column = table.column("probability")
    if prob_column.null_count:
        fail("probability", int(np.argmax(prob_column.is_null().to_numpy())), "a number", None)
    prob = prob_column.cast(pa.float64()).to_numpy()
    bad = ~((prob >= 0.0) & (prob <= 1.0))
    if bad.any():
        i = int(np.argmax(bad))
        fail("probability", i, "a probability in [0, 1]", float(prob[i]))
    key = row * data.n_actions + col
    order = np.argsort(key, kind="stable")
    repeated = np.flatnonzero(np.diff(key[order]) == 0)
    if repeated.size:
        fail("action", int(order[repeated[0] + 1]), "one row per decision and action", "two")
    dist = np.zeros((data.n_rounds, data.n_actions))
    dist[row, col] = prob
    covered = np.zeros(data.n_rounds, dtype=bool)
    covered[row] = True
    if not covered.all():
        i = int(np.argmax(~covered))
        raise InvalidInputError(
            f"{flag}: column 'decision_id'",
            "every logged decision covered",
            f"no rows for decision_id {_id(data, i)!r}",
        )
    sums = dist.sum(axis=1)
    off = np.abs(sums - 1.0) > _SUM_TOLERANCE
    if off.any():
        i = int(np.argmax(off))
        raise InvalidInputError(
            f"{flag}: column 'probability', decision_id {_id(data, i)!r}",
            "probabilities summing to 1 (within 1e-6)",
            f"{sums[i]:.9g}",
        )
    return dist


def _id(data: LoggedData, i: int) -> Any:
    assert data.decision_id is not None
    value = data.decision_id[i]
    return value.as_py() if isinstance(value, pa.Scalar) else value
