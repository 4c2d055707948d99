"""The learner: applies journaled rewards to a training model and publishes immutable versions.

Decisions read :attr:`Learner.published`, a copy of the training model that is replaced, never
changed, every ``publish_every_rewards`` rewards or ``publish_every_ms`` milliseconds. Rewards are
read from the journal (:meth:`Learner.apply`: every reward after the learner's cursor, whichever
process journaled it) and applied strictly in the journal's reward order (``rewards.seq``), each
exactly once.

Every publish is a version of the model registry (:mod:`engine.journal.registry`): a
metadata row whose ``last_reward_seq`` is the learner's cursor, numbered by the journal. Every
``checkpoint_every_rewards`` rewards (and at a promotion, a rollback and shutdown) the
published model's bytes are kept with it, so a restart resumes from the newest kept version and
replays only the rewards after its seq. The kept bytes are also exported as a snapshot file
``v<N>.snap`` when the learner has a snapshot directory (a file is never rewritten with other
content). A learner that shares its models with decide replicas (``share_models``, the
``nbo serve --role learn`` process) keeps the bytes of every version it publishes, at most one
every :data:`SHARED_PUBLISH_GAP_MS`, so replicas can load them
(:mod:`engine.journal.follower`).

Every version a learner publishes is fenced (``add_model(..., expect_newest=...)``): it is
stored only while the newest stored version is the learner's own last one, so a learner that
lost its leadership cannot publish over its successor's (:class:`~engine.journal.base.
StaleModelError`).

Examples
--------
>>> import numpy as np
>>> from engine.journal.store import Journal
>>> from engine.policies import LinUCB
>>> from engine.journal.records import DecisionRow, RewardRow
>>> j = Journal(":memory:")
>>> cat = j.catalog("c", ["a", "b"], ["bias"])
>>> learner = Learner(LinUCB(2, 1, seed=0), j, {"a": 0, "b": 1}, publish_every_rewards=2,
...                   publish_every_ms=60_000, catalog=cat)
>>> learner.version
'v1'
>>> def journal_reward(i, offer, value):
...     row = DecisionRow(f"d{i}", i, "c1", np.ones(1).tobytes(), "a,b", offer, 1.0, False,
...                       False, "v1", 0.0, b"", None, cat)
...     seq = j.append_decisions([row])[0]
...     j.append_rewards([RewardRow(f"d{i}", seq, i, value, value, "reward")])
>>> journal_reward(1, "b", 5.0)
>>> learner.apply(); learner.version, learner.n_applied
('v1', 1)
>>> journal_reward(2, "a", 1.0)
>>> learner.apply(); learner.version, learner.last_published_seq
('v2', 2)
>>> [(m.version, m.kind, m.parent) for m in learner.registry.versions()]
[('v2', 'learned', 'v1'), ('v1', 'initial', None)]
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ResourceExhaustedError
from engine.journal.base import JournalBackend
from engine.journal.records import StoredReward
from engine.journal.registry import KEEP_LEARNED, ModelRegistry
from engine.journal.snapshot import encode_snapshot, list_snapshots, write_snapshot_bytes
from engine.policies import Policy, engagement_columns

# (reward seq, context bytes, action index, propensity, net reward, components as JSON or None)
LearnItem = tuple[int, bytes, int, float, float, str | None]
KEEP_SNAPSHOTS = KEEP_LEARNED  # exported snapshot files kept in the snapshot directory
SHARED_PUBLISH_GAP_MS = 250.0  # a sharing learner publishes (with bytes) at most this often
_log = logging.getLogger("nbo.learner")


class Learner:
    """Owns the training model of one campaign.

    Parameters
    ----------
    policy : Policy
        The starting model (fresh, or restored from the registry).
    journal : JournalBackend
        Read in reward seq order (:meth:`JournalBackend.rewards_after`) on replay; holds the
        model registry.
    offer_index : mapping of offer id to action index
        The current catalog; rewards of offers no longer in it are skipped.
    publish_every_rewards, publish_every_ms : int, float
        Publishing cadence.
    checkpoint_every_rewards : int
        Also keep the published model's bytes after this many applied rewards.
    snapshot_dir : Path, optional
        Where kept versions are exported as snapshot files; None writes no file.
    header : dict, optional
        Fields copied into every snapshot header (campaign, config hash, features, encoder...).
    swap_lock : lock, optional
        Held while the published reference is replaced (the engine's decision lock), so a
        decision never sees a half-made swap.
    version : int
        Registry number of ``policy``; 0 registers it as a new ``initial`` version (with its
        bytes).
    last_seq : int
        Seq of the last reward already offered to ``policy`` (the learner's cursor).
    n_applied : int
        Rewards already contained in ``policy``.
    clock : callable returning seconds, optional
        Time source of the ``publish_every_ms`` cadence (default ``time.monotonic``).
    catalog : int
        The journal's catalog id of the current offers and features (what new versions are
        over); replay applies only rewards of decisions whose catalog has the same feature
        names.
    kept : bool
        Whether the registry already keeps the bytes of ``version``.
    share_models : bool
        Keep the bytes of every published version (decide replicas load them), at most one
        version every SHARED_PUBLISH_GAP_MS.
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
        version: int = 0,
        last_seq: int = 0,
        n_applied: int = 0,
        clock: Any = None,
        catalog: int = 0,
        kept: bool = False,
        share_models: bool = False,
    ) -> None:
        self.training = policy
        self.journal = journal
        self.registry = ModelRegistry(journal)
        self.catalog = catalog
        self.offer_index = dict(offer_index)
        self.publish_every_rewards = publish_every_rewards
        self.publish_every_ms = publish_every_ms
        self.checkpoint_every_rewards = checkpoint_every_rewards
        self.snapshot_dir = snapshot_dir
        self.header = dict(header or {})
        self._swap_lock = swap_lock if swap_lock is not None else threading.Lock()
        self._lock = threading.RLock()
        self.share_models = share_models
        self.skipped = 0  # rewards not learnable (other features, removed offers)
        self.n_features = policy.n_features
        self.last_seq = last_seq
        self.n_applied = n_applied
        self._clock = clock if clock is not None else time.monotonic
        self._unpublished = 0
        self._first_unpublished = 0
        self._since_checkpoint = 0
        self.last_published_seq = last_seq
        self._published_at = self._clock()
        self.published = policy.copy()
        self._learnable: dict[int, bool] = {}
        if version <= 0:
            version = self._register("initial", {}, None, blob=True, fence=False)
            kept = True
        self.number = version
        self.version = f"v{version}"
        self._kept = version if kept else 0

    @property
    def lock(self) -> threading.RLock:
        """Held while the model changes (apply, publish, install): hold it to decide on a
        change from the live version without a publish in between."""
        return self._lock

    # ------------------------------------------------------------------ feeding
    def learnable(self, catalog: int) -> bool:
        """Whether contexts of decisions made with ``catalog`` are over the current features
        (same names in the same order: a same-width vector of renamed or reordered features
        would teach the model the wrong thing)."""
        known = self._learnable.get(catalog)
        if known is None:
            catalogs = self.journal.catalogs()
            current = catalogs.get(self.catalog, ("", [], None))[2]
            self._learnable = {c: f == current for c, (_, _, f) in catalogs.items()}
            known = self._learnable.get(catalog, False)
        return known

    def replay(self, batch: int = 4096) -> int:
        """Apply every reward in the journal after :attr:`last_seq` whose decision was made
        over the current features and whose offer is still in the catalog (start-up, and each
        :meth:`apply`); returns how many were applied."""
        total = 0
        with self._lock:
            for rows in self.journal.rewards_after(self.last_seq, batch=batch):
                total += self._learn(rows)
        return total

    def _learn(self, rows: Sequence[StoredReward]) -> int:
        """Apply ``rows`` (rewards after :attr:`last_seq`, in seq order) and move the cursor
        to the last one; returns how many were applied (rewards without a value, of removed
        offers or over other features are not)."""
        items = []
        skipped = 0
        for seq, context, action, propensity, reward, catalog, components in rows:
            index = self.offer_index.get(action)
            if reward is None or index is None:
                continue
            if len(context) != 8 * self.n_features or not self.learnable(int(catalog)):
                skipped += 1
                continue
            items.append((int(seq), context, index, float(propensity), float(reward), components))
        self._apply_items(items)
        self.last_seq = max(self.last_seq, int(rows[-1][0]))
        self.skipped += skipped
        return len(items)

    def apply(self, committed: Sequence[StoredReward] = ()) -> None:
        """Apply the rewards journaled since the last call (by any process, in seq order);
        publish when the cadence says so.

        ``committed``: rewards the caller has just journaled, as
        :meth:`JournalBackend.rewards_after` would return them (what
        :meth:`~engine.journal.rewards.RewardLedger.join` gives). When their seqs follow the
        cursor without a gap they are applied as they are, without reading them back; either
        way the journal is then read for anything after them (other processes' rewards, an
        expiry sweep's). Rewards already applied (another thread's apply read them first) or
        after a gap are left to that read, so the order is the journal's in every case.
        """
        with self._lock:
            if committed and _follows(committed, self.last_seq):
                self._learn(committed)
            self.replay()
            self._maybe_publish()

    def _apply_items(self, items: list[LearnItem]) -> None:
        if items:
            _, contexts, action_ids, propensities, net_rewards, parts = zip(*items, strict=True)
            X = np.frombuffer(b"".join(contexts), dtype=np.float64).reshape(
                len(items), self.n_features
            )
            actions = np.array(action_ids, dtype=np.int64)
            props = np.array(propensities, dtype=np.float64)
            rewards = np.array(net_rewards, dtype=np.float64)
            # components are parsed only for a model that learns from them (LandingLift); an
            # engagement out of [0, 1] (journaled before the campaign learned from it) is taken
            # as not reported
            signals = None
            if self.training.engagement_signals():
                signals = engagement_columns(self.training, signal_columns(parts))
            self.training.update(X, actions, rewards, props, signals=signals)
            if not self._unpublished:
                self._first_unpublished = items[0][0]
            self.last_seq = items[-1][0]
            self.n_applied += len(items)
            self._unpublished += len(items)
            self._since_checkpoint += len(items)

    def _maybe_publish(self) -> None:
        if not self._unpublished:
            return
        elapsed_ms = (self._clock() - self._published_at) * 1000.0
        if self.share_models and elapsed_ms < SHARED_PUBLISH_GAP_MS:
            return
        if self._unpublished >= self.publish_every_rewards or elapsed_ms >= self.publish_every_ms:
            try:
                self.publish()
                if self._since_checkpoint >= self.checkpoint_every_rewards:
                    self.checkpoint()
            except ResourceExhaustedError:
                # The rewards are journaled and learned; a version row or its bytes only
                # shorten recovery. Failing the reward call for it would make the client retry
                # a reward that was applied. The next cadence tick tries again.
                _log.warning("model version not stored", exc_info=True)

    # ------------------------------------------------------------------ publishing
    def _register(
        self,
        kind: str,
        origin: dict[str, Any],
        parent: int | None,
        blob: bool = False,
        fence: bool = True,
    ) -> int:
        """A new registry version of :attr:`training` at the current cursor (fenced on
        ``parent`` being the newest stored version, unless ``fence`` is False)."""
        policy = self.training
        encode = None
        if blob:
            frozen = policy.copy()

            def encode(number: int) -> bytes:
                return encode_snapshot(self._header(number), frozen)

        number = self.registry.add(
            kind,
            origin,
            parent,
            self.catalog,
            type(policy).__name__,
            self.last_seq,
            self.n_applied,
            blob=encode,
            expect_newest=parent if fence else None,
        )
        if blob and self.share_models:
            self.journal.prune_model_bytes(KEEP_LEARNED)
        return number

    def _header(self, number: int) -> dict[str, Any]:
        return dict(
            self.header,
            version=f"v{number}",
            created=time.time(),
            last_reward_seq=self.last_seq,
            n_rewards=self.n_applied,
        )

    def _swap(self, number: int) -> None:
        fresh = self.training.copy()
        with self._swap_lock:
            # Keep the decision stream's random state: a copy of the training model would
            # otherwise rewind it to the training model's (unused) generator.
            fresh.rng_state_ = self.published.rng_state_.copy()
            self.published = fresh
            self.number = number
            self.version = f"v{number}"
        self.last_published_seq = self.last_seq
        self._unpublished = 0
        self._published_at = self._clock()

    def publish(self) -> str:
        """Publish the training model as a new immutable version now (if it changed).

        The version is a metadata row of the registry (its number given by the journal),
        stored before decisions see the model, so a decision's ``model_version`` always
        names a registry row.
        """
        with self._lock:
            if not self._unpublished and self.last_published_seq == self.last_seq:
                return self.version
            origin = {"reward_seqs": [self._first_unpublished, self.last_seq]}
            number = self._register("learned", origin, self.number, blob=self.share_models)
            self._swap(number)
            if self.share_models:
                self._kept = number
                self._since_checkpoint = 0
            return self.version

    def refresh(self, origin: dict[str, Any], parent: int | None) -> str:
        """Publish the training model as a new learned version with its bytes kept, whatever
        changed it (a restart that replayed rewards or adapted the restored model)."""
        with self._lock:
            if self._unpublished:
                origin = {"reward_seqs": [self._first_unpublished, self.last_seq], **origin}
            number = self._register("learned", origin, parent, blob=True)
            self._swap(number)
            self._kept = number
            self._since_checkpoint = 0
            self._export()
            return self.version

    def install(self, policy: Policy, kind: str, origin: dict[str, Any], n_rewards: int) -> str:
        """Make ``policy`` the training and published model: a promotion or a rollback.

        The model live before is published and its bytes kept first (so it can be rolled
        back to); the new version keeps its bytes and the learner's cursor: rewards after it
        are learned by the new model, those before it are not re-applied.
        """
        with self._lock:
            self.apply()
            self.checkpoint()
            parent = self.number
            self.training = policy
            self.n_applied = int(n_rewards)
            number = self._register(kind, origin, parent, blob=True)
            self._swap(number)
            self._kept = number
            self._since_checkpoint = 0
            self._export()
            return self.version

    def checkpoint(self) -> str:
        """Keep the published version's bytes in the registry (and export its file)."""
        with self._lock:
            before = self.version
            try:
                # Publishing registers a version (a journal row) before its bytes are kept:
                # a full disk may stop either write, and both are this snapshot's failure.
                self.publish()
                self._since_checkpoint = 0
                if self._kept != self.number:
                    number = self.number
                    blob = encode_snapshot(self._header(number), self.published.copy())
                    self.registry.keep_bytes(number, blob)
                    self._kept = number
            except ResourceExhaustedError as exc:
                raise ResourceExhaustedError(
                    f"snapshot after {before}: expected room to keep the model, got: {exc}"
                ) from exc
            self._export()
            return self.version

    def _export(self) -> None:
        """Write the kept bytes of the live version as ``<snapshot_dir>/v<N>.snap``."""
        if self.snapshot_dir is None:
            return
        path = self.snapshot_dir / f"{self.version}.snap"
        if path.exists():
            return
        data = self.journal.model_bytes(self.number)
        if data is None:
            return
        for folder in (self.snapshot_dir.parent, self.snapshot_dir):
            folder.mkdir(exist_ok=True, mode=0o700)
        write_snapshot_bytes(path, data)
        for old in list_snapshots(self.snapshot_dir)[KEEP_SNAPSHOTS:]:
            old.unlink(missing_ok=True)


def signal_columns(parts: Sequence[str | None]) -> dict[str, np.ndarray]:
    """Rewards' components (JSON text or None, one per reward) as one column per name, NaN
    where a reward lacks it: what :meth:`Policy.update` takes as ``signals``.

    Examples
    --------
    >>> columns = signal_columns(['{"engaged": 1.0}', None, '{"complaints": 1.0, "engaged": 0.0}'])
    >>> {k: v.tolist() for k, v in sorted(columns.items())}
    {'complaints': [nan, nan, 1.0], 'engaged': [1.0, nan, 0.0]}
    """
    out: dict[str, np.ndarray] = {}
    for i, text in enumerate(parts):
        if text is None:
            continue
        for name, value in json.loads(text).items():
            column = out.get(name)
            if column is None:
                column = out[name] = np.full(len(parts), np.nan)
            column[i] = value
    return out


def _follows(rows: Sequence[StoredReward], last_seq: int) -> bool:
    """Whether ``rows``' seqs are exactly ``last_seq + 1``, ``last_seq + 2``, ... (a backend
    numbers one append's rewards consecutively, in commit order)."""
    return rows[0].seq == last_seq + 1 and rows[-1].seq == last_seq + len(rows)
