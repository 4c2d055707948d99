"""The promotion gate: evidence, from the campaign's own journal, that a snapshot beats the live
model before it replaces it (``PromoteModel`` and ``nbo promote``).

Both models are evaluated off-policy (:func:`engine.replay.evaluate.evaluate`, in-process) on
the journal's most recent closed decisions (at most :data:`GATE_ROWS`), the same logged rows for
both, with the same estimator (DR with a cross-fitted reward model by default), clustered by
customer whenever customers return. The snapshot passes when the lower bound of its estimate
(95% bootstrap) is above the live model's estimate; with fewer than :data:`MIN_ROWS` closed
decisions there is no evidence and it does not pass. The server refuses a promotion that does
not pass (FAILED_PRECONDITION, both numbers in the message) unless the request says ``force``;
the evidence is recorded in the promoted version's origin either way.

Examples
--------
>>> import tempfile
>>> import numpy as np
>>> from engine.core import Engine
>>> eng = Engine.from_config("examples/renewal.toml", data_dir=tempfile.mkdtemp(),
...                          background=False)
>>> evidence = promotion_evidence(eng.journal, eng.policy, eng.policy, list(eng.feature_names),
...                               list(eng.offer_ids))
>>> evidence.passes, evidence.rows, "closed decisions" in evidence.reason
(False, 0, True)
>>> eng.close()
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.core import Engine
from engine.journal.base import JournalBackend
from engine.journal.records import ExportedDecision
from engine.journal.snapshot import encode_snapshot
from engine.lifecycle import GateFunction
from engine.policies import Policy
from engine.replay.candidates import Candidate, EvalConfig
from engine.replay.data import LoggedData
from engine.replay.evaluate import evaluate
from engine.replay.fanout import Runner

__all__ = [
    "GATE_ROWS",
    "MIN_ROWS",
    "PromotionEvidence",
    "gate_for",
    "journal_logs",
    "promotion_evidence",
    "recent_closed",
]

GATE_ROWS = 20_000  # most recent closed decisions the gate evaluates on
MIN_ROWS = 200  # fewer closed decisions than this: no evidence
_ESTIMATOR = "dr"
_SCAN = 50_000


@dataclass(frozen=True)
class PromotionEvidence:
    """What the gate found (recorded in the promoted version's origin)."""

    estimator: str
    rows: int
    candidate_estimate: float
    candidate_lower: float
    live_estimate: float
    first_decision_us: int
    last_decision_us: int
    passes: bool
    reason: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


def recent_closed(
    journal: JournalBackend, feature_names: list[str], offer_ids: list[str], rows: int = GATE_ROWS
) -> list[ExportedDecision]:
    """The journal's most recent ``rows`` closed decisions made over ``feature_names`` with a
    non-null net reward and an offer of ``offer_ids``, oldest first."""
    catalogs = journal.catalogs()
    wanted = {c for c, (_, _, names) in catalogs.items() if list(names) == list(feature_names)}
    index = {o: i for i, o in enumerate(offer_ids)}
    hi = journal.counts()["decisions"]  # the largest decision seq
    window = max(rows, _SCAN)
    found: list[Any] = []  # closed decisions with a seq in (lo, the first hi]
    while hi > 0 and len(found) < rows:  # windows further back until enough
        lo = max(0, hi - window)
        part: list[Any] = []
        seq = lo
        while True:
            raw = journal.decisions_for_export(seq, 8192, closed_only=True)
            keep = [r for r in raw if r.seq <= hi]
            part.extend(keep)
            if len(keep) < len(raw) or len(raw) < 8192:
                break
            seq = raw[-1].seq
        found = part + found
        hi = lo
        window *= 2
    closed = [r for r in found if r.reward is not None and r.catalog in wanted]
    return [r for r in closed if r.action in index][-rows:]


def journal_logs(
    journal: JournalBackend, feature_names: list[str], offer_ids: list[str], rows: int = GATE_ROWS
) -> LoggedData:
    """The journal's most recent ``rows`` closed decisions made over ``feature_names`` (with a
    non-null net reward), as logged data over ``offer_ids`` (decisions of offers since removed
    are left out)."""
    kept = recent_closed(journal, feature_names, offer_ids, rows)
    index = {o: i for i, o in enumerate(offer_ids)}
    n, d = len(kept), len(feature_names)
    context = np.frombuffer(b"".join(r.context for r in kept), dtype=np.float64)
    eligible = np.zeros((n, len(offer_ids)), dtype=bool)
    for i, r in enumerate(kept):
        for offer in r.eligible.split(",") if r.eligible else offer_ids:
            if offer in index:
                eligible[i, index[offer]] = True
        eligible[i, index[r.action]] = True
    customers: dict[str, int] = {}
    return LoggedData(
        context=context.reshape(n, d) if n else np.zeros((0, d)),
        action=np.array([index[r.action] for r in kept], dtype=np.int64),
        propensity=np.array([r.propensity for r in kept], dtype=np.float64),
        reward=np.array([r.reward for r in kept], dtype=np.float64),
        actions=tuple(offer_ids),
        feature_names=tuple(feature_names),
        eligible=eligible,
        timestamp=np.array([r.ts_us for r in kept], dtype=np.int64),
        decision_id=np.array([r.decision_id for r in kept], dtype=object),
        control=np.array([bool(r.control) for r in kept]),
        customer=np.array(
            [customers.setdefault(r.customer_id, len(customers)) for r in kept], dtype=np.int64
        ),
    )


def promotion_evidence(
    journal: JournalBackend,
    live: Policy,
    candidate: Policy,
    feature_names: list[str],
    offer_ids: list[str],
    *,
    rows: int = GATE_ROWS,
    alpha: float = 0.05,
    seed: int = 0,
) -> PromotionEvidence:
    """Evaluate ``candidate`` and ``live`` on the journal's recent closed decisions."""
    started = time.perf_counter()
    data = journal_logs(journal, feature_names, offer_ids, rows)
    n = data.n_rounds
    stamps = data.timestamp if data.timestamp is not None else np.zeros(n, dtype=np.int64)
    first = int(stamps[0]) if n else 0
    last = int(stamps[-1]) if n else 0
    if n < MIN_ROWS:
        return PromotionEvidence(
            _ESTIMATOR,
            n,
            math.nan,
            math.nan,
            math.nan,
            first,
            last,
            False,
            f"not enough evidence: {n} closed decisions in the journal, the gate needs {MIN_ROWS}",
            round(time.perf_counter() - started, 3),
        )
    header = {"feature_names": list(feature_names), "offer_ids": list(offer_ids)}
    with tempfile.TemporaryDirectory(prefix="nbo-gate-") as tmp:
        candidates = []
        for name, policy in (("live", live), ("candidate", candidate)):
            path = Path(tmp) / f"{name}.snap"
            path.write_bytes(encode_snapshot(dict(header, version=name), policy.copy()))
            candidates.append(Candidate(name, {"name": "snapshot", "path": str(path)}, "external"))
        result = evaluate(
            data,
            candidates,
            config=EvalConfig(seed=seed),
            primary=_ESTIMATOR,
            alpha=alpha,
            runner=Runner(workers=0, progress=False),
        )
    by_label = {c.label: c for c in result.candidates}
    live_value = by_label["live"].value(_ESTIMATOR)
    cand_value = by_label["candidate"].value(_ESTIMATOR)
    cand_lower = by_label["candidate"].interval(_ESTIMATOR, result.interval)[0]
    passes = bool(cand_lower > live_value)
    verdict = "beats" if passes else "does not beat"
    reason = (
        f"the snapshot's {_ESTIMATOR} lower bound {cand_lower:.2f} (estimate {cand_value:.2f}) "
        f"{verdict} the live model's estimate {live_value:.2f} on the journal's {n} most recent "
        "closed decisions"
    )
    return PromotionEvidence(
        _ESTIMATOR,
        n,
        cand_value,
        cand_lower,
        live_value,
        first,
        last,
        passes,
        reason,
        round(time.perf_counter() - started, 3),
    )


def gate_for(engine: Engine, rows: int = GATE_ROWS) -> GateFunction:
    """The gate of ``engine``'s promotions: :func:`promotion_evidence` on its own journal."""
    names, offers = list(engine.feature_names), list(engine.offer_ids)

    def gate(live: Policy, candidate: Policy) -> PromotionEvidence:
        return promotion_evidence(engine.journal, live, candidate, names, offers, rows=rows)

    return gate
