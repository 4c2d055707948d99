"""Deferred activation in the journal, on every backend: a deferred decision counts nowhere
(budgets, caps, the replicas' guardrail sync, lift, the learner, the export) until its
activation, then counts as of the activation; one never activated lapses at its expiry without
a reward ("unflagged")."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.assembly import DecisionAssembler, Screened, stored_record
from engine.campaign import Guardrails
from engine.campaign.config import load_campaign
from engine.journal import DuplicateError, JournalBackend, Learner, lift_from_journal
from engine.journal.export import export_parquet
from engine.journal.records import LAPSED, DecisionRow, RequestRow, RewardRow
from engine.journal.recovery import restore_guardrails
from engine.journal.rewards import RewardLedger
from engine.policies import LinUCB
from engine.seat import GuardrailSync
from tests.engine.test_journal import decision

ROOT = Path(__file__).resolve().parents[2]
RENEWAL = ROOT / "examples" / "renewal.toml"
S = 1_000_000  # a second, in microseconds
DAY = 86_400 * S


def made(did: str, second: float, cat: int, **kw: Any) -> DecisionRow:
    """Decision ``did`` made at ``second`` (``decision`` of the contract suite, any time)."""
    row = decision(did, 1, cat, **kw)
    return row._replace(ts_us=int(second * S))


def counted(backend: JournalBackend) -> dict[str, Any]:
    """What budgets, caps and the replicas' sync read."""
    return {
        "totals": {a: tuple(t) for a, t in backend.offer_totals().items()},
        "recent": backend.recent_actions(10),
        "incentives": list(backend.incentive_times(0, "none")),
        "decisions": [row[1:] for row in backend.decisions_after(0, 10)],
        "activations": [row[1:] for row in backend.activations_after(0, 10)],
    }


# ---------------------------------------------------------------------- the backend contract
def test_a_deferred_decision_is_activated_once_with_a_status_per_id(backend, reopen):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    rows = [made("now", 1, cat)] + [made(f"d{i}", 1 + i, cat, deferred=True) for i in (2, 3, 4)]
    backend.append_decisions(rows)
    found = backend.lookup(["now", "d2"])
    assert (found["now"].deferred, found["now"].served) == (False, True)
    assert (found["d2"].deferred, found["d2"].activated_us, found["d2"].served) == (1, None, False)
    assert backend.counts()["inactive"] == 3 and backend.counts()["pending"] == 4
    assert backend.activate([], 10 * S) == []
    statuses = backend.activate(["d2", "d2", "now", "nope", "d3"], 10 * S)
    assert statuses == ["activated", "duplicate", "immediate", "unknown", "activated"]
    assert reopen().activate(["d2"], 11 * S) == ["duplicate"]  # from any process
    assert reopen().lookup(["d2"])["d2"].activated_us == 10 * S  # the first activation stands
    counts = backend.counts()
    assert (counts["inactive"], counts["activations"], counts["pending"]) == (1, 2, 4)
    # expired: made at or before the cutoff (its window passed), or closed (lapsed)
    assert backend.activate(["d4"], 12 * S, cutoff_us=5 * S) == ["expired"]  # made at 5 s
    (seq,) = [s.seq for s in backend.lookup(["d4"]).values()]
    backend.append_rewards([RewardRow("d4", seq, 40 * S, None, None, LAPSED)])
    assert backend.activate(["d4"], 13 * S) == ["expired"]
    assert backend.counts()["inactive"] == 0 and backend.counts()["activations"] == 2


def test_activations_are_numbered_in_commit_order_for_other_processes(backend, reopen):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    backend.append_decisions([made(f"d{i}", i, cat, deferred=True) for i in range(1, 6)])
    other = reopen()
    for i in (3, 1, 5):
        (backend if i != 1 else other).activate([f"d{i}"], (10 + i) * S)
    follower = reopen().activations_after(0, 10)
    seqs = [row[0] for row in follower]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert [row[1:] for row in follower] == [
        ("c1", 13 * S, "gift", 2.0),
        ("c1", 11 * S, "gift", 2.0),
        ("c1", 15 * S, "gift", 2.0),
    ]
    assert backend.activations_after(seqs[0], 1) == follower[1:2]
    assert backend.activations_after(seqs[-1], 10) == []


