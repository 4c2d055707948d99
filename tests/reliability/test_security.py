"""Security: TLS, the admin token, no pickle or eval of configs and snapshots, message size
limits, owner-only data directories, and no secret in the logs."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from engine.campaign import load_campaign
from engine.client import NboClient
from engine.core import Engine
from engine.errors import ConfigError, CorruptModelError
from engine.journal.snapshot import MAGIC, read_snapshot
from engine.serving.logs import configure_logging
from engine.serving.server import NboServer, create_server
from testkit.harness import (
    RENEWAL,
    REPO,
    TOKEN,
    ServeProcess,
    campaign_config,
    customer,
)
from testkit.tls import self_signed
from tests.engine.serving.support import serve_config

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class _Marker:
    """Unpickling this runs ``touch <path>``: proof that a file was (or was not) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


@pytest.fixture()
def tls_server(tmp_path: Path) -> Iterator[tuple[NboServer, Path, Path]]:
    cert, key = self_signed(tmp_path, "server")
    server, _ = create_server(
        # auth_failure_limit: this test tries many wrong tokens in a row; the throttle that
        # refuses such a peer is tested in test_attacks.py.
        serve_config(
            tmp_path / "data",
            tls_cert=cert,
            tls_key=key,
            admin_token=TOKEN,
            max_message_bytes=64 * 1024,
            auth_failure_limit=1000,
        )
    )
    server.start()
    yield server, cert, tmp_path
    server.stop(grace=1)


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_a_tls_key_others_can_read_is_warned_about_at_start(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    cert, key = self_signed(tmp_path, "server")
    key.chmod(mode)
    log = io.StringIO()
    configure_logging("info", log)
    try:
        server, _ = create_server(serve_config(tmp_path / "data", tls_cert=cert, tls_key=key))
        server.start()
        server.stop(grace=0.5)
    finally:
        configure_logging("info")
    lines = [json.loads(x) for x in log.getvalue().splitlines()]
    about_key = [x for x in lines if "TLS key" in x["msg"]]
    if not warned:
        assert about_key == []
        return
    (line,) = about_key
    assert line["level"] == "warning" and line["tls_key"] == str(key)
    assert line["msg"] == (
        f"TLS key {key} has mode {mode:04o}: group or others may read it; "
        f"make it owner-only (chmod 600 {key})"
    )


def test_tls_and_the_admin_token_keep_out_whoever_should_be(
    tls_server: tuple[NboServer, Path, Path],
) -> None:
    server, cert, tmp_path = tls_server
    target = f"localhost:{server.port}"
    other_ca, _ = self_signed(tmp_path, "impostor")
    log = io.StringIO()
    configure_logging("debug", log)
    try:
        with NboClient(target, tls_ca=cert, admin_token=TOKEN) as admin:
            version = admin.model_info().model_version
            assert admin.decide("tls-ok", customer(1)).decision_id
        # No TLS, or a server certificate the client does not trust: no connection at all.
        for client in (
            NboClient(f"127.0.0.1:{server.port}", timeout=3),
            NboClient(target, tls_ca=other_ca, timeout=3),
        ):
            with client, pytest.raises(grpc.RpcError) as err:
                client.decide("tls-refused", customer(1))
            assert err.value.code() == UNAVAILABLE
        # Over TLS: OfferService is open, AdminService needs the exact bearer token.
        bad_tokens = [None, TOKEN + "x", TOKEN[:-1], TOKEN.upper(), f" {TOKEN}", ""]
        for token in bad_tokens:
            with NboClient(target, tls_ca=cert, admin_token=token, timeout=5) as c:
                assert c.decide("tls-open", customer(2)).decision_id
                for call in (c.model_info, c.snapshot, lambda: c.promote(RENEWAL)):
                    with pytest.raises(grpc.RpcError) as err:
                        call()
                    assert err.value.code() in (
                        grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.PERMISSION_DENIED,
                    ), token
        with NboClient(target, tls_ca=cert, timeout=5) as anonymous:
            with pytest.raises(grpc.RpcError) as err:
                anonymous.snapshot()
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with NboClient(target, tls_ca=cert, admin_token=TOKEN) as admin:
            assert admin.model_info().model_version == version  # no refused call changed it
    finally:
        configure_logging("info")
    logs = log.getvalue()
    assert '"code":"PERMISSION_DENIED"' in logs and '"code":"OK"' in logs
    assert TOKEN not in logs and TOKEN[:-1] not in logs, "a token was written to the logs"


def test_message_size_limits_are_enforced_both_ways(
    tls_server: tuple[NboServer, Path, Path],
) -> None:
    server, cert, _ = tls_server
    target = f"localhost:{server.port}"
    padding = {f"x_{i}": float(i) for i in range(4000)}  # ~ 70 kB > the 64 KiB limit
    with NboClient(target, tls_ca=cert, admin_token=TOKEN) as c:
        before = c.model_info()
        with pytest.raises(grpc.RpcError) as err:
            c.decide("too-big", {**customer(1), **padding})
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert c.health() == "SERVING" and c.model_info().decisions == before.decisions
    # The client refuses to send past its own limit (nothing reaches the server).
    with NboClient(target, tls_ca=cert, max_message_bytes=1024) as small:
        with pytest.raises(grpc.RpcError) as err:
            small.decide("too-big-for-me", {**customer(1), **padding})
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A response past the limit is refused too: the scores of a big batch, for a client that
    # accepts 4 KiB answers.
    with NboClient(target, tls_ca=cert, max_message_bytes=4096) as small:
        ids = [f"big-answer-{i}" for i in range(40)]
        with pytest.raises(grpc.RpcError) as err:
            small.decide_batch(ids, [customer(i) for i in range(40)], include_scores=True)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


LOADERS = (
    "engine/campaign",
    "engine/features",
    "engine/journal",
    "engine/policies",
    "engine/serving",
    "engine/core.py",
    "engine/client.py",
)
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "jsonpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def test_no_code_that_loads_configs_or_models_can_unpickle_or_eval() -> None:
    offenders = []
    for root in LOADERS:
        path = REPO / root
        for source in [path] if path.is_file() else sorted(path.rglob("*.py")):
            if "/pb/" in str(source):  # generated stubs
                continue
            tree = ast.parse(source.read_text())
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module.split(".")[0]]
                if FORBIDDEN_MODULES & set(names):
                    offenders.append(f"{source.relative_to(REPO)}:{node.lineno} imports {names}")
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in FORBIDDEN_CALLS
                ):
                    offenders.append(f"{source.relative_to(REPO)}:{node.lineno} {node.func.id}()")
    assert not offenders, offenders


