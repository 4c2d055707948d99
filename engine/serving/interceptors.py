"""Cross-cutting concerns of every unary RPC, kept out of the servicers.

The server is a ``grpc.aio`` server: interceptors run on its event loop (cheap checks that never
block). Every unary call goes through one coroutine, :class:`UnaryPipeline`, which does in this
order (outermost first):

1. observability: each call gets a request id (the request's ``request_id`` field, else the
   ``x-request-id`` metadata, else a fresh one), returned as ``x-request-id`` trailing metadata;
   the call is timed, counted by method and final status, and logged as JSON (failures always,
   successes at debug level);
2. error mapping: nbo's errors become status codes (``engine.serving.status``) with the error's
   message as details; anything else is a bug: logged with its traceback and answered INTERNAL
   with the request id, so the server keeps serving and leaks no internals;
3. the stages given to it, in order, each a :class:`UnaryInterceptor` with ``before``/``after``
   hooks: :class:`engine.serving.limits.UnaryLimitInterceptor` (RESOURCE_EXHAUSTED at once past
   ``max_concurrent_rpcs`` unary calls in progress; streams are limited apart, so open streams
   can never take the room unary calls need), then
   :class:`engine.serving.auth.AdminAuthInterceptor` and, when client credentials are
   configured, :class:`engine.serving.auth.ClientAuthInterceptor` (bearer tokens, throttled per
   peer);
4. request parsing: bytes that are not a valid message of the method's request type are
   INVALID_ARGUMENT naming the type (grpcio would answer INTERNAL "Exception deserializing
   request!", which tells a client the server is at fault). Innermost, so a call is
   authenticated before its body is looked at.

One coroutine rather than one per concern: each layer of a chain of interceptors costs a
coroutine and an await per call. Each stage is still a ``grpc.aio.ServerInterceptor`` of its
own, usable alone. :class:`engine.serving.limits.StreamGuardInterceptor` wraps the streaming
methods (Health.Watch, reflection) instead. Wrapped handlers are built once per method and
cached, and the outermost interceptor's cache answers every later call of a method at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
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
        # The handler for a method never changes, so what this interceptor returns (the rest
        # of the chain's answer, rewrapped or not) is kept: later calls skip the chain.
        wrapped = self.rewrap(method, handler)
        self._cache[method] = handler if wrapped is None else wrapped
        return self._cache[method]

    def rewrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        """The handler to use for ``method`` instead of ``handler``; None keeps ``handler``."""
        raise TypeError(f"{type(self).__name__} must define rewrap()")


class UnaryInterceptor(CachingInterceptor):
    """Base: wraps the unary-unary behaviour of each method once; other handlers pass through.

    A stage of :class:`UnaryPipeline` defines ``before`` (raise an nbo error to refuse the call)
    and, when it holds something for the call's duration, ``after``.
    """

    def rewrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        if handler.unary_unary is None or not self.applies_to(method):
            return None
        return handler._replace(unary_unary=self.wrap(method, handler.unary_unary))

    def applies_to(self, method: str) -> bool:
        return True

    def before(self, request: Any, context: Context) -> None:
        """Check a call before it runs; raise to refuse it."""

    def after(self) -> None:
        """Undo what ``before`` took, once the call has finished (only if ``before`` passed)."""

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        before, after = self.before, self.after

        async def staged(request: Any, context: Context) -> Any:
            before(request, context)
            try:
                return await behavior(request, context)
            finally:
                after()

        return staged


def metadata_value(context: Context, key: str) -> str | None:
    """The value of one invocation metadata key (None when absent or binary)."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


def new_request_id() -> str:
    """A fresh request id: 32 random hex digits."""
    return os.urandom(16).hex()


class UnaryPipeline(CachingInterceptor):
    """Observability, error mapping, ``stages`` and request parsing of every unary RPC, in one
    coroutine per call (see the module notes).

    Parameters
    ----------
    metrics : ServerMetrics
    stages : sequence of UnaryInterceptor
        Run in order between error mapping and parsing, each on the methods it ``applies_to``.
    """

    def __init__(self, metrics: ServerMetrics, stages: Sequence[UnaryInterceptor] = ()) -> None:
        super().__init__()
        self._metrics = metrics
        self._stages = tuple(stages)

    def rewrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler | None:
        if handler.unary_unary is None:
            return None
        stages = [stage for stage in self._stages if stage.applies_to(method)]
        parse = handler.request_deserializer
        if parse is not None:
            # The generated stubs pass ``SomeRequest.FromString``: its class names the type.
            owner = getattr(parse, "__self__", None)
            type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request message")
            handler = handler._replace(request_deserializer=_safe_deserializer(parse, type_name))
        return handler._replace(unary_unary=self._wrap(method, handler.unary_unary, stages))

    def _wrap(self, method: str, behavior: Behavior, stages: list[UnaryInterceptor]) -> Behavior:
        metrics = self._metrics
        short = method.rsplit("/", 1)[-1]
        debug = _log.isEnabledFor(logging.DEBUG)
        befores = tuple(stage.before for stage in stages)
        afters = tuple(stage.after for stage in stages)

        async def unary(request: Any, context: Context) -> Any:
            start = time.perf_counter()
            request_id = getattr(request, "request_id", "") or metadata_value(
                context, REQUEST_ID_KEY
            )
            if not request_id or not is_echoable_id(request_id):
                # Echoing it would fail the call in gRPC's metadata checks: use a fresh one (the
                # servicer then rejects the field by name).
                request_id = new_request_id()
            token = request_id_var.set(request_id)
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            metrics.calls_started()
            entered = 0  # stages whose ``before`` passed: their ``after`` runs at the end
            failed = True
            try:
                try:
                    for before in befores:
                        before(request, context)
                        entered += 1
                    if isinstance(request, MalformedRequest):
                        raise request.error
                    response = await behavior(request, context)
                    failed = False
                    return response
                except NboError as exc:
                    code = status_for(exc) or grpc.StatusCode.INTERNAL
                    await context.abort(code, str(exc))
                except grpc.aio.AbortError:
                    raise  # already aborted with a deliberate status
                except Exception:
                    _log.exception("unhandled error", extra={"method": method})
                    await context.abort(
                        grpc.StatusCode.INTERNAL,
                        f"internal error; quote request id {request_id} when reporting it",
                    )
            finally:
                for after in reversed(afters[:entered]):
                    after()
                seconds = time.perf_counter() - start
                metrics.calls_finished()
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

        return unary


class MalformedRequest:
    """What a request that failed to parse becomes: it carries the error to the handler.

    ``request_id`` is empty so the pipeline generates one, as for any request
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


def server_interceptors(
    metrics: ServerMetrics, *stages: UnaryInterceptor
) -> list[grpc.aio.ServerInterceptor]:
    """The unary interceptors of a server: one :class:`UnaryPipeline` running observability and
    error mapping, then ``stages`` (limits, authentication) in the order given, then request
    parsing."""
    return [UnaryPipeline(metrics, stages)]
