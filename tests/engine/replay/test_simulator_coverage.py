"""DR and SNIPS intervals on the renewal simulator's logs cover the exact target value."""

from __future__ import annotations

import numpy as np
import pytest

from engine.policies import EpsilonGreedy, LinUCB
from engine.replay import from_table
from engine.replay.estimators import DR, SNIPS, OffPolicyInputs
from engine.replay.rewardmodel import RewardModel
from simulators.logged import generate_logs, true_policy_value
from simulators.renewal import RenewalEnvironment


@pytest.mark.slow
def test_intervals_cover_true_policy_value_over_seeds():
    env = RenewalEnvironment()
    k, d = len(env.action_ids), 24
    # A frozen greedy target and the reward model both learn from separate exploration logs.
    train = from_table(generate_logs(env, EpsilonGreedy(k, d, epsilon=1.0, seed=0), 5000, 999))
    target = LinUCB(k, d, alpha=0.0, seed=0)
    target.update(train.context, train.action, train.reward)
    model = RewardModel.fit(train.context, train.action, train.reward, k)
    # The logging policy half-explores around a weak model.
    logger = EpsilonGreedy(k, d, epsilon=0.5, seed=1)
    logger.update(train.context[:500], train.action[:500], train.reward[:500])
    n_seeds, n = 100, 2000
    hits = {"dr": 0, "snips": 0}
    for seed in range(n_seeds):
        logs = from_table(generate_logs(env, EpsilonGreedy.from_bytes(logger.to_bytes()), n, seed))
        truth = true_policy_value(env, target, n, seed=seed)
        chosen = LinUCB.from_bytes(target.to_bytes()).choose(logs.context, logs.eligible).actions
        dist = np.zeros((n, k))
        dist[np.arange(n), chosen] = 1.0
        inputs = OffPolicyInputs.from_action_dist(
            logs.reward, logs.action, logs.propensity, dist, model.predict(logs.context)
        )
        for name, estimator in (("dr", DR()), ("snips", SNIPS())):
            low, high = estimator.interval(inputs)
            hits[name] += low <= truth <= high
    coverage = {name: h / n_seeds for name, h in hits.items()}
    # nominal 95%; 100 seeds give a binomial sd of about 2 points
    assert 0.88 <= coverage["dr"] <= 1.0, coverage
    assert 0.88 <= coverage["snips"] <= 1.0, coverage
