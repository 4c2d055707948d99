"""``nbo export`` (journal -> Parquet) and ``nbo lift`` (policy vs control report).

Examples
--------
``nbo export --data-dir nbo-data --campaign renewal --out results/renewal.parquet``
``nbo lift --data-dir nbo-data --campaign renewal --out results/renewal-lift.json``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError


def register(subparsers: Any) -> None:
    """Add the ``export`` and ``lift`` subcommands."""
    export = subparsers.add_parser(
        "export",
        help="write a campaign's decision journal as Parquet (the logged-data schema)",
        description="Export the decisions and rewards of a campaign's journal as a Parquet file "
        "in the logged-data schema that `nbo evaluate` and replay read.",
    )
    _common(export)
    export.add_argument(
        "--out", type=Path, default=None, help="Parquet file (default results/<campaign>.parquet)"
    )
    export.add_argument(
        "--closed-only", action="store_true", help="only decisions that have a reward"
    )
    export.add_argument(
        "--lift", action="store_true", help="also write the lift report next to the Parquet file"
    )
    export.set_defaults(func=run_export)

    lift = subparsers.add_parser(
        "lift",
        help="incremental value per decision of the policy over the control group",
        description="Report the policy's net reward per decision minus the control group's, "
        "with a confidence interval, from a campaign's journal.",
    )
    _common(lift)
    lift.add_argument(
        "--level", type=float, default=0.95, help="confidence level: 0.8, 0.9, 0.95 or 0.99"
    )
    lift.add_argument(
        "--out", type=Path, default=None, help="JSON file (default results/<campaign>-lift.json)"
    )
    lift.set_defaults(func=run_lift)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=Path("nbo-data"), help="engine data directory"
    )
    parser.add_argument(
        "--campaign", default=None, help="campaign name (needed when the data dir holds several)"
    )


def run_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.journal.export import export_parquet, find_journal
    from engine.journal.store import Journal

    path = find_journal(args.data_dir, args.campaign)
    campaign = path.name.removesuffix(".journal.sqlite")
    out = args.out or Path("results") / f"{campaign}.parquet"
    journal = Journal(path, readonly=True)
    total = journal.counts()["decisions"]
    journal.close()
    with tqdm(total=total, unit="rows", desc="export", file=sys.stderr, leave=False) as bar:
        summary = export_parquet(path, out, closed_only=args.closed_only, progress=bar.update)
    print(f"wrote {summary['rows']} decisions to {summary['path']}", end="")
    print(
        f" (skipped {summary['skipped']} of an older feature schema)" if summary["skipped"] else ""
    )
    if args.lift:
        lift_path = out.with_name(out.stem + "-lift.json")
        _write_lift(path, lift_path, 0.95)
    return 0


def run_lift(args: argparse.Namespace) -> int:
    from engine.journal.export import find_journal

    if args.level not in (0.8, 0.9, 0.95, 0.99):
        raise InvalidInputError("--level", "one of 0.8, 0.9, 0.95, 0.99", args.level)
    path = find_journal(args.data_dir, args.campaign)
    campaign = path.name.removesuffix(".journal.sqlite")
    out = args.out or Path("results") / f"{campaign}-lift.json"
    _write_lift(path, out, args.level)
    return 0


def _write_lift(journal_path: Path, out: Path, level: float) -> None:
    from engine.journal.lift import lift_from_journal
    from engine.journal.store import Journal

    journal = Journal(journal_path, readonly=True)
    try:
        lift = lift_from_journal(journal, level=level)
    finally:
        journal.close()
    report = {"campaign": journal_path.name.removesuffix(".journal.sqlite"), **lift.to_dict()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    pct = round(level * 100)
    print(
        f"lift per decision: {lift.lift:.4g} ({pct}% CI {lift.ci_low:.4g} .. {lift.ci_high:.4g});"
        f" treatment {lift.treatment_mean:.4g} over {lift.n_treatment},"
        f" control {lift.control_mean:.4g} over {lift.n_control}"
    )
    print(f"wrote {out}")
