"""Candidate policies: specs with grids, and the per-shard work that evaluates them.

A candidate is a policy spec for :func:`engine.policies.make_policy` plus how it is evaluated:

* ``static``: trained once on the train split (every logged row, with its propensity), then frozen
  and scored on the test split;
* ``learning``: started fresh and replayed through the test split in time order (Li et al. 2011):
  it chooses on each batch, and learns only from the events where its choice matched the log (kept
  by rejection sampling with probability min(propensity) / propensity, so non-uniform logs work);
* ``baseline``: the logging policy itself (on-policy mean), uniform random and the control offer.

The functions here are pure: the same arguments give the same numbers in-process and in a Ray
worker, which is what makes the fan-out in :mod:`engine.replay.evaluate` reproducible.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
from threadpoolctl import threadpool_limits

from engine.errors import InvalidInputError
from engine.kernels import seed_state
from engine.policies import Policy, engagement_columns, make_policy
from engine.replay.data import signal_rows
from engine.replay.diagnostics import diagnostic_sums
from engine.replay.estimators import Estimator, OffPolicyInputs, make_estimators
from engine.replay.intervals import (
    Moments,
    bootstrap_columns,
    bootstrap_sums,
    cluster_totals,
    terms_columns,
)
from engine.replay.rewardmodel import predict_out_of_fold
from engine.types import BoolArray, FloatArray, IntArray

KINDS = ("static", "learning")
_F = TypeVar("_F", bound=Callable[..., Any])


def _one_blas_thread(fn: _F) -> _F:
    """Run ``fn`` with single-threaded BLAS: a multi-threaded matrix product sums in an order
    that depends on the thread count, and Ray workers run with one thread while a driver may use
    many, which would break "identical numbers whichever way it ran"."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1):
            return fn(*args, **kwargs)

    return cast(_F, wrapper)


@dataclass(frozen=True)
class Candidate:
    """One policy to evaluate.

    Attributes
    ----------
    label : str
        Name in the report, e.g. ``linucb(alpha=0.5) static``.
    spec : dict
        ``make_policy`` spec; for baselines ``{"name": "logging"}``, ``{"name": "uniform"}``
        or ``{"name": "control", "action": index}``.
    kind : {"static", "learning", "baseline"}
    """

    label: str
    spec: dict[str, Any]
    kind: str


def parse_policy(text: str) -> dict[str, Any]:
    """Parse a policy argument: a JSON object, a name, or ``name:key=v1,v2:key2=v``.

    Comma-separated values (or JSON lists) form a grid.

    Examples
    --------
    >>> parse_policy("linucb:alpha=0.1,1:l2=2")
    {'name': 'linucb', 'alpha': [0.1, 1], 'l2': 2}
    >>> parse_policy('{"name": "egreedy", "epsilon": [0.05, 0.1]}')
    {'name': 'egreedy', 'epsilon': [0.05, 0.1]}
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError("--policy", "a JSON object with a 'name'", text) from exc
        if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
            raise InvalidInputError("--policy", "a JSON object with a 'name'", text)
        return parsed
    name, *parts = text.split(":")
    if not name:
        raise InvalidInputError("--policy", "NAME[:KEY=VALUE[,VALUE...]]...", text)
    spec: dict[str, Any] = {"name": name}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise InvalidInputError("--policy", "KEY=VALUE after the policy name", part)
        values = [_scalar(v) for v in value.split(",")]
        spec[key] = values if len(values) > 1 else values[0]
    return spec


def _scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def expand_grid(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the list-valued hyperparameters of ``spec``.

    Examples
    --------
    >>> [s["alpha"] for s in expand_grid({"name": "linucb", "alpha": [0.1, 1.0]})]
    [0.1, 1.0]
    """
    grid_keys = [k for k, v in spec.items() if isinstance(v, list) and k != "name"]
    if not grid_keys:
        return [dict(spec)]
    out = []
    for values in itertools.product(*(spec[k] for k in grid_keys)):
        one = dict(spec)
        one.update(zip(grid_keys, values, strict=True))
        out.append(one)
    return out


