"""OfferService and AdminService: decode the request, call the Engine, encode the result.

Validation that needs no Engine happens in :mod:`engine.serving.codec` before any Engine call, so
a rejected request changes no state; errors become status codes in the error interceptor.
"""

from __future__ import annotations

import json

import grpc

from engine.serving import codec
from engine.serving.campaigns import Campaigns
from engine.serving.logs import request_id_var
from engine.serving.metrics import ServerMetrics
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from engine.serving.status import UnavailableError


def _check_deadline(context: grpc.ServicerContext) -> None:
    # A call whose deadline already passed would decide (and journal) an answer nobody reads.
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before deciding")


class OfferServicer(pb_grpc.OfferServiceServicer):
    """Decide and Reward for the campaigns of one server."""

    def __init__(self, campaigns: Campaigns, metrics: ServerMetrics, max_batch_rows: int) -> None:
        self._campaigns = campaigns
        self._metrics = metrics
        self._max_batch_rows = max_batch_rows

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        codec.check_request_id(request.request_id)
        name, engine = self._campaigns.get(request.campaign)
        customer_id = codec.check_id(request.customer_id, "customer_id")
        attributes = codec.context_to_dict(request.context)
        candidates = codec.candidates_of(request.candidates)
        _check_deadline(context)
        decision = engine.decide(customer_id=customer_id, context=attributes, candidates=candidates)
        self._metrics.record_decisions(
            name, (decision.offer_id,), (decision.explored,), (decision.control,)
        )
        return pb.DecideResponse(
            decision_id=decision.decision_id,
            offer_id=decision.offer_id,
            propensity=decision.propensity,
            explored=decision.explored,
            control=decision.control,
            model_version=str(decision.model_version),
            ranking=[pb.RankedOffer(offer_id=o, score=s) for o, s in decision.ranking],
            request_id=request_id_var.get(),
            campaign=name,
            reasons=list(decision.reasons),
        )

    def DecideBatch(
        self, request: pb.DecideBatchRequest, context: grpc.ServicerContext
    ) -> pb.DecideBatchResponse:
        codec.check_request_id(request.request_id)
        name, engine = self._campaigns.get(request.campaign)
        candidates: list[list[str] | None] | None
        has_dense = request.HasField("dense")
        if has_dense == bool(request.rows):
            got = "both" if has_dense else "neither"
            raise codec.InvalidInputError("rows, dense", "exactly one of the two forms", got)
        if has_dense:
            customer_ids, contexts = codec.dense_to_contexts(request.dense, self._max_batch_rows)
            shared = codec.candidates_of(request.candidates)
            candidates = None if shared is None else [shared] * len(customer_ids)
        else:
            if request.candidates:
                raise codec.InvalidInputError(
                    "candidates", "empty with the row form (rows carry their own)", "a list"
                )
            customer_ids, contexts, per_row = codec.rows_to_contexts(
                request.rows, self._max_batch_rows
            )
            candidates = None if all(c is None for c in per_row) else per_row
        _check_deadline(context)
        batch = engine.decide_batch(customer_ids, contexts, candidates=candidates)
        self._metrics.record_decisions(name, batch.offer_ids, batch.explored, batch.control)
        response = pb.DecideBatchResponse(
            decision_ids=batch.decision_ids,
            offer_ids=batch.offer_ids,
            propensities=batch.propensities,
            explored=batch.explored,
            control=batch.control,
            model_versions=[str(v) for v in batch.model_versions],
            score_offer_ids=engine.offer_ids,
            request_id=request_id_var.get(),
            campaign=name,
        )
        if request.include_scores:
            response.scores.extend(batch.scores.ravel())
        return response

    def Reward(self, request: pb.RewardRequest, context: grpc.ServicerContext) -> pb.RewardResponse:
        codec.check_request_id(request.request_id)
        name, engine = self._campaigns.get(request.campaign)
        decision_id = codec.check_id(request.decision_id, "decision_id")
        value = request.value
        if not codec.math.isfinite(value):
            raise codec.InvalidInputError("value", "a finite number", value)
        components = dict(request.components)
        for key, component in components.items():
            if not codec.math.isfinite(component):
                raise codec.InvalidInputError(f"components[{key!r}]", "a finite number", component)
        _check_deadline(context)
        outcome = engine.reward(decision_id, value=value, components=components or None)
        if outcome.applied:
            self._metrics.record_rewards(name, (outcome.offer_id,), (value,))
        else:
            self._metrics.record_rewards(name, (), (), duplicates=1)
        return pb.RewardResponse(
            decision_id=decision_id, applied=outcome.applied, request_id=request_id_var.get()
        )

    def RewardBatch(
        self, request: pb.RewardBatchRequest, context: grpc.ServicerContext
    ) -> pb.RewardBatchResponse:
        codec.check_request_id(request.request_id)
        name, engine = self._campaigns.get(request.campaign)
        decision_ids, values = codec.reward_arrays(
            request.decision_ids, request.values, self._max_batch_rows
        )
        _check_deadline(context)
        outcome = engine.reward_batch(decision_ids, values)
        applied = outcome.applied
        self._metrics.record_rewards(
            name,
            [o for o, a in zip(outcome.offer_ids, applied, strict=True) if a],
            values[applied].tolist(),
            duplicates=int(len(applied) - applied.sum()),
        )
        return pb.RewardBatchResponse(
            applied=int(applied.sum()),
            duplicates=int(len(applied) - applied.sum()),
            request_id=request_id_var.get(),
        )


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Model information, snapshots and promotion (token-protected by an interceptor)."""

    def __init__(self, campaigns: Campaigns, metrics: ServerMetrics) -> None:
        self._campaigns = campaigns
        self._metrics = metrics

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        name, engine = self._campaigns.get(request.campaign)
        info = engine.model_info()
        return pb.ModelInfo(
            campaign=name,
            model_version=str(info["model_version"]),
            policy=json.dumps(info["policy"], sort_keys=True),
            offer_ids=engine.offer_ids,
            feature_names=info["feature_names"],
            decisions=self._metrics.decisions_made(name),
            rewards=int(info["rewards"]),
            pending_decisions=int(info["pending_decisions"]),
        )

    def Snapshot(
        self, request: pb.SnapshotRequest, context: grpc.ServicerContext
    ) -> pb.SnapshotResponse:
        name, engine = self._campaigns.get(request.campaign)
        return pb.SnapshotResponse(campaign=name, model_version=str(engine.snapshot()))

    def PromoteModel(
        self, request: pb.PromoteModelRequest, context: grpc.ServicerContext
    ) -> pb.PromoteModelResponse:
        name, engine = self._campaigns.get(request.campaign)
        path = request.snapshot_path
        if not path:
            raise codec.InvalidInputError("snapshot_path", "a path to a snapshot file", path)
        version = engine.load_snapshot(path)
        if version is None:
            raise UnavailableError("snapshot_path: the engine did not report the promoted version")
        return pb.PromoteModelResponse(campaign=name, model_version=str(version))
