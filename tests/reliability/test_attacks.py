"""Attacks on a real server (port 0, loopback) and what they now get: forged rewards refused and
changing nothing, AdminService shut without a token, token guessing throttled per peer, streams
that cannot starve Decide or Health.Check, and a metrics port that serves two paths only."""

from __future__ import annotations

import gc
import io
import json
import os
import socket
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from engine.client import NboClient
from engine.errors import InvalidInputError
from engine.serving.auth import PeerThrottle
from engine.serving.config import ServeConfig
from engine.serving.logs import configure_logging
from engine.serving.metrics import MAX_HTTP_CONNECTIONS
from engine.serving.server import create_server
from testkit.tls import client_certificate, self_signed
from tests.engine.serving.support import RENEWAL, TOKEN, customer, free_port, serve_config
from tests.reliability.conftest import CLIENT_TOKEN

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
Code = grpc.StatusCode


def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def test_a_forged_reward_is_refused_and_the_real_one_still_applies(started: Any) -> None:
    server = started(client_tokens=(CLIENT_TOKEN,))
    target = f"127.0.0.1:{server.port}"
    with NboClient(target, client_token=CLIENT_TOKEN, admin_token=TOKEN) as backend:
        d = backend.decide("victim", customer(1))
        before = backend.model_info()
        for token, expected in ((None, Code.UNAUTHENTICATED), ("guess", Code.PERMISSION_DENIED)):
            with NboClient(target, client_token=token) as attacker:
                assert _code(lambda a=attacker: a.reward(d.decision_id, 1e6)) == expected
                assert _code(lambda a=attacker: a.reward_batch([d.decision_id], [1e6])) == expected
                assert _code(lambda a=attacker: a.decide("forged", customer(2))) == expected
                # Health and reflection stay open to anyone.
                assert attacker.health() == "SERVING"
                assert _reflection_lists_services(attacker._channel)
        after = backend.model_info()
        assert (after.decisions, after.rewards, after.pending_decisions) == (
            before.decisions,
            before.rewards,
            before.pending_decisions,
        )
        assert backend.reward(d.decision_id, 42.0) is True  # APPLIED: the decision was pending


def test_a_campaign_token_opens_its_campaign_only(started: Any, tmp_path: Path) -> None:
    second = tmp_path / "renewal_b.toml"
    second.write_text(RENEWAL.read_text().replace('name = "renewal"', 'name = "renewal_b"', 1))
    server = started(campaigns=(RENEWAL, second), client_tokens=("renewal=only-renewal",))
    with NboClient(f"127.0.0.1:{server.port}", client_token="only-renewal") as c:
        assert c.decide("scoped", customer(1), campaign="renewal").campaign == "renewal"
        with pytest.raises(grpc.RpcError) as err:
            c.decide("scoped", customer(1), campaign="renewal_b")
        assert err.value.code() == Code.PERMISSION_DENIED
        assert err.value.details() == (
            "authorization: expected a token valid for campaign 'renewal_b', got one valid for "
            "other campaigns"
        )


def test_a_token_for_a_campaign_not_hosted_is_refused_at_start(tmp_path: Path) -> None:
    server, _ = create_server(serve_config(tmp_path, client_tokens=("abc==",)))
    with pytest.raises(ValueError, match=r"got campaign 'abc'"):
        server.start()


def test_mutual_tls_lets_in_certified_clients_only(started: Any, tmp_path: Path) -> None:
    server_cert, server_key = self_signed(tmp_path, "server")
    ca, cert, key = client_certificate(tmp_path, "client")
    _, other_cert, other_key = client_certificate(tmp_path, "intruder")
    server = started(tls_cert=server_cert, tls_key=server_key, tls_client_ca=ca)
    target = f"localhost:{server.port}"
    with NboClient(target, tls_ca=server_cert, tls_client_cert=cert, tls_client_key=key) as ok:
        assert ok.decide("mtls", customer(1)).decision_id
    wrong_ca: dict[str, Any] = {"tls_client_cert": other_cert, "tls_client_key": other_key}
    for extra in ({}, wrong_ca):
        with NboClient(target, tls_ca=server_cert, timeout=3, **extra) as refused:
            assert _code(lambda r=refused: r.decide("mtls-no", customer(1))) == Code.UNAVAILABLE


