"""The reward path's hand-off, on every backend: the rewards a reward call journals are learned
from what the ledger already joined, without reading them back, and the model, the cursor and
the counts come out exactly as the journal's replay makes them; after a gap (another process's
rewards first) or a race (another thread applied them), the learner reads the journal instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.campaign.config import load_campaign
from engine.journal import JournalBackend, Learner
from engine.journal.records import RewardRow, StoredReward
from engine.journal.rewards import RewardLedger
from engine.policies import LinUCB
from tests.engine.test_journal import decision

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


@pytest.fixture
def renewal():
    return load_campaign(ROOT / "examples" / "renewal.toml")


def journaled(backend: JournalBackend, renewal, n: int) -> int:
    """``n`` renewal decisions over two features, made at T0 (each offer in turn); a second
    catalog's decision ``other`` over other features; the first catalog's id."""
    offers = list(renewal.offer_ids)
    cat = backend.catalog("renewal", offers, ["bias", "x"])
    other = backend.catalog("renewal", offers, ["bias", "y"])
    rows = [
        decision(
            f"d{i}", int(T0), cat, action=offers[i % len(offers)], customer_id=f"c{i}"
        )._replace(context=np.array([1.0, i / n]).tobytes(), cost=float(i % 3))
        for i in range(n)
    ]
    rows.append(decision("other", int(T0), other, action=offers[1]))
    backend.append_decisions(rows)
    return cat


def learner(backend: JournalBackend, renewal, cat: int) -> Learner:
    """A learner of LinUCB over two features, seeded alike every time."""
    index = {o: i for i, o in enumerate(renewal.offer_ids)}
    policy = LinUCB(len(index), 2, seed=0)
    return Learner(policy, backend, index, publish_every_rewards=10**9, catalog=cat)


def state(lrn: Learner) -> tuple:
    model = lrn.training
    assert isinstance(model, LinUCB)
    return (lrn.last_seq, lrn.n_applied, lrn.skipped, model.A_.tobytes(), model.b_.tobytes())


def test_a_reward_call_is_learned_as_the_journal_would_replay_it(backend, reopen, renewal):
    cat = journaled(backend, renewal, 40)
    ledger = RewardLedger(renewal, backend)
    taking, reading = learner(backend, renewal, cat), learner(reopen(), renewal, cat)
    ids = [f"d{i}" for i in (5, 3, 3, 17, 0)] + ["nope", "other"]
    results, committed = ledger.join(ids, [10.0, 4.0, 1.0, 0.0, 7.0, 1.0, 2.0], T0 + 60)
    assert [r.status for r in results] == ["applied"] * 2 + ["duplicate"] + ["applied"] * 2 + [
        "unknown",
        "applied",
    ]
    # what the ledger hands over is what the journal gives back, row for row
    assert committed == [r for rows in backend.rewards_after(0) for r in rows]
    assert all(isinstance(r, StoredReward) for r in committed)
    taking.apply(committed)
    reading.apply()
    assert state(taking) == state(reading)
    assert taking.n_applied == 4 and taking.skipped == 1  # "other" is over other features
    # a later call, past the window of the rest: expiries join the rows, duplicates do not
    later = T0 + renewal.reward_window + 1
    results, committed = ledger.join(["d1", "d5", "d2"], [3.0, 3.0, 3.0], later)
    assert [r.status for r in results] == ["expired", "duplicate", "expired"]
    assert [r.reward for r in committed] == [renewal.default_value] * 2
    taking.apply(committed)
    reading.apply()
    assert state(taking) == state(reading)


def test_after_a_gap_or_a_race_the_learner_reads_the_journal(backend, reopen, renewal):
    cat = journaled(backend, renewal, 20)
    ledger = RewardLedger(renewal, backend)
    taking, reading = learner(backend, renewal, cat), learner(reopen(), renewal, cat)
    # another process's reward is journaled first: this call's seqs do not follow the cursor
    found = backend.lookup(["d9"])["d9"]
    backend.append_rewards([RewardRow("d9", found.seq, int(T0 * 1e6) + 1, 8.0, 8.0, "reward")])
    _, committed = ledger.join(["d4", "d2"], [5.0, 6.0], T0 + 60)
    assert committed[0].seq == taking.last_seq + 2
    taking.apply(committed)
    reading.apply()
    assert state(taking) == state(reading) and taking.n_applied == 3
    # another thread's apply read this call's rewards first: handing them over adds nothing
    _, committed = ledger.join(["d7"], [1.0], T0 + 61)
    reading.apply()
    taking.apply()
    taking.apply(committed)
    assert state(taking) == state(reading) and taking.n_applied == 4


def test_the_engine_learns_each_reward_once_through_the_hand_off(tmp_path):
    from engine.core import Engine

    engine = Engine.from_config(ROOT / "examples" / "renewal.toml", data_dir=tmp_path)
    try:
        contexts = [{"monthly_price": 9.0 + i, "plan": "basic"} for i in range(40)]
        ids = [r.decision_id for r in engine.decide_batch([f"c{i}" for i in range(40)], contexts)]
        applied = 0
        for start in range(0, len(ids), 7):
            chunk = ids[start : start + 7] + ids[start : start + 1]  # and a retry
            results = engine.reward_batch(chunk, [5.0] * len(chunk))
            applied += sum(r.status == "applied" for r in results)
        lrn = engine._learner
        assert isinstance(lrn, Learner)
        last = [r.seq for rows in engine.journal.rewards_after(0) for r in rows][-1]
        assert (lrn.n_applied, lrn.last_seq) == (applied, last)
        assert applied == len(ids)  # each decision once: the retries were duplicates
    finally:
        engine.close()
