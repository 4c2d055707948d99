"""Cross-cutting concerns of every unary RPC, kept out of the servicers.

The server is a ``grpc.aio`` server: interceptors run on its event loop (cheap checks that never
block), and the servicers' Engine work runs in a bounded thread pool. The chain, outermost first
(``server_interceptors`` returns it in this order):

1. :class:`ObservabilityInterceptor` gives each call a request id (the request's ``request_id``
   field, else the ``x-request-id`` metadata, else a fresh one), returns it as ``x-request-id``
   trailing metadata, times the call, counts it by method and final status, and logs it as JSON
   (failures always, successes at debug level).
2. :class:`ErrorInterceptor` turns nbo's errors into status codes (``engine.serving.status``) with
   the error's message as details; anything else is a bug: logged with its traceback and answered
   INTERNAL with the request id, so the server keeps serving and leaks no internals.
3. :class:`engine.serving.limits.UnaryLimitInterceptor` answers RESOURCE_EXHAUSTED at once past
   ``max_concurrent_rpcs`` unary calls in progress (streams are limited apart, so open streams can
   never take the room unary calls need).
4. :class:`engine.serving.auth.AdminAuthInterceptor` and, when client credentials are configured,
   :class:`engine.serving.auth.ClientAuthInterceptor`: bearer tokens, throttled per peer.
5. :class:`MalformedRequestInterceptor` parses request bytes itself: bytes that are not a valid
   message of the method's request type are INVALID_ARGUMENT naming the type (grpcio would answer
   INTERNAL "Exception deserializing request!", which tells a client the server is at fault).
   Innermost, so a call is authenticated before its body is looked at.

:class:`engine.serving.limits.StreamGuardInterceptor` wraps the streaming methods (Health.Watch,
reflection) instead. Wrapped handlers are built once per method and cached.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from engine.errors import InvalidInputError, NboError
from engine.serving.codec import is_echoable_id
from engine.serving.logs import LOGGER_NAME, request_id_var
from engine.serving.metrics import ServerMetrics
from engine.serving.status import status_for

REQUEST_ID_KEY = "x-request-id"

_log = logging.getLogger(LOGGER_NAME)
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Behavior = Callable[[Any, Context], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class CachingInterceptor(grpc.aio.ServerInterceptor):
    """Base: builds each method's wrapped handler once (``rewrap``) and reuses it."""

    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self.rewrap(method, handler)
        if wrapped is not None:
            self._cache[method] = wrapped
            return wrapped
        return handler

    def rewrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        """The handler to use for ``method`` instead of ``handler``; None keeps ``handler``."""
        raise TypeError(f"{type(self).__name__} must define rewrap()")


class UnaryInterceptor(CachingInterceptor):
    """Base: wraps the unary-unary behaviour of each method once; other handlers pass through."""

    def rewrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        if handler.unary_unary is None or not self.applies_to(method):
            return None
        return handler._replace(unary_unary=self.wrap(method, handler.unary_unary))

    def applies_to(self, method: str) -> bool:
        return True

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        raise TypeError(f"{type(self).__name__} must define wrap()")


def metadata_value(context: Context, key: str) -> str | None:
    """The value of one invocation metadata key (None when absent or binary)."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


class ObservabilityInterceptor(UnaryInterceptor):
    """Request ids, latency and status metrics, and JSON access logs for every unary RPC."""

    def __init__(self, metrics: ServerMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        metrics = self._metrics
        short = method.rsplit("/", 1)[-1]
        debug = _log.isEnabledFor(logging.DEBUG)

        async def observed(request: Any, context: Context) -> Any:
            start = time.perf_counter()
            request_id = getattr(request, "request_id", "") or metadata_value(
                context, REQUEST_ID_KEY
            )
            if not request_id or not is_echoable_id(request_id):
                # Echoing it would fail the call in gRPC's metadata checks: use a fresh one (the
                # servicer then rejects the field by name).
                request_id = uuid.uuid4().hex
            token = request_id_var.set(request_id)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            metrics.in_flight.inc()
            failed = True
            try:
                response = await behavior(request, context)
                failed = False
                return response
            finally:
                seconds = time.perf_counter() - start
                metrics.in_flight.dec()
                code = context.code() if failed else None
                name = code.name if code is not None else ("UNKNOWN" if failed else "OK")
                metrics.observe_rpc(short, name, seconds)
                if failed or debug:
                    details = (context.details() or b"") if failed else b""
                    if isinstance(details, str):
                        details = details.encode()
                    _log.log(
                        logging.WARNING if name in ("INTERNAL", "UNKNOWN") else logging.INFO,
                        "rpc",
                        extra={
                            "method": method,
                            "code": name,
                            "ms": round(seconds * 1e3, 3),
                            "details": details.decode(errors="replace") if details else "",
                            "peer": context.peer(),
                        },
                    )
                request_id_var.reset(token)

        return observed


class ErrorInterceptor(UnaryInterceptor):
    """Map nbo's errors to status codes; answer INTERNAL (and log the traceback) for bugs."""

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        async def mapped(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except NboError as exc:
                code = status_for(exc) or grpc.StatusCode.INTERNAL
                await context.abort(code, str(exc))
            except grpc.aio.AbortError:
                raise  # already aborted with a deliberate status
            except Exception:
                _log.exception("unhandled error", extra={"method": method})
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"internal error; quote request id {request_id_var.get()} when reporting it",
                )

        return mapped


class MalformedRequest:
    """What a request that failed to parse becomes: it carries the error to the handler.

    ``request_id`` is empty so the observability interceptor generates one, as for any request
    without an id.
    """

    __slots__ = ("error",)
    request_id = ""

    def __init__(self, error: InvalidInputError) -> None:
        self.error = error


def _safe_deserializer(parse: Callable[[bytes], Any], type_name: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, ValueError, TypeError) as exc:
            got = f"{len(data)} bytes that do not parse ({exc})"
            return MalformedRequest(InvalidInputError("request", f"a serialized {type_name}", got))

    return deserialize


class MalformedRequestInterceptor(CachingInterceptor):
    """Answer INVALID_ARGUMENT for request bytes that are not the method's request message."""

    def rewrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        parse = handler.request_deserializer
        if handler.unary_unary is None or parse is None:
            return None
        # The generated stubs pass ``SomeRequest.FromString``: its class names the type.
        owner = getattr(parse, "__self__", None)
        type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request message")
        behavior = handler.unary_unary

        async def checked(request: Any, context: Context) -> Any:
            if isinstance(request, MalformedRequest):
                raise request.error
            return await behavior(request, context)

        return handler._replace(
            request_deserializer=_safe_deserializer(parse, type_name), unary_unary=checked
        )


def server_interceptors(
    metrics: ServerMetrics, *middle: grpc.aio.ServerInterceptor
) -> list[grpc.aio.ServerInterceptor]:
    """The interceptor chain of a server, outermost first: observability and error mapping, then
    ``middle`` (limits, authentication) in the order given, then request parsing."""
    return [
        ObservabilityInterceptor(metrics),
        ErrorInterceptor(),
        *middle,
        MalformedRequestInterceptor(),
    ]
