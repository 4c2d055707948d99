"""Logged bandit data with known ground truth, for validating off-policy evaluation.

:func:`generate_logs` runs any :mod:`engine.policies` policy on an environment and writes what a
production journal would export (docs/architecture.md, "Logged-data schema"), with the exact
propensity of every logged action. :func:`true_policy_value` gives the exact expected net reward per
round of any target policy on the *same* customers (same seed), which is what an off-policy
estimator computed on those logs tries to recover.

Schema metadata: ``nbo.feature_names`` holds the JSON list of context column names;
``nbo.offer_ids`` the JSON list of offer ids (index order of the policy's actions) and
``nbo.campaign`` the campaign name, as ``nbo export`` writes them; ``nbo.environment`` and
``nbo.seed`` record where the logs came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict, Unpack

import numpy as np
import pyarrow as pa

from engine.errors import InvalidInputError
from engine.policies import Policy
from engine.types import FloatArray
from simulators.base import Environment, check_n_rounds

#: Timestamp of round 0 of every generated log (rounds follow at the environment's arrival rate).
LOG_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class LoggedRounds:
    """Logs plus the ground truth behind them.

    Attributes
    ----------
    table : pyarrow.Table
        The logs in the logged-data schema (docs/architecture.md).
    expected_rewards : array of shape (n_rounds, n_actions)
        Ground-truth expected net reward of every action per logged round (-inf if ineligible).
    action_mask : array of shape (n_rounds, n_actions)
    """

    table: pa.Table
    expected_rewards: FloatArray
    action_mask: np.ndarray

    def value_of_actions(self, actions: np.ndarray) -> float:
        """Mean expected reward had ``actions`` (shape (n_rounds,)) been taken on these rounds."""
        rows = np.arange(self.expected_rewards.shape[0])
        return float(np.mean(self.expected_rewards[rows, np.asarray(actions)]))


class LogOptions(TypedDict, total=False):
    """The keyword options of :func:`simulate_logs` (defaults there), which
    :func:`generate_logs` passes on as they came: ``learn`` and ``batch_size``."""

    learn: bool
    batch_size: int


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for customers and for outcomes, both fixed by ``seed``."""
    contexts, outcomes = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(contexts), np.random.default_rng(outcomes)


def _check_policy(env: Environment, policy: object, name: str) -> Policy:
    if not isinstance(policy, Policy):
        raise InvalidInputError(name, "an engine.policies Policy", type(policy).__name__)
    n_actions, n_features = len(env.action_ids), len(env.feature_names)
    if policy.n_actions != n_actions or policy.n_features not in (0, n_features):
        raise InvalidInputError(
            name,
            f"a policy with n_actions={n_actions} and n_features={n_features}",
            f"n_actions={policy.n_actions}, n_features={policy.n_features}",
        )
    return policy


def _contexts_for(policy: Policy, contexts: FloatArray) -> FloatArray:
    return contexts if policy.n_features else np.zeros((contexts.shape[0], 0))


def simulate_logs(
    env: Environment,
    logging_policy: Policy,
    n_rounds: int,
    seed: int = 0,
    *,
    learn: bool = False,
    batch_size: int = 1000,
) -> LoggedRounds:
    """Like :func:`generate_logs`, also returning the ground truth of every logged round."""
    policy = _check_policy(env, logging_policy, "logging_policy")
    n_rounds = check_n_rounds(n_rounds)
    batch_size = check_n_rounds(batch_size, "batch_size")
    rng_contexts, rng_outcomes = _streams(seed)
    ids = list(env.action_ids)
    parts: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "contexts",
            "actions",
            "propensities",
            "rewards",
            "explored",
            "days",
            "mask",
            "expected",
        )
    }
    customers: list[str] = []
    signals: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_rounds, batch_size):
        rounds = env.sample_rounds(min(batch_size, n_rounds - start), rng_contexts, start)
        X = _contexts_for(policy, rounds.contexts)
        decision = policy.choose(X, rounds.action_mask)
        outcomes = env.draw_outcomes(rounds, decision.actions, rng_outcomes)
        if learn:
            policy.update(
                X,
                decision.actions,
                outcomes.rewards,
                decision.propensities,
                signals=outcomes.signals or None,
            )
        for key, column in outcomes.signals.items():
            signals.setdefault(key, []).append(column)
        parts["contexts"].append(rounds.contexts)
        parts["actions"].append(decision.actions)
        parts["propensities"].append(decision.propensities)
        parts["rewards"].append(outcomes.rewards)
        parts["explored"].append(decision.explored)
        parts["days"].append(rounds.timestamps)
        parts["mask"].append(rounds.action_mask)
        parts["expected"].append(rounds.expected_rewards)
        customers.extend(rounds.customer_ids)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    contexts = np.ascontiguousarray(cat["contexts"], dtype=np.float64)
    n, d = contexts.shape
    id_array = np.asarray(ids, dtype=object)
    eligible = [list(id_array[row]) for row in cat["mask"]]
    micros = LOG_EPOCH.timestamp() * 1e6 + np.round(cat["days"] * _US_PER_DAY)
    table = pa.table(
        {
            "decision_id": pa.array([f"sim-{seed}-{i:09d}" for i in range(n)], pa.string()),
            "timestamp": pa.array(micros.astype(np.int64), pa.timestamp("us", tz="UTC")),
            "campaign": pa.array([env.name] * n, pa.string()),
            "customer_id": pa.array(customers, pa.string()),
            "context": pa.FixedSizeListArray.from_arrays(pa.array(contexts.reshape(-1)), d),
            "action": pa.array(id_array[cat["actions"]].tolist(), pa.string()),
            "propensity": pa.array(cat["propensities"], pa.float64()),
            "reward": pa.array(cat["rewards"], pa.float64()),
            "eligible": pa.array(eligible, pa.list_(pa.string())),
            "explored": pa.array(cat["explored"], pa.bool_()),
            # simulated customers are never held out in a control group
            "control": pa.array(np.zeros(n, dtype=bool), pa.bool_()),
            "model_version": pa.array([type(policy).__name__] * n, pa.string()),
            # the rewards' components (renewal-multi: engaged), as the journal exports them
            "components": _components({k: np.concatenate(v) for k, v in signals.items()}, n),
        }
    )
    table = table.replace_schema_metadata(
        {
            "nbo.feature_names": json.dumps(list(env.feature_names)),
            "nbo.offer_ids": json.dumps(ids),
            "nbo.campaign": env.name,
            "nbo.environment": env.name,
            "nbo.seed": str(seed),
        }
    )
    return LoggedRounds(table=table, expected_rewards=cat["expected"], action_mask=cat["mask"])


