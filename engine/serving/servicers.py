"""OfferService and AdminService: decode the request, call the Engine, encode the result.

Validation that needs no Engine happens in :mod:`engine.serving.codec` before any Engine call, so
a rejected request changes no state; errors become status codes in the error interceptor.

Decide and Reward are coroutines on the server's event loop: their Engine work is a bounded
batch of the calls that overlap (see :mod:`engine.serving.batcher`), with no thread hop. The
other methods are plain blocking code; :class:`Pooled` runs each call of those in the server's
bounded thread pool, so the event loop (health, reflection, refusals) never waits on a large
batch, a snapshot or a model load.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypedDict

import grpc
import numpy as np

from engine.errors import DeadlineExceededError, InvalidInputError, NboError, NotFoundError
from engine.journal.registry import ModelVersion
from engine.serving import codec
from engine.serving.campaigns import Campaigns
from engine.serving.logs import LOGGER_NAME, request_id_var
from engine.serving.metrics import ServerMetrics
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from engine.validation import check_given

if TYPE_CHECKING:
    from engine.core import Engine, ModelChange

_log = logging.getLogger(LOGGER_NAME)
INLINE_BATCH_ROWS = 64  # DecideBatch calls of at most this many rows run on the event loop
_REWARD_STATUS = {
    "applied": pb.REWARD_STATUS_APPLIED,
    "duplicate": pb.REWARD_STATUS_DUPLICATE,
    "expired": pb.REWARD_STATUS_EXPIRED,
    "unknown": pb.REWARD_STATUS_UNKNOWN,
    "inactive": pb.REWARD_STATUS_INACTIVE,
}
_ACTIVATION_STATUS = {
    "activated": pb.ACTIVATION_STATUS_ACTIVATED,
    "duplicate": pb.ACTIVATION_STATUS_DUPLICATE,
    "immediate": pb.ACTIVATION_STATUS_IMMEDIATE,
}


def _check_deadline(context: grpc.ServicerContext) -> None:
    # A call whose deadline already passed would decide (and journal) an answer nobody reads.
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceededError("deadline passed before deciding")


class _RequestOptions(TypedDict):
    """The keywords that Decide and DecideBatch pass to the Engine alike."""

    request_id: str | None
    probabilities: Any
    defer_activation: bool


def _request_options(
    request: pb.DecideRequest | pb.DecideBatchRequest, probabilities: Any
) -> _RequestOptions:
    """A decide request's idempotency key (none when empty), its logging-mode ``probabilities``
    and whether its activation is deferred, as the Engine's decide calls take them."""
    return {
        "request_id": request.request_id or None,
        "probabilities": probabilities,
        "defer_activation": request.defer_activation,
    }


class Pooled:
    """A servicer whose blocking methods run in ``pool``: each is a coroutine the aio server
    awaits (methods that are coroutines already are kept as they are).

    The call's context variables (its request id) go with it into the worker thread. A call
    cancelled while it waits is dropped; one already running finishes (an Engine call is never
    interrupted half-way).
    """

    def __init__(self, servicer: object, pool: Executor, methods: tuple[str, ...]) -> None:
        for name in methods:
            method = getattr(servicer, name)
            on_loop = inspect.iscoroutinefunction(method)
            setattr(self, name, method if on_loop else _pooled(method, pool))


def _pooled(
    method: Callable[[Any, Any], Any], pool: Executor
) -> Callable[[Any, Any], Awaitable[Any]]:
    async def call(request: Any, context: Any) -> Any:
        run = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(pool, run, method, request, context)

    return call


