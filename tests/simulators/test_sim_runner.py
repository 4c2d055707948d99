from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidInputError
from engine.policies import LinUCB
from simulators.renewal import RenewalEnvironment
from simulators.runner import DelayedFeedback, parse_policy, run_policy, summarize
from simulators.supervised import SupervisedEnvironment


def test_delayed_feedback_releases_in_time():
    q = DelayedFeedback()
    q.add(np.array([1.0, 5.0, 3.0]), np.array([10, 50, 30]))
    q.add(np.array([2.0]), np.array([20]))
    assert q.release(0.5) is None
    (first,) = q.release(2.0)  # type: ignore[misc]
    assert sorted(first.tolist()) == [10, 20]
    (second,) = q.release(4.0)  # type: ignore[misc]
    assert second.tolist() == [30]
    (third,) = q.release(100.0)  # type: ignore[misc]
    assert third.tolist() == [50]
    assert q.release(1e9) is None


def test_policy_learns_only_from_outcomes_already_known():
    env = RenewalEnvironment(delay_days=(10.0, 10.0))
    policy = LinUCB(7, 24, seed=0)
    n = 274 * 15  # 15 days of customers, batches of 137 (half a day)
    run_policy(env, policy, n, seed=0, batch_size=137)
    # outcomes of customers who arrived before day (last batch start - 10) are known
    last_start = (n - 137) / 274
    known = int(np.sum(np.arange(n) / 274 + 10.0 <= last_start))
    assert policy.n_updates_ == known


def test_every_policy_sees_the_same_customers_for_a_seed():
    env = RenewalEnvironment()
    a = run_policy(env, "random", 3000, seed=4)
    b = run_policy(env, "control", 3000, seed=4)
    c = run_policy(env, "random", 3000, seed=5)
    assert a.oracle == b.oracle and a.static_values == b.static_values
    assert a.oracle != c.oracle
    assert b.value == b.control  # the control policy always plays the control offer
    # per-segment counts cover every decision; control's agreement with the oracle is the share
    # of customers for whom no incentive is best
    assert sum(sum(c.values()) for c in b.segment_actions.values()) == 3000
    assert set(b.segment_actions) >= {"persuadable", "do_not_disturb"}
    rng = np.random.default_rng(np.random.SeedSequence(4).spawn(2)[0])  # the runner's stream
    expected = np.vstack(
        [env.sample_rounds(100, rng, start).expected_rewards for start in range(0, 3000, 100)]
    )
    none_best = expected[:, 0] >= expected.max(axis=1)
    assert b.oracle_agreement == pytest.approx(np.mean(none_best))
    again = run_policy(env, "random", 3000, seed=4)
    assert again.value == a.value and again.realized == a.realized


def test_summary_of_runs():
    env = RenewalEnvironment()
    runs = [run_policy(env, p, 2000, seed=s) for p in ("random", "control") for s in (0, 1)]
    summary = summarize(runs)
    control = summary["policies"]["control"]
    assert control["lift"] == pytest.approx(0.0, abs=1e-9)
    assert control["value"] == pytest.approx(summary["control"])
    assert control["n_seeds"] == 2 and control["value_ci"] > 0
    best = summary["best_static"]
    assert best["value"] == pytest.approx(max(summary["static_offers"].values()))
    for row in summary["policies"].values():
        assert row["pct_of_oracle"] <= 1.0
        assert row["regret"] >= 0.0


def test_parse_policy_errors():
    assert parse_policy("egreedy:epsilon=0.2:decay=true")[1]["decay"] is True
    with pytest.raises(InvalidInputError, match="policies: expected names from"):
        parse_policy("bandit9000")
    with pytest.raises(InvalidInputError, match="key=value"):
        parse_policy("linucb:alpha")


def test_supervised_stream():
    env = SupervisedEnvironment("digits", label_noise=0.1)
    rounds = env.sample_rounds(2000, np.random.default_rng(0))
    assert rounds.contexts.shape == (2000, 65)
    labels = rounds.truth["label"]
    out = env.draw_outcomes(rounds, labels, np.random.default_rng(1))
    assert abs(out.rewards.mean() - 0.9) < 0.03  # right class, 10% flipped
    np.testing.assert_allclose(rounds.expected_reward_of(labels), 0.9)
    assert rounds.oracle_actions().tolist() == labels.tolist()
    with pytest.raises(InvalidInputError, match="dataset"):
        SupervisedEnvironment("covtype")


@pytest.mark.slow
def test_linucb_learns_renewal_offers():
    """Seeded: after 30,000 delayed-feedback customers LinUCB beats control, random and the best
    single static offer on the same customers, and its late decisions are near the oracle's."""
    env = RenewalEnvironment()
    res = run_policy(env, "linucb", 30_000, seed=0)
    random = run_policy(env, "random", 30_000, seed=0)
    summary = summarize([res, random])
    linucb = summary["policies"]["linucb"]
    assert linucb["value"] > summary["best_static"]["value"] + 5.0
    assert linucb["value"] > summary["control"] + 10.0
    assert linucb["value"] > summary["policies"]["random"]["value"] + 10.0
    # the last third of the stream: >= 93% of the oracle's value
    i = len(res.checkpoints) * 2 // 3
    late = (res.value[-1] - res.value[i]) / (res.oracle[-1] - res.oracle[i])
    assert late > 0.93


@pytest.mark.slow
def test_linucb_learns_digits():
    env = SupervisedEnvironment("digits")
    res = run_policy(env, "linucb", 6000, seed=1)
    i = len(res.checkpoints) // 2
    accuracy_late = (res.value[-1] - res.value[i]) / (res.checkpoints[-1] - res.checkpoints[i])
    assert accuracy_late > 0.85
