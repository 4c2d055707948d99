"""Coalesce concurrent Decide calls of one campaign into one ``Engine.decide_batch`` call.

A single decision costs the Engine about as much as a batch of several (one journal transaction,
one policy call), so under concurrency the server decides the calls waiting at that moment
together. There is no timer and no extra thread: the first caller to arrive decides its own
request at once (no added latency when calls do not overlap); callers arriving meanwhile queue
up, and when the running batch ends the head of the queue is woken to decide everything queued
so far. Each caller therefore runs at most one batch.

A batch the Engine rejects (one bad row rejects the whole batch, before anything is written) is
decided again row by row, so each caller gets its own result or its own error.

Examples
--------
>>> from engine.core import Engine
>>> engine = Engine.from_config("examples/renewal.toml", data_dir=None)
>>> batcher = DecideBatcher(engine)
>>> d = batcher.decide("c1", {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic"})
>>> d.offer_id in engine.offer_ids, batcher.batches, batcher.rows
(True, 1, 1)
>>> engine.close()
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.errors import NboError

if TYPE_CHECKING:
    from engine.core import DecisionRecord, Engine


class _Call:
    __slots__ = ("candidates", "context", "customer_id", "done", "error", "lead", "result")

    def __init__(
        self, customer_id: str, context: Mapping[str, Any], candidates: Sequence[str] | None
    ) -> None:
        self.customer_id = customer_id
        self.context = context
        self.candidates = candidates
        self.done = threading.Event()
        self.lead = False
        self.result: DecisionRecord | None = None
        self.error: BaseException | None = None


class DecideBatcher:
    """Decide for one campaign, coalescing calls that overlap in time.

    Parameters
    ----------
    engine : Engine
    max_rows : int
        Largest coalesced batch.

    Attributes
    ----------
    batches, rows : int
        Engine batch calls made and decisions they covered (``rows / batches`` is the mean
        coalesced batch size).
    """

    def __init__(self, engine: Engine, max_rows: int = 64) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self.batches = 0
        self.rows = 0
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._busy = False

    def decide(
        self,
        customer_id: str,
        context: Mapping[str, Any],
        candidates: Sequence[str] | None = None,
    ) -> DecisionRecord:
        """Same contract as ``Engine.decide``."""
        call = _Call(customer_id, context, candidates)
        with self._lock:
            self._queue.append(call)
            lead = not self._busy
            self._busy = True
        if not lead:
            call.done.wait()
        if lead or call.lead:
            # Leading: this call is at the head of the queue, so it is in the batch it runs.
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_rows))]
            try:
                self._execute(batch)
            finally:
                with self._lock:
                    if self._queue:
                        head = self._queue[0]
                        head.lead = True
                        head.done.set()
                    else:
                        self._busy = False
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    @property
    def mean_rows(self) -> float:
        """Mean coalesced batch size so far (0 before the first call)."""
        return self.rows / self.batches if self.batches else 0.0

    def _execute(self, batch: list[_Call]) -> None:
        """Decide every call of ``batch``, storing each one's result or error."""
        self.batches += 1
        self.rows += len(batch)
        try:
            if len(batch) == 1:
                self._one(batch[0])
                return
            candidates = [c.candidates for c in batch]
            try:
                records = self.engine.decide_batch(
                    [c.customer_id for c in batch],
                    [c.context for c in batch],
                    None if all(c is None for c in candidates) else candidates,
                )
            except NboError:
                for call in batch:  # nothing was written: decide each alone for its own answer
                    self._one(call)
                return
            except BaseException as exc:
                for call in batch:
                    call.error = exc
                return
            for call, record in zip(batch, records, strict=True):
                call.result = record
        finally:
            for call in batch:
                call.done.set()

    def _one(self, call: _Call) -> None:
        try:
            call.result = self.engine.decide(call.customer_id, call.context, call.candidates)
        except BaseException as exc:
            call.error = exc
