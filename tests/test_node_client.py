"""The README's second-language client: Node's @grpc/grpc-js loading proto/nbo/v1/offers.proto
at run time, against a real server on port 0."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine.serving.config import ServeConfig
from engine.serving.server import create_server

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "examples" / "node-client"


@pytest.fixture(scope="module")
def node_client() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js is not installed on this machine (the example needs node and npm)")
    if not (CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=CLIENT,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return CLIENT / "client.js"


def test_node_client_decides_rewards_and_sees_status_codes(
    node_client: Path, tmp_path: Path
) -> None:
    config = ServeConfig(
        campaigns=(ROOT / "examples" / "renewal.toml",),
        data_dir=tmp_path,
        host="127.0.0.1",
        port=0,
        metrics_port=0,
    )
    server, port = create_server(config)
    server.start()
    try:
        done = subprocess.run(
            ["node", str(node_client), f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop(grace=1.0)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("offer ") and "propensity" in lines[0]
    assert lines[1] == "reward applied: true"
    assert lines[2] == (
        "empty customer_id -> INVALID_ARGUMENT: customer_id: expected a non-empty string, "
        "got an empty string"
    )
