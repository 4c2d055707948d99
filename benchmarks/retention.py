"""Retention benchmark: a renewal journal's bytes per decision before and after ``nbo journal
compact``.

One run fills a fresh data directory through the Engine on examples/renewal.toml (seeded
renewal customers, batches of 256, the engine's clock starting 400 days ago): ``--rows``
decisions over 100 days, 90% rewarded in decision order, the rest expired once their 30-day
window passed, so every decision is closed. The campaign file is the example's with
``checkpoint_every_rewards`` at 1% of the rows (its own 10,000 at 1,000,000), so the learner
keeps its five newest checkpoints over the last 5% of the rewards at any size. The engine
is closed (its WAL folded into the file), then ``nbo journal compact --older-than 181``, the
command itself, moves what the rules let go to a Parquet archive. Reported: the journal's bytes
and bytes per journaled decision before and after, decisions archived and kept, the archive's
bytes, and the seconds the fill and the compaction took. Results go to
benchmarks/results/retention.json. Run ``python -m benchmarks.retention`` (1,000,000 decisions,
several minutes); ``--quick`` fills 20,000.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common as bc
from benchmarks.engine_throughput import BATCH, CAMPAIGN, POOL, workload
from engine.cli import main as nbo_main
from engine.cliargs import add_seed, script
from engine.core import Engine

DAY = 86_400.0
FULL_ROWS = 1_000_000
QUICK_ROWS = 20_000


def campaign_file(rows: int, root: Path) -> Path:
    """The example campaign checkpointing every 1% of ``rows`` rewards (see the module)."""
    every = max(rows // 100, 100)
    text = CAMPAIGN.read_text().replace(
        "checkpoint_every_rewards = 10000", f"checkpoint_every_rewards = {every}"
    )
    path = root / "renewal.toml"
    path.write_text(text)
    return path


def fill(config: Path, data_dir: Path, rows: int, seed: int) -> dict[str, Any]:
    """``rows`` closed renewal decisions in a new journal at ``data_dir`` (see the module)."""
    w = workload(min(POOL, rows), seed, "ret")
    clock = [time.time() - 400 * DAY]
    engine = Engine.from_config(config, data_dir=data_dir, clock=lambda: clock[0])
    step = 100 * DAY / max(rows // BATCH, 1)
    start = time.perf_counter()
    for s in range(0, rows, BATCH):
        n = min(BATCH, rows - s)
        at = s % len(w.contexts)
        contexts = (w.contexts[at:] + w.contexts)[:n]
        decisions = engine.decide_batch([f"c{(s + i) % 50_000}" for i in range(n)], contexts)
        rewarded = [d.decision_id for i, d in enumerate(decisions) if (s + i) % 10]
        values = [w.values[(at + i) % len(w.values)] for i in range(len(rewarded))]
        engine.reward_batch(rewarded, values)
        clock[0] += step
    clock[0] += 31 * DAY
    engine.expire_pending()
    counts = engine.journal.counts()
    engine.close()
    return {"seconds": time.perf_counter() - start, "counts": counts}


def run(rows: int, seed: int, root: Path) -> dict[str, Any]:
    data_dir = root / "data"
    config = campaign_file(rows, root)
    filled = fill(config, data_dir, rows, seed)
    archive = root / "archive"
    argv = ["journal", "compact", "--config", str(config), "--data-dir", str(data_dir)]
    argv += ["--older-than", "181", "--archive", str(archive), "--json"]
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = nbo_main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"nbo journal compact exited with {code}")
    report = json.loads(printed.getvalue())
    archive_bytes = sum(p.stat().st_size for p in archive.rglob("*.parquet"))
    return {
        "command": "nbo " + " ".join(argv),
        "fill": filled,
        "compact_seconds": seconds,
        "archive_bytes": archive_bytes,
        "report": {k: v for k, v in report.items() if k != "files"},
        "files": len(report["files"]),
    }


def table(result: dict[str, Any]) -> str:
    report = result["report"]
    before, after = report["space"]["before"], report["space"]["after"]
    rows = [
        [
            label,
            f"{space['bytes'] / 1e6:,.1f}",
            f"{space['bytes_per_decision']:,.1f}",
            f"{space['decisions']:,}",
            f"{space['kept']:,}",
        ]
        for label, space in (("before", before), ("after", after))
    ]
    notes = [
        f"archived {report['archived']:,} decisions in {result['compact_seconds']:.1f} s to "
        f"{result['files']} Parquet files, {result['archive_bytes'] / 1e6:,.1f} MB",
        f"kept: rewards after seq {report['bounds']['reward_seq']:,} "
        f"({report['bounds']['limited_by']}), decisions after seq "
        f"{report['bounds']['decision_seq']:,} (traffic window); space: {report['reclaimed']}",
        f"fill: {result['fill']['seconds']:.1f} s through the Engine",
    ]
    headers = ["journal", "MB", "bytes/decision", "decisions journaled", "in the journal"]
    return bc.format_table("nbo journal compact --older-than 181", headers, rows, notes)


@script("benchmarks.retention", quick=f"{QUICK_ROWS:,} decisions instead of {FULL_ROWS:,}")
def _options(parser: argparse.ArgumentParser) -> None:
    """Bytes per decision of a renewal journal before and after nbo journal compact (see the
    module docstring)."""
    add_seed(parser, "seed of the customers [%(default)s]")
    parser.add_argument("--rows", type=int, help=f"decisions to fill [{FULL_ROWS:,}]")
    bc.add_out(parser, "retention")


def main(argv: Sequence[str] | None = None) -> int:
    args = _options.parse_args(argv)
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    print(f"filling {rows:,} decisions, then compacting ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="nbo-retention-") as tmp:
        result = run(rows, args.seed, Path(tmp))
    settings = {"rows": rows, "quick": args.quick, "seed": args.seed, "batch": BATCH}
    results = {"meta": bc.run_info(settings), **result, "table": table(result)}
    return bc.publish(args.out, results)


if __name__ == "__main__":
    sys.exit(main())
