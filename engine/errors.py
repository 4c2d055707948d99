"""Error classes of nbo.

Every error inherits from :class:`NboError` and from the built-in exception it refines, so callers'
``except ValueError`` or ``except KeyError`` keeps working. Messages name the argument or field,
what was expected, and what came.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable
from pathlib import Path


class NboError(Exception):
    """Base class of every error nbo raises on purpose."""


class InvalidInputError(NboError, ValueError):
    """An argument or a request field is malformed (wrong shape, dtype, range, NaN, ...)."""

    def __init__(self, field: str, expected: str, got: object) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"{field}: expected {expected}, got {_short(got)}")


class InvalidParameterError(InvalidInputError):
    """A hyperparameter is outside its allowed range.

    The message follows scikit-learn's: "The 'alpha' parameter of LinUCB must be a float >= 0.
    Got -1 instead."
    """

    def __init__(self, owner: str, name: str, rule: str, got: object) -> None:
        self.owner = owner
        NboError.__init__(
            self, f"The {name!r} parameter of {owner} must be {rule}. Got {got!r} instead."
        )
        self.field = name
        self.expected = rule
        self.got = got


class NoEligibleActionError(InvalidInputError):
    """A row of an action mask leaves no action eligible."""


class ConfigError(NboError, ValueError):
    """A campaign configuration is invalid; the message names the key."""


class NotFoundError(NboError, KeyError):
    """An unknown campaign, offer or decision id."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class ResourceExhaustedError(NboError, RuntimeError):
    """A budget, a cap or the server's capacity is exhausted."""


class PermissionDeniedError(NboError, PermissionError):
    """Refused on purpose, whoever asks: a call whose credentials do not allow it (a wrong
    client or admin token, a token for another campaign, any AdminService call on a server
    without an admin token), a model path outside the model directory, or a data directory,
    journal or snapshot that others could write or redirect. gRPC status PERMISSION_DENIED."""


class AuthenticationError(NboError, PermissionError):
    """A call without credentials (no bearer token) to a service that requires them."""


class ServiceUnavailableError(NboError, ConnectionError):
    """The service cannot take the call now (loading, shutting down, unreachable); retry later."""


class JournalUnavailableError(ServiceUnavailableError, ResourceExhaustedError):
    """The journal's server cannot be reached or cannot commit now (PostgreSQL down, restarting,
    read-only): nothing was acknowledged; retry, here or on another replica. gRPC status
    UNAVAILABLE. Also a ResourceExhaustedError: the journal could not take the write."""


class DeadlineExceededError(ServiceUnavailableError, TimeoutError):
    """The call's deadline passed before it was answered."""


class FailedPreconditionError(NboError, RuntimeError):
    """The call cannot be taken by this process in its current state, whatever the arguments:
    a decide replica asked to promote a model, a standby learner asked to roll back, a learner
    asked to decide. The message names the process that can. gRPC status FAILED_PRECONDITION."""


class CorruptModelError(NboError, ValueError):
    """A serialized model or snapshot failed its integrity checks."""


class UnreadableFileError(NboError, OSError):
    """A file nbo was asked to read is missing, a directory or not readable.

    ``str(error)`` names the file, what it is and what to do (not ``[Errno 2] ...``); ``errno``
    and ``filename`` are those of the failed read. The subclasses below also inherit from the
    matching built-in, so ``except FileNotFoundError`` keeps working.
    """

    def __init__(self, message: str, path: str | Path, code: int | None) -> None:
        OSError.__init__(self, message)
        self.errno = code
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class MissingFileError(UnreadableFileError, FileNotFoundError):
    """The path names no file."""


class NotAFileError(UnreadableFileError, IsADirectoryError):
    """The path names a directory, not a file."""


class FileAccessError(UnreadableFileError, PermissionError):
    """The file exists but this process may not read it."""


def unreadable_file(path: str | Path, exc: OSError, expected: str, hint: str) -> OSError:
    """The error to raise when reading ``path`` failed with ``exc``.

    ``expected`` says what the file should be ("a campaign TOML file"), ``hint`` what to do. An
    error other than a missing file, a directory or a permission problem (a disk error) is
    returned unchanged: there is nothing to suggest.

    Examples
    --------
    >>> print(unreadable_file("renewl.toml", FileNotFoundError(errno.ENOENT, "x"),
    ...                       "a campaign TOML file", "pass the path of one"))
    renewl.toml: expected a campaign TOML file, got no such file; pass the path of one
    """
    kinds: tuple[tuple[type[OSError], type[UnreadableFileError], str], ...] = (
        (FileNotFoundError, MissingFileError, "no such file"),
        (IsADirectoryError, NotAFileError, "a directory"),
        (PermissionError, FileAccessError, "a file this process may not read"),
    )
    for built_in, cls, what in kinds:
        if isinstance(exc, built_in):
            code = exc.errno if exc.errno is not None else errno.EIO
            return cls(f"{path}: expected {expected}, got {what}; {hint}", path, code)
    return exc


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``name``, or ``""`` when none is close.

    Examples
    --------
    >>> did_you_mean("tenure_month", ["plan", "tenure_months"])
    " (did you mean 'tenure_months'?)"
    >>> did_you_mean("zzz", ["plan"])
    ''
    """
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: object, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
