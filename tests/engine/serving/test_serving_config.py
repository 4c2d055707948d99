"""Server settings (flags, [server] TOML table, environment), overload protection, JSON logs."""

from __future__ import annotations

import io
import json
import logging
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from engine.cli import build_parser
from engine.client import NboClient
from engine.errors import ConfigError
from engine.serving.cli import config_from_args
from engine.serving.config import ServeConfig, read_server_table
from engine.serving.logs import configure_logging
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from engine.serving.server import create_server
from testkit.traffic import dense_request
from tests.engine.serving.support import RENEWAL, customer, serve_config


def _args(*argv: str) -> ServeConfig:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_flags_win_over_the_server_table_and_env_supplies_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "server.toml"
    table.write_text(
        '[server]\nport = 6000\nthreads = 3\nmetrics_port = 9100\ncampaigns = ["a.toml"]\n'
    )
    monkeypatch.setenv("NBO_ADMIN_TOKEN", "from-env")
    cfg = _args("--server-config", str(table), "--port", "7000", "--config", str(RENEWAL))
    assert (cfg.port, cfg.threads, cfg.metrics_port) == (7000, 3, 9100)
    assert cfg.campaigns == (RENEWAL,)
    assert cfg.admin_token == "from-env"
    assert _args("--admin-token", "flag").admin_token == "flag"


def test_credential_flags_env_and_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBO_CLIENT_TOKEN", "env-a, renewal=env-b")
    assert _args().client_tokens == ("env-a", "renewal=env-b")
    cfg = _args(
        "--client-token",
        "one",
        "--client-token",
        "renewal=two",
        "--insecure-admin",
        "--auth-failure-limit",
        "3",
        "--max-streams",
        "50",
    )
    assert cfg.client_tokens == ("one", "renewal=two")  # flags win over the environment
    assert (cfg.insecure_admin, cfg.auth_failure_limit, cfg.max_streams) == (True, 3, 50)
    table = tmp_path / "server.toml"
    table.write_text(
        '[server]\nclient_tokens = ["t"]\ntls_client_ca = "ca.pem"\n'
        'tls_cert = "c.pem"\ntls_key = "k.pem"\n'
    )
    cfg = _args("--server-config", str(table))
    assert cfg.client_tokens == ("t",) and cfg.tls_client_ca == Path("ca.pem")
    assert cfg.client_auth_enabled


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"client_tokens": ("renewal=",)}, "client_tokens: expected TOKEN or CAMPAIGN=TOKEN"),
        ({"client_tokens": ("",)}, "client_tokens: expected TOKEN or CAMPAIGN=TOKEN"),
        ({"tls_client_ca": Path("ca.pem")}, "tls_client_ca: expected tls_cert and tls_key too"),
        ({"max_streams": 0}, "max_streams: expected an integer >= 1, got 0"),
        ({"auth_failure_limit": 0}, "auth_failure_limit: expected an integer >= 1, got 0"),
    ],
)
def test_bad_credential_settings_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^" + message.replace("(", r"\(")):
        ServeConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 1", "expected a [server] table, got keys ['port']"),
        ("[server]\nprot = 1", "[server].prot: expected one of ["),
        ("[server\n", "expected a TOML file, got a parse error"),
    ],
)
def test_bad_server_tables_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^" + str(path).replace(".", r"\.")) as err:
        read_server_table(path)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 70000}, "port: expected an integer port in [0, 65535], got 70000"),
        ({"threads": 0}, "threads: expected an integer >= 1, got 0"),
        ({"max_concurrent_rpcs": -1}, "max_concurrent_rpcs: expected an integer >= 0, got -1"),
        ({"grace_seconds": -1.0}, "grace_seconds: expected a number >= 0, got -1.0"),
        (
            {"tls_key": Path("k.pem")},
            "tls_cert and tls_key: expected both paths or neither, got only tls_key",
        ),
        (
            {"log_level": "loud"},
            "log_level: expected one of ['debug', 'info', 'warning', 'error'], got 'loud'",
        ),
        ({"admin_token": " "}, "admin_token: expected a non-empty token, got an empty string"),
    ],
)
def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ServeConfig(**kwargs)
    assert str(err.value) == message


def test_unreadable_tls_files_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(
        ConfigError, match=r"^tls_key: expected a readable PEM file, got '.*nope\.pem'"
    ):
        create_server(serve_config(tmp_path, tls_cert=missing, tls_key=missing))


