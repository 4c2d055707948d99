"""The model registry: every model version a campaign has served, kept in its journal.

A version is a row of the journal's ``models`` table (schema version 2), numbered by the journal
(:meth:`~engine.journal.base.JournalBackend.add_model`): one above every number any process
has stored, so a number is never given twice, across restarts, feature changes and replicas,
and ``v<N>`` names the same model everywhere (decisions' ``model_version``, snapshot files, the
admin RPCs). Rows are immutable; the model bytes (:func:`engine.journal.snapshot.encode_snapshot`)
live beside them in ``model_blobs``, inserted once and never rewritten.

Kinds and origins
-----------------
``initial``   a fresh model (the first start, or ``nbo serve --reset-model`` after a feature
              change: origin ``{"reset": {"from": N, "changes": "..."}}``).
``learned``   the learner published the model after applying rewards: origin
              ``{"reward_seqs": [first, last]}``; at a restart that changed the restored model
              (rewards replayed, offers mapped, exploration floor applied) origin also has
              ``{"restored": N, "changes": [...]}``; a snapshot file imported when a version-1
              journal was migrated has ``{"imported": "v5.snap", "sha256": ...}``.
``promoted``  an admin promoted a snapshot file: origin ``{"file", "sha256", "who", "header":
              {campaign, version, created, trained_offline}, "repeats"?, "changes"?}``.
``rollback``  an admin rolled back: origin ``{"restored": N, "who"}``.

``parent`` is the version live before; ``last_reward_seq`` is the learner's cursor (rewards
after it are still to be applied) and commits with the row; ``n_rewards`` the journal rewards
the model contains.

Which bytes are kept
--------------------
Every promoted and rollback version, the version live before each of them (its parent), and
the newest :data:`KEEP_LEARNED` initial or learned versions that have bytes (the learner's
checkpoints). The learner publishes metadata-only rows (a cheap insert) and stores bytes at
each checkpoint, then prunes: the bytes kept are bounded by the number of promotions and
rollbacks (human actions) plus :data:`KEEP_LEARNED`; every other row stays as metadata.

Examples
--------
>>> from engine.journal.store import Journal
>>> journal = Journal(":memory:")
>>> registry = ModelRegistry(journal)
>>> catalog = journal.catalog("renewal", ["none", "gift"], ["bias", "tenure"])
>>> first = registry.add("initial", {}, None, catalog, "LinUCB", 0, 0, blob=b"model")
>>> second = registry.add("learned", {"reward_seqs": [1, 40]}, first, catalog, "LinUCB", 40, 40)
>>> [(m.version, m.kind, m.parent, m.bytes_kept) for m in registry.versions()]
[('v2', 'learned', 'v1', False), ('v1', 'initial', None, True)]
>>> feature_changes(["bias", "tenure", "plan=basic"], ["bias", "tenure_months", "plan=basic"])
'renamed tenure -> tenure_months'
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidInputError, NotFoundError
from engine.journal.base import JournalBackend
from engine.journal.records import ModelRow, StoredModel

__all__ = ["KEEP_LEARNED", "KINDS", "ModelRegistry", "ModelVersion", "feature_changes"]

KINDS = ("initial", "learned", "promoted", "rollback")
KEEP_LEARNED = 5  # initial/learned versions whose bytes are kept (the newest checkpoints)
_VERSION = re.compile(r"^v?(\d+)$")


@dataclass(frozen=True)
class ModelVersion:
    """One registry version, as the admin API and ``nbo model`` show it."""

    number: int
    created: float  #: unix seconds
    kind: str
    origin: dict[str, Any]
    parent: str | None
    campaign: str
    offer_ids: list[str]
    feature_names: list[str]
    policy_class: str
    last_reward_seq: int
    n_rewards: int
    sha256: str | None  #: of the kept bytes; None when pruned

    @property
    def version(self) -> str:
        """``v<N>``."""
        return f"v{self.number}"

    @property
    def bytes_kept(self) -> bool:
        """Whether the model can still be restored (rolled back to)."""
        return self.sha256 is not None

    def origin_summary(self) -> str:
        """One short line about where the model came from."""
        o = self.origin
        if self.kind == "promoted":
            text = f"{o.get('file', '?')} sha256 {str(o.get('sha256', ''))[:12]} by {o.get('who')}"
            return text + (f" (repeats {o['repeats']})" if o.get("repeats") else "")
        if self.kind == "rollback":
            return f"restores v{o.get('restored')} by {o.get('who')}"
        parts = []
        if "reset" in o:
            parts.append(f"reset after v{o['reset'].get('from')}: {o['reset'].get('changes')}")
        if "imported" in o:
            parts.append(f"imported {o['imported']}")
        if "restored" in o:
            parts.append(f"restart from v{o['restored']}")
        if o.get("reward_seqs"):
            first, last = o["reward_seqs"]
            parts.append(f"rewards {first}..{last}")
        return "; ".join(parts) or "fresh model"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``nbo model ... --json``)."""
        return {
            "version": self.version,
            "created": self.created,
            "kind": self.kind,
            "origin": self.origin,
            "parent": self.parent,
            "campaign": self.campaign,
            "offer_ids": self.offer_ids,
            "feature_names": self.feature_names,
            "policy_class": self.policy_class,
            "last_reward_seq": self.last_reward_seq,
            "n_rewards": self.n_rewards,
            "bytes_kept": self.bytes_kept,
            "sha256": self.sha256,
        }


