"""What a journal backend is: the methods the engine, the learner, the reward ledger, recovery,
the Parquet export and the lift report call, and the guarantees each of them relies on.

:class:`engine.journal.store.Journal` (SQLite, WAL) is the embedded backend. A second backend
(PostgreSQL, shared by several decide replicas and one learner per campaign) implements the same
protocol and passes the same contract suite (``tests/engine/test_journal.py``, whose ``backend``
fixture is parametrized over the backends).

Guarantees every backend keeps
------------------------------
- Durable before return: a write method returns only after its rows are committed; a process
  killed at any point after the return loses none of them.
- All or nothing: each write method is one transaction; when it raises, none of its rows are
  stored. Failing to write (a full disk, a read-only store, a lost server) raises
  :class:`~engine.errors.ResourceExhaustedError` naming the journal.
- Unique keys: decision ids are unique, and there is at most one reward per decision. A row
  that breaks either is refused with :class:`DuplicateError` and none of its batch is kept,
  whichever process wrote the first one (two replicas racing on one reward: one wins).
- Sequence numbers: every decision, every reward and every activation gets a ``seq``, positive
  and increasing in commit order (each table numbers its own). The reward seq is the learner's
  order: :meth:`JournalBackend.rewards_after` never returns a reward whose seq is below one it
  has already returned, so a learner that remembers the last seq it applied applies every
  reward exactly once, in the same order on every replay.
- Rows are never deleted or changed once committed, except: meta values (replaced), requests
  (deleted by :meth:`JournalBackend.prune_requests` once their window passed; their decisions
  stay), the per-period counts of rejected rewards (added to), the model bytes the registry
  no longer needs (deleted, never rewritten) and the closed decisions a compaction moved to its
  archive with their rewards (:meth:`JournalBackend.finish_archive`: deleted in the
  transaction that adds them to the archived totals, so :meth:`JournalBackend.offer_totals`,
  :meth:`JournalBackend.lift_sums` and ``counts()``'s totals do not change; see
  :mod:`engine.journal.compact` for what is never archived). The newest decision, the newest
  reward and the newest activation are never deleted: new seqs are numbered from them.
- Deferred activation: a decision journaled ``deferred`` is inactive. It counts nowhere
  (budgets and caps: :meth:`JournalBackend.offer_totals`, :meth:`JournalBackend.recent_actions`,
  :meth:`JournalBackend.incentive_times`, :meth:`JournalBackend.decisions_after`; lift; the
  learner; the export) until :meth:`JournalBackend.activate` journals its activation, then
  counts as of the activation's time (:meth:`JournalBackend.activations_after` tells other
  processes). One never activated lapses at its expiry: a reward row of source ``lapsed``
  without a value, which no read counts as a reward (:meth:`JournalBackend.rewards_after`
  skips it). An activation and a lapse of the same decision are serialized: at most one of
  them is stored (the second raises :class:`DuplicateError`, or answers ``expired``). Rewards
  of source ``reward`` or ``expired`` are appended only for served decisions (immediate, or
  activated): the reward ledger checks, the backend does not.
- Idempotent requests: a request id is stored in the transaction of the decisions it made, so
  a retry finds either all of them or none (:meth:`JournalBackend.append_request`).
- Rejected rewards cost O(periods), not O(reports): :meth:`JournalBackend.record_errors` adds to
  one count per reason and ERROR_PERIOD_US period and keeps at most ERROR_SAMPLES reports of each
  (reason, period) for audit; ``counts()["reward_errors"]`` is the sum of the counts.
- Model versions (the registry, :mod:`engine.journal.registry`): :meth:`JournalBackend.add_model`
  numbers a version one above every version stored by any process, so a number is never given
  twice, and a model's ``last_reward_seq`` commits in the same transaction as its row.

Examples
--------
>>> from engine.journal.store import Journal
>>> isinstance(Journal(":memory:"), JournalBackend)
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from engine.errors import NboError
from engine.journal import records
from engine.journal.leader import LeaderLock

__all__ = [
    "ERROR_PERIOD_US",
    "ERROR_SAMPLES",
    "DuplicateError",
    "JournalBackend",
    "ModelBlob",
    "StaleModelError",
]

ERROR_PERIOD_US = 60_000_000  # rejected rewards are counted per reason and minute
ERROR_SAMPLES = 100  # reports kept for audit per reason and period
# a model's bytes for ``add_model``: none, the bytes, or a function of the new version number
ModelBlob = bytes | Callable[[int], bytes] | None


class DuplicateError(NboError, ValueError):
    """A decision id already stored, or a reward for a decision that already has one (nothing
    of that batch was stored)."""


class StaleModelError(NboError, RuntimeError):
    """A learner tried to publish over a version it did not make: another learner published
    since (it lost its leadership, see :mod:`engine.journal.leader`). Nothing was stored."""


@runtime_checkable
class JournalBackend(Protocol):
    """The durable decision/reward journal of one campaign (see the module's guarantees)."""

    #: How messages name the journal (a path, or a URL without its password and the campaign).
    location: str

    # ------------------------------------------------------------------ catalogs and meta
    def catalog(self, campaign: str, offer_ids: Sequence[str], feature_names: Sequence[str]) -> int:
        """Id of the catalog (campaign, offer ids in order, feature names in order), added if
        new. The same triple always gives the same id, from any process."""
        ...

    def catalogs(self) -> dict[int, tuple[str, list[str], list[str]]]:
        """Every catalog: id -> (campaign, offer ids, feature names). Larger ids are newer."""
        ...

    def get_meta(self, key: str) -> str | None:
        """The value last stored under ``key``, or None."""
        ...

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` (replacing any earlier value), durably."""
        ...

    def set_meta_once(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless a value is stored there already; return the
        stored value (the first writer's, whichever process it was)."""
        ...

    def try_lead(self) -> LeaderLock | None:
        """The campaign's learner lock (see :mod:`engine.journal.leader`), or None while
        another process (or another open journal of this process) holds it."""
        ...

    # ------------------------------------------------------------------ writes
    def append_decisions(self, rows: Sequence[records.DecisionRow]) -> list[int]:
        """Store decisions in one transaction; return their seqs in row order. A decision id
        already stored raises :class:`DuplicateError`."""
        ...

    def append_rewards(self, rows: Sequence[records.RewardRow]) -> list[int]:
        """Store rewards in one transaction; return their seqs in row order (the learner's
        order). A decision that already has a reward raises :class:`DuplicateError`."""
        ...

    def append_request(
        self, request: records.RequestRow, rows: Sequence[records.DecisionRow]
    ) -> list[int]:
        """Store decisions (as :meth:`append_decisions`) and the request that made them, in one
        transaction; return the decisions' seqs in row order. A request id the campaign already
        has raises :class:`DuplicateError` and stores nothing (a replica racing on the same
        request won: :meth:`find_request` gives its decisions)."""
        ...

    def find_request(self, campaign: str, request_id: str) -> records.StoredRequest | None:
        """The campaign's stored request with this id and its decisions in the request's row
        order, or None (never stored, or pruned)."""
        ...

    def prune_requests(self, before_us: int) -> int:
        """Delete the requests made before ``before_us`` (their decisions stay); return how many
        were deleted. Their ids may then be used again."""
        ...

    def record_errors(self, rows: Sequence[records.RewardError]) -> None:
        """Count rejected reward reports per ``error`` and ERROR_PERIOD_US period of ``ts_us``,
        keeping at most ERROR_SAMPLES of them per (error, period) for audit; one transaction."""
        ...

    def activate(
        self, decision_ids: Sequence[str], ts_us: int, cutoff_us: int | None = None
    ) -> list[str]:
        """Journal the activation at ``ts_us`` of deferred decisions, in one transaction; return
        the status of each id in order: ``activated`` (journaled now), ``duplicate`` (activated
        before, or earlier in the list), ``unknown`` (no such decision), ``expired`` (closed, or
        made at or before ``cutoff_us``: its reward window passed) or ``immediate`` (not
        deferred: it counted from the start, nothing to do). Only ``activated`` ids change
        anything (:data:`~engine.journal.records.ACTIVATION_STATUSES`)."""
        ...

    # ------------------------------------------------------------------ the reward ledger
    def lookup(self, decision_ids: Sequence[str]) -> dict[str, records.StoredDecision]:
        """Stored decisions by id, with their reward and activation status; unknown ids are
        absent."""
        ...

    def first_open_after(self, seq: int) -> tuple[int, int] | None:
        """(seq, ts_us) of the first decision with a seq above ``seq``, or None."""
        ...

    def due_for_expiry(
        self, after_seq: int, cutoff_us: int, limit: int
    ) -> tuple[list[records.StoredDecision], int]:
        """Unrewarded decisions after ``after_seq`` made at or before ``cutoff_us``.

        Scans at most ``limit`` decisions in seq order and stops at the first one made after
        the cutoff. Returns the due decisions and the seq the scan reached (every decision up
        to it is rewarded or in the returned list); ``after_seq`` when nothing was scanned.
        """
        ...

    # ------------------------------------------------------------------ the learner
    def rewards_after(self, seq: int, batch: int = 4096) -> Iterator[list[records.StoredReward]]:
        """Every reward with a seq above ``seq``, joined to its decision, in seq order, in
        lists of at most ``batch``; lapses (source ``lapsed``) are not rewards and are left
        out."""
        ...

    def outcomes_after(self, seq: int, batch: int = 4096) -> Iterator[list[records.Outcome]]:
        """Every reward with a seq above ``seq`` with its decision's customer, group, cost,
        reasons and model version, in seq order, in lists of at most ``batch`` (the lift
        monitor's feed); lapses are left out, as by :meth:`rewards_after`."""
        ...

    def last_reward_seq(self) -> int:
        """The largest reward seq (0 without rewards)."""
        ...

    # ------------------------------------------------------------------ recovery
    def latest_model_version(self) -> str | None:
        """The model version of the newest decision (None without decisions): versions a lost
        process published must not be reused after a restart."""
        ...

    def offer_totals(self, since_us: int | None = None) -> dict[str, records.OfferTotals]:
        """Per chosen offer id: how many served decisions (immediate, or deferred and
        activated) chose it and their summed cost (budgets), archived decisions included; one
        snapshot (a compaction is counted once). With ``since_us``: those counted from then on
        (at their time, or their activation's), for the daily budgets."""
        ...

    def recent_actions(self, n: int) -> list[str]:
        """Chosen offer ids of the newest ``n`` served decisions, oldest first (the traffic
        window): immediate ones by their time, activated ones by their activation's."""
        ...

    def decisions_after(self, seq: int, limit: int) -> list[tuple[int, str, int, str, float]]:
        """(seq, customer_id, ts_us, action, cost) of at most ``limit`` immediate (not deferred)
        decisions with a seq above ``seq``, in seq order: what replicas tell each other's
        guardrails (deferred ones come from :meth:`activations_after`)."""
        ...

    def activations_after(self, seq: int, limit: int) -> list[tuple[int, str, int, str, float]]:
        """(activation seq, customer_id, activation ts_us, action, cost) of at most ``limit``
        activations with a seq above ``seq``, in seq order: deferred decisions as they come to
        count, for every process's guardrails."""
        ...

    def incentive_times(self, since_us: int, control_offer: str) -> Iterator[tuple[str, int, str]]:
        """(customer_id, ts_us, action) of every served decision counted after ``since_us``,
        outside the control group, whose offer is not ``control_offer`` (frequency caps,
        cooldowns):
        immediate ones at their time in seq order, then activated ones at their activation's
        time in activation order (a customer's times are not sorted across the two)."""
        ...

    # ------------------------------------------------------------------ the model registry
    def add_model(
        self,
        row: records.ModelRow,
        blob: ModelBlob = None,
        at_least: int = 0,
        expect_newest: int | None = None,
    ) -> int:
        """Store a model version (and its bytes, when given: bytes, or a function of the new
        number returning them, so bytes may name their own version) in one transaction and
        return its number: one more than the largest stored number and than ``at_least``.
        With ``expect_newest``, raise :class:`StaleModelError` (storing nothing) unless the
        largest stored number is that one (a learner's fence, see :mod:`engine.journal.leader`)."""
        ...

    def keep_model_bytes(self, version: int, blob: bytes) -> bool:
        """Keep the bytes of a stored version; False when already kept. Bytes once kept are
        never replaced: other bytes for the version raise :class:`DuplicateError`."""
        ...

    def prune_model_bytes(self, keep_learned: int) -> int:
        """Delete model bytes the registry need not keep: those of initial and learned versions
        other than the newest ``keep_learned`` of them that have bytes, and other than the
        parents of promoted and rollback versions. Returns how many were deleted."""
        ...

    def models(self, before: int | None = None, limit: int = 1000) -> list[records.StoredModel]:
        """At most ``limit`` registry rows with a version below ``before``, newest first."""
        ...

    def models_with_bytes(self) -> list[records.StoredModel]:
        """Registry rows whose bytes are kept, newest first."""
        ...

    def model(self, version: int) -> records.StoredModel | None:
        """The registry row of ``version``, or None."""
        ...

    def model_bytes(self, version: int) -> bytes | None:
        """The kept bytes of ``version`` (None when pruned or never kept)."""
        ...

    # ------------------------------------------------------------------ reports
    def decisions_for_export(
        self, after_seq: int, limit: int, closed_only: bool = False
    ) -> list[records.ExportedDecision]:
        """At most ``limit`` served decisions (immediate, or deferred and activated: one never
        activated was not delivered and is left out) with a seq above ``after_seq``, in seq
        order, with their net reward (None while pending); only rewarded ones with
        ``closed_only``."""
        ...

    def lift_sums(self) -> dict[bool, records.GroupSums]:
        """Net-reward sums of closed served decisions (a reward that is not None) by control
        flag, archived decisions included; a group without any is absent."""
        ...

    def counts(self) -> dict[str, int]:
        """``decisions``, ``rewards`` (every one ever journaled, archived ones included; lapses
        too), ``pending`` (decisions without a reward row: never archived), ``reward_errors``
        (every rejected report counted, not only the samples kept), ``inactive`` (of the
        pending: deferred and not activated) and ``activations`` (every one ever journaled).
        Cheap: metrics read it while decisions run."""
        ...

    # ------------------------------------------------------------------ retention
    def retention_bounds(self, keep_recent: int) -> records.RetentionBounds:
        """In one snapshot: the seq of the oldest of the newest ``keep_recent`` decisions (0 with
        fewer), the least ``last_reward_seq`` of the registry's versions with kept bytes (None
        without any), the largest reward seq, the time of the oldest stored request and the seq
        of the oldest of the newest ``keep_recent`` activations (0 with fewer)."""
        ...

    def archivable(self, cut: records.ArchiveCut, limit: int) -> list[records.ExportedDecision]:
        """At most ``limit`` of the decisions ``cut`` names (closed ones: each has its reward),
        in seq order, as :meth:`decisions_for_export` gives them, lapsed ones included
        (``served`` false: deleted with the others, never archived)."""
        ...

    def begin_archive(self, intent: str) -> str:
        """Store a compaction step's ``intent`` (meta ``compaction``) unless another step's is
        stored; return the stored one, committed (equal to ``intent`` when this one was)."""
        ...

    def finish_archive(self, intent: str, cut: records.ArchiveCut) -> bool:
        """In one transaction: add the served decisions ``cut`` names to the archived totals
        (per offer, per customer and group), delete them all with their rewards and
        activations (the newest activation stays) and clear the intent. False, with nothing
        done, when ``intent`` is no longer the stored one (another process finished that
        step). Raises CorruptModelError, with
        nothing done, when the cut no longer names ``cut.rows`` decisions."""
        ...

    def archived_decisions(self) -> int:
        """How many served decisions (each with its reward) compactions moved to an archive
        (lapsed ones they deleted are counted in meta ``dropped_decisions``)."""
        ...

    def archived_customers(self) -> Iterator[records.ArchivedCustomer]:
        """Per group and customer: the archived closed decisions with a net reward, counted
        and summed (the lift's per-customer interval)."""
        ...

    def storage_bytes(self) -> int:
        """Bytes the journal takes on its store (SQLite: the file and its WAL; PostgreSQL: the
        campaign schema's tables with their indexes and TOAST)."""
        ...

    def reclaim_space(self, full: bool = False) -> str:
        """Give the space of deleted rows back to the file system where the store allows it
        without blocking writers; ``full`` rewrites the store to do so in any case (SQLite
        VACUUM, PostgreSQL VACUUM FULL: both keep writers waiting until done). Returns what
        was run."""
        ...

    # ------------------------------------------------------------------ upkeep
    def checkpoint(self) -> None:
        """Periodic housekeeping, called from a background thread off the decision path
        (SQLite copies its WAL into the database); may do nothing."""
        ...

    def close(self) -> None:
        """Release the store; committed rows stay durable."""
        ...