def test_admin_is_shut_without_a_token_and_open_only_when_insecure(started: Any) -> None:
    log = io.StringIO()
    configure_logging("info", log)
    try:
        shut = started(admin_token=None)
        insecure = started(admin_token=None, insecure_admin=True)
    finally:
        configure_logging("info")
    with NboClient(f"127.0.0.1:{shut.port}", admin_token="anything") as c:
        with pytest.raises(grpc.RpcError) as err:
            c.snapshot()
        assert err.value.code() == Code.PERMISSION_DENIED
        assert "--admin-token" in (err.value.details() or "")
        assert c.decide("still-serving", customer(0)).decision_id
    with NboClient(f"127.0.0.1:{insecure.port}") as c:
        assert c.model_info().campaign == "renewal"
    warnings = [
        json.loads(line)["msg"]
        for line in log.getvalue().splitlines()
        if json.loads(line)["level"] == "warning"
    ]
    assert sum(m.startswith("OfferService is open") for m in warnings) == 2  # one per server
    assert sum(m.startswith("AdminService is open") for m in warnings) == 1


def test_token_guessing_is_throttled_per_peer_and_costs_the_server_nothing(started: Any) -> None:
    server = started(client_tokens=(CLIENT_TOKEN,), auth_failure_limit=3)
    target = f"127.0.0.1:{server.port}"
    with NboClient(target, client_token="guess", admin_token="guess", timeout=5) as attacker:
        codes = [_code(lambda: attacker.decide("g", customer(0))) for _ in range(3)]
        assert codes == [Code.PERMISSION_DENIED] * 3
        started_at = time.perf_counter()
        refused = [_code(lambda: attacker.snapshot()) for _ in range(20)]
        assert refused == [Code.RESOURCE_EXHAUSTED] * 20
        assert time.perf_counter() - started_at < 2.0  # refused at once, no handler blocked
    # While the window lasts even the right token is refused (guessing gets no answer) ...
    with NboClient(target, client_token=CLIENT_TOKEN, timeout=5) as backend:
        assert _code(lambda: backend.decide("locked", customer(0))) == Code.RESOURCE_EXHAUSTED
        assert backend.health() == "SERVING"
        # ... and once it has passed the right token works again.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert backend.decide("after-window", customer(0)).decision_id
                break
            except grpc.RpcError as exc:
                assert exc.code() == Code.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.2)


def test_the_throttle_table_stays_bounded() -> None:
    throttle = PeerThrottle(limit=1, max_peers=100)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    assert throttle.retry_after("10.0.39.15") > 0 and throttle.retry_after("10.0.0.0") == 0


def _reflection_lists_services(channel: grpc.Channel) -> list[str]:
    call = channel.stream_stream(
        REFLECTION,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    responses = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    return [s.name for r in responses for s in r.list_services_response.service]


def _silence(release: threading.Event) -> Iterator[bytes]:
    """A request stream that sends nothing until ``release`` is set."""
    release.wait(120)
    yield from ()


class _Streams:
    """Idle reflection streams and Health.Watch streams held open over several connections (each
    connection takes at most 256 streams)."""

    def __init__(self, target: str, reflection: int, watches: int, connections: int = 8) -> None:
        own_connection = [("grpc.use_local_subchannel_pool", 1)]
        self.channels = [
            grpc.insecure_channel(target, options=own_connection) for _ in range(connections)
        ]
        self.release = threading.Event()
        self.calls: list[Any] = []
        for i in range(reflection):
            call = self.channels[i % connections].stream_stream(REFLECTION)
            self.calls.append(call(_silence(self.release), timeout=120))
        for i in range(watches):
            stub = health_pb2_grpc.HealthStub(self.channels[i % connections])
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)
            self.calls.append(watch)

    def close(self) -> None:
        self.release.set()
        for call in self.calls:
            call.cancel()
        for channel in self.channels:
            channel.close()


def _p99_ms(call: Any, n: int) -> float:
    seconds = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - t0)
    return float(np.percentile(seconds, 99) * 1e3)