def make_candidates(specs: list[dict[str, Any]], kinds: tuple[str, ...] = KINDS) -> list[Candidate]:
    """Candidates for every spec, grid point and kind."""
    for kind in kinds:
        if kind not in KINDS:
            raise InvalidInputError("--mode", f"one of {KINDS}", kind)
    out: list[Candidate] = []
    for spec in specs:
        for one in expand_grid(spec):
            params = ", ".join(f"{k}={v}" for k, v in one.items() if k != "name")
            base = f"{one['name']}({params})" if params else str(one["name"])
            out.extend(Candidate(f"{base} {kind}", one, kind) for kind in kinds)
    labels = [c.label for c in out]
    if len(set(labels)) != len(labels):
        raise InvalidInputError("--policy", "distinct candidates", labels)
    return out


def baselines(control_action: int | None, actions: tuple[str, ...]) -> list[Candidate]:
    """The logging policy, uniform random and (when known) the control offer."""
    out = [
        Candidate("logging policy", {"name": "logging"}, "baseline"),
        Candidate("uniform random", {"name": "uniform"}, "baseline"),
    ]
    if control_action is not None:
        spec = {"name": "control", "action": control_action}
        out.append(Candidate(f"control ({actions[control_action]})", spec, "baseline"))
    return out


# ---------------------------------------------------------------------- shard work
@dataclass(frozen=True)
class EvalConfig:
    """Settings shared by every task of one evaluation."""

    estimators: tuple[str, ...] = (
        "replay",
        "ips",
        "snips",
        "dm",
        "dr",
        "sndr",
        "switch-dr",
        "dr-os",
        "sg-ips",
    )
    clip: float | None = None
    n_bootstrap: int = 200
    seed: int = 0
    batch_size: int = 256

    def make(self) -> list[Estimator]:
        return make_estimators(self.estimators, self.clip)


@dataclass(frozen=True, eq=False)
class Shard:
    """Rows of the test split, as plain arrays (cheap to ship to a Ray worker)."""

    index: int
    context: FloatArray
    action: IntArray
    propensity: FloatArray
    reward: FloatArray
    mask: BoolArray | None
    cluster: IntArray | None = None  # customer codes, when intervals resample customers
    fold: IntArray | None = None  # cross-fitting fold of each row (coef of shape (K, k, d + 1))
    start: int = 0  # first row in the evaluation split
    unseen: BoolArray | None = None  # offers never logged in the row's stratum (no eligible column)
    signals: dict[str, FloatArray] | None = None  # the rewards' components, NaN where absent

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def action_mask(self, n_actions: int) -> BoolArray:
        if self.mask is not None:
            return self.mask
        return np.ones((len(self), n_actions), dtype=np.bool_)


@dataclass(frozen=True, eq=False)
class ShardSummary:
    """Additive results of one candidate on one shard."""

    moments: dict[str, Moments]
    bootstrap: dict[str, FloatArray] = field(default_factory=dict)  # (n_bootstrap, 4) each
    diagnostics: FloatArray = field(default_factory=lambda: np.zeros(8))
    # Clustered runs: the customer codes present in the shard and, per estimator, the sums of
    # the terms (1, a, b, c) per customer, array of shape (n_clusters_in_shard, 4).
    clusters: IntArray | None = None
    cluster_totals: dict[str, FloatArray] = field(default_factory=dict)


def summarize(
    inputs: OffPolicyInputs,
    estimators: list[Estimator],
    n_bootstrap: int,
    seed: int,
    first_row: int,
    cluster: IntArray | None = None,
    unseen_mass: float = 0.0,
) -> ShardSummary:
    """Moments, bootstrap sums and diagnostic sums of every estimator on one shard's inputs
    (``first_row``: the shard's first row in the evaluation split, which keys the bootstrap)."""
    return summarize_many(
        [inputs], estimators, n_bootstrap, seed, first_row, cluster, [unseen_mass]
    )[0]


