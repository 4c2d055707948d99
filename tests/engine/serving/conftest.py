"""Fixtures: a real nbo server on port 0 hosting examples/renewal.toml, and a real client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.client import NboClient
from engine.serving.server import NboServer, create_server
from tests.engine.serving.support import TOKEN, free_port, serve_config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NboServer]:
    cfg = serve_config(tmp_path_factory.mktemp("nbo-data"), metrics_port=free_port())
    srv, _port = create_server(cfg)
    srv.start()
    yield srv
    srv.stop(grace=1.0)


@pytest.fixture(scope="module")
def client(server: NboServer) -> Iterator[NboClient]:
    with NboClient(f"127.0.0.1:{server.port}", admin_token=TOKEN) as c:
        yield c
