"""``nbo export`` (journal -> Parquet), ``nbo lift`` (policy vs control report), ``nbo journal
migrate`` (schema upgrades) and ``nbo journal compact`` (retention: old closed decisions to a
Parquet archive).

Examples
--------
``nbo export --data-dir nbo-data --campaign renewal --out results/renewal.parquet``
``nbo lift --data-dir nbo-data --campaign renewal --out results/renewal-lift.json``
``nbo export --journal postgresql://nbo@db:5432/offers --campaign renewal``
``nbo journal migrate --data-dir nbo-data --campaign renewal``
``nbo journal compact --config examples/renewal.toml --older-than 365 --archive archive/``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cliargs import add_actions, add_journal_url, command, commands
from engine.errors import InvalidInputError

if TYPE_CHECKING:
    from engine.journal.base import JournalBackend


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
    add_journal_url(
        parser,
        "read this journal instead of the data dir's: a path, sqlite:///path or "
        "postgresql://user@host:port/db (with --campaign) [the data dir's "
        "<campaign>.journal.sqlite]",
    )


def _target(args: argparse.Namespace) -> tuple[str | Path, str]:
    """The journal the arguments name (a URL or an existing file) and its campaign."""
    from engine.journal.backends import journal_kind, sqlite_path
    from engine.journal.export import find_journal

    if args.journal:
        if journal_kind(args.journal) == "postgres":
            if not args.campaign:
                raise InvalidInputError("--campaign", "a campaign with a PostgreSQL journal", None)
            return args.journal, args.campaign
        path = sqlite_path(args.journal)
        if not path.is_file():
            raise FileNotFoundError(f"journal {path}: no such file")
        return args.journal, args.campaign or path.name.removesuffix(".journal.sqlite")
    path = find_journal(args.data_dir, args.campaign)
    return path, path.name.removesuffix(".journal.sqlite")


def _open(args: argparse.Namespace) -> tuple[JournalBackend, str]:
    """The journal the arguments name, opened read-only, and its campaign."""
    from engine.journal.backends import open_journal

    target, campaign = _target(args)
    return open_journal(target, campaign=campaign, readonly=True), campaign


def run_migrate(args: argparse.Namespace) -> int:
    """Bring a journal to this nbo's schema version (new tables, columns and keys; no stored
    value changes)."""
    from engine.journal.backends import open_journal
    from engine.journal.schema import SCHEMA_VERSION, migration_summary

    target, campaign = _target(args)
    journal = open_journal(target, campaign=campaign, migrate=True)
    try:
        where = journal.location
        before = getattr(journal, "migrated_from", None)
        if before is None:
            version = journal.get_meta("schema_version") or SCHEMA_VERSION
            print(f"{where}: already at schema version {version}; nothing to do")
        else:
            print(
                f"{where}: migrated schema version {before} -> {SCHEMA_VERSION} (added "
                f"{migration_summary(before)} where missing; no stored value changed)"
            )
    finally:
        journal.close()
    return 0


def run_compact(args: argparse.Namespace) -> int:
    """Archive the old closed decisions of the campaign's journal and report the space."""
    import time

    from tqdm import tqdm

    from engine.campaign.config import load_campaign
    from engine.journal.backends import open_journal
    from engine.journal.compact import RetentionRules, check_older_than, compact_journal

    config = load_campaign(args.config)
    days = check_older_than(args.older_than, RetentionRules.from_config(config), "--older-than")
    if args.campaign not in (None, config.name):
        raise InvalidInputError(
            "--campaign", f"the campaign of --config ({config.name!r}) or nothing", args.campaign
        )
    args.campaign = config.name
    if args.journal is None and config.journal_url:
        args.journal = config.journal_url
    target, campaign = _target(args)
    journal = open_journal(
        target, campaign=campaign, synchronous=config.synchronous, cache_mib=config.cache_mib
    )
    try:
        total = journal.counts()["decisions"]
        with tqdm(total=total, unit="rows", desc="compact", file=sys.stderr, leave=False) as bar:
            report = compact_journal(
                journal,
                config,
                time.time(),
                args.archive,
                days,
                vacuum=args.vacuum,
                progress=bar.update,
            )
    finally:
        journal.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    before, after = report.space["before"], report.space["after"]
    print(
        f"{getattr(journal, 'location', campaign)}: archived {report.archived} closed decisions "
        f"made before {report.before} to {report.archive} ({len(report.files)} files"
        + (f", {report.recovered} steps of an interrupted run finished" if report.recovered else "")
        + ")"
    )
    if report.bounds:
        print(
            f"kept: decisions after seq {report.bounds['decision_seq']} (traffic window), "
            f"rewards after seq {report.bounds['reward_seq']} ({report.bounds['limited_by']}), "
            "pending decisions and those of stored requests"
        )
    print(
        f"journal: {before['bytes'] / 1e6:.2f} MB -> {after['bytes'] / 1e6:.2f} MB, "
        f"{before['bytes_per_decision']:g} -> {after['bytes_per_decision']:g} bytes per decision "
        f"({after['decisions']} decisions journaled, {after['kept']} in the journal; space: "
        f"{report.reclaimed})"
    )
    return 0


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


# `nbo lift` exit code when the journal cannot give a lift yet (not an error: wait for rewards).
NOT_ENOUGH_DATA = 3


