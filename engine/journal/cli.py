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
        "--out", type=Path, default=None, help="Parquet file [results/<campaign>.parquet]"
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
        "with a confidence interval, from a campaign's journal. Exits with 3 (and says what "
        "is missing) while either group has fewer than 2 closed decisions.",
    )
    _common(lift)
    lift.add_argument(
        "--level",
        type=float,
        default=0.95,
        help="confidence level: 0.8, 0.9, 0.95 or 0.99 [%(default)s]",
    )
    lift.add_argument(
        "--out", type=Path, default=None, help="JSON file [results/<campaign>-lift.json]"
    )
    lift.set_defaults(func=run_lift)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("nbo-data"),
        help="engine data directory [%(default)s]",
    )
    parser.add_argument(
        "--campaign",
        default=None,
        help="campaign name [%(default)s: the only one; needed when the data dir holds several]",
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


# `nbo lift` exit code when the journal cannot give a lift yet (not an error: wait for rewards).
NOT_ENOUGH_DATA = 3


def run_lift(args: argparse.Namespace) -> int:
    from engine.journal.export import find_journal

    if args.level not in (0.8, 0.9, 0.95, 0.99):
        raise InvalidInputError("--level", "one of 0.8, 0.9, 0.95, 0.99", args.level)
    path = find_journal(args.data_dir, args.campaign)
    campaign = path.name.removesuffix(".journal.sqlite")
    out = args.out or Path("results") / f"{campaign}-lift.json"
    return 0 if _write_lift(path, out, args.level) else NOT_ENOUGH_DATA


def _missing(lift: Any) -> str | None:
    """What the journal lacks for a lift with an interval, or None when it has enough."""
    for group, n in (("control", lift.n_control), ("policy (treatment)", lift.n_treatment)):
        if n == 0:
            return (
                f"no closed {group} decisions yet (n_{group.split()[0]} = 0): lift needs "
                "rewards from both groups"
            )
    if lift.n_control < 2 or lift.n_treatment < 2:
        return (
            f"too few closed decisions for an interval (treatment {lift.n_treatment}, control "
            f"{lift.n_control}): it needs at least 2 in each group"
        )
    return None


def _write_lift(journal_path: Path, out: Path, level: float) -> bool:
    """Write the lift report; print it, or what is missing. True when a lift was computed."""
    from engine.journal.lift import lift_from_journal
    from engine.journal.store import Journal

    journal = Journal(journal_path, readonly=True)
    try:
        lift = lift_from_journal(journal, level=level)
    finally:
        journal.close()
    missing = _missing(lift)
    report = {"campaign": journal_path.name.removesuffix(".journal.sqlite"), **lift.to_dict()}
    report["missing"] = missing
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    counts = f"treatment {lift.n_treatment}, control {lift.n_control} closed decisions"
    if missing is not None:
        print(f"no lift yet: {missing} ({counts})")
    else:
        pct = round(level * 100)
        print(
            f"lift per decision: {lift.lift:.4g} ({pct}% CI {lift.ci_low:.4g} .. "
            f"{lift.ci_high:.4g}); treatment mean {lift.treatment_mean:.4g} over "
            f"{lift.n_treatment}, control mean {lift.control_mean:.4g} over {lift.n_control}"
        )
    print(f"wrote {out}")
    return missing is None
