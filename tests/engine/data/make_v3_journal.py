"""Writes ``v3.journal.sqlite`` and ``v3.journal.json`` beside this file: a renewal journal as
the nbo before deferred activation wrote it (schema version 3: decisions, rewards, a stored
request, the model registry, an archive), and what that nbo read from it, for the migration test
(``tests/engine/test_journal_activation.py``).

It must run on the code of commit b87b224 (schema version 2/3), not on a later one:

    git worktree add /tmp/nbo-v3 b87b224
    cd /tmp/nbo-v3 && PYTHONPATH=. python /path/to/make_v3_journal.py /path/to/tests/engine/data
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from engine.core import Engine
from engine.journal.compact import RetentionRules, compact_journal
from engine.journal.lift import lift_from_journal
from engine.journal.store import Journal

T0 = 1_700_000_000.0
DAY = 86_400.0


def _contexts(n: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "tenure_months": int(rng.integers(0, 90)),
            "monthly_price": float(rng.uniform(15, 120)),
            "plan": ["basic", "standard", "premium"][i % 3],
        }
        for i in range(n)
    ]


def main(out: Path) -> None:
    data = Path(tempfile.mkdtemp())
    config = Path(__file__).resolve().parents[3] / "examples" / "renewal.toml"
    clock = [T0]
    eng = Engine.from_config(config, data_dir=data, clock=lambda: clock[0])
    rng = np.random.default_rng(1)
    old = eng.decide_batch([f"c{i}" for i in range(40)], _contexts(40, 0))
    eng.reward_batch([d.decision_id for d in old[:30]], list(rng.uniform(0, 400, 30)))
    clock[0] += 200 * DAY
    eng.expire_pending()
    new = eng.decide_batch([f"n{i}" for i in range(10)], _contexts(10, 1), request_id="req-1")
    eng.reward_batch([d.decision_id for d in new[:5]], list(rng.uniform(0, 400, 5)))
    eng.close()
    journal = Journal(data / "renewal.journal.sqlite")
    journal.prune_model_bytes(keep_learned=1)  # only the newest cursor bounds the archive
    report = compact_journal(
        journal, RetentionRules(keep_recent=5), clock[0], data / "archive", older_than_days=1
    )
    assert report.archived > 0 and journal.get_meta("schema_version") == "3"
    ids = [d.decision_id for d in old + new]
    reads = {
        "schema_version": journal.get_meta("schema_version"),
        "counts": journal.counts(),
        "offer_totals": {a: list(t) for a, t in journal.offer_totals().items()},
        "lift_sums": {str(k): list(v) for k, v in journal.lift_sums().items()},
        "lift": lift_from_journal(journal).to_dict(),
        "archived": journal.archived_decisions(),
        "recent_actions": journal.recent_actions(1000),
        "incentive_times": list(journal.incentive_times(0, "none")),
        "kept": sorted(journal.lookup(ids)),
        "pending": [d for d, s in journal.lookup(ids).items() if s.reward_source is None],
        "last_reward_seq": journal.last_reward_seq(),
        "models": len(journal.models()),
        "request": [d.decision_id for d in journal.find_request("renewal", "req-1").decisions],
    }
    journal.close()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data / "renewal.journal.sqlite", out / "v3.journal.sqlite")
    (out / "v3.journal.json").write_text(json.dumps(reads, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
