"""``nbo evaluate --save-best`` and ``--encoder-from``: the GO candidate as a snapshot the service
can promote, with the evidence for it in its header."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import InvalidInputError, NboError
from engine.journal.snapshot import list_snapshots, read_snapshot, write_snapshot
from engine.policies import Policy
from engine.replay.candidates import Candidate, train_static
from engine.replay.data import LoggedData
from engine.replay.external import check_features
from engine.replay.results import Evaluation


def encoder_state(source: str | Path, feature_names: tuple[str, ...]) -> dict[str, Any]:
    """The encoder state of a server snapshot file, the newest snapshot of a directory, or the
    journal meta of a campaign data directory (``<campaign>.journal.sqlite``).

    A snapshot's ``feature_names`` must equal ``feature_names`` (the log's); the first
    mismatching feature is named otherwise.
    """
    path = Path(source)
    flag = f"--encoder-from {source}"
    snapshots = [path] if path.is_file() else list_snapshots(path)
    if not snapshots and path.is_dir():
        snapshots = list_snapshots(path / "snapshots")
    if snapshots:
        header, _ = read_snapshot(snapshots[0])
        if not header.get("encoder"):
            raise InvalidInputError(flag, "a snapshot whose header has an encoder state", "none")
        check_features(header.get("feature_names"), feature_names, flag)
        return dict(header["encoder"])
    journals = sorted(path.glob("*.journal.sqlite")) if path.is_dir() else []
    if not journals:
        raise InvalidInputError(
            flag, "a snapshot file, a snapshot directory or a campaign data directory", "neither"
        )
    from engine.journal.backends import open_journal

    campaign = journals[0].name.removesuffix(".journal.sqlite")
    journal = open_journal(None, campaign=campaign, data_dir=path, readonly=True)
    try:
        saved = journal.get_meta("encoder")
    finally:
        journal.close()
    if saved is None:
        raise InvalidInputError(flag, f"an encoder state in journal {journals[0].name}", "none")
    return dict(json.loads(saved))


def save_best(
    evaluation: Evaluation,
    data: LoggedData,
    candidates: list[Candidate],
    path: str | Path,
    encoder_from: str | None = None,
    seed: int = 0,
) -> str:
    """Write the GO candidate as a snapshot; returns the line to print ("not saved: ..." when
    there is no GO or the candidate has no policy to save)."""
    decision = evaluation.decision()
    if not decision["promote"]:
        return f"not saved: no GO candidate ({decision['reason']})"
    label = decision["candidate"]
    candidate = next(c for c in candidates if c.label == label)
    data = data.sorted_by_time()
    train, test = data.split(0.0 if evaluation.info.get("every_row") else _share(evaluation))
    encoder = None
    policy: Policy
    header: dict[str, Any] = {}
    if candidate.kind == "static":
        blob = train_static(
            candidate,
            train.context,
            train.action,
            train.propensity,
            train.reward,
            data.n_actions,
            seed,
            signals=train.signals,
        )  # the same bytes the evaluation scored: same rows, same seed
        policy = Policy.from_bytes(blob)
    elif candidate.kind == "external" and candidate.spec["name"] == "snapshot":
        header, policy = read_snapshot(candidate.spec["path"])
        encoder = header.get("encoder")
    else:
        return (
            f"not saved: {label} has no policy to save (a learning candidate's state is its "
            "replay's; a file: candidate is probabilities): train one with nbo train"
        )
    if encoder_from is not None:
        encoder = encoder_state(encoder_from, data.feature_names)
    c = next(r for r in evaluation.candidates if r.label == label)
    low, high = c.interval(evaluation.primary, evaluation.interval)
    created = time.time()
    header = {
        **{k: v for k, v in header.items() if k not in ("policy_class", "policy_len")},
        "version": f"evaluated-{int(created)}",
        "created": created,
        "offer_ids": list(data.actions),
        "feature_names": list(data.feature_names),
        "n_rewards": train.n_rounds,
        "last_reward_seq": 0,
        "evaluation": {
            "candidate": label,
            "estimator": evaluation.primary,
            "chosen_by_slope": c.chosen.get("slope"),
            "estimate": c.value(evaluation.primary),
            "lower_bound": low,
            "upper_bound": high,
            "interval": evaluation.interval,
            "confidence": 1.0 - evaluation.alpha,
            "logging_value": evaluation.logging_value,
            "rows": test.n_rounds,
            "first_timestamp": _iso(test, 0),
            "last_timestamp": _iso(test, -1),
            "source": evaluation.info.get("source", data.source),
        },
    }
    if encoder is not None:
        header["encoder"] = encoder
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_snapshot(out, header, policy)
    try:
        read_snapshot(out)
    except NboError as exc:  # a snapshot we cannot read back must not be reported
        return f"not saved: {out} does not read back: {exc}"
    encoded = "with" if encoder is not None else "without"
    return f"saved {label} to {out} ({encoded} encoder state; {evaluation.primary} {low:.4g}+)"


def _share(evaluation: Evaluation) -> float:
    share = evaluation.info.get("train_fraction", 0.5)
    return float(share) if isinstance(share, int | float) else 0.5


def _iso(data: LoggedData, i: int) -> str | None:
    if data.timestamp is None or data.n_rounds == 0:
        return None
    return datetime.fromtimestamp(int(data.timestamp[i]) / 1e6, UTC).isoformat()
