"""The interceptor chain on a real gRPC server: a bug becomes INTERNAL with a request id, never a
crash, and the server keeps answering."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from engine.errors import NotFoundError
from engine.serving.auth import AdminAuthInterceptor, PeerThrottle
from engine.serving.interceptors import server_interceptors
from engine.serving.metrics import ServerMetrics


async def _broken(request: bytes, context: Any) -> bytes:
    if request == b"bug":
        raise ZeroDivisionError("secret internals")
    if request == b"missing":
        raise NotFoundError("decision_id: expected a known decision, got 'x'")
    return request


async def _serve(metrics: ServerMetrics, ready: threading.Event, box: list[Any]) -> None:
    chain = server_interceptors(metrics, AdminAuthInterceptor("t", PeerThrottle()))
    server = grpc.aio.server(interceptors=chain)
    handler = grpc.unary_unary_rpc_method_handler(_broken)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler("nbo.v1.OfferService", {"Echo": handler}),
            grpc.method_handlers_generic_handler("nbo.v1.AdminService", {"Echo": handler}),
        )
    )
    box.append(server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    stop = asyncio.Event()
    box.append((asyncio.get_running_loop(), stop))
    ready.set()
    await stop.wait()
    await server.stop(None)


@pytest.fixture()
def channel() -> Iterator[tuple[grpc.Channel, ServerMetrics]]:
    metrics = ServerMetrics()
    ready = threading.Event()
    box: list[Any] = []
    thread = threading.Thread(target=asyncio.run, args=(_serve(metrics, ready, box),))
    thread.start()
    assert ready.wait(30)
    port, (loop, stop) = box
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch, metrics
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)


def test_a_bug_is_internal_with_the_request_id_and_leaks_nothing(
    channel: tuple[grpc.Channel, ServerMetrics],
) -> None:
    ch, metrics = channel
    echo = ch.unary_unary("/nbo.v1.OfferService/Echo")
    with pytest.raises(grpc.RpcError) as err:
        echo(b"bug", metadata=(("x-request-id", "bug-42"),), timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == "internal error; quote request id bug-42 when reporting it"
    assert "secret" not in err.value.details()
    assert echo(b"fine", timeout=5) == b"fine"
    assert metrics.value("nbo_rpc_total", method="Echo", code="INTERNAL") == 1.0
    assert metrics.value("nbo_rpc_total", method="Echo", code="OK") == 1.0


def test_nbo_errors_map_to_their_status(channel: tuple[grpc.Channel, ServerMetrics]) -> None:
    ch, _ = channel
    with pytest.raises(grpc.RpcError) as err:
        ch.unary_unary("/nbo.v1.OfferService/Echo")(b"missing", timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "decision_id: expected a known decision, got 'x'"


def test_only_admin_methods_need_the_token(channel: tuple[grpc.Channel, ServerMetrics]) -> None:
    ch, _ = channel
    admin = ch.unary_unary("/nbo.v1.AdminService/Echo")
    with pytest.raises(grpc.RpcError) as err:
        admin(b"hi", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert admin(b"hi", metadata=(("authorization", "Bearer t"),), timeout=5) == b"hi"
    assert ch.unary_unary("/nbo.v1.OfferService/Echo")(b"hi", timeout=5) == b"hi"
