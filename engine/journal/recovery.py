"""Start-up recovery: the registry's newest usable model adapted to the current offer catalog,
the journal replayed after its cursor, and the guardrails' state rebuilt from the journal.

A stored model is usable when its feature names equal the current schema's and its offers can
be mapped onto the current catalog: offers removed from the config are removed from the model,
new offers (appended at the end of the config's offer list) are added from the policy's prior.
A kept model that fails for any reason (its checksum, its shapes, its parameters: all checked
before the model is built) is skipped with a warning in favour of an older one. When the live
model is over other features, or no kept model can be restored, the start is refused with what
changed and how to proceed (``nbo serve --reset-model CAMPAIGN``): a model is never silently
replaced by a fresh one. See docs/architecture.md, "Model registry".

The registry's models are in the journal (``model_blobs``); the snapshot directory's files are
exports, read only on the first start after ``nbo journal migrate`` (an empty registry), with
the same checks: a file that is not a regular file, too large, crafted or corrupt is skipped in
favour of an older one. Temporary files left by a snapshot write that was killed are removed
first.

Examples
--------
>>> from engine.policies import LandingLift, LinUCB
>>> policy = LinUCB(3, 2, seed=0)
>>> adapted = adapt_offers(policy, ["a", "b", "c"], ["a", "c", "d"])
>>> adapted.n_actions
3
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.campaign.exploration import apply_exploration
from engine.campaign.limits import DAY
from engine.errors import ConfigError, CorruptModelError, NboError
from engine.features import Encoder
from engine.journal.base import JournalBackend
from engine.journal.files import read_regular, remove_temporaries
from engine.journal.learner import Learner
from engine.journal.records import StoredModel
from engine.journal.registry import ModelRegistry, feature_changes
from engine.journal.schema import sha256
from engine.journal.snapshot import (
    ModelShape,
    check_offer_mapping,
    decode_snapshot,
    encode_snapshot,
    list_snapshots,
)
from engine.policies import LandingLift, Policy, make_policy

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
    _check_treatments(policy, old, new_ids, offer_features)
    for index in range(len(old) - 1, -1, -1):
        if old[index] not in new_ids:
            policy.remove_action(index)
            del old[index]
    for j in range(len(old), len(new_ids)):
        features = None if offer_features is None else np.asarray(offer_features)[j]
        policy.add_action(features)
    return policy


def _check_treatments(
    policy: Policy, old: Sequence[str], new_ids: Sequence[str], table: Any
) -> None:
    """A LandingLift numbers its offers and routes as the catalog it learned on: the offers
    both catalogs keep must keep their (offer, route, sends) in the new catalog's table, or the
    kept models would describe other offers (a removed offer renumbers those after it, a new
    dimension value the routes)."""
    if not isinstance(policy, LandingLift) or table is None:
        return
    kept = [i for i, offer in enumerate(old) if offer in new_ids]
    mine = policy.offer_features[kept]
    theirs = np.asarray(table, dtype=np.float64)[[list(new_ids).index(old[i]) for i in kept]]
    if not np.array_equal(mine, theirs):
        raise CorruptModelError(
            "snapshot offer_ids: the landing model numbers the offers and routes as its catalog "
            "did, and this catalog renumbers some it keeps (start with --reset-model)"
        )


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


def newest_legacy_snapshot(
    directory: Path, shape: ModelShape, offer_features: Any = None
) -> tuple[Path, bytes, dict[str, Any]] | None:
    """The newest snapshot file in ``directory`` that loads and maps onto the campaign
    (``shape``; a journal migrated from version 1 has no registry yet: its model is in these
    files); each one refused is logged with its reason."""
    for path in list_snapshots(directory):
        try:
            data = read_regular(path, shape.max_bytes, str(path))
            header, policy = decode_snapshot(data, str(path), shape)
            old_ids = header.get("offer_ids") or list(shape.offer_ids)
            adapt_offers(policy, old_ids, shape.offer_ids, offer_features)
        except SNAPSHOT_FAILURES as exc:
            _log.warning("snapshot %s refused, trying an older one: %s", path, exc)
            continue
        return path, data, header
    return None


def _import_legacy(
    registry: ModelRegistry,
    journal: JournalBackend,
    snapshot_dir: Path | None,
    campaign: str,
    shape: ModelShape,
    offer_features: Any,
) -> None:
    """First start on a migrated journal: register the newest usable snapshot file, numbered
    above every version decisions and files carry (so no number is ever reused)."""
    files = list_snapshots(snapshot_dir) if snapshot_dir is not None else []
    at_least = max(
        [version_number(journal.latest_model_version())] + [version_number(p.stem) for p in files]
    )
    found = None
    if files and snapshot_dir is not None:
        found = newest_legacy_snapshot(snapshot_dir, shape, offer_features)
    if found is None:
        if at_least:  # versions were served before the registry existed: never reuse them
            journal.set_meta("models_floor", str(at_least))
        return
    path, data, header = found
    names = header.get("feature_names") or []
    offers = header.get("offer_ids") or []
    catalog = journal.catalog(campaign, offers, names)
    origin = {
        "imported": path.name,
        "sha256": sha256(data),
        "header_version": header.get("version"),
    }
    number = registry.add(
        "learned",
        origin,
        None,
        catalog,
        str(header.get("policy_class", "")),
        int(header.get("last_reward_seq", 0)),
        int(header.get("n_rewards", 0)),
        blob=data,
        at_least=at_least,
    )
    _log.info(
        "campaign %s: snapshot %s imported into the model registry as v%d", campaign, path, number
    )


def _reset_hint(campaign: str) -> str:
    return (
        f"to start a fresh model that learns from the journal's rewards under the new features, "
        f"run `nbo serve --reset-model {campaign} ...` once; or revert the campaign's [features] "
        "to what the model was trained on"
    )


def restore_newest(
    registry: ModelRegistry,
    journal: JournalBackend,
    shape: ModelShape,
    offer_features: Any,
) -> tuple[StoredModel, dict[str, Any], Policy, list[str]]:
    """The newest version with kept bytes that decodes, fits ``shape`` (checked before its
    model is built) and maps onto the current offers.

    Raises
    ------
    ConfigError
        When none does (every kept model over other features, corrupt or unmappable).
    """
    feature_names, offer_ids = shape.feature_names, shape.offer_ids
    refused = []
    for row in journal.models_with_bytes():
        _, offers, names = registry.catalog(row.catalog)
        if list(names) != list(feature_names):
            refused.append(f"v{row.version}: features {feature_changes(names, feature_names)}")
            continue
        data = journal.model_bytes(row.version)
        try:
            if data is None:
                raise CorruptModelError("bytes pruned meanwhile")
            if len(data) > shape.max_bytes:
                raise CorruptModelError(f"expected at most {shape.max_bytes} bytes")
            header, policy = decode_snapshot(data, f"model v{row.version}", shape)
            changes = []
            if list(offers) != list(offer_ids):
                adapt_offers(policy, offers, offer_ids, offer_features)
                changes.append(f"offers {list(offers)} -> {list(offer_ids)}")
        except SNAPSHOT_FAILURES as exc:
            _log.warning("model v%d refused, trying an older one: %s", row.version, exc)
            refused.append(f"v{row.version}: {exc}")
            continue
        return row, header, policy, changes
    raise ConfigError(
        "model: expected a stored model this campaign can restore, got none ("
        + "; ".join(refused[:5])
        + ")"
    )


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
    reset_model: bool = False,
    share_models: bool = False,
) -> Learner:
    """The learner after a (re)start: the registry's newest usable model + replay of the
    journal's rewards after its cursor.

    - An empty registry (a new journal, or the first start after ``nbo journal migrate``)
      registers the newest snapshot file of ``snapshot_dir``, if any.
    - The newest version over other feature names than the campaign's is refused with what
      changed and how to proceed (a model is never silently replaced), unless ``reset_model``:
      then a fresh ``initial`` model starts and learns from every journaled reward of decisions
      made over the current features.
    - Else the newest version with kept bytes is restored, mapped onto the current offers and
      given the campaign's exploration floor; rewards after its ``last_reward_seq`` are
      replayed. When anything changed it (or it is not the newest version: a crash after
      metadata-only publishes), it is registered as a new learned version with its bytes, so
      the live version number never goes back.

    The encoder's state is restored too: from the journal (saved when its running statistics
    froze) or else from the restored model's header. ``share_models``: see
    :class:`~engine.journal.learner.Learner` (the ``--role learn`` process).
    """
    offer_features = config.policy_offer_features()
    ids = config.offer_ids
    names = encoder.feature_names
    fresh = make_policy(config.policy, len(ids), encoder.n_features, offer_features=offer_features)
    shape = model_shape(fresh, names, ids)
    if snapshot_dir is not None:
        remove_temporaries(snapshot_dir)  # logs each one
    registry = ModelRegistry(journal)
    catalog = journal.catalog(config.name, ids, names)
    if registry.newest() is None:
        _import_legacy(registry, journal, snapshot_dir, config.name, shape, offer_features)
    newest = registry.newest()
    header: dict[str, Any] = {}
    found = None
    reset: dict[str, Any] | None = None
    if newest is not None:
        old_names = registry.catalog(newest.catalog)[2]
        if list(old_names) != list(names):
            what = feature_changes(old_names, names)
            if not reset_model:
                raise ConfigError(
                    f"campaign {config.name}: the live model v{newest.version} is over other "
                    f"features than the config ({what}), so it cannot decide under the new "
                    f"features; {_reset_hint(config.name)}"
                )
            reset = {"from": newest.version, "changes": what}
        else:
            try:
                found = restore_newest(registry, journal, shape, offer_features)
            except ConfigError as exc:
                if not reset_model:
                    raise ConfigError(
                        f"campaign {config.name}: {exc}; {_reset_hint(config.name)}"
                    ) from None
                reset = {"from": newest.version, "changes": "no stored model could be restored"}
        if found is not None and reset_model:
            _log.warning(
                "campaign %s: --reset-model ignored: model v%d fits the current features",
                config.name,
                found[0].version,
            )
    saved = journal.get_meta("encoder")
    common: dict[str, Any] = {
        "publish_every_rewards": config.publish_every_rewards,
        "publish_every_ms": config.publish_every_ms,
        "checkpoint_every_rewards": config.checkpoint_every_rewards,
        "snapshot_dir": snapshot_dir,
        "swap_lock": swap_lock,
        "clock": clock,
        "catalog": catalog,
        "share_models": share_models,
    }
    index = {o: i for i, o in enumerate(ids)}
    if found is not None:
        row, header, policy, changes = found
        changes += apply_exploration(policy, config.policy)
        if changes:
            _log.warning(
                "campaign %s: restored model v%d adapted: %s",
                config.name,
                row.version,
                "; ".join(changes),
            )
        if saved is None and header.get("encoder"):
            saved = json.dumps(header["encoder"])
        load_encoder(encoder, saved)
        learner = Learner(
            policy,
            journal,
            index,
            header=snapshot_header(config, encoder),
            version=row.version,
            last_seq=row.last_reward_seq,
            n_applied=row.n_rewards,
            kept=True,
            **common,
        )
        replayed = learner.replay()
        assert newest is not None
        if replayed or changes or row.version != newest.version:
            learner.refresh({"restored": row.version, "changes": changes}, parent=newest.version)
        return learner
    load_encoder(encoder, saved)
    policy = fresh
    floor = int(journal.get_meta("models_floor") or 0)
    number = ModelRegistry(journal).add(
        "initial",
        {"reset": reset} if reset else {},
        None if newest is None else newest.version,
        catalog,
        type(policy).__name__,
        0,
        0,
        blob=lambda n: encode_snapshot(
            dict(
                snapshot_header(config, encoder),
                version=f"v{n}",
                created=time.time(),
                last_reward_seq=0,
                n_rewards=0,
            ),
            policy,
        ),
        at_least=floor,
    )
    if reset:
        _log.warning(
            "campaign %s: model reset (--reset-model): v%d is a fresh model; the live model "
            "before was v%d (%s)",
            config.name,
            number,
            reset["from"],
            reset["changes"],
        )
    learner = Learner(
        policy,
        journal,
        index,
        header=snapshot_header(config, encoder),
        version=number,
        kept=True,
        **common,
    )
    if learner.replay():
        learner.refresh({}, parent=number)
    return learner


def load_encoder(encoder: Encoder, saved: str | None) -> None:
    """Give ``encoder`` the state saved in the journal's meta (the running statistics frozen
    by whichever process froze them first); a state of another schema is ignored."""
    if saved is not None:
        try:
            encoder.load_state(json.loads(saved))
        except (CorruptModelError, ValueError, TypeError, KeyError):
            pass  # the schema changed since: the configured statistics apply


def restore_guardrails(
    journal: JournalBackend, guardrails: Guardrails, config: CampaignConfig, now: float
) -> None:
    """Rebuild budgets, the traffic window and per-customer history from the journal: the
    served decisions (a deferred one counts once activated, at its activation's time)."""
    index = {o: i for i, o in enumerate(config.offer_ids)}
    totals = {
        index[action]: (t.n_decisions, t.cost)
        for action, t in journal.offer_totals().items()
        if action in index
    }
    recent = [index[a] for a in journal.recent_actions(config.traffic_window) if a in index]
    history: dict[str, list[tuple[float, int]]] = {}
    if guardrails.horizon > 0:
        cutoff_us = int((now - guardrails.horizon) * 1e6)
        for customer, ts_us, action in journal.incentive_times(cutoff_us, config.control_offer):
            if action in index:
                history.setdefault(customer, []).append((ts_us / 1e6, index[action]))
        for events in history.values():  # activations come after the immediate decisions
            if len(events) > 1:
                events.sort()
    day_totals = None
    if guardrails.daily:
        start_us = int((now // DAY) * DAY * 1e6)
        day_totals = {
            index[action]: (t.n_decisions, t.cost)
            for action, t in journal.offer_totals(since_us=start_us).items()
            if action in index
        }
    guardrails.restore(totals, recent, history, day_totals, now)