def test_open_streams_cannot_starve_decide_or_health_check(started: Any) -> None:
    server = started(threads=8)
    target = f"127.0.0.1:{server.port}"
    streams = _Streams(target, reflection=64, watches=300)
    try:
        watches = [c for c in streams.calls if hasattr(c, "__next__")][-300:]
        for watch in watches[::30]:  # each Watch answers: they are open, and served
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        with NboClient(target, timeout=5) as c:
            c.decide("warm", customer(0))
            decide_p99 = _p99_ms(lambda i: c.decide(f"starve-{i}", customer(i % 50)), 200)
            health_p99 = _p99_ms(lambda i: c.health(), 200)
        print(
            f"with 64 reflection + 300 Watch streams: Decide p99 {decide_p99:.1f} ms, "
            f"Health.Check p99 {health_p99:.1f} ms"
        )
        assert decide_p99 < 100 and health_p99 < 100
        assert all(not c.done() for c in streams.calls)  # every stream still held open
    finally:
        streams.close()


def test_streams_past_the_limit_are_refused_and_silent_ones_end(started: Any) -> None:
    server = started(max_streams=5, stream_idle_seconds=0.5)
    target = f"127.0.0.1:{server.port}"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        held = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(5)]
        assert all(next(w).status == health_pb2.HealthCheckResponse.SERVING for w in held)
        with pytest.raises(grpc.RpcError) as err:
            next(stub.Watch(health_pb2.HealthCheckRequest(), timeout=30))
        assert err.value.code() == Code.RESOURCE_EXHAUSTED
        with NboClient(target) as c:
            assert c.decide("past-limit", customer(0)).decision_id
        for w in held:
            w.cancel()
        time.sleep(0.2)
        release = threading.Event()
        silent = channel.stream_stream(REFLECTION)(_silence(release), timeout=30)
        try:
            with pytest.raises(grpc.RpcError) as err:
                next(silent)
        finally:
            release.set()
        assert err.value.code() == Code.DEADLINE_EXCEEDED
        assert "no request for 0.5 s" in (err.value.details() or "")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_metrics_port_serves_metrics_and_health_only(started: Any) -> None:
    server = started(metrics_port=free_port())
    base = f"http://127.0.0.1:{server.metrics_port}"
    status, body = _get(f"{base}/metrics")
    assert status == 200 and b"nbo_rpc_in_flight" in body
    assert _get(f"{base}/healthz") == (200, b"ok\n")
    for path in ("/", "/favicon.ico", "/metrics/x", "/../etc/passwd", "/healthz/..", "/admin"):
        assert _get(base + path)[0] == 404, path


def test_idle_metrics_connections_cannot_pile_up_threads(started: Any) -> None:
    server = started(metrics_port=free_port())
    address = ("127.0.0.1", server.metrics_port)
    threads = threading.active_count()
    idle = [socket.create_connection(address, timeout=5) for _ in range(100)]  # send nothing
    try:
        time.sleep(0.3)
        assert threading.active_count() - threads <= MAX_HTTP_CONNECTIONS
        # Past the limit a connection is answered at once, without a thread.
        assert _get(f"http://127.0.0.1:{server.metrics_port}/metrics")[0] == 503
        refused = idle[-1].recv(1024)
        assert refused.startswith(b"HTTP/1.1 503") and b"too many metrics connections" in refused
    finally:
        for connection in idle:
            connection.close()
    deadline = time.monotonic() + 5  # closed connections give their threads back
    while _get(f"http://127.0.0.1:{server.metrics_port}/metrics")[0] != 200:
        assert time.monotonic() < deadline, "the metrics port did not recover"
        time.sleep(0.05)
    # a closed connection's thread ends once it sees the close: poll, a busy machine is slower
    while threading.active_count() - threads > 1 and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    assert threading.active_count() - threads <= 1


