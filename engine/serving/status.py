"""How nbo's errors become gRPC status codes.

One table, used both ways: the server's error interceptor turns every error nbo raises on purpose
into the status a client can act on, its message (which names the field, what was expected and
what came) sent as the status details unchanged; :mod:`engine.client` turns a status back into
the same class of error.
"""

from __future__ import annotations

import grpc

from engine.errors import (
    AuthenticationError,
    ConfigError,
    CorruptModelError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidInputError,
    JournalUnavailableError,
    NboError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServiceUnavailableError,
)

# Checked in order: the first class the error is an instance of decides the status.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (JournalUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (CorruptModelError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ServiceUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
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
