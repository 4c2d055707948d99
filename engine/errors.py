"""Error classes of nbo.

Every error inherits from :class:`NboError` and from the built-in exception it refines, so callers'
``except ValueError`` or ``except KeyError`` keeps working. Messages name the argument or field,
what was expected, and what came.
"""

from __future__ import annotations


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
    """An admin call without a valid token."""


class CorruptModelError(NboError, ValueError):
    """A serialized model or snapshot failed its integrity checks."""


def _short(value: object, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
