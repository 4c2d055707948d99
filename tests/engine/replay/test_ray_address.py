"""An unreachable ``--ray-address`` fails within seconds with one line and exit code 2 (Ray
itself would retry for minutes and end in a traceback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.errors import ServiceUnavailableError
from engine.replay.fanout import check_reachable
from tests.engine.replay.synthetic import LinearEnv, make_logs, to_table

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_listener():
    """A TCP port that accepts connections and never answers (like a proxy or a firewall that
    accepts every connection): a TCP connect alone would call it reachable."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_ray_address_fails_fast_with_one_line(tmp_path, kind, request):
    logs = tmp_path / "logs.parquet"
    pq.write_table(to_table(make_logs(LinearEnv.make(3, 2), 200, seed=1)), logs)
    if kind == "refused":
        address = f"127.0.0.1:{_free_port()}"
    else:
        address = request.getfixturevalue("silent_listener")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "engine.cli",
        "evaluate",
        "--logs",
        str(logs),
        "--ray-address",
        address,
    ]
    command += ["--out", str(tmp_path / "report")]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    seconds = time.monotonic() - start
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"nbo evaluate: error: no Ray cluster at {address} ({errors[0].split('(', 1)[1]}"
    ]
    assert "Traceback" not in done.stderr
    assert seconds < 10, seconds  # the probe waits 3 s at most; the rest is Python start-up


def test_probe_accepts_a_grpc_server_and_refuses_a_closed_port():
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        check_reachable(f"127.0.0.1:{port}")  # any gRPC server answers UNIMPLEMENTED: reachable
        check_reachable(f"ray://127.0.0.1:{port}")
    finally:
        server.stop(None)
    with pytest.raises(
        ServiceUnavailableError, match=r"no Ray cluster at 127\.0\.0\.1:\d+ \(Connection ref"
    ):
        check_reachable(f"127.0.0.1:{_free_port()}", timeout=1.0)
