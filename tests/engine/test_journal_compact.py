"""Journal retention (engine/journal/compact.py, ``nbo journal compact``): on every backend,
closed decisions move with their rewards to Parquet in the logged-data schema, what the engine
still reads stays, the totals do not change and an interrupted run is finished without
duplicates."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from engine.campaign.config import load_campaign
from engine.cli import main as nbo_main
from engine.core import Engine
from engine.errors import ConfigError, InvalidInputError
from engine.journal import JournalBackend
from engine.journal.compact import RetentionRules, check_older_than, compact_journal
from engine.journal.export import export_parquet
from engine.journal.records import DecisionRow, ModelRow, RequestRow, RewardRow
from engine.journal.schema import ALL_TABLES, COMPACTION_KEY, SQLITE_TYPES
from engine.journal.store import Journal
from engine.replay import read_logs
from tests.engine.journal_files import what_is_read

ROOT = Path(__file__).resolve().parents[2]
RENEWAL = ROOT / "examples" / "renewal.toml"
DAY = 86_400_000_000  # microseconds
NOW = 300 * 86_400.0  # seconds
ACTIONS = ("none", "gift", "upgrade")


def row(did: str, day: float, cat: int, i: int, width: int = 2) -> DecisionRow:
    """Decision ``did`` made on ``day``; offers, groups, customers and costs vary with ``i``."""
    return DecisionRow(
        did,
        int(day * DAY),
        f"c{i % 7}",
        np.full(width, float(i)).tobytes(),
        "none,gift,upgrade",
        ACTIONS[i % 3],
        0.5,
        i % 4 == 0,
        i % 5 == 0,
        "v1",
        [0.0, 2.5, 10.0][i % 3],
        np.zeros(3).tobytes(),
        None,
        cat,
    )


@pytest.fixture
def ledger(backend):
    """A journal with, in seq order: 40 old decisions (days 1-40; old8, old17, old26 and old35
    pending, every 11th
    expired without a reward), 2 made by a stored request (day 50), 10 more (days 55-64) and
    10 recent ones (days 290-299), all but the pending ones closed; two kept models."""
    cat = backend.catalog("c", list(ACTIONS), ["bias", "x"])
    rows = [row(f"old{i}", 1 + i, cat, i) for i in range(40)]
    backend.append_decisions(rows)
    request = RequestRow("req-1", "c", 50 * DAY, "ab" * 32)
    asked = [row("asked0", 50, cat, 40), row("asked1", 50, cat, 41)]
    backend.append_request(request, asked)
    later = [row(f"mid{i}", 55 + i, cat, 42 + i) for i in range(10)]
    recent = [row(f"new{i}", 290 + i, cat, 52 + i) for i in range(10)]
    backend.append_decisions(later + recent)
    stored = backend.lookup([r.decision_id for r in rows + asked + later + recent])
    rewards = []
    for i, r in enumerate(rows + asked + later + recent):
        if r.decision_id.startswith("old") and i % 9 == 8:
            continue  # pending
        seq = stored[r.decision_id].seq
        if r.decision_id.startswith("old") and i % 11 == 0:
            rewards.append(RewardRow(r.decision_id, seq, r.ts_us + DAY, None, None, "expired"))
        else:
            value = float(i % 13)
            rewards.append(RewardRow(r.decision_id, seq, r.ts_us + DAY, value, value - 1, "reward"))
    reward_seqs = backend.append_rewards(rewards)
    by_reward = {rw.decision_id: s for rw, s in zip(rewards, reward_seqs, strict=True)}
    # v1 learned up to the 20th reward, v2 up to the 45th: both kept (v1 is the recovery fallback)
    backend.add_model(ModelRow(1, "learned", "{}", None, cat, "LinUCB", reward_seqs[19], 20), b"1")
    backend.add_model(ModelRow(2, "learned", "{}", 1, cat, "LinUCB", reward_seqs[44], 45), b"2")
    backend.set_meta("expiry_seq", str(stored["old7"].seq))  # the sweep closed all before old8
    return {
        "cat": cat,
        "all": rows + asked + later + recent,
        "seq": {d: s.seq for d, s in stored.items()},
        "reward_seq": by_reward,
        "cursors": (reward_seqs[19], reward_seqs[44]),
        "last_reward": reward_seqs[-1],
    }


def expected(ledger, reward_bound: int, before_us: int, keep_recent: int) -> set[str]:
    """The decision ids the module docstring's rules let go."""
    seqs = sorted(ledger["seq"].values())
    recent_seq = seqs[-keep_recent]
    return {
        r.decision_id
        for r in ledger["all"]
        if r.decision_id in ledger["reward_seq"]
        and ledger["reward_seq"][r.decision_id] <= min(reward_bound, ledger["last_reward"] - 1)
        and ledger["seq"][r.decision_id] < recent_seq
        and r.ts_us < before_us
    }


