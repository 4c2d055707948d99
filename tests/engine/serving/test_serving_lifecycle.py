"""Start-up (NOT_SERVING until loaded), graceful shutdown keeping every acknowledged event, TLS,
and `nbo serve` as a process stopped by SIGTERM, answered by a client built only from the .proto."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest

from engine.client import NboClient
from engine.serving.server import create_server
from testkit.harness import ServeProcess
from testkit.tls import self_signed
from tests.engine.serving.support import RENEWAL, REPO, TOKEN, customer, serve_config


def test_not_serving_until_campaigns_are_loaded(tmp_path: Path) -> None:
    from engine.core import Engine

    release = threading.Event()

    def slow_open(config_path: Path, data_dir: Path) -> Engine:
        assert release.wait(30)
        return Engine.from_config(config_path, data_dir=data_dir)

    server, port = create_server(serve_config(tmp_path), open_engine=slow_open)
    starter = threading.Thread(target=server.start)
    starter.start()
    try:
        with NboClient(f"127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    status = client.health()
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            assert status == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as err:
                client.decide("early", customer(0))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert err.value.details() == (
                "campaign: the server is loading its campaigns; retry shortly"
            )
            release.set()
            starter.join(60)
            assert client.health() == "SERVING"
            assert client.decide("on-time", customer(0)).decision_id
    finally:
        release.set()
        starter.join(60)
        server.stop(grace=1)


def test_graceful_stop_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    server, port = create_server(serve_config(tmp_path))
    server.start()
    acknowledged: list[tuple[str, bool]] = []
    refused: list[grpc.StatusCode] = []
    stop_load = threading.Event()

    def load() -> None:
        with NboClient(f"127.0.0.1:{port}", timeout=10) as c:
            i = 0
            while not stop_load.is_set():
                try:
                    d = c.decide(f"drain-{i}", customer(i % 50))
                    acknowledged.append((d.decision_id, False))
                    if i % 2 == 0:
                        c.reward(d.decision_id, 100.0)
                        acknowledged.append((d.decision_id, True))
                except grpc.RpcError as exc:
                    refused.append(exc.code())
                    return
                i += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    # stop under load once enough is acknowledged (a count, not a time: the machine may be busy)
    deadline = time.monotonic() + 60
    while sum(not was for _, was in acknowledged) <= 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.stop(grace=5)
    stop_load.set()
    for w in workers:
        w.join(30)
    decided = {d for d, rewarded in acknowledged if not rewarded}
    rewarded = {d for d, was in acknowledged if was}
    assert len(decided) > 20 and rewarded
    # Calls arriving after the stop are refused (UNAVAILABLE, or CANCELLED when they reached the
    # server before it stopped accepting but were never started); nothing else failed.
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, refused

    # A new server on the same data directory knows every acknowledged decision: unrewarded ones
    # take their first reward now, rewarded ones are recognized as retries.
    again, port = create_server(serve_config(tmp_path))
    again.start()
    try:
        with NboClient(f"127.0.0.1:{port}", admin_token=TOKEN) as c:
            for decision_id in decided:
                assert c.reward(decision_id, 1.0) == (decision_id not in rewarded)
    finally:
        again.stop(grace=1)


def test_tls_serves_verified_clients_only(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    server, port = create_server(serve_config(tmp_path / "data", tls_cert=cert, tls_key=key))
    server.start()
    try:
        with NboClient(f"localhost:{port}", tls_ca=cert, admin_token=TOKEN) as secure:
            assert secure.health() == "SERVING"
            assert secure.decide("tls-1", customer(1)).decision_id
            assert secure.model_info().campaign == "renewal"
        with NboClient(f"127.0.0.1:{port}", timeout=2) as plaintext:
            with pytest.raises(grpc.RpcError) as err:
                plaintext.decide("tls-2", customer(1))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=1)


PROTO_ONLY_CLIENT = textwrap.dedent(
    """
    # A client that knows nothing of nbo's Python code: stubs compiled from the .proto alone.
    import sys, tempfile
    from grpc_tools import protoc
    out = tempfile.mkdtemp()
    assert protoc.main(["protoc", "-I" + sys.argv[1], "--python_out=" + out,
                        "--grpc_python_out=" + out, "nbo/v1/offers.proto"]) == 0
    sys.path.insert(0, out)
    import grpc
    from nbo.v1 import offers_pb2 as pb, offers_pb2_grpc as rpc
    with grpc.insecure_channel(sys.argv[2]) as channel:
        stub = rpc.OfferServiceStub(channel)
        ctx = pb.Context(numeric={"tenure_months": 30, "monthly_price": 55.0},
                         categorical={"plan": "standard"})
        d = stub.Decide(pb.DecideRequest(customer_id="proto-only", context=ctx), timeout=10)
        r = stub.Reward(pb.RewardRequest(decision_id=d.decision_id, value=600.0), timeout=10)
        print(d.offer_id, d.propensity, r.applied)
    """
)


def test_nbo_serve_process_answers_a_proto_only_client_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    server = ServeProcess(RENEWAL, tmp_path / "data", log_level=None)
    try:
        with server.client() as c:
            c.wait_until_serving(60)
            done = subprocess.run(
                [sys.executable, "-c", PROTO_ONLY_CLIENT, str(REPO / "proto"), server.target],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            offer_id, propensity, applied = done.stdout.split()
            assert offer_id in c.model_info().offer_ids
            assert 0 < float(propensity) <= 1 and applied == "True"
        assert server.stop() == 0  # SIGTERM
        logs = server.stderr()
        assert '"msg":"signal received"' in logs and '"signal":"SIGTERM"' in logs
        assert '"msg":"snapshot written"' in logs and '"msg":"stopped"' in logs
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
