"""Off-policy evaluation benchmark (issue 5): estimator throughput per core (IPS, SNIPS, DR against
plain vectorized numpy in the same run), learning replay of LinUCB at K=10, d=32, and end to end
Parquet -> report in-process and on local Ray with 1 and 2 workers.

    python benchmarks/ope.py [--rows 1000000] [--workers 0,1,2] [--out benchmarks/results/ope.json]

The logs are written so decoding is not the bottleneck: the context is one uncompressed
fixed-size list of float64, the offer column is dictionary-encoded and row groups hold 1M rows.
The implementation lives in engine.replay.benchmark.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from engine.replay.benchmark import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        argv += ["--out", str(ROOT / "benchmarks" / "results" / "ope.json")]
    sys.exit(main(argv))