class OfferServicer(pb_grpc.OfferServiceServicer):
    """Decide and Reward for the campaigns of one server."""

    def __init__(
        self, campaigns: Campaigns, metrics: ServerMetrics, max_batch_rows: int, pool: Executor
    ) -> None:
        self._campaigns = campaigns
        self._metrics = metrics
        self._max_batch_rows = max_batch_rows
        self._pooled_decide_batch = _pooled(self._decide_batch, pool)

    async def Decide(self, request: pb.DecideRequest, context: Any) -> pb.DecideResponse:
        codec.check_request_id(request.request_id)
        name, engine, decider = self._campaigns.get(request.campaign)
        customer_id = codec.check_id(request.customer_id, "customer_id")
        attributes = codec.context_to_dict(request.context)
        candidates = codec.candidates_of(request.candidates, engine.candidate_names)
        baseline = request.baseline_offer or None
        probabilities = dict(request.probabilities) or None
        _check_deadline(context)
        if request.request_id or probabilities or request.defer_activation:
            # Idempotent: decided alone, so a retry finds exactly this call (and a logging-mode
            # draw or a deferred decision stays one call's).
            options = _request_options(request, probabilities)
            d = engine.decide(
                customer_id, attributes, candidates, baseline_offer=baseline, **options
            )
            if not d.replayed:  # a retried request_id's stored answer was counted the first time
                self._metrics.record_decisions(name, (d.offer_id,), (d.explored,), (d.control,))
        else:  # counted by the batcher, once per batch
            d = await decider.decide(customer_id, attributes, candidates, baseline)
        response = pb.DecideResponse(
            decision_id=d.decision_id,
            offer_id=d.offer_id,
            propensity=d.propensity,
            explored=d.explored,
            control=d.control,
            model_version=d.model_version,
            ranking=[pb.RankedOffer(offer_id=o, score=score) for o, score in d.ranking],
            request_id=request_id_var.get(),
            campaign=name,
            reasons=d.reasons,
            deferred=d.deferred,
        )
        if d.dimensions:  # the offer in offer_id, every dimension's value in choices
            choices = d.choices
            response.offer_id = choices["offer"]
            response.action = d.offer_id
            response.choices.update(choices)
        return response

    async def DecideBatch(
        self, request: pb.DecideBatchRequest, context: Any
    ) -> pb.DecideBatchResponse:
        # A batch as small as the ones Decide coalesces runs on the loop too; larger ones in the
        # pool, so the loop never waits long on one call.
        dense = request.HasField("dense")
        rows = len(request.dense.customer_ids) if dense else len(request.rows)
        if rows <= INLINE_BATCH_ROWS:
            return self._decide_batch(request, context)
        return await self._pooled_decide_batch(request, context)

    def _decide_batch(self, request: pb.DecideBatchRequest, context: Any) -> pb.DecideBatchResponse:
        codec.check_request_id(request.request_id)
        name, engine, _ = self._campaigns.get(request.campaign)
        candidates: list[str] | list[list[str] | None] | None
        baselines: list[str | None] | None = None
        probabilities: list[dict[str, float] | None] | None = None
        has_dense = request.HasField("dense")
        if has_dense == bool(request.rows):
            got = "both" if has_dense else "neither"
            raise InvalidInputError("rows, dense", "exactly one of the two forms", got)
        if has_dense:
            customer_ids, contexts = codec.dense_to_contexts(request.dense, self._max_batch_rows)
            candidates = codec.candidates_of(request.candidates, engine.candidate_names)
            baselines = list(request.baseline_offers) or None  # the Engine checks one per row
        else:
            if request.candidates:
                raise InvalidInputError(
                    "candidates", "empty with the row form (rows carry their own)", "a list"
                )
            customer_ids, contexts, per_row = codec.rows_to_contexts(
                request.rows, self._max_batch_rows, engine.candidate_names
            )
            candidates = None if all(c is None for c in per_row) else per_row
            if request.baseline_offers:
                raise InvalidInputError(
                    "baseline_offers", "empty with the row form (rows carry their own)", "a list"
                )
            row_baselines = [row.baseline_offer or None for row in request.rows]
            if any(b is not None for b in row_baselines):
                baselines = row_baselines
            row_probabilities = [dict(row.probabilities) or None for row in request.rows]
            if any(p is not None for p in row_probabilities):
                probabilities = row_probabilities
        _check_deadline(context)
        options = _request_options(request, probabilities)
        batch = engine.decide_batch(
            customer_ids, contexts, candidates, baseline_offers=baselines, **options
        )
        offer_ids = [d.offer_id for d in batch]
        explored = [d.explored for d in batch]
        control = [d.control for d in batch]
        if not batch[0].replayed:  # a retry's stored answer (every row) was counted already
            self._metrics.record_decisions(name, offer_ids, explored, control)
        response = pb.DecideBatchResponse(
            decision_ids=[d.decision_id for d in batch],
            offer_ids=offer_ids,
            propensities=[d.propensity for d in batch],
            explored=explored,
            control=control,
            model_versions=[d.model_version for d in batch],
            score_offer_ids=engine.offer_ids,
            request_id=request_id_var.get(),
            campaign=name,
        )
        if batch[0].dimensions:  # offer_ids hold the offers, actions the combinations
            response.actions.extend(offer_ids)
            del response.offer_ids[:]
            for d in batch:
                choices = d.choices
                response.choices.add().values.update(choices)
                response.offer_ids.append(choices["offer"])
        if request.include_scores:
            response.scores.extend(np.concatenate([d.scores for d in batch]))
        return response

    async def Reward(self, request: pb.RewardRequest, context: Any) -> pb.RewardResponse:
        codec.check_request_id(request.request_id)
        name, _, _ = self._campaigns.get(request.campaign)
        decision_id = codec.check_id(request.decision_id, "decision_id")
        value = request.value
        if not math.isfinite(value):
            raise InvalidInputError("value", "a finite number", value)
        components = codec.reward_components(request.components)
        _check_deadline(context)
        record = await self._campaigns.rewarder(name).reward(decision_id, value, components)
        applied = record.status == "applied"
        if applied:
            self._metrics.record_rewards(name, (record.offer_id,), (float(record.reward or 0.0),))
        else:
            self._metrics.record_rewards(name, (), (), duplicates=1)
        # Logged once, when the reward applies: a retried (duplicate), expired or unknown reward
        # logs nothing, so retries cannot grow the log (the components are bounded by the codec).
        if components and applied:
            _log.info(
                "reward components",
                extra={
                    "campaign": name,
                    "decision_id": decision_id,
                    "value": value,
                    "components": components,
                    "status": record.status,
                },
            )
        return pb.RewardResponse(
            decision_id=decision_id,
            applied=applied,
            request_id=request_id_var.get(),
            status=_REWARD_STATUS[record.status],
            offer_id=record.offer_id,
        )

    def Activate(
        self, request: pb.ActivateRequest, context: grpc.ServicerContext
    ) -> pb.ActivateResponse:
        codec.check_request_id(request.request_id)
        _, engine, _ = self._campaigns.get(request.campaign)
        decision_id = codec.check_id(request.decision_id, "decision_id")
        _check_deadline(context)
        status = engine.activate(decision_id)
        return pb.ActivateResponse(
            decision_id=decision_id,
            status=_ACTIVATION_STATUS[status],
            request_id=request_id_var.get(),
        )

    def RewardBatch(
        self, request: pb.RewardBatchRequest, context: grpc.ServicerContext
    ) -> pb.RewardBatchResponse:
        codec.check_request_id(request.request_id)
        name, engine, _ = self._campaigns.get(request.campaign)
        decision_ids, values = codec.reward_arrays(
            request.decision_ids, request.values, self._max_batch_rows
        )
        _check_deadline(context)
        records = engine.reward_batch(decision_ids, values)
        statuses = [r.status for r in records]
        applied = [i for i, status in enumerate(statuses) if status == "applied"]
        duplicates = statuses.count("duplicate")
        self._metrics.record_rewards(
            name,
            [records[i].offer_id for i in applied],
            [float(records[i].reward or 0.0) for i in applied],
            duplicates,
        )
        return pb.RewardBatchResponse(
            applied=len(applied),
            duplicates=duplicates,
            expired=statuses.count("expired"),
            unknown=statuses.count("unknown"),
            statuses=[_REWARD_STATUS[s] for s in statuses],
            request_id=request_id_var.get(),
        )


