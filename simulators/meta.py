"""Cases with ground truth for ``nbo evaluate --meta`` (:mod:`engine.replay.meta`).

``renewal``: the renewal simulator's logs from a half-exploring epsilon-greedy logging policy
(warm-started on 500 rows, so its propensities vary by customer) and, as the candidate, a greedy
linear policy trained once on separate uniform logs (written as an nbo snapshot). The truth is
the candidate's exact expected net reward on each seed's logged customers (the simulator's
expected rewards, the hidden shock integrated out).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.journal.snapshot import write_snapshot
from engine.policies import EpsilonGreedy, LinUCB
from engine.replay import from_table
from engine.replay.external import action_distribution, external_candidate
from engine.replay.meta import MetaCase
from simulators.logged import generate_logs, simulate_logs
from simulators.renewal import RenewalEnvironment


def renewal(n_rounds: int = 3000, epsilon: float = 0.5) -> Callable[[int], MetaCase]:
    """A ``seed -> MetaCase`` generator on the default renewal environment."""
    env = RenewalEnvironment()
    k, d = len(env.action_ids), len(env.feature_names)
    train = from_table(generate_logs(env, EpsilonGreedy(k, d, epsilon=1.0, seed=0), 5000, 10_000))
    target = LinUCB(k, d, alpha=0.0, seed=0)
    target.update(train.context, train.action, train.reward)
    logger = EpsilonGreedy(k, d, epsilon=epsilon, seed=1)
    logger.update(train.context[:500], train.action[:500], train.reward[:500])
    path = Path(tempfile.mkdtemp(prefix="nbo-meta-")) / "target.snap"
    header = {
        "version": "meta-target",
        "offer_ids": list(env.action_ids),
        "feature_names": list(env.feature_names),
    }
    write_snapshot(path, header, target)
    candidate = external_candidate(f"snapshot:{path}")
    assert candidate is not None

    def case(seed: int) -> MetaCase:
        logs = simulate_logs(env, EpsilonGreedy.from_bytes(logger.to_bytes()), n_rounds, seed)
        data = from_table(logs.table)
        dist = action_distribution(target, data.context, data.action_mask(), seed)
        expected = np.where(dist > 0, logs.expected_rewards, 0.0)
        truth = float((dist * expected).sum(axis=1).mean())
        return MetaCase(data, candidate, truth)

    return case
