"""What bounds the resources a client can hold: calls in progress, open streams, connections.

The server is a ``grpc.aio`` server, so an open stream (Health.Watch, reflection) costs a
coroutine and an HTTP/2 stream, never a handler thread; the Engine's work runs as bounded
batches on the event loop (Decide, Reward, small DecideBatch) or in a thread pool of ``threads``
workers that only unary calls reach. Each resource has its own bound:

- unary calls in progress: ``max_concurrent_rpcs`` (:class:`UnaryLimitInterceptor`); streams do
  not count against it, so a crowd of watchers cannot shut out Decide;
- open streams: ``max_streams`` over the server (:class:`StreamGuardInterceptor`), and a
  client-streaming call that sends nothing for ``stream_idle_seconds`` is ended;
- per connection: at most :data:`MAX_STREAMS_PER_CONNECTION` concurrent HTTP/2 streams, keepalive
  pings the server sends to find dead peers, a refusal of clients that ping too often, idle
  connections closed, and every connection asked to reconnect after a maximum age (with a grace
  period for calls in progress), so no stream lives forever (:func:`channel_options`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import grpc

from engine.errors import ResourceExhaustedError
from engine.serving.interceptors import CachingInterceptor, Context, UnaryInterceptor

MAX_STREAMS_PER_CONNECTION = 256
CONNECTION_AGE_GRACE_MS = 60 * 1000  # calls in progress get this long after the GOAWAY
KEEPALIVE_MS = 60 * 1000  # the server pings an idle transport to find peers that are gone
KEEPALIVE_TIMEOUT_MS = 20 * 1000
MIN_CLIENT_PING_INTERVAL_MS = 30 * 1000  # a client pinging more often earns a strike
MAX_PING_STRIKES = 2  # then its connection is closed


def channel_options(
    max_message_bytes: int,
    connection_idle_seconds: float = 300.0,
    connection_age_seconds: float = 1800.0,
    reuse_port: bool = False,
) -> list[tuple[str, Any]]:
    """The server's channel arguments: message sizes, per-connection limits, keepalive.

    A connection with no call for ``connection_idle_seconds`` is closed; every connection gets
    a GOAWAY after ``connection_age_seconds`` (gRPC adds +-10% jitter) and reconnects.
    ``reuse_port`` lets other processes that set it too listen on the same port."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Off unless asked: a second server on the same port would start silently (gRPC sets
        # SO_REUSEPORT by default on Linux); the workers of `--workers` ask (`--reuse-port`).
        ("grpc.so_reuseport", int(reuse_port)),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        ("grpc.max_connection_idle_ms", round(connection_idle_seconds * 1000)),
        ("grpc.max_connection_age_ms", round(connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_MS),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]


class UnaryLimitInterceptor(UnaryInterceptor):
    """RESOURCE_EXHAUSTED at once past ``limit`` unary calls in progress (0 = no limit).

    Runs on the event loop, so the count needs no lock and a refused call costs no thread.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.in_progress = 0

    def applies_to(self, method: str) -> bool:
        return self.limit > 0

    def before(self, request: Any, context: Context) -> None:
        if self.in_progress >= self.limit:
            raise ResourceExhaustedError(
                f"server: expected at most {self.limit} calls in progress "
                "(--max-concurrent-rpcs), got one more; retry with backoff"
            )
        self.in_progress += 1

    def after(self) -> None:
        self.in_progress -= 1


async def _idle_bounded(
    requests: AsyncIterator[Any], seconds: float, context: Context
) -> AsyncIterator[Any]:
    iterator = aiter(requests)
    while True:
        try:
            message = await asyncio.wait_for(anext(iterator), seconds)
        except StopAsyncIteration:
            return
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"stream: no request for {seconds:g} s; open a new stream when needed",
            )
        yield message


class StreamGuardInterceptor(CachingInterceptor):
    """Bound the streaming calls: ``max_streams`` open at once over the server (more get
    RESOURCE_EXHAUSTED at once), and client streams that stay silent for ``idle_seconds`` end."""

    def __init__(self, max_streams: int, idle_seconds: float) -> None:
        super().__init__()
        self.max_streams = max_streams
        self.idle_seconds = idle_seconds
        self.open_streams = 0

    def rewrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        if handler.unary_unary is not None:
            return None
        kind = (
            "unary_stream"
            if handler.unary_stream is not None
            else ("stream_stream" if handler.stream_stream is not None else "stream_unary")
        )
        return handler._replace(**{kind: self._guard(getattr(handler, kind), kind)})

    async def _enter(self, context: Context) -> None:
        if self.open_streams >= self.max_streams:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server: expected at most {self.max_streams} open streams (max_streams), "
                "got one more; retry later",
            )
        self.open_streams += 1

    def _guard(self, behavior: Any, kind: str) -> Any:
        client_streams = kind.startswith("stream_")
        idle = self.idle_seconds

        def requests_of(request: Any, context: Context) -> Any:
            return _idle_bounded(request, idle, context) if client_streams else request

        if inspect.isasyncgenfunction(behavior):

            async def guarded_generator(request: Any, context: Context) -> AsyncIterator[Any]:
                await self._enter(context)
                try:
                    async for response in behavior(requests_of(request, context), context):
                        yield response
                finally:
                    self.open_streams -= 1

            return guarded_generator

        async def guarded(request: Any, context: Context) -> Any:
            await self._enter(context)
            try:
                return await behavior(requests_of(request, context), context)
            finally:
                self.open_streams -= 1

        return guarded
