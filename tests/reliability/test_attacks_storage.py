"""Issue 12's storage attacks, reproduced against real files and real servers: retried Decide
calls, floods of unknown reward ids, data directories others can write, planted symlinks, killed
snapshot writes, and model files offered to PromoteModel (outside paths, FIFOs, huge files,
crafted headers, wrong parameter types, a crafted newest snapshot at start-up)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from engine.client import NboClient
from engine.core import Engine
from engine.errors import PermissionDeniedError
from engine.journal.base import ERROR_SAMPLES
from engine.journal.snapshot import _FRAME, list_snapshots
from engine.policies import LinUCB, _blob
from engine.serving.server import NboServer, create_server
from testkit.harness import REPO, ServeProcess, campaign_config, customer, run_serve
from tests.engine.serving.support import RENEWAL, TOKEN, serve_config

T0 = 1_700_000_000.0
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[NboServer]:
    srv, _ = create_server(serve_config(tmp_path / "data"))
    srv.start()
    yield srv
    srv.stop(grace=1.0)


def _engine_of(server: NboServer) -> Engine:
    (_, engine, _), *_ = list(server.campaigns)
    return engine


def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or ""  # type: ignore[return-value]


# ---------------------------------------------------------------------- idempotent Decide
def test_a_retried_decide_gets_the_original_decision_once_even_after_a_restart(
    tmp_path: Path,
) -> None:
    config = serve_config(tmp_path / "data")
    srv, _ = create_server(config)
    srv.start()
    try:
        with NboClient(f"127.0.0.1:{srv.port}", admin_token=TOKEN) as c:
            first = c.decide("cust-1", customer(1), request_id="retry-1")
            again = c.decide("cust-1", customer(1), request_id="retry-1")
            batch = c.decide_batch(
                ["b1", "b2", "b3"], [customer(i) for i in range(3)], request_id="retry-batch"
            )
            batch_again = c.decide_batch(
                ["b1", "b2", "b3"], [customer(i) for i in range(3)], request_id="retry-batch"
            )
            code, details = _code(lambda: c.decide("cust-2", customer(1), request_id="retry-1"))
            assert code == INVALID and details.startswith("request_id: expected a new id")
            code, _ = _code(lambda: c.decide_batch(["b1"], [customer(0)], request_id="retry-batch"))
            assert code == INVALID
        engine = _engine_of(srv)
        assert (again.decision_id, again.offer_id, again.propensity) == (
            first.decision_id,
            first.offer_id,
            first.propensity,
        )
        assert again.ranking == first.ranking and again.model_version == first.model_version
        assert list(batch_again.decision_ids) == list(batch.decision_ids)
        assert list(batch_again.offer_ids) == list(batch.offer_ids)
        assert engine.journal.counts()["decisions"] == 4  # one per decided row, none per retry
        charged = sum(engine._guardrails.used_count)  # budgets and caps counted once
        assert charged == 4
    finally:
        srv.stop(grace=1.0)
    # Durable: a restarted server still answers the retry with the same decision.
    srv, _ = create_server(config)
    srv.start()
    try:
        with NboClient(f"127.0.0.1:{srv.port}") as c:
            after = c.decide("cust-1", customer(1), request_id="retry-1")
            code, _ = _code(lambda: c.decide("cust-3", customer(1), request_id="retry-1"))
        assert after.decision_id == first.decision_id and code == INVALID
        engine = _engine_of(srv)
        assert engine.journal.counts()["decisions"] == 4
        assert sum(engine._guardrails.used_count) == 4
    finally:
        srv.stop(grace=1.0)


def test_request_ids_are_forgotten_after_their_window(tmp_path: Path) -> None:
    text = RENEWAL.read_text().replace(
        'synchronous = "normal"', 'synchronous = "normal"\nrequest_window_hours = 2'
    )
    assert "request_window_hours = 2" in text
    path = tmp_path / "renewal.toml"
    path.write_text(text)
    clock = [T0]
    engine = Engine.from_config(path, data_dir=tmp_path / "data", clock=lambda: clock[0])
    try:
        first = engine.decide("c1", customer(1), request_id="window-1")
        clock[0] += 3600.0
        assert engine.decide("c1", customer(1), request_id="window-1") == first
        clock[0] += 3601.0  # past the 2 h window: the id names a new request
        engine.expire_pending()
        assert engine.journal.query("SELECT COUNT(*) FROM requests") == [(0,)]
        fresh = engine.decide("c2", customer(2), request_id="window-1")
        assert fresh.decision_id != first.decision_id
        assert engine.journal.counts()["decisions"] == 2
    finally:
        engine.close()


# ---------------------------------------------------------------------- reward error floods
def test_a_flood_of_unknown_reward_ids_adds_rows_per_period_not_per_call(tmp_path: Path) -> None:
    clock = [T0]
    data_dir = tmp_path / "data"
    engine = Engine.from_config(RENEWAL, data_dir=data_dir, clock=lambda: clock[0])
    files = [data_dir / "renewal.journal.sqlite", data_dir / "renewal.journal.sqlite-wal"]
    try:
        engine.journal.checkpoint()
        before = sum(f.stat().st_size for f in files)
        unknown = [f"{i:044x}" for i in range(10_000)]
        for _ in range(20):
            statuses = {r.status for r in engine.reward_batch(unknown, [1.0] * len(unknown))}
            assert statuses == {"unknown"}
            clock[0] += 0.05
        counts = engine.journal.counts()
        assert counts["reward_errors"] == 200_000
        assert engine.journal.query("SELECT COUNT(*) FROM reward_error_counts") == [(1,)]
        assert engine.journal.query("SELECT COUNT(*) FROM reward_errors") == [(ERROR_SAMPLES,)]
        engine.journal.checkpoint()
        after = sum(f.stat().st_size for f in files)
        assert after - before < 1 << 20, f"the journal grew by {after - before} bytes"
    finally:
        engine.close()


# ---------------------------------------------------------------------- data at rest
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_data_directory_others_can_write_is_refused_with_one_line(
    tmp_path: Path, mode: int
) -> None:
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    data_dir.chmod(mode)
    with pytest.raises(PermissionDeniedError, match=r"data_dir: .*'.*shared'.*writable"):
        Engine.from_config(RENEWAL, data_dir=data_dir, background=False)
    assert list(data_dir.iterdir()) == []  # nothing was created in it
    done = run_serve(RENEWAL, data_dir, admin_token=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbo serve: error: data_dir:"), done.stderr
    assert str(data_dir) in lines[0] and f"{mode:04o}" in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root (CI runs as root)")
def test_a_data_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "theirs"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, 65534, 65534)  # nobody
    with pytest.raises(PermissionDeniedError, match="owned by uid 65534"):
        Engine.from_config(RENEWAL, data_dir=data_dir, background=False)
    # A snapshot directory inside ours, owned by someone else, is refused too.
    ours = tmp_path / "ours"
    (ours / "snapshots" / "renewal").mkdir(parents=True, mode=0o700)
    os.chown(ours / "snapshots" / "renewal", 65534, 65534)
    with pytest.raises(PermissionDeniedError, match="snapshots/renewal"):
        Engine.from_config(RENEWAL, data_dir=ours, background=False)


@pytest.mark.parametrize("name", ["renewal.journal.sqlite", "renewal.journal.sqlite-wal"])
def test_a_planted_journal_symlink_is_refused_by_name_and_its_target_untouched(
    tmp_path: Path, name: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    target = tmp_path / "precious.txt"
    target.write_text("do not overwrite\n")
    target.chmod(0o644)
    before = target.stat()
    (data_dir / name).symlink_to(target)
    with pytest.raises(PermissionDeniedError, match=f"journal: .*{name}.*symlink"):
        Engine.from_config(RENEWAL, data_dir=data_dir, background=False)
    after = target.stat()
    assert target.read_text() == "do not overwrite\n"
    assert (after.st_mtime_ns, after.st_size, stat.S_IMODE(after.st_mode)) == (
        before.st_mtime_ns,
        before.st_size,
        0o644,
    )


def test_files_are_created_exclusively_and_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old = os.umask(0)
    try:
        engine = Engine.from_config(RENEWAL, data_dir=data_dir, background=False)
        engine.decide("c1", customer(1))
        engine.snapshot()
        engine.close()
    finally:
        os.umask(old)
    entries = [data_dir, *data_dir.rglob("*")]
    assert (data_dir / "models" / "renewal").is_dir() and list_snapshots(
        data_dir / "snapshots" / "renewal"
    )
    assert {oct(stat.S_IMODE(p.stat().st_mode) & 0o077) for p in entries} == {"0o0"}


def test_leftover_temporary_snapshots_are_removed_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    Engine.from_config(RENEWAL, data_dir=data_dir, background=False).close()
    folder = data_dir / "snapshots" / "renewal"
    leftovers = [folder / ".v7.snap.4242.tmp", folder / ".v8.snap.4243.0a1b2c.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"NBOSNAP1 half a snapshot")
    keep = folder / "notes.tmp"
    keep.write_text("not ours")
    with caplog.at_level(logging.WARNING, logger="nbo"):
        Engine.from_config(RENEWAL, data_dir=data_dir, background=False).close()
    assert not any(p.exists() for p in leftovers) and keep.exists()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert all(str(p) in logged for p in leftovers)


# ---------------------------------------------------------------------- PromoteModel
def _crafted_snapshot(offers: list[str], features: list[str], **params: object) -> bytes:
    """A checksummed snapshot whose policy header declares ``params`` over tiny arrays."""
    policy = LinUCB(len(offers), len(features), seed=0)
    name, saved, scalars, arrays = _blob.load(policy.to_bytes())
    saved.update(params)
    blob = _blob.dump(
        name,
        saved,
        scalars,
        {"rng_state_": arrays["rng_state_"]} if "n_features" in params else arrays,
    )
    head = {
        "policy_class": name,
        "policy_len": len(blob),
        "offer_ids": offers,
        "feature_names": features,
        "version": "v900",
    }
    return _FRAME.encode(head, blob)


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Path]]:
    tmp = tmp_path_factory.mktemp("promote")
    server = ServeProcess(campaign_config(tmp), tmp / "data")
    server.wait_serving()
    yield server, tmp / "data"
    server.stop()


def test_promote_refuses_paths_outside_the_model_directory_alike(
    served: tuple[ServeProcess, Path], tmp_path: Path
) -> None:
    server, data_dir = served
    models = data_dir / "models" / "renewal"
    (models / "out.snap").symlink_to("/etc/passwd")
    (models / "gone.snap").symlink_to(tmp_path / "no-such-file")
    (models / "sub").mkdir(exist_ok=True)
    with server.client() as c:
        version = c.model_info().model_version
        for path in (
            "/etc/passwd",
            "/nonexistent",
            "../x",
            "../renewal.journal.sqlite",
            "sub/../../x",
            "out.snap",
            "gone.snap",
            "sub/../out.snap",
        ):
            code, details = _code(lambda path=path: c.promote(path))
            assert code == DENIED, path
            assert details == (
                f"snapshot_path: expected a file inside the model directory, got {path!r}"
            )
        code, details = _code(lambda: c.promote("sub"))  # inside, but not a regular file
        assert code == INVALID and "a directory" in details
        assert c.model_info().model_version == version


def test_promote_refuses_a_fifo_promptly(served: tuple[ServeProcess, Path]) -> None:
    server, data_dir = served
    fifo = data_dir / "models" / "renewal" / "pipe.snap"
    os.mkfifo(fifo, 0o600)
    with server.client(timeout=10) as c:
        started = time.monotonic()
        code, details = _code(lambda: c.promote("pipe.snap"))
        assert time.monotonic() - started < 5.0
        assert code == INVALID and "a FIFO" in details and "'pipe.snap'" in details
        assert c.health() == "SERVING"


def test_promote_refuses_a_huge_file_before_reading_it(served: tuple[ServeProcess, Path]) -> None:
    server, data_dir = served
    huge = data_dir / "models" / "renewal" / "huge.snap"
    with huge.open("wb") as f:  # 300 MB, sparse: nothing to read but what the server reads
        f.write(b"NBOSNAP1")
        f.truncate(300 * 1000 * 1000)
    peak = _peak_rss_kb(server.proc.pid)
    with server.client() as c:
        code, details = _code(lambda: c.promote("huge.snap"))
    assert code == INVALID and "not read" in details
    assert _peak_rss_kb(server.proc.pid) - peak < 20_000


def test_promote_refuses_crafted_shapes_and_parameter_types_without_allocating(
    served: tuple[ServeProcess, Path],
) -> None:
    server, data_dir = served
    with server.client() as c:
        info = c.model_info()
        offers, features = list(info.offer_ids), list(info.feature_names)
        crafted = {
            # A few hundred bytes declaring 100 offers x 1,000 features (~1.6 GB to build).
            "big.snap": (
                _crafted_snapshot(
                    [f"o{i}" for i in range(99)] + offers[:1],
                    [f"f{i}" for i in range(1000)],
                    n_actions=100,
                    n_features=1000,
                ),
                "features",
            ),
            "big-same-names.snap": (
                _crafted_snapshot(offers, features, n_actions=len(offers), n_features=1000),
                "n_features",
            ),
            "alpha.snap": (_crafted_snapshot(offers, features, alpha="x"), "'alpha' parameter"),
            "seed.snap": (_crafted_snapshot(offers, features, seed=[1]), "'seed' parameter"),
            "extra.snap": (_crafted_snapshot(offers, features, evil=1), "unknown ['evil']"),
            "refactor.snap": (
                _crafted_snapshot(offers, features, refactor_every=1.5),
                "'refactor_every' parameter",
            ),
        }
        peak = _peak_rss_kb(server.proc.pid)
        assert len(crafted["big-same-names.snap"][0]) < 2_000  # a tiny file, a huge model
        for name, (data, reason) in crafted.items():
            (data_dir / "models" / "renewal" / name).write_bytes(data)
            code, details = _code(lambda name=name: c.promote(name))
            assert code == INVALID, (name, details)
            assert repr(name) in details and reason in details, (name, details)
        assert _peak_rss_kb(server.proc.pid) - peak < 20_000
        assert c.model_info().model_version == info.model_version
        assert c.health() == "SERVING"
        # A good file in the model directory is promoted by name (the live model's own bytes
        # change nothing; once the model learned, they make a new version).
        version = c.snapshot()
        newest = data_dir / "snapshots" / "renewal" / f"{version}.snap"
        shutil.copyfile(newest, data_dir / "models" / "renewal" / "good.snap")
        assert c.promote_model("good.snap").unchanged
        c.reward(c.decide("before-good", customer(2)).decision_id, 10.0)
        learned = c.snapshot()
        promoted = c.promote_model("good.snap", force=True)
        assert not promoted.unchanged and promoted.model.version not in (version, learned)
        assert json.loads(promoted.model.origin)["file"] == "good.snap"
        assert c.model_info().model_version == promoted.model.version


def _served_three_snapshots(tmp_path: Path) -> tuple[Path, Path, list[str], list[str]]:
    """A campaign that served 120 rewarded decisions over three snapshots, stopped."""
    config = campaign_config(tmp_path)
    data_dir = tmp_path / "data"
    engine = Engine.from_config(config, data_dir=data_dir, background=False)
    for i in range(3):
        ids = [
            d.decision_id
            for d in engine.decide_batch(
                [f"s{i}-{j}" for j in range(40)], [customer(j) for j in range(40)]
            )
        ]
        engine.reward_batch(ids, [10.0] * len(ids))
        engine.snapshot()
    offers, features = list(engine.offer_ids), list(engine.feature_names)
    engine.close()
    return config, data_dir, offers, features


def _crafted_files(offers: list[str], features: list[str]) -> list[bytes]:
    return [
        _crafted_snapshot(offers, features, n_actions=len(offers), n_features=1000),
        _crafted_snapshot(offers, features, alpha="x"),
    ]


@contextmanager
def _serving_past_crafted_snapshots(
    config: Path, data_dir: Path, offers: list[str], features: list[str]
) -> Iterator[tuple[ServeProcess, NboClient]]:
    """Plant the crafted files as the newest snapshot files (v900, v901), start a server and
    check it serves, in little memory, a model that learned the 120 rewards; yields it and a
    client, and stops it (exit status 0) on leaving."""
    folder = data_dir / "snapshots" / "renewal"
    for number, data in enumerate(_crafted_files(offers, features)):
        (folder / f"v{900 + number}.snap").write_bytes(data)
    server = ServeProcess(config, data_dir)
    try:
        server.wait_serving()
        assert server.rss_kb() < 1_000_000
        with server.client() as c:
            assert c.decide("after-crafted", customer(1)).decision_id
            assert c.model_info().rewards_learned == 120
            yield server, c
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_crafted_newest_model_is_skipped_at_start_up(tmp_path: Path) -> None:
    """The registry's bytes are in the journal: crafted bytes stored as its newest kept models
    are refused before a model is built, and the version before them is restored. Crafted
    files in the snapshot directory are exports nobody reads once the registry has models."""
    config, data_dir, offers, features = _served_three_snapshots(tmp_path)
    journal = data_dir / "renewal.journal.sqlite"
    db = sqlite3.connect(journal, isolation_level=None)
    try:
        (last,) = db.execute("SELECT MAX(version) FROM models").fetchone()
        for number, data in enumerate(_crafted_files(offers, features), last + 1):
            db.execute(
                "INSERT INTO models SELECT ?, created_us, 'learned', '{}', version, catalog,"
                " policy_class, last_reward_seq, n_rewards FROM models WHERE version = ?",
                (number, number - 1),
            )
            db.execute(
                "INSERT INTO model_blobs VALUES (?, ?, ?)",
                (number, hashlib.sha256(data).hexdigest(), data),
            )
    finally:
        db.close()
    with _serving_past_crafted_snapshots(config, data_dir, offers, features) as (server, c):
        assert int(c.model_info().model_version[1:]) > last + 2  # the number never goes back
    log = server.stderr()
    assert f"model v{last + 2} refused" in log and f"model v{last + 1} refused" in log
    assert f"model v{last} refused" not in log and "v900.snap" not in log


@pytest.mark.slow
def test_a_crafted_newest_snapshot_is_skipped_on_the_first_start_after_migrating(
    tmp_path: Path,
) -> None:
    """A journal migrated from version 1 has no registry yet: its model is imported from the
    snapshot directory, whose crafted newest files are refused (before a model is built) in
    favour of the previous one."""
    config, data_dir, offers, features = _served_three_snapshots(tmp_path)
    journal = data_dir / "renewal.journal.sqlite"
    db = sqlite3.connect(journal, isolation_level=None)
    try:  # back to what a version-1 nbo left: no registry; decisions name v<N> as before
        for statement in (
            "DROP TABLE model_blobs",
            "DROP TABLE models",
            "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
        ):
            db.execute(statement)
    finally:
        db.close()
    assert (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "journal",
                "migrate",
                "--data-dir",
                str(data_dir),
                "--campaign",
                "renewal",
            ],
            cwd=REPO,
            timeout=120,
            capture_output=True,
        ).returncode
        == 0
    )
    folder = data_dir / "snapshots" / "renewal"
    previous = list_snapshots(folder)[0]
    with _serving_past_crafted_snapshots(config, data_dir, offers, features) as (server, c):
        (imported, *_) = c.list_models()[::-1]
        assert json.loads(imported.origin)["imported"] == previous.name
    log = server.stderr()
    assert "v900.snap refused" in log and "v901.snap refused" in log
    assert f"{previous.name} refused" not in log