def test_defaults_listen_on_loopback_with_bounded_messages() -> None:
    defaults = ServeConfig()
    assert (defaults.host, defaults.metrics_host) == ("127.0.0.1", "127.0.0.1")
    assert defaults.max_message_bytes == 4 * 1024 * 1024 and defaults.max_streams == 1000
    assert "s3cret" not in repr(ServeConfig(admin_token="s3cret", client_tokens=("s3cret",)))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_huge_names_and_values_are_refused_before_the_engine_and_cost_no_memory(
    started: Any,
) -> None:
    log = io.StringIO()
    configure_logging("info", log)
    try:
        # The whole 4 MiB default message room, so only the codec's limits can refuse them.
        server = started(max_message_bytes=4 * 1024 * 1024)
        megabyte = "k" * (1 << 20)
        attacks = {
            "a 1 MB attribute name": {**customer(0), megabyte: 1.0},
            "a 1 MB category value": {**customer(0), "plan": megabyte},
            "10,000 attributes": {**customer(0), **{f"a{i}": 1.0 for i in range(10_000)}},
        }
        with NboClient(f"127.0.0.1:{server.port}", admin_token=TOKEN, timeout=30) as c:
            before_info = c.model_info()
            for what, context in attacks.items():
                with pytest.raises(InvalidInputError) as err:
                    c.decide("attacker", context)
                assert err.value.code() == Code.INVALID_ARGUMENT, what
                assert len(err.value.details()) < 200, err.value.details()  # echoed and logged
            # Distinct 1 MB names: anything that kept or logged a name per call (the encoder
            # counts undeclared names) would keep 40 MB. What the interpreter holds is counted
            # exactly (tracemalloc); RSS also moves with gRPC's allocator, so it is reported.
            gc.collect()
            tracemalloc.start()
            rss, (held, _) = _rss_bytes(), tracemalloc.get_traced_memory()
            for i in range(40):
                with pytest.raises(InvalidInputError):
                    c.decide(f"a-{i}", {**customer(i), f"{i}{megabyte}": 1.0, "plan": megabyte})
            gc.collect()
            kept = tracemalloc.get_traced_memory()[0] - held
            tracemalloc.stop()
            grown = _rss_bytes() - rss
            assert c.model_info().decisions == before_info.decisions  # none reached the Engine
            assert c.decide("honest", customer(1)).decision_id
    finally:
        configure_logging("info")
    assert kept < 8 * 1024 * 1024, f"{kept / 1e6:.1f} MB kept after 40 refused 2 MB calls"
    assert len(log.getvalue()) < 43 * 1000, len(log.getvalue())  # < 1 kB per refused call
    print(f"\n40 refused 2 MB Decide calls: {kept / 1e6:.2f} MB kept, RSS {grown / 1e6:+.0f} MB")


def test_retried_rewards_with_many_components_do_not_grow_the_log(started: Any) -> None:
    log = io.StringIO()
    configure_logging("info", log)
    try:
        server = started()
        components = {f"{i:03d}" + "c" * 125: float(i) for i in range(32)}  # the largest allowed
        with NboClient(f"127.0.0.1:{server.port}", timeout=10) as c:
            decision_id = c.decide("rewarded", customer(0)).decision_id
            assert c.reward(decision_id, 1.0, components)  # applied: logged once, bounded
            applied = len(log.getvalue())
            for _ in range(100):  # a retrying (or hostile) client
                assert not c.reward(decision_id, 1.0, components)
            duplicates = len(log.getvalue()) - applied
            too_many = {f"c{i}": 1.0 for i in range(10_000)}
            for _ in range(20):
                with pytest.raises(InvalidInputError) as err:
                    c.reward(decision_id, 1.0, too_many)
                assert err.value.details() == (
                    "components: expected at most 32 components, got 10000 components"
                )
            refused = len(log.getvalue()) - applied - duplicates
    finally:
        configure_logging("info")
    line = next(json.loads(x) for x in log.getvalue().splitlines() if "reward components" in x)
    assert line["components"] == components and line["status"] == "applied"
    assert applied < 64 * 1024, applied
    assert duplicates == 0, log.getvalue()[applied:][:500]  # retries log nothing
    assert refused / 20 < 600, refused  # one short "rpc" line per refused call
    print(
        f"\nlog bytes: {duplicates / 100:.0f} per duplicate reward, {refused / 20:.0f} per refused"
    )
