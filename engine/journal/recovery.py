"""Start-up recovery: the newest usable snapshot, adapted to the current offer catalog.

A snapshot is usable when its feature names equal the current schema's and its offers can be
mapped onto the current catalog: offers removed from the config are removed from the model, new
offers (appended at the end of the config's offer list) are added from the policy's prior. A
snapshot that fails its checksum or cannot be mapped is skipped in favour of an older one; with
none usable the model is rebuilt from the whole journal.

Examples
--------
>>> from engine.policies import LinUCB
>>> policy = LinUCB(3, 2, seed=0)
>>> adapted = adapt_offers(policy, ["a", "b", "c"], ["a", "c", "d"])
>>> adapted.n_actions
3
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import CorruptModelError, NboError
from engine.journal.snapshot import list_snapshots, read_snapshot
from engine.policies import Policy

_VERSION = re.compile(r"^v(\d+)$")


def version_number(version: str | None) -> int:
    """``"v12" -> 12``; anything else -> 0."""
    if not version:
        return 0
    m = _VERSION.match(version)
    return int(m.group(1)) if m else 0


def adapt_offers(
    policy: Policy,
    old_ids: Sequence[str],
    new_ids: Sequence[str],
    offer_features: Any = None,
) -> Policy:
    """Map a model trained on offers ``old_ids`` onto the catalog ``new_ids`` (in place).

    Raises
    ------
    CorruptModelError
        When the offers the two catalogs share are in a different order, or new offers are not
        at the end of ``new_ids``, or the model's size does not match ``old_ids``.
    """
    old = list(old_ids)
    if policy.n_actions != len(old):
        raise CorruptModelError(
            f"snapshot offer_ids: expected {policy.n_actions} offers (the model's), got {len(old)}"
        )
    for index in range(len(old) - 1, -1, -1):
        if old[index] not in new_ids:
            policy.remove_action(index)
            del old[index]
    kept = [i for i in new_ids if i in old]
    if kept != old or list(new_ids[: len(kept)]) != kept:
        raise CorruptModelError(
            "snapshot offer_ids: expected the offers it shares with the config in the config's"
            f" order, with new offers at the end; config has {list(new_ids)}, snapshot has "
            f"{list(old_ids)}"
        )
    for j in range(len(kept), len(new_ids)):
        features = None if offer_features is None else np.asarray(offer_features)[j]
        policy.add_action(features)
    return policy


def check_compatible(
    header: dict[str, Any], policy: Policy, feature_names: Sequence[str], source: str
) -> None:
    """Raise CorruptModelError unless the snapshot encodes contexts like the current schema."""
    names = header.get("feature_names")
    if names is not None and list(names) != list(feature_names):
        raise CorruptModelError(
            f"{source}: expected a model over features {list(feature_names)}, "
            f"got one over {list(names)}"
        )
    if policy.n_features != len(feature_names):
        raise CorruptModelError(
            f"{source}: expected a model over {len(feature_names)} features, "
            f"got {policy.n_features}"
        )


def latest_usable(
    directory: Path,
    feature_names: Sequence[str],
    offer_ids: Sequence[str],
    offer_features: Any = None,
) -> tuple[dict[str, Any], Policy] | None:
    """The newest snapshot in ``directory`` that loads and maps onto the current catalog."""
    for path in list_snapshots(directory):
        try:
            header, policy = read_snapshot(path)
            check_compatible(header, policy, feature_names, str(path))
            old_ids = header.get("offer_ids") or list(offer_ids)
            adapt_offers(policy, old_ids, offer_ids, offer_features)
        except (NboError, OSError):
            continue
        return header, policy
    return None
