"""Journal store, snapshot files, offer mapping, Parquet export and the export/lift commands."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.cli import main as nbo_main
from engine.core import Engine
from engine.errors import CorruptModelError, NotFoundError
from engine.journal import Journal, list_snapshots, read_snapshot, write_snapshot
from engine.journal.export import export_parquet, find_journal
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


def test_journal_is_wal_and_private(tmp_path):
    path = tmp_path / "c.journal.sqlite"
    j = Journal(path)
    cat = j.catalog("c", ["a"], ["bias"])
    assert j.catalog("c", ["a"], ["bias"]) == cat
    assert j.catalog("c", ["a", "b"], ["bias"]) != cat
    j.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert path.stat().st_mode & 0o077 == 0


def test_corrupt_journal_file_is_reported(tmp_path):
    path = tmp_path / "bad.journal.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptModelError, match="expected an nbo SQLite journal"):
        Journal(path)


def test_rewards_are_unique_per_decision(tmp_path):
    j = Journal(tmp_path / "c.journal.sqlite")
    cat = j.catalog("c", ["a"], ["bias"])
    row = ("d1", 1, "c1", b"", "a", "a", 1.0, 0, 0, "v1", 0.0, b"", None, cat)
    (seq,) = j.append_decisions([row])
    j.append_rewards([("d1", seq, 2, 1.0, 1.0, "reward")])
    with pytest.raises(sqlite3.IntegrityError):
        j.append_rewards([("d1", seq, 3, 2.0, 2.0, "reward")])
    assert j.counts() == {"decisions": 1, "rewards": 1, "pending": 0, "reward_errors": 0}
    j.close()


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
    eng = Engine.from_config(config, data_dir=data, clock=lambda: T0 + 50 * 86400.0)
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
