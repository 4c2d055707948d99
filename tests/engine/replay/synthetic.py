"""A small linear environment with known expected rewards, and logs in the nbo schema.

Expected reward of offer a for context x: x @ theta[a] + bias[a]; observed reward adds N(0, noise²).
The logging policy is uniform or a softmax over a fixed noisy score, with exact propensities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from engine.replay.data import LoggedData


@dataclass(frozen=True)
class LinearEnv:
    theta: np.ndarray  # (n_actions, n_features)
    bias: np.ndarray  # (n_actions,)
    noise: float = 1.0

    @classmethod
    def make(cls, n_actions: int = 4, n_features: int = 3, seed: int = 0, noise: float = 1.0):
        rng = np.random.default_rng(seed)
        theta = rng.normal(size=(n_actions, n_features)) / np.sqrt(n_features)
        bias = rng.normal(scale=0.5, size=n_actions)
        return cls(theta, bias, noise)

    @property
    def n_actions(self) -> int:
        return self.theta.shape[0]

    def expected(self, contexts: np.ndarray) -> np.ndarray:
        return contexts @ self.theta.T + self.bias


@dataclass(frozen=True)
class Logs:
    context: np.ndarray
    action: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    expected: np.ndarray  # (n_rounds, n_actions)
    logging_dist: np.ndarray  # (n_rounds, n_actions)

    def data(self, actions: tuple[str, ...] | None = None) -> LoggedData:
        k = self.expected.shape[1]
        return LoggedData(
            context=self.context,
            action=self.action,
            propensity=self.propensity,
            reward=self.reward,
            actions=actions or tuple(f"offer{i}" for i in range(k)),
            timestamp=np.arange(len(self.action), dtype=np.int64) * 1_000_000,
        )


def logging_dist(env: LinearEnv, contexts: np.ndarray, kind: str) -> np.ndarray:
    k = env.n_actions
    if kind == "uniform":
        return np.full((contexts.shape[0], k), 1.0 / k)
    # softmax over a deliberately imperfect score, floored so every offer keeps support
    score = 2.0 * (contexts @ env.theta[::-1].T)
    score -= score.max(axis=1, keepdims=True)
    p = np.exp(score)
    p /= p.sum(axis=1, keepdims=True)
    p = 0.9 * p + 0.1 / k
    return p


def make_logs(env: LinearEnv, n_rounds: int, seed: int, kind: str = "uniform") -> Logs:
    rng = np.random.default_rng(seed)
    d = env.theta.shape[1]
    contexts = rng.normal(size=(n_rounds, d))
    dist = logging_dist(env, contexts, kind)
    cdf = np.cumsum(dist, axis=1)
    u = rng.random(n_rounds)[:, None]
    action = np.minimum((u > cdf).sum(axis=1), env.n_actions - 1).astype(np.int64)
    rows = np.arange(n_rounds)
    expected = env.expected(contexts)
    reward = expected[rows, action] + rng.normal(scale=env.noise, size=n_rounds)
    return Logs(contexts, action, dist[rows, action], reward, expected, dist)


def to_table(logs: Logs, actions: tuple[str, ...] | None = None) -> pa.Table:
    """The logs as a table in the logged-data schema (docs/architecture.md)."""
    n, d = logs.context.shape
    k = logs.expected.shape[1]
    names = actions or tuple(f"offer{i}" for i in range(k))
    context = pa.FixedSizeListArray.from_arrays(pa.array(logs.context.ravel()), d)
    table = pa.table(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "timestamp": pa.array(np.arange(n) * 1_000_000, pa.timestamp("us", tz="UTC")),
            "campaign": ["renewal"] * n,
            "customer_id": [f"c{i}" for i in range(n)],
            "context": context,
            "action": [names[a] for a in logs.action],
            "propensity": logs.propensity,
            "reward": logs.reward,
            "eligible": [list(names)] * n,
            "explored": np.zeros(n, dtype=bool),
            "control": np.zeros(n, dtype=bool),
            "model_version": ["v1"] * n,
        }
    )
    meta = {b"nbo.feature_names": json.dumps([f"x{j}" for j in range(d)]).encode()}
    return table.replace_schema_metadata(meta)


def write_foreign_csv(
    logs: Logs, path: Path, feature_names: Sequence[str], *, timestamps: bool = False
) -> None:
    """The logs as a CSV of another system's column names: ``offer`` ("o0", "o1", ...), ``p``
    (propensity), ``cost`` (minus the reward), one column per context feature, named
    ``feature_names``, and with ``timestamps`` an ISO time a second apart in ``when``."""
    columns = {
        "offer": [f"o{a}" for a in logs.action],
        "p": logs.propensity,
        "cost": -logs.reward,
        **{name: logs.context[:, j] for j, name in enumerate(feature_names)},
    }
    if timestamps:
        columns["when"] = [f"2026-01-01T00:00:{i:02d}Z" for i in range(len(logs.action))]
    pacsv.write_csv(pa.table(columns), path)
