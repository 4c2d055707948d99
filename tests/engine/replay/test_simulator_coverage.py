"""DR and SNIPS intervals on the renewal simulators' logs (one offer, and offer x channel x send
window) cover the exact target value."""

from __future__ import annotations

import numpy as np
import pytest

from engine.policies import EpsilonGreedy, LinUCB
from engine.replay import from_table
from engine.replay.estimators import DR, SNIPS, OffPolicyInputs
from engine.replay.rewardmodel import RewardModel
from simulators.envs import make_env
from simulators.logged import generate_logs, true_policy_value


@pytest.mark.slow
@pytest.mark.parametrize("name", ["renewal", "renewal-multi"])
def test_intervals_cover_true_policy_value_over_seeds(name):
    env_name = name
    env = make_env(env_name)
    k, d = len(env.action_ids), len(env.feature_names)
    # A frozen greedy target and the reward model both learn from separate exploration logs.
    train = from_table(generate_logs(env, EpsilonGreedy(k, d, epsilon=1.0, seed=0), 5000, 999))
    target = LinUCB(k, d, alpha=0.0, seed=0)
    target.update(train.context, train.action, train.reward)
    model = RewardModel.fit(train.context, train.action, train.reward, k)
    # The logging policy half-explores around a weak model.
    logger = EpsilonGreedy(k, d, epsilon=0.5, seed=1)
    logger.update(train.context[:500], train.action[:500], train.reward[:500])
    n_seeds, n = 100, 2000
    hits = {(e, m): 0 for e in ("dr", "snips") for m in ("normal", "bernstein")}
    for seed in range(n_seeds):
        logs = from_table(generate_logs(env, EpsilonGreedy.from_bytes(logger.to_bytes()), n, seed))
        truth = true_policy_value(env, target, n, seed=seed)
        chosen = LinUCB.from_bytes(target.to_bytes()).choose(logs.context, logs.eligible).actions
        dist = np.zeros((n, k))
        dist[np.arange(n), chosen] = 1.0
        inputs = OffPolicyInputs.from_action_dist(
            logs.reward, logs.action, logs.propensity, dist, model.predict(logs.context)
        )
        for (name, method), estimator in zip(hits, (DR(), DR(), SNIPS(), SNIPS()), strict=True):
            low, high = estimator.interval(inputs, method=method)
            hits[name, method] += low <= truth <= high
    coverage = {f"{e}-{m}": h / n_seeds for (e, m), h in hits.items()}
    # nominal 95%; 100 seeds give a binomial sd of about 2 points
    assert 0.88 <= coverage["snips-normal"] <= 1.0, coverage
    assert coverage["dr-bernstein"] >= 0.95, coverage  # conservative by construction
    if env_name == "renewal":
        assert 0.88 <= coverage["dr-normal"] <= 1.0, coverage
    else:
        # 84 combinations: the target's action has logging propensity ~0.006 off the logger's
        # greedy choice, and DR's normal interval under-covers at these sizes (measured 0.86 at
        # 2,000 and at 4,000 rows; SNIPS' covers, 0.89-0.95): README, "Known limits".
        assert 0.8 <= coverage["dr-normal"] <= 1.0, coverage
