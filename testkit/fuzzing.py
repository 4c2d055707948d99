"""A fuzzer for the gRPC service: sends the cases of :mod:`testkit.fuzz_cases` to a
server and checks each answer.

After every case the runner compares the journal counts: a rejected request changes nothing; an
accepted one adds exactly the decisions or rewards it should, and reward statuses are exact per
row. Used by tests/reliability and benchmarks.faults.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
from hypothesis import HealthCheck, given, settings

from engine.serving.pb import offers_pb2 as pb
from testkit.fuzz_cases import (
    DELIBERATE,
    EMPTY_ID,
    EXHAUSTED,
    LONG_ID,
    METHODS,
    OK,
    PENDING,
    RESPONSES,
    REWARDED,
    Case,
    any_case,
)
from testkit.harness import CONTEXTS_CATEGORICAL, CONTEXTS_NUMERIC, TOKEN
from testkit.traffic import CATEGORICAL, NUMERIC

__all__ = ["DELIBERATE", "FuzzReport", "FuzzRunner", "run_fuzz"]


# ---------------------------------------------------------------------- the runner
@dataclass
class FuzzReport:
    cases: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_method: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


class FuzzRunner:
    """Sends cases to one server and checks each answer and the journal counts around it."""

    def __init__(self, target: str, max_rows: int, max_message_bytes: int) -> None:
        self.channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 64 << 20)]
        )
        self.max_rows = max_rows
        self.max_message_bytes = max_message_bytes
        self.calls = {
            name: self.channel.unary_unary(
                path, request_serializer=None, response_deserializer=None
            )
            for name, (path, _) in METHODS.items()
        }
        self.admin = (("authorization", f"Bearer {TOKEN}"),)
        self.pending: list[str] = []
        self.decided: dict[str, str] = {}  # Decide request id -> the decision it made
        self.rewarded: list[str] = []
        self.unknown_counter = 0
        self.refills = 0
        self.report = FuzzReport()
        self.refill()
        # Some decisions rewarded up front, so "an already rewarded id" always has a candidate.
        seed_ids = self.pending[:8]
        self.calls["RewardBatch"](
            pb.RewardBatchRequest(decision_ids=seed_ids, values=[1.0] * 8).SerializeToString(),
            timeout=30,
        )
        del self.pending[:8]
        self.rewarded.extend(seed_ids)

    def close(self) -> None:
        self.channel.close()

    def counts(self) -> tuple[int, int, int]:
        info = pb.ModelInfo.FromString(
            self.calls["GetModelInfo"](
                pb.GetModelInfoRequest().SerializeToString(), metadata=self.admin, timeout=30
            )
        )
        return info.decisions, info.rewards, info.rewards_learned

    def refill(self) -> None:
        self.refills += 1
        d = pb.DenseContexts(
            customer_ids=[f"pool-{self.refills}-{i}" for i in range(64)],
            numeric_names=NUMERIC,
            numeric_values=CONTEXTS_NUMERIC[:64].ravel(),
            categorical_names=CATEGORICAL,
            categorical_values=CONTEXTS_CATEGORICAL[:64].ravel().tolist(),
        )
        reply = pb.DecideBatchResponse.FromString(
            self.calls["DecideBatch"](
                pb.DecideBatchRequest(dense=d).SerializeToString(), timeout=30
            )
        )
        self.pending.extend(reply.decision_ids)

    def resolve(self, kind: str, taken: set[str]) -> str:
        if kind == PENDING:
            choices = [d for d in self.pending if d not in taken]
            if not choices:
                self.refill()
                choices = [d for d in self.pending if d not in taken]
            return choices[0]
        if kind == REWARDED and self.rewarded:
            return self.rewarded[-1 - self.unknown_counter % len(self.rewarded)]
        if kind == EMPTY_ID:
            return ""
        if kind == LONG_ID:
            return "d" * 257
        self.unknown_counter += 1
        return f"no-such-decision-{self.unknown_counter}"

    def run(self, case: Case) -> None:
        payload = case.payload
        expected_statuses: list[int] = []
        ids: list[str] = []
        if case.id_kinds or (case.method in ("Reward", "RewardBatch") and case.kind == "targeted"):
            taken: set[str] = set()
            for kind in case.id_kinds:
                decision_id = self.resolve(kind, taken)
                # A pending id named twice in one batch: the first is applied, the second a retry.
                if decision_id in taken or kind == REWARDED:
                    expected_statuses.append(pb.REWARD_STATUS_DUPLICATE)
                elif kind == PENDING:
                    expected_statuses.append(pb.REWARD_STATUS_APPLIED)
                else:
                    expected_statuses.append(pb.REWARD_STATUS_UNKNOWN)
                taken.add(decision_id)
                ids.append(decision_id)
            payload = type(payload)()
            payload.CopyFrom(case.payload)
            if case.method == "Reward":
                payload.decision_id = ids[0]
            else:
                payload.decision_ids.extend(ids)
        data = payload if isinstance(payload, bytes) else payload.SerializeToString()
        metadata = self.admin if case.method in ("GetModelInfo", "Snapshot", "PromoteModel") else ()
        if case.kind == "admin" and case.note == "none":
            metadata = ()
        elif case.kind == "admin" and case.note == "wrong":
            metadata = (("authorization", f"Bearer {TOKEN}x"),)
        before = self.counts()
        try:
            reply = self.calls[case.method](data, metadata=metadata, timeout=60)
            code, details = OK, ""
        except grpc.RpcError as exc:
            reply, code, details = None, exc.code().name, exc.details() or ""
        after = self.counts()
        where = f"{case.kind} {case.method} {case.note}: got {code} {details[:300]!r}"
        assert code in DELIBERATE, where
        expect = EXHAUSTED if len(data) > self.max_message_bytes else case.expect
        if expect is not None:
            assert code == expect, f"expected {expect}; {where}"
        if code != OK:
            assert after == before, f"rejected request changed state {before} -> {after}; {where}"
            if code != EXHAUSTED:
                assert details, f"no message: {where}"
        else:
            self._check_accepted(case, reply, ids, expected_statuses, before, after, where)
        self.report.cases += 1
        self.report.by_kind[case.kind] += 1
        self.report.by_status[code] += 1
        self.report.by_method[case.method] += 1

    def _check_accepted(
        self,
        case: Case,
        reply: bytes,
        ids: list[str],
        statuses: list[int],
        before: tuple[int, int, int],
        after: tuple[int, int, int],
        where: str,
    ) -> None:
        delta = tuple(a - b for a, b in zip(after, before, strict=True))
        response = RESPONSES[case.method].FromString(reply)
        if case.method == "Decide":
            request_id = getattr(case.payload, "request_id", "")
            if request_id in self.decided:  # a retry (hypothesis replays examples): idempotent
                assert response.decision_id == self.decided[request_id], where
                assert delta == (0, 0, 0), (delta, where)
                return
            if request_id:
                self.decided[request_id] = response.decision_id
            assert delta == (1, 0, 0), (delta, where)
            self.pending.append(response.decision_id)
        elif case.method == "DecideBatch":
            n = len(response.decision_ids)
            assert delta == (n, 0, 0), (delta, where)
            if case.kind == "targeted":
                assert n == case.rows, where
            self.pending.extend(response.decision_ids)
        elif case.method in ("Reward", "RewardBatch"):
            got = [response.status] if case.method == "Reward" else list(response.statuses)
            if case.kind == "targeted":
                assert got == statuses, (got, statuses, where)
            applied = got.count(pb.REWARD_STATUS_APPLIED)
            assert delta == (0, applied, applied), (delta, where)
            if case.kind == "targeted":
                for decision_id, status in zip(ids, got, strict=True):
                    if status == pb.REWARD_STATUS_APPLIED:
                        self.pending.remove(decision_id)
                        self.rewarded.append(decision_id)
        else:
            assert delta == (0, 0, 0), (delta, where)


def run_fuzz(
    target: str, n_cases: int, max_rows: int, max_message_bytes: int, seed: int = 0
) -> FuzzReport:
    """Run ``n_cases`` generated cases against the server at ``target`` (started with these
    ``--max-batch-rows`` and ``--max-message-bytes``); raise on the first wrong answer
    (hypothesis shrinks it to a minimal request first)."""
    runner = FuzzRunner(target, max_rows, max_message_bytes)
    started = time.perf_counter()

    @settings(
        max_examples=n_cases,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=any_case(max_rows))
    def fuzz(case: Case) -> None:
        runner.run(case)

    try:
        from hypothesis import seed as hypothesis_seed

        hypothesis_seed(seed)(fuzz)()
    finally:
        runner.close()
    runner.report.seconds = time.perf_counter() - started
    return runner.report
