"""Promotion and rollback: the checks a model passes before it becomes a campaign's live
version, and what the registry records about it.

A promoted snapshot file must be of the campaign (its header's ``campaign``; a file trained
without ``--campaign`` is accepted and recorded as such), over the campaign's feature names
(refused with what differs), with offers that map onto the campaign's (:func:`adapt_offers`);
then it takes the campaign's exploration floor and seed (:func:`apply_exploration`).

Promoting the same bytes twice: when the file is the live model (its SHA-256 is the live
version's, or the live version was promoted from it), nothing changes and the live version is
returned (``unchanged``); otherwise a new version is made whose origin says ``repeats: vN`` (the
newest version with those bytes): the model may have learned since, and going back to the
file's model is a real change. No version or file is ever rewritten.

Examples
--------
>>> from engine.journal.snapshot import encode_snapshot
>>> from engine.policies import LinUCB
>>> data = encode_snapshot({"campaign": "renewl", "feature_names": ["bias"]}, LinUCB(2, 1))
>>> check_candidate(data, "renewl.snap", campaign="winback", feature_names=["bias"],
...                 offer_ids=["a", "b"], policy_spec={"name": "linucb"})
Traceback (most recent call last):
...
engine.errors.CorruptModelError: renewl.snap: expected a model of campaign 'winback', got one of campaign 'renewl' (train it with --campaign winback)
"""  # noqa: E501

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.campaign.exploration import apply_exploration
from engine.errors import CorruptModelError
from engine.journal.base import JournalBackend
from engine.journal.recovery import adapt_offers
from engine.journal.registry import feature_changes
from engine.journal.schema import sha256
from engine.journal.snapshot import (
    ModelShape,
    decode_header,
    decode_snapshot,
    short_list,
    string_list,
)
from engine.policies import Policy

__all__ = ["Candidate", "check_candidate", "find_repeat"]

# Header fields of a promoted file copied into its version's origin.
_HEADER_FIELDS = ("campaign", "version", "created", "trained_offline", "n_rewards")


@dataclass
class Candidate:
    """A model that passed the checks, ready to install."""

    header: dict[str, Any]
    policy: Policy
    sha256: str
    changes: list[str]  #: what the checks changed (offers mapped, floor, seed)


def check_candidate(
    data: bytes,
    source: str,
    *,
    campaign: str,
    feature_names: Sequence[str],
    offer_ids: Sequence[str],
    policy_spec: Mapping[str, Any],
    old_offer_ids: Sequence[str] | None = None,
    offer_features: Any = None,
    shape: ModelShape | None = None,
) -> Candidate:
    """Decode snapshot bytes and make them fit the campaign (see the module notes).

    ``old_offer_ids``: the model's offers when known from elsewhere (a registry row's catalog),
    else its header's. ``shape``: what the model must fit (the campaign's features and offers,
    its size bound), checked with its saved shapes and parameters before the model is built
    (:func:`~engine.journal.snapshot.decode_snapshot`).

    Raises
    ------
    CorruptModelError
        Naming ``source`` and what does not fit (nothing is changed).
    """
    header = decode_header(data, source)  # the header's checks first: they name what differs
    of = header.get("campaign") or ""
    if of and of != campaign:
        raise CorruptModelError(
            f"{source}: expected a model of campaign {campaign!r}, got one of campaign {of!r} "
            f"(train it with --campaign {campaign})"
        )
    names = string_list(header, "feature_names", source)
    if names is not None and names != list(feature_names):
        what = feature_changes(names, feature_names)
        what = what if len(what) <= 300 else what[:300] + "..."
        raise CorruptModelError(
            f"{source}: expected a model over features {list(feature_names)}, got one over "
            f"{short_list(names)} (the config against the model: {what}): an encoder that differs "
            "cannot be mapped; train the model on the campaign's features"
        )
    if shape is not None and old_offer_ids is not None and header.get("offer_ids") is None:
        shape = ModelShape(
            shape.feature_names, tuple(old_offer_ids), shape.bytes_per_offer, shape.max_bytes
        )
    header, policy = decode_snapshot(data, source, shape)
    if policy.n_features != len(feature_names):
        raise CorruptModelError(
            f"{source}: expected a model over {len(feature_names)} features, "
            f"got {policy.n_features}"
        )
    old = list(old_offer_ids or header.get("offer_ids") or offer_ids)
    changes = []
    if old != list(offer_ids):
        adapt_offers(policy, old, offer_ids, offer_features)
        changes.append(f"offers {old} -> {list(offer_ids)}")
    changes += apply_exploration(policy, policy_spec)
    return Candidate(header, policy, sha256(data), changes)


def origin_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a promoted file's header its version's origin keeps."""
    return {k: header[k] for k in _HEADER_FIELDS if k in header}


def find_repeat(journal: JournalBackend, digest: str, live: int) -> tuple[bool, int | None]:
    """Whether bytes of SHA-256 ``digest`` are the live model (``live``), and else the newest
    version with those bytes (kept, or the file a version was promoted from), if any."""
    for row in journal.models_with_bytes():  # every promoted version keeps its bytes
        promoted_from = json.loads(row.origin).get("sha256") if row.kind == "promoted" else None
        if digest in (row.sha256, promoted_from):
            return row.version == live, row.version
    return False, None
