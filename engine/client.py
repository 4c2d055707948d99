"""A small typed Python client for the nbo gRPC service.

Backend services, the demo and the benchmarks use it; services in other languages generate their
own stubs from ``proto/nbo/v1/offers.proto``.

A failed call raises the :mod:`engine.errors` class of its status (the table of
:mod:`engine.serving.status`, read backwards): INVALID_ARGUMENT is an ``InvalidInputError``,
NOT_FOUND a ``NotFoundError``, RESOURCE_EXHAUSTED a ``ResourceExhaustedError``, UNAUTHENTICATED an
``AuthenticationError``, PERMISSION_DENIED a ``PermissionDeniedError``, UNAVAILABLE a
``ServiceUnavailableError`` and DEADLINE_EXCEEDED a ``DeadlineExceededError`` (a
``ServiceUnavailableError`` and a ``TimeoutError``); any other status an :class:`RpcFailedError`.
The message is the server's details. Each is also a ``grpc.RpcError`` with ``code()`` and
``details()``, and the original error is its ``__cause__``.

Examples
--------
Against a running ``nbo serve --config examples/renewal.toml --port 50051``::

    from engine.client import NboClient

    with NboClient("localhost:50051") as nbo:
        d = nbo.decide("c-42", {"tenure_months": 14, "monthly_price": 49.0, "plan": "basic"})
        print(d.offer_id, d.propensity)
        nbo.reward(d.decision_id, value=588.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.errors import InvalidInputError, NboError
from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc
from engine.serving.status import STATUS_BY_ERROR
from engine.types import FloatArray

Attributes = Mapping[str, float | int | bool | str]
_Reply = TypeVar("_Reply")


class RemoteError(grpc.RpcError):
    """What every error of a failed call is too: a ``grpc.RpcError`` with the call's status.

    Parameters
    ----------
    status : grpc.StatusCode
        The call's status, also ``exc.code()``.
    details : str
        The server's message (names the field, what was expected, what came): ``str(exc)`` and
        ``exc.details()``.
    """

    def __new__(cls, status: grpc.StatusCode, details: str) -> RemoteError:
        return super().__new__(cls, details)

    def __init__(self, status: grpc.StatusCode, details: str) -> None:
        BaseException.__init__(self, details)  # not the nbo class's own signature
        self._status = status
        self._details = details

    def code(self) -> grpc.StatusCode:
        """The call's gRPC status code (as ``grpc.RpcError.code()``)."""
        return self._status

    def details(self) -> str:
        """The server's message (as ``grpc.RpcError.details()``)."""
        return self._details

    def __str__(self) -> str:
        return self._details


class RpcFailedError(NboError, RuntimeError):
    """A call failed with a status no :mod:`engine.errors` class stands for (INTERNAL, ...)."""


def _remote_class(cls: type[BaseException]) -> type[RemoteError]:
    return type(cls.__name__, (RemoteError, cls), {"__module__": __name__, "__doc__": cls.__doc__})


# The first class the server's table maps to each status; RemoteError comes first in each so its
# constructor, str() and code() win over the nbo class's.
_ERROR_BY_STATUS: dict[grpc.StatusCode, type[RemoteError]] = {
    code: _remote_class(cls) for cls, code in reversed(STATUS_BY_ERROR)
}
_OTHER_ERROR = _remote_class(RpcFailedError)


def remote_error(error: grpc.RpcError) -> RemoteError:
    """The :mod:`engine.errors` error for a failed call (``exc.code()`` is its status).

    Examples
    --------
    >>> class Failed(grpc.RpcError):
    ...     def code(self): return grpc.StatusCode.INVALID_ARGUMENT
    ...     def details(self): return "customer_id: expected a non-empty string, got ''"
    >>> exc = remote_error(Failed())
    >>> isinstance(exc, InvalidInputError), exc.code().name, exc.field, exc.got
    (True, 'INVALID_ARGUMENT', 'customer_id', "''")
    >>> exc
    InvalidInputError("customer_id: expected a non-empty string, got ''")
    """
    code = getattr(error, "code", None)
    status = code() if callable(code) else grpc.StatusCode.UNKNOWN
    read = getattr(error, "details", None)
    details = (read() if callable(read) else None) or status.name
    exc = _ERROR_BY_STATUS.get(status, _OTHER_ERROR)(status, details)
    if isinstance(exc, InvalidInputError):  # "FIELD: expected WHAT, got VALUE"
        field, _, rest = details.partition(": expected ")
        expected, _, got = rest.rpartition(", got ")
        exc.field, exc.expected, exc.got = (field, expected, got) if got else ("", "", details)
    return exc