def summarize_many(
    inputs: list[OffPolicyInputs],
    estimators: list[Estimator],
    n_bootstrap: int,
    seed: int,
    first_row: int,
    cluster: IntArray | None = None,
    unseen_mass: list[float] | None = None,
) -> list[ShardSummary]:
    """:func:`summarize` for several candidates on the same shard rows.

    The bootstrap resamples all of them with the same Poisson weights (drawn once), which is
    cheaper and makes the comparison between candidates paired. With ``cluster`` (each row's
    customer code) the terms are also summed per customer and no row bootstrap is drawn: the
    driver resamples customers once every shard's totals are in.
    """
    all_terms = [
        {e.key: e.terms(x) for e in estimators if not e.needs_model or x.q_target is not None}
        for x in inputs
    ]
    n = len(inputs[0]) if inputs else 0
    boots: list[dict[str, FloatArray]] = [{} for _ in inputs]
    clusters, local = (None, None) if cluster is None else np.unique(cluster, return_inverse=True)
    if cluster is not None:
        n_bootstrap = 0
    if n_bootstrap > 0 and n:
        flat = [t for terms in all_terms for t in terms.values()]
        columns, expand = bootstrap_columns(flat, n)
        expanded = iter(expand(bootstrap_sums(columns, n_bootstrap, seed, first_row)))
        boots = [{name: next(expanded) for name in terms} for terms in all_terms]
    return [
        ShardSummary(
            {name: Moments.from_terms(*t, n=n) for name, t in terms.items()},
            boot,
            diagnostic_sums(x, mass),
            clusters,
            {}
            if local is None or clusters is None
            else {
                name: cluster_totals(terms_columns(t, n), local, clusters.shape[0])
                for name, t in terms.items()
            },
        )
        for x, terms, boot, mass in zip(
            inputs, all_terms, boots, unseen_mass or [0.0] * len(inputs), strict=True
        )
    ]


@_one_blas_thread
def static_shard(
    shard: Shard,
    candidates: list[Candidate],
    blobs: list[bytes | FloatArray | None],
    coef: FloatArray | None,
    n_actions: int,
    p_min: float,
    config: EvalConfig,
) -> list[ShardSummary]:
    """Evaluate frozen policies (``blobs``: model bytes, or for external candidates their
    action probabilities on the shard's rows) and baselines on one shard, one summary each."""
    q_hat = reward_predictions(coef, shard)
    inputs, masses = [], []
    for c, blob in zip(candidates, blobs, strict=True):
        x, dist = _static_inputs(shard, c, blob, q_hat, n_actions, p_min, config.seed)
        inputs.append(x)
        if shard.unseen is None or dist is None or c.kind == "baseline":
            masses.append(0.0)
        else:
            masses.append(float((dist * shard.unseen).sum()))
    return summarize_many(
        inputs, config.make(), config.n_bootstrap, config.seed, shard.start, shard.cluster, masses
    )


def _static_inputs(
    shard: Shard,
    candidate: Candidate,
    blob: bytes | FloatArray | None,
    q_hat: FloatArray | None,
    n_actions: int,
    p_min: float,
    seed: int,
) -> tuple[OffPolicyInputs, FloatArray | None]:
    """The estimators' inputs of one candidate on a shard, and its action distribution (None
    for the logging policy, which is known only through its logged choices)."""
    mask = shard.action_mask(n_actions)
    rows = np.arange(len(shard))
    name = candidate.spec["name"]
    if candidate.kind == "baseline" and name == "logging":
        # On-policy: weight 1, and the logged offer is a draw from the logging policy, so its
        # model prediction is an unbiased stand-in for the model averaged over that policy.
        q_logged = None if q_hat is None else q_hat[rows, shard.action]
        ones = np.ones(len(shard))
        logged = OffPolicyInputs(
            shard.reward, shard.propensity, ones, q_logged, q_logged, accepted=ones
        )
        return logged, None
    if candidate.kind == "baseline" and name == "uniform":
        dist = mask / mask.sum(axis=1, keepdims=True)
    elif candidate.kind == "external":
        if not isinstance(blob, np.ndarray):
            raise InvalidInputError("blob", f"action probabilities for {candidate.label}", None)
        dist = blob
    else:
        if candidate.kind == "baseline":
            spec = {"name": "fixed", "action": candidate.spec["action"]}
            policy: Policy = make_policy(spec, n_actions, shard.context.shape[1])
        elif isinstance(blob, bytes):
            policy = Policy.from_bytes(blob)
        else:
            raise InvalidInputError("blob", f"a trained model for {candidate.label}", None)
        policy.rng_state_ = seed_state(_mix(seed, shard.index))
        decision = policy.choose(shard.context, mask)
        dist = np.zeros((len(shard), n_actions))
        dist[rows, decision.actions] = 1.0
    inputs = OffPolicyInputs.from_action_dist(
        shard.reward, shard.action, shard.propensity, dist, q_hat
    )
    # Replay of a frozen policy: the expected acceptance (match x rejection-sampling coin).
    replay = OffPolicyInputs(
        inputs.reward,
        inputs.propensity,
        inputs.weight,
        inputs.q_logged,
        inputs.q_target,
        accepted=inputs.weight * p_min,
    )
    return replay, dist


