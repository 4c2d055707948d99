"""How nbo's errors become gRPC status codes.

One table, used by the error interceptor: every error nbo raises on purpose maps to the status a
client can act on, and its message (which names the field, what was expected and what came) is
sent as the status details unchanged.
"""

from __future__ import annotations

import grpc

from engine.errors import (
    ConfigError,
    CorruptModelError,
    InvalidInputError,
    NboError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
)


class UnauthenticatedError(NboError, PermissionError):
    """A call that carries no bearer token while the server requires one."""


class DeadlineExceededError(NboError, TimeoutError):
    """The call's deadline passed before the server could start on it."""


class UnavailableError(NboError, RuntimeError):
    """The server cannot take calls yet (campaigns loading) or any more (shutting down)."""


# Checked in order: the first class the error is an instance of decides the status.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (CorruptModelError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NboError, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(error: BaseException) -> grpc.StatusCode | None:
    """The status code for an error nbo raises on purpose; None for anything else (a bug).

    Examples
    --------
    >>> status_for(InvalidInputError("customer_id", "a non-empty string", ""))
    <StatusCode.INVALID_ARGUMENT: (3, 'invalid argument')>
    >>> status_for(NotFoundError("campaign: expected one of ['renewal'], got 'x'")).name
    'NOT_FOUND'
    >>> status_for(ZeroDivisionError()) is None
    True
    """
    for cls, code in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return code
    return None
