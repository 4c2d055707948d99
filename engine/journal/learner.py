"""The learner: applies journaled rewards to a training model and publishes immutable snapshots.

Decisions read :attr:`Learner.published`, a copy of the training model that is replaced, never
changed, every ``publish_every_rewards`` rewards or ``publish_every_ms`` milliseconds. Rewards are
applied strictly in the journal's reward order (``rewards.seq``), each exactly once; every
snapshot file records the last reward seq it contains, so a restart loads the newest snapshot and
replays only the rewards after it.

Examples
--------
>>> import tempfile, os, numpy as np
>>> from engine.journal.store import Journal
>>> from engine.policies import LinUCB
>>> j = Journal(os.path.join(tempfile.mkdtemp(), "c.journal.sqlite"))
>>> learner = Learner(LinUCB(2, 1, seed=0), j, {"a": 0, "b": 1}, publish_every_rewards=2,
...                   publish_every_ms=60_000)
>>> learner.version
'v1'
>>> learner.enqueue([(1, np.ones(1).tobytes(), 1, 1.0, 5.0)])
>>> learner.apply(); learner.version, learner.n_applied
('v1', 1)
>>> learner.enqueue([(2, np.ones(1).tobytes(), 0, 1.0, 1.0)])
>>> learner.apply(); learner.version, learner.last_published_seq
('v2', 2)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ResourceExhaustedError
from engine.journal.base import JournalBackend
from engine.journal.snapshot import list_snapshots, write_snapshot
from engine.policies import Policy

# (reward seq, context bytes, action index, propensity, net reward)
LearnItem = tuple[int, bytes, int, float, float]
KEEP_SNAPSHOTS = 5
_log = logging.getLogger("nbo.learner")


class Learner:
    """Owns the training model of one campaign.

    Parameters
    ----------
    policy : Policy
        The starting model (fresh, or loaded from a snapshot).
    journal : JournalBackend
        Read in reward seq order (:meth:`JournalBackend.rewards_after`) on replay.
    offer_index : mapping of offer id to action index
        The current catalog; rewards of offers no longer in it are skipped.
    publish_every_rewards, publish_every_ms : int, float
        Publishing cadence.
    checkpoint_every_rewards : int
        Also write a snapshot file after this many applied rewards (with ``snapshot_dir``).
    snapshot_dir : Path, optional
        Where snapshot files go; None keeps everything in memory.
    header : dict, optional
        Fields copied into every snapshot header (campaign, config hash, features, encoder...).
    swap_lock : lock, optional
        Held while the published reference is replaced (the engine's decision lock), so a
        decision never sees a half-made swap.
    version : int
        Number of the first published version.
    last_seq : int
        Seq of the last reward already contained in ``policy``.
    n_applied : int
        Rewards already contained in ``policy`` (carried into snapshot headers).
    clock : callable returning seconds, optional
        Time source of the ``publish_every_ms`` cadence (default ``time.monotonic``).
    """

    def __init__(
        self,
        policy: Policy,
        journal: JournalBackend,
        offer_index: Mapping[str, int],
        publish_every_rewards: int = 100,
        publish_every_ms: float = 1000.0,
        checkpoint_every_rewards: int = 10000,
        snapshot_dir: Path | None = None,
        header: dict[str, Any] | None = None,
        swap_lock: Any = None,
        version: int = 1,
        last_seq: int = 0,
        n_applied: int = 0,
        clock: Any = None,
    ) -> None:
        self.training = policy
        self.journal = journal
        self.offer_index = dict(offer_index)
        self.publish_every_rewards = publish_every_rewards
        self.publish_every_ms = publish_every_ms
        self.checkpoint_every_rewards = checkpoint_every_rewards
        self.snapshot_dir = snapshot_dir
        self.header = dict(header or {})
        self._swap_lock = swap_lock if swap_lock is not None else threading.Lock()
        self._lock = threading.RLock()
        self._queue: deque[LearnItem] = deque()
        self.n_features = policy.n_features
        self.last_seq = last_seq
        self.n_applied = n_applied
        self._clock = clock if clock is not None else time.monotonic
        self._unpublished = 0
        self._since_checkpoint = 0
        self._version_number = version
        self.version = f"v{version}"
        self.last_published_seq = last_seq
        self._published_at = self._clock()
        self._written: str | None = None
        self.published = policy.copy()

    # ------------------------------------------------------------------ feeding
    def enqueue(self, items: Iterable[LearnItem]) -> None:
        """Queue rewards in journal order. Call under the lock that orders journal writes."""
        self._queue.extend(items)

    def replay(self, batch: int = 4096) -> int:
        """Apply every reward in the journal after :attr:`last_seq` (used at start-up)."""
        total = 0
        for rows in self.journal.rewards_after(self.last_seq, batch=batch):
            items = []
            for seq, context, action, propensity, reward, _catalog in rows:
                index = self.offer_index.get(action)
                if reward is None or index is None or len(context) != 8 * self.n_features:
                    continue
                items.append((int(seq), context, index, float(propensity), float(reward)))
            with self._lock:
                self._apply_items(items)
                self.last_seq = max(self.last_seq, int(rows[-1][0]))
                total += len(items)
        return total

    def apply(self) -> None:
        """Apply queued rewards; publish when the cadence says so."""
        with self._lock:
            queue = self._queue
            # popleft, not a copy and clear: enqueue runs under another lock meanwhile.
            items = [queue.popleft() for _ in range(len(queue))]
            if items:
                self._apply_items(items)
            self._maybe_publish()

    def _apply_items(self, items: list[LearnItem]) -> None:
        if items:
            _, contexts, action_ids, propensities, net_rewards = zip(*items, strict=True)
            X = np.frombuffer(b"".join(contexts), dtype=np.float64).reshape(
                len(items), self.n_features
            )
            actions = np.array(action_ids, dtype=np.int64)
            props = np.array(propensities, dtype=np.float64)
            rewards = np.array(net_rewards, dtype=np.float64)
            self.training.update(X, actions, rewards, props)
            self.last_seq = items[-1][0]
            self.n_applied += len(items)
            self._unpublished += len(items)
            self._since_checkpoint += len(items)

    def _maybe_publish(self) -> None:
        if not self._unpublished:
            return
        elapsed_ms = (self._clock() - self._published_at) * 1000.0
        if self._unpublished >= self.publish_every_rewards or elapsed_ms >= self.publish_every_ms:
            self.publish()
            if self._since_checkpoint >= self.checkpoint_every_rewards:
                try:
                    self.checkpoint()
                except ResourceExhaustedError:
                    # The rewards are journaled and learned; a snapshot only shortens recovery.
                    # Failing the reward call for it would make the client retry a reward that
                    # was applied. The next cadence tick tries again.
                    _log.warning("snapshot not written", exc_info=True)

    # ------------------------------------------------------------------ publishing
    def publish(self, at_least: int = 0) -> str:
        """Publish the training model as a new immutable version now (if it changed).

        The new version number is one more than the larger of the current one and ``at_least``
        (after a crash, versions the lost process published must not be reused).
        """
        with self._lock:
            if not self._unpublished and self.last_published_seq == self.last_seq:
                return self.version
            fresh = self.training.copy()
            with self._swap_lock:
                # Keep the decision stream's random state: a copy of the training model would
                # otherwise rewind it to the training model's (unused) generator.
                fresh.rng_state_ = self.published.rng_state_.copy()
                self.published = fresh
                self._version_number = max(self._version_number, at_least) + 1
                self.version = f"v{self._version_number}"
            self.last_published_seq = self.last_seq
            self._unpublished = 0
            self._published_at = self._clock()
            return self.version

    def install(self, policy: Policy, origin: str) -> str:
        """Make ``policy`` the training and published model (a warm start / promotion)."""
        with self._lock:
            self.apply()
            self.training = policy
            self.header["promoted_from"] = origin
            self._unpublished = 1
            self.last_published_seq = -1
            version = self.publish()
            self.checkpoint()
            return version

    def checkpoint(self) -> str:
        """Write the published version to a snapshot file (if not already written)."""
        with self._lock:
            self.publish()
            self._since_checkpoint = 0
            if self.snapshot_dir is None or self._written == self.version:
                return self.version
            header = dict(
                self.header,
                version=self.version,
                created=time.time(),
                last_reward_seq=self.last_published_seq,
                n_rewards=self.n_applied,
            )
            policy = self.published.copy()
            for folder in (self.snapshot_dir.parent, self.snapshot_dir):
                folder.mkdir(exist_ok=True, mode=0o700)
            write_snapshot(self.snapshot_dir / f"{self.version}.snap", header, policy)
            self._written = self.version
            for old in list_snapshots(self.snapshot_dir)[KEEP_SNAPSHOTS:]:
                old.unlink(missing_ok=True)
            return self.version