def test_a_deferred_request_is_counted_inactive_and_replayed_deferred(backend):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    rows = [made("r1", 5, cat, deferred=True), made("r2", 5, cat, deferred=True)]
    backend.append_request(RequestRow("req", "c", 5 * S, "ab" * 32), rows)
    found = backend.find_request("c", "req")
    assert found is not None and found.decisions == rows
    assert all(row.deferred is True for row in found.decisions)
    assert backend.counts()["inactive"] == 2


def test_budgets_caps_and_the_sync_count_a_deferred_decision_from_its_activation(backend):
    cat = backend.catalog("c", ["none", "gift", "upgrade"], ["bias", "x"])
    backend.append_decisions(
        [
            made("a", 1, cat, customer_id="c1"),
            made("b", 2, cat, customer_id="c2", action="upgrade", cost=10.0, deferred=True),
            made("c", 3, cat, customer_id="c3", deferred=True),
            made("d", 5, cat, customer_id="c4", action="none", cost=0.0),
        ]
    )
    before = counted(backend)
    assert before == {
        "totals": {"gift": (1, 2.0), "none": (1, 0.0)},
        "recent": ["gift", "none"],
        "incentives": [("c1", S, "gift")],
        "decisions": [("c1", S, "gift", 2.0), ("c4", 5 * S, "none", 0.0)],
        "activations": [],
    }
    assert backend.activate(["b"], 9 * S) == ["activated"]
    after = counted(backend)
    assert after == {
        "totals": {"gift": (1, 2.0), "none": (1, 0.0), "upgrade": (1, 10.0)},
        "recent": ["gift", "none", "upgrade"],  # by time: the activation is the newest
        "incentives": [("c1", S, "gift"), ("c2", 9 * S, "upgrade")],  # at the activation's time
        "decisions": before["decisions"],
        "activations": [("c2", 9 * S, "upgrade", 10.0)],
    }
    assert backend.recent_actions(2) == ["none", "upgrade"]


def test_only_served_decisions_are_learned_lifted_and_exported(backend, tmp_path):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    rows = [
        made("now", 1, cat),
        made("late", 2, cat, deferred=True),
        made("never", 3, cat, deferred=True),
        made("open", 4, cat, deferred=True, control=True),
    ]
    seqs = dict(zip([r.decision_id for r in rows], backend.append_decisions(rows), strict=True))
    backend.activate(["late"], 5 * S)
    backend.append_rewards(
        [
            RewardRow("now", seqs["now"], 6 * S, 5.0, 3.0, "reward"),
            RewardRow("late", seqs["late"], 6 * S, 9.0, 7.0, "reward"),
            RewardRow("never", seqs["never"], 40 * DAY, None, None, LAPSED),
        ]
    )
    # the learner and the lift monitor never see the lapse
    assert [r.reward for batch in backend.rewards_after(0) for r in batch] == [3.0, 7.0]
    assert [o.reward for batch in backend.outcomes_after(0) for o in batch] == [3.0, 7.0]
    learner = Learner(LinUCB(2, 2, seed=0), backend, {"none": 0, "gift": 1}, catalog=cat)
    assert learner.replay() == 2 and learner.skipped == 0
    assert backend.lift_sums() == {False: (2, 10.0, 58.0)}
    assert lift_from_journal(backend).n_treatment == 2
    assert [r.decision_id for r in backend.decisions_for_export(0, 10)] == ["now", "late"]
    closed = backend.decisions_for_export(0, 10, closed_only=True)
    assert [r.decision_id for r in closed] == ["now", "late"] and all(r.served for r in closed)
    summary = export_parquet(backend, tmp_path / "log.parquet")
    table = pq.read_table(summary["path"]).to_pylist()
    assert summary["rows"] == 2 and [r["decision_id"] for r in table] == ["now", "late"]
    assert table[1]["timestamp"].timestamp() == 2.0  # the decision's row, at its time
    counts = backend.counts()
    assert (counts["rewards"], counts["pending"], counts["inactive"]) == (3, 1, 1)
    backend.activate(["open"], 7 * S)
    assert [r.decision_id for r in backend.decisions_for_export(0, 10)] == ["now", "late", "open"]


