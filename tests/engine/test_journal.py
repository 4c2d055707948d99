"""The journal backend contract (run over every backend), the SQLite backend, snapshot files,
offer mapping, Parquet export and the export/lift commands."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cli import main as nbo_main
from engine.core import Engine
from engine.errors import ConfigError, CorruptModelError, NotFoundError, ResourceExhaustedError
from engine.journal import (
    DecisionRow,
    DuplicateError,
    Journal,
    JournalBackend,
    RewardError,
    RewardRow,
    StoredDecision,
    list_snapshots,
    read_snapshot,
    write_snapshot,
)
from engine.journal.base import ERROR_PERIOD_US, ERROR_SAMPLES
from engine.journal.export import export_parquet, find_journal
from engine.journal.records import ExportedDecision, RequestRow, StoredReward
from engine.journal.recovery import adapt_offers
from engine.journal.snapshot import decode_snapshot, encode_snapshot
from engine.policies import LinUCB, SharedLinear

ROOT = Path(__file__).resolve().parents[2]
RENEWAL = ROOT / "examples" / "renewal.toml"
T0 = 1_700_000_000.0


def _context(rng, i):
    return {
        "tenure_months": int(rng.integers(0, 90)),
        "monthly_price": float(rng.uniform(15, 120)),
        "plan": ["basic", "standard", "premium"][i % 3],
        "contract_type": "annual",
    }


@pytest.fixture
def filled(tmp_path):
    """A renewal data dir with 120 decisions, 80 rewarded, 20 expired without reward."""
    t = [T0]
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path / "data", clock=lambda: t[0])
    rng = np.random.default_rng(0)
    ds = eng.decide_batch([f"c{i}" for i in range(100)], [_context(rng, i) for i in range(100)])
    t[0] += 40 * 86400.0
    ds += [eng.decide(f"d{i}", _context(rng, i)) for i in range(20)]
    eng.reward_batch([d.decision_id for d in ds[:80]], [float(v) for v in rng.uniform(0, 500, 80)])
    eng.expire_pending()
    eng.close()
    return tmp_path / "data", ds


# ---------------------------------------------------------------------- the backend contract
# Every test taking ``backend`` (and ``reopen``, ``store_url``: fixtures of
# tests/engine/conftest.py) runs against each journal backend: the suite is the definition of
# JournalBackend.


def raw_sql(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) on the store at ``url`` outside the backend, as
    an operator or an older nbo would; returns its rows (none for a write)."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET search_path TO nbo_c")
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
    db = sqlite3.connect(url, isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def decision(did: str, seq_hint: int, cat: int, **kw: Any) -> DecisionRow:
    """A decision row made at ``seq_hint`` seconds (ts_us = seq_hint * 1e6)."""
    fields: dict[str, Any] = {
        "decision_id": did,
        "ts_us": seq_hint * 1_000_000,
        "customer_id": f"c{seq_hint}",
        "context": np.full(2, float(seq_hint)).tobytes(),
        "eligible": "none,gift",
        "action": "gift",
        "propensity": 0.5,
        "explored": False,
        "control": False,
        "model_version": "v1",
        "cost": 2.0,
        "scores": np.array([0.1, 0.9]).tobytes(),
        "reasons": None,
        "catalog": cat,
    }
    fields.update(kw)
    return DecisionRow(**fields)


def test_backend_implements_the_interface(backend):
    assert isinstance(backend, JournalBackend)


def test_catalogs_are_found_again_and_meta_values_replaced(backend):
    cat = backend.catalog("c", ["a"], ["bias"])
    assert backend.catalog("c", ["a"], ["bias"]) == cat
    other = backend.catalog("c", ["a", "b"], ["bias"])
    assert other > cat
    assert backend.catalogs() == {cat: ("c", ["a"], ["bias"]), other: ("c", ["a", "b"], ["bias"])}
    assert backend.get_meta("encoder") is None
    backend.set_meta("encoder", "{}")
    backend.set_meta("encoder", '{"frozen": true}')
    assert backend.get_meta("encoder") == '{"frozen": true}'


def test_decisions_get_increasing_seqs_and_are_looked_up_with_their_reward(backend):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    assert backend.append_decisions([]) == []
    first = backend.append_decisions([decision("d1", 1, cat)])
    seqs = backend.append_decisions([decision(f"d{i}", i, cat) for i in range(2, 202)])
    assert seqs == sorted(seqs) and len(set(seqs)) == 200 and seqs[0] > first[0]
    stored = backend.lookup(["d2", "nope", "d2", "d1"])
    assert set(stored) == {"d1", "d2"}
    d2 = stored["d2"]
    assert isinstance(d2, StoredDecision)
    assert (d2.seq, d2.ts_us, d2.customer_id, d2.action, d2.propensity) == (
        seqs[0],
        2_000_000,
        "c2",
        "gift",
        0.5,
    )
    assert np.frombuffer(d2.context).tolist() == [2.0, 2.0]
    assert (d2.control, d2.cost, d2.reward_source, d2.reward) == (0, 2.0, None, None)
    backend.append_rewards([RewardRow("d2", d2.seq, 3_000_000, 7.0, 5.0, "reward")])
    again = backend.lookup(["d2"])["d2"]
    assert (again.reward_source, again.reward, again.catalog) == ("reward", 5.0, cat)
    assert (again.deferred, again.activated_us, again.served) == (False, None, True)
    assert len(backend.lookup([f"d{i}" for i in range(1, 202)])) == 201  # past one IN chunk


def test_a_second_reward_or_decision_id_is_refused_with_nothing_of_its_batch_kept(backend):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    (s1, s2) = backend.append_decisions([decision("d1", 1, cat), decision("d2", 2, cat)])
    backend.append_rewards([RewardRow("d1", s1, 3, 1.0, 1.0, "reward")])
    with pytest.raises(DuplicateError, match="at most one reward per decision"):
        backend.append_rewards(
            [RewardRow("d2", s2, 4, 2.0, 2.0, "reward"), RewardRow("d1", s1, 4, 2.0, 2.0, "reward")]
        )
    with pytest.raises(DuplicateError, match="decision ids are unique"):
        backend.append_decisions([decision("d3", 3, cat), decision("d1", 4, cat)])
    # A single row (one autocommit INSERT on SQLite) is refused in the same words.
    with pytest.raises(DuplicateError, match="at most one reward per decision"):
        backend.append_rewards([RewardRow("d1", s1, 5, 2.0, 2.0, "reward")])
    with pytest.raises(DuplicateError, match="decision ids are unique"):
        backend.append_decisions([decision("d2", 5, cat)])
    assert backend.counts() == {
        "decisions": 2,
        "rewards": 1,
        "pending": 1,
        "reward_errors": 0,
        "inactive": 0,
        "activations": 0,
    }
    assert backend.lookup(["d1", "d2", "d3"])["d1"].reward == 1.0
    assert set(backend.lookup(["d1", "d2", "d3"])) == {"d1", "d2"}
    assert backend.lookup(["d2"])["d2"].reward_source is None


def test_rewards_replay_in_seq_order_exactly_once(backend):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    seqs = backend.append_decisions([decision(f"d{i}", i, cat) for i in range(10)])
    order = [7, 2, 9, 0, 4]
    rows = [RewardRow(f"d{i}", seqs[i], 100 + i, float(i), float(i), "reward") for i in order]
    reward_seqs = backend.append_rewards(rows[:2]) + backend.append_rewards(rows[2:])
    assert reward_seqs == sorted(reward_seqs) and backend.last_reward_seq() == reward_seqs[-1]
    batches = list(backend.rewards_after(0, batch=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    replayed = [r for b in batches for r in b]
    assert all(isinstance(r, StoredReward) for r in replayed)
    assert [r.seq for r in replayed] == reward_seqs
    assert [r.reward for r in replayed] == [float(i) for i in order]
    assert [np.frombuffer(r.context)[0] for r in replayed] == [float(i) for i in order]
    assert {(r.action, r.propensity, r.catalog) for r in replayed} == {("gift", 0.5, cat)}
    after = list(backend.rewards_after(reward_seqs[2]))
    assert [r.seq for b in after for r in b] == reward_seqs[3:]


def test_expiry_scan_stops_at_the_cutoff_and_skips_rewarded_decisions(backend):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    assert backend.first_open_after(0) is None
    assert backend.due_for_expiry(0, 10**12, limit=100) == ([], 0)
    seqs = backend.append_decisions([decision(f"d{i}", i, cat) for i in range(1, 11)])
    backend.append_rewards([RewardRow("d2", seqs[1], 99, 1.0, 1.0, "reward")])
    assert backend.first_open_after(seqs[3]) == (seqs[4], 5_000_000)
    due, reached = backend.due_for_expiry(0, cutoff_us=6_000_000, limit=100)
    assert [d.decision_id for d in due] == ["d1", "d3", "d4", "d5", "d6"]
    assert reached == seqs[5]
    due, reached = backend.due_for_expiry(seqs[5], cutoff_us=10**12, limit=3)
    assert [d.decision_id for d in due] == ["d7", "d8", "d9"] and reached == seqs[8]


def test_what_recovery_reads(backend):
    cat = backend.catalog("c", ["none", "gift", "upgrade"], ["bias", "x"])
    assert backend.latest_model_version() is None and backend.recent_actions(5) == []
    backend.append_decisions(
        [
            decision("d1", 1, cat, action="gift", cost=2.0, model_version="v3"),
            decision("d2", 2, cat, action="none", cost=0.0, customer_id="c1"),
            decision("d3", 3, cat, action="gift", cost=2.5, control=True, customer_id="c1"),
            decision("d4", 4, cat, action="upgrade", cost=10.0, customer_id="c1"),
            decision("d5", 5, cat, action="gift", cost=2.0, model_version="v7"),
        ]
    )
    assert backend.latest_model_version() == "v7"
    totals = backend.offer_totals()
    assert totals == {"gift": (3, 6.5), "none": (1, 0.0), "upgrade": (1, 10.0)}
    assert totals["gift"].n_decisions == 3 and totals["upgrade"].cost == 10.0
    assert backend.recent_actions(3) == ["gift", "upgrade", "gift"]
    assert backend.recent_actions(99) == ["gift", "none", "gift", "upgrade", "gift"]
    # Outside the control group, not the control offer, after 1 s: d4 (c1) and d5 (c5).
    assert list(backend.incentive_times(1_000_000, "none")) == [
        ("c1", 4_000_000, "upgrade"),
        ("c5", 5_000_000, "gift"),
    ]
    # The daily budgets' read: decisions counted from a time on (d3 at 3 s onwards).
    assert backend.offer_totals(since_us=3_000_000) == {"gift": (2, 4.5), "upgrade": (1, 10.0)}


def test_what_export_and_lift_read(backend):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    assert backend.lift_sums() == {}
    seqs = backend.append_decisions(
        [decision(f"d{i}", i, cat, control=i % 2 == 0, explored=i == 3) for i in range(1, 7)]
    )
    backend.append_rewards(
        [
            RewardRow("d1", seqs[0], 10, 5.0, 3.0, "reward"),
            RewardRow("d2", seqs[1], 10, 1.0, -1.0, "reward"),
            RewardRow("d3", seqs[2], 10, 9.0, 7.0, "reward"),
            RewardRow("d4", seqs[3], 10, None, None, "expired"),
        ]
    )
    rows = backend.decisions_for_export(0, limit=4)
    assert all(isinstance(r, ExportedDecision) for r in rows)
    assert [r.decision_id for r in rows] == ["d1", "d2", "d3", "d4"]
    assert [r.reward for r in rows] == [3.0, -1.0, 7.0, None]
    d3 = rows[2]
    assert (d3.seq, d3.ts_us, d3.customer_id, d3.action, d3.propensity, d3.eligible) == (
        seqs[2],
        3_000_000,
        "c3",
        "gift",
        0.5,
        "none,gift",
    )
    assert (bool(d3.explored), bool(d3.control), d3.model_version, d3.catalog) == (
        True,
        False,
        "v1",
        cat,
    )
    assert [r.decision_id for r in backend.decisions_for_export(seqs[3], limit=10)] == ["d5", "d6"]
    closed = backend.decisions_for_export(0, limit=10, closed_only=True)
    assert [r.decision_id for r in closed] == ["d1", "d2", "d3"]
    assert backend.lift_sums() == {False: (2, 10.0, 58.0), True: (1, -1.0, 1.0)}


def test_rejected_rewards_are_counted(backend):
    backend.record_errors([])
    backend.record_errors(
        [RewardError(1, "nope", 2.0, "unknown decision id"), RewardError(2, "x", None, "why")]
    )
    assert backend.counts() == {
        "decisions": 0,
        "rewards": 0,
        "pending": 0,
        "reward_errors": 2,
        "inactive": 0,
        "activations": 0,
    }


def _error_flood(backend: JournalBackend) -> None:
    period = ERROR_PERIOD_US
    flood = [RewardError(period * 5 + i, f"u{i}", 1.0, "unknown decision id") for i in range(300)]
    for _ in range(3):
        backend.record_errors(flood)
    backend.record_errors([RewardError(period * 6, "late", 1.0, "reward window passed")])


def test_every_rejected_reward_is_counted(backend):
    _error_flood(backend)
    assert backend.counts()["reward_errors"] == 901


def test_rejected_rewards_are_counted_per_period_with_a_bounded_sample(backend, store_url):
    _error_flood(backend)
    period = ERROR_PERIOD_US
    sampled = raw_sql(store_url, "SELECT decision_id, error FROM reward_errors ORDER BY seq")
    assert len(sampled) == ERROR_SAMPLES + 1  # the first reports of each (reason, period)
    assert sampled[0] == ("u0", "unknown decision id")
    assert sampled[-1] == ("late", "reward window passed")
    counted = "SELECT period_us, error, n FROM reward_error_counts ORDER BY period_us"
    assert raw_sql(store_url, counted) == [
        (period * 5, "unknown decision id", 900),
        (period * 6, "reward window passed", 1),
    ]


def test_rejected_rewards_of_a_store_written_before_they_were_counted_are_counted_once(
    backend, store_url, reopen
):
    # An older nbo kept a reward_errors row per report and no counts: simulate its store.
    for i in range(5):
        raw_sql(
            store_url,
            "INSERT INTO reward_errors (seq, ts_us, decision_id, value, error)"
            " VALUES (?, ?, ?, ?, ?)",
            (i + 1, ERROR_PERIOD_US * (2 + i // 3) + i, f"old{i}", 1.0, "unknown decision id"),
        )
    assert backend.counts()["reward_errors"] == 5  # read as a row per report
    again = reopen()  # opened for writing: counted, once
    assert again.counts()["reward_errors"] == 5 and reopen().counts()["reward_errors"] == 5
    again.record_errors([RewardError(ERROR_PERIOD_US * 2, "new", None, "unknown decision id")])
    assert reopen().counts()["reward_errors"] == 6
    assert raw_sql(store_url, "SELECT period_us, n FROM reward_error_counts ORDER BY 1") == [
        (ERROR_PERIOD_US * 2, 4),
        (ERROR_PERIOD_US * 3, 2),
    ]


def test_a_request_is_stored_with_its_decisions_found_again_and_pruned(backend, reopen):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    request = RequestRow("req-1", "c", 10_000_000, "ab" * 32)
    rows = [decision("d1", 10, cat, explored=True), decision("d2", 10, cat, control=True)]
    seqs = backend.append_request(request, rows)
    assert len(seqs) == 2 and backend.lookup(["d1", "d2"]).keys() == {"d1", "d2"}
    found = reopen().find_request("c", "req-1")
    assert found is not None and found.request == request
    assert found.decisions == rows  # every column as stored, in the request's row order
    assert backend.find_request("other-campaign", "req-1") is None
    # The same id again: refused whole (racing replicas), nothing of it stored.
    with pytest.raises(DuplicateError):
        backend.append_request(request, [decision("d3", 11, cat)])
    assert backend.lookup(["d3"]) == {} and backend.counts()["decisions"] == 2
    assert backend.prune_requests(10_000_000) == 0  # made at 10 s: not before 10 s
    assert backend.prune_requests(10_000_001) == 1
    assert backend.find_request("c", "req-1") is None
    assert backend.counts()["decisions"] == 2  # the decisions stay
    backend.append_request(request, [decision("d3", 12, cat)])  # the id is free again


def test_committed_rows_are_seen_by_a_new_connection(backend, reopen):
    cat = backend.catalog("c", ["none", "gift"], ["bias", "x"])
    (seq,) = backend.append_decisions([decision("d1", 1, cat)])
    backend.append_rewards([RewardRow("d1", seq, 5, 1.0, 1.0, "reward")])
    backend.set_meta("expiry_seq", "1")
    backend.checkpoint()
    other = reopen()
    assert other.catalog("c", ["none", "gift"], ["bias", "x"]) == cat
    assert other.lookup(["d1"])["d1"].reward == 1.0
    assert other.get_meta("expiry_seq") == "1"
    assert other.counts()["rewards"] == 1


# ---------------------------------------------------------------------- the SQLite backend


def test_journal_is_wal_and_private(tmp_path):
    path = tmp_path / "c.journal.sqlite"
    Journal(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental: compaction frees
    db.close()
    assert path.stat().st_mode & 0o077 == 0


def test_checkpoints_start_the_wal_over_under_steady_writes(tmp_path):
    """A checkpoint between every two write batches lets SQLite start the WAL from its
    beginning (the second pass under the journal's lock catches the frames the first missed),
    so the WAL file stays at about one batch of writes while many times that is written."""
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path)
    wal = eng.journal.path.with_name(eng.journal.path.name + "-wal")
    context = {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic"}
    largest = 0
    for k in range(150):
        eng.decide_batch([f"c{k}-{i}" for i in range(16)], [context] * 16)
        eng.journal.checkpoint(wal_limit=64 << 20, restart_bytes=16 << 10)
        largest = max(largest, wal.stat().st_size)
    written = eng.journal.counts()["decisions"] * 600  # bytes of rows alone
    assert written > 1 << 20
    assert largest < 512 << 10, largest
    assert eng.journal.integrity_check() == "ok"
    eng.close()


def test_corrupt_journal_file_is_reported(tmp_path):
    path = tmp_path / "bad.journal.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptModelError, match="expected an nbo SQLite journal"):
        Journal(path)


def test_a_write_that_cannot_commit_is_resource_exhausted_and_writes_nothing(tmp_path):
    path = tmp_path / "c.journal.sqlite"
    journal = Journal(path)
    cat = journal.catalog("c", ["none", "gift"], ["bias", "x"])
    journal.append_decisions([decision("d1", 1, cat)])
    journal.close()
    readonly = Journal(path, readonly=True)
    with pytest.raises(
        ResourceExhaustedError, match=r"c\.journal\.sqlite: expected room to commit"
    ):
        readonly.append_decisions([decision("d2", 2, cat)])
    with pytest.raises(ResourceExhaustedError, match="nothing was written"):
        readonly.set_meta("k", "v")
    assert readonly.counts()["decisions"] == 1 and readonly.integrity_check() == "ok"
    readonly.close()


def test_snapshot_round_trip_and_corruption(tmp_path):
    policy = LinUCB(3, 4, alpha=0.7, seed=1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    policy.update(X, rng.integers(0, 3, 50), rng.normal(size=50))
    path = tmp_path / "v3.snap"
    write_snapshot(path, {"version": "v3", "encoder": {"running": {}}}, policy)
    header, loaded = read_snapshot(path)
    assert header["version"] == "v3" and header["policy_class"] == "LinUCB"
    np.testing.assert_array_equal(loaded.choose(X).scores, policy.choose(X).scores)
    data = path.read_bytes()
    for bad, message in [
        (data[:-1], "checksum"),
        (b"XXXXXXXX" + data[8:], "magic"),
        (data[:20], "expected an nbo snapshot|checksum"),
        (
            data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1 :],
            "checksum",
        ),
    ]:
        with pytest.raises(CorruptModelError, match=message):
            decode_snapshot(bad)
    assert b"pickle" not in data
    blob = encode_snapshot({"version": "v1"}, policy)
    assert decode_snapshot(blob)[0]["policy_len"] > 0


def test_list_snapshots_newest_first(tmp_path):
    for v in (2, 10, 1):
        write_snapshot(tmp_path / f"v{v}.snap", {"version": f"v{v}"}, LinUCB(2, 1))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_snapshots(tmp_path)] == ["v10.snap", "v2.snap", "v1.snap"]


def test_adapt_offers_maps_catalog_changes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    policy = LinUCB(3, 3, seed=0)
    policy.update(X, rng.integers(0, 3, 200), rng.normal(size=200))
    before = policy.choose(X[:5]).scores
    adapted = adapt_offers(LinUCB.from_bytes(policy.to_bytes()), ["a", "b", "c"], ["a", "c", "d"])
    after = adapted.choose(X[:5]).scores
    np.testing.assert_allclose(after[:, :2], before[:, [0, 2]])
    with pytest.raises(CorruptModelError, match="config's order"):
        adapt_offers(LinUCB.from_bytes(policy.to_bytes()), ["a", "b", "c"], ["c", "a", "b"])
    with pytest.raises(CorruptModelError, match="expected 3 offers"):
        adapt_offers(LinUCB.from_bytes(policy.to_bytes()), ["a", "b"], ["a", "b"])
    shared = SharedLinear(2, 3, offer_features=np.eye(2), seed=0)
    grown = adapt_offers(
        shared, ["a", "b"], ["a", "b", "c"], offer_features=np.array([[1, 0], [0, 1], [1, 1.0]])
    )
    assert grown.n_actions == 3


def test_export_matches_the_logged_data_schema(filled, tmp_path):
    data, ds = filled
    out = tmp_path / "out" / "log.parquet"
    summary = export_parquet(find_journal(data), out)
    assert summary["rows"] == 120 and summary["skipped"] == 0
    table = pq.read_table(out)
    schema = table.schema
    d = summary["n_features"]
    assert schema.field("decision_id").type == pa.string()
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("context").type == pa.list_(pa.float64(), d)
    assert schema.field("propensity").type == pa.float64()
    assert schema.field("reward").type == pa.float64() and schema.field("reward").nullable
    assert schema.field("eligible").type == pa.list_(pa.string())
    assert schema.field("explored").type == pa.bool_()
    assert schema.field("control").type == pa.bool_()
    assert schema.field("model_version").type == pa.string()
    names = json.loads(schema.metadata[b"nbo.feature_names"])
    assert len(names) == d and names[0] == "bias"
    rows = table.to_pylist()
    by_id = {r["decision_id"]: r for r in rows}
    for dec in ds:
        row = by_id[dec.decision_id]
        assert row["action"] == dec.offer_id and row["propensity"] == dec.propensity
        assert row["control"] == dec.control and row["campaign"] == "renewal"
        assert row["timestamp"].timestamp() == pytest.approx(dec.timestamp)
        assert tuple(row["eligible"]) == dec.eligible and dec.offer_id in dec.eligible
    # 80 rewarded; 20 expired with the default reward 0 (net 0); the last 20 pending -> null.
    assert sum(r["reward"] is not None for r in rows) == 100
    assert all(r["reward"] is None for r in rows[100:])
    assert all(0 < r["propensity"] <= 1 for r in rows)
    closed = export_parquet(find_journal(data), tmp_path / "closed.parquet", closed_only=True)
    assert closed["rows"] == 100


def test_export_skips_rows_of_an_older_schema(filled, tmp_path):
    data, _ = filled
    text = RENEWAL.read_text().replace('name = "days_to_renewal"', 'name = "days_left"')
    config = tmp_path / "changed.toml"
    config.write_text(text)
    eng = Engine.from_config(
        config, data_dir=data, clock=lambda: T0 + 50 * 86400.0, reset_model=True
    )
    eng.decide("new", {"tenure_months": 3, "monthly_price": 20.0, "plan": "basic"})
    eng.close()
    summary = export_parquet(find_journal(data), tmp_path / "x.parquet")
    assert summary["rows"] == 1 and summary["skipped"] == 120
    assert "days_left" in summary["feature_names"]


def test_find_journal_errors(tmp_path):
    with pytest.raises(NotFoundError, match="data_dir: expected a directory with"):
        find_journal(tmp_path)
    with pytest.raises(NotFoundError, match="campaign: expected a journal at"):
        find_journal(tmp_path, "renewal")


def test_export_and_lift_commands(filled, tmp_path, capsys):
    data, _ = filled
    out = tmp_path / "cli" / "renewal.parquet"
    assert nbo_main(["export", "--data-dir", str(data), "--out", str(out), "--lift"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote 120 decisions to {out}" in printed
    assert pq.read_table(out).num_rows == 120
    lift_path = tmp_path / "cli" / "renewal-lift.json"
    report = json.loads(lift_path.read_text())
    assert report["campaign"] == "renewal" and report["n_treatment"] + report["n_control"] == 100
    lift_out = tmp_path / "lift.json"
    assert (
        nbo_main(["lift", "--data-dir", str(data), "--out", str(lift_out), "--level", "0.9"]) == 0
    )
    assert json.loads(lift_out.read_text())["level"] == 0.9
    assert nbo_main(["lift", "--data-dir", str(data), "--level", "0.5"]) == 2
    assert "--level: expected one of" in capsys.readouterr().err
    assert nbo_main(["export", "--data-dir", str(tmp_path / "nowhere")]) == 2


def test_a_journal_of_another_schema_version_is_refused_by_name(backend, reopen):
    assert backend.get_meta("schema_version") == "5"
    for older in ("2", "3", "4"):  # before deferred activation (3: compacted), the seq key
        backend.set_meta("schema_version", older)
        expected = rf"schema version {older}, this nbo expects 5; migrate it first with `nbo"
        with pytest.raises(ConfigError, match=expected):
            reopen()
    backend.set_meta("schema_version", "6")
    with pytest.raises(ConfigError) as newer:
        reopen()
    assert "schema version 6, this nbo expects 5; it was written by a newer nbo" in str(newer.value)
    assert str(newer.value).startswith("journal ")
    backend.set_meta("schema_version", "0")
    with pytest.raises(ConfigError, match="schema version 0, this nbo expects 5; this nbo has no"):
        reopen()
