"""No GO without trustworthy evidence (issue 15, item 8).

The issue's repro: the same logged rows give NO-GO with their ``eligible`` column and GO
without it, because the candidate favours an offer that was never eligible (so never logged)
for many customers, and only the reward model's extrapolation vouches for it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.replay.candidates import EvalConfig, make_candidates
from engine.replay.data import LoggedData
from engine.replay.evaluate import evaluate
from engine.replay.fanout import Runner
from engine.replay.results import Gate

IN_PROCESS = Runner(workers=0, progress=False)
OFFERS = ("none", "discount", "gift")


def constrained_logs(
    n: int = 5000, seed: int = 0, slope: float = 1.0, noise: float = 2.0
) -> LoggedData:
    """Premium customers may get the gift; basic ones may not (it is never logged for them).

    The gift's reward grows with tenure among premium customers, and a linear reward model
    carries that slope over to basic customers, where the gift would in truth earn nothing.
    """
    rng = np.random.default_rng(seed)
    premium = rng.random(n) < 0.3
    tenure = rng.normal(size=n)
    context = np.column_stack([premium.astype(float), tenure])
    eligible = np.ones((n, 3), dtype=bool)
    eligible[~premium, 2] = False
    k = eligible.sum(axis=1)
    action = np.where(
        premium, rng.integers(0, 3, n), rng.integers(0, 2, n)
    )  # uniform over the eligible offers
    # The gift pays off with tenure (seen among premium customers only), a little.
    expected = np.column_stack([np.full(n, 1.5), np.full(n, 1.5), 1.5 + slope * tenure])
    reward = expected[np.arange(n), action] + noise * rng.normal(size=n)
    return LoggedData(
        context=context,
        action=action,
        propensity=1.0 / k,
        reward=reward,
        actions=OFFERS,
        feature_names=("plan=premium", "tenure"),
        eligible=eligible,
        timestamp=np.arange(n, dtype=np.int64),
    )


def _evaluate(data: LoggedData, gate: Gate | None = None):
    config = EvalConfig(estimators=("ips", "snips", "dm", "dr"), n_bootstrap=100)
    candidates = make_candidates([{"name": "linucb", "alpha": 0.0}], ("static",))
    return evaluate(data, candidates, config=config, runner=IN_PROCESS, gate=gate)


def test_dropping_the_eligible_column_does_not_turn_no_go_into_go():
    data = constrained_logs()
    with_column = _evaluate(data)
    assert not with_column.decision()["promote"], with_column.decision()
    without = _evaluate(dataclasses.replace(data, eligible=None))
    decision = without.decision()
    candidate = next(c for c in without.candidates if c.kind == "static")
    # What the issue saw: the lower bound beats the logging policy (a GO before the gate),
    # IPS far below DM and DR, and weight on the gift for basic customers, never logged.
    low, _ = candidate.interval(without.primary, without.interval)
    assert low > without.logging_value
    assert candidate.value("ips") < without.logging_value < candidate.value("dm")
    assert candidate.diagnostics.unseen_share > 0.3
    assert not decision["promote"]
    assert decision["reason"].startswith("NO-GO: linucb(alpha=0.0) static lower bound")
    assert "estimators disagree: ips" in decision["reason"]
    reasons = Gate().reasons(candidate, without.interval, eligibility_known=False)
    assert any("never logged in that context's stratum" in r for r in reasons), reasons


def test_unseen_offers_alone_refuse_a_go():
    data = dataclasses.replace(constrained_logs(), eligible=None)
    result = _evaluate(data, Gate(min_ess=0, min_match_rate=0, max_unseen=0.05))
    candidate = next(c for c in result.candidates if c.kind == "static")
    reasons = Gate(min_ess=0, min_match_rate=0).reasons(candidate, "bootstrap", False)
    assert reasons[-1].startswith("eligibility unknown (no eligible column) and 36")


@pytest.mark.parametrize(
    ("gate", "words"),
    [
        (Gate(min_ess=1e9), "effective sample size"),
        (Gate(min_match_rate=0.99), "matches the logged offer"),
    ],
)
def test_each_threshold_refuses_a_go_with_its_reason(gate, words):
    data = constrained_logs(seed=1)
    loose = _evaluate(data, Gate(min_ess=0, min_match_rate=0, max_unseen=1.0))
    candidate = next(c for c in loose.candidates if c.kind == "static")
    assert any(words in r for r in gate.reasons(candidate, loose.interval, True))
