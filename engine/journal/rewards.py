"""Joining late rewards to journaled decisions, and expiring decisions past their window.

For each reported (decision_id, value): the stored decision is looked up in the journal; a
decision already rewarded gives status ``duplicate`` (the first value stands); an unknown id gives
``unknown``; a decision past its reward window (whether or not a sweep has closed it yet) gives
``expired``. Unknown and expired reports are kept in the journal's ``reward_errors``. A new reward
is journaled with its net reward (:meth:`CampaignConfig.net_reward`); the learner reads it from
the journal in reward seq order (:meth:`~engine.journal.learner.Learner.apply`), whichever
replica journaled it.

Deferred decisions (journaled inactive, see :meth:`RewardLedger.activate`): a report for one
not activated yet gives ``inactive`` (kept in ``reward_errors``, nothing journaled or learned);
once activated it is rewarded as any other, within the decision's window (which runs from the
decision, not from the activation).

Expiry closes every decision older than the window: it gets the configured default value (the
same net-reward rule applies) or no reward at all, and later reports for it are ``expired``. A
deferred decision never activated lapses instead, "unflagged": no value, source ``lapsed``,
which the learner, the lift and the export never count.
Nothing per pending decision is held in memory: pending decisions are the journal's decisions
without a reward row, and a watermark (the ``expiry_seq`` meta key) marks how far sweeps got.

Callers hold the lock that orders journal writes (the Engine's decision lock). Replicas sharing
one journal (PostgreSQL) can still race: two report the same decision, or sweep the same expired
one, between a lookup and a commit. The journal refuses the second write whole (DuplicateError);
the ledger then looks again, and the decision the other replica closed is a ``duplicate`` (or
``expired``) like any retry.

Examples
--------
>>> import tempfile, os
>>> from engine.core import Engine
>>> clock = [1.7e9]
>>> eng = Engine.from_config("examples/renewal.toml", data_dir=tempfile.mkdtemp(),
...                          clock=lambda: clock[0])
>>> ids = [d.decision_id for d in eng.decide_batch(["a", "b"], [{"monthly_price": 9.0,
...        "plan": "basic"}] * 2)]
>>> clock[0] += 31 * 86400
>>> [r.status for r in eng.reward_batch(ids[:1] + ["nope"], [5.0, 1.0])]
['expired', 'unknown']
>>> eng.journal.counts()["pending"]
0
>>> eng.close()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.journal.base import DuplicateError, JournalBackend
from engine.journal.records import (
    LAPSED,
    RewardError,
    RewardRecord,
    RewardRow,
    StoredDecision,
    StoredReward,
)

if TYPE_CHECKING:
    from engine.campaign.config import CampaignConfig


SWEEP_PAUSE_US = 1_000_000  # at most one on-demand expiry sweep per second (see expire)
RACE_RETRIES = 3  # looks again after another replica wrote first (see the module docstring)


class RewardLedger:
    """Reward join and expiry for one campaign's journal.

    Parameters
    ----------
    config : CampaignConfig
    journal : JournalBackend
    """

    def __init__(self, config: CampaignConfig, journal: JournalBackend) -> None:
        self.config = config
        self.journal = journal
        self.window_us = int(config.reward_window * 1e6)
        self.expiry_seq = int(journal.get_meta("expiry_seq") or 0)
        self.next_due_us = self._next_due()

    def _next_due(self) -> float:
        first = self.journal.first_open_after(self.expiry_seq)
        return math.inf if first is None else first[1] + self.window_us

    def note_decision(self, ts_us: int) -> None:
        """Tell the ledger a decision was journaled at ``ts_us`` (keeps ``next_due_us`` right)."""
        if self.next_due_us == math.inf:
            self.next_due_us = ts_us + self.window_us

    def _net(self, s: StoredDecision, value: float) -> float:
        # CampaignConfig.net_reward inlined (values are validated finite by the caller).
        mode = self.config.charge_cost
        if mode == "never" or (mode == "on_success" and value <= 0):
            return value
        return value - s.cost

    def report(
        self,
        ids: Sequence[str],
        values: Sequence[float],
        now: float,
        components: Sequence[str | None] | None = None,
    ) -> list[RewardRecord]:
        """Join validated rewards to their decisions; journal the new ones (``components``:
        per reward, its components as JSON, or None)."""
        return self.join(ids, values, now, components)[0]

    def join(
        self,
        ids: Sequence[str],
        values: Sequence[float],
        now: float,
        components: Sequence[str | None] | None = None,
    ) -> tuple[list[RewardRecord], list[StoredReward]]:
        """:meth:`report`, and the rewards it journaled as the learner reads them back
        (:meth:`JournalBackend.rewards_after`'s rows, in seq order, lapses included with no
        value), which :meth:`~engine.journal.learner.Learner.apply` takes instead of reading
        them again (docs/performance.md, "The reward path")."""
        attempt = 1
        while True:
            try:
                return self._report(ids, values, now, components)
            except DuplicateError:
                if attempt == RACE_RETRIES:
                    raise
                attempt += 1

    def _report(
        self,
        ids: Sequence[str],
        values: Sequence[float],
        now: float,
        components: Sequence[str | None] | None,
    ) -> tuple[list[RewardRecord], list[StoredReward]]:
        now_us = int(now * 1e6)
        stored = self.journal.lookup(ids)
        results: list[RewardRecord] = []
        rows: list[RewardRow] = []
        errors: list[RewardError] = []
        taken: dict[str, RewardRecord] = {}
        parts = components if components is not None else [None] * len(ids)
        for did, value, part in zip(ids, values, parts, strict=True):
            first = taken.get(did)
            if first is not None:
                again = "expired" if first.status == "expired" else "duplicate"
                results.append(RewardRecord(did, again, first.offer_id, None, first.reward))
                continue
            s = stored.get(did)
            if s is None:
                results.append(RewardRecord(did, "unknown", "", value, None))
                errors.append(RewardError(now_us, did, value, "unknown decision id"))
                continue
            if s.reward_source == "reward":
                results.append(RewardRecord(did, "duplicate", s.action, None, s.reward))
                continue
            if s.reward_source is not None or s.ts_us + self.window_us <= now_us:
                if s.reward_source is None:
                    self._expiry_rows([s], now_us, rows)
                    taken[did] = RewardRecord(did, "expired", s.action, value, None)
                results.append(RewardRecord(did, "expired", s.action, value, None))
                errors.append(RewardError(now_us, did, value, "reward window passed"))
                continue
            if not s.served:  # deferred, not activated (yet): the offer was not delivered
                results.append(RewardRecord(did, "inactive", s.action, value, None))
                errors.append(RewardError(now_us, did, value, "decision not activated"))
                continue
            net = self._net(s, value)
            record = RewardRecord(did, "applied", s.action, value, net)
            taken[did] = record
            results.append(record)
            rows.append(RewardRow(did, s.seq, now_us, value, net, "reward", part))
        seqs = self.journal.append_rewards(rows)
        self.journal.record_errors(errors)
        learned = []
        for seq, row in zip(seqs, rows, strict=True):
            s = stored[row.decision_id]
            learned.append(
                StoredReward(
                    seq, s.context, s.action, s.propensity, row.reward, s.catalog, row.components
                )
            )
        return results, learned

    def _expiry_rows(self, due: list[StoredDecision], now_us: int, rows: list[RewardRow]) -> None:
        default = self.config.default_value
        for s in due:
            if not s.served:  # never activated: lapses without a value, learned from by nobody
                rows.append(RewardRow(s.decision_id, s.seq, now_us, None, None, LAPSED))
                continue
            net = None if default is None else self._net(s, default)
            rows.append(RewardRow(s.decision_id, s.seq, now_us, default, net, "expired"))

    def activate(self, ids: Sequence[str], now: float) -> list[str]:
        """Activate deferred decisions at ``now`` (their offers were delivered): one journal
        transaction; the status of each id (see :meth:`JournalBackend.activate`): a decision
        whose reward window has passed (swept or not) is ``expired``."""
        now_us = int(now * 1e6)
        return self.journal.activate(ids, now_us, cutoff_us=now_us - self.window_us)

    def expire(self, now: float, max_rows: int | None = None) -> tuple[int, bool]:
        """Close decisions made at or before ``now - window``.

        Scans at most about ``max_rows`` decisions when given (callers release their lock
        between calls so a large backlog never stalls decisions). Returns the number expired
        (lapses of never-activated deferred decisions included) and whether more may be due.
        """
        now_us = int(now * 1e6)
        cutoff = now_us - self.window_us
        total = 0
        scanned = 0
        start = self.expiry_seq
        more = False
        races = 0
        while True:
            due, reached = self.journal.due_for_expiry(self.expiry_seq, cutoff, limit=4096)
            if reached == self.expiry_seq:
                break
            rows: list[RewardRow] = []
            self._expiry_rows(due, now_us, rows)
            try:
                self.journal.append_rewards(rows)
            except DuplicateError:
                races += 1
                if races == RACE_RETRIES:
                    raise
                continue  # another replica closed some of them: scan the slice again
            total += len(due)
            scanned += reached - self.expiry_seq
            self.expiry_seq = reached
            if max_rows is not None and scanned >= max_rows:
                more = True
                break
        if self.expiry_seq != start:
            self.journal.set_meta("expiry_seq", str(self.expiry_seq))
        # Under steady traffic the next decision falls due microseconds after this sweep's
        # cutoff: without a pause every reward call would sweep again (two scans of up to 4096
        # journal rows under the decision lock) and throughput fell ~15x once decisions began
        # to expire. A report for a decision past its window is refused as expired anyway.
        pause = min(SWEEP_PAUSE_US, self.window_us // 100)
        self.next_due_us = max(self._next_due(), now_us + pause)
        return total, more
