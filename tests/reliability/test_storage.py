"""Storage faults: a full disk, a read-only data directory, corrupted or truncated snapshots.

A full disk and a read-only directory are real ones where the machine allows it (a 1 MiB tmpfs,
remounted read-only; needs root), else the same faults made without privileges: a file-size
limit on the server process (``prlimit``; writes fail as on a full disk) and a directory without
write permission.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import resource
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from engine.core import Engine
from engine.errors import CorruptModelError
from engine.journal.snapshot import list_snapshots, read_snapshot
from testkit.harness import (
    ServeProcess,
    campaign_config,
    customer,
    rebuilt_policy,
    run_serve,
)


def _can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    probe = Path(f"/tmp/nbo-mount-probe-{uuid.uuid4().hex}")
    probe.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
        )
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    finally:
        probe.rmdir()


MOUNT = _can_mount()


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root), else just the directory."""
    path.mkdir()
    if MOUNT:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True
        )
    try:
        yield path
    finally:
        if MOUNT:
            subprocess.run(["umount", "-l", str(path)], check=True)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _integrity(journal: Path) -> str:
    db = sqlite3.connect(journal)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


@pytest.mark.slow
def test_full_disk_is_resource_exhausted_with_a_clear_message_and_corrupts_nothing(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "disk", "1m") as disk:
        data_dir = disk / "data"
        server = ServeProcess(campaign_config(tmp_path), data_dir)
        try:
            server.wait_serving()
            if not MOUNT:  # no tmpfs: every file may grow 384 kB more, then writes fail
                biggest = max(p.stat().st_size for p in data_dir.rglob("*") if p.is_file())
                limit = biggest + (384 << 10)
                # Soft limit only: raising it back needs no privilege.
                hard = resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE)[1]
                resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
            acked: list[str] = []
            failures: dict[str, str] = {}
            with server.client() as c:
                for i in range(20_000):
                    try:
                        acked.append(c.decide(f"fill-{i}", customer(i)).decision_id)
                    except grpc.RpcError as exc:
                        failures[exc.code().name] = exc.details()
                        if len(failures) and i > len(acked) + 20:
                            break
                assert acked and failures, "the disk never filled"
                # A clear, retryable status that names the journal and the cause.
                assert set(failures) == {"RESOURCE_EXHAUSTED"}, failures
                message = failures["RESOURCE_EXHAUSTED"]
                assert "journal" in message and "renewal.journal.sqlite" in message, message
                assert "disk" in message or "space" in message, message
                before = c.model_info()
                # Rewards fail the same way (a row or two may still fit in a free page).
                with pytest.raises(grpc.RpcError) as err:
                    for decision_id in acked[:50]:
                        c.reward(decision_id, 10.0)
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "journal" in (err.value.details() or "")
                if MOUNT:  # (a file-size limit would not stop a small snapshot file)
                    with pytest.raises(grpc.RpcError) as err:
                        c.snapshot()
                    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert "snapshot" in (err.value.details() or ""), err.value.details()
                assert c.health() == "SERVING"  # reads still work
                after = c.model_info()
                assert after.decisions == before.decisions
                assert not list(data_dir.rglob("*.tmp")), "a partial snapshot file was left"
                # Space comes back: the same process serves again, without a restart.
                if MOUNT:
                    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
                else:
                    hard = resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE)[1]
                    resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
                assert c.decide("after-space", customer(1)).decision_id
                rewarded = c.reward_batch(acked, [5.0] * len(acked))
                assert rewarded.unknown == 0 and rewarded.applied > 0
                assert c.snapshot()
        finally:
            assert server.stop() == 0, server.stderr()[-2000:]
        journal = data_dir / "renewal.journal.sqlite"
        assert _integrity(journal) == "ok"
        db = sqlite3.connect(journal)
        stored = {row[0] for row in db.execute("SELECT decision_id FROM decisions")}
        db.close()
        assert set(acked) <= stored, "an acknowledged decision was lost"


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` (a mount point when root) read-only, and writable again afterwards."""
    if MOUNT:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(0o500 if p.is_dir() else 0o400)
    try:
        yield
    finally:
        if MOUNT:
            subprocess.run(["mount", "-o", "remount,rw", str(path)], check=True)
        else:
            for p, mode in modes.items():
                p.chmod(mode)


@pytest.mark.slow
def test_read_only_data_directory_is_refused_with_one_clear_line_and_left_untouched(
    tmp_path: Path,
) -> None:
    config = campaign_config(tmp_path)
    with small_filesystem(tmp_path / "disk", "4m") as disk:
        data_dir = disk / "data"
        server = ServeProcess(config, data_dir)
        server.wait_serving()
        with server.client() as c:
            ids = [c.decide(f"ro-{i}", customer(i)).decision_id for i in range(20)]
        assert server.stop() == 0
        before = _digest(disk)
        with read_only(disk):
            for target in (data_dir, disk / "fresh"):  # an existing journal; a new directory
                done = run_serve(config, target, admin_token=False)
                assert done.returncode == 2, done.stderr[-2000:]
                lines = done.stderr.strip().splitlines()
                assert len(lines) == 1, done.stderr[-2000:]
                assert lines[0].startswith("nbo serve: error: data_dir: expected a writable"), lines
                assert str(target) in lines[0] and "read-only" in lines[0], lines
        assert _digest(disk) == before
        assert not (disk / "fresh").exists()
        engine = Engine.from_config(config, data_dir=data_dir, background=False)
        try:
            assert set(engine.journal.lookup(ids)) == set(ids)
        finally:
            engine.close()


def _snapshots_with_journal(tmp_path: Path) -> tuple[Path, Path]:
    """A data directory with three snapshots and rewards journaled after the last."""
    config = campaign_config(tmp_path, checkpoint_every_rewards=10**6)
    data_dir = tmp_path / "data"
    engine = Engine.from_config(config, data_dir=data_dir, clock=lambda: 1.7e9)
    rng = np.random.default_rng(0)
    for round_ in range(4):
        decisions = engine.decide_batch(
            [f"s{round_}-{i}" for i in range(40)], [customer(i) for i in range(40)]
        )
        engine.reward_batch(
            [d.decision_id for d in decisions], rng.uniform(0, 900, len(decisions)).tolist()
        )
        if round_ < 3:
            engine.snapshot()
    # Closing would write a fourth snapshot holding everything: leave like a crash instead.
    engine.abandon()
    return config, data_dir


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x40]) + data[middle + 1 :])
    else:  # emptied
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "flipped", "emptied"])
def test_a_corrupt_newest_model_is_refused_loudly_and_the_previous_one_used(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    config, data_dir = _snapshots_with_journal(tmp_path)
    newest, previous = list_snapshots(data_dir / "snapshots" / "renewal")[:2]
    previous_header, _ = read_snapshot(previous)
    _corrupt(newest, how)
    # Recovery reads the model registry in the journal, not the exported files: corrupt the
    # newest kept model there the same way (a damaged page of the journal file).
    db = sqlite3.connect(data_dir / "renewal.journal.sqlite")
    with db:
        (version, blob), *_ = db.execute(
            "SELECT version, model FROM model_blobs ORDER BY version DESC"
        ).fetchall()
        damaged = tmp_path / "blob"
        damaged.write_bytes(blob)
        _corrupt(damaged, how)
        db.execute(
            "UPDATE model_blobs SET model = ? WHERE version = ?", (damaged.read_bytes(), version)
        )
    db.close()
    with caplog.at_level(logging.WARNING, logger="nbo"):
        engine = Engine.from_config(config, data_dir=data_dir, background=False)
    try:
        refusals = [r for r in caplog.records if f"model v{version} refused" in r.getMessage()]
        assert refusals, f"no warning names the refused model v{version}"
        assert refusals[0].levelno == logging.WARNING
        assert "checksum" in refusals[0].getMessage() or "snapshot" in refusals[0].getMessage()
        # Started from the previous snapshot and replayed the journal after it: the model is the
        # one rebuilt from the journal, with every reward learned.
        rebuilt, n_rewards = rebuilt_policy(engine.journal, config)
        assert engine.model_info()["n_rewards_applied"] == n_rewards
        assert previous_header["n_rewards"] < n_rewards
        X = np.random.default_rng(1).normal(size=(32, engine.n_features))
        np.testing.assert_allclose(
            engine.policy.choose(X).scores, rebuilt.choose(X).scores, rtol=1e-9
        )
        # Offered for promotion, the same file is refused by name and changes nothing.
        version = engine.model_version
        with pytest.raises(CorruptModelError, match=re.escape(str(newest))):
            engine.load_snapshot(newest)
        assert engine.model_version == version
    finally:
        engine.close()