def _components(signals: dict[str, np.ndarray], n: int) -> pa.Array:
    """One map per row of the signals it has (NaN: none), null for a row without any."""
    rows: list[list[tuple[str, float]] | None] = [None] * n
    for key in sorted(signals):
        column = signals[key]
        for i in np.flatnonzero(~np.isnan(column)):
            entry = rows[i]
            if entry is None:
                entry = rows[i] = []
            entry.append((key, float(column[i])))
    return pa.array(rows, pa.map_(pa.string(), pa.float64()))


def generate_logs(
    env: Environment,
    logging_policy: Policy,
    n_rounds: int,
    seed: int = 0,
    **options: Unpack[LogOptions],
) -> pa.Table:
    """Logged data of ``logging_policy`` on ``env`` in docs/architecture.md's logged-data schema.

    Parameters
    ----------
    env : Environment
        For example ``RenewalEnvironment()`` or ``SupervisedEnvironment("digits")``.
    logging_policy : engine.policies.Policy
        Any policy with ``n_actions = len(env.action_ids)`` (and ``n_features`` = the
        environment's, or 0 for context-free policies). Its state advances as it chooses.
    n_rounds : int
    seed : int
        Fixes the customers and outcomes (the policy's own randomness comes from its seed).
    learn : bool, keyword-only, default False
        Update the policy after each batch (an adaptive logging policy; each logged propensity
        is still the exact probability used for that decision).
    batch_size : int, keyword-only, default 1000

    Returns
    -------
    pyarrow.Table
        Columns decision_id, timestamp, campaign, customer_id, context
        (fixed_size_list<float64>[n_features]), action (offer id), propensity, reward (net),
        eligible, explored, control, model_version; schema metadata ``nbo.feature_names`` and
        ``nbo.offer_ids`` (JSON lists).

    Examples
    --------
    >>> from engine.policies import UniformRandom
    >>> from simulators.renewal import RenewalEnvironment
    >>> env = RenewalEnvironment()
    >>> logs = generate_logs(env, UniformRandom(7, seed=0), n_rounds=500, seed=1)
    >>> logs.num_rows, logs.schema.field("context").type
    (500, FixedSizeListType(fixed_size_list<item: double>[24]))
    >>> import json; json.loads(logs.schema.metadata[b"nbo.feature_names"])[:3]
    ['bias', 'tenure_months', 'monthly_price']
    """
    return simulate_logs(env, logging_policy, n_rounds, seed, **options).table


def true_policy_value(
    env: Environment,
    policy: Policy,
    n_rounds: int,
    seed: int = 0,
    *,
    n_repeats: int = 1,
    batch_size: int = 1000,
) -> float:
    """Exact expected net reward per round of a (fixed) target policy on the logged customers.

    The customers are those :func:`generate_logs` draws with the same ``seed`` and ``n_rounds``,
    so this is the quantity an off-policy estimate on those logs targets. Outcomes enter through
    their ground-truth expectation (no outcome noise); a policy that randomizes is averaged over
    ``n_repeats`` independent passes. The policy is not changed (a copy chooses).

    Examples
    --------
    >>> from engine.policies import FixedAction
    >>> from simulators.renewal import RenewalEnvironment
    >>> env = RenewalEnvironment()
    >>> control = true_policy_value(env, FixedAction(7, action=0), n_rounds=2000, seed=1)
    >>> logs = simulate_logs(env, FixedAction(7, action=0), n_rounds=2000, seed=1)
    >>> bool(abs(control - logs.value_of_actions(np.zeros(2000, dtype=int))) < 1e-9)
    True
    """
    policy = _check_policy(env, policy, "policy")
    n_rounds = check_n_rounds(n_rounds)
    n_repeats = check_n_rounds(n_repeats, "n_repeats")
    batch_size = check_n_rounds(batch_size, "batch_size")
    clone = type(policy).from_bytes(policy.to_bytes())
    rng_contexts, _ = _streams(seed)
    total = 0.0
    for start in range(0, n_rounds, batch_size):
        rounds = env.sample_rounds(min(batch_size, n_rounds - start), rng_contexts, start)
        X = _contexts_for(clone, rounds.contexts)
        for _ in range(n_repeats):
            actions = clone.choose(X, rounds.action_mask).actions
            total += float(np.sum(rounds.expected_reward_of(actions)))
    return total / (n_rounds * n_repeats)