def admin_identity(context: grpc.ServicerContext) -> str:
    """Who makes an admin call, as the registry records it: the client certificate's common
    name under mutual TLS, and the peer address."""
    parts = []
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name") or []
    if names:
        parts.append("cn=" + b",".join(names).decode(errors="replace"))
    parts.append("peer=" + context.peer())
    return " ".join(parts)


def model_message(version: ModelVersion, live: str) -> pb.ModelVersion:
    """A registry version as the proto's ModelVersion."""
    return pb.ModelVersion(
        version=version.version,
        kind=version.kind,
        created=version.created,
        origin=json.dumps(version.origin, sort_keys=True),
        origin_summary=version.origin_summary(),
        parent=version.parent or "",
        bytes_kept=version.bytes_kept,
        live=version.version == live,
        last_reward_seq=version.last_reward_seq,
        n_rewards=version.n_rewards,
        policy_class=version.policy_class,
        sha256=version.sha256 or "",
        offer_ids=version.offer_ids,
        feature_names=version.feature_names,
    )


def _rollout_fields(rollout: dict[str, Any]) -> dict[str, Any]:
    """ModelInfo's rollout fields from :meth:`Engine.model_info`'s ``rollout``."""
    monitor = rollout.get("monitor") or {}

    def number(key: str, empty: float) -> float:
        value = monitor.get(key)
        return empty if value is None else float(value)

    return {
        "mode": rollout["mode"],
        "rollout_state": rollout["state"],
        "rollout_reason": rollout["reason"],
        "safe_mode": rollout["safe"],
        "lift": number("lift", math.nan),
        "lift_lower": number("lower", -math.inf),
        "lift_upper": number("upper", math.inf),
        "lift_treatment": int(monitor.get("n_treatment") or 0),
        "lift_control": int(monitor.get("n_control") or 0),
        "agreement_rate": number("agreement_rate", math.nan),
        "baseline_value": number("baseline_value", math.nan),
    }


