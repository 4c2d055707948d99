"""Coalescing concurrent Decide calls: same answers as deciding alone, errors stay per call."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core import Engine
from engine.errors import InvalidInputError
from engine.serving.batcher import DecideBatcher, _Call
from testkit.harness import run_threads
from tests.engine.serving.support import RENEWAL, customer


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path)
    yield eng
    eng.close()


def test_a_bad_call_in_a_coalesced_batch_fails_alone(engine: Engine) -> None:
    batcher = DecideBatcher(engine)
    bad = {**customer(1), "plan": "platinum"}
    calls = [
        _Call("ok-0", customer(0), None),
        _Call("bad-1", bad, None),
        _Call("ok-2", customer(2), ["none", "discount_5"]),
    ]
    before = engine.journal.counts()["decisions"]
    batcher._execute(calls)
    assert all(c.done.is_set() for c in calls)
    assert calls[0].result is not None and calls[0].error is None
    assert isinstance(calls[1].error, InvalidInputError) and calls[1].result is None
    assert str(calls[1].error) == (
        "context.plan: expected one of 'basic', 'standard', 'premium', got platinum"
    )
    assert calls[2].result is not None and calls[2].result.offer_id in {"none", "discount_5"}
    assert engine.journal.counts()["decisions"] == before + 2


def test_a_coalesced_batch_decides_in_one_engine_call(engine: Engine) -> None:
    batcher = DecideBatcher(engine)
    calls = [_Call(f"c-{i}", customer(i), None) for i in range(5)]
    batcher._execute(calls)
    records = [c.result for c in calls]
    assert all(r is not None for r in records)
    assert len({r.decision_id for r in records if r is not None}) == 5
    assert (batcher.batches, batcher.rows) == (1, 5)


def test_concurrent_callers_each_get_their_own_decision(engine: Engine) -> None:
    batcher = DecideBatcher(engine, max_rows=8)
    n_threads, per_thread = 12, 20
    results: dict[str, str] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(per_thread):
            customer_id = f"t{t}-{i}"
            try:
                if i % 7 == 3:
                    with pytest.raises(InvalidInputError, match=r"^customer_id: expected"):
                        batcher.decide("", customer(i))
                    continue
                record = batcher.decide(customer_id, customer(i, seed=t))
            except BaseException as exc:
                errors.append(exc)
                return
            with lock:
                results[customer_id] = record.customer_id

    run_threads(work, n_threads, 60)
    assert not errors, errors[0]
    good = n_threads * (per_thread - len(range(3, per_thread, 7)))
    assert len(results) == good and all(k == v for k, v in results.items())
    assert engine.journal.counts()["decisions"] == good
    assert batcher.rows == n_threads * per_thread
    assert batcher.batches <= batcher.rows and not batcher._busy and not batcher._queue
