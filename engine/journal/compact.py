"""Journal retention: closed decisions older than N days move, with their rewards, out of the
journal into hive-partitioned Parquet in the logged-data schema (``nbo journal compact``,
``[journal] retention_days``).

The archive is ``DIR/campaign=<name>/date=YYYY-MM-DD/part-<first seq>-<last seq>.parquet``
(the UTC day each decision was made, the seqs of its first and last row), written by
:func:`engine.journal.export.write_logged` with the layout ``nbo export`` uses, so ``nbo
evaluate --logs DIR`` and the replay readers read it as they read an export. Only decisions over the
journal's newest feature names are archived (the context column has one width, as in an
export); older ones stay in the journal.

What is never archived, and why
-------------------------------
A decision is archived only when every rule below lets it go; each rule is a bound of the
:class:`~engine.journal.records.ArchiveCut` of a step, read in one snapshot
(:meth:`~engine.journal.base.JournalBackend.retention_bounds`):

- **Pending decisions** (no reward row): the ledger closes them later (a reward, or expiry
  with the default value) and the learner learns from that; the cut joins rewards, so a
  decision without one is never in it. A deferred decision not activated yet is pending too:
  it is in no cut before its reward window has passed and it has lapsed.
- **Rewards the learner may still apply**: at a restart recovery restores the newest version
  with kept bytes and replays the rewards after its ``last_reward_seq``; when that version
  fails to load it falls back to older kept versions (``recovery._restore``). So a reward is
  archived only when its seq is at most the least ``last_reward_seq`` of every version with kept
  bytes (none kept: nothing is archived); its decision stays with it otherwise, since the
  replay reads the decision's context. Promoted and rollback versions keep their bytes for
  good, so the first one's cursor bounds every later compaction: the report names the bound.
- **The newest decision and the newest reward**: both backends number a new row from the
  table's largest seq, and ``counts()`` reads totals from it; deleting either would give a seq
  twice.
- **The traffic window** (``[guardrails] traffic_window``): a restart rebuilds it from the
  newest that many decisions and activations (``recent_actions``), so only older seqs are
  archived, and an activated decision only when its activation is older than the newest that
  many activations.
- **Requests within their window**: a retried Decide reads its decisions back by seq
  (``find_request``); every decision of a stored request was made at the request's time, so
  decisions made at or after the oldest stored request's time stay.
- **Everything the engine reads by time**, by the ``older_than_days`` floor
  (:meth:`~engine.campaign.config.CampaignConfig.retention_floor`, refused below it naming the
  key): frequency caps and cooldowns (``incentive_times`` since now minus their horizon; an
  activated decision is read at its activation's time, so it must be activated before the cut
  too), the
  request window, and the reward window (a reward retried within it must still find its
  decision, to be answered ``duplicate``; after compaction an archived decision's id is
  ``unknown``, refused as before once its window passed).

Lapsed decisions (deferred, never activated: closed by a ``lapsed`` row without a value) were
never delivered: the export leaves them out, so the archive does too. A step deletes those of
its cut with the others but writes none of them to its files nor to the archived totals
(``archived_decisions`` counts served decisions only; meta ``dropped_decisions`` counts the
lapsed ones deleted). Activations leave with their decisions, except the newest (activation
seqs are numbered from it).

The totals a running campaign reads do not change: in the transaction of each delete the
archived decisions are added to ``archived_offers`` (count and cost per chosen offer: budgets,
``offer_totals``) and ``archived_customers`` (count, sum and sum of squares of net rewards per
customer and group: ``lift_sums`` and the lift, whose interval is over customers), and those
reads add them (one statement: a compaction committing meanwhile is counted once). Sums equal
the ones before up to floating-point rounding of the order of addition. ``counts()``:
``decisions`` and ``rewards`` count every row ever journaled, the archived included (the
largest seq), ``pending`` is unchanged (never archived);
:meth:`~engine.journal.base.JournalBackend.archived_decisions` says how many left. The expiry
watermark (meta ``expiry_seq``) and ``first_open_after`` read "decisions after seq N", which
gaps do not change; only closed decisions leave, and those the expiry sweep skips anyway.

Crash safety
------------
Each step moves at most ``batch_rows`` decisions: (1) its intent, the cut and the archive
directory, is committed to meta ``compaction`` (only when no other step's is: a second
compactor finishes the first one's instead); (2) the cut's rows are written, one file per day,
each flushed to disk and renamed into place; (3) one transaction adds them to the archived
totals, deletes them and clears the intent. The cut names the same rows until they are deleted
(rows never change, new ones get larger seqs, and every bound is fixed in the intent), and a
part's name is the seqs of its rows, so a step interrupted anywhere is redone whole by the next
run: its files are written again under the same names, replacing what a crash left, then its
rows are deleted. An archive never holds a row twice, and a row is deleted only after its file
is durable; a crash between (2) and (3) leaves the rows in both places until the rerun. The
interrupted step's archive directory must be given again (another one is refused: its rows are
already in the first).

Space
-----
Deleting frees pages inside the store; :meth:`~engine.journal.base.JournalBackend.reclaim_space`
gives them back: a SQLite journal created by this nbo (``auto_vacuum=INCREMENTAL``) returns
them with ``incremental_vacuum``; an older one reuses them for new rows unless ``vacuum``
(VACUUM, which rewrites the file and turns incremental auto-vacuum on for the next runs);
PostgreSQL runs VACUUM (space reusable) or, with ``vacuum``, VACUUM FULL (given back). Both
full forms make writers wait until they finish.

Examples
--------
>>> import tempfile
>>> from engine.journal.store import Journal
>>> from engine.journal.records import DecisionRow, ModelRow, RewardRow
>>> journal = Journal(":memory:")
>>> cat = journal.catalog("c", ["none", "gift"], ["bias"])
>>> rows = [DecisionRow(f"d{i}", i * 1_000_000, f"u{i}", b"\\0" * 8, "none,gift", "gift", 0.5,
...                     False, False, "v1", 2.0, b"", None, cat) for i in range(1, 6)]
>>> seqs = journal.append_decisions(rows)
>>> _ = journal.append_rewards([RewardRow(f"d{i}", i, 9, 5.0, 3.0, "reward") for i in (1, 2, 3)])
>>> _ = journal.add_model(ModelRow(0, "learned", "{}", None, cat, "LinUCB", 3, 3), blob=b"m")
>>> report = compact_journal(journal, RetentionRules(keep_recent=1), now=86400.0 * 2,
...                          archive_dir=tempfile.mkdtemp(), older_than_days=1.0)
>>> report.archived, journal.counts()["decisions"], journal.offer_totals()["gift"].n_decisions
(2, 5, 5)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from engine.errors import ConfigError, InvalidInputError
from engine.journal.base import JournalBackend
from engine.journal.export import CHUNK_ROWS, LoggedLayout, logged_layout, write_logged
from engine.journal.records import ArchiveCut, ExportedDecision
from engine.journal.schema import COMPACTION_KEY, DROPPED_KEY

if TYPE_CHECKING:
    from engine.campaign.config import CampaignConfig

__all__ = ["CompactReport", "RetentionRules", "check_older_than", "compact_journal"]

DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RetentionRules:
    """What a campaign's engine reads back from its journal, as compaction must keep it.

    Parameters
    ----------
    keep_recent : int
        The newest decisions kept whatever their age (``[guardrails] traffic_window``).
    min_days : float
        The shortest ``older_than_days`` allowed (the longest window read by time).
    why : str
        The key that sets ``min_days`` and why it is read (error messages say it).
    """

    keep_recent: int = 1000
    min_days: float = 0.0
    why: str = ""

    @classmethod
    def from_config(cls, config: CampaignConfig) -> RetentionRules:
        """The rules of a campaign (see :meth:`CampaignConfig.retention_floor`)."""
        days, why = config.retention_floor()
        return cls(keep_recent=config.traffic_window, min_days=days, why=why)


def check_older_than(days: object, rules: RetentionRules, field: str = "older_than_days") -> float:
    """``days`` as a float when it is a finite number > 0 and at least ``rules.min_days``.

    Raises
    ------
    InvalidInputError
        Naming ``field``, what was expected (and the key that sets the minimum) and the value.

    Examples
    --------
    >>> check_older_than(7, RetentionRules(min_days=30, why="reward.window_days = 30: ..."))
    Traceback (most recent call last):
    ...
    engine.errors.InvalidInputError: older_than_days: expected a number of days >= 30 (reward.window_days = 30: ...), got 7
    """  # noqa: E501
    number = days
    if isinstance(days, str):
        try:
            number = float(days)
        except ValueError:
            number = None
    if (
        isinstance(number, bool)
        or not isinstance(number, int | float)
        or not math.isfinite(number)
        or number <= 0
    ):
        raise InvalidInputError(field, "a number of days > 0", days)
    if number < rules.min_days:
        raise InvalidInputError(
            field, f"a number of days >= {rules.min_days:g} ({rules.why})", days
        )
    return float(number)


@dataclass
class CompactReport:
    """What a compaction did.

    Attributes
    ----------
    campaign, archive : str
        The campaign and its archive directory (``DIR/campaign=<name>``).
    older_than_days : float
    before : str
        Decisions made before this time (ISO 8601, UTC) were eligible.
    archived : int
        Decisions moved to the archive, each with its reward (steps of an interrupted run that
        this one finished included); lapsed decisions deleted with them are not counted.
    recovered : int
        Steps of an interrupted compaction that this run finished.
    files : list of str
        Parquet parts written.
    bounds : dict
        The cut's bounds: ``before_us``, ``decision_seq`` (the traffic window and the
        journal's newest decision), ``reward_seq`` (the learner's oldest restorable cursor and
        the newest reward), ``limited_by`` (what held the rewards back) and ``activation_seq``
        (activations of the traffic window: only those below it are archived).
    space : dict
        ``before`` and ``after``: ``bytes`` (the store), ``decisions`` (every decision ever
        journaled, archived included), ``kept`` (those still in the journal) and
        ``bytes_per_decision`` (bytes / decisions: what each decision made so far costs the
        journal).
    reclaimed : str
        How the space was given back (see :meth:`JournalBackend.reclaim_space`); nothing is
        run when nothing was archived, unless asked (``vacuum``).
    more : bool
        Stopped by ``max_steps`` with decisions perhaps left to archive.
    """

    campaign: str
    archive: str
    older_than_days: float
    before: str
    archived: int = 0
    recovered: int = 0
    files: list[str] = field(default_factory=list)
    bounds: dict[str, Any] = field(default_factory=dict)
    space: dict[str, dict[str, float]] = field(default_factory=dict)
    reclaimed: str = ""
    more: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def compact_journal(
    journal: JournalBackend,
    config_or_rules: CampaignConfig | RetentionRules,
    now: float,
    archive_dir: str | Path,
    older_than_days: float,
    *,
    vacuum: bool = False,
    reclaim: bool = True,
    batch_rows: int = CHUNK_ROWS,
    max_steps: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> CompactReport:
    """Move the journal's closed decisions made before ``now - older_than_days`` (and their
    rewards) to Parquet under ``archive_dir``, keeping what the engine still reads (see the
    module docstring), then give the space back.

    Parameters
    ----------
    journal : JournalBackend
        Open for writing; may be the one a running engine uses (each step's delete is one short
        transaction, ``batch_rows`` decisions at most).
    config_or_rules : CampaignConfig or RetentionRules
    now : float
        Unix seconds.
    archive_dir : str or Path
        The archive's root; parts go under ``campaign=<name>/date=YYYY-MM-DD/``.
    older_than_days : float
        At least the rules' ``min_days``.
    vacuum : bool
        Rewrite the store to give all space back (SQLite VACUUM, PostgreSQL VACUUM FULL):
        writers wait until it is done.
    reclaim : bool
        Give the freed space back at the end (:meth:`JournalBackend.reclaim_space`); a caller
        that compacts a few steps at a time may do it less often (PostgreSQL's autovacuum
        reclaims on its own).
    batch_rows : int
        Most decisions per step (per Parquet write and delete transaction).
    max_steps : int, optional
        Stop after this many steps (``report.more`` then says whether some may be left): a
        background caller bounds each call's work. An interrupted step is finished anyway.
    progress : callable, optional
        Called with the number of decisions archived after each step.

    Raises
    ------
    InvalidInputError
        For an ``older_than_days`` that is not a number > 0 or below the rules' minimum.
    ConfigError
        When an interrupted step's archive directory is not ``archive_dir``, or the archive
        holds parts over other feature names.
    """
    rules = (
        config_or_rules
        if isinstance(config_or_rules, RetentionRules)
        else RetentionRules.from_config(config_or_rules)
    )
    days = check_older_than(older_than_days, rules)
    if batch_rows < 1:
        raise InvalidInputError("batch_rows", "an integer >= 1", batch_rows)
    before_us = int(now * 1e6) - round(days * DAY_US)
    root = Path(archive_dir)
    report = CompactReport(
        campaign="",
        archive=str(root),
        older_than_days=days,
        before=_iso(before_us),
    )
    report.space["before"] = _space(journal)
    if not journal.catalogs():  # nothing was ever decided
        report.reclaimed = "none (empty journal)"
        report.space["after"] = report.space["before"]
        return report
    layout = logged_layout(journal)
    report.campaign = layout.campaign
    parts = root / f"campaign={layout.campaign}"
    report.archive = str(parts)
    _check_archive_features(parts, layout)
    mover = _Mover(journal, layout, root, report, progress)

    stored = journal.get_meta(COMPACTION_KEY)
    if stored is not None:  # a step of an interrupted run: finish it first
        mover.step(stored, recovering=True)

    bounds = journal.retention_bounds(rules.keep_recent)
    # decisions: older than the traffic window (recent_seq is its oldest; 0: it is not full)
    through = max(bounds.recent_seq - 1, 0)
    # rewards: at most the oldest cursor recovery could restart from, never the newest
    if bounds.model_seq is None:
        reward_seq, limited_by = 0, "no model version with kept bytes"
    elif bounds.model_seq < bounds.last_reward_seq:
        reward_seq, limited_by = bounds.model_seq, "the oldest kept model's last_reward_seq"
    else:
        reward_seq, limited_by = max(bounds.last_reward_seq - 1, 0), "the newest reward"
    if bounds.request_us is not None and bounds.request_us < before_us:
        before_us = bounds.request_us  # the oldest stored request's decisions stay
    # The scan walks decisions in seq order and the time is not indexed: stop it where the
    # decisions get too young instead of walking the retained months on every run.
    through = _last_made_before(journal, before_us, through)
    report.bounds = {
        "before_us": before_us,
        "decision_seq": through,
        "reward_seq": reward_seq,
        "limited_by": limited_by,
        "activation_seq": bounds.recent_activation_seq,
    }
    cut = ArchiveCut(
        0,
        through,
        before_us,
        reward_seq,
        tuple(sorted(layout.catalogs)),
        activation_seq=bounds.recent_activation_seq,
    )
    steps = 0
    while cut.through_seq > cut.after_seq and cut.reward_seq > 0:
        if max_steps is not None and steps >= max_steps:
            report.more = True
            break
        intent = _intent(cut, batch_rows, root)
        stored = journal.begin_archive(intent)
        if stored != intent:  # another process's step is pending: finish it, then look again
            mover.step(stored, recovering=True)
            continue
        done = mover.step(intent, recovering=False)
        steps += 1
        if done.rows < batch_rows:  # the cut is exhausted
            break
        cut = cut._replace(after_seq=done.through_seq)
    if vacuum or (reclaim and report.archived):
        report.reclaimed = journal.reclaim_space(full=vacuum)
    else:
        report.reclaimed = "none (nothing archived)" if reclaim else "none (not asked)"
    report.space["after"] = _space(journal)
    return report


def _last_made_before(journal: JournalBackend, before_us: int, through: int) -> int:
    """The largest seq up to ``through`` whose decision was made before ``before_us``, by
    bisection over seqs (O(log n) lookups; seq order is commit order, nearly time order).

    Where clocks of replicas disagree the times are not quite monotone in seq; the bound may
    then stop short of old decisions behind a young one (archived once that one is old too)
    but never lets a young one through: the cut still checks every decision's time.
    """
    low, high = 0, through
    while low < high:
        middle = (low + high + 1) // 2
        found = journal.first_open_after(middle - 1)  # the first decision at or after it
        if found is None or found[0] > high:
            high = middle - 1
        elif found[1] < before_us:
            low = found[0]
        else:
            high = middle - 1
    return low


@dataclass(eq=False)
class _Mover:
    """Runs compaction steps from their intents (the same code for a new and a recovered one)."""

    journal: JournalBackend
    layout: LoggedLayout
    root: Path
    report: CompactReport
    progress: Callable[[int], None] | None

    def step(self, intent: str, recovering: bool) -> ArchiveCut:
        """Select the intent's rows, write their parts, delete them; the cut as finished."""
        cut, limit, archive = _parse_intent(intent)
        if Path(archive).resolve() != self.root.resolve():
            raise ConfigError(
                f"archive: expected {archive} (an interrupted compaction step wrote its rows "
                f"there; run again with --archive {archive} to finish it), got {self.root}"
            )
        rows = self.journal.archivable(cut, limit)
        misfit = next((r for r in rows if not self.layout.fits(r)), None)
        if misfit is not None:
            raise ConfigError(
                f"archive: expected the decisions of an interrupted compaction step to be over "
                f"the journal's feature names {self.layout.feature_names}, got decision "
                f"{misfit.decision_id} over another catalog; finish it with the nbo that began it"
            )
        served = [r for r in rows if r.served]  # a lapsed one was never delivered: not archived
        files = self._write(served)
        done = cut._replace(through_seq=rows[-1].seq if rows else cut.after_seq, rows=len(rows))
        if self.journal.finish_archive(intent, done) and rows:
            self.report.archived += len(served)
            self.report.recovered += int(recovering)
            self.report.files.extend(str(f) for f in files)
            if self.progress is not None:
                self.progress(len(served))
        return done

    def _write(self, rows: Sequence[ExportedDecision]) -> list[Path]:
        """One part per UTC day, named by the seqs of its first and last rows."""
        by_day: dict[str, list[ExportedDecision]] = {}
        for row in rows:
            by_day.setdefault(_day(row.ts_us), []).append(row)
        written = []
        parts = self.root / f"campaign={self.layout.campaign}"
        for day, group in by_day.items():
            name = f"part-{group[0].seq:012d}-{group[-1].seq:012d}.parquet"
            path = parts / f"date={day}" / name
            written.append(write_logged(path, self.layout.schema, [self.layout.table(group)]))
        return written