def _shadow_fields(engine: Engine, rollout: dict[str, Any]) -> dict[str, Any]:
    """ModelInfo's shadow estimate, when the monitor has seen shadow decisions (the leading
    learner); NaN otherwise."""
    monitor = rollout.get("monitor") or {}
    nan = math.nan
    empty = {
        "shadow_nbo_value": nan,
        "shadow_gain": nan,
        "shadow_gain_lower": nan,
        "shadow_gain_upper": nan,
        "shadow_rows": 0,
    }
    if not monitor.get("shadow_decisions"):
        return empty
    from engine.replay.shadow import shadow_evidence  # the estimators load on first use

    e = shadow_evidence(engine.journal, list(engine.feature_names), list(engine.offer_ids))
    if math.isnan(e.nbo_value):
        return empty
    return {
        "shadow_nbo_value": e.nbo_value,
        "shadow_gain": e.difference,
        "shadow_gain_lower": e.low,
        "shadow_gain_upper": e.high,
        "shadow_rows": e.rows,
    }


def _change_fields(campaign: str, change: ModelChange) -> dict[str, Any]:
    """The fields PromoteModelResponse and RollbackModelResponse share."""
    live = change.version.version
    return {
        "campaign": campaign,
        "model_version": live,
        "unchanged": change.unchanged,
        "model": model_message(change.version, live),
    }