def test_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    first, port = create_server(serve_config(tmp_path / "a"))
    try:
        with pytest.raises(
            ConfigError, match=rf"^port: expected a free port to listen on, got 127\.0\.0\.1:{port}"
        ):
            create_server(serve_config(tmp_path / "b", port=port))
    finally:
        first.stop(grace=0)


def test_overload_is_resource_exhausted_and_the_server_keeps_serving(tmp_path: Path) -> None:
    server, port = create_server(serve_config(tmp_path, max_concurrent_rpcs=1, threads=4))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.OfferServiceStub(channel)
            calls = [
                stub.DecideBatch.future(dense_request(500, seed), timeout=30) for seed in range(12)
            ]
            codes = []
            for call in calls:
                try:
                    call.result()
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
                    assert exc.details() == (
                        "server: expected at most 1 calls in progress (--max-concurrent-rpcs), "
                        "got one more; retry with backoff"
                    )
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        with NboClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(10)  # the slot of the last finished call frees a beat later
            assert client.decide("after-overload", customer(1)).decision_id
    finally:
        server.stop(grace=1)


def test_failed_calls_are_logged_as_json_with_their_request_id(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        server, port = create_server(serve_config(tmp_path))
        server.start()
        try:
            with NboClient(f"127.0.0.1:{port}") as client:
                with pytest.raises(grpc.RpcError):
                    client.decide("", customer(0), request_id="trace-for-log")
                d = client.decide("logged", customer(0))
                client.reward(d.decision_id, 120.0, {"revenue": 130.0, "support": -10.0})
        finally:
            server.stop(grace=1)
    finally:
        logging.getLogger("nbo").handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (failure,) = [line for line in lines if line.get("request_id") == "trace-for-log"]
    assert failure["msg"] == "rpc" and failure["code"] == "INVALID_ARGUMENT"
    assert failure["method"] == "/nbo.v1.OfferService/Decide"
    assert failure["details"] == "customer_id: expected a non-empty string, got an empty string"
    assert {"serving", "shutting down", "stopped"} <= {line["msg"] for line in lines}
    (components,) = [line for line in lines if line["msg"] == "reward components"]
    assert components["decision_id"] == d.decision_id and components["value"] == 120.0
    assert components["components"] == {"revenue": 130.0, "support": -10.0}
    assert components["status"] == "applied" and components["request_id"]


def test_many_threads_share_one_client(tmp_path: Path) -> None:
    server, port = create_server(serve_config(tmp_path))
    server.start()
    try:
        with NboClient(f"127.0.0.1:{port}") as client, futures.ThreadPoolExecutor(16) as pool:
            decisions = list(
                pool.map(lambda i: client.decide(f"mt-{i}", customer(i % 40)), range(200))
            )
            assert len({d.decision_id for d in decisions}) == 200
            applied = list(pool.map(lambda d: client.reward(d.decision_id, 5.0), decisions))
            assert all(applied)
    finally:
        server.stop(grace=1)


def test_one_server_hosts_several_campaigns(tmp_path: Path) -> None:
    second = tmp_path / "renewal_b.toml"
    second.write_text(RENEWAL.read_text().replace('name = "renewal"', 'name = "renewal_b"', 1))
    server, port = create_server(serve_config(tmp_path / "data", campaigns=(RENEWAL, second)))
    server.start()
    try:
        with NboClient(f"127.0.0.1:{port}") as client:
            d = client.decide("multi-1", customer(1), campaign="renewal_b")
            assert d.campaign == "renewal_b"
            assert client.reward(d.decision_id, 10.0, campaign="renewal_b")
            with pytest.raises(grpc.RpcError) as err:
                client.reward(d.decision_id, 10.0, campaign="renewal")  # another campaign's id
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as err:
                client.decide("multi-2", customer(2))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details() == (
                "campaign: expected one of ['renewal', 'renewal_b'] (this server hosts several), "
                "got none"
            )
    finally:
        server.stop(grace=1)
    assert sorted(p.name for p in (tmp_path / "data").glob("*.journal.sqlite")) == [
        "renewal.journal.sqlite",
        "renewal_b.journal.sqlite",
    ]


def test_two_configs_of_one_campaign_are_refused(tmp_path: Path) -> None:
    server, _ = create_server(serve_config(tmp_path, campaigns=(RENEWAL, RENEWAL)))
    with pytest.raises(
        ConfigError, match=r"^campaigns: expected distinct campaign names, got 'renewal' twice"
    ):
        server.start()