def test_a_lapse_of_a_decision_activated_meanwhile_is_refused_whole(backend, reopen):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    s1, s2 = backend.append_decisions([made(f"d{i}", i, cat, deferred=True) for i in (1, 2)])
    reopen().activate(["d2"], 3 * S)  # another process, between the sweep's read and its write
    lapses = [
        RewardRow("d1", s1, 9 * S, None, None, LAPSED),
        RewardRow("d2", s2, 9, None, None, LAPSED),
    ]
    with pytest.raises(DuplicateError, match="d2 activated meanwhile; nothing was written"):
        backend.append_rewards(lapses)
    assert backend.counts()["rewards"] == 0 and backend.counts()["inactive"] == 1
    backend.append_rewards(lapses[:1])
    assert backend.counts()["inactive"] == 0


# ---------------------------------------------------------------------- the reward ledger
@pytest.fixture
def renewal():
    return load_campaign(RENEWAL)


def offer(did: str, second: float, cat: int, customer: str, action: str, **kw: Any) -> DecisionRow:
    """A renewal decision: ``action`` for ``customer`` at ``second``."""
    return made(did, second, cat, customer_id=customer, action=action, **kw)


def test_the_ledger_rewards_a_deferred_decision_only_once_activated(backend, renewal):
    cat = backend.catalog("renewal", list(renewal.offer_ids), ["bias", "x"])
    t0 = 1_700_000_000.0
    rows = [offer(f"d{i}", t0, cat, f"c{i}", "upgrade", cost=18.0, deferred=True) for i in range(4)]
    backend.append_decisions(rows)
    ledger = RewardLedger(renewal, backend)
    (early,) = ledger.report(["d0"], [50.0], t0 + 60)
    assert (early.status, early.offer_id, early.reward) == ("inactive", "upgrade", None)
    assert backend.lookup(["d0"])["d0"].reward_source is None  # nothing journaled
    assert backend.counts()["reward_errors"] == 1
    assert ledger.activate(["d0", "d1", "d9"], t0 + 120) == ["activated", "activated", "unknown"]
    statuses = [r.status for r in ledger.report(["d0", "d0"], [50.0, 1.0], t0 + 180)]
    assert statuses == ["applied", "duplicate"]
    assert backend.lookup(["d0"])["d0"].reward == 32.0  # net of the offer's cost
    # the window runs from the decision: 30 days after it, activation and reward are expired
    later = t0 + renewal.reward_window + 1
    assert ledger.activate(["d2"], later) == ["expired"]
    assert ledger.report(["d2"], [50.0], later)[0].status == "expired"
    # expiry: d1 (activated) gets the default reward, d3 (never activated) lapses unflagged;
    # d2 lapsed when its late reward was refused
    assert ledger.expire(later) == (2, False)
    closed = backend.lookup(["d1", "d2", "d3"])
    assert {d: (s.reward_source, s.reward) for d, s in closed.items()} == {
        "d1": ("expired", 0.0),
        "d2": (LAPSED, None),
        "d3": (LAPSED, None),
    }
    assert [r.status for r in ledger.report(["d3", "d1"], [5.0, 5.0], later)] == ["expired"] * 2
    counts = backend.counts()
    assert (counts["pending"], counts["inactive"], counts["activations"]) == (0, 0, 2)
    assert [r.reward for batch in backend.rewards_after(0) for r in batch] == [32.0, 0.0]


