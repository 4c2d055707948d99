"""A decide replica's model: the newest version the campaign's learner published with its bytes.

``nbo serve --role decide`` keeps no learning state: it decides on the newest model version of
the shared registry whose bytes are kept (the learner of the campaign, ``--role learn``, keeps
the bytes of every version it publishes, at most one every 250 ms), checks it as a restart does
(checksum, shapes and parameters before its model is built, offers mapped onto the campaign's,
exploration floor; :func:`~engine.journal.recovery.restore_newest`) and swaps it in under the
decision lock. :meth:`ModelFollower.apply` looks for a newer version at most every
``poll_seconds`` (the Engine's upkeep calls it each tick), so a replica decides on a new version
within ``publish_every_ms`` plus about a second of its publication.

A follower never writes the registry: it cannot promote, roll back or checkpoint
(:class:`~engine.errors.FailedPreconditionError` naming the learner). Its random stream (linear
Thompson sampling's draws, epsilon-greedy's coin) is its own, seeded from the campaign's seed
and the process id, so replicas do not explore in lockstep; the propensity each one logs is
exact for its own draws.

Examples
--------
>>> import tempfile
>>> from engine.core import Engine
>>> data = tempfile.mkdtemp()
>>> learner = Engine.from_config("examples/renewal.toml", data_dir=data, background=False)
>>> replica = Engine.from_config("examples/renewal.toml", data_dir=data, background=False,
...                              role="decide")
>>> replica.model_version == learner.model_version
True
>>> d = replica.decide("c1", {"monthly_price": 30.0, "plan": "basic"})
>>> learner.reward(d.decision_id, 40.0).status      # rewarded through the other process
'applied'
>>> _ = learner.snapshot()                             # publish now, with the model's bytes
>>> replica.refresh_model(), replica.model_version == learner.model_version
(True, True)
>>> replica.close(); learner.close()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from engine.campaign.exploration import apply_exploration
from engine.errors import ConfigError, FailedPreconditionError
from engine.journal.base import JournalBackend
from engine.journal.records import StoredReward
from engine.journal.recovery import model_shape, restore_newest
from engine.journal.registry import ModelRegistry
from engine.kernels.rng import seed_state
from engine.policies import Policy, make_policy

if TYPE_CHECKING:
    from engine.campaign import CampaignConfig

__all__ = ["MODEL_WAIT_SECONDS", "POLL_SECONDS", "ModelFollower"]

POLL_SECONDS = 0.25  # a replica looks for a newer published version this often
MODEL_WAIT_SECONDS = 30.0  # how long a replica waits at start for a learner's first model
_log = logging.getLogger("nbo.follower")


class ModelFollower:
    """The published model of a decide replica (the surface of a Learner that decisions and the
    admin read: ``published``, ``version``, ``number``, ``registry``, ``lock``).

    Parameters
    ----------
    config : CampaignConfig
    journal : JournalBackend
        The campaign's shared journal.
    feature_names : sequence of str
        The campaign's features (a published model over others is not used).
    swap_lock : lock
        The Engine's decision lock, held while the published model is replaced.
    wait_seconds : float
        How long to wait at start for a first version with kept bytes (a learner starting at
        the same time); then ConfigError.
    poll_seconds : float
        Least time between two looks at the registry.
    role : str
        What the errors call this process (``decide``, or ``learn`` for a standby).
    clock : callable, optional
        Monotonic seconds (default ``time.monotonic``).
    """

    def __init__(
        self,
        config: CampaignConfig,
        journal: JournalBackend,
        feature_names: list[str],
        swap_lock: Any,
        *,
        wait_seconds: float = MODEL_WAIT_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        role: str = "decide",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.registry = ModelRegistry(journal)
        self.role = role
        self.share_models = False
        self._swap_lock = swap_lock
        self._lock = threading.RLock()
        self._clock = clock if clock is not None else time.monotonic
        self.poll_seconds = poll_seconds
        self._offer_features = config.policy_offer_features()
        fresh = make_policy(
            config.policy,
            len(config.offer_ids),
            len(feature_names),
            offer_features=self._offer_features,
        )
        self._shape = model_shape(fresh, feature_names, config.offer_ids)
        seed = int(config.policy.get("seed") or 0)
        self._rng = seed_state(abs(hash((seed, os.getpid(), time.time_ns()))))
        self.number = 0
        self.version = "v0"
        self.n_applied = 0
        self.last_published_seq = 0
        self.header: dict[str, Any] = {}
        self.published: Policy = fresh
        deadline = self._clock() + wait_seconds
        while not self._load():
            if self._clock() >= deadline:
                raise ConfigError(
                    f"campaign {config.name}: expected a published model in the journal's "
                    f"registry within {wait_seconds:g} s (start the campaign's learner, "
                    "`nbo serve --role learn`), got none"
                )
            time.sleep(min(self.poll_seconds, 0.5))
        self._polled = self._clock()

    @property
    def lock(self) -> threading.RLock:
        """Held while the published model changes."""
        return self._lock

    def _load(self) -> bool:
        """Swap in the newest usable version with kept bytes if it is newer than ours."""
        kept = self.journal.models_with_bytes()
        if not kept or kept[0].version <= self.number:
            return False
        try:
            row, header, policy, changes = restore_newest(
                self.registry, self.journal, self._shape, self._offer_features
            )
        except ConfigError as exc:
            if self.number == 0:
                raise ConfigError(f"campaign {self.config.name}: {exc}") from None
            _log.warning("campaign %s: newer model not used: %s", self.config.name, exc)
            return False
        if row.version <= self.number:
            return False
        apply_exploration(policy, self.config.policy)
        with self._lock, self._swap_lock:
            policy.rng_state_ = self._rng if self.number == 0 else self.published.rng_state_.copy()
            self.published = policy
            self.number = row.version
            self.version = f"v{row.version}"
            self.n_applied = row.n_rewards
            self.last_published_seq = row.last_reward_seq
            self.header = dict(header)
        if changes:
            _log.info("campaign %s: model %s adapted: %s", self.config.name, self.version, changes)
        return True

    def apply(self, committed: Sequence[StoredReward] = ()) -> None:
        """Look for a newer published version (at most every ``poll_seconds``). A replica
        learns nothing itself: ``committed`` (the rewards it journaled, see
        :meth:`Learner.apply <engine.journal.learner.Learner.apply>`) is the learner's to
        read."""
        now = self._clock()
        if now - self._polled >= self.poll_seconds:
            self._polled = now
            self._load()

    def refresh(self) -> bool:
        """Look now; True when a newer version was swapped in."""
        self._polled = self._clock()
        return self._load()

    def _refuse(self, what: str) -> FailedPreconditionError:
        who = "a decide replica" if self.role == "decide" else "a standby learner"
        return FailedPreconditionError(
            f"campaign {self.config.name}: expected the campaign's leading learner to {what}, "
            f"got {who} (nbo serve --role {self.role}); send it to the process serving with "
            "--role learn (the leader) or --role all"
        )

    def checkpoint(self) -> str:
        """Nothing to keep: the learner keeps the bytes. Returns the live version."""
        return self.version

    def install(self, policy: Policy, kind: str, origin: dict[str, Any], n_rewards: int) -> str:
        """Refused: only the learner changes the model."""
        raise self._refuse(f"install a {kind} model")

    def require_learner(self, what: str) -> None:
        """Raise FailedPreconditionError: this process does not learn."""
        raise self._refuse(what)
