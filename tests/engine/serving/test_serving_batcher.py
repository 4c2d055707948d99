"""Coalescing concurrent Decide and Reward calls on the event loop: same answers as alone, errors
stay per call, a cancelled call is dropped from its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.core import Engine
from engine.errors import InvalidInputError, NotFoundError
from engine.serving.batcher import DecideBatcher, RewardBatcher
from tests.engine.serving.support import RENEWAL, customer


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine.from_config(RENEWAL, data_dir=tmp_path)
    yield eng
    eng.close()


def _gather(*calls: Any) -> list[Any]:
    async def run() -> list[Any]:
        return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(run())


def test_a_bad_call_in_a_coalesced_batch_fails_alone(engine: Engine) -> None:
    seen: list[int] = []
    batcher = DecideBatcher(engine, observe=lambda records: seen.append(len(records)))
    bad = {**customer(1), "plan": "platinum"}
    before = engine.journal.counts()["decisions"]
    ok, error, restricted = _gather(
        batcher.decide("ok-0", customer(0)),
        batcher.decide("bad-1", bad),
        batcher.decide("ok-2", customer(2), ["none", "discount_5"]),
    )
    assert ok.customer_id == "ok-0"
    assert isinstance(error, InvalidInputError)
    assert str(error) == (
        "context.plan: expected one of 'basic', 'standard', 'premium', got platinum"
    )
    assert restricted.offer_id in {"none", "discount_5"}
    assert engine.journal.counts()["decisions"] == before + 2
    assert (batcher.batches, batcher.rows, seen) == (1, 3, [2])


def test_overlapping_calls_decide_in_one_engine_call(engine: Engine) -> None:
    batcher = DecideBatcher(engine, max_rows=4)
    records = _gather(*(batcher.decide(f"c-{i}", customer(i)) for i in range(10)))
    assert [r.customer_id for r in records] == [f"c-{i}" for i in range(10)]
    assert len({r.decision_id for r in records}) == 10
    assert (batcher.batches, batcher.rows) == (3, 10)  # at most max_rows per batch


def test_a_cancelled_call_is_dropped_from_its_batch(engine: Engine) -> None:
    batcher = DecideBatcher(engine)

    async def run() -> list[Any]:
        gone = asyncio.ensure_future(batcher.decide("gone", customer(0)))
        kept = asyncio.ensure_future(batcher.decide("kept", customer(1)))
        await asyncio.sleep(0)  # both queued, the flush not run yet
        gone.cancel()
        return await asyncio.gather(gone, kept, return_exceptions=True)

    before = engine.journal.counts()["decisions"]
    gone, kept = asyncio.run(run())
    assert isinstance(gone, asyncio.CancelledError) and kept.customer_id == "kept"
    assert engine.journal.counts()["decisions"] == before + 1
    assert (batcher.batches, batcher.rows) == (1, 1)


def test_coalesced_rewards_answer_as_each_alone(engine: Engine) -> None:
    ids = [d.decision_id for d in engine.decide_batch(["a", "b"], [customer(0), customer(1)])]
    batcher = RewardBatcher(engine)
    first, again, unknown, bad, second = _gather(
        batcher.reward(ids[0], 10.0),
        batcher.reward(ids[0], 20.0),
        batcher.reward("d-unknown", 1.0),
        batcher.reward(ids[1], float("nan")),
        batcher.reward(ids[1], 5.0),
    )
    assert (first.status, again.status, second.status) == ("applied", "duplicate", "applied")
    assert isinstance(unknown, NotFoundError)
    assert str(unknown) == (
        "decision_id: expected a pending decision of campaign 'renewal', got 'd-unknown' "
        "(no such decision)"
    )
    assert isinstance(bad, InvalidInputError) and str(bad).startswith("value: expected")
    assert engine.journal.counts()["rewards"] == 2
    # The bad value rejected the batch before anything was written; then each ran alone.
    assert (batcher.batches, batcher.rows) == (1, 5)