def version_number(version: str | int, field: str = "version") -> int:
    """``"v12"``, ``"12"`` or 12 -> 12.

    Raises
    ------
    InvalidInputError
        For anything else.
    """
    if isinstance(version, int) and version > 0:
        return version
    m = _VERSION.match(str(version).strip())
    if m is None or int(m.group(1)) <= 0:
        raise InvalidInputError(field, "a model version such as v12", repr(version))
    return int(m.group(1))


def feature_changes(old: Sequence[str], new: Sequence[str]) -> str:
    """What differs between two feature name lists: renamed (same position, both names new to
    the other list), added, removed, reordered."""
    old, new = list(old), list(new)
    gone = [n for n in old if n not in new]
    came = [n for n in new if n not in old]
    renamed = []
    if len(old) == len(new):
        for a, b in zip(old, new, strict=True):
            if a != b and a in gone and b in came:
                renamed.append(f"{a} -> {b}")
                gone.remove(a)
                came.remove(b)
    parts = []
    if renamed:
        parts.append("renamed " + ", ".join(renamed))
    if came:
        parts.append("added " + ", ".join(came))
    if gone:
        parts.append("removed " + ", ".join(gone))
    if not parts and old != new:
        parts.append("reordered (same names, another order)")
    return "; ".join(parts) or "no change"


class ModelRegistry:
    """The model versions of one campaign's journal (see the module notes).

    Parameters
    ----------
    journal : JournalBackend
        A journal of schema version 2.
    """

    def __init__(self, journal: JournalBackend) -> None:
        self.journal = journal
        self._catalogs: dict[int, tuple[str, list[str], list[str]]] = {}

    def catalog(self, catalog: int) -> tuple[str, list[str], list[str]]:
        """(campaign, offer ids, feature names) of a catalog id (cached: catalogs never
        change)."""
        if catalog not in self._catalogs:
            self._catalogs = self.journal.catalogs()
        return self._catalogs[catalog]

    def add(
        self,
        kind: str,
        origin: dict[str, Any],
        parent: int | None,
        catalog: int,
        policy_class: str,
        last_reward_seq: int,
        n_rewards: int,
        blob: bytes | Callable[[int], bytes] | None = None,
        at_least: int = 0,
        expect_newest: int | None = None,
    ) -> int:
        """Store a new version (with its bytes when ``blob`` is given: bytes, or a function of
        the new version number that encodes them) and return its number. ``expect_newest``:
        the fence of :meth:`~engine.journal.base.JournalBackend.add_model`."""
        if kind not in KINDS:
            raise InvalidInputError("kind", f"one of {list(KINDS)}", repr(kind))
        row = ModelRow(
            int(time.time() * 1e6),
            kind,
            json.dumps(origin, sort_keys=True),
            parent,
            catalog,
            policy_class,
            int(last_reward_seq),
            int(n_rewards),
        )
        return self.journal.add_model(row, blob, at_least, expect_newest)

    def keep_bytes(self, number: int, blob: bytes, keep_learned: int = KEEP_LEARNED) -> None:
        """Keep a version's bytes (a checkpoint), then prune the bytes no longer needed."""
        if self.journal.keep_model_bytes(number, blob):
            self.journal.prune_model_bytes(keep_learned)

    def newest(self) -> StoredModel | None:
        """The newest stored row, or None for an empty registry."""
        rows = self.journal.models(limit=1)
        return rows[0] if rows else None

    def stored(self, version: str | int) -> StoredModel:
        """The row of ``version``; NotFoundError when the registry has none."""
        number = version_number(version)
        row = self.journal.model(number)
        if row is None:
            raise NotFoundError(f"version: expected a version of the registry, got v{number}")
        return row

    def describe(self, row: StoredModel) -> ModelVersion:
        """The public view of a row."""
        campaign, offers, features = self.catalog(row.catalog)
        return ModelVersion(
            number=row.version,
            created=row.created_us / 1e6,
            kind=row.kind,
            origin=json.loads(row.origin),
            parent=None if row.parent is None else f"v{row.parent}",
            campaign=campaign,
            offer_ids=offers,
            feature_names=features,
            policy_class=row.policy_class,
            last_reward_seq=row.last_reward_seq,
            n_rewards=row.n_rewards,
            sha256=row.sha256,
        )

    def get(self, version: str | int) -> ModelVersion:
        """The public view of ``version`` (NotFoundError when unknown)."""
        return self.describe(self.stored(version))

    def versions(self, limit: int = 100, before: int | None = None) -> list[ModelVersion]:
        """The newest ``limit`` versions below ``before``, newest first."""
        return [self.describe(r) for r in self.journal.models(before=before, limit=limit)]