def run_lift(args: argparse.Namespace) -> int:
    if args.level not in (0.8, 0.9, 0.95, 0.99):
        raise InvalidInputError("--level", "one of 0.8, 0.9, 0.95, 0.99", args.level)
    journal, campaign = _open(args)
    try:
        out = args.out or Path("results") / f"{campaign}-lift.json"
        computed = _write_lift(journal, campaign, out, args.level)
    finally:
        journal.close()
    return 0 if computed else NOT_ENOUGH_DATA


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


def _write_lift(journal: JournalBackend, campaign: str, out: Path, level: float) -> bool:
    """Write the lift report; print it, or what is missing. True when a lift was computed."""
    from engine.journal.lift import lift_from_journal
    from engine.journal.monitor import STATE_KEY, monitor_of

    lift = lift_from_journal(journal, level=level)
    missing = _missing(lift)
    report = {"campaign": campaign, **lift.to_dict()}
    report["missing"] = missing
    # The anytime-valid bound of the lift monitor (engine.rollout), since the last model or
    # mode change: the one to act on when the lift is looked at more than once.
    status = monitor_of(journal, alpha=1.0 - level).status()
    state = json.loads(journal.get_meta(STATE_KEY) or "{}")
    report["anytime"] = status.to_dict()
    report["rollout"] = state
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
    if state:
        mode, what = state.get("mode", "online"), state.get("state", "live")
        why = state.get("reason") or ""
        print(f"rollout: mode {mode}, {what}" + (f": {why}" if why else ""))
    if math.isfinite(status.lower) or math.isfinite(status.upper):
        print(
            f"since the last model or mode change: lift {status.lift:+.4g}, anytime-valid "
            f"{round(level * 100)}% bound [{status.lower:+.4g}, {status.upper:+.4g}] (valid "
            f"however often it is looked at) over {status.n_treatment} policy and "
            f"{status.n_control} control decisions"
        )
    print(f"wrote {out}")
    return missing is None


@command("export", run_export)
def _export_command(parser: argparse.ArgumentParser) -> None:
    """write a campaign's decision journal as Parquet (the logged-data schema)

    Export the decisions and rewards of a campaign's journal as a Parquet file in the logged-data
    schema that `nbo evaluate` and replay read.
    """
    _common(parser)
    parser.add_argument(
        "--out", type=Path, default=None, help="Parquet file [results/<campaign>.parquet]"
    )
    parser.add_argument(
        "--closed-only", action="store_true", help="only decisions that have a reward"
    )
    parser.add_argument(
        "--lift", action="store_true", help="also write the lift report next to the Parquet file"
    )


@command("lift", run_lift)
def _lift_command(parser: argparse.ArgumentParser) -> None:
    """incremental value per decision of the policy over the control group

    Report the policy's net reward per decision minus the control group's, with a confidence
    interval, from a campaign's journal. Exits with 3 (and says what is missing) while either
    group has fewer than 2 closed decisions.
    """
    _common(parser)
    parser.add_argument(
        "--level",
        type=float,
        default=0.95,
        help="confidence level: 0.8, 0.9, 0.95 or 0.99 [%(default)s]",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file [results/<campaign>-lift.json]"
    )


@command("migrate", run_migrate)
def _migrate_command(parser: argparse.ArgumentParser) -> None:
    """bring a journal to this nbo's schema version

    Apply the schema migrations a journal written by an older nbo needs (version 1 -> 2 adds the
    model registry's tables and those of idempotent requests and of rejected-reward counts; 2 or
    3 -> 4 adds the activations table and the decisions' deferred column, false for every stored
    decision; whichever are missing, and no stored value is changed). nbo never migrates an
    existing journal unless asked; a running server of the older nbo keeps working on a migrated
    journal (its decisions are immediate).
    """
    _common(parser)


@command("compact", run_compact)
def _compact_command(parser: argparse.ArgumentParser) -> None:
    """move old closed decisions to a Parquet archive and give their space back

    Move the closed decisions (rewarded, or expired) made more than --older-than days ago, with
    their rewards, out of the journal into hive-partitioned Parquet in the logged-data schema
    (ARCHIVE/campaign=NAME/date=YYYY-MM-DD/), which `nbo evaluate --logs ARCHIVE` reads. Kept
    whatever their age: pending decisions, rewards the learner may still replay, the traffic
    window, decisions of stored requests. Budgets, lift and counts report the same numbers
    afterwards. An interrupted run is finished by the next one (same --archive) without
    duplicates. Prints the journal's bytes per decision before and after.
    """
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        metavar="TOML",
        help="the campaign's file: its windows set the least --older-than, its traffic window "
        "the decisions kept, its name and [journal] url the journal (unless --journal)",
    )
    parser.add_argument(
        "--older-than",
        required=True,
        metavar="DAYS",
        help="archive closed decisions made more than DAYS days ago (at least the campaign's "
        "longest reward, frequency, cooldown or request window)",
    )
    parser.add_argument(
        "--archive", type=Path, required=True, metavar="DIR", help="the archive's root directory"
    )
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="rewrite the store to give all freed space back (SQLite VACUUM: needed once for a "
        "journal created before nbo set incremental auto-vacuum; PostgreSQL VACUUM FULL); "
        "writers wait until it is done, so run it while no server writes",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(parser)


@command("journal")
def _journal_command(parser: argparse.ArgumentParser) -> None:
    """journal maintenance (schema migrations, retention)

    Maintain a campaign's journal.
    """
    add_actions(parser, _migrate_command, _compact_command)


# What the nbo.commands entry points export, lift and journal name (pyproject.toml).
register = commands(_export_command, _lift_command, _journal_command)
