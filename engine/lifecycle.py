"""Model changes an admin asks for: promotion of a snapshot and rollback to a kept version
(docs/architecture.md, "Model registry"). Only the campaign's leading learner changes the model;
in any other process both are FailedPreconditionError naming the learner.

Examples
--------
>>> from engine.core import Engine
>>> eng = Engine.from_config("examples/renewal.toml", data_dir=None, background=False)
>>> first = eng.model_version
>>> d = eng.decide("c1", {"monthly_price": 30.0, "plan": "basic"})
>>> _ = eng.reward(d.decision_id, 50.0); learned = eng.snapshot()
>>> change = eng.rollback(first, who="doctest")
>>> change.version.kind, change.version.origin["restored"], change.unchanged
('rollback', 1, False)
>>> eng.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Required, TypedDict

from engine.errors import CorruptModelError, FailedPreconditionError, InvalidInputError
from engine.journal.base import JournalBackend
from engine.journal.promotion import Candidate, check_candidate, find_repeat, origin_header
from engine.journal.recovery import model_shape
from engine.journal.registry import ModelVersion
from engine.journal.snapshot import ModelShape

if TYPE_CHECKING:
    from engine.campaign import CampaignConfig
    from engine.features import Encoder
    from engine.policies import Policy
    from engine.seat import Seat

__all__ = ["Evidence", "GateFunction", "ModelChange", "ModelLifecycle", "PromoteOptions"]


class Evidence(Protocol):
    """What a promotion gate found (:class:`engine.replay.gate.PromotionEvidence`)."""

    @property
    def passes(self) -> bool:
        """Whether the candidate beat the live model."""
        ...

    @property
    def reason(self) -> str:
        """One line with the numbers."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


#: ``(live model, candidate model) -> Evidence``: the serving layer passes
#: :func:`engine.replay.gate.promotion_evidence` bound to the campaign's journal.
GateFunction = Callable[["Policy", "Policy"], Evidence]


class PromoteOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`ModelLifecycle.promote_bytes` (defaults there), which
    :meth:`engine.core.Engine.promote_bytes` passes on as they came."""

    file_name: Required[str]
    who: str
    path: str | None
    source: str | None
    gate: GateFunction | None
    force: bool


_log = logging.getLogger("nbo.engine")
_models_log = logging.getLogger("nbo.models")


@dataclass(frozen=True)
class ModelChange:
    """What a promotion or a rollback did: the live version after it, and whether it was a
    no-op (the model asked for was already live)."""

    version: ModelVersion
    unchanged: bool = False


class ModelLifecycle:
    """Promotion and rollback for one campaign's engine.

    Parameters
    ----------
    config : CampaignConfig
    journal : JournalBackend
    encoder : Encoder
        Takes a promoted model's standardization when it brings one.
    seat : Seat
        The campaign's model in this process (must be the leading learner).
    lock : lock
        The Engine's decision lock (held while the encoder changes).
    """

    def __init__(
        self,
        config: CampaignConfig,
        journal: JournalBackend,
        encoder: Encoder,
        seat: Seat,
        lock: threading.RLock,
    ) -> None:
        self.config = config
        self.campaign = config.name
        self._journal = journal
        self._encoder = encoder
        self._seat = seat
        self._lock = lock

    def shape(self) -> ModelShape:
        """What a snapshot must fit to replace the campaign's model."""
        return model_shape(
            self._seat.model.published, self._encoder.feature_names, self.config.offer_ids
        )

    def _check(self, data: bytes, source: str, old_offer_ids: list[str] | None = None) -> Candidate:
        return check_candidate(
            data,
            source,
            campaign=self.campaign,
            feature_names=self._encoder.feature_names,
            offer_ids=self.config.offer_ids,
            policy_spec=self.config.policy,
            old_offer_ids=old_offer_ids,
            offer_features=self.config.policy_offer_features(),
            shape=self.shape(),
        )

    def promote_bytes(
        self,
        data: bytes,
        *,
        file_name: str,
        who: str = "",
        path: str | None = None,
        source: str | None = None,
        gate: GateFunction | None = None,
        force: bool = False,
    ) -> ModelChange:
        """Promote a snapshot's bytes.

        With ``gate``, the snapshot is first evaluated against the live model (the evidence is
        recorded in the new version's origin, ``"evidence"``); one that does not pass is refused
        with FailedPreconditionError (the gate's numbers in the message), unless ``force``
        (recorded as ``"forced": true``).

        The model must be of this campaign and over its features; its offers are mapped onto
        the campaign's (removed offers dropped, new ones added) and it takes the campaign's
        exploration floor and seed. Its shapes and parameters are checked against the campaign
        before it is built. The model live before keeps its bytes (it can be rolled back to).
        Promoting the live model again changes nothing (``unchanged``); promoting bytes an older
        version had makes a new version whose origin says it repeats that one (see
        :mod:`engine.journal.promotion`). Logged at INFO and journaled.
        """
        self._seat.require_learner("promote a model")
        candidate = self._check(data, source or file_name)
        learner = self._seat.model
        with learner.lock:
            unchanged, repeats = find_repeat(self._journal, candidate.sha256, learner.number)
            if unchanged:
                _models_log.info(
                    "campaign %s: promotion of %s by %s changes nothing: it is the live model %s",
                    self.campaign,
                    path or file_name,
                    who or "-",
                    learner.version,
                )
                return ModelChange(learner.registry.get(learner.number), unchanged=True)
            origin: dict[str, Any] = {
                "file": Path(file_name).name,
                "path": path or file_name,
                "sha256": candidate.sha256,
                "who": who,
                "header": origin_header(candidate.header),
            }
            if repeats is not None:
                origin["repeats"] = f"v{repeats}"
            if gate is not None:
                evidence = gate(learner.published, candidate.policy)
                origin["evidence"] = evidence.to_dict()
                if not evidence.passes:
                    if not force:
                        raise FailedPreconditionError(
                            f"campaign {self.campaign}: expected evidence that "
                            f"{path or file_name} beats the live model {learner.version}, got: "
                            f"{evidence.reason}; promote with force to override"
                        )
                    origin["forced"] = True
                    _models_log.warning(
                        "campaign %s: %s promoted by %s with force against the evidence: %s",
                        self.campaign,
                        path or file_name,
                        who or "-",
                        evidence.reason,
                    )
            n_rewards = int(candidate.header.get("n_rewards", 0) or 0)
            return self._install(candidate, "promoted", origin, n_rewards)

    def rollback(self, version: str | int, *, who: str = "") -> ModelChange:
        """Make an earlier version live again, as a new version of kind ``rollback``.

        The restored model keeps learning from rewards that arrive from now on; the rewards
        journaled between the two versions are not re-applied to it (they taught the model
        being rolled back away from; they stay in the journal for export and offline work).
        Its offers are mapped onto the campaign's and it takes the campaign's exploration
        floor and seed. Rolling back to the live version changes nothing (``unchanged``).
        """
        self._seat.require_learner("roll the model back")
        learner = self._seat.model
        row = learner.registry.stored(version)
        target = learner.registry.describe(row)
        if row.version == learner.number:
            return ModelChange(target, unchanged=True)
        data = self._journal.model_bytes(row.version)
        if data is None:
            raise InvalidInputError(
                "version",
                "a version whose model bytes are kept (see `nbo model list`)",
                f"{target.version}, whose bytes were pruned",
            )
        candidate = self._check(data, f"model {target.version}", target.offer_ids)
        origin = {"restored": row.version, "who": who}
        return self._install(candidate, "rollback", origin, row.n_rewards)

    def _install(
        self, candidate: Candidate, kind: str, origin: dict[str, Any], n_rewards: int
    ) -> ModelChange:
        if candidate.changes:
            origin["changes"] = candidate.changes
            _log.warning(
                "campaign %s: model from %s adapted: %s",
                self.campaign,
                origin.get("path", f"v{origin.get('restored')}"),
                "; ".join(candidate.changes),
            )
        learner = self._seat.model
        state = candidate.header.get("encoder")
        if state:
            with self._lock:
                try:
                    self._encoder.load_state(state)
                except (CorruptModelError, ValueError, TypeError, KeyError):
                    pass  # a model trained under another standardization keeps ours
                learner.header["encoder"] = self._encoder.state()
        parent = learner.version
        learner.install(candidate.policy, kind, origin, n_rewards)
        live = learner.registry.get(learner.number)
        _models_log.info(
            "campaign %s: model %s is live (%s, origin %s, parent %s)",
            self.campaign,
            live.version,
            kind,
            live.origin_summary(),
            parent,
            extra={
                "campaign": self.campaign,
                "model_version": live.version,
                "kind": kind,
                "origin": live.origin,
                "parent": live.parent,
            },
        )
        return ModelChange(live)
