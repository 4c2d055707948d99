"""Shared helpers of the serving tests: the example campaign, customers, server settings."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from engine.serving.config import ServeConfig
from testkit.traffic import CATEGORICAL, NUMERIC, renewal_contexts

if TYPE_CHECKING:
    from engine.client import NboClient
    from engine.serving.server import NboServer

REPO = Path(__file__).resolve().parents[3]
RENEWAL = REPO / "examples" / "renewal.toml"
TOKEN = "test-admin-token"
MAX_BATCH_ROWS = 500


def refusal(call: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
    """The grpc.RpcError that ``call(*args, **kwargs)`` raises (the test fails when it does
    not), for its ``code()`` and ``details()``."""
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)
    return err.value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def customer(i: int, seed: int = 0) -> dict[str, Any]:
    """Raw renewal attributes of customer ``i`` (numbers and strings, as a backend sends them)."""
    numeric, categorical = renewal_contexts(i + 1, seed)
    out: dict[str, Any] = dict(zip(NUMERIC, numeric[i].tolist(), strict=True))
    out.update(zip(CATEGORICAL, categorical[i].tolist(), strict=True))
    return out


def serve_config(data_dir: Path, **overrides: Any) -> ServeConfig:
    settings: dict[str, Any] = {
        "campaigns": (RENEWAL,),
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "port": 0,
        "threads": 8,
        "admin_token": TOKEN,
        "max_batch_rows": MAX_BATCH_ROWS,
        "max_message_bytes": 1024 * 1024,
        "grace_seconds": 5.0,
    }
    settings.update(overrides)
    return ServeConfig(**settings)


@contextmanager
def running_server(data_dir: Path, **overrides: Any) -> Iterator[NboServer]:
    """A real server on a free loopback port (:func:`serve_config` with ``overrides``, and a
    metrics port), stopped on exit."""
    from engine.serving.server import create_server

    srv, _port = create_server(serve_config(data_dir, metrics_port=free_port(), **overrides))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(grace=1.0)


@contextmanager
def admin_client(server: NboServer) -> Iterator[NboClient]:
    """A client of ``server`` holding its admin token."""
    from engine.client import NboClient

    with NboClient(f"127.0.0.1:{server.port}", admin_token=TOKEN) as client:
        yield client
