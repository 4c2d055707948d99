"""``nbo export`` (journal -> Parquet) and ``nbo lift`` (policy vs control report).

Examples
--------
``nbo export --data-dir nbo-data --campaign renewal --out results/renewal.parquet``
``nbo lift --data-dir nbo-data --campaign renewal --out results/renewal-lift.json``
``nbo export --journal postgresql://nbo@db:5432/offers --campaign renewal``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidInputError

if TYPE_CHECKING:
    from engine.journal.base import JournalBackend


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
    parser.add_argument(
        "--journal",
        metavar="URL",
        default=None,
        help="read this journal instead of the data dir's: a path, sqlite:///path or "
        "postgresql://user@host:port/db (with --campaign)",
    )


def _open(args: argparse.Namespace) -> tuple[JournalBackend, str]:
    """The journal the arguments name, opened read-only, and its campaign."""
    from engine.journal.backends import journal_kind, open_journal, sqlite_path
    from engine.journal.export import find_journal

    if args.journal:
        if journal_kind(args.journal) == "postgres":
            if not args.campaign:
                raise InvalidInputError("--campaign", "a campaign with a PostgreSQL journal", None)
            campaign = args.campaign
        else:
            name = sqlite_path(args.journal).name
            campaign = args.campaign or name.removesuffix(".journal.sqlite")
        return open_journal(args.journal, campaign=campaign, readonly=True), campaign
    path = find_journal(args.data_dir, args.campaign)
    campaign = path.name.removesuffix(".journal.sqlite")
    return open_journal(path, campaign=campaign, readonly=True), campaign


def run_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.journal.export import export_parquet

    journal, campaign = _open(args)
    try:
        out = args.out or Path("results") / f"{campaign}.parquet"
        total = journal.counts()["decisions"]
        with tqdm(total=total, unit="rows", desc="export", file=sys.stderr, leave=False) as bar:
            summary = export_parquet(
                journal, out, closed_only=args.closed_only, progress=bar.update
            )
        print(f"wrote {summary['rows']} decisions to {summary['path']}", end="")
        skipped = summary["skipped"]
        print(f" (skipped {skipped} of an older feature schema)" if skipped else "")
        if args.lift:
            _write_lift(journal, campaign, out.with_name(out.stem + "-lift.json"), 0.95)
    finally:
        journal.close()
    return 0


def run_lift(args: argparse.Namespace) -> int:
    if args.level not in (0.8, 0.9, 0.95, 0.99):
        raise InvalidInputError("--level", "one of 0.8, 0.9, 0.95, 0.99", args.level)
    journal, campaign = _open(args)
    try:
        out = args.out or Path("results") / f"{campaign}-lift.json"
        _write_lift(journal, campaign, out, args.level)
    finally:
        journal.close()
    return 0


def _write_lift(journal: JournalBackend, campaign: str, out: Path, level: float) -> None:
    from engine.journal.lift import lift_from_journal

    lift = lift_from_journal(journal, level=level)
    report = {"campaign": campaign, **lift.to_dict()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    pct = round(level * 100)
    print(
        f"lift per decision: {lift.lift:.4g} ({pct}% CI {lift.ci_low:.4g} .. {lift.ci_high:.4g});"
        f" treatment {lift.treatment_mean:.4g} over {lift.n_treatment},"
        f" control {lift.control_mean:.4g} over {lift.n_control}"
    )
    print(f"wrote {out}")
