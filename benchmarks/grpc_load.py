"""gRPC load benchmark (issue 4): Decide QPS with p50/p99 at 1, 16 and 64 calls in flight, Decide
at fixed rates, DecideBatch (64 rows, dense) decisions/s, Reward QPS and server CPU per call,
from a separate client process on loopback, next to a bare grpcio echo server measured in the
same run as the ceiling.

    python benchmarks/grpc_load.py [--seconds 5] [--out benchmarks/results/grpc_load.json]

The load generator lives in engine.serving.loadgen (the server is a real `nbo serve` process).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from engine.serving.loadgen import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv += ["--out", str(ROOT / "benchmarks" / "results" / "grpc_load.json")]
    if not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv += ["--config", str(ROOT / "examples" / "renewal.toml")]
    sys.exit(main(argv))