@dataclass(frozen=True)
class OfferDecision:
    """One decision: what to offer, with what probability, and how the offers ranked."""

    decision_id: str
    offer_id: str
    propensity: float
    explored: bool
    control: bool
    model_version: str
    ranking: tuple[tuple[str, float], ...]
    campaign: str
    request_id: str
    reasons: tuple[str, ...] = ()
    deferred: bool = False  #: decided with defer_activation: inactive until activate()
    #: A campaign with dimensions: dimension -> chosen value (the offer included), else {}.
    choices: dict[str, str] = field(default_factory=dict)
    #: A campaign with dimensions: the combination id (the logged action), else "".
    action: str = ""


@dataclass(frozen=True)
class BatchDecisions:
    """Decisions of one batch; entry i of every array belongs to row i of the request.

    ``scores`` has shape (n_rounds, n_actions) with columns ``score_offer_ids`` when scores were
    requested, else shape (n_rounds, 0). The batch is also a sequence of rows: ``len(batch)``,
    ``batch[i]`` and ``for d in batch`` give :class:`OfferDecision` objects, as ``decide()``
    returns, whose ``ranking`` is empty unless scores were requested and whose ``reasons`` are
    empty (the batch response carries none).
    """

    decision_ids: list[str]
    offer_ids: list[str]
    propensities: FloatArray
    explored: np.ndarray
    control: np.ndarray
    model_versions: list[str]
    score_offer_ids: list[str]
    scores: FloatArray
    campaign: str
    request_id: str
    #: A campaign with dimensions: per row, dimension -> value and the combination id.
    choices: list[dict[str, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.decision_ids)

    @overload
    def __getitem__(self, index: int) -> OfferDecision: ...
    @overload
    def __getitem__(self, index: slice) -> list[OfferDecision]: ...
    def __getitem__(self, index: int | slice) -> OfferDecision | list[OfferDecision]:
        if isinstance(index, slice):
            return [self._row(i) for i in range(len(self))[index]]
        return self._row(range(len(self))[index])  # IndexError past the end, as a list

    def __iter__(self) -> Iterator[OfferDecision]:
        return map(self._row, range(len(self)))

    def _row(self, i: int) -> OfferDecision:
        return OfferDecision(
            decision_id=self.decision_ids[i],
            offer_id=self.offer_ids[i],
            propensity=float(self.propensities[i]),
            explored=bool(self.explored[i]),
            control=bool(self.control[i]),
            model_version=self.model_versions[i],
            ranking=_ranking(
                self.actions[i] if self.actions else self.offer_ids[i],
                self.score_offer_ids,
                self.scores[i],
            ),
            campaign=self.campaign,
            request_id=self.request_id,
            choices=self.choices[i] if self.choices else {},
            action=self.actions[i] if self.actions else "",
        )


def _ranking(
    chosen: str, offer_ids: Sequence[str], scores: FloatArray
) -> tuple[tuple[str, float], ...]:
    # As DecideResponse.ranking: the eligible (finite-score) offers best first, or the chosen
    # offer alone with NaN when the policy was not asked; nothing when scores were not sent.
    if not scores.size:
        return ()
    finite = np.isfinite(scores)
    if not finite.any():
        return ((chosen, math.nan),)
    order = np.argsort(-scores, kind="stable")
    return tuple((offer_ids[a], float(scores[a])) for a in order if finite[a])


@dataclass(frozen=True)
class ModelInfo:
    """What a campaign is deciding with."""

    campaign: str
    model_version: str
    policy: str
    offer_ids: list[str]
    feature_names: list[str]
    decisions: int
    rewards: int
    pending_decisions: int
    rewards_learned: int
    reward_errors: int
    config_hash: str
    kind: str = ""  #: of the live version: initial, learned, promoted or rollback
    origin: str = "{}"  #: JSON: where the live version came from
    parent: str = ""  #: the version live before
    created: float = 0.0  #: unix seconds
    mode: str = "online"  #: online, shadow or logging
    rollout_state: str = "live"  #: live or rolled_back
    rollout_reason: str = ""  #: why (with the evidence, for a rollback)
    safe_mode: str = ""  #: what a rolled-back campaign serves
    lift: float = math.nan  #: the lift monitor's lift per decision (the leading learner's)
    lift_lower: float = -math.inf  #: its anytime-valid bound
    lift_upper: float = math.inf
    lift_treatment: int = 0  #: rewarded decisions counted per group
    lift_control: int = 0
    agreement_rate: float = math.nan  #: shadow mode: nbo chose the baseline's offer
    baseline_value: float = math.nan  #: shadow mode: the baseline's mean net reward
    shadow_nbo_value: float = math.nan  #: shadow mode: nbo's estimated value per decision
    shadow_gain: float = math.nan  #: ... minus the baseline's, with a 95% interval
    shadow_gain_lower: float = math.nan
    shadow_gain_upper: float = math.nan
    shadow_rows: int = 0  #: rewarded shadow decisions behind the estimate


@dataclass(frozen=True)
class ModeChange:
    """What a SetMode recorded."""

    campaign: str
    mode: str
    rollout_state: str
    since: float


@dataclass(frozen=True)
class ModelVersion:
    """One version of a campaign's model registry (``origin`` is a JSON text)."""

    version: str
    kind: str
    created: float
    origin: str
    origin_summary: str
    parent: str
    bytes_kept: bool
    live: bool
    last_reward_seq: int
    n_rewards: int
    policy_class: str
    sha256: str
    offer_ids: list[str]
    feature_names: list[str]

    @classmethod
    def from_message(cls, m: pb.ModelVersion) -> ModelVersion:
        return cls(
            version=m.version,
            kind=m.kind,
            created=m.created,
            origin=m.origin,
            origin_summary=m.origin_summary,
            parent=m.parent,
            bytes_kept=m.bytes_kept,
            live=m.live,
            last_reward_seq=m.last_reward_seq,
            n_rewards=m.n_rewards,
            policy_class=m.policy_class,
            sha256=m.sha256,
            offer_ids=list(m.offer_ids),
            feature_names=list(m.feature_names),
        )


@dataclass(frozen=True)
class ModelChange:
    """What a promotion or rollback did: the live version, and whether nothing changed."""

    campaign: str
    model: ModelVersion
    unchanged: bool


@dataclass(frozen=True)
class RewardResults:
    """Outcome of a RewardBatch: counts, and one status per decision id of the request.

    Statuses are "applied", "duplicate" (a retry), "expired" (window passed) or "unknown".
    """

    applied: int
    duplicates: int
    expired: int
    unknown: int
    statuses: list[str]


def _pem(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def _bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token is not None else ()


def context_message(attributes: Attributes) -> pb.Context:
    """Split a dict of raw attributes into the proto's numeric and categorical maps.

    Numbers and booleans go to ``numeric``; strings to ``categorical``.

    Examples
    --------
    >>> msg = context_message({"tenure_months": 14, "autopay": True, "plan": "basic"})
    >>> sorted(msg.numeric.items()), dict(msg.categorical)
    ([('autopay', 1.0), ('tenure_months', 14.0)], {'plan': 'basic'})
    """
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    for name, value in attributes.items():
        if isinstance(value, str):
            categorical[name] = value
        elif value is not None:
            numeric[name] = float(value)
    return pb.Context(numeric=numeric, categorical=categorical)


class NboClient:
    """Client of one nbo server.

    Parameters
    ----------
    target : str
        ``host:port`` of the server.
    campaign : str
        Default campaign of every call ("" = the server's only campaign).
    timeout : float
        Default deadline of every call, in seconds.
    tls_ca : Path or bytes, optional
        PEM root certificate(s) to verify the server with; enables TLS.
    tls_server_name : str, optional
        Host name to verify in the server's certificate (when it differs from ``target``).
    admin_token : str, optional
        Bearer token sent with AdminService calls.
    client_token : str, optional
        Bearer token sent with OfferService calls (a server started with ``--client-token``).
    tls_client_cert, tls_client_key : Path or bytes, optional
        PEM certificate chain and private key presented to a server that requires client
        certificates (``--tls-client-ca``); need ``tls_ca``.
    max_message_bytes : int
        Largest message the client sends or accepts.
    """

    def __init__(
        self,
        target: str,
        *,
        campaign: str = "",
        timeout: float = 5.0,
        tls_ca: Path | bytes | None = None,
        tls_server_name: str | None = None,
        admin_token: str | None = None,
        client_token: str | None = None,
        tls_client_cert: Path | bytes | None = None,
        tls_client_key: Path | bytes | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.campaign = campaign
        self.timeout = timeout
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if (tls_client_cert is None) != (tls_client_key is None) or (
            tls_client_cert is not None and tls_ca is None
        ):
            raise ValueError(
                "tls_client_cert, tls_client_key: expected both with tls_ca, or neither"
            )
        if tls_ca is not None:
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(tls_ca),
                private_key=None if tls_client_key is None else _pem(tls_client_key),
                certificate_chain=None if tls_client_cert is None else _pem(tls_client_cert),
            )
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._offers = pb_grpc.OfferServiceStub(self._channel)
        self._admin = pb_grpc.AdminServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._admin_metadata = _bearer(admin_token)
        self._client_metadata = _bearer(client_token)

    def decide(
        self,
        customer_id: str,
        context: Attributes,
        candidates: Sequence[str] | None = None,
        *,
        campaign: str | None = None,
        request_id: str = "",
        timeout: float | None = None,
        baseline_offer: str = "",
        probabilities: Mapping[str, float] | None = None,
        defer_activation: bool = False,
    ) -> OfferDecision:
        """Choose the next best offer for one customer (``baseline_offer``: the caller's
        business-as-usual choice; ``probabilities``: the caller's policy in logging mode)."""
        request = pb.DecideRequest(
            campaign=self._campaign(campaign),
            customer_id=customer_id,
            context=context_message(context),
            candidates=candidates or (),
            request_id=request_id,
            baseline_offer=baseline_offer,
            probabilities=dict(probabilities or {}),
            defer_activation=defer_activation,
        )
        r = self._offer_call(self._offers.Decide, request, timeout)
        return OfferDecision(
            decision_id=r.decision_id,
            offer_id=r.offer_id,
            propensity=r.propensity,
            explored=r.explored,
            control=r.control,
            model_version=r.model_version,
            ranking=tuple((o.offer_id, o.score) for o in r.ranking),
            campaign=r.campaign,
            request_id=r.request_id,
            reasons=tuple(r.reasons),
            deferred=r.deferred,
            choices=dict(r.choices),
            action=r.action,
        )

    def decide_batch(
        self,
        customer_ids: Sequence[str],
        contexts: Sequence[Attributes],
        candidates: Sequence[Sequence[str] | None] | None = None,
        *,
        include_scores: bool = False,
        campaign: str | None = None,
        request_id: str = "",
        timeout: float | None = None,
        baseline_offers: Sequence[str] | None = None,
    ) -> BatchDecisions:
        """Choose offers for many customers (row form: one attribute dict per customer;
        ``baseline_offers``: one business-as-usual offer per row)."""
        per_row = candidates or [None] * len(customer_ids)
        baselines = baseline_offers or [""] * len(customer_ids)
        rows = [
            pb.DecideRow(
                customer_id=c,
                context=context_message(ctx),
                candidates=cand or (),
                baseline_offer=base or "",
            )
            for c, ctx, cand, base in zip(customer_ids, contexts, per_row, baselines, strict=True)
        ]
        request = pb.DecideBatchRequest(
            campaign=self._campaign(campaign),
            rows=rows,
            include_scores=include_scores,
            request_id=request_id,
        )
        return self._batch(request, timeout)

    def decide_dense(
        self,
        customer_ids: Sequence[str],
        numeric_names: Sequence[str],
        numeric_values: FloatArray,
        categorical_names: Sequence[str] = (),
        categorical_values: Sequence[Sequence[str]] | np.ndarray = (),
        candidates: Sequence[str] | None = None,
        *,
        include_scores: bool = False,
        campaign: str | None = None,
        request_id: str = "",
        timeout: float | None = None,
        baseline_offers: Sequence[str] = (),
    ) -> BatchDecisions:
        """Choose offers for many customers (dense form).

        Parameters
        ----------
        baseline_offers : sequence of str
            One business-as-usual offer per row ("" for none), or empty.
        numeric_values : array of shape (n_rounds, len(numeric_names))
            NaN marks a missing value.
        categorical_values : array-like of str, shape (n_rounds, len(categorical_names))
            "" marks a missing value.
        """
        values = np.ascontiguousarray(numeric_values, dtype=np.float64)
        categorical = np.asarray(categorical_values, dtype=object).ravel()
        request = pb.DecideBatchRequest(
            campaign=self._campaign(campaign),
            dense=pb.DenseContexts(
                customer_ids=customer_ids,
                numeric_names=numeric_names,
                numeric_values=values.ravel(),
                categorical_names=categorical_names,
                categorical_values=categorical.tolist(),
            ),
            candidates=candidates or (),
            include_scores=include_scores,
            request_id=request_id,
            baseline_offers=baseline_offers,
        )
        return self._batch(request, timeout)

    def _batch(self, request: pb.DecideBatchRequest, timeout: float | None) -> BatchDecisions:
        r = self._offer_call(self._offers.DecideBatch, request, timeout)
        n_rows = len(r.decision_ids)
        scores = np.array(r.scores, dtype=np.float64)
        return BatchDecisions(
            decision_ids=list(r.decision_ids),
            offer_ids=list(r.offer_ids),
            propensities=np.array(r.propensities, dtype=np.float64),
            explored=np.array(r.explored, dtype=bool),
            control=np.array(r.control, dtype=bool),
            model_versions=list(r.model_versions),
            score_offer_ids=list(r.score_offer_ids),
            scores=scores.reshape(n_rows, -1) if scores.size else scores.reshape(n_rows, 0),
            campaign=r.campaign,
            request_id=r.request_id,
            choices=[dict(c.values) for c in r.choices],
            actions=list(r.actions),
        )

    def reward(
        self,
        decision_id: str,
        value: float,
        components: Mapping[str, float] | None = None,
        *,
        campaign: str | None = None,
        request_id: str = "",
        timeout: float | None = None,
    ) -> bool:
        """Report one decision's outcome; returns False when it was already rewarded (a retry)."""
        request = pb.RewardRequest(
            campaign=self._campaign(campaign),
            decision_id=decision_id,
            value=value,
            components=dict(components or {}),
            request_id=request_id,
        )
        r = self._offer_call(self._offers.Reward, request, timeout)
        return bool(r.applied)

    def activate(
        self,
        decision_id: str,
        *,
        campaign: str | None = None,
        request_id: str = "",
        timeout: float | None = None,
    ) -> str:
        """Mark a deferred decision's offer as delivered: ``activated``, ``duplicate`` (a retry)
        or ``immediate`` (it was not deferred); NOT_FOUND for an unknown or expired one."""
        request = pb.ActivateRequest(
            campaign=self._campaign(campaign), decision_id=decision_id, request_id=request_id
        )
        r = self._offer_call(self._offers.Activate, request, timeout)
        return pb.ActivationStatus.Name(r.status).removeprefix("ACTIVATION_STATUS_").lower()

    def reward_batch(
        self,
        decision_ids: Sequence[str],
        values: Sequence[float] | FloatArray,
        *,
        campaign: str | None = None,
        request_id: str = "",
        timeout: float | None = None,
    ) -> RewardResults:
        """Report many outcomes; unknown or expired ids get their own status, not an error."""
        request = pb.RewardBatchRequest(
            campaign=self._campaign(campaign),
            decision_ids=decision_ids,
            values=np.asarray(values, dtype=np.float64),
            request_id=request_id,
        )
        r = self._offer_call(self._offers.RewardBatch, request, timeout)
        return RewardResults(
            applied=int(r.applied),
            duplicates=int(r.duplicates),
            expired=int(r.expired),
            unknown=int(r.unknown),
            statuses=[
                pb.RewardStatus.Name(s).removeprefix("REWARD_STATUS_").lower() for s in r.statuses
            ],
        )

    def model_info(self, campaign: str | None = None) -> ModelInfo:
        """Describe the model a campaign decides with (admin)."""
        request = pb.GetModelInfoRequest(campaign=self._campaign(campaign))
        r = self._admin_call(self._admin.GetModelInfo, request)
        return ModelInfo(
            campaign=r.campaign,
            model_version=r.model_version,
            policy=r.policy,
            offer_ids=list(r.offer_ids),
            feature_names=list(r.feature_names),
            decisions=r.decisions,
            rewards=r.rewards,
            pending_decisions=r.pending_decisions,
            rewards_learned=r.rewards_learned,
            reward_errors=r.reward_errors,
            config_hash=r.config_hash,
            kind=r.kind,
            origin=r.origin,
            parent=r.parent,
            created=r.created,
            mode=r.mode,
            rollout_state=r.rollout_state,
            rollout_reason=r.rollout_reason,
            safe_mode=r.safe_mode,
            lift=r.lift,
            lift_lower=r.lift_lower,
            lift_upper=r.lift_upper,
            lift_treatment=r.lift_treatment,
            lift_control=r.lift_control,
            agreement_rate=r.agreement_rate,
            baseline_value=r.baseline_value,
            shadow_nbo_value=r.shadow_nbo_value,
            shadow_gain=r.shadow_gain,
            shadow_gain_lower=r.shadow_gain_lower,
            shadow_gain_upper=r.shadow_gain_upper,
            shadow_rows=r.shadow_rows,
        )

    def set_mode(self, mode: str, campaign: str | None = None, *, reason: str = "") -> ModeChange:
        """Set a campaign's mode (online, shadow or logging; also resumes a rolled-back
        campaign) on its leading learner (admin)."""
        request = pb.SetModeRequest(campaign=self._campaign(campaign), mode=mode, reason=reason)
        r = self._admin_call(self._admin.SetMode, request)
        return ModeChange(r.campaign, r.mode, r.rollout_state, r.since)

    def snapshot(self, campaign: str | None = None) -> str:
        """Write a snapshot of a campaign's model; returns its version (admin)."""
        r = self._admin_call(
            self._admin.Snapshot, pb.SnapshotRequest(campaign=self._campaign(campaign))
        )
        return str(r.model_version)

    def promote(
        self, snapshot_path: str | Path, campaign: str | None = None, *, force: bool = False
    ) -> str:
        """Make a campaign decide with a snapshot file on the server; returns the version."""
        return self.promote_model(snapshot_path, campaign, force=force).model.version

    def promote_model(
        self, snapshot_path: str | Path, campaign: str | None = None, *, force: bool = False
    ) -> ModelChange:
        """Promote a snapshot file of the server's model directory (admin; a path relative to
        it); says whether it was live already. The server first evaluates it against the live
        model on its journal and refuses (FAILED_PRECONDITION, both numbers in the message)
        unless it beats it, or ``force``."""
        request = pb.PromoteModelRequest(
            campaign=self._campaign(campaign), snapshot_path=str(snapshot_path), force=force
        )
        r = self._admin_call(self._admin.PromoteModel, request)
        return ModelChange(r.campaign, ModelVersion.from_message(r.model), r.unchanged)

    def list_models(
        self, campaign: str | None = None, *, limit: int = 100, before: str = ""
    ) -> list[ModelVersion]:
        """A campaign's model versions, newest first (admin)."""
        request = pb.ListModelsRequest(
            campaign=self._campaign(campaign), limit=limit, before=before
        )
        r = self._admin_call(self._admin.ListModels, request)
        return [ModelVersion.from_message(m) for m in r.models]

    def get_model(self, version: str, campaign: str | None = None) -> ModelVersion:
        """One version of a campaign's registry (admin); NOT_FOUND when unknown."""
        request = pb.ListModelsRequest(campaign=self._campaign(campaign), version=version)
        r = self._admin_call(self._admin.ListModels, request)
        return ModelVersion.from_message(r.models[0])

    def rollback(self, version: str, campaign: str | None = None) -> ModelChange:
        """Make an earlier version live again, as a new version of kind rollback (admin)."""
        request = pb.RollbackModelRequest(campaign=self._campaign(campaign), version=version)
        r = self._admin_call(self._admin.RollbackModel, request)
        return ModelChange(r.campaign, ModelVersion.from_message(r.model), r.unchanged)

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """The server's health status name ("SERVING", "NOT_SERVING", ...) for ``service``."""
        r = self._call(
            self._health.Check,
            health_pb2.HealthCheckRequest(service=service),
            timeout,
            (),
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Block until health reports SERVING; raises TimeoutError after ``timeout`` seconds."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.health(timeout=1.0) == "SERVING":
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not SERVING after {timeout} s")
            time.sleep(0.05)

    def _campaign(self, campaign: str | None) -> str:
        return self.campaign if campaign is None else campaign

    def _offer_call(
        self, method: Callable[..., _Reply], request: Any, timeout: float | None
    ) -> _Reply:
        """An OfferService call: the client token, ``timeout`` or the client's deadline."""
        return self._call(method, request, timeout, self._client_metadata)

    def _admin_call(self, method: Callable[..., _Reply], request: Any) -> _Reply:
        """An AdminService call: the admin token and the client's deadline."""
        return self._call(method, request, None, self._admin_metadata)

    def _call(
        self,
        method: Callable[..., _Reply],
        request: Any,
        timeout: float | None,
        metadata: tuple[tuple[str, str], ...],
    ) -> _Reply:
        try:
            return method(
                request, timeout=self.timeout if timeout is None else timeout, metadata=metadata
            )
        except grpc.RpcError as exc:
            raise remote_error(exc) from exc

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> NboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
