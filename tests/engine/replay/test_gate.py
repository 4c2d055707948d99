"""The promotion gate on a journal filled by the renewal simulator (ground truth: a model that
always gives the costliest offer earns less than the learned one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.core import Engine
from engine.errors import FailedPreconditionError
from engine.journal.snapshot import encode_snapshot
from engine.policies import Policy, make_policy
from engine.replay.gate import MIN_ROWS, gate_for, journal_logs, promotion_evidence
from simulators.renewal import RenewalEnvironment

ROOT = Path(__file__).resolve().parents[3]
RENEWAL = ROOT / "examples" / "renewal.toml"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """An engine that served 4,000 simulated customers, every outcome reported."""
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path_factory.mktemp("d"), background=False)
    env = RenewalEnvironment.from_campaign(RENEWAL)
    rng = np.random.default_rng(7)
    index = {o: i for i, o in enumerate(env.action_ids)}
    for start in range(0, 4000, 250):
        rounds = env.sample_rounds(250, rng, start)
        ids = [f"c{c}" for c in rounds.customer_ids]
        made = eng.decide_batch(ids, env.records(rounds.attributes))
        actions = np.array([index[d.offer_id] for d in made], dtype=np.int64)
        outcomes = env.draw_outcomes(rounds, actions, rng)
        eng.reward_batch([d.decision_id for d in made], outcomes.values.tolist())
    eng.snapshot()
    yield eng
    eng.close()


def test_the_journal_reads_back_as_the_logged_rows(served: Engine) -> None:
    data = journal_logs(served.journal, list(served.feature_names), list(served.offer_ids), 1500)
    assert data.n_rounds == 1500 and data.n_features == served.n_features
    assert data.timestamp is not None and np.all(np.diff(data.timestamp) >= 0)
    # the newest closed decisions: the last one journaled is the last row
    newest = served.journal.decisions_for_export(served.journal.counts()["decisions"] - 1, 1)
    assert data.decision_id is not None and data.decision_id[-1] == newest[0].decision_id
    assert data.eligible is not None and data.eligible[np.arange(1500), data.action].all()


def _sabotaged(eng: Engine, offer: str) -> Policy:
    """The campaign's model class taught that ``offer`` is worth 1,000 and the others nothing:
    it gives ``offer`` wherever it can (a promoted snapshot with the wrong sign, in effect)."""
    data = journal_logs(eng.journal, list(eng.feature_names), list(eng.offer_ids), 4000)
    policy = make_policy(eng.config.policy, len(eng.offer_ids), eng.n_features)
    target = eng.offer_ids.index(offer)
    rewards = np.where(data.action == target, 1000.0, 0.0)
    policy.update(data.context, data.action, rewards, data.propensity)
    return policy


def test_a_worse_snapshot_is_refused_and_a_better_one_passes(served: Engine) -> None:
    names, offers = list(served.feature_names), list(served.offer_ids)
    costliest = _sabotaged(served, "discount_20")
    worse = promotion_evidence(served.journal, served.policy, costliest, names, offers)
    assert not worse.passes and worse.rows == 4000
    assert worse.candidate_lower < worse.candidate_estimate < worse.live_estimate
    assert "does not beat the live model's estimate" in worse.reason
    better = promotion_evidence(served.journal, costliest, served.policy, names, offers)
    assert better.passes and better.candidate_lower > better.live_estimate, better.reason
    assert better.to_dict()["rows"] == 4000


def test_without_enough_closed_decisions_there_is_no_evidence(tmp_path: Path) -> None:
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path, background=False)
    made = eng.decide_batch(
        [f"c{i}" for i in range(50)], [{"monthly_price": 30.0, "plan": "basic"}] * 50
    )
    eng.reward_batch([d.decision_id for d in made], [10.0] * 50)
    found = promotion_evidence(
        eng.journal, eng.policy, eng.policy, list(eng.feature_names), list(eng.offer_ids)
    )
    assert not found.passes and found.rows == 50
    assert found.reason == (
        f"not enough evidence: 50 closed decisions in the journal, the gate needs {MIN_ROWS}"
    )
    eng.close()


def test_promotion_through_the_gate_refuses_then_forces_and_records_the_evidence(
    served: Engine,
) -> None:
    live = served.model_version
    bad = _sabotaged(served, "discount_20")
    assert served.model_dir is not None
    header = {
        "campaign": served.campaign,
        "feature_names": list(served.feature_names),
        "offer_ids": list(served.offer_ids),
        "version": "sabotaged",
    }
    (served.model_dir / "sabotaged.snap").write_bytes(encode_snapshot(header, bad))
    gate = gate_for(served)
    with pytest.raises(FailedPreconditionError, match=r"does not beat the live model's estimate"):
        served.promote("sabotaged.snap", who="test", gate=gate)
    assert served.model_version == live  # refused: nothing changed
    forced = served.promote("sabotaged.snap", who="test", gate=gate, force=True)
    origin = forced.version.origin
    assert origin["forced"] is True and origin["evidence"]["passes"] is False
    assert origin["evidence"]["rows"] == 4000 and origin["evidence"]["estimator"] == "dr"
    served.rollback(live, who="test")  # leave the module's engine as it was
