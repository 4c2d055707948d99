"""Structured logs: one JSON object per line on stderr, with the request id of the call."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

# The id of the call being handled in this thread; set by the observability interceptor.
request_id_var: ContextVar[str] = ContextVar("nbo_request_id", default="")

LOGGER_NAME = "nbo.serving"
# Attributes every LogRecord has; anything else passed through `extra=` is a structured field.
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: ts, level, logger, msg, request_id and extra fields.

    Examples
    --------
    >>> record = logging.LogRecord("nbo.serving", logging.INFO, "f.py", 1, "rpc", (), None)
    >>> record.method = "/nbo.v1.OfferService/Decide"
    >>> line = json.loads(JsonFormatter().format(record))
    >>> line["level"], line["msg"], line["method"]
    ('info', 'rpc', '/nbo.v1.OfferService/Decide')
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, separators=(",", ":"))


def configure_logging(level: str = "info", stream: Any = None) -> logging.Logger:
    """Send the ``nbo`` loggers to ``stream`` (stderr by default) as JSON lines at ``level``.

    Idempotent: calling it again replaces the handler rather than adding a second one.
    """
    logger = logging.getLogger("nbo")
    for handler in list(logger.handlers):
        if getattr(handler, "_nbo_json", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._nbo_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logging.getLogger(LOGGER_NAME)