def rounded(value: Any) -> Any:
    """``value`` with each float as pytest.approx (sums in another order round differently;
    counts stay exact)."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-12, abs=1e-9)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(rounded(v) for v in value)
    return value


def archive_rows(root: Path) -> list[dict[str, Any]]:
    table = pads.dataset(root, format="parquet", partitioning="hive").to_table()
    return table.to_pylist()


def test_compaction_keeps_what_the_engine_reads_and_every_total(backend, ledger, tmp_path):
    rules = RetentionRules(keep_recent=5)
    exported = {
        r["decision_id"]: r
        for r in pq.read_table(
            export_parquet(backend, tmp_path / "all.parquet")["path"]
        ).to_pylist()
    }
    read_before = what_is_read(backend)
    low_cursor, high_cursor = ledger["cursors"]
    replay_before = [list(batch) for batch in backend.rewards_after(low_cursor)]
    due_before = backend.due_for_expiry(0, 100 * DAY, 1000)[0]

    # 1. The oldest kept model pins rewards at v1's cursor; the stored request pins day 50.
    archive = tmp_path / "archive"
    report = compact_journal(backend, rules, NOW, archive, older_than_days=1)
    first = expected(ledger, low_cursor, 50 * DAY, 5)
    assert first and report.archived == len(first)
    assert report.bounds["limited_by"] == "the oldest kept model's last_reward_seq"
    assert backend.lookup(sorted(first)) == {}
    kept = {r.decision_id for r in ledger["all"]} - first
    assert set(backend.lookup(sorted(kept))) == kept
    assert what_is_read(backend) == read_before
    assert [list(batch) for batch in backend.rewards_after(low_cursor)] == replay_before
    assert backend.due_for_expiry(0, 100 * DAY, 1000)[0] == due_before  # pending ones stay
    found = backend.find_request("c", "req-1")
    assert found is not None and [d.decision_id for d in found.decisions] == ["asked0", "asked1"]
    assert backend.get_meta("expiry_seq") == str(ledger["seq"]["old7"])
    assert backend.get_meta("schema_version") == "5"  # older nbo refuse it (as newer)
    assert backend.archived_decisions() == len(first)
    rows = archive_rows(archive)
    assert {r["decision_id"] for r in rows} == first and len(rows) == len(first)
    for got in rows:
        day = got.pop("date")
        assert got == exported[got["decision_id"]]
        assert day == got["timestamp"].date().isoformat()

    # 2. Once the request is pruned and v1's bytes are gone, v2's cursor is the bound.
    backend.prune_requests(51 * DAY)
    assert backend.prune_model_bytes(keep_learned=1) == 1
    again = compact_journal(backend, rules, NOW, archive, older_than_days=1)
    second = expected(ledger, high_cursor, int(NOW * 1e6) - DAY, 5)
    assert again.archived == len(second - first) > 0
    assert what_is_read(backend) == read_before
    pending = {r.decision_id for r in ledger["all"]} - set(ledger["reward_seq"])
    assert set(backend.lookup(sorted(pending))) == pending  # never archived
    newest = sorted(ledger["seq"], key=ledger["seq"].get)[-5:]
    assert set(backend.lookup(newest)) == set(newest)  # the traffic window
    unapplied = [d for d, s in ledger["reward_seq"].items() if s > high_cursor]
    assert set(backend.lookup(unapplied)) == set(unapplied)  # the learner still replays them
    assert [r["decision_id"] for r in archive_rows(archive)].count("old1") == 1
    assert {r["decision_id"] for r in archive_rows(archive)} == second
    first_open = backend.first_open_after(int(backend.get_meta("expiry_seq") or 0))
    assert first_open is not None and first_open[1] <= min(
        r.ts_us for r in ledger["all"] if r.decision_id in pending
    )  # the expiry sweep is never late

    # 3. The archive reads as logged data (what `nbo evaluate` reads).
    data = read_logs(archive)
    closed = [r for r in exported.values() if r["decision_id"] in second]
    assert data.n_rounds == sum(r["reward"] is not None for r in closed)
    assert data.n_pending == sum(r["reward"] is None for r in closed)
    assert data.actions == ACTIONS and data.feature_names == ("bias", "x")


def test_a_rerun_after_a_crash_between_write_and_delete_does_not_duplicate(
    backend, reopen, ledger, tmp_path, monkeypatch
):
    rules = RetentionRules(keep_recent=5)
    read_before = what_is_read(backend)
    archive = tmp_path / "archive"

    def crash(intent: str, cut: Any) -> bool:
        raise KeyboardInterrupt("killed between the Parquet write and the delete")

    monkeypatch.setattr(backend, "finish_archive", crash)
    with pytest.raises(KeyboardInterrupt):
        compact_journal(backend, rules, NOW, archive, older_than_days=1, batch_rows=4)
    monkeypatch.undo()
    written = archive_rows(archive)
    assert len(written) == 4  # the first step's file is whole; its rows are still in the journal
    assert set(backend.lookup([r["decision_id"] for r in written])) == {
        r["decision_id"] for r in written
    }
    assert backend.get_meta(COMPACTION_KEY) is not None

    restarted = reopen()  # another process
    with pytest.raises(ConfigError, match=r"^archive: expected .*archive \(an interrupted"):
        compact_journal(restarted, rules, NOW, tmp_path / "elsewhere", older_than_days=1)
    report = compact_journal(restarted, rules, NOW, archive, older_than_days=1, batch_rows=4)
    assert report.recovered == 1
    ids = [r["decision_id"] for r in archive_rows(archive)]
    want = expected(ledger, ledger["cursors"][0], 50 * DAY, 5)
    assert len(ids) == len(set(ids)) == len(want) == report.archived and set(ids) == want
    assert restarted.get_meta(COMPACTION_KEY) is None
    assert what_is_read(restarted) == read_before
    # nothing left to move: a third run changes nothing
    assert compact_journal(restarted, rules, NOW, archive, older_than_days=1).archived == 0
    assert len(archive_rows(archive)) == len(want)


def test_steps_are_bounded_and_a_skewed_clock_never_lets_a_young_decision_go(backend, tmp_path):
    cat = backend.catalog("c", list(ACTIONS), ["bias", "x"])
    # another replica's clock ran ahead: every 7th decision says it was made on day 299
    rows = [row(f"d{i}", 299 if i % 7 == 3 else 1 + i, cat, i) for i in range(60)]
    seqs = backend.append_decisions(rows)
    rewards = [
        RewardRow(r.decision_id, q, r.ts_us, 1.0, 1.0, "reward")
        for r, q in zip(rows, seqs, strict=True)
    ]
    last = backend.append_rewards(rewards)[-1]
    backend.add_model(ModelRow(1, "learned", "{}", None, cat, "LinUCB", last, 60), b"m")
    young = {r.decision_id for r in rows if r.ts_us >= 200 * DAY}
    old = {r.decision_id for r in rows} - young - {"d59"}  # the newest decision stays
    rules = RetentionRules(keep_recent=1)
    first = compact_journal(
        backend, rules, NOW, tmp_path / "a", 100, reclaim=False, batch_rows=10, max_steps=2
    )
    assert first.archived == 20 and first.more and first.reclaimed == "none (not asked)"
    rest = compact_journal(backend, rules, NOW, tmp_path / "a", 100, batch_rows=10)
    assert not rest.more and first.archived + rest.archived == len(old)
    assert set(backend.lookup(sorted(young))) == young
    assert {r["decision_id"] for r in archive_rows(tmp_path / "a")} == old


def test_bad_older_than_is_refused_naming_the_field():
    rules = RetentionRules(min_days=180, why="guardrails.frequency_window_days = 180: caps")
    for bad in (0, -1, float("nan"), float("inf"), "soon", True, None):
        with pytest.raises(InvalidInputError, match=r"^older_than_days: expected a number of days"):
            check_older_than(bad, rules)
    with pytest.raises(
        InvalidInputError,
        match=r"^--older-than: expected a number of days >= 180 \(guardrails\.frequency_window_"
        r"days = 180: caps\), got 30$",
    ):
        check_older_than("30", rules, "--older-than")
    assert check_older_than("365", rules) == 365.0


def _big_journal(journal: JournalBackend, n: int = 2000) -> None:
    """``n`` closed decisions with 32-float contexts, all learned by a kept model."""
    cat = journal.catalog("c", list(ACTIONS), [f"f{j}" for j in range(32)])
    rows = [row(f"d{i}", 1 + i / 100, cat, i, width=32) for i in range(n)]
    seqs = journal.append_decisions(rows)
    rewards = [
        RewardRow(r.decision_id, s, r.ts_us, 1.0, 1.0, "reward")
        for r, s in zip(rows, seqs, strict=True)
    ]
    last = journal.append_rewards(rewards)[-1]
    journal.add_model(ModelRow(1, "learned", "{}", None, cat, "LinUCB", last, n), b"model")


def test_journal_bytes_per_decision_drop(backend, reopen, tmp_path):
    _big_journal(backend)
    backend.close()
    journal = reopen()  # SQLite: the last close folded the WAL into the file
    report = compact_journal(
        journal, RetentionRules(keep_recent=100), NOW, tmp_path / "a", 1, vacuum=True
    )
    before, after = report.space["before"], report.space["after"]
    assert report.archived == 1900 and before["decisions"] == after["decisions"] == 2000
    assert after["kept"] == 100 and after["bytes"] < before["bytes"]
    assert after["bytes_per_decision"] < 0.5 * before["bytes_per_decision"]
    assert report.reclaimed in ("VACUUM", "VACUUM (FULL)")


def test_a_new_sqlite_journal_gives_space_back_without_a_full_vacuum(tmp_path):
    journal = Journal(tmp_path / "c.journal.sqlite")
    _big_journal(journal)
    journal.close()
    journal = Journal(tmp_path / "c.journal.sqlite")
    report = compact_journal(journal, RetentionRules(keep_recent=100), NOW, tmp_path / "a", 1)
    assert report.reclaimed == "incremental_vacuum"
    assert report.space["after"]["bytes"] < 0.5 * report.space["before"]["bytes"]
    journal.close()


def test_an_older_sqlite_journal_reuses_its_pages_until_vacuum(tmp_path):
    path = tmp_path / "c.journal.sqlite"
    db = sqlite3.connect(path, isolation_level=None)  # as an nbo before auto_vacuum made it
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(ALL_TABLES.format(**SQLITE_TYPES))
    db.execute("INSERT INTO meta VALUES ('schema_version', '5')")
    db.close()
    journal = Journal(path)
    _big_journal(journal)
    journal.close()
    journal = Journal(path)
    plain = compact_journal(journal, RetentionRules(keep_recent=100), NOW, tmp_path / "a", 1)
    assert plain.reclaimed.startswith("none (auto_vacuum off")
    assert plain.space["after"]["bytes"] >= 0.9 * plain.space["before"]["bytes"]
    full = compact_journal(
        journal, RetentionRules(keep_recent=100), NOW, tmp_path / "a", 1, vacuum=True
    )
    assert full.reclaimed == "VACUUM" and full.archived == 0
    assert full.space["after"]["bytes"] < 0.5 * plain.space["before"]["bytes"]
    assert journal.query("PRAGMA auto_vacuum")[0][0] == 2  # incremental from now on
    journal.close()


# ---------------------------------------------------------------------- with an engine


def _engine_journal(config: Any, data: Path, url: str | None, clock: list[float]) -> Engine:
    """10 days of 30 decisions (25 rewarded each day), then the reward window passes."""
    eng = Engine(config, data, journal_url=url, clock=lambda: clock[0])
    rng = np.random.default_rng(0)
    for day in range(10):
        contexts = [
            {"tenure_months": float(i), "monthly_price": 30.0 + i, "plan": "basic"}
            for i in range(30)
        ]
        ds = eng.decide_batch([f"c{day}-{i % 12}" for i in range(30)], contexts)
        eng.reward_batch(
            [d.decision_id for d in ds[:25]], [float(v) for v in rng.integers(0, 500, 25)]
        )
        clock[0] += 86400.0
    clock[0] += 200 * 86400.0
    eng.expire_pending()
    return eng


def test_an_engine_restarts_on_a_compacted_journal_with_the_same_budgets_and_lift(
    store_url, tmp_path
):
    config = dataclasses.replace(
        load_campaign(RENEWAL), checkpoint_every_rewards=40, traffic_window=20
    )
    clock = [1.7e9]
    eng = _engine_journal(config, tmp_path / "data", store_url, clock)
    before = {**what_is_read(eng.journal), "lift": eng.lift().to_dict()}
    with pytest.raises(
        InvalidInputError, match=r"older_than_days: expected a number of days >= 180"
    ):
        compact_journal(eng.journal, config, clock[0], tmp_path / "archive", 30)
    report = compact_journal(eng.journal, config, clock[0], tmp_path / "archive", 181)
    assert report.archived > 0 and report.campaign == "renewal"
    version = eng.model_version
    eng.close()
    again = Engine(config, tmp_path / "data", journal_url=store_url, clock=lambda: clock[0])
    try:
        after = {**what_is_read(again.journal), "lift": again.lift().to_dict()}
        assert rounded(after) == before
        assert again.model_version >= version
        context = {"tenure_months": 3.0, "monthly_price": 30.0, "plan": "basic"}
        assert again.decide("c0-1", context).offer_id in config.offer_ids
    finally:
        again.close()
    data = read_logs(tmp_path / "archive")
    assert data.n_rounds + data.n_pending == report.archived
    assert data.feature_names and data.actions == config.offer_ids


def test_the_compact_command(tmp_path, capsys):
    config_path = tmp_path / "renewal.toml"
    config_path.write_text(
        RENEWAL.read_text().replace("traffic_window = 1000", "traffic_window = 20")
        + "\n"  # checkpoints often, so the oldest kept model's cursor moves on
    )
    config = dataclasses.replace(load_campaign(config_path), checkpoint_every_rewards=40)
    clock = [1.7e9]
    _engine_journal(config, tmp_path / "data", None, clock).close()
    base = [
        "journal",
        "compact",
        "--config",
        str(config_path),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    archive = tmp_path / "archive"

    assert nbo_main([*base, "--older-than", "30", "--archive", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "nbo journal: error: --older-than: expected a number of days >= 180 (guardrails."
        "frequency_window_days = 180: frequency caps count the incentives within it), got 30\n"
    )
    assert nbo_main([*base, "--older-than", "soon", "--archive", str(archive)]) == 2
    assert capsys.readouterr().err == (
        "nbo journal: error: --older-than: expected a number of days > 0, got soon\n"
    )

    args = [*base, "--older-than", "181", "--archive", str(archive)]
    assert nbo_main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["archived"] > 0 and all(Path(f).is_file() for f in report["files"])
    space = report["space"]
    assert space["after"]["bytes_per_decision"] < space["before"]["bytes_per_decision"]
    assert nbo_main(args) == 0
    printed = capsys.readouterr().out
    assert "archived 0 closed decisions" in printed and "bytes per decision" in printed
    assert nbo_main(["journal", "migrate", "--data-dir", str(tmp_path / "data")]) == 0
    assert "already at schema version 5; nothing to do" in capsys.readouterr().out
    evaluation = tmp_path / "evaluation"
    code = nbo_main(
        [
            "evaluate",
            "--logs",
            str(archive),
            "--policy",
            "linucb",
            "--bootstrap",
            "20",
            "--out",
            str(evaluation),
            "--no-progress",
        ]
    )
    assert code == 0
    assert json.loads((evaluation / "evaluation.json").read_text())["n_rows"] > 0


def test_retention_days_lets_the_leading_learner_compact_and_a_replica_not(store_url, tmp_path):
    config = dataclasses.replace(
        load_campaign(RENEWAL),
        checkpoint_every_rewards=40,
        traffic_window=20,
        retention_days=181.0,
    )
    clock = [1.7e9]
    eng = _engine_journal(config, tmp_path / "data", store_url, clock)
    replica = Engine(
        config, tmp_path / "replica", journal_url=store_url, clock=lambda: clock[0], role="decide"
    )
    try:
        assert replica.compact() == 0  # only the leading learner compacts
        before = {**what_is_read(eng.journal), "lift": eng.lift().to_dict()}
        moved = eng.compact()
        assert moved > 0 and eng.journal.archived_decisions() == moved
        assert rounded({**what_is_read(eng.journal), "lift": eng.lift().to_dict()}) == before
        assert list((tmp_path / "data" / "archive").rglob("part-*.parquet"))
    finally:
        replica.close()
        eng.close()
    without = Engine(
        dataclasses.replace(config, retention_days=None),
        tmp_path / "data",
        journal_url=store_url,
        clock=lambda: clock[0],
    )
    assert without.compact() == 0
    without.close()