@_one_blas_thread
def train_static(
    candidate: Candidate,
    context: FloatArray,
    action: IntArray,
    propensity: FloatArray,
    reward: FloatArray,
    n_actions: int,
    seed: int,
    signals: dict[str, FloatArray] | None = None,
) -> bytes:
    """Train a static candidate on the train split (every logged row); returns its model bytes.
    ``signals``: the rows' reward components (:attr:`LoggedData.signals`)."""
    policy = make_policy(candidate.spec, n_actions, context.shape[1], seed=seed)
    if len(action):
        policy.update(
            context, action, reward, propensity, signals=engagement_columns(policy, signals)
        )
    return policy.to_bytes()


@_one_blas_thread
def learning_replay(
    candidate: Candidate,
    shards: Iterable[Shard],
    coef: FloatArray | None,
    n_actions: int,
    p_min: float,
    config: EvalConfig,
) -> list[ShardSummary]:
    """Replay a learning policy through the shards in order (Li et al. 2011, batched).

    ``shards`` may be any iterable (a generator reading them one at a time keeps one in memory).

    The policy chooses on each batch of ``config.batch_size`` rows, then learns from the rows
    where it matched the logged offer and the rejection-sampling coin (probability
    ``p_min / propensity``) kept the event. Returns one summary per shard, whose ``replay``
    estimate is the mean reward over kept events.
    """
    policy: Policy | None = None
    rng = acceptance_rng(config.seed)
    estimators = config.make()
    out = []
    for shard in shards:
        if policy is None:
            n_features = shard.context.shape[1]
            policy = make_policy(candidate.spec, n_actions, n_features, seed=config.seed)
        n = len(shard)
        mask = shard.action_mask(n_actions)
        chosen = np.empty(n, dtype=np.int64)
        accepted = np.zeros(n)
        for start in range(0, n, config.batch_size):
            stop = min(start + config.batch_size, n)
            X = shard.context[start:stop]
            decision = policy.choose(X, mask[start:stop])
            chosen[start:stop] = decision.actions
            logged = shard.action[start:stop]
            keep = (decision.actions == logged) & (
                rng.random(stop - start) * shard.propensity[start:stop] < p_min
            )
            accepted[start:stop] = keep
            if keep.any():
                rows = np.flatnonzero(keep) + start
                signals = engagement_columns(policy, signal_rows(shard.signals, rows))
                policy.update(
                    X[keep], logged[keep], shard.reward[start:stop][keep], signals=signals
                )
        dist_weight = (chosen == shard.action) / shard.propensity
        q_logged = q_target = None
        q_hat = reward_predictions(coef, shard)
        if q_hat is not None:
            rows = np.arange(n)
            q_logged, q_target = q_hat[rows, shard.action], q_hat[rows, chosen]
        inputs = OffPolicyInputs(
            shard.reward, shard.propensity, dist_weight, q_logged, q_target, accepted
        )
        unseen = 0.0 if shard.unseen is None else float(shard.unseen[np.arange(n), chosen].sum())
        out.append(
            summarize(
                inputs,
                estimators,
                config.n_bootstrap,
                config.seed,
                shard.start,
                shard.cluster,
                unseen,
            )
        )
    return out


def reward_predictions(coef: FloatArray | None, shard: Shard) -> FloatArray | None:
    """The reward model's prediction of every offer on the shard's rows, (n_rounds, n_actions).

    ``coef`` of shape (n_actions, n_features + 1), or (n_folds, n_actions, n_features + 1) for a
    cross-fitted model: each row is predicted by the model of its fold, which never saw it
    (:func:`engine.replay.rewardmodel.cross_fit`).
    """
    if coef is None:
        return None
    if coef.ndim == 2:
        return shard.context @ coef[:, :-1].T + coef[:, -1]
    fold = shard.fold if shard.fold is not None else np.zeros(len(shard), dtype=np.int64)
    return predict_out_of_fold(coef, shard.context, fold)


def acceptance_rng(seed: int) -> np.random.Generator:
    """The generator of the replay's rejection-sampling coins (one draw per row, in order)."""
    return np.random.default_rng([seed, 0x5EED])


def _mix(seed: int, shard: int) -> int:
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, dtype=np.uint64)[0])
