"""DSJson decision-service logs (Azure Personalizer / VW decision service) into LoggedData.

vowpal-wabbit-next parses each line exactly as VW would (namespaces, string features, hashing);
the shared example's hashed features are folded into ``n_features`` dense columns
(index mod ``n_features``, values summed), which is what a linear policy over hashed features sees.
The logged offer is ``_labelIndex`` into ``c._multi``; ``_label_cost`` is negated into a reward and
``_label_probability`` is the propensity. Offer ids are
the action's position in ``_multi`` unless the action objects carry an ``id`` field.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
from vowpal_wabbit_next import DSJsonFormatParser, Workspace

from engine.errors import InvalidInputError
from engine.replay.data import LoggedData


def read_dsjson(
    path: str | Path,
    *,
    n_features: int = 32,
    actions: tuple[str, ...] | None = None,
    id_field: str = "id",
) -> LoggedData:
    """Read a DSJson file (one JSON event per line) into :class:`LoggedData`.

    Parameters
    ----------
    path : str or Path
    n_features : int
        Width of the dense context the hashed shared features are folded into.
    actions : tuple of str, optional
        Offer list in policy order; by default the distinct offer ids seen, sorted.
    id_field : str
        Key of an action object that holds its offer id.

    Returns
    -------
    LoggedData
        Events without a label (no observed outcome yet) are dropped and counted in
        ``n_pending``.
    """
    if n_features < 1:
        raise InvalidInputError("n_features", "an int >= 1", n_features)
    parser = DSJsonFormatParser(Workspace(["--cb_explore_adf", "--quiet"]))
    contexts: list[np.ndarray] = []
    chosen: list[str] = []
    props: list[float] = []
    rewards: list[float] = []
    eligible: list[list[str]] = []
    ids: list[str] = []
    stamps: list[int] = []
    rows: list[int] = []
    n_pending = 0
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle):
            text = line.strip()
            if not text:
                continue
            try:
                event = json.loads(text)
                examples = parser.parse_json(text)
            except (json.JSONDecodeError, RuntimeError, ValueError) as exc:
                raise InvalidInputError(f"line {line_no}", "a DSJson event", text[:80]) from exc
            # The label is read from the JSON itself: VW's parser only sees label fields that
            # precede "c", and some writers put them after it.
            label_index = event.get("_labelIndex")
            cost = event.get("_label_cost")
            probability = event.get("_label_probability")
            if label_index is None or cost is None or probability is None:
                n_pending += 1
                continue
            position = int(label_index)
            if not 0 <= position < len(examples) - 1:
                raise InvalidInputError(
                    f"line {line_no}, field '_labelIndex'",
                    f"an index in [0, {len(examples) - 1})",
                    label_index,
                )
            multi = event.get("c", {}).get("_multi", [])
            offer_ids = [_offer_id(a, i, id_field) for i, a in enumerate(multi)]
            if len(offer_ids) != len(examples) - 1:
                raise InvalidInputError(
                    f"line {line_no}, field 'c._multi'",
                    f"{len(examples) - 1} actions",
                    len(offer_ids),
                )
            contexts.append(_fold(examples[0], n_features))
            chosen.append(offer_ids[position])
            props.append(float(probability))
            rewards.append(-float(cost))
            eligible.append(offer_ids)
            ids.append(str(event.get("EventId", line_no)))
            stamps.append(_timestamp(event.get("Timestamp")))
            rows.append(line_no)
    if not chosen:
        raise InvalidInputError(str(path), "at least one labelled DSJson event", "none")
    offers = tuple(actions) if actions else tuple(sorted({a for ids_ in eligible for a in ids_}))
    index = {a: i for i, a in enumerate(offers)}
    mask = np.zeros((len(chosen), len(offers)), dtype=np.bool_)
    action = np.empty(len(chosen), dtype=np.int64)
    for r, (offer, offer_ids) in enumerate(zip(chosen, eligible, strict=True)):
        for a in offer_ids:
            if a not in index:
                raise InvalidInputError(
                    f"line {rows[r]}, field 'c._multi'", f"offer ids in {list(offers)}", a
                )
            mask[r, index[a]] = True
        action[r] = index[offer]
    return LoggedData(
        context=np.vstack(contexts),
        action=action,
        propensity=np.asarray(props),
        reward=np.asarray(rewards),
        actions=offers,
        feature_names=tuple(f"hash_{j}" for j in range(n_features)),
        eligible=mask,
        timestamp=np.asarray(stamps, dtype=np.int64),
        decision_id=np.asarray(ids, dtype=object),
        source_row=np.asarray(rows, dtype=np.int64),
        n_pending=n_pending,
        source=str(path),
    ).sorted_by_time()


def _offer_id(action: object, position: int, id_field: str) -> str:
    if isinstance(action, dict) and id_field in action:
        return str(action[id_field])
    return str(position)


def _fold(example: object, n_features: int) -> np.ndarray:
    out = np.zeros(n_features)
    for group in example:  # type: ignore[attr-defined]
        idx = np.asarray(group.indices, dtype=np.uint64) % np.uint64(n_features)
        np.add.at(out, idx.astype(np.int64), np.asarray(group.values, dtype=np.float64))
    return out


def _timestamp(value: object) -> int:
    if not isinstance(value, str):
        return 0
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(parsed.timestamp() * 1_000_000)
