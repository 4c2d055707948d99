"""Decision ids cannot be guessed from other ids: each is a public millisecond prefix and 128
fresh random bits, and nothing about one batch's or one engine's ids tells anything about the
others' random parts."""

from __future__ import annotations

import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np

from engine.assembly import ID_BYTES, ID_TIME_DIGITS, new_decision_ids
from engine.core import DecisionRecord, Engine

RENEWAL = Path(__file__).resolve().parents[2] / "examples" / "renewal.toml"
N = 10_000


def _decide(n: int) -> list[DecisionRecord]:
    eng = Engine.from_config(RENEWAL, data_dir=None, clock=lambda: 1_700_000_000.0)
    try:
        contexts = [
            {"tenure_months": i % 90, "monthly_price": 40.0, "plan": "basic"} for i in range(n)
        ]
        return eng.decide_batch([f"c{i}" for i in range(n)], contexts)
    finally:
        eng.close()


def _longest_common_prefix(ids: list[str]) -> int:
    ordered = sorted(ids)
    longest = 0
    for a, b in pairwise(ordered):
        k = 0
        while k < len(a) and a[k] == b[k]:
            k += 1
        longest = max(longest, k)
    return longest


def test_ids_of_one_batch_and_of_two_engines_share_no_structure():
    first, second = ([d.decision_id for d in _decide(N)] for _ in range(2))
    full = first + second
    assert len(set(full)) == 2 * N and max(map(len, full)) <= 64
    # The prefix is the time in milliseconds (ids sort by time); what follows is 16 random bytes.
    now_ms = time.time_ns() // 1_000_000
    assert all(0 <= now_ms - int(i[:ID_TIME_DIGITS], 16) < 600_000 for i in full)
    ids = [i[ID_TIME_DIGITS:] for i in full]
    first = ids[:N]
    assert {len(bytes.fromhex(i)) for i in ids} == {ID_BYTES} and 8 * ID_BYTES >= 122
    # 20,000 random 128-bit ids: adjacent sorted ids share ~8 hex digits at most; 13 happens
    # with probability ~1e-7 (the old per-process prefix made every id share 10 with its peers).
    assert _longest_common_prefix(ids) <= 12
    # Every hex digit position is uniform: no fixed prefix, counter or separator anywhere.
    for position in range(2 * ID_BYTES):
        counts = Counter(i[position] for i in ids)
        assert len(counts) == 16 and max(counts.values()) < 2 * N / 16 * 1.25, position
    # Bits are balanced, and consecutive ids of a batch are unrelated (no counter).
    bits = np.unpackbits(np.frombuffer(bytes.fromhex("".join(ids)), dtype=np.uint8))
    assert abs(bits.mean() - 0.5) < 0.005
    steps = {int(b, 16) - int(a, 16) for a, b in pairwise(first)}
    assert len(steps) == N - 1


def test_same_seed_same_decisions_but_fresh_ids():
    assert not set(new_decision_ids(3)) & set(new_decision_ids(3))
    assert new_decision_ids(0) == []
    first, second = _decide(200), _decide(200)
    assert [(d.offer_id, d.propensity, d.explored) for d in first] == [
        (d.offer_id, d.propensity, d.explored) for d in second
    ]
    assert not {d.decision_id for d in first} & {d.decision_id for d in second}