def _framed_pickle(payload: bytes) -> bytes:
    """A snapshot with a valid frame and checksum whose policy blob is a pickle."""
    head = json.dumps({"version": "v99", "policy_class": "LinUCB", "policy_len": len(payload)})
    body = MAGIC + len(head).to_bytes(8, "little") + head.encode() + payload
    return body + hashlib.sha256(body).digest()


@pytest.mark.slow
def test_snapshots_holding_a_pickle_are_refused_and_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Marker(marker))
    raw, framed = tmp_path / "raw.snap", tmp_path / "framed.snap"
    raw.write_bytes(payload)
    framed.write_bytes(_framed_pickle(payload))
    for path in (raw, framed):
        with pytest.raises(CorruptModelError):
            read_snapshot(path)
    # As the newest snapshot file of a data directory: never read at start-up (the model comes
    # from the registry in the journal; files are an export), nor imported.
    config = campaign_config(tmp_path)
    data_dir = tmp_path / "data"
    engine = Engine.from_config(config, data_dir=data_dir, background=False)
    engine.close()
    (data_dir / "snapshots" / "renewal" / "v999.snap").write_bytes(framed.read_bytes())
    # ... and offered for promotion over gRPC from the model directory: INVALID_ARGUMENT, the
    # model unchanged.
    for path in (raw, framed):
        (data_dir / "models" / "renewal" / path.name).write_bytes(path.read_bytes())
    server = ServeProcess(config, data_dir)
    try:
        server.wait_serving()
        with server.client() as c:
            version = c.model_info().model_version
            assert version != "v999"
            for path in (raw, framed):
                with pytest.raises(grpc.RpcError) as err:
                    c.promote(path.name)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert repr(path.name) in (err.value.details() or "")
            assert c.model_info().model_version == version
    finally:
        server.stop()
    assert "v999" not in server.stderr()
    assert not marker.exists(), "a pickle was unpickled"


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("eligible", "eligible = [\"__import__('os').system('touch {marker}')\"]"),
        ("eligible", 'eligible = ["tenure_months >= (lambda: 1)()"]'),
        ("eligible", "eligible = [\"tenure_months >= 6 or __import__('os')\"]"),
        ("policy", "name = \"__import__('os').system('touch {marker}')\""),
    ],
)
def test_configs_are_parsed_never_evaluated(tmp_path: Path, section: str, line: str) -> None:
    marker = tmp_path / "pwned"
    text = RENEWAL.read_text()
    if section == "eligible":
        text = text.replace('eligible = ["tenure_months >= 6"]', line.format(marker=marker))
    else:
        text = text.replace('name = "linucb"', line.format(marker=marker))
    path = tmp_path / "evil.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_campaign(path)
    assert "expected" in str(err.value)
    assert not marker.exists(), "a config value was executed"


@pytest.mark.slow
def test_data_directory_and_everything_in_it_is_owner_only_even_with_umask_0(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "fresh" / "data"
    server = ServeProcess(campaign_config(tmp_path), data_dir, umask=0)
    try:
        server.wait_serving()
        with server.client() as c:
            ids = [c.decide(f"perm-{i}", customer(i)).decision_id for i in range(20)]
            c.reward_batch(ids, [10.0] * len(ids))
            c.snapshot()
    finally:
        assert server.stop() == 0
    entries = [data_dir, *data_dir.rglob("*")]
    assert any(p.suffix == ".snap" for p in entries) and any(
        p.name.endswith("-wal") or p.name.endswith(".sqlite") for p in entries
    )
    loose = {
        str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in entries
        if stat.S_IMODE(p.stat().st_mode) & 0o077
    }
    assert not loose, f"readable or writable by others: {loose}"