def _intent(cut: ArchiveCut, limit: int, root: Path) -> str:
    return json.dumps(
        {
            "cut": [cut.after_seq, cut.through_seq, cut.before_us, cut.reward_seq],
            "activation_seq": cut.activation_seq,
            "catalogs": list(cut.catalogs),
            "limit": limit,
            "archive": str(root.resolve()),
        },
        sort_keys=True,
    )


def _parse_intent(intent: str) -> tuple[ArchiveCut, int, str]:
    try:
        value = json.loads(intent)
        after, through, before_us, reward_seq = (int(v) for v in value["cut"])
        catalogs = tuple(int(c) for c in value["catalogs"])
        # an intent stored before activations (an interrupted step) archives no activated one
        activation_seq = int(value.get("activation_seq", 0))
        return (
            ArchiveCut(after, through, before_us, reward_seq, catalogs, 0, activation_seq),
            int(value["limit"]),
            str(value["archive"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"journal meta {COMPACTION_KEY}: expected a compaction step's intent, got "
            f"{intent[:80]!r} ({exc})"
        ) from None


def _check_archive_features(parts: Path, layout: LoggedLayout) -> None:
    """Refuse an archive whose parts have another context (a feature change since)."""
    existing = next(parts.glob("date=*/part-*.parquet"), None)
    if existing is None:
        return
    metadata = pq.read_schema(existing).metadata or {}
    names = json.loads(metadata.get(b"nbo.feature_names", b"[]"))
    if names != layout.feature_names:
        raise ConfigError(
            f"archive: expected parts over the journal's feature names {layout.feature_names} "
            f"in {parts}, got {existing.name} over {names}; archive to a new directory (one "
            "dataset has one context width)"
        )


def _space(journal: JournalBackend) -> dict[str, float]:
    size = journal.storage_bytes()
    decisions = journal.counts()["decisions"]
    dropped = int(journal.get_meta(DROPPED_KEY) or 0)
    kept = decisions - journal.archived_decisions() - dropped
    return {
        "bytes": size,
        "decisions": decisions,
        "kept": kept,
        "bytes_per_decision": round(size / decisions, 1) if decisions else 0.0,
    }


def _day(ts_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=ts_us)).date().isoformat()


def _iso(ts_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=ts_us)).isoformat().replace("+00:00", "Z")
