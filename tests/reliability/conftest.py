"""Fixtures shared by the attack tests: real servers on port 0, stopped after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.serving.server import NboServer, create_server
from tests.engine.serving.support import serve_config

CLIENT_TOKEN = "client-token-0123456789abcdef"


@pytest.fixture()
def started(tmp_path: Path) -> Iterator[Any]:
    servers: list[NboServer] = []

    def start(**overrides: Any) -> NboServer:
        server, _ = create_server(serve_config(tmp_path / f"data{len(servers)}", **overrides))
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop(grace=0.5)
