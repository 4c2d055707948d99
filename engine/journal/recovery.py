"""Start-up recovery: the newest usable snapshot adapted to the current offer catalog, the
journal replayed after it, and the guardrails' state rebuilt from the journal.

A snapshot is usable when its feature names equal the current schema's and its offers can be
mapped onto the current catalog: offers removed from the config are removed from the model, new
offers (appended at the end of the config's offer list) are added from the policy's prior. A
snapshot that fails for any reason (its checksum, its shapes, its parameters, a file that is not a
regular file) is skipped with a warning in favour of an older one; with none usable the model is
rebuilt from the whole journal. Temporary files left by a snapshot write that was killed are
removed first.

Examples
--------
>>> from engine.policies import LinUCB
>>> policy = LinUCB(3, 2, seed=0)
>>> adapted = adapt_offers(policy, ["a", "b", "c"], ["a", "c", "d"])
>>> adapted.n_actions
3
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.campaign.exploration import apply_exploration
from engine.errors import CorruptModelError, NboError
from engine.features import Encoder
from engine.journal.base import JournalBackend
from engine.journal.files import remove_temporaries
from engine.journal.learner import Learner
from engine.journal.snapshot import ModelShape, check_offer_mapping, list_snapshots, read_snapshot
from engine.policies import Policy, make_policy

if TYPE_CHECKING:
    from engine.campaign import CampaignConfig, Guardrails

_VERSION = re.compile(r"^v(\d+)$")
_log = logging.getLogger("nbo.recovery")


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
        at the end of ``new_ids``, or the model's size does not match ``old_ids`` (the policy is
        unchanged).
    """
    old = list(old_ids)
    if policy.n_actions != len(old):
        raise CorruptModelError(
            f"snapshot offer_ids: expected {policy.n_actions} offers (the model's), got {len(old)}"
        )
    check_offer_mapping(old, new_ids, "snapshot")
    for index in range(len(old) - 1, -1, -1):
        if old[index] not in new_ids:
            policy.remove_action(index)
            del old[index]
    for j in range(len(old), len(new_ids)):
        features = None if offer_features is None else np.asarray(offer_features)[j]
        policy.add_action(features)
    return policy


def model_shape(
    policy: Policy, feature_names: Sequence[str], offer_ids: Sequence[str]
) -> ModelShape:
    """What a snapshot must fit to replace ``policy``, the campaign's model: the campaign's
    features and offers, and a model that grows with its offers at ``policy``'s rate per offer."""
    per_offer = -(-len(policy.to_bytes()) // max(policy.n_actions, 1))
    return ModelShape(tuple(feature_names), tuple(offer_ids), bytes_per_offer=per_offer)


# A snapshot that fails for any of these reasons is skipped at start-up: the journal still holds
# every reward, so an older snapshot (or none) plus a longer replay gives the same model.
SNAPSHOT_FAILURES = (NboError, OSError, ValueError, TypeError, KeyError, MemoryError, OverflowError)


def latest_usable(
    directory: Path, shape: ModelShape, offer_features: Any = None
) -> tuple[dict[str, Any], Policy] | None:
    """The newest snapshot in ``directory`` that loads and maps onto the campaign (``shape``);
    each one refused is logged with its reason."""
    for path in list_snapshots(directory):
        try:
            header, policy = read_snapshot(path, shape)
            old_ids = header.get("offer_ids") or list(shape.offer_ids)
            adapt_offers(policy, old_ids, shape.offer_ids, offer_features)
        except SNAPSHOT_FAILURES as exc:
            _log.warning("snapshot %s refused, trying an older one: %s", path, exc)
            continue
        return header, policy
    return None


def snapshot_header(config: CampaignConfig, encoder: Encoder) -> dict[str, Any]:
    """The campaign fields every snapshot header carries."""
    return {
        "campaign": config.name,
        "config_hash": config.config_hash,
        "offer_ids": list(config.offer_ids),
        "feature_names": list(encoder.feature_names),
        "encoder": encoder.state(),
    }


def start_learner(
    config: CampaignConfig,
    journal: JournalBackend,
    encoder: Encoder,
    snapshot_dir: Path | None,
    swap_lock: Any,
    clock: Callable[[], float],
) -> Learner:
    """The learner after a (re)start: newest usable snapshot + replay of the journal after it.

    The encoder's state is restored too: from the journal (saved when its running statistics
    froze) or else from the snapshot.
    """
    offer_features = config.offer_features() if config.policy["name"] == "shared" else None
    ids = config.offer_ids
    fresh = make_policy(config.policy, len(ids), encoder.n_features, offer_features=offer_features)
    found = None
    if snapshot_dir is not None:
        remove_temporaries(snapshot_dir)  # logs each one
        shape = model_shape(fresh, encoder.feature_names, ids)
        found = latest_usable(snapshot_dir, shape, offer_features)
    saved = journal.get_meta("encoder")
    if found is not None:
        header, policy = found
        changes = apply_exploration(policy, config.policy)
        if changes:  # a promoted model saved before the floor was enforced
            _log.warning(
                "campaign %s: restored model %s takes the campaign's exploration: %s",
                config.name,
                header.get("version"),
                "; ".join(changes),
            )
        if saved is None and header.get("encoder"):
            saved = json.dumps(header["encoder"])
        start = version_number(header.get("version"))
        last_seq = int(header.get("last_reward_seq", 0))
        n_applied = int(header.get("n_rewards", 0))
    else:
        policy = fresh
        start, last_seq, n_applied = 1, 0, 0
    if saved is not None:
        try:
            encoder.load_state(json.loads(saved))
        except (CorruptModelError, ValueError, TypeError, KeyError):
            pass  # the schema changed since: the configured statistics apply
    learner = Learner(
        policy,
        journal,
        {o: i for i, o in enumerate(ids)},
        publish_every_rewards=config.publish_every_rewards,
        publish_every_ms=config.publish_every_ms,
        checkpoint_every_rewards=config.checkpoint_every_rewards,
        snapshot_dir=snapshot_dir,
        header=snapshot_header(config, encoder),
        swap_lock=swap_lock,
        version=start,
        last_seq=last_seq,
        n_applied=n_applied,
        clock=clock,
    )
    if learner.replay():
        learner.publish(at_least=version_number(journal.latest_model_version()))
    return learner


def restore_guardrails(
    journal: JournalBackend, guardrails: Guardrails, config: CampaignConfig, now: float
) -> None:
    """Rebuild budgets, the traffic window and per-customer history from the journal."""
    index = {o: i for i, o in enumerate(config.offer_ids)}
    totals = {
        index[action]: (t.n_decisions, t.cost)
        for action, t in journal.offer_totals().items()
        if action in index
    }
    recent = [index[a] for a in journal.recent_actions(config.traffic_window) if a in index]
    history: dict[str, list[float]] = {}
    if guardrails.horizon > 0:
        cutoff_us = int((now - guardrails.horizon) * 1e6)
        for customer, ts_us in journal.incentive_times(cutoff_us, config.control_offer):
            history.setdefault(customer, []).append(ts_us / 1e6)
    guardrails.restore(totals, recent, history)
