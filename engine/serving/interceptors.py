"""Cross-cutting concerns of every unary RPC, kept out of the servicers.

Four interceptors, outermost first (``server_interceptors`` returns them in this order):

1. :class:`ObservabilityInterceptor` gives each call a request id (the request's ``request_id``
   field, else the ``x-request-id`` metadata, else a fresh one), returns it as ``x-request-id``
   trailing metadata, times the call, counts it by method and final status, and logs it as JSON
   (failures always, successes at debug level).
2. :class:`ErrorInterceptor` turns nbo's errors into status codes (``engine.serving.status``) with
   the error's message as details; anything else is a bug: logged with its traceback and answered
   INTERNAL with the request id, so the server keeps serving and leaks no internals.
3. :class:`AdminAuthInterceptor` requires ``authorization: Bearer <token>`` on AdminService calls
   when a token is configured.
4. :class:`MalformedRequestInterceptor` parses request bytes itself: bytes that are not a valid
   message of the method's request type are INVALID_ARGUMENT naming the type (grpcio would answer
   INTERNAL "Exception deserializing request!", which tells a client the server is at fault).
   Innermost, so an AdminService call is authenticated before its body is looked at.

Wrapped handlers are built once per method and cached, so an RPC pays for four Python calls.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from engine.errors import InvalidInputError, NboError, PermissionDeniedError
from engine.serving.codec import is_echoable_id
from engine.serving.logs import LOGGER_NAME, request_id_var
from engine.serving.metrics import ServerMetrics
from engine.serving.status import UnauthenticatedError, status_for

ADMIN_SERVICE_PREFIX = "/nbo.v1.AdminService/"
REQUEST_ID_KEY = "x-request-id"

_log = logging.getLogger(LOGGER_NAME)
Behavior = Callable[[Any, grpc.ServicerContext], Any]


class _UnaryInterceptor(grpc.ServerInterceptor):
    """Base: wraps the unary-unary behaviour of each method once; other handlers pass through."""

    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or not self.applies_to(method):
            return handler
        wrapped = handler._replace(unary_unary=self.wrap(method, handler.unary_unary))
        self._cache[method] = wrapped
        return wrapped

    def applies_to(self, method: str) -> bool:
        return True

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        raise TypeError(f"{type(self).__name__} must define wrap()")


def _metadata_value(context: grpc.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return item.value if isinstance(item.value, str) else None
    return None


class ObservabilityInterceptor(_UnaryInterceptor):
    """Request ids, latency and status metrics, and JSON access logs for every unary RPC."""

    def __init__(self, metrics: ServerMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        metrics = self._metrics
        short = method.rsplit("/", 1)[-1]
        debug = _log.isEnabledFor(logging.DEBUG)

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            request_id = getattr(request, "request_id", "") or _metadata_value(
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
                response = behavior(request, context)
                failed = False
                return response
            finally:
                seconds = time.perf_counter() - start
                metrics.in_flight.dec()
                code = context.code() if failed else None
                name = code.name if code is not None else ("UNKNOWN" if failed else "OK")
                metrics.observe_rpc(short, name, seconds)
                if failed or debug:
                    details = context.details() if failed else b""
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


class ErrorInterceptor(_UnaryInterceptor):
    """Map nbo's errors to status codes; answer INTERNAL (and log the traceback) for bugs."""

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        def mapped(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behavior(request, context)
            except NboError as exc:
                code = status_for(exc) or grpc.StatusCode.INTERNAL
                context.abort(code, str(exc))
            except Exception:
                if context.code() is not None:
                    raise  # already aborted with a deliberate status
                _log.exception("unhandled error", extra={"method": method})
                context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"internal error; quote request id {request_id_var.get()} when reporting it",
                )

        return mapped


class AdminAuthInterceptor(_UnaryInterceptor):
    """Require the admin bearer token on AdminService calls (constant-time comparison)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._expected = f"Bearer {token}".encode()

    def applies_to(self, method: str) -> bool:
        return method.startswith(ADMIN_SERVICE_PREFIX)

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        expected = self._expected

        def authorized(request: Any, context: grpc.ServicerContext) -> Any:
            given = _metadata_value(context, "authorization")
            if not given:
                raise UnauthenticatedError(
                    "authorization: expected metadata 'authorization: Bearer <token>', got none"
                )
            if not hmac.compare_digest(given.encode(), expected):
                raise PermissionDeniedError(
                    "authorization: expected the admin bearer token, got one that does not match"
                )
            return behavior(request, context)

        return authorized


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


class MalformedRequestInterceptor(grpc.ServerInterceptor):
    """Answer INVALID_ARGUMENT for request bytes that are not the method's request message."""

    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = continuation(handler_call_details)
        parse = None if handler is None else handler.request_deserializer
        if handler is None or handler.unary_unary is None or parse is None:
            return handler
        # The generated stubs pass ``SomeRequest.FromString``: its class names the type.
        owner = getattr(parse, "__self__", None)
        type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request message")
        behavior = handler.unary_unary

        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, MalformedRequest):
                raise request.error
            return behavior(request, context)

        wrapped = handler._replace(
            request_deserializer=_safe_deserializer(parse, type_name), unary_unary=checked
        )
        self._cache[method] = wrapped
        return wrapped


def server_interceptors(
    metrics: ServerMetrics, admin_token: str | None
) -> list[grpc.ServerInterceptor]:
    """The interceptor chain of a server, outermost first."""
    chain: list[grpc.ServerInterceptor] = [ObservabilityInterceptor(metrics), ErrorInterceptor()]
    if admin_token is not None:
        chain.append(AdminAuthInterceptor(admin_token))
    chain.append(MalformedRequestInterceptor())
    return chain
