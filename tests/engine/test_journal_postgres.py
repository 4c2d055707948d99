"""The PostgreSQL journal beyond the contract suite: choosing a backend by URL, seq order under
racing writers, an unreachable server, and the Engine on a shared database (restart recovery,
export, two replicas)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pyarrow.parquet as pq
import pytest

from engine.cli import main as nbo_main
from engine.core import Engine
from engine.errors import ConfigError, NotFoundError, ResourceExhaustedError
from engine.journal import Journal, RewardRow
from engine.journal.backends import journal_kind, open_journal, redact_url, sqlite_path
from engine.journal.export import export_parquet
from engine.journal.postgres import PostgresJournal, drop_campaign
from engine.serving.cli import journal_engines
from tests.engine.journal_files import rebuilt_from_journal
from tests.engine.test_journal import decision

ROOT = Path(__file__).resolve().parents[2]
RENEWAL = ROOT / "examples" / "renewal.toml"
T0 = 1_700_000_000.0
DAY = 86400.0


def _contexts(n: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    plans = ["basic", "standard", "premium"]
    return [
        {
            "tenure_months": int(rng.integers(0, 90)),
            "monthly_price": float(rng.uniform(15, 120)),
            "plan": plans[i % 3],
        }
        for i in range(n)
    ]


# ---------------------------------------------------------------------- choosing a backend
def test_urls_choose_the_backend_and_other_schemes_are_refused_in_one_line(tmp_path):
    assert journal_kind("postgresql://nbo@db:5432/offers") == "postgres"
    assert journal_kind("postgres://nbo@db/offers") == "postgres"
    assert sqlite_path("sqlite:///rel/x.sqlite") == Path("rel/x.sqlite")
    assert sqlite_path("sqlite:////abs/x.sqlite") == Path("/abs/x.sqlite")
    journal = open_journal(f"sqlite:///{tmp_path}/a.sqlite", campaign="a")
    assert isinstance(journal, Journal) and journal.path == tmp_path / "a.sqlite"
    journal.close()
    default = open_journal(None, campaign="renewal", data_dir=tmp_path)
    assert isinstance(default, Journal) and default.path == tmp_path / "renewal.journal.sqlite"
    default.close()
    with pytest.raises(ConfigError) as info:
        open_journal("mysql://root:hunter2@localhost/nbo", campaign="a")
    message = str(info.value)
    assert "\n" not in message and "hunter2" not in message
    assert "scheme 'mysql'" in message and "postgresql://user@host:port/db" in message


def test_urls_are_shown_without_their_password():
    assert redact_url("postgresql://nbo:s3cret@db:5432/offers") == "postgresql://nbo@db:5432/offers"
    assert "x" not in redact_url("postgres://db/offers?password=x&sslmode=require").split("?")[1]
    assert redact_url("postgresql://db/offers") == "postgresql://db/offers"


def test_an_unreachable_server_is_named_within_seconds_without_the_password():
    with socket.socket() as refused:  # a port nobody listens on
        refused.bind(("127.0.0.1", 0))
        port = refused.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ResourceExhaustedError) as info:
        open_journal(f"postgresql://nbo:s3cret@127.0.0.1:{port}/offers", campaign="c")
    message = str(info.value)
    assert f"host 127.0.0.1 port {port}, database offers" in message
    assert "s3cret" not in message and "postgresql://nbo@127.0.0.1" in message
    # A server that accepts the connection and never answers: the connect timeout ends it.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://nbo@127.0.0.1:{silent.getsockname()[1]}/offers"
        with pytest.raises(ResourceExhaustedError, match="expected a reachable PostgreSQL"):
            PostgresJournal(url, "c", connect_timeout=1)
    assert time.monotonic() - start < 5


def test_a_read_only_open_finds_no_journal_and_creates_none(postgres_url):
    with pytest.raises(NotFoundError, match=r"campaign c\): expected a journal, got no schema"):
        open_journal(postgres_url, campaign="c", readonly=True)
    writer = open_journal(postgres_url, campaign="c")
    cat = writer.catalog("c", ["none", "gift"], ["bias", "x"])
    reader = open_journal(postgres_url, campaign="c", readonly=True)
    with pytest.raises(ResourceExhaustedError, match="nothing was written"):
        reader.append_decisions([decision("d1", 1, cat)])
    assert reader.counts()["decisions"] == 0
    reader.close()
    writer.close()


def test_campaigns_share_a_database_in_schemas_of_their_own(postgres_url):
    a = open_journal(postgres_url, campaign="a")
    b = open_journal(postgres_url, campaign="b")
    cat = a.catalog("a", ["none", "gift"], ["bias", "x"])
    a.append_decisions([decision("d1", 1, cat), decision("d2", 2, cat)])
    assert a.counts()["decisions"] == 2 and b.counts()["decisions"] == 0
    assert b.catalogs() == {}
    b.close()
    drop_campaign(postgres_url, "b")
    with psycopg.connect(postgres_url) as conn:
        names = {n for (n,) in conn.execute("SELECT nspname FROM pg_namespace").fetchall()}
    assert "nbo_a" in names and "nbo_b" not in names
    a.close()


# ---------------------------------------------------------------------- seq order
def test_a_reader_never_skips_a_reward_committed_late_by_another_writer(postgres_url):
    """Two writers (two pools, as two replicas) append rewards while a reader follows
    rewards_after(last seq) as the learner does: it must see every seq once, in order."""
    setup = open_journal(postgres_url, campaign="c")
    cat = setup.catalog("c", ["none", "gift"], ["bias", "x"])
    n_writers, batches, size = 2, 60, 5
    n = n_writers * batches * size
    seqs = setup.append_decisions([decision(f"d{i}", i, cat) for i in range(n)])
    writers = [open_journal(postgres_url, campaign="c") for _ in range(n_writers)]
    reader = open_journal(postgres_url, campaign="c")
    done = threading.Event()
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for b in range(batches):
                first = (w * batches + b) * size
                rows = [
                    RewardRow(f"d{i}", seqs[i], i, 1.0, 1.0, "reward")
                    for i in range(first, first + size)
                ]
                writers[w].append_rewards(rows)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    seen: list[int] = []

    def read() -> None:
        last = 0
        while not done.is_set() or last < n:
            for batch in reader.rewards_after(last, batch=7):
                seen.extend(r.seq for r in batch)
                last = batch[-1].seq
            if errors:
                return

    threads = [threading.Thread(target=write, args=(w,)) for w in range(n_writers)]
    follower = threading.Thread(target=read)
    follower.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    follower.join(timeout=60)
    assert not errors
    assert seen == list(range(1, n + 1))
    assert reader.counts() == {
        "decisions": n,
        "rewards": n,
        "pending": 0,
        "reward_errors": 0,
        "inactive": 0,
        "activations": 0,
    }
    for journal in [setup, reader, *writers]:
        journal.close()


def test_two_writers_racing_on_one_reward_one_wins(postgres_url):
    journals = [open_journal(postgres_url, campaign="c") for _ in range(2)]
    cat = journals[0].catalog("c", ["none", "gift"], ["bias", "x"])
    seqs = journals[0].append_decisions([decision(f"d{i}", i, cat) for i in range(50)])
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def reward(j: int) -> None:
        barrier.wait()
        for i in range(50):
            try:
                journals[j].append_rewards(
                    [RewardRow(f"d{i}", seqs[i], 9, 1.0, float(j), "reward")]
                )
                outcomes.append("won")
            except Exception as exc:
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=reward, args=(j,)) for j in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 50 and outcomes.count("DuplicateError") == 50
    assert journals[1].counts()["rewards"] == 50
    for journal in journals:
        journal.close()


# ---------------------------------------------------------------------- the Engine on PostgreSQL
@pytest.fixture
def clock() -> list[float]:
    return [T0]


def _engine(url: str, data_dir: Path, clock: list[float], role: str = "all") -> Engine:
    return Engine.from_config(
        RENEWAL, data_dir=data_dir, journal_url=url, clock=lambda: clock[0], role=role
    )


def test_engine_decides_rewards_expires_and_recovers_on_postgres(postgres_url, tmp_path, clock):
    eng = _engine(postgres_url, tmp_path / "a", clock)
    ds = eng.decide_batch([f"c{i}" for i in range(60)], _contexts(60))
    assert not (tmp_path / "a" / "renewal.journal.sqlite").exists()
    first = eng.reward(ds[0].decision_id, 300.0)
    assert first.status == "applied"
    assert eng.reward(ds[0].decision_id, 1.0).status == "duplicate"
    results = eng.reward_batch([d.decision_id for d in ds[1:40]] + ["nope"], [50.0] * 40)
    assert [r.status for r in results] == ["applied"] * 39 + ["unknown"]
    clock[0] += 31 * DAY
    assert eng.expire_pending() == 20
    with pytest.raises(NotFoundError, match="reward window passed"):
        eng.reward(ds[59].decision_id, 10.0)
    counts = eng.journal.counts()
    assert counts == {
        "decisions": 60,
        "rewards": 60,
        "pending": 0,
        "reward_errors": 2,
        "inactive": 0,
        "activations": 0,
    }
    lift = eng.lift()
    assert lift.n_treatment + lift.n_control == 60
    version = eng.model_version
    eng.close()
    # A restart on the same database, with no snapshot to start from: the journal alone
    # rebuilds the model, the counts and the version.
    again = _engine(postgres_url, tmp_path / "fresh", clock)
    assert again.journal.counts() == counts
    assert int(again.model_version[1:]) >= int(version[1:])
    X = np.random.default_rng(1).normal(size=(5, again.n_features))
    np.testing.assert_allclose(
        again.policy.choose(X).scores, rebuilt_from_journal(again).choose(X).scores
    )
    assert again.reward(ds[0].decision_id, 5.0).status == "duplicate"
    out = tmp_path / "log.parquet"
    summary = export_parquet(again.journal, out)
    assert summary["rows"] == 60 and summary["campaign"] == "renewal"
    table = pq.read_table(out).to_pylist()
    assert {r["decision_id"] for r in table} == {d.decision_id for d in ds}
    assert sum(r["reward"] is not None for r in table) == 60
    again.close()


def test_two_replicas_share_decisions_and_rewards(postgres_url, tmp_path, clock):
    """Two Engines on one database and campaign: a decision one acknowledges is rewarded
    through the other at once, and a retry through either is a duplicate."""
    a = _engine(postgres_url, tmp_path / "a", clock)
    b = _engine(postgres_url, tmp_path / "b", clock, role="decide")
    da = a.decide_batch(["c1", "c2", "c3"], _contexts(3))
    db = b.decide("c4", _contexts(1, seed=2)[0])
    assert b.reward(da[0].decision_id, 100.0).status == "applied"
    assert a.reward(da[0].decision_id, 100.0).status == "duplicate"
    assert a.reward(db.decision_id, 20.0).status == "applied"
    results = b.reward_batch([d.decision_id for d in da], [1.0, 2.0, 3.0])
    assert [r.status for r in results] == ["duplicate", "applied", "applied"]
    assert (
        a.journal.counts()
        == b.journal.counts()
        == {
            "decisions": 4,
            "rewards": 4,
            "pending": 0,
            "reward_errors": 0,
            "inactive": 0,
            "activations": 0,
        }
    )
    a.close()
    b.close()


def test_replicas_racing_on_the_same_rewards_apply_each_once(postgres_url, tmp_path, clock):
    engines = [
        _engine(postgres_url, tmp_path / name, clock, role)
        for name, role in (("a", "all"), ("b", "decide"))
    ]
    ids = [
        d.decision_id for d in engines[0].decide_batch([f"c{i}" for i in range(40)], _contexts(40))
    ]
    statuses: list[str] = []
    barrier = threading.Barrier(2)

    def report(eng: Engine) -> None:
        barrier.wait()
        for i in range(0, 40, 4):
            statuses.extend(r.status for r in eng.reward_batch(ids[i : i + 4], [1.0] * 4))

    threads = [threading.Thread(target=report, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count("applied") == 40 and statuses.count("duplicate") == 40
    assert engines[0].journal.counts()["rewards"] == 40
    for eng in engines:
        eng.close()


def test_replicas_racing_on_one_request_id_make_one_set_of_decisions(postgres_url, tmp_path, clock):
    """A client retries a Decide through another replica while the first is still deciding:
    both answer with the same decisions, stored and charged once."""
    engines = [
        _engine(postgres_url, tmp_path / name, clock, role)
        for name, role in (("a", "all"), ("b", "decide"))
    ]
    customers, contexts = [f"c{i}" for i in range(8)], _contexts(8)
    answers: list[list[str]] = []
    barrier = threading.Barrier(2)

    def decide(eng: Engine) -> None:
        barrier.wait()
        for k in range(10):
            done = eng.decide_batch(customers, contexts, request_id=f"retry-{k}")
            answers.append([d.decision_id for d in done])

    threads = [threading.Thread(target=decide, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 20 and len({tuple(a) for a in answers}) == 10
    assert engines[0].journal.counts()["decisions"] == engines[1].journal.counts()["decisions"]
    assert engines[0].journal.counts()["decisions"] == 80
    replayed = engines[1].decide_batch(customers, contexts, request_id="retry-3")
    assert [d.decision_id for d in replayed] in answers
    for eng in engines:
        eng.close()


def test_campaign_file_and_serve_flag_name_the_journal(postgres_url, tmp_path, clock):
    config = tmp_path / "renewal.toml"
    config.write_text(
        RENEWAL.read_text().replace("[journal]", f'[journal]\nurl = "{postgres_url}"')
    )
    eng = Engine.from_config(config, data_dir=tmp_path / "d", clock=lambda: clock[0])
    eng.decide("c1", _contexts(1)[0])
    eng.close()
    assert not (tmp_path / "d" / "renewal.journal.sqlite").exists()
    served = journal_engines(postgres_url, 2)(RENEWAL, tmp_path / "d")
    assert served.journal.counts()["decisions"] == 1
    served.close()
    with pytest.raises(ConfigError, match="a SQLite file holds one"):
        journal_engines(str(tmp_path / "x.sqlite"), 2)


def test_export_and_lift_commands_read_a_postgres_journal(postgres_url, tmp_path, clock, capsys):
    eng = _engine(postgres_url, tmp_path / "a", clock)
    ds = eng.decide_batch([f"c{i}" for i in range(30)], _contexts(30))
    eng.reward_batch([d.decision_id for d in ds], [10.0] * 30)
    eng.close()
    out = tmp_path / "cli" / "renewal.parquet"
    args = ["--journal", postgres_url, "--campaign", "renewal"]
    assert nbo_main(["export", *args, "--out", str(out), "--lift"]) == 0
    assert f"wrote 30 decisions to {out}" in capsys.readouterr().out
    assert pq.read_table(out).num_rows == 30
    report = json.loads((tmp_path / "cli" / "renewal-lift.json").read_text())
    assert report["campaign"] == "renewal" and report["n_treatment"] + report["n_control"] == 30
    assert nbo_main(["export", "--journal", postgres_url]) == 2
    assert "--campaign: expected a campaign" in capsys.readouterr().err