# ---------------------------------------------------------------------- guardrails
def test_every_process_counts_each_activation_once(backend, reopen, renewal):
    cat = backend.catalog("renewal", list(renewal.offer_ids), ["bias", "x"])
    index = {o: i for i, o in enumerate(renewal.offer_ids)}
    other = reopen()
    backend.append_decisions([offer("early", 1, cat, "c0", "discount_5", deferred=True)])
    other.activate(["early"], 2 * S)  # before this process started: in its restored state
    guard = Guardrails(renewal)
    sync = GuardrailSync(backend, guard, index, threading.RLock(), backend.counts()["decisions"])
    other.append_decisions(
        [
            offer("d1", 3, cat, "c1", "discount_5"),
            offer("d2", 3, cat, "c2", "upgrade", cost=18.0, deferred=True),
        ]
    )
    assert sync.sync() == 1  # d1; d2 counts nowhere yet
    used = {o: guard.used_count[i] for o, i in index.items() if guard.used_count[i]}
    assert used == {"discount_5": 1}
    other.activate(["d2"], 10 * S)
    assert sync.sync() == 1 and sync.sync() == 0
    assert guard.used_count[index["upgrade"]] == 1 and guard.used_money[index["upgrade"]] == 18.0
    costs = [0.0] * renewal.n_actions
    # the customer's cooldown runs from the activation (10 s), not from the decision (3 s)
    assert guard.exclusions("c2", 10 + renewal.cooldown - 1, costs)[1] == ["cooldown"]
    assert guard.exclusions("c2", 10 + renewal.cooldown + 1, costs)[1] == []
    # this process's own deferred decision: not counted until activated, then once, by the sync
    backend.append_decisions([offer("own", 11, cat, "c3", "free_month", cost=30.0, deferred=True)])
    assert sync.sync() == 0
    backend.activate(["own"], 12 * S)
    assert sync.sync() == 1 and guard.used_money[index["free_month"]] == 30.0


def test_a_restart_restores_guardrails_from_served_decisions_at_their_activation(backend, renewal):
    cat = backend.catalog("renewal", list(renewal.offer_ids), ["bias", "x"])
    index = {o: i for i, o in enumerate(renewal.offer_ids)}
    backend.append_decisions(
        [
            offer("a", 1, cat, "c1", "free_month", cost=30.0, deferred=True),
            offer("b", 2, cat, "c2", "discount_10", cost=9.0, deferred=True),  # never activated
            offer("c", 9, cat, "c1", "discount_5", cost=4.5),
        ]
    )
    backend.activate(["a"], 8 * S)  # journaled after c, at an earlier time
    guard = Guardrails(renewal)
    restore_guardrails(backend, guard, renewal, now=20.0)
    used = {o: (guard.used_count[i], guard.used_money[i]) for o, i in index.items()}
    assert {o: u for o, u in used.items() if u[0]} == {
        "free_month": (1, 30.0),
        "discount_5": (1, 4.5),
    }
    assert guard.traffic_counts[index["discount_10"]] == 0
    costs = [0.0] * renewal.n_actions
    # c1's incentives are at 8 s and 9 s (in time order): the cooldown runs from 9 s
    assert guard.exclusions("c1", 8 + renewal.cooldown + 0.5, costs)[1] == ["cooldown"]
    assert guard.exclusions("c2", 3.0, costs)[1] == []  # b never counted


# ---------------------------------------------------------------------- assembly
def test_a_batch_is_assembled_deferred_and_replayed_deferred(backend):
    offer_ids = ("none", "gift")
    cat = backend.catalog("c", list(offer_ids), ["bias", "x"])
    assembler = DecisionAssembler("c", offer_ids, 0, 0, cat)
    X = np.array([[1.0, 0.5], [1.0, -0.5]])
    masks = np.ones((2, 2), dtype=np.bool_)
    batch = Screened(["c1", "c2"], X, [False, True], masks, np.zeros((2, 2)), [[], []])
    choice = assembler.choose(LinUCB(2, 2, seed=0), batch)
    done = assembler.assemble(batch, choice, "v1", 5.0, deferred=True)
    assert [row.deferred for row in done.rows] == [True, True]
    assert [record.deferred for record in done.records] == [True, True]
    immediate = assembler.assemble(batch, choice, "v1", 5.0)
    assert not any(row.deferred for row in immediate.rows)
    backend.append_request(RequestRow("req", "c", done.ts_us, "h"), done.rows)
    found = backend.find_request("c", "req")
    assert found is not None
    replayed = [stored_record(row, "c", offer_ids) for row in found.decisions]
    assert replayed == done.records and all(r.replayed and r.deferred for r in replayed)
    assert backend.counts()["inactive"] == 2