class AdminServicer(pb_grpc.AdminServiceServicer):
    """Model information, snapshots, the model registry: promotion, listing, rollback
    (token-protected by an interceptor)."""

    def __init__(self, campaigns: Campaigns) -> None:
        self._campaigns = campaigns

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        name, engine, _ = self._campaigns.get(request.campaign)
        info = engine.model_info()
        counts = info["journal"]
        return pb.ModelInfo(
            campaign=name,
            model_version=info["model_version"],
            policy=json.dumps(
                {"class": info["policy"], "params": info["policy_params"]}, sort_keys=True
            ),
            offer_ids=info["offer_ids"],
            feature_names=info["feature_names"],
            decisions=counts["decisions"],
            rewards=counts["rewards"],
            pending_decisions=counts["pending"],
            rewards_learned=info["n_rewards_applied"],
            reward_errors=counts["reward_errors"],
            config_hash=info["config_hash"],
            kind=info["kind"],
            origin=json.dumps(info["origin"], sort_keys=True),
            parent=info["parent"] or "",
            created=info["created"],
            **_rollout_fields(info["rollout"]),
            **_shadow_fields(engine, info["rollout"]),
        )

    def SetMode(
        self, request: pb.SetModeRequest, context: grpc.ServicerContext
    ) -> pb.SetModeResponse:
        name, engine, _ = self._campaigns.get(request.campaign)
        check_given("mode", request.mode, "online, shadow or logging")
        codec.check_reason(request.reason)
        state = engine.set_mode(request.mode, who=admin_identity(context), reason=request.reason)
        return pb.SetModeResponse(
            campaign=name, mode=state.mode, rollout_state=state.state, since=state.since
        )

    def Snapshot(
        self, request: pb.SnapshotRequest, context: grpc.ServicerContext
    ) -> pb.SnapshotResponse:
        name, engine, _ = self._campaigns.get(request.campaign)
        return pb.SnapshotResponse(campaign=name, model_version=engine.snapshot())

    def PromoteModel(
        self, request: pb.PromoteModelRequest, context: grpc.ServicerContext
    ) -> pb.PromoteModelResponse:
        name, engine, _ = self._campaigns.get(request.campaign)
        path = check_given("snapshot_path", request.snapshot_path, "a path to a snapshot file")
        # Only the campaign's model directory is read; a path outside it is PERMISSION_DENIED,
        # a bad file INVALID_ARGUMENT (engine/serving/status.py).
        try:
            from engine.replay.gate import gate_for  # loads the estimators on the first promotion

            change = engine.promote(
                path, who=admin_identity(context), gate=gate_for(engine), force=request.force
            )
        except NboError:  # PermissionDeniedError is an OSError too: keep its status
            raise
        except FileNotFoundError as exc:  # removed between the check and the open
            raise NotFoundError(
                f"snapshot_path: expected a file in the model directory, got {path!r} "
                "(no such file)"
            ) from exc
        except OSError as exc:
            raise InvalidInputError(
                "snapshot_path", "a readable snapshot file", f"{path!r} ({exc.strerror})"
            ) from exc
        return pb.PromoteModelResponse(**_change_fields(name, change))

    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        name, engine, _ = self._campaigns.get(request.campaign)
        live = engine.model_version
        if request.version:
            versions = [engine.model(request.version)]
        else:
            if request.limit < 0:
                raise InvalidInputError("limit", "a number >= 0", request.limit)
            versions = engine.models(
                limit=min(request.limit or 100, 1000), before=request.before or None
            )
        return pb.ListModelsResponse(
            campaign=name,
            live_version=live,
            models=[model_message(v, live) for v in versions],
        )

    def RollbackModel(
        self, request: pb.RollbackModelRequest, context: grpc.ServicerContext
    ) -> pb.RollbackModelResponse:
        name, engine, _ = self._campaigns.get(request.campaign)
        check_given("version", request.version, "a model version such as v12")
        change = engine.rollback(request.version, who=admin_identity(context))
        return pb.RollbackModelResponse(**_change_fields(name, change))
