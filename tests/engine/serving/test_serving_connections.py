"""The model directory a server reads promotions from (``--model-dir``), and the per-connection
limits of issue 12: an idle connection is closed, an old one is asked to reconnect."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from engine.cliargs import parse_command
from engine.client import NboClient
from engine.serving.cli import config_from_args, register
from engine.serving.server import create_server
from tests.engine.serving.support import TOKEN, customer, serve_config
from tests.engine.serving.test_serving_models import trained


def test_promotions_come_from_the_model_dir_given(tmp_path: Path) -> None:
    elsewhere = tmp_path / "models-elsewhere"
    server, port = create_server(serve_config(tmp_path / "data", model_dir=elsewhere))
    server.start()
    try:
        with NboClient(f"127.0.0.1:{port}", admin_token=TOKEN) as client:
            client.wait_until_serving()
            # A file in the data dir's default model directory is not where this server reads.
            default = tmp_path / "data" / "models" / "renewal"
            default.mkdir(parents=True, exist_ok=True)
            trained(client, default / "offline.snap")
            with pytest.raises(grpc.RpcError) as err:
                client.promote("offline.snap")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            # The campaign's folder of --model-dir is created owner-only and read.
            folder = elsewhere / "renewal"
            assert folder.is_dir() and folder.stat().st_mode & 0o077 == 0
            trained(client, folder / "offline.snap")
            change = client.promote_model(
                "offline.snap", force=True
            )  # a fresh journal: no evidence
            assert change.model.kind == "promoted" and client.model_info().kind == "promoted"
    finally:
        server.stop(grace=1)


def test_model_dir_flag_and_server_table(tmp_path: Path) -> None:
    args = parse_command(register, ["serve", "--config", "x.toml", "--model-dir", str(tmp_path)])
    assert config_from_args(args).model_dir == tmp_path


def _established(port: int) -> int:
    """Open TCP connections to 127.0.0.1:``port`` (the server's side, from /proc)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


@pytest.mark.parametrize(
    ("limit", "value"), [("connection_idle_seconds", 0.5), ("connection_age_seconds", 0.5)]
)
def test_the_server_closes_idle_and_old_connections(tmp_path: Path, limit: str, value: float):
    server, port = create_server(serve_config(tmp_path / "data", **{limit: value}))
    server.start()
    try:
        with NboClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving()
            client.decide("idle-1", customer(1))
            assert _established(port) >= 1
            # The client stays open and silent: the server closes (or, past the maximum age,
            # sends GOAWAY for) its connection, where gRPC's default would keep it forever.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _established(port) > 0:
                time.sleep(0.1)
            assert _established(port) == 0
            # A closed connection costs the client nothing: the next call reconnects.
            assert client.decide("idle-2", customer(2)).offer_id
    finally:
        server.stop(grace=1)


def test_connection_limits_are_checked() -> None:
    from engine.errors import ConfigError
    from engine.serving.config import ServeConfig

    for name in ("connection_idle_seconds", "connection_age_seconds"):
        with pytest.raises(ConfigError, match=f"{name}: expected a number > 0, got 0"):
            ServeConfig(**{name: 0})
