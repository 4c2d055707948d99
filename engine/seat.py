"""This process's place among a campaign's processes: the leading learner, a standby, or a
decide replica (docs/architecture.md, "Replicas and the learner"), and the guardrail state the
deciding processes share through the journal.

:class:`Seat` holds the campaign's model as this process sees it: a
:class:`~engine.journal.learner.Learner` while it holds the learner lock (role ``all``, or the
leading ``learn`` process), else a :class:`~engine.journal.follower.ModelFollower` of the
published versions (role ``decide``, or a standby ``learn`` process). :meth:`Seat.tick` (the
Engine's upkeep) keeps or takes the lock and learns or follows.

:class:`GuardrailSync` counts the decisions other processes journaled into this process's
guardrails, and every activation of a deferred decision (this process's too), two queries per
tick.

Examples
--------
>>> import tempfile
>>> from engine.core import Engine
>>> data = tempfile.mkdtemp()
>>> first = Engine.from_config("examples/renewal.toml", data_dir=data, background=False,
...                            role="learn")
>>> second = Engine.from_config("examples/renewal.toml", data_dir=data, background=False,
...                             role="learn")
>>> first.leading, second.leading
(True, False)
>>> first.close()                # the leader stops: the standby takes the lock on its next tick
>>> second.refresh_model(); second.leading
False
True
>>> second.close()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError
from engine.journal.base import JournalBackend, StaleModelError
from engine.journal.follower import ModelFollower
from engine.journal.leader import RETRY_SECONDS, LeaderLock
from engine.journal.learner import Learner
from engine.journal.recovery import load_encoder, start_learner

if TYPE_CHECKING:
    from engine.campaign import CampaignConfig, Guardrails
    from engine.features import Encoder

__all__ = ["ROLES", "GuardrailSync", "Seat", "check_role"]

ROLES = ("all", "decide", "learn")
SYNC_ROWS = 8192  # decisions (activations) read per query when catching up
_log = logging.getLogger("nbo.engine")
#: A decision or an activation as the guardrails read it: seq, customer, time (us), offer, cost.
_Row = tuple[int, str, int, str, float]


def _pages(fetch: Callable[[int, int], list[_Row]], after: int) -> Iterator[list[_Row]]:
    """The pages of ``fetch(after, SYNC_ROWS)`` (journal rows whose first field is their seq)
    from seq ``after`` on, each read after the caller has handled the one before; a short page
    is the last (both of :class:`GuardrailSync`'s catch-up queries read this way)."""
    while True:
        rows = fetch(after, SYNC_ROWS)
        if not rows:
            return
        yield rows
        if len(rows) < SYNC_ROWS:
            return
        after = rows[-1][0]


def check_role(role: str) -> str:
    """``role`` when it is one of :data:`ROLES`; else ConfigError naming them.

    Examples
    --------
    >>> check_role("decide")
    'decide'
    >>> check_role("both")
    Traceback (most recent call last):
    ...
    engine.errors.ConfigError: role: expected one of all, decide, learn, got 'both'
    """
    if role not in ROLES:
        raise ConfigError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    return role


def led_at(log_lines: Iterable[str]) -> float | None:
    """Unix time at which a process began to lead, read from its JSON log lines (the
    "leading learner" line :class:`Seat` writes carries ``led_at``); None when it never led."""
    for line in log_lines:
        if "leading learner" not in line:
            continue
        try:
            stamp = json.loads(line).get("led_at")
        except (ValueError, AttributeError):
            continue
        if isinstance(stamp, int | float):
            return float(stamp)
    return None


class Seat:
    """The campaign's model in this process, and whether this process leads.

    Parameters
    ----------
    role : {"all", "decide", "learn"}
        See :class:`engine.core.Engine`.
    config, journal, encoder
        The campaign's.
    snapshot_dir : Path or None
        Where the learner exports kept versions.
    lock : lock
        The Engine's decision lock (held while the model is swapped).
    clock : callable
        The Engine's clock.
    reset_model : bool
        ``--reset-model`` for the learner.
    model_wait : float
        Seconds a follower waits at start for a first published model.

    Raises
    ------
    ConfigError
        Role ``all`` while another process holds the learner lock; an unknown role.
    """

    def __init__(
        self,
        role: str,
        config: CampaignConfig,
        journal: JournalBackend,
        encoder: Encoder,
        snapshot_dir: Path | None,
        lock: Any,
        clock: Callable[[], float],
        *,
        reset_model: bool = False,
        model_wait: float = 30.0,
    ) -> None:
        self.role = check_role(role)
        self.config = config
        self._journal = journal
        self._encoder = encoder
        self._lock = lock
        # Leading starts the campaign's learner from the registry and the journal's rewards.
        self._start_learner = partial(
            start_learner,
            config,
            journal,
            encoder,
            snapshot_dir,
            lock,
            clock,
            reset_model=reset_model,
            share_models=role == "learn",
        )
        self._leader: LeaderLock | None = None
        self._checked = 0.0
        try:
            if role != "decide":
                self._leader = journal.try_lead()
            if self._leader is None and role == "all":
                raise ConfigError(
                    f"campaign {config.name}: expected to be the campaign's only learner, got "
                    f"another process holding the learner lock of {journal.location}; serve "
                    "replicas with --role decide (and the learner with --role learn)"
                )
            self.model: Learner | ModelFollower = (
                self._lead() if self._leader else self._follow(model_wait)
            )
        except BaseException:
            self.release()
            raise

    @property
    def leading(self) -> bool:
        """Whether this process is the campaign's learner now."""
        return self._leader is not None

    def _lead(self) -> Learner:
        learner = self._start_learner()
        name = self.config.name
        _log.info(
            "campaign %s: leading learner, model %s (role %s)",
            name,
            learner.version,
            self.role,
            extra={"campaign": name, "role": self.role, "led_at": time.time()},
        )
        return learner

    def _follow(self, wait: float) -> ModelFollower:
        follower = ModelFollower(
            self.config,
            self._journal,
            list(self._encoder.feature_names),
            self._lock,
            wait_seconds=wait,
            role=self.role,
        )
        load_encoder(self._encoder, self._journal.get_meta("encoder"))
        return follower

    def tick(self) -> None:
        """Keep or take the learner lock (at most every RETRY_SECONDS), then learn or follow."""
        if self.role != "decide":
            now = time.monotonic()
            if now - self._checked >= RETRY_SECONDS:
                self._checked = now
                self._check_leadership()
        try:
            self.model.apply()
        except StaleModelError as exc:
            _log.warning("campaign %s: %s; following the registry again", self.config.name, exc)
            self._step_down()

    def refresh(self) -> bool:
        """A follower: load the newest published model now (True when newer). A learner:
        apply journaled rewards and publish when due (False). A standby asks for the lock."""
        if self.role == "learn":
            self._checked = 0.0
            self._check_leadership()
        model = self.model
        if isinstance(model, ModelFollower):
            return model.refresh()
        model.apply()
        return False

    def _check_leadership(self) -> None:
        if self._leader is not None and not self._leader.held():
            _log.warning(
                "campaign %s: learner lock of %s lost; standing by",
                self.config.name,
                self._journal.location,
            )
            self._step_down()
            return
        if self._leader is None:
            lock = self._journal.try_lead()
            if lock is not None:
                try:
                    learner = self._lead()
                except BaseException:
                    lock.release()
                    raise
                with self._lock:  # leading from the moment the learner decides
                    self.model = learner
                    self._leader = lock

    def _step_down(self) -> None:
        """Stop learning (lost lock, or another learner published): follow the registry until
        the lock is ours again."""
        self.release()
        if self._journal.models_with_bytes():
            follower = self._follow(wait=0.0)
            with self._lock:
                self.model = follower

    def require_learner(self, what: str) -> None:
        """Raise FailedPreconditionError unless this process is the leading learner."""
        if isinstance(self.model, ModelFollower):
            self.model.require_learner(what)

    def release(self) -> None:
        """Give the learner lock up (idempotent)."""
        leader, self._leader = self._leader, None
        if leader is not None:
            leader.release()


class GuardrailSync:
    """Counts the decisions other processes journal, and every activation, into this
    process's guardrails.

    Immediate decisions count from their journaling: this process records its own as it
    makes them (:meth:`note` keeps them from being counted twice) and reads the others'
    (``decisions_after``, which leaves deferred ones out). A deferred decision counts from its
    activation, whichever process journaled it: every activation is read from the journal
    (``activations_after``), this process's own included, so a process that activates calls
    :meth:`sync` afterwards (under its lock) instead of recording them itself.

    Parameters
    ----------
    journal : JournalBackend
    guardrails : Guardrails
        This process's (restored from the journal up to ``start_seq`` and
        ``start_activation_seq``).
    offer_index : mapping of offer id to action index
    lock : lock
        The Engine's decision lock: this process's own decisions are noted under it.
    start_seq : int
        The last decision seq the restored state contains.
    start_activation_seq : int, optional
        The last activation seq it contains; None reads the journal's newest now.
    """

    def __init__(
        self,
        journal: JournalBackend,
        guardrails: Guardrails,
        offer_index: Mapping[str, int],
        lock: threading.RLock,
        start_seq: int,
        start_activation_seq: int | None = None,
    ) -> None:
        self._journal = journal
        self._guardrails = guardrails
        self._index = dict(offer_index)
        self._lock = lock
        self._seq = start_seq
        if start_activation_seq is None:
            start_activation_seq = journal.counts()["activations"]
        self._activation_seq = start_activation_seq
        self._own: set[int] = set()

    def note(self, seqs: Iterable[int]) -> None:
        """This process's own immediate decisions (already in its guardrails). Call under the
        lock. Seqs of deferred decisions may be noted too: they are never read back, and are
        forgotten once the cursor passes them."""
        self._own.update(seqs)

    def sync(self) -> int:
        """Record every immediate decision another process journaled and every activation
        (any process's) since the last call; returns how many. Between two calls a process
        does not see the others' decisions (the worst-case overshoot, docs/architecture.md,
        "Replicas and the learner")."""
        return self._sync_decisions() + self._sync_activations()

    def _sync_decisions(self) -> int:
        total = 0
        self._skip_own()
        for rows in _pages(self._journal.decisions_after, self._seq):
            with self._lock:  # an own decision is noted once its append has returned
                own = self._own
                for seq, customer, ts_us, action, cost in rows:
                    if seq in own:
                        own.discard(seq)
                        continue
                    total += self._record(customer, ts_us, action, cost)
                self._seq = rows[-1][0]
                if own:  # seqs at or below the cursor are all read: forget them
                    own.difference_update([q for q in own if q <= self._seq])
        return total

    def _skip_own(self) -> None:
        """Move the cursor past this process's own decisions that follow it directly, without
        reading them back: they are in the guardrails already. A process that is the only one
        writing (the usual case) then reads nothing, where it read every decision it made since
        the last tick (thousands of rows a second under load) while holding the journal.
        A seq another process took (or that nobody took, a gap) stops the skip; the read below
        goes on from there as before."""
        with self._lock:
            own, seq = self._own, self._seq
            while seq + 1 in own:
                seq += 1
                own.discard(seq)
            self._seq = seq

    def _sync_activations(self) -> int:
        total = 0
        for rows in _pages(self._journal.activations_after, self._activation_seq):
            with self._lock:
                for _, customer, ts_us, action, cost in rows:
                    total += self._record(customer, ts_us, action, cost)
                self._activation_seq = rows[-1][0]
        return total

    def _record(self, customer: str, ts_us: int, action: str, cost: float) -> int:
        index = self._index.get(action)
        if index is None:  # an offer no longer in the config
            return 0
        self._guardrails.record(customer, ts_us / 1e6, index, cost)
        return 1
