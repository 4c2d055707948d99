"""Coalesce concurrent unary calls of one campaign into one Engine batch call, on the event loop.

A single decision (or reward) costs the Engine about as much as a batch of several: one journal
transaction, one policy call, one learner update. So the server decides the Decide calls waiting
at one moment together (:class:`DecideBatcher`), and applies the Reward calls waiting together
in one ``reward_batch`` (:class:`RewardBatcher`: a group commit, one journal transaction for many
callers).

Everything runs on the server's event loop, with no timer and no thread: a call queues its row
and awaits its answer; the first call to find the queue empty schedules a flush for the loop's
next turn, so every call that reaches the loop before then (the gRPC events of one poll) joins
the same batch. While a batch runs (the Engine blocks the loop for that long: one bounded batch
of at most ``max_rows`` rows) new calls wait in gRPC's queues, so under load the next batch
holds everything that arrived meanwhile; with no overlap a call is decided at the loop's next
turn, alone. Engine calls that may take long (DecideBatch, RewardBatch, admin) stay in the
server's thread pool.

A batch the Engine rejects (one bad row rejects the whole batch, before anything is written) is
run again row by row, so each caller gets its own result or its own error, worded as for a call
alone. A call cancelled while it waits (client gone, deadline, end of the grace period) is
dropped from its batch; a batch that started always finishes.

Examples
--------
>>> import asyncio
>>> from engine.core import Engine
>>> engine = Engine.from_config("examples/renewal.toml", data_dir=None)
>>> batcher = DecideBatcher(engine)
>>> ctx = {"tenure_months": 30, "monthly_price": 50.0, "plan": "basic"}
>>> async def two():
...     return await asyncio.gather(batcher.decide("c1", ctx), batcher.decide("c2", ctx))
>>> [d.customer_id for d in asyncio.run(two())], batcher.batches, batcher.rows
(['c1', 'c2'], 1, 2)
>>> engine.close()
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from engine.errors import NboError

if TYPE_CHECKING:
    from engine.core import DecisionRecord, Engine
    from engine.journal.records import RewardRecord

IDLE_WAIT = 0.0002  # seconds an idle loop waits for more calls to join a batch
MAX_WAIT = 0.002  # seconds at most from a batch's first row to its flush
PROBE_EVERY = 8
_Row = TypeVar("_Row")
_Out = TypeVar("_Out")
# A batch's outcome for one row: its result, or the error that row alone raises.
Outcome = Any


class Coalescer(Generic[_Row, _Out]):
    """Queue rows from concurrent coroutines; run them as batches on the event loop.

    Subclasses define :meth:`run_batch` (rows -> one outcome per row, in order).

    Attributes
    ----------
    batches, rows : int
        Batches run and the rows they covered (``rows / batches``: the mean coalesced size).
    """

    def __init__(self, max_rows: int = 64) -> None:
        self.max_rows = max_rows
        self.batches = 0
        self.rows = 0
        self._queue: list[tuple[_Row, asyncio.Future[_Out]]] = []
        self._scheduled = False
        self._since = 0.0  # loop time the queue's first row came
        self._seen = 0  # queue length at the last idle wait
        self._recent_rows = 1.0  # moving mean of the batch size
        # Flushes run in a context of their own: a batch's log lines and errors belong to no
        # single caller's request id.
        self._flush_context = contextvars.Context()

    @property
    def mean_rows(self) -> float:
        """Mean coalesced batch size so far (0 before the first call)."""
        return self.rows / self.batches if self.batches else 0.0

    async def submit(self, row: _Row) -> _Out:
        """Queue ``row``; return its result (or raise its error) once its batch has run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Out] = loop.create_future()
        self._queue.append((row, future))
        if not self._scheduled:
            self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = True
        self._since = loop.time()
        self._seen = 0
        loop.call_soon(self._turn, context=self._flush_context)

    def _turn(self) -> None:
        # gRPC brings a call to its handler over a few loop turns, one new call per turn at
        # best. While the loop has other work ready (calls on their way among it) the batch
        # waits a turn more, which costs no time; once the loop has none, it waits IDLE_WAIT for
        # gRPC to bring more, but only when coalescing has been paying off lately (or to probe,
        # every PROBE_EVERY batches): a lone caller is not kept waiting for company.
        loop = asyncio.get_running_loop()
        n = len(self._queue)
        if n < self.max_rows and loop.time() - self._since < MAX_WAIT:
            if getattr(loop, "_ready", None):  # asyncio's ready queue (absent: never wait)
                loop.call_soon(self._turn, context=self._flush_context)
                return
            if n > self._seen and (self._recent_rows >= 1.5 or self.batches % PROBE_EVERY == 0):
                self._seen = n
                loop.call_later(IDLE_WAIT, self._turn, context=self._flush_context)
                return
        self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        live = [(row, future) for row, future in queue if not future.done()]
        if len(live) > self.max_rows:  # the rest waits for the next turn (new calls join it)
            self._queue = live[self.max_rows :] + self._queue
            live = live[: self.max_rows]
            self._schedule(asyncio.get_running_loop())
        if not live:
            return
        self.batches += 1
        self.rows += len(live)
        self._recent_rows += (len(live) - self._recent_rows) * 0.2
        try:
            outcomes = self.run_batch([row for row, _ in live])
        except BaseException as exc:  # a bug, or the Engine closed: every caller gets it
            outcomes = [exc] * len(live)
        for (_, future), outcome in zip(live, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def run_batch(self, rows: list[_Row]) -> list[Outcome]:
        """One outcome per row: its result, or the exception to raise in its caller."""
        raise TypeError(f"{type(self).__name__} must define run_batch()")


def _alone(call: Callable[..., Any], *args: Any) -> Outcome:
    try:
        return call(*args)
    except NboError as exc:
        return exc


#: customer id, context, candidates, baseline offer
DecideRow = tuple[str, Mapping[str, Any], Sequence[str] | None, str | None]


class DecideBatcher(Coalescer[DecideRow, "DecisionRecord"]):
    """Decide for one campaign, coalescing the Decide calls that overlap in time.

    ``observe(records)`` is called once per batch with its decisions (the server's metrics).
    """

    def __init__(
        self,
        engine: Engine,
        max_rows: int = 64,
        observe: Callable[[Sequence[DecisionRecord]], None] | None = None,
    ) -> None:
        super().__init__(max_rows)
        self.engine = engine
        self.observe = observe

    async def decide(
        self,
        customer_id: str,
        context: Mapping[str, Any],
        candidates: Sequence[str] | None = None,
        baseline_offer: str | None = None,
    ) -> DecisionRecord:
        """Same contract as ``Engine.decide``."""
        return await self.submit((customer_id, context, candidates, baseline_offer))

    def _decide_one(self, row: DecideRow) -> DecisionRecord:
        customer_id, context, candidates, baseline = row
        return self.engine.decide(customer_id, context, candidates, baseline_offer=baseline)

    def run_batch(self, rows: list[DecideRow]) -> list[Outcome]:
        engine = self.engine
        outcomes: list[Outcome]
        if len(rows) == 1:
            outcomes = [_alone(self._decide_one, rows[0])]
        else:
            candidates = [row[2] for row in rows]
            baselines = [row[3] for row in rows]
            try:
                outcomes = list(
                    engine.decide_batch(
                        [row[0] for row in rows],
                        [row[1] for row in rows],
                        None if all(c is None for c in candidates) else candidates,
                        baseline_offers=None if all(b is None for b in baselines) else baselines,
                    )
                )
            except NboError:  # nothing was written: decide each alone for its own answer
                outcomes = [_alone(self._decide_one, row) for row in rows]
        if self.observe is not None:
            decided = [o for o in outcomes if not isinstance(o, BaseException)]
            if decided:
                self.observe(decided)
        return outcomes


RewardRow = tuple[str, float, Mapping[str, float] | None]  #: decision id, value, components


class RewardBatcher(Coalescer[RewardRow, "RewardRecord"]):
    """Apply the Reward calls of one campaign that overlap in time in one ``reward_batch``.

    Each caller gets what ``Engine.reward`` would have given it alone: its record (applied or
    duplicate), NotFoundError for an unknown or expired decision, InvalidInputError for a bad
    value. Two calls for one decision in one batch: the first applies, the second is a duplicate,
    as in sequence.
    """

    def __init__(self, engine: Engine, max_rows: int = 64) -> None:
        super().__init__(max_rows)
        self.engine = engine

    async def reward(
        self, decision_id: str, value: float, components: Mapping[str, float] | None = None
    ) -> RewardRecord:
        """Same contract as ``Engine.reward``."""
        return await self.submit((decision_id, value, components or None))

    def run_batch(self, rows: list[RewardRow]) -> list[Outcome]:
        engine = self.engine
        parts = [c for _, _, c in rows]
        try:
            records = engine.reward_batch(
                [d for d, _, _ in rows],
                [v for _, v, _ in rows],
                None if all(c is None for c in parts) else parts,
            )
        except NboError:  # nothing was written: each alone, for its own error
            return [_alone(engine.reward, *row) for row in rows]
        return [self._outcome(record) for record in records]

    def _outcome(self, record: RewardRecord) -> Outcome:
        refusal = self.engine.reward_refusal(record)
        return record if refusal is None else refusal
