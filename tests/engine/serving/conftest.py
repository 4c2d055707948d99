"""Fixtures: a real nbo server on port 0 hosting examples/renewal.toml, and a real client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.client import NboClient
from engine.serving.server import NboServer
from tests.engine.serving.support import admin_client, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NboServer]:
    with running_server(tmp_path_factory.mktemp("nbo-data")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: NboServer) -> Iterator[NboClient]:
    with admin_client(server) as c:
        yield c
